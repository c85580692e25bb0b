//! Listener validity: which listeners of a Gateway lockstep can serve, with the kinds of
//! route each accepts and the certificates it presents.
//!
//! | listener | Accepted | ResolvedRefs | Conflicted | Programmed input |
//! |---|---|---|---|---|
//! | protocol other than HTTP/HTTPS | False `UnsupportedProtocol` | True | False | False `Invalid` |
//! | HTTPS with `tls.mode: Passthrough` | False `UnsupportedValue` | True | False | False `Invalid` |
//! | same port as a listener of another protocol | True | True | True `ProtocolConflict` | False `Invalid` |
//! | same port, protocol and host name as another | True | True | True `HostnameConflict` | False `Invalid` |
//! | an allowedRoutes kind lockstep does not serve, none it does | True | False `InvalidRouteKinds` | False | False `Invalid` |
//! | an allowedRoutes kind lockstep does not serve, beside one it does | True | False `InvalidRouteKinds` | False | True |
//! | a certificateRef not usable | True | False `InvalidCertificateRef` / `RefNotPermitted` | False | False `Invalid` |
//! | otherwise | True | True | False | True (then the barrier decides `Programmed`) |
//! | a ListenerSet's, on the port of an accepted listener of the Gateway or of an earlier ListenerSet, with another protocol or the same host name | False `ProtocolConflict` / `HostnameConflict` | | True, that reason | False, that reason |
//!
//! A listener whose Programmed input is False serves nothing; routes still attach to it and
//! count in `attachedRoutes` ("Listener or Route status does not impact successful
//! attachment").

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use lockstep_crds::gateway::{GROUP, Listener, ListenerStatus, ReferenceGrant, RouteGroupKind};

use super::{
    references::{Referrer, ResolvedSecret, resolve_certificate},
    status::{FleetProgress, condition, progress_condition, reason},
};

/// The route kinds lockstep serves on HTTP and HTTPS listeners, in `supportedKinds` order.
pub const ROUTE_KINDS: [&str; 2] = ["HTTPRoute", "GRPCRoute"];

/// A listener's protocol, as lockstep serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Plain HTTP/1.1 and h2c.
    Http,
    /// TLS terminated by the proxy, then HTTP.
    Https,
}

/// What lockstep concluded about one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerVerdict {
    /// The listener's name.
    pub name: String,
    /// Its port.
    pub port: i32,
    /// Its host name (None: any).
    pub hostname: Option<String>,
    /// Its protocol, when lockstep serves it.
    pub protocol: Option<Protocol>,
    /// Route kinds it accepts (valid ones only), for `supportedKinds` and attachment.
    pub kinds: Vec<RouteGroupKind>,
    /// Accepted=False with this reason and message.
    pub not_accepted: Option<(&'static str, String)>,
    /// Conflicted=True with this reason.
    pub conflict: Option<&'static str>,
    /// ResolvedRefs=False with this reason and message.
    pub unresolved: Option<(&'static str, String)>,
    /// The certificates it presents (HTTPS), in order.
    pub certificates: Vec<ResolvedSecret>,
    /// The client certificate validation the Gateway's `spec.tls.frontend` gives it (HTTPS):
    /// set by [`super::frontend::judge_frontend`].
    pub client_validation: Option<ClientValidation>,
}

/// The client certificate validation a listener is served with (decided by
/// [`super::frontend::judge_frontend`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientValidation {
    /// The PEM bundles of the CA references that resolved, joined: the trust anchors.
    pub ca_certificates: String,
    /// `mode: AllowInsecureFallback`: a connection without a valid certificate is let
    /// through.
    pub insecure_fallback: bool,
}

impl ListenerVerdict {
    /// True when the listener generates data-plane configuration: accepted, not conflicted,
    /// its certificates resolved, and at least one route kind it accepts. An unsupported
    /// kind listed beside a supported one does not stop it ("If both valid and invalid
    /// Route kinds are specified, the implementation MUST reference the valid Route kinds").
    pub fn serves(&self) -> bool {
        let refs_ok = match &self.unresolved {
            None => true,
            Some((r, _)) => *r == reason::INVALID_ROUTE_KINDS,
        };
        self.not_accepted.is_none() && self.conflict.is_none() && refs_ok && !self.kinds.is_empty()
    }
}

fn protocol_of(name: &str) -> Option<Protocol> {
    match name {
        "HTTP" => Some(Protocol::Http),
        "HTTPS" => Some(Protocol::Https),
        _ => None,
    }
}

/// Judges every listener of a Gateway in namespace `namespace`.
pub fn judge_listeners(
    namespace: &str,
    listeners: &[Listener],
    secrets: &[Secret],
    grants: &[ReferenceGrant],
) -> Vec<ListenerVerdict> {
    judge_groups(
        &[ListenerGroup {
            kind: "Gateway",
            namespace,
            listeners,
        }],
        secrets,
        grants,
    )
}

/// The listeners of one object that a Gateway serves: its own, or a ListenerSet's.
#[derive(Debug, Clone, Copy)]
pub struct ListenerGroup<'a> {
    /// `Gateway` or `ListenerSet`: who refers to the certificates.
    pub kind: &'a str,
    /// The object's namespace (a certificateRef's default, and the referrer's namespace).
    pub namespace: &'a str,
    /// Its listeners.
    pub listeners: &'a [Listener],
}

/// Judges the listeners of a Gateway (the first group) merged with those of its
/// ListenerSets (the other groups, in precedence order), as one list. Within a group the
/// conflicts of [`mark_conflicts`] hold; across groups the earlier listener wins: a listener
/// on the port of an accepted listener of an earlier group, with another protocol or the
/// same host name, is not accepted ([`mark_superseded`]).
pub fn judge_groups(
    groups: &[ListenerGroup<'_>],
    secrets: &[Secret],
    grants: &[ReferenceGrant],
) -> Vec<ListenerVerdict> {
    let mut all = Vec::new();
    let mut protocols = Vec::new();
    let mut group_of = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let referrer = Referrer {
            group: GROUP,
            kind: group.kind,
            namespace: group.namespace,
        };
        let mut verdicts: Vec<ListenerVerdict> = group
            .listeners
            .iter()
            .map(|l| judge_one(l, referrer, secrets, grants))
            .collect();
        mark_conflicts(&mut verdicts);
        all.extend(verdicts);
        protocols.extend(group.listeners.iter().map(|l| l.protocol.as_str()));
        group_of.extend(std::iter::repeat_n(g, group.listeners.len()));
    }
    mark_superseded(&mut all, &protocols, &group_of);
    all
}

fn judge_one(
    l: &Listener,
    referrer: Referrer<'_>,
    secrets: &[Secret],
    grants: &[ReferenceGrant],
) -> ListenerVerdict {
    let protocol = protocol_of(&l.protocol);
    let mut verdict = ListenerVerdict {
        name: l.name.clone(),
        port: l.port,
        hostname: l.hostname.clone(),
        protocol,
        kinds: Vec::new(),
        not_accepted: None,
        conflict: None,
        unresolved: None,
        certificates: Vec::new(),
        client_validation: None,
    };
    if protocol.is_none() {
        verdict.not_accepted = Some((
            reason::UNSUPPORTED_PROTOCOL,
            format!("protocol {} is not supported (HTTP and HTTPS are)", l.protocol),
        ));
        return verdict;
    }
    let (kinds, invalid_kind) = allowed_kinds(l);
    verdict.kinds = kinds;
    if protocol == Some(Protocol::Https) {
        let tls = l.tls.as_ref();
        if tls
            .and_then(|t| t.mode.as_deref())
            .is_some_and(|m| m != "Terminate")
        {
            verdict.not_accepted = Some((
                reason::UNSUPPORTED_VALUE,
                "tls.mode Passthrough is not supported on HTTPS listeners".into(),
            ));
            return verdict;
        }
        let refs = tls.map(|t| t.certificate_refs.as_slice()).unwrap_or_default();
        if refs.is_empty() {
            verdict.unresolved = Some((
                reason::INVALID_CERTIFICATE_REF,
                "an HTTPS listener needs tls.certificateRefs".into(),
            ));
        }
        for cert in refs {
            match resolve_certificate(cert, referrer, secrets, grants) {
                Ok(secret) => verdict.certificates.push(secret),
                Err(e) if verdict.unresolved.is_none() => verdict.unresolved = Some((e.reason, e.message)),
                Err(_) => {}
            }
        }
    }
    // A certificate problem is reported before a kind problem: it stops the listener
    // from serving, an unsupported kind beside supported ones does not.
    if let Some(kind) = invalid_kind
        && verdict.unresolved.is_none()
    {
        verdict.unresolved = Some((
            reason::INVALID_ROUTE_KINDS,
            format!("route kind {kind} is not supported on {} listeners", l.protocol),
        ));
    }
    verdict
}

/// The allowed route kinds of a listener: its `allowedRoutes.kinds` that lockstep serves,
/// or every kind it serves when none are listed; and the first listed kind it does not.
fn allowed_kinds(l: &Listener) -> (Vec<RouteGroupKind>, Option<String>) {
    let listed = l
        .allowed_routes
        .as_ref()
        .map(|a| a.kinds.as_slice())
        .unwrap_or_default();
    if listed.is_empty() {
        let all = ROUTE_KINDS
            .iter()
            .map(|k| RouteGroupKind {
                group: Some(GROUP.to_owned()),
                kind: (*k).to_owned(),
            })
            .collect();
        return (all, None);
    }
    let mut kinds = Vec::new();
    let mut invalid = None;
    for k in listed {
        let group = k.group.as_deref().unwrap_or(GROUP);
        if group == GROUP && ROUTE_KINDS.contains(&k.kind.as_str()) {
            let kind = RouteGroupKind {
                group: Some(GROUP.to_owned()),
                kind: k.kind.clone(),
            };
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        } else if invalid.is_none() {
            invalid = Some(format!("{group}/{}", k.kind));
        }
    }
    (kinds, invalid)
}

/// Marks listeners that cannot be told apart: on one port, two protocols
/// (`ProtocolConflict`), or one protocol and the same host name (`HostnameConflict`).
/// Gateway `spec.listeners`: "The set of listeners that all share a protocol value MUST
/// have _different_ values for _at least one_ of these fields to be distinct: HTTP, HTTPS,
/// TLS: Port, Hostname". Every listener involved is marked, as none can be chosen.
fn mark_conflicts(listeners: &mut [ListenerVerdict]) {
    let served: Vec<usize> = (0..listeners.len())
        .filter(|&i| listeners[i].protocol.is_some())
        .collect();
    let mut marks = vec![None; listeners.len()];
    for &i in &served {
        for &j in &served {
            if i == j || listeners[i].port != listeners[j].port {
                continue;
            }
            if listeners[i].protocol != listeners[j].protocol {
                marks[i] = Some(reason::PROTOCOL_CONFLICT);
            } else if listeners[i].hostname == listeners[j].hostname && marks[i].is_none() {
                marks[i] = Some(reason::HOSTNAME_CONFLICT);
            }
        }
    }
    for (l, mark) in listeners.iter_mut().zip(marks) {
        l.conflict = mark;
    }
}

/// ListenerSet `spec.listeners`: "Implementations MUST treat the parent Gateway as having
/// the merged list of all listeners from itself and attached ListenerSets using the
/// following precedence: 1. "parent" Gateway 2. ListenerSet ordered by creation time (oldest
/// first) 3. ListenerSet ordered alphabetically by "{namespace}/{name}"." A listener of a
/// later group on the port of an accepted listener of an earlier group, with another
/// protocol (compared as written, so an unsupported protocol conflicts too) or the same host
/// name, is not accepted and is conflicted, with that reason; the earlier one is untouched.
/// A listener superseded so is no longer accepted and supersedes nothing after it.
fn mark_superseded(listeners: &mut [ListenerVerdict], protocols: &[&str], group_of: &[usize]) {
    for i in 0..listeners.len() {
        let winner = (0..i).find_map(|j| {
            let (earlier, later) = (&listeners[j], &listeners[i]);
            if group_of[j] >= group_of[i] || earlier.not_accepted.is_some() || earlier.port != later.port {
                return None;
            }
            if protocols[j] != protocols[i] {
                Some((reason::PROTOCOL_CONFLICT, j))
            } else if earlier.hostname == later.hostname {
                Some((reason::HOSTNAME_CONFLICT, j))
            } else {
                None
            }
        });
        if let Some((why, j)) = winner {
            let message = format!(
                "listener {} on port {} takes precedence ({why})",
                listeners[j].name, listeners[j].port
            );
            listeners[i].not_accepted = Some((why, message));
            listeners[i].conflict = Some(why);
        }
    }
}

/// A listener's status: Accepted, Programmed (False `Invalid` when it cannot be served;
/// otherwise the barrier's judgement of the fleet, as the Gateway's: True only when every
/// live replica serves this generation, else False `Pending`), ResolvedRefs, Conflicted,
/// with `supportedKinds` and `attachedRoutes`.
pub fn listener_status(
    v: &ListenerVerdict,
    attached_routes: i32,
    fleet: Option<FleetProgress>,
    generation: i64,
    now: Timestamp,
) -> ListenerStatus {
    let accepted = match &v.not_accepted {
        None => condition(condition::ACCEPTED, true, reason::ACCEPTED, "", generation, now),
        Some((r, m)) => condition(condition::ACCEPTED, false, r, m.clone(), generation, now),
    };
    let resolved = match &v.unresolved {
        None => condition(
            condition::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "",
            generation,
            now,
        ),
        Some((r, m)) => condition(condition::RESOLVED_REFS, false, r, m.clone(), generation, now),
    };
    let conflicted = match v.conflict {
        None => condition(
            condition::CONFLICTED,
            false,
            reason::NO_CONFLICTS,
            "",
            generation,
            now,
        ),
        Some(r) => condition(
            condition::CONFLICTED,
            true,
            r,
            "another listener on this port cannot be told apart",
            generation,
            now,
        ),
    };
    // A listener that can be served is Programmed, like its Gateway, only once every live
    // replica of the fleet serves this generation; until then False `Pending`.
    let programmed = if v.serves() {
        progress_condition(
            condition::PROGRAMMED,
            fleet,
            reason::PROGRAMMED,
            Some(reason::PENDING),
            generation,
            now,
        )
    } else {
        // A listener another takes precedence over is not programmed for that reason (as the
        // conformance suite's ListenerSet conflict tests expect); otherwise `Invalid`.
        let why = match (&v.not_accepted, v.conflict) {
            (Some((r, _)), Some(c)) if *r == c => c,
            _ => reason::INVALID,
        };
        condition(
            condition::PROGRAMMED,
            false,
            why,
            "the listener is not served",
            generation,
            now,
        )
    };
    ListenerStatus {
        name: v.name.clone(),
        supported_kinds: v.kinds.clone(),
        attached_routes,
        conditions: vec![accepted, programmed, resolved, conflicted],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testutil::*;
    use lockstep_crds::gateway::{AllowedRoutes, ListenerTlsConfig, SecretObjectReference};

    fn https(name: &str, port: i32, host: Option<&str>, cert: &str) -> Listener {
        Listener {
            tls: Some(ListenerTlsConfig {
                certificate_refs: vec![SecretObjectReference {
                    name: cert.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..listener(name, port, "HTTPS", host)
        }
    }

    fn with_kinds(mut l: Listener, kinds: &[(&str, &str)]) -> Listener {
        l.allowed_routes = Some(AllowedRoutes {
            kinds: kinds
                .iter()
                .map(|(g, k)| RouteGroupKind {
                    group: Some((*g).into()),
                    kind: (*k).into(),
                })
                .collect(),
            ..Default::default()
        });
        l
    }

    type Row = (
        &'static str,
        Vec<Listener>,
        Vec<(Option<&'static str>, Option<&'static str>, Option<&'static str>)>,
    );

    #[test]
    fn listener_conditions() {
        let secrets = [tls_secret("infra", "cert")];
        // Each row: listeners, then per listener (Accepted=False reason, Conflicted=True
        // reason, ResolvedRefs=False reason).
        let rows: Vec<Row> = vec![
            // ListenerConditionAccepted: "a Listener with an unsupported protocol will never
            // generate any data plane config, and so will have Accepted set to `false.`"
            (
                "TCP is not served",
                vec![listener("tcp", 9000, "TCP", None)],
                vec![(Some(reason::UNSUPPORTED_PROTOCOL), None, None)],
            ),
            (
                "HTTP and HTTPS are",
                vec![listener("web", 80, "HTTP", None), https("tls", 443, None, "cert")],
                vec![(None, None, None), (None, None, None)],
            ),
            // ListenerReasonProtocolConflict: "multiple Listeners are specified with the same
            // Listener port number, but have conflicting protocol specifications."
            (
                "two protocols on one port",
                vec![listener("a", 80, "HTTP", None), https("b", 80, None, "cert")],
                vec![
                    (None, Some(reason::PROTOCOL_CONFLICT), None),
                    (None, Some(reason::PROTOCOL_CONFLICT), None),
                ],
            ),
            // ListenerReasonHostnameConflict: "multiple Listeners on the same port use
            // `example.com` in the hostname field."
            (
                "same port and host name",
                vec![
                    listener("a", 80, "HTTP", Some("example.com")),
                    listener("b", 80, "HTTP", Some("example.com")),
                ],
                vec![
                    (None, Some(reason::HOSTNAME_CONFLICT), None),
                    (None, Some(reason::HOSTNAME_CONFLICT), None),
                ],
            ),
            // Distinct by Hostname: "HTTP, HTTPS, TLS: Port, Hostname".
            (
                "same port, other host names",
                vec![
                    listener("a", 80, "HTTP", Some("a.example.com")),
                    listener("b", 80, "HTTP", Some("*.example.com")),
                    listener("c", 80, "HTTP", None),
                ],
                vec![(None, None, None), (None, None, None), (None, None, None)],
            ),
            // AllowedRoutes kinds: "If an implementation does not support or recognize this
            // resource type, it MUST set the "ResolvedRefs" condition to False for this
            // Listener with the "InvalidRouteKinds" reason."
            (
                "unknown route kind",
                vec![with_kinds(
                    listener("a", 80, "HTTP", None),
                    &[(GROUP, "FooRoute")],
                )],
                vec![(None, None, Some(reason::INVALID_ROUTE_KINDS))],
            ),
            (
                "TLSRoute on HTTP",
                vec![with_kinds(
                    listener("a", 80, "HTTP", None),
                    &[(GROUP, "HTTPRoute"), (GROUP, "TLSRoute")],
                )],
                vec![(None, None, Some(reason::INVALID_ROUTE_KINDS))],
            ),
            // ListenerReasonInvalidCertificateRef: "at least one TLS CertificateRef that is
            // invalid or does not exist."
            (
                "missing certificate",
                vec![https("tls", 443, None, "gone")],
                vec![(None, None, Some(reason::INVALID_CERTIFICATE_REF))],
            ),
        ];
        for (why, listeners, want) in rows {
            let got: Vec<_> = judge_listeners("infra", &listeners, &secrets, &[])
                .into_iter()
                .map(|v| (v.not_accepted.map(|n| n.0), v.conflict, v.unresolved.map(|u| u.0)))
                .collect();
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn supported_kinds_are_the_valid_subset() {
        // ListenerStatus supportedKinds: "If kinds are specified in Spec that are not
        // supported, they MUST NOT appear in this list ... If both valid and invalid Route
        // kinds are specified, the implementation MUST reference the valid Route kinds that
        // have been specified."
        let l = with_kinds(
            listener("a", 80, "HTTP", None),
            &[(GROUP, "HTTPRoute"), (GROUP, "FooRoute")],
        );
        let v = &judge_listeners("infra", &[l], &[], &[])[0];
        assert_eq!(
            v.kinds.iter().map(|k| k.kind.as_str()).collect::<Vec<_>>(),
            ["HTTPRoute"]
        );
        assert!(v.serves(), "the valid kind is still served");
        let only_invalid = with_kinds(listener("a", 80, "HTTP", None), &[(GROUP, "FooRoute")]);
        let v = &judge_listeners("infra", &[only_invalid], &[], &[])[0];
        assert!(v.kinds.is_empty() && !v.serves());
        let v = &judge_listeners("infra", &[listener("a", 80, "HTTP", None)], &[], &[])[0];
        assert_eq!(
            v.kinds.iter().map(|k| k.kind.as_str()).collect::<Vec<_>>(),
            ROUTE_KINDS
        );
        assert!(v.serves());
    }
}
