//! Client certificate validation of a Gateway's HTTPS listeners (`spec.tls.frontend`): which
//! validation each listener gets, and its status when the CA references do not resolve.
//!
//! A listener takes the `perPort` entry of its port, else `default`; HTTP listeners take
//! none (a `perPort` entry for an HTTP listener's port changes nothing for it).
//!
//! | HTTPS listener's validation | Accepted | ResolvedRefs | served with |
//! |---|---|---|---|
//! | none | (as before) | (as before) | no client certificate asked |
//! | every caCertificateRef resolves | (as before) | (as before) | the CA bundles, the mode |
//! | some resolve, some do not | True | False, the first failure's reason | nothing (as with an unresolved certificate) |
//! | none resolves | False `NoValidCACertificate` | False, the first failure's reason | nothing |
//!
//! The reasons per reference are [`super::references::resolve_ca_certificate`]'s:
//! `InvalidCACertificateKind`, `RefNotPermitted`, `InvalidCACertificateRef`. A listener whose
//! own certificate is already unresolved keeps that reason (it is the first problem).
//!
//! The Gateway gets `InsecureFrontendValidationMode=True ConfigurationChanged` while any entry,
//! `default` or `perPort`, says `mode: AllowInsecureFallback` ([`insecure_fallback`]).

use k8s_openapi::api::core::v1::ConfigMap;
use lockstep_crds::gateway::{FrontendTls, GROUP, Gateway, ReferenceGrant};

use super::{
    listeners::{ClientValidation, ListenerVerdict, Protocol},
    references::{Referrer, resolve_ca_certificate},
    status::reason,
};

/// `mode` of a validation.
pub const ALLOW_INSECURE_FALLBACK: &str = "AllowInsecureFallback";

/// The frontend TLS settings that apply to a listener of `port`.
fn settings_for(gw: &Gateway, port: i32) -> Option<&FrontendTls> {
    let frontend = gw.spec.tls.as_ref()?.frontend.as_ref()?;
    Some(
        frontend
            .per_port
            .iter()
            .find(|p| p.port == port)
            .map(|p| &p.tls)
            .unwrap_or(&frontend.default),
    )
}

/// Judges the frontend validation of every HTTPS listener of `gw` in place: sets
/// [`ListenerVerdict::client_validation`], and the conditions of the module table.
pub fn judge_frontend(
    gw: &Gateway,
    verdicts: &mut [ListenerVerdict],
    config_maps: &[ConfigMap],
    grants: &[ReferenceGrant],
) {
    let namespace = gw.metadata.namespace.as_deref().unwrap_or_default();
    let gateway = Referrer {
        group: GROUP,
        kind: "Gateway",
        namespace,
    };
    for v in verdicts
        .iter_mut()
        .filter(|v| v.protocol == Some(Protocol::Https) && v.not_accepted.is_none())
    {
        let Some(validation) = settings_for(gw, v.port).and_then(|t| t.validation.as_ref()) else {
            continue;
        };
        let mut bundles = Vec::new();
        let mut failures = Vec::new();
        for ca in &validation.ca_certificate_refs {
            match resolve_ca_certificate(ca, gateway, config_maps, grants) {
                Ok(bundle) => bundles.push(bundle),
                Err(e) => failures.push(e),
            }
        }
        if let Some(first) = failures.first() {
            let message = failures
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            let certificate_problem = v
                .unresolved
                .as_ref()
                .is_some_and(|(r, _)| *r != reason::INVALID_ROUTE_KINDS);
            if !certificate_problem {
                v.unresolved = Some((first.reason, message.clone()));
            }
            if bundles.is_empty() {
                v.not_accepted = Some((reason::NO_VALID_CA_CERTIFICATE, message));
                continue;
            }
        }
        if bundles.is_empty() {
            // caCertificateRefs is required (MinItems 1); an object that was never admitted
            // is refused the same way.
            v.not_accepted = Some((
                reason::NO_VALID_CA_CERTIFICATE,
                "frontend validation names no caCertificateRefs".into(),
            ));
            continue;
        }
        v.client_validation = Some(ClientValidation {
            ca_certificates: bundles.join("\n"),
            insecure_fallback: validation.mode.as_deref() == Some(ALLOW_INSECURE_FALLBACK),
        });
    }
}

/// Whether the Gateway's frontend validation lets clients through without a valid
/// certificate anywhere (`default` or a `perPort` entry says `AllowInsecureFallback`).
pub fn insecure_fallback(gw: &Gateway) -> bool {
    let Some(frontend) = gw.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return false;
    };
    std::iter::once(&frontend.default)
        .chain(frontend.per_port.iter().map(|p| &p.tls))
        .filter_map(|t| t.validation.as_ref())
        .any(|v| v.mode.as_deref() == Some(ALLOW_INSECURE_FALLBACK))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use lockstep_crds::gateway::{
        FrontendTlsConfig, FrontendTlsPort, FrontendTlsValidation, GatewaySpec, GatewayTlsConfig,
        ListenerTlsConfig, ObjectReference, SecretObjectReference,
    };

    use super::*;
    use crate::gateway::{listeners::judge_listeners, testutil::*};

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBfTCCASOgAwIBAgIUXJ0a\n-----END CERTIFICATE-----\n";

    fn config_map(ns: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    fn gateway() -> Gateway {
        let mut gw = Gateway::new("gw", GatewaySpec::default());
        gw.metadata.namespace = Some("infra".into());
        gw
    }

    /// An HTTPS listener presenting Secret `cert`.
    fn https(name: &str, port: i32) -> lockstep_crds::gateway::Listener {
        let mut l = listener(name, port, "HTTPS", Some(&format!("{name}.example.org")));
        l.tls = Some(ListenerTlsConfig {
            mode: None,
            certificate_refs: vec![SecretObjectReference {
                name: "cert".into(),
                ..Default::default()
            }],
        });
        l
    }

    fn ca_ref(kind: &str, name: &str, ns: Option<&str>) -> ObjectReference {
        ObjectReference {
            group: String::new(),
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(str::to_owned),
        }
    }

    fn validation(refs: Vec<ObjectReference>, mode: Option<&str>) -> FrontendTls {
        FrontendTls {
            validation: Some(FrontendTlsValidation {
                ca_certificate_refs: refs,
                mode: mode.map(str::to_owned),
            }),
        }
    }

    /// The conformance suite's GatewayInvalidFrontendClientCertificateValidation and
    /// GatewayFrontendInvalidDefaultClientCertificateValidation, as table rows: a valid
    /// default, per-port overrides that are missing, of another kind, or of another
    /// namespace without a grant; an HTTP listener whose port has an entry.
    #[test]
    fn each_https_listener_gets_its_ports_validation_or_the_standard_reason() {
        let mut gw = gateway();
        gw.spec.tls = Some(GatewayTlsConfig {
            frontend: Some(FrontendTlsConfig {
                default: validation(vec![ca_ref("ConfigMap", "ca", None)], None),
                per_port: vec![
                    FrontendTlsPort {
                        port: 7443,
                        tls: validation(vec![ca_ref("ConfigMap", "missing", None)], None),
                    },
                    FrontendTlsPort {
                        port: 8443,
                        tls: validation(vec![ca_ref("Service", "infra-backend-v2", None)], None),
                    },
                    FrontendTlsPort {
                        port: 6443,
                        tls: validation(vec![ca_ref("ConfigMap", "web-cm", Some("web"))], None),
                    },
                    FrontendTlsPort {
                        port: 5443,
                        tls: validation(
                            vec![
                                ca_ref("ConfigMap", "missing", None),
                                ca_ref("ConfigMap", "other-ca", None),
                            ],
                            Some(ALLOW_INSECURE_FALLBACK),
                        ),
                    },
                    FrontendTlsPort {
                        port: 4443,
                        tls: validation(vec![ca_ref("ConfigMap", "no-key", None)], None),
                    },
                    FrontendTlsPort {
                        port: 80,
                        tls: validation(vec![ca_ref("ConfigMap", "missing", None)], None),
                    },
                ],
            }),
            ..Default::default()
        });
        let secret = tls_secret("infra", "cert");
        gw.spec.listeners = vec![
            https("https", 443),
            https("unresolved", 7443),
            https("kind", 8443),
            https("grant", 6443),
            https("partial", 5443),
            https("nokey", 4443),
            listener("http", 80, "HTTP", None),
        ];
        let config_maps = [
            config_map("infra", "ca", &[("ca.crt", CA)]),
            config_map("infra", "other-ca", &[("ca.crt", CA)]),
            config_map("infra", "no-key", &[("tls.crt", CA)]),
            config_map("web", "web-cm", &[("ca.crt", CA)]),
        ];
        let mut verdicts = judge_listeners("infra", &gw.spec.listeners, &[secret], &[]);
        judge_frontend(&gw, &mut verdicts, &config_maps, &[]);
        let got: Vec<_> = verdicts
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.not_accepted.as_ref().map(|(r, _)| *r),
                    v.unresolved.as_ref().map(|(r, _)| *r),
                    v.client_validation.as_ref().map(|c| c.insecure_fallback),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("https", None, None, Some(false)),
                (
                    "unresolved",
                    Some(reason::NO_VALID_CA_CERTIFICATE),
                    Some(reason::INVALID_CA_CERTIFICATE_REF),
                    None
                ),
                (
                    "kind",
                    Some(reason::NO_VALID_CA_CERTIFICATE),
                    Some(reason::INVALID_CA_CERTIFICATE_KIND),
                    None
                ),
                (
                    "grant",
                    Some(reason::NO_VALID_CA_CERTIFICATE),
                    Some(reason::REF_NOT_PERMITTED),
                    None
                ),
                (
                    "partial",
                    None,
                    Some(reason::INVALID_CA_CERTIFICATE_REF),
                    Some(true)
                ),
                (
                    "nokey",
                    Some(reason::NO_VALID_CA_CERTIFICATE),
                    Some(reason::INVALID_CA_CERTIFICATE_REF),
                    None
                ),
                ("http", None, None, None),
            ]
        );
        assert_eq!(
            verdicts[0].client_validation.as_ref().unwrap().ca_certificates,
            CA
        );
        assert!(verdicts[0].serves());
        assert!(
            !verdicts[1].serves() && !verdicts[4].serves(),
            "ResolvedRefs=False is not served"
        );
        assert!(insecure_fallback(&gw));

        // A ReferenceGrant from Gateways of `infra` to ConfigMaps of `web` resolves it.
        let grant = grant("web", "Gateway", "infra", "", "ConfigMap", None);
        let mut verdicts = judge_listeners("infra", &gw.spec.listeners, &[tls_secret("infra", "cert")], &[]);
        judge_frontend(&gw, &mut verdicts, &config_maps, &[grant]);
        assert!(verdicts[3].serves(), "{:?}", verdicts[3]);
        assert!(verdicts[3].client_validation.is_some());
    }

    #[test]
    fn without_frontend_settings_nothing_changes_and_no_fallback_is_reported() {
        let mut gw = gateway();
        gw.spec.listeners = vec![https("https", 443)];
        let before = judge_listeners("infra", &gw.spec.listeners, &[tls_secret("infra", "cert")], &[]);
        let mut after = before.clone();
        judge_frontend(&gw, &mut after, &[], &[]);
        assert_eq!(before, after);
        assert!(!insecure_fallback(&gw));
    }
}
