//! BackendTLSPolicy: which Service ports a Gateway's fleet reaches over TLS, verified how,
//! and each policy's status towards a Gateway whose routes use one of its targets.
//!
//! | policy | its status (per Gateway) | requests to its target |
//! |---|---|---|
//! | every CA reference a ConfigMap with PEM certificates under `ca.crt` (or `wellKnownCACertificates: System`) | `Accepted=True`, `ResolvedRefs=True` | over TLS: SNI `hostname`, the chain verified against those CAs, the certificate valid for `hostname` or carrying one of `subjectAltNames` |
//! | some CA references unusable, one usable | `Accepted=True`, `ResolvedRefs=False` (`InvalidKind` or `InvalidCACertificateRef`) | over TLS with the usable ones |
//! | no usable CA reference | `Accepted=False NoValidCACertificate`, `ResolvedRefs=False` (the first bad reference's reason) | answered 500: never in cleartext to a backend that asked for TLS |
//! | another policy, older (then first by namespace/name), targets the same Service and `sectionName` | `Accepted=False Conflicted` | as the older policy says |
//!
//! A CA reference is unusable when it is not a core ConfigMap (`InvalidKind`), or the
//! ConfigMap does not exist or holds no PEM certificate under `ca.crt`
//! (`InvalidCACertificateRef`). A policy with a `sectionName` (a Service port name) applies to
//! that port in preference to one without, which applies to every port of the Service.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use lockstep_crds::{
    BackendSubjectAltName, BackendTls,
    gateway::{BackendTLSPolicy, CONTROLLER_NAME, GROUP, ParentReference, PolicyAncestorStatus},
};

use super::{
    references::ResolvedService,
    rules::{ServedBackend, TranslatedRule, UNRESOLVED_STATUS},
    status::{condition, reason},
};
use crate::ObjectKey;

/// The ConfigMap key holding the CA certificates.
pub const CA_KEY: &str = "ca.crt";

/// One policy as judged on its own and against the others.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgedPolicy {
    /// The policy.
    pub key: ObjectKey,
    /// Its generation (the conditions' observedGeneration).
    pub generation: i64,
    /// The TLS its targets get; Err: none of its CA references is usable (requests to its
    /// targets are answered 500).
    pub tls: Result<BackendTls, ()>,
    /// ResolvedRefs=False: the reason and message of the unusable references.
    pub unresolved: Option<(&'static str, String)>,
    /// It loses a target to an older policy.
    pub conflicted: bool,
    /// (namespace, Service, sectionName) it targets.
    targets: Vec<(String, String, Option<String>)>,
}

/// Judges every policy: its CA references and the conflicts between policies.
pub fn judge(policies: &[BackendTLSPolicy], config_maps: &[ConfigMap]) -> Vec<JudgedPolicy> {
    let mut judged: Vec<(Option<Timestamp>, JudgedPolicy)> = policies
        .iter()
        .map(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                judge_one(p, config_maps),
            )
        })
        .collect();
    // Oldest first, then by namespace/name: the first claim of a target wins.
    judged.sort_by(|(a, pa), (b, pb)| (a, &pa.key).cmp(&(b, &pb.key)));
    let mut claimed: BTreeSet<(String, String, Option<String>)> = BTreeSet::new();
    for (_, j) in &mut judged {
        for t in &j.targets {
            if !claimed.insert(t.clone()) {
                j.conflicted = true;
            }
        }
    }
    judged.into_iter().map(|(_, j)| j).collect()
}

fn judge_one(policy: &BackendTLSPolicy, config_maps: &[ConfigMap]) -> JudgedPolicy {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let validation = &policy.spec.validation;
    let mut pems: Vec<String> = Vec::new();
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    for r in &validation.ca_certificate_refs {
        if !r.group.is_empty() || r.kind != "ConfigMap" {
            problems.push((
                reason::INVALID_KIND,
                format!(
                    "caCertificateRef {}: kind {:?} of group {:?} is not supported (only core ConfigMaps are)",
                    r.name, r.kind, r.group
                ),
            ));
            continue;
        }
        let pem = config_maps
            .iter()
            .find(|c| {
                c.metadata.namespace.as_deref() == Some(&namespace)
                    && c.metadata.name.as_deref() == Some(&r.name)
            })
            .and_then(|c| c.data.as_ref()?.get(CA_KEY))
            .filter(|pem| holds_certificates(pem));
        match pem {
            Some(pem) => pems.push(pem.clone()),
            None => problems.push((
                reason::INVALID_CA_CERTIFICATE_REF,
                format!(
                    "caCertificateRef {namespace}/{}: ConfigMap not found or without a PEM certificate in {CA_KEY}",
                    r.name
                ),
            )),
        }
    }
    let system = validation.well_known_ca_certificates.as_deref() == Some("System");
    let tls = (system || !pems.is_empty())
        .then(|| BackendTls {
            hostname: validation.hostname.clone(),
            ca_certificates: (!pems.is_empty()).then(|| pems.join("\n")),
            subject_alt_names: validation
                .subject_alt_names
                .iter()
                .map(|s| BackendSubjectAltName {
                    hostname: (s.type_ == "Hostname").then(|| s.hostname.clone()).flatten(),
                    uri: (s.type_ == "URI").then(|| s.uri.clone()).flatten(),
                })
                .filter(|s| s.hostname.is_some() || s.uri.is_some())
                .collect(),
            // The Gateway's, not the policy's: set where a listener is lowered.
            client_certificate_secret_name: None,
        })
        .ok_or(());
    let unresolved = problems.first().map(|(r, _)| {
        (
            *r,
            problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )
    });
    let targets = policy
        .spec
        .target_refs
        .iter()
        .filter(|t| t.group.is_empty() && t.kind == "Service")
        .map(|t| (namespace.clone(), t.name.clone(), t.section_name.clone()))
        .collect();
    JudgedPolicy {
        key: ObjectKey::new(namespace, policy.metadata.name.clone().unwrap_or_default()),
        generation: policy
            .metadata
            .generation
            .unwrap_or(lockstep_crds::DEFAULT_GENERATION),
        tls,
        unresolved,
        conflicted: false,
        targets,
    }
}

/// True when `pem` holds at least one PEM certificate that decodes.
fn holds_certificates(pem: &str) -> bool {
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes()).collect();
    !certs.is_empty() && certs.iter().all(Result::is_ok)
}

/// The name of Service port `port` of `service`, if the port has one.
fn port_name(services: &[Service], service: &ResolvedService) -> Option<String> {
    services
        .iter()
        .find(|s| {
            s.metadata.namespace.as_deref() == Some(&service.namespace)
                && s.metadata.name.as_deref() == Some(&service.name)
        })?
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.port == service.port)?
        .name
        .clone()
}

/// The policy that decides how `service` is reached (the winner of its port's name, else of
/// the whole Service), and every policy that targets it (winners and losers), by index.
fn policies_of(
    judged: &[JudgedPolicy],
    services: &[Service],
    service: &ResolvedService,
) -> (Option<usize>, Vec<usize>) {
    let name = port_name(services, service);
    let targets = |j: &JudgedPolicy, section: Option<&String>| {
        j.targets
            .iter()
            .any(|(ns, n, s)| ns == &service.namespace && n == &service.name && s.as_ref() == section)
    };
    let winner_of = |section: Option<&String>| {
        judged
            .iter()
            .position(|j| !j.conflicted && targets(j, section))
            // A policy that lost another target still wins this one if it is the oldest here.
            .or_else(|| judged.iter().position(|j| targets(j, section)))
    };
    let winner = name
        .as_ref()
        .and_then(|n| winner_of(Some(n)))
        .or_else(|| winner_of(None));
    let all = judged
        .iter()
        .enumerate()
        .filter(|(_, j)| targets(j, None) || name.as_ref().is_some_and(|n| targets(j, Some(n))))
        .map(|(i, _)| i)
        .collect();
    (winner, all)
}

/// Applies the policies to the backends of a route's rules: a Service port a policy decides
/// gets its TLS, or is answered 500 when the policy has no usable CA certificate. Records in
/// `used` every policy targeting one of them.
pub fn apply(
    rules: &mut [Result<TranslatedRule, super::rules::DroppedRule>],
    judged: &[JudgedPolicy],
    services: &[Service],
    used: &mut BTreeSet<usize>,
) {
    if judged.is_empty() {
        return;
    }
    for rule in rules.iter_mut().flatten() {
        for entry in &mut rule.entries {
            // A copy goes over TLS as the policy says, like the requests it copies; one to a
            // Service whose policy has no usable CA is not sent.
            if let Some(filters) = entry.filters.as_mut() {
                filters.mirrors.retain_mut(|m| {
                    let service = ResolvedService {
                        namespace: m.service.namespace.clone().unwrap_or_default(),
                        name: m.service.name.clone(),
                        port: m.service.port,
                        h2c: false,
                        tls: None,
                    };
                    let (winner, all) = policies_of(judged, services, &service);
                    used.extend(all);
                    match winner.map(|w| &judged[w].tls) {
                        None => true,
                        Some(Ok(tls)) => {
                            m.service.tls = Some(tls.clone());
                            true
                        }
                        Some(Err(())) => false,
                    }
                });
            }
            for backend in &mut entry.backends {
                let ServedBackend::Service { service, weight, .. } = backend else {
                    continue;
                };
                let (winner, all) = policies_of(judged, services, service);
                used.extend(all);
                let Some(winner) = winner else { continue };
                match &judged[winner].tls {
                    Ok(tls) => service.tls = Some(Box::new(tls.clone())),
                    Err(()) => {
                        *backend = ServedBackend::Status {
                            status: UNRESOLVED_STATUS,
                            weight: *weight,
                        }
                    }
                }
            }
        }
    }
}

/// A policy's status entry for Gateway `gateway` (namespace, name).
pub fn ancestor_status(policy: &JudgedPolicy, gateway: &ObjectKey, now: Timestamp) -> PolicyAncestorStatus {
    use super::status::condition as c;
    let generation = policy.generation;
    let accepted = if policy.conflicted {
        condition(
            c::ACCEPTED,
            false,
            reason::CONFLICTED,
            "an older BackendTLSPolicy targets the same Service port",
            generation,
            now,
        )
    } else if policy.tls.is_err() {
        condition(
            c::ACCEPTED,
            false,
            reason::NO_VALID_CA_CERTIFICATE,
            "no CA certificate reference can be used",
            generation,
            now,
        )
    } else {
        condition(c::ACCEPTED, true, reason::ACCEPTED, "", generation, now)
    };
    let resolved = match &policy.unresolved {
        None => condition(c::RESOLVED_REFS, true, reason::RESOLVED_REFS, "", generation, now),
        Some((r, message)) => condition(c::RESOLVED_REFS, false, r, message.clone(), generation, now),
    };
    PolicyAncestorStatus {
        ancestor_ref: ParentReference {
            group: Some(GROUP.to_owned()),
            kind: Some("Gateway".to_owned()),
            namespace: Some(gateway.namespace.clone()),
            name: gateway.name.clone(),
            section_name: None,
            port: None,
        },
        controller_name: CONTROLLER_NAME.to_owned(),
        conditions: vec![accepted, resolved],
    }
}

/// The statuses of the policies `used` towards `gateway`, by policy.
pub fn statuses(
    judged: &[JudgedPolicy],
    used: &BTreeSet<usize>,
    gateway: &ObjectKey,
    now: Timestamp,
) -> BTreeMap<ObjectKey, PolicyAncestorStatus> {
    used.iter()
        .map(|&i| (judged[i].key.clone(), ancestor_status(&judged[i], gateway, now)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn now() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    /// A policy in `infra`, created at `created`, of `spec` (flow YAML).
    fn policy(name: &str, created: &str, spec: &str) -> BackendTLSPolicy {
        yaml(&format!(
            "metadata: {{name: {name}, namespace: infra, generation: 4, creationTimestamp: \"{created}\"}}\nspec: {spec}"
        ))
    }

    fn config_maps() -> Vec<ConfigMap> {
        let (pem, _) = crate::test_certs::mk_cert(&["ca.example.com"], crate::test_certs::VALID);
        let mut good: ConfigMap = yaml("metadata: {name: ca, namespace: infra}");
        good.data = Some([(CA_KEY.to_owned(), pem)].into());
        let garbage: ConfigMap =
            yaml("metadata: {name: garbage, namespace: infra}\ndata: {ca.crt: not a certificate}");
        let empty: ConfigMap = yaml("metadata: {name: empty, namespace: infra}\ndata: {}");
        vec![good, garbage, empty]
    }

    fn with_ca(refs: &str) -> String {
        format!(
            "{{targetRefs: [{{group: \"\", kind: Service, name: web}}], validation: {{hostname: abc.example.com, caCertificateRefs: {refs}}}}}"
        )
    }

    fn conditions(p: &JudgedPolicy) -> Vec<(String, String, String)> {
        ancestor_status(p, &ObjectKey::new("infra", "gw"), now())
            .conditions
            .into_iter()
            .map(|c| (c.type_, c.status, c.reason))
            .collect()
    }

    /// A condition as (type, status, reason).
    type Cond = (String, String, String);
    /// A policy as (name, creationTimestamp, sectionName).
    type Made<'a> = (&'a str, &'a str, Option<&'a str>);

    fn c(t: &str, s: &str, r: &str) -> (String, String, String) {
        (t.into(), s.into(), r.into())
    }

    #[test]
    fn ca_certificate_references_decide_accepted_and_resolved_refs() {
        // BackendTLSPolicy conditions (v1.6.3): "NoValidCACertificate ... when all
        // CACertificateRefs are invalid"; ResolvedRefs "InvalidKind" for an unsupported kind,
        // "InvalidCACertificateRef" for a reference that "does not exist or ... is malformed".
        let cm = r#"{group: "", kind: ConfigMap, name: ca}"#;
        let missing = r#"{group: "", kind: ConfigMap, name: gone}"#;
        let garbage = r#"{group: "", kind: ConfigMap, name: garbage}"#;
        let empty = r#"{group: "", kind: ConfigMap, name: empty}"#;
        let kind = r#"{group: invalid.io, kind: InvalidKind, name: ca}"#;
        let rows: &[(String, bool, [Cond; 2])] = &[
            (
                format!("[{cm}]"),
                true,
                [
                    c("Accepted", "True", "Accepted"),
                    c("ResolvedRefs", "True", "ResolvedRefs"),
                ],
            ),
            (
                format!("[{missing}]"),
                false,
                [
                    c("Accepted", "False", reason::NO_VALID_CA_CERTIFICATE),
                    c("ResolvedRefs", "False", reason::INVALID_CA_CERTIFICATE_REF),
                ],
            ),
            (
                format!("[{garbage}]"),
                false,
                [
                    c("Accepted", "False", reason::NO_VALID_CA_CERTIFICATE),
                    c("ResolvedRefs", "False", reason::INVALID_CA_CERTIFICATE_REF),
                ],
            ),
            (
                format!("[{empty}]"),
                false,
                [
                    c("Accepted", "False", reason::NO_VALID_CA_CERTIFICATE),
                    c("ResolvedRefs", "False", reason::INVALID_CA_CERTIFICATE_REF),
                ],
            ),
            (
                format!("[{kind}]"),
                false,
                [
                    c("Accepted", "False", reason::NO_VALID_CA_CERTIFICATE),
                    c("ResolvedRefs", "False", reason::INVALID_KIND),
                ],
            ),
            (
                // One usable reference: accepted, and ResolvedRefs names the other.
                format!("[{kind}, {cm}]"),
                true,
                [
                    c("Accepted", "True", "Accepted"),
                    c("ResolvedRefs", "False", reason::INVALID_KIND),
                ],
            ),
        ];
        for (refs, usable, want) in rows {
            let judged = judge(
                &[policy("p", "2026-01-01T00:00:00Z", &with_ca(refs))],
                &config_maps(),
            );
            assert_eq!(judged[0].tls.is_ok(), *usable, "{refs}");
            assert_eq!(conditions(&judged[0]), want.to_vec(), "{refs}");
            assert_eq!(judged[0].generation, 4);
        }
    }

    #[test]
    fn the_setting_carries_sni_the_ca_and_the_subject_alt_names() {
        let judged = judge(
            &[policy(
                "p",
                "2026-01-01T00:00:00Z",
                r#"{targetRefs: [{group: "", kind: Service, name: web}], validation: {hostname: abc.example.com, caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}], subjectAltNames: [{type: Hostname, hostname: a.example.com}, {type: URI, uri: "spiffe://a/b"}]}}"#,
            )],
            &config_maps(),
        );
        let tls = judged[0].tls.clone().expect("usable");
        assert_eq!(tls.hostname, "abc.example.com");
        assert!(tls.ca_certificates.expect("CA").contains("BEGIN CERTIFICATE"));
        assert_eq!(
            tls.subject_alt_names,
            [
                BackendSubjectAltName {
                    hostname: Some("a.example.com".into()),
                    uri: None
                },
                BackendSubjectAltName {
                    hostname: None,
                    uri: Some("spiffe://a/b".into())
                },
            ]
        );
        // wellKnownCACertificates: System, no ConfigMap: the proxy's built-in roots.
        let system = judge(
            &[policy(
                "p",
                "2026-01-01T00:00:00Z",
                r#"{targetRefs: [{group: "", kind: Service, name: web}], validation: {hostname: abc.example.com, wellKnownCACertificates: System}}"#,
            )],
            &[],
        );
        assert_eq!(system[0].tls.clone().expect("usable").ca_certificates, None);
    }

    fn targeting(section: Option<&str>) -> String {
        let section = section.map(|s| format!(", sectionName: {s}")).unwrap_or_default();
        format!(
            r#"{{targetRefs: [{{group: "", kind: Service, name: web{section}}}], validation: {{hostname: abc.example.com, caCertificateRefs: [{{group: "", kind: ConfigMap, name: ca}}]}}}}"#
        )
    }

    #[test]
    fn the_oldest_policy_of_a_target_wins_and_the_others_are_conflicted() {
        // BackendTLSPolicy: "If multiple BackendTLSPolicies target the same Service (and
        // section), the oldest ... by creation timestamp, then alphabetically by
        // {namespace}/{name}, is accepted; the others get Accepted=False Conflicted."
        let rows: &[(&[Made<'_>], &[&str])] = &[
            (
                &[
                    ("young", "2026-02-01T00:00:00Z", None),
                    ("old", "2026-01-01T00:00:00Z", None),
                ],
                &["young"],
            ),
            (
                &[
                    ("b", "2026-01-01T00:00:00Z", Some("https")),
                    ("a", "2026-01-01T00:00:00Z", Some("https")),
                ],
                &["b"],
            ),
            // A port and the whole Service are different targets.
            (
                &[
                    ("port", "2026-02-01T00:00:00Z", Some("https")),
                    ("service", "2026-01-01T00:00:00Z", None),
                ],
                &[],
            ),
        ];
        for (policies, conflicted) in rows {
            let objects: Vec<BackendTLSPolicy> = policies
                .iter()
                .map(|(n, created, section)| policy(n, created, &targeting(*section)))
                .collect();
            let judged = judge(&objects, &config_maps());
            let mut got: Vec<&str> = judged
                .iter()
                .filter(|j| j.conflicted)
                .map(|j| j.key.name.as_str())
                .collect();
            got.sort_unstable();
            assert_eq!(got, *conflicted, "{policies:?}");
            for j in judged.iter().filter(|j| j.conflicted) {
                assert_eq!(conditions(j)[0], c("Accepted", "False", reason::CONFLICTED));
            }
        }
    }

    fn served(service: &str, port: i32) -> ServedBackend {
        ServedBackend::Service {
            service: ResolvedService {
                namespace: "infra".into(),
                name: service.into(),
                port,
                h2c: false,
                tls: None,
            },
            weight: 3,
            request_headers: None,
        }
    }

    fn applied(policies: &[BackendTLSPolicy], backend: ServedBackend) -> (ServedBackend, BTreeSet<usize>) {
        let services: Vec<Service> = vec![yaml(
            "metadata: {name: web, namespace: infra}\nspec: {ports: [{name: https, port: 443}, {name: other, port: 8443}]}",
        )];
        let judged = judge(policies, &config_maps());
        let mut rules = vec![Ok(TranslatedRule {
            entries: vec![super::super::rules::RuleEntry {
                path: "/".into(),
                path_type: lockstep_crds::PathType::Prefix,
                matches: Default::default(),
                match_index: 0,
                filters: None,
                timeouts: None,
                backends: vec![backend],
            }],
            unresolved: Vec::new(),
        })];
        let mut used = BTreeSet::new();
        apply(&mut rules, &judged, &services, &mut used);
        let rule = rules.pop().expect("one").expect("kept");
        (rule.entries[0].backends[0].clone(), used)
    }

    fn hostname_of(b: &ServedBackend) -> Option<String> {
        match b {
            ServedBackend::Service { service, .. } => service.tls.as_ref().map(|t| t.hostname.clone()),
            ServedBackend::Status { .. } => None,
        }
    }

    #[test]
    fn a_port_policy_applies_to_its_port_and_a_service_policy_to_the_others() {
        let port = policy(
            "port",
            "2026-02-01T00:00:00Z",
            &targeting(Some("https")).replace("abc.example.com", "port.example.com"),
        );
        let service = policy("service", "2026-01-01T00:00:00Z", &targeting(None));
        let both = [port, service];
        let (b, used) = applied(&both, served("web", 443));
        assert_eq!(hostname_of(&b).as_deref(), Some("port.example.com"));
        assert_eq!(used.len(), 2, "both target the Service: both get a status");
        let (b, _) = applied(&both, served("web", 8443));
        assert_eq!(hostname_of(&b).as_deref(), Some("abc.example.com"));
        // Another Service: no TLS, no policy used.
        let (b, used) = applied(&both, served("api", 443));
        assert_eq!(hostname_of(&b), None);
        assert!(matches!(b, ServedBackend::Service { .. }));
        assert!(used.is_empty());
    }

    #[test]
    fn a_target_of_a_policy_without_usable_ca_is_answered_500_not_in_cleartext() {
        let bad = policy(
            "bad",
            "2026-01-01T00:00:00Z",
            &targeting(None).replace("name: ca}", "name: gone}"),
        );
        let (b, used) = applied(&[bad], served("web", 443));
        assert_eq!(
            b,
            ServedBackend::Status {
                status: UNRESOLVED_STATUS,
                weight: 3
            }
        );
        assert_eq!(used.len(), 1);
    }
}
