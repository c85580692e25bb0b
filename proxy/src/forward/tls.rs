//! TLS to upstreams: a Service backend's `tls` (a generated RouterConfig's translation of a
//! Gateway API BackendTLSPolicy) becomes a rustls client configuration, built once per
//! distinct setting and shared by every connection that uses it.
//!
//! | `tls` says | the endpoint's certificate must |
//! |---|---|
//! | `caCertificates` | chain to one of those CAs (absent: to a web PKI root built in) |
//! | `hostname`, no `subjectAltNames` | be valid for `hostname` (also the SNI sent) |
//! | `subjectAltNames` | carry one of them: a DNS name it is valid for, or the exact URI |
//!
//! With `clientCertificateSecretName` the replica presents that Secret's certificate when the
//! endpoint asks for one. ALPN offers `h2` for a backend spoken to in HTTP/2 and `http/1.1`
//! otherwise. A handshake
//! that fails the verification fails the attempt ([`super::error::ProxyError::UpstreamTls`]).

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex, PoisonError},
};

use lockstep_crds::{BackendSubjectAltName, BackendTls};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        ResolvesClientCert, WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
    sign::CertifiedKey,
};
use sha2::{Digest, Sha256};

use crate::certs::ClientCert;

/// Past this many distinct settings the cache starts over: settings come and go with the
/// RouterConfigs, and a setting still in use is simply built again.
const MAX_CACHED: usize = 256;

/// A client configuration for one `tls` setting and protocol.
#[derive(Debug)]
pub(crate) struct UpstreamTls {
    /// What the handshake uses.
    pub config: Arc<ClientConfig>,
    /// The SNI sent (`hostname`).
    pub server_name: ServerName<'static>,
    /// SHA-256 of the setting and protocol: pooled connections are kept per setting, so a
    /// connection verified one way never serves a backend that asks for another.
    digest: [u8; 32],
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for UpstreamTls {}

impl Hash for UpstreamTls {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

/// What one client configuration is built for: the setting, whether h2 is offered, and the
/// hash of the client certificate's material.
type SettingKey = (BackendTls, bool, Option<String>);

/// The configurations built so far, by [`SettingKey`].
#[derive(Debug, Default)]
pub(crate) struct TlsCache {
    built: Mutex<HashMap<SettingKey, Arc<UpstreamTls>>>,
}

impl TlsCache {
    /// The configuration for `tls`, offering `h2` by ALPN when `h2` is true and presenting
    /// `client` when the upstream asks for a certificate.
    pub(crate) fn get(
        &self,
        tls: &BackendTls,
        h2: bool,
        client: Option<&ClientCert>,
    ) -> Result<Arc<UpstreamTls>, String> {
        let key = (tls.clone(), h2, client.map(|c| c.hash.clone()));
        if let Some(found) = self
            .built
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(found.clone());
        }
        let built = Arc::new(build(tls, h2, client)?);
        let mut map = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        map.insert(key, built.clone());
        Ok(built)
    }
}

/// Builds the client configuration of one setting; the error says what is unusable.
pub(crate) fn build(tls: &BackendTls, h2: bool, client: Option<&ClientCert>) -> Result<UpstreamTls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &tls.ca_certificates {
        Some(pem) => {
            for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("caCertificates: {e}"))?;
                roots.add(cert).map_err(|e| format!("caCertificates: {e}"))?;
            }
            if roots.is_empty() {
                return Err("caCertificates holds no PEM certificate".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("caCertificates: {e}"))?;
    let verifier = Verifier {
        inner,
        subject_alt_names: tls.subject_alt_names.clone(),
        provider: provider.clone(),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match client {
        Some(client) => builder.with_client_cert_resolver(Arc::new(Presents(client.certified.clone()))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![if h2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    let server_name = ServerName::try_from(tls.hostname.clone())
        .map_err(|e| format!("hostname {:?}: {e}", tls.hostname))?;
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(tls).expect("a BackendTls serialises"));
    hasher.update([u8::from(h2)]);
    if let Some(client) = client {
        hasher.update(client.hash.as_bytes());
    }
    Ok(UpstreamTls {
        config: Arc::new(config),
        server_name,
        digest: hasher.finalize().into(),
    })
}

/// Presents one certificate whenever the upstream asks for one, whatever CAs it names: the
/// upstream decides whether it accepts it (a Gateway names one client certificate for all its
/// backends).
#[derive(Debug)]
struct Presents(Arc<CertifiedKey>);

impl ResolvesClientCert for Presents {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The web PKI verification of the chain, then the name check `tls` asks for.
#[derive(Debug)]
struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    subject_alt_names: Vec<BackendSubjectAltName>,
    provider: Arc<CryptoProvider>,
}

fn wrong_name(error: &rustls::Error) -> bool {
    matches!(
        error,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

/// The URI names of a DER certificate (none when it does not parse).
fn uri_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(sans)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    sans.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let named = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        if self.subject_alt_names.is_empty() {
            return named;
        }
        // With subjectAltNames the SNI name is not checked, only the chain (webpki checks it
        // before the name, so a wrong name alone means the chain is good).
        match named {
            Ok(_) => {}
            Err(e) if wrong_name(&e) => {}
            Err(e) => return Err(e),
        }
        let uris = uri_names(end_entity);
        let matches = |san: &BackendSubjectAltName| match (&san.hostname, &san.uri) {
            (Some(host), _) => ServerName::try_from(host.as_str()).is_ok_and(|name| {
                self.inner
                    .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
                    .is_ok()
            }),
            (None, Some(uri)) => uris.iter().any(|u| u == uri),
            (None, None) => false,
        };
        if self.subject_alt_names.iter().any(matches) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
