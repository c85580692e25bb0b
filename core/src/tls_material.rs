//! Whether TLS material can be served: the one decision the operator's verdict and every
//! replica make alike.
//!
//! Material is servable when the PEM parses, the key matches the certificate, the certificate
//! is within its validity period, and it covers the rule's host where that is asked
//! ([`HostCoverage`]). If the operator judged with a
//! weaker test than the replicas (say, "tls.crt and tls.key are present"), it would accept and
//! record as `lastAccepted` a generation every replica rejects, and the replicas would then
//! serve that generation's routes without its certificate.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::sign::CertifiedKey;

/// Why TLS material was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The Secret does not exist (or is not readable).
    #[error("secret {0} not found")]
    Missing(String),
    /// The Secret has the wrong type or lacks tls.crt / tls.key.
    #[error("secret {secret}: {reason}")]
    Malformed {
        /// namespace/name.
        secret: String,
        /// What is wrong.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("secret {0}: tls.key does not match the certificate in tls.crt")]
    KeyMismatch(String),
    /// The certificate is outside its validity period.
    #[error("secret {secret}: certificate is not valid now (valid {not_before} to {not_after})")]
    NotValidNow {
        /// namespace/name.
        secret: String,
        /// Start of validity.
        not_before: String,
        /// End of validity.
        not_after: String,
    },
    /// The certificate does not cover the rule's host.
    #[error("secret {secret}: certificate does not cover host {host} (it covers {covers})")]
    WrongHost {
        /// namespace/name.
        secret: String,
        /// The rule's host.
        host: String,
        /// The certificate's DNS names.
        covers: String,
    },
}

/// Whether a certificate must cover the host it is presented for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostCoverage {
    /// A RouterConfig's own rule: a Secret whose certificate does not name the host is a
    /// mistake (the wrong Secret) that clients would only find at their first handshake, so
    /// it is refused when the RouterConfig is applied.
    Required,
    /// A Gateway listener's (a RouterConfig generated from a Gateway): Gateway API presents
    /// the listener's certificate for the listener's host name whatever names it holds, and
    /// leaves the name check to the client. The conformance suite's listeners use a
    /// certificate that names other hosts.
    NotRequired,
}

impl HostCoverage {
    /// What a RouterConfig asks: `generated` says it was generated from a Gateway
    /// ([`lockstep_crds::RouterConfig::generated`]).
    pub fn of_origin(generated: bool) -> Self {
        if generated {
            Self::NotRequired
        } else {
            Self::Required
        }
    }
}

/// A parsed, checked certificate with its key.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// Certificate chain and signing key for rustls.
    pub certified: Arc<CertifiedKey>,
    /// DNS names the leaf certificate covers (subjectAltName, or the CN when there is none).
    pub dns_names: Vec<String>,
    /// Hex serial number of the leaf.
    pub serial: String,
}

/// Parses and checks PEM material from Secret `secret` (namespace/name, for messages) at
/// `now` (seconds since the epoch).
pub fn load(secret: &str, cert_pem: &[u8], key_pem: &[u8], now: i64) -> Result<LoadedCert, CertError> {
    load_at(secret, cert_pem, key_pem, Some(now))
}

/// Parses PEM material and checks that the key matches the certificate, whatever its
/// validity period: what makes a Secret a certificate at all (a Gateway listener naming one
/// that is not gets `ResolvedRefs=False InvalidCertificateRef`).
pub fn parse(secret: &str, cert_pem: &[u8], key_pem: &[u8]) -> Result<LoadedCert, CertError> {
    load_at(secret, cert_pem, key_pem, None)
}

fn load_at(secret: &str, cert_pem: &[u8], key_pem: &[u8], now: Option<i64>) -> Result<LoadedCert, CertError> {
    let malformed = |reason: String| CertError::Malformed {
        secret: secret.to_owned(),
        reason,
    };
    let chain: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| malformed(format!("tls.crt is not valid PEM: {e}")))?;
    let Some(leaf) = chain.first().cloned() else {
        return Err(malformed("tls.crt holds no certificate".into()));
    };
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| malformed(format!("tls.key is not valid PEM: {e}")))?
        .ok_or_else(|| malformed("tls.key holds no private key".into()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => CertError::KeyMismatch(secret.to_owned()),
        other => malformed(format!("unusable certificate or key: {other}")),
    })?;

    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| malformed(format!("tls.crt does not parse as X.509: {e}")))?;
    let validity = parsed.validity();
    if let Some(now) = now
        && (now < validity.not_before.timestamp() || now > validity.not_after.timestamp())
    {
        return Err(CertError::NotValidNow {
            secret: secret.to_owned(),
            not_before: validity.not_before.to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                dns_names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if dns_names.is_empty() {
        dns_names.extend(
            parsed
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok(LoadedCert {
        certified: Arc::new(certified),
        dns_names,
        serial: parsed.raw_serial_as_string(),
    })
}

/// Does a certificate name (possibly "*.example.com") cover `host` (possibly "*.example.com")?
pub fn name_covers(cert_name: &str, host: &str) -> bool {
    if cert_name == host {
        return true;
    }
    match cert_name.strip_prefix("*.") {
        // A wildcard covers exactly one label, and never a wildcard host of another level.
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| label != "*" && rest == suffix),
        None => false,
    }
}

/// Checks that `cert` covers the rule's `host`, where `coverage` asks it.
pub fn check_covers(
    secret: &str,
    cert: &LoadedCert,
    host: &str,
    coverage: HostCoverage,
) -> Result<(), CertError> {
    if coverage == HostCoverage::NotRequired || cert.dns_names.iter().any(|n| name_covers(n, host)) {
        Ok(())
    } else {
        Err(CertError::WrongHost {
            secret: secret.to_owned(),
            host: host.to_owned(),
            covers: cert.dns_names.join(", "),
        })
    }
}

/// The certificate and key of a `kubernetes.io/tls` Secret (`secret` is namespace/name, for
/// messages): its type and both keys must be there.
pub fn secret_material(secret: &str, object: &Secret) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    let malformed = |reason: &str| CertError::Malformed {
        secret: secret.to_owned(),
        reason: reason.to_owned(),
    };
    if object.type_.as_deref() != Some("kubernetes.io/tls") {
        return Err(malformed("type is not kubernetes.io/tls"));
    }
    let data = object.data.as_ref().ok_or_else(|| malformed("no data"))?;
    let crt = data
        .get("tls.crt")
        .ok_or_else(|| malformed("tls.crt is missing"))?;
    let key = data
        .get("tls.key")
        .ok_or_else(|| malformed("tls.key is missing"))?;
    Ok((crt.0.clone(), key.0.clone()))
}

/// Can `object` (the Secret `secret`, namespace/name) serve `host` at `now` (seconds since the
/// epoch)? The decision of both the operator and the replicas.
pub fn servable(
    secret: &str,
    object: &Secret,
    host: &str,
    coverage: HostCoverage,
    now: i64,
) -> Result<LoadedCert, CertError> {
    let (crt, key) = secret_material(secret, object)?;
    let loaded = load(secret, &crt, &key, now)?;
    check_covers(secret, &loaded, host, coverage)?;
    Ok(loaded)
}

/// Can `object` (the Secret `secret`, namespace/name) be presented as a client certificate at
/// `now`? Servable material with no host to cover: the decision of both the operator and the
/// replicas for `service.tls.clientCertificateSecretName`.
pub fn presentable(secret: &str, object: &Secret, now: i64) -> Result<LoadedCert, CertError> {
    let (crt, key) = secret_material(secret, object)?;
    load(secret, &crt, &key, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_certs::{NOW, VALID, Ymd, mk_cert};

    /// Ended before [`NOW`].
    const EXPIRED: (Ymd, Ymd) = ((2026, 10, 1), (2026, 10, 31));

    #[test]
    fn good_material_loads_with_names_and_serial() {
        let (cert, key) = mk_cert(&["app.example.com", "*.example.com"], VALID);
        let loaded = load("ns/app", cert.as_bytes(), key.as_bytes(), NOW).unwrap();
        assert_eq!(loaded.dns_names, vec!["app.example.com", "*.example.com"]);
        assert!(!loaded.serial.is_empty());
        assert!(check_covers("ns/app", &loaded, "app.example.com", HostCoverage::Required).is_ok());
        assert!(check_covers("ns/app", &loaded, "x.example.com", HostCoverage::Required).is_ok());
        assert!(matches!(
            check_covers("ns/app", &loaded, "a.b.example.com", HostCoverage::Required),
            Err(CertError::WrongHost { .. })
        ));
    }

    #[test]
    fn bad_material_is_rejected_with_reason() {
        let (cert, key) = mk_cert(&["app.example.com"], VALID);
        let (_, other_key) = mk_cert(&["app.example.com"], VALID);
        assert!(matches!(
            load("ns/a", b"garbage", key.as_bytes(), NOW),
            Err(CertError::Malformed { .. })
        ));
        assert!(matches!(
            load("ns/a", cert.as_bytes(), b"", NOW),
            Err(CertError::Malformed { .. })
        ));
        assert_eq!(
            load("ns/a", cert.as_bytes(), other_key.as_bytes(), NOW).unwrap_err(),
            CertError::KeyMismatch("ns/a".into())
        );
        let (expired, expired_key) = mk_cert(&["app.example.com"], EXPIRED);
        let err = load("ns/a", expired.as_bytes(), expired_key.as_bytes(), NOW).unwrap_err();
        assert!(matches!(err, CertError::NotValidNow { .. }), "{err}");
        assert!(err.to_string().contains("ns/a"));
    }

    #[test]
    fn a_secret_whose_key_does_not_match_is_not_servable() {
        use k8s_openapi::ByteString;
        let (cert, _) = mk_cert(&["app.example.com"], VALID);
        let (_, other_key) = mk_cert(&["app.example.com"], VALID);
        let secret = |crt: &str, key: &str| Secret {
            type_: Some("kubernetes.io/tls".into()),
            data: Some(
                [
                    ("tls.crt".to_owned(), ByteString(crt.as_bytes().to_vec())),
                    ("tls.key".to_owned(), ByteString(key.as_bytes().to_vec())),
                ]
                .into(),
            ),
            ..Secret::default()
        };
        let mismatched = secret(&cert, &other_key);
        assert_eq!(
            servable(
                "ns/a",
                &mismatched,
                "app.example.com",
                HostCoverage::Required,
                NOW
            )
            .unwrap_err(),
            CertError::KeyMismatch("ns/a".into())
        );
        let (cert, key) = mk_cert(&["app.example.com"], VALID);
        assert!(
            servable(
                "ns/a",
                &secret(&cert, &key),
                "app.example.com",
                HostCoverage::Required,
                NOW
            )
            .is_ok()
        );
        assert!(matches!(
            servable(
                "ns/a",
                &secret(&cert, &key),
                "b.example.com",
                HostCoverage::Required,
                NOW
            ),
            Err(CertError::WrongHost { .. })
        ));
        // A Gateway listener's certificate is presented for its host whatever names it holds;
        // everything else about the material is still checked.
        assert!(
            servable(
                "ns/a",
                &secret(&cert, &key),
                "b.example.com",
                HostCoverage::NotRequired,
                NOW
            )
            .is_ok()
        );
        assert_eq!(
            servable(
                "ns/a",
                &mismatched,
                "b.example.com",
                HostCoverage::NotRequired,
                NOW
            )
            .unwrap_err(),
            CertError::KeyMismatch("ns/a".into())
        );
        let mut untyped = secret(&cert, &key);
        untyped.type_ = Some("Opaque".into());
        assert!(matches!(
            servable("ns/a", &untyped, "app.example.com", HostCoverage::Required, NOW),
            Err(CertError::Malformed { .. })
        ));
    }

    #[test]
    fn wildcard_names_cover_one_label() {
        assert!(name_covers("*.example.com", "a.example.com"));
        assert!(!name_covers("*.example.com", "example.com"));
        assert!(name_covers("*.example.com", "*.example.com"));
        assert!(!name_covers("*.example.com", "*.a.example.com"));
        assert!(!name_covers("a.example.com", "b.example.com"));
    }
}
