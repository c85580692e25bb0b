//! References across objects: ReferenceGrant, backend references and certificate
//! references, each resolved to what it points at or to the standard reason it cannot be.
//!
//! | reference | wrong group/kind | other namespace, no ReferenceGrant | target missing | resolved |
//! |---|---|---|---|---|
//! | route backendRef | `InvalidKind` | `RefNotPermitted` | `BackendNotFound` (also: port not on the Service) | the Service port, h2c when asked |
//! | listener certificateRef | `InvalidCertificateRef` | `RefNotPermitted` | `InvalidCertificateRef` (also: not a usable `kubernetes.io/tls` Secret) | the Secret |
//! | Gateway backend clientCertificateRef | `InvalidClientCertificateRef` | `RefNotPermitted` | `InvalidClientCertificateRef` (also: not a usable `kubernetes.io/tls` Secret) | the Secret |
//! | frontend validation caCertificateRef | `InvalidCACertificateKind` | `RefNotPermitted` | `InvalidCACertificateRef` (also: no `ca.crt`, or no PEM certificate in it) | the PEM bundle |
//!
//! The checks run in that order (kind, then permission, then existence), so a reference
//! that is not permitted never reveals whether its target exists.

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use lockstep_crds::gateway::{
    BackendObjectReference, ObjectReference, ReferenceGrant, SecretObjectReference,
};

use super::status::reason;

/// Who refers: the group, kind and namespace of the referring object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Referrer<'a> {
    /// API group (`gateway.networking.k8s.io`).
    pub group: &'a str,
    /// Kind (HTTPRoute, GRPCRoute, Gateway).
    pub kind: &'a str,
    /// Namespace of the referring object.
    pub namespace: &'a str,
}

/// True when a reference from `from` to the object `group/kind namespace/name` is allowed:
/// same namespace, or a ReferenceGrant in the target's namespace lists the referrer in
/// `from` and the target in `to`.
pub fn reference_permitted(
    grants: &[ReferenceGrant],
    from: Referrer<'_>,
    group: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> bool {
    if from.namespace == namespace {
        return true;
    }
    grants
        .iter()
        .filter(|g| g.metadata.namespace.as_deref() == Some(namespace))
        .any(|g| {
            g.spec
                .from
                .iter()
                .any(|f| f.group == from.group && f.kind == from.kind && f.namespace == from.namespace)
                && g.spec.to.iter().any(|t| {
                    t.group == group && t.kind == kind && t.name.as_deref().is_none_or(|n| n == name)
                })
        })
}

/// A backend reference resolved to a Service port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResolvedService {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// Service port number.
    pub port: i32,
    /// The port's appProtocol is `kubernetes.io/h2c`: reach it over HTTP/2 cleartext.
    pub h2c: bool,
    /// TLS to it, from the BackendTLSPolicy that applies ([`super::backend_tls`]); set after
    /// resolution (boxed: most backends have none, and it is the largest field).
    pub tls: Option<Box<lockstep_crds::BackendTls>>,
}

/// Why a reference could not be resolved: the standard reason and a message naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// `InvalidKind`, `RefNotPermitted`, `BackendNotFound`, `InvalidCertificateRef`.
    pub reason: &'static str,
    /// What was wrong, naming the reference.
    pub message: String,
}

fn unresolved(reason: &'static str, message: String) -> Unresolved {
    Unresolved { reason, message }
}

/// Resolves a route's backend reference. Only core Services are backends.
pub fn resolve_backend(
    backend: &BackendObjectReference,
    from: Referrer<'_>,
    services: &[Service],
    grants: &[ReferenceGrant],
) -> Result<ResolvedService, Unresolved> {
    let group = backend.group.as_deref().unwrap_or("");
    let kind = backend.kind.as_deref().unwrap_or("Service");
    let namespace = backend.namespace.as_deref().unwrap_or(from.namespace);
    let name = backend.name.as_str();
    if !group.is_empty() || kind != "Service" {
        return Err(unresolved(
            reason::INVALID_KIND,
            format!(
                "backendRef {name}: kind {kind:?} of group {group:?} is not supported (only core Services are)"
            ),
        ));
    }
    if !reference_permitted(grants, from, "", "Service", namespace, name) {
        return Err(unresolved(
            reason::REF_NOT_PERMITTED,
            format!(
                "backendRef {namespace}/{name}: no ReferenceGrant in namespace {namespace} allows {} from namespace {}",
                from.kind, from.namespace
            ),
        ));
    }
    let Some(service) = services.iter().find(|s| {
        s.metadata.namespace.as_deref() == Some(namespace) && s.metadata.name.as_deref() == Some(name)
    }) else {
        return Err(unresolved(
            reason::BACKEND_NOT_FOUND,
            format!("backendRef {namespace}/{name}: Service not found"),
        ));
    };
    let Some(port) = backend.port else {
        return Err(unresolved(
            reason::BACKEND_NOT_FOUND,
            format!("backendRef {namespace}/{name}: a Service backend needs a port"),
        ));
    };
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
    let Some(service_port) = ports.and_then(|ps| ps.iter().find(|p| p.port == port)) else {
        return Err(unresolved(
            reason::BACKEND_NOT_FOUND,
            format!("backendRef {namespace}/{name}: Service has no port {port}"),
        ));
    };
    Ok(ResolvedService {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        port,
        h2c: service_port.app_protocol.as_deref() == Some("kubernetes.io/h2c"),
        tls: None,
    })
}

/// A certificate reference resolved to a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResolvedSecret {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// The hash of its certificate and key as read ([`crate::digest::tls_secret_hash`], never
    /// the key itself): what every replica must present, folded into the digest the barrier
    /// expects ([`super::serve::ListenerPlan::tls`]).
    pub material: String,
}

/// Resolves a listener's certificate reference: a core Secret of type `kubernetes.io/tls`
/// with `tls.crt` and `tls.key`, in the Gateway's namespace or granted by a ReferenceGrant.
pub fn resolve_certificate(
    cert: &SecretObjectReference,
    from: Referrer<'_>,
    secrets: &[Secret],
    grants: &[ReferenceGrant],
) -> Result<ResolvedSecret, Unresolved> {
    resolve_tls_secret(
        cert,
        from,
        secrets,
        grants,
        "certificateRef",
        reason::INVALID_CERTIFICATE_REF,
    )
}

/// Resolves the certificate a Gateway presents to its TLS backends
/// (`spec.tls.backend.clientCertificateRef`): the same Secret a listener certificate must
/// be, judged in the same order, with the Gateway's own reason for an unusable one.
pub fn resolve_client_certificate(
    cert: &SecretObjectReference,
    from: Referrer<'_>,
    secrets: &[Secret],
    grants: &[ReferenceGrant],
) -> Result<ResolvedSecret, Unresolved> {
    resolve_tls_secret(
        cert,
        from,
        secrets,
        grants,
        "spec.tls.backend.clientCertificateRef",
        reason::INVALID_CLIENT_CERTIFICATE_REF,
    )
}

/// A reference to a `kubernetes.io/tls` Secret resolved, or why not: `field` names the
/// reference in messages, `invalid` is the reason for a wrong kind or an unusable Secret.
fn resolve_tls_secret(
    cert: &SecretObjectReference,
    from: Referrer<'_>,
    secrets: &[Secret],
    grants: &[ReferenceGrant],
    field: &str,
    invalid: &'static str,
) -> Result<ResolvedSecret, Unresolved> {
    let group = cert.group.as_deref().unwrap_or("");
    let kind = cert.kind.as_deref().unwrap_or("Secret");
    let namespace = cert.namespace.as_deref().unwrap_or(from.namespace);
    let name = cert.name.as_str();
    if !group.is_empty() || kind != "Secret" {
        return Err(unresolved(
            invalid,
            format!(
                "{field} {name}: kind {kind:?} of group {group:?} is not supported (only core Secrets are)"
            ),
        ));
    }
    if !reference_permitted(grants, from, "", "Secret", namespace, name) {
        return Err(unresolved(
            reason::REF_NOT_PERMITTED,
            format!(
                "{field} {namespace}/{name}: no ReferenceGrant in namespace {namespace} allows Gateways from namespace {}",
                from.namespace
            ),
        ));
    }
    let secret = secrets.iter().find(|s| {
        s.metadata.namespace.as_deref() == Some(namespace) && s.metadata.name.as_deref() == Some(name)
    });
    let usable = secret.is_some_and(|s| {
        s.type_.as_deref() == Some("kubernetes.io/tls")
            && ["tls.crt", "tls.key"].iter().all(|k| {
                s.data
                    .as_ref()
                    .is_some_and(|d| d.get(*k).is_some_and(|v| !v.0.is_empty()))
            })
    });
    if !usable {
        let what = if secret.is_some() {
            "is not a kubernetes.io/tls Secret with tls.crt and tls.key"
        } else {
            "not found"
        };
        return Err(unresolved(
            invalid,
            format!("{field} {namespace}/{name}: Secret {what}"),
        ));
    }
    // A certificate at all: PEM that parses and a key that matches (its validity period is
    // the serving side's judgement, which can change with time alone).
    let secret_name = format!("{namespace}/{name}");
    if let Some(Err(error)) = secret.map(|s| {
        crate::tls_material::secret_material(&secret_name, s)
            .and_then(|(crt, key)| crate::tls_material::parse(&secret_name, &crt, &key))
    }) {
        return Err(unresolved(invalid, format!("{field} {error}")));
    }
    Ok(ResolvedSecret {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        material: secret
            .and_then(crate::digest::tls_secret_hash)
            .unwrap_or_default(),
    })
}

/// Resolves a CA certificate reference of a Gateway's frontend validation
/// (`spec.tls.frontend...validation.caCertificateRefs`): a core ConfigMap whose `ca.crt`
/// holds at least one PEM certificate (Gateway API's core support), in the Gateway's
/// namespace or granted by a ReferenceGrant. Returns the bundle as written.
pub fn resolve_ca_certificate(
    ca: &ObjectReference,
    from: Referrer<'_>,
    config_maps: &[ConfigMap],
    grants: &[ReferenceGrant],
) -> Result<String, Unresolved> {
    let (group, kind, name) = (ca.group.as_str(), ca.kind.as_str(), ca.name.as_str());
    let namespace = ca.namespace.as_deref().unwrap_or(from.namespace);
    if !group.is_empty() || kind != "ConfigMap" {
        return Err(unresolved(
            reason::INVALID_CA_CERTIFICATE_KIND,
            format!(
                "caCertificateRef {name}: kind {kind:?} of group {group:?} is not supported (only core ConfigMaps are)"
            ),
        ));
    }
    if !reference_permitted(grants, from, "", "ConfigMap", namespace, name) {
        return Err(unresolved(
            reason::REF_NOT_PERMITTED,
            format!(
                "caCertificateRef {namespace}/{name}: no ReferenceGrant in namespace {namespace} allows Gateways from namespace {}",
                from.namespace
            ),
        ));
    }
    let config_map = config_maps.iter().find(|c| {
        c.metadata.namespace.as_deref() == Some(namespace) && c.metadata.name.as_deref() == Some(name)
    });
    let Some(config_map) = config_map else {
        return Err(unresolved(
            reason::INVALID_CA_CERTIFICATE_REF,
            format!("caCertificateRef {namespace}/{name}: ConfigMap not found"),
        ));
    };
    let bundle = config_map.data.as_ref().and_then(|d| d.get("ca.crt"));
    let certificates = bundle.map(|b| {
        rustls_pemfile::certs(&mut b.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map(|c| c.len())
    });
    match (bundle, certificates) {
        (Some(bundle), Some(Ok(n))) if n > 0 => Ok(bundle.clone()),
        (None, _) => Err(unresolved(
            reason::INVALID_CA_CERTIFICATE_REF,
            format!("caCertificateRef {namespace}/{name}: the ConfigMap has no key ca.crt"),
        )),
        _ => Err(unresolved(
            reason::INVALID_CA_CERTIFICATE_REF,
            format!("caCertificateRef {namespace}/{name}: ca.crt holds no PEM certificate"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testutil::*;

    const ROUTE: Referrer<'static> = Referrer {
        group: "gateway.networking.k8s.io",
        kind: "HTTPRoute",
        namespace: "apps",
    };

    fn backend(ns: Option<&str>, name: &str, port: Option<i32>) -> BackendObjectReference {
        BackendObjectReference {
            namespace: ns.map(str::to_owned),
            name: name.to_owned(),
            port,
            ..Default::default()
        }
    }

    #[test]
    fn backend_references() {
        let services = [
            service("apps", "web", &[(8080, None)]),
            service("other", "api", &[(9000, Some("kubernetes.io/h2c"))]),
        ];
        let grant_all = grant("other", "HTTPRoute", "apps", "", "Service", None);
        let grant_named = grant("other", "HTTPRoute", "apps", "", "Service", Some("api"));
        let grant_wrong_kind = grant("other", "GRPCRoute", "apps", "", "Service", None);
        let grant_elsewhere = grant("apps", "HTTPRoute", "apps", "", "Service", None);
        let mut kind_cm = backend(None, "web", Some(8080));
        kind_cm.kind = Some("ConfigMap".into());
        let mut group_x = backend(None, "web", Some(8080));
        group_x.group = Some("example.com".into());
        type Row<'a> = (
            &'a str,
            BackendObjectReference,
            Vec<ReferenceGrant>,
            Result<(&'a str, bool), &'static str>,
        );
        let rows: Vec<Row> = vec![
            // HTTPBackendRef: "It refers to an unknown or unsupported kind of resource. In
            // this case, the Reason must be set to `InvalidKind`".
            ("unsupported kind", kind_cm, vec![], Err(reason::INVALID_KIND)),
            ("unsupported group", group_x, vec![], Err(reason::INVALID_KIND)),
            // "It refers to a resource that does not exist. In this case, the Reason must be
            // set to `BackendNotFound`".
            (
                "missing Service",
                backend(None, "gone", Some(8080)),
                vec![],
                Err(reason::BACKEND_NOT_FOUND),
            ),
            (
                "port not on the Service",
                backend(None, "web", Some(81)),
                vec![],
                Err(reason::BACKEND_NOT_FOUND),
            ),
            (
                "same namespace",
                backend(None, "web", Some(8080)),
                vec![],
                Ok(("apps/web", false)),
            ),
            // "It refers a resource in another namespace when the reference has not been
            // explicitly allowed by a ReferenceGrant ... the Reason must be set to
            // `RefNotPermitted`".
            (
                "other namespace, no grant",
                backend(Some("other"), "api", Some(9000)),
                vec![],
                Err(reason::REF_NOT_PERMITTED),
            ),
            // ReferenceGrant: "identifies kinds of resources in other namespaces that are
            // trusted to reference the specified kinds of resources in the same namespace
            // as the policy"; `to.name`: "When unspecified, this policy refers to all
            // resources of the specified Group and Kind in the local namespace."
            (
                "grant for every Service",
                backend(Some("other"), "api", Some(9000)),
                vec![grant_all],
                Ok(("other/api", true)),
            ),
            (
                "grant naming the Service",
                backend(Some("other"), "api", Some(9000)),
                vec![grant_named.clone()],
                Ok(("other/api", true)),
            ),
            (
                "grant naming another Service",
                backend(Some("other"), "db", Some(9000)),
                vec![grant_named],
                Err(reason::REF_NOT_PERMITTED),
            ),
            (
                "grant for another route kind",
                backend(Some("other"), "api", Some(9000)),
                vec![grant_wrong_kind],
                Err(reason::REF_NOT_PERMITTED),
            ),
            // "MUST NOT permit cross-namespace references which have no grant": one in
            // the referrer's namespace grants nothing.
            (
                "grant in the referrer's namespace",
                backend(Some("other"), "api", Some(9000)),
                vec![grant_elsewhere],
                Err(reason::REF_NOT_PERMITTED),
            ),
            // A permitted reference to a missing Service is BackendNotFound.
            (
                "granted but missing",
                backend(Some("other"), "gone", Some(1)),
                vec![grant("other", "HTTPRoute", "apps", "", "Service", None)],
                Err(reason::BACKEND_NOT_FOUND),
            ),
        ];
        for (why, b, grants, want) in rows {
            let got = resolve_backend(&b, ROUTE, &services, &grants)
                .map(|r| (format!("{}/{}", r.namespace, r.name), r.h2c))
                .map_err(|u| u.reason);
            let want = want.map(|(k, h)| (k.to_owned(), h));
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn certificate_references() {
        const GW: Referrer<'static> = Referrer {
            group: "gateway.networking.k8s.io",
            kind: "Gateway",
            namespace: "infra",
        };
        // The conformance suite's malformed-certificate: "Hello world" as both PEMs.
        let mut malformed = tls_secret("infra", "malformed");
        for v in malformed.data.as_mut().unwrap().values_mut() {
            v.0 = b"Hello world\n".to_vec();
        }
        let secrets = [
            tls_secret("infra", "cert"),
            tls_secret("certs", "shared"),
            opaque_secret("infra", "opaque"),
            malformed,
        ];
        let cert = |ns: Option<&str>, name: &str| SecretObjectReference {
            namespace: ns.map(str::to_owned),
            name: name.to_owned(),
            ..Default::default()
        };
        let mut cm = cert(None, "cert");
        cm.kind = Some("ConfigMap".into());
        type Row<'a> = (
            &'a str,
            SecretObjectReference,
            Vec<ReferenceGrant>,
            Result<(), &'a str>,
        );
        let rows: Vec<Row> = vec![
            ("same namespace", cert(None, "cert"), vec![], Ok(())),
            // ListenerReasonInvalidCertificateRef: "A CertificateRef is considered invalid
            // when it refers to a nonexistent or unsupported resource or kind, or when the
            // data within that resource is malformed."
            (
                "unsupported kind",
                cm,
                vec![],
                Err(reason::INVALID_CERTIFICATE_REF),
            ),
            // "Support: Core - A single reference to a Kubernetes Secret of type
            // kubernetes.io/tls"; anything else is InvalidCertificateRef (above).
            (
                "missing Secret",
                cert(None, "gone"),
                vec![],
                Err(reason::INVALID_CERTIFICATE_REF),
            ),
            (
                "malformed data",
                cert(None, "malformed"),
                vec![],
                Err(reason::INVALID_CERTIFICATE_REF),
            ),
            (
                "not a TLS Secret",
                cert(None, "opaque"),
                vec![],
                Err(reason::INVALID_CERTIFICATE_REF),
            ),
            // "References to a resource in different namespace are invalid UNLESS there is
            // a ReferenceGrant in the target namespace that allows the certificate to be
            // attached. If a ReferenceGrant does not allow this reference, the
            // "ResolvedRefs" condition MUST be set to False for this listener with the
            // "RefNotPermitted" reason."
            (
                "other namespace, no grant",
                cert(Some("certs"), "shared"),
                vec![],
                Err(reason::REF_NOT_PERMITTED),
            ),
            (
                "other namespace, granted",
                cert(Some("certs"), "shared"),
                vec![grant("certs", "Gateway", "infra", "", "Secret", None)],
                Ok(()),
            ),
        ];
        for (why, c, grants, want) in rows {
            let got = resolve_certificate(&c, GW, &secrets, &grants)
                .map(|_| ())
                .map_err(|u| u.reason);
            assert_eq!(got, want, "{why}");
        }
    }
}
