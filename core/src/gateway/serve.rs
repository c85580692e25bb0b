//! Serving a Gateway with an existing fleet: which fleet, what RouterConfigs are generated
//! for it, and what the barrier's judgement of those RouterConfigs means for the Gateway's
//! `Programmed`, each listener's `Programmed` and each route parent's `lockstep.dev/Ready`.
//!
//! A Gateway names an existing fleet with the annotation [`FLEET_ANNOTATION`] (lockstep's
//! hand-derived Gateway types read no `spec.infrastructure`); without it the operator
//! provisions a fleet of its own ([`super::provision`]) and passes its name here. Each served listener is lowered on its own ([`super::lower`]) into one
//! generated RouterConfig named [`generated_name`], which records in its annotations the
//! Gateway generation ([`GATEWAY_GENERATION_ANNOTATION`]) and the route generations
//! ([`ROUTES_ANNOTATION`], uid to generation) it was generated from, written in the same apply
//! as its spec.
//!
//! | listener | generated RouterConfig | listener `Programmed` |
//! |---|---|---|
//! | no fleet named | none | False `Pending`, "no fleet is named" |
//! | lowers without gaps, has entries | applied | True only when the RouterConfig records this Gateway generation and is `Ready` at its own current generation; else False `Pending` with the barrier's words |
//! | lowers with gaps | not applied: the last one applied stays (replicas keep serving it) | False `Invalid`, naming each gap |
//! | no entries (no route attached) | deleted | True: there is nothing to serve |
//!
//! A route parent's `lockstep.dev/Ready` at route generation g is True only when every
//! listener carrying the route has a RouterConfig whose record says it contains the route at
//! generation g and which is `Ready` at its current generation: a route edit that does not
//! change the lowered spec gives no new RouterConfig generation, and the record then says
//! that the RouterConfig's current generation serves route generation g.
//!
//! A certificate change (new data in a listener's Secret) changes no generation, of the
//! Gateway or of the RouterConfig. It changes the `configDigest` every replica reports (over
//! the spec and the hashes of the certificates it names): a generated RouterConfig counts as
//! served only when `Ready` at its current generation **and** every replica report carries the
//! digest of the spec with the certificates as the translation read them
//! ([`ListenerPlan::tls`]). So `Programmed` does not stand on a `Ready` the RouterConfig
//! controller judged before it saw the change.
//!
//! A certificate of another namespace (allowed by a ReferenceGrant) cannot be named by a
//! RouterConfig, whose Secrets are of its own namespace, and the replicas read Secrets only of
//! the namespaces they serve: the operator copies it into the Gateway's namespace
//! ([`CertificateCopy`], named [`certificate_copy_name`]) and the generated RouterConfig names
//! the copy.
//!
//! Pure: the operator gathers the RouterConfigs and writes what these functions decide.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use lockstep_crds::{RouterConfig, RouterConfigSpec, condition as rc_condition, reason as rc_reason};
use sha2::{Digest, Sha256};

use super::{
    GatewayConfig, ServedListener, Translation, hostnames,
    listeners::Protocol,
    lower::{Gap, router_config_spec},
    references::ResolvedSecret,
    status::{self, FleetProgress, condition, gateway_programmed, reason, route_ready},
};

/// Annotation on a Gateway naming the existing fleet that serves it.
pub const FLEET_ANNOTATION: &str = "lockstep.dev/fleet";
/// Label on every generated RouterConfig (value [`GENERATED_BY_GATEWAY`]), for the watch.
pub const GENERATED_LABEL: &str = lockstep_crds::GENERATED_FROM_LABEL;
/// Value of [`GENERATED_LABEL`].
pub const GENERATED_BY_GATEWAY: &str = "Gateway";
/// Annotation on a generated RouterConfig: the listener it serves.
pub const LISTENER_ANNOTATION: &str = "lockstep.dev/listener";
/// Annotation on a generated RouterConfig: the Gateway generation it was generated from.
pub const GATEWAY_GENERATION_ANNOTATION: &str = "lockstep.dev/gateway-generation";
/// Annotation on a generated RouterConfig: the routes it contains, a JSON object of route
/// uid to route generation.
pub const ROUTES_ANNOTATION: &str = "lockstep.dev/routes";
/// Annotation on a generated RouterConfig: the digest of the spec it was generated with
/// ([`spec_digest`]), written in the same apply as the spec. A ReferenceGrant, a Service or
/// a Secret appearing changes what a listener lowers to without changing any route or
/// Gateway generation; the judgement compares this digest with the plan's, so a RouterConfig
/// still holding the previous lowering does not count as serving the route.
pub const SPEC_DIGEST_ANNOTATION: &str = "lockstep.dev/spec-digest";
/// Annotation on a certificate copy: the `namespace/name` of the Secret it copies.
pub const SOURCE_SECRET_ANNOTATION: &str = "lockstep.dev/source-secret";

/// Reasons of `lockstep.dev/Ready` False beyond the barrier's own.
pub mod ready_reason {
    /// The Gateway names no fleet.
    pub const NO_FLEET: &str = "NoFleet";
    /// A listener carrying the route cannot be lowered to a RouterConfig yet.
    pub const UNSERVABLE: &str = "Unservable";
    /// No served listener of the Gateway carries the route.
    pub const NOT_SERVED: &str = "NotServed";
    /// The generated RouterConfig carrying the route is not accepted by the operator.
    pub const CONFIG_NOT_ACCEPTED: &str = "ConfigNotAccepted";
}

/// The fleet a Gateway names: None without the annotation, Err with a message when its value
/// is not a fleet name.
pub fn fleet_of(meta: &ObjectMeta) -> Option<Result<String, String>> {
    let value = meta.annotations.as_ref()?.get(FLEET_ANNOTATION)?;
    // A fleet name is a DNS label, the rule the RouterConfig schema states for `spec.fleet`.
    let valid = lockstep_crds::patterns::DNS_LABEL_RE.is_match(value);
    Some(if valid {
        Ok(value.clone())
    } else {
        Err(format!(
            "annotation {FLEET_ANNOTATION}={value:?} is not a fleet name (a DNS label of at most 63 characters)"
        ))
    })
}

/// The name of the RouterConfig generated for `listener` of Gateway `gateway`:
/// `<gateway>-<listener>-<hash>`, the hash (8 hex digits of SHA-256 over both names) keeping
/// names apart that the dash would join alike, both names shortened when the whole would
/// pass the 253 characters of an object name. A ListenerSet's listener is named by its key
/// (`namespace/set/listener`, [`super::listener_sets::listener_key`]), written with dots
/// (`/` has no place in a name; the hash is over the key, so it stays apart from a Gateway
/// listener named `namespace.set.listener`).
pub fn generated_name(gateway: &str, listener: &str) -> String {
    joined_name(gateway, listener)
}

/// The name of the copy, in Gateway `gateway`'s namespace, of certificate Secret
/// `namespace/name` of another namespace: `<gateway>-<namespace>.<name>-<hash>` (a namespace has no
/// dot, so the pair is read back unambiguously; the hash keeps apart what clipping joins).
pub fn certificate_copy_name(gateway: &str, namespace: &str, name: &str) -> String {
    joined_name(gateway, &format!("{namespace}.{name}"))
}

fn joined_name(gateway: &str, listener: &str) -> String {
    let hash = hex::encode(&Sha256::digest(format!("{gateway}\0{listener}").as_bytes())[..4]);
    let listener = listener.replace('/', ".");
    let listener = listener.as_str();
    let clip = |s: &str, n: usize| -> String {
        s.chars()
            .take(n)
            .collect::<String>()
            .trim_end_matches(['-', '.'])
            .to_owned()
    };
    // 253 = gateway + '-' + listener + '-' + 8.
    let room = 253 - 10;
    let (g, l) = if gateway.len() + listener.len() <= room {
        (gateway.to_owned(), listener.to_owned())
    } else {
        (clip(gateway, room / 2), clip(listener, room - room / 2))
    };
    format!("{g}-{l}-{hash}")
}

/// What becomes of one served listener.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Apply this spec.
    Publish(RouterConfigSpec),
    /// It cannot be lowered; each gap named.
    Gaps(Vec<Gap>),
    /// No entries: nothing to serve, no RouterConfig.
    Empty,
}

/// A certificate Secret of another namespace, copied into the Gateway's namespace for the
/// generated RouterConfig to name.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateCopy {
    /// The Secret the listener names (allowed by a ReferenceGrant).
    pub source: ResolvedSecret,
    /// The copy's name in the Gateway's namespace ([`certificate_copy_name`]).
    pub name: String,
}

/// The plan for one served listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerPlan {
    /// Listener name.
    pub listener: String,
    /// The generated RouterConfig's name.
    pub name: String,
    /// Route uid to the route generation its entries come from.
    pub routes: BTreeMap<String, i64>,
    /// Publish, gaps or empty.
    pub outcome: Outcome,
    /// Secret name the generated RouterConfig names to the hash of the certificate material
    /// the translation read for it (for a copy, its source's): with the RouterConfig's spec,
    /// the `configDigest` every replica must report ([`crate::config_digest`]).
    pub tls: BTreeMap<String, String>,
    /// Certificates of other namespaces to copy into the Gateway's namespace.
    pub copies: Vec<CertificateCopy>,
}

/// The plan for every served listener of `config` in `fleet`. Listeners of one port are kept
/// apart by host name ([`isolated`]); an HTTP and an HTTPS listener by the connection
/// (`table::Reach`: a generated rule answers plain HTTP or TLS connections, not both). A
/// fleet serves every listener of one protocol on its one port for that protocol, so a
/// listener whose host name overlaps that of a served listener of the same protocol and
/// another port cannot be kept apart from it ([`Gap::OverlappingListener`]).
pub fn plan(config: &GatewayConfig, fleet: &str) -> Vec<ListenerPlan> {
    let namespace = &config.gateway.namespace;
    let is_grpc = |i: usize| config.routes.get(i).is_some_and(|r| r.kind == "GRPCRoute");
    config
        .listeners
        .iter()
        .map(|l| {
            let (local, copies) = local_certificates(l, &config.gateway.name, namespace);
            let tls: BTreeMap<String, String> = local
                .as_ref()
                .unwrap_or(l)
                .certificates
                .iter()
                .map(|c| (c.name.clone(), c.material.clone()))
                .collect();
            let (lowered, shadowing) = isolated(local.as_ref().unwrap_or(l), &config.listeners);
            let mut routes = BTreeMap::new();
            for e in &lowered.entries {
                if let Some(r) = config.routes.get(e.route) {
                    routes.insert(r.uid.clone(), r.generation);
                }
            }
            let overlapping: Vec<&str> = config
                .listeners
                .iter()
                .filter(|o| {
                    o.port != l.port
                        && o.protocol == l.protocol
                        && overlap(o.hostname.as_deref(), l.hostname.as_deref())
                })
                .map(|o| o.name.as_str())
                .collect();
            let outcome = if lowered.entries.is_empty() {
                Outcome::Empty
            } else {
                match router_config_spec(&lowered, namespace, fleet, shadowing, &is_grpc) {
                    Ok(spec) if overlapping.is_empty() => Outcome::Publish(spec),
                    Ok(_) => Outcome::Gaps(
                        overlapping
                            .iter()
                            .map(|o| Gap::OverlappingListener((*o).to_owned()))
                            .collect(),
                    ),
                    Err(mut gaps) => {
                        gaps.extend(
                            overlapping
                                .iter()
                                .map(|o| Gap::OverlappingListener((*o).to_owned())),
                        );
                        gaps.sort();
                        gaps.dedup();
                        Outcome::Gaps(gaps)
                    }
                }
            };
            let (mut tls, mut copies) = (tls, copies);
            let outcome = match outcome {
                Outcome::Publish(spec) => present_client_certificate(spec, config, &mut tls, &mut copies),
                other => other,
            };
            let published = matches!(outcome, Outcome::Publish(_));
            ListenerPlan {
                listener: l.name.clone(),
                name: generated_name(&config.gateway.name, &l.name),
                routes,
                outcome,
                tls: if published { tls } else { BTreeMap::new() },
                copies: if published { copies } else { Vec::new() },
            }
        })
        .collect()
}

/// A published listener's spec with the Gateway's backend client certificate on every TLS
/// backend it reaches (its copy's name for one of another namespace), recorded in `tls` (for
/// the digest) and `copies`; a gap when that certificate cannot be resolved. A listener
/// with no TLS backend is untouched either way.
fn present_client_certificate(
    mut spec: RouterConfigSpec,
    config: &GatewayConfig,
    tls: &mut BTreeMap<String, String>,
    copies: &mut Vec<CertificateCopy>,
) -> Outcome {
    let Some(certificate) = &config.client_certificate else {
        return Outcome::Publish(spec);
    };
    let mut backends = super::lower::backend_tls_mut(&mut spec);
    if backends.is_empty() {
        return Outcome::Publish(spec);
    }
    let source = match certificate {
        Ok(source) => source,
        Err(why) => return Outcome::Gaps(vec![Gap::BackendClientCertificate(why.clone())]),
    };
    let name = if source.namespace == config.gateway.namespace {
        source.name.clone()
    } else {
        let name = certificate_copy_name(&config.gateway.name, &source.namespace, &source.name);
        if !copies.iter().any(|c| c.name == name) {
            copies.push(CertificateCopy {
                source: source.clone(),
                name: name.clone(),
            });
        }
        name
    };
    for backend in &mut backends {
        backend.client_certificate_secret_name = Some(name.clone());
    }
    tls.insert(name, source.material.clone());
    Outcome::Publish(spec)
}

/// Listener isolation on a shared port: `listener` with only the entries it serves, those
/// whose host no more specific listener of its port covers (every request they would match
/// arrives on that listener: [`hostnames::listener_for_entry_host`]), and whether a less
/// specific listener of the port covers its host name (then [`router_config_spec`] closes
/// its host name with a 404).
fn isolated(listener: &ServedListener, all: &[ServedListener]) -> (ServedListener, bool) {
    let port: Vec<&ServedListener> = all.iter().filter(|o| o.port == listener.port).collect();
    let names: Vec<Option<&str>> = port.iter().map(|o| o.hostname.as_deref()).collect();
    let me = port
        .iter()
        .position(|o| o.name == listener.name)
        .expect("a listener is on its own port");
    let mut kept = listener.clone();
    kept.entries
        .retain(|e| hostnames::listener_for_entry_host(&names, e.host.as_deref()) == Some(me));
    let shadowing = listener.hostname.is_some()
        && port.iter().any(|o| {
            o.name != listener.name
                && hostnames::listener_for_entry_host(&[o.hostname.as_deref()], listener.hostname.as_deref())
                    == Some(0)
        });
    (kept, shadowing)
}

/// An HTTPS listener whose certificates include some of another namespace, with those
/// replaced by their copies in `namespace` (None when there is none), and the copies.
fn local_certificates(
    l: &ServedListener,
    gateway: &str,
    namespace: &str,
) -> (Option<ServedListener>, Vec<CertificateCopy>) {
    if l.protocol != Protocol::Https || l.certificates.iter().all(|c| c.namespace == namespace) {
        return (None, Vec::new());
    }
    let mut local = l.clone();
    let mut copies = Vec::new();
    for c in &mut local.certificates {
        if c.namespace != namespace {
            let name = certificate_copy_name(gateway, &c.namespace, &c.name);
            copies.push(CertificateCopy {
                source: c.clone(),
                name: name.clone(),
            });
            c.namespace = namespace.to_owned();
            c.name = name;
        }
    }
    (Some(local), copies)
}

fn overlap(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => !hostnames::intersect(Some(a), &[b.to_owned()]).is_empty(),
    }
}

/// One gap in words, for a listener's or route's message.
pub fn describe(gap: &Gap) -> String {
    match gap {
        Gap::OverlappingListener(l) => format!(
            "listener {l}'s host name overlaps this one's, and an existing fleet serves both on one port"
        ),
        Gap::ListenerCertificate(c) => format!("listener certificate {c}"),
        Gap::ClientCertificateValidation => {
            "client certificate validation (spec.tls.frontend): the proxy does not ask for client certificates yet".into()
        }
        Gap::BackendClientCertificate(why) => {
            format!("it reaches a backend over TLS and the backend client certificate is unresolved: {why}")
        }
        Gap::Invalid(e) => format!("the generated RouterConfig is invalid: {e}"),
    }
}

fn describe_all(gaps: &[Gap]) -> String {
    gaps.iter().map(describe).collect::<Vec<_>>().join("; ")
}

/// The annotation value recording `routes`.
pub fn routes_annotation(routes: &BTreeMap<String, i64>) -> String {
    serde_json::to_string(routes).expect("a map of strings to integers serialises")
}

/// The controller ownerReference to Gateway `name` (`uid`) that everything lockstep generates
/// or provisions for a Gateway carries: the garbage collector's link, and how the operator
/// finds what it owns. No `blockOwnerDeletion`, which would need rights on the Gateway's
/// finalizers.
pub fn gateway_owner_reference(name: &str, uid: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "name": name,
        "uid": uid,
        "controller": true,
    })
}

/// The digest [`SPEC_DIGEST_ANNOTATION`] holds for `spec`.
pub fn spec_digest(spec: &lockstep_crds::RouterConfigSpec) -> String {
    crate::config_digest(spec, &BTreeMap::new())
}

/// True when `rc` was generated from the plan's spec. A RouterConfig without the annotation
/// (generated before it existed) is judged as before; the operator's next apply adds it.
fn generated_from(rc: &RouterConfig, spec: &lockstep_crds::RouterConfigSpec) -> bool {
    annotation(rc, SPEC_DIGEST_ANNOTATION).is_none_or(|d| d == spec_digest(spec))
}

/// The routes a generated RouterConfig records (empty when the annotation is absent or
/// unreadable: then it records no route).
pub fn recorded_routes(rc: &RouterConfig) -> BTreeMap<String, i64> {
    annotation(rc, ROUTES_ANNOTATION)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// The Gateway generation a generated RouterConfig records.
pub fn recorded_gateway_generation(rc: &RouterConfig) -> Option<i64> {
    annotation(rc, GATEWAY_GENERATION_ANNOTATION).and_then(|v| v.parse().ok())
}

fn annotation<'a>(rc: &'a RouterConfig, key: &str) -> Option<&'a str> {
    rc.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// How far serving something has come, from the fleet's side.
#[derive(Debug, Clone, PartialEq)]
pub enum Serving {
    /// The Gateway names no usable fleet (the message says why).
    NoFleet(String),
    /// A listener cannot be lowered (gaps in words).
    Gaps(String),
    /// No route attached: nothing to serve.
    Empty,
    /// No served listener carries the route.
    NotServed,
    /// The generated RouterConfig is not there yet, records another generation, or is not
    /// judged at its current generation yet.
    Waiting,
    /// The operator did not accept the generated RouterConfig (its message).
    NotAccepted(String),
    /// The barrier's judgement of the current generation.
    Progress(FleetProgress),
}

impl Serving {
    /// Worse first: what keeps a Gateway or route from being served the longest.
    fn rank(&self) -> u8 {
        match self {
            Serving::NoFleet(_) => 0,
            Serving::Gaps(_) => 1,
            Serving::NotAccepted(_) => 2,
            Serving::NotServed => 3,
            Serving::Waiting => 4,
            Serving::Progress(FleetProgress::NoReplicas) => 5,
            Serving::Progress(FleetProgress::Rejected { .. }) => 6,
            Serving::Progress(FleetProgress::Behind { .. }) => 7,
            Serving::Progress(FleetProgress::AllServe { .. }) => 8,
            Serving::Empty => 9,
        }
    }

    /// The worst of several (Empty for none).
    fn worst(all: impl IntoIterator<Item = Serving>) -> Serving {
        all.into_iter()
            .min_by(|a, b| match (a, b) {
                (
                    Serving::Progress(FleetProgress::AllServe { replicas: x }),
                    Serving::Progress(FleetProgress::AllServe { replicas: y }),
                ) => x.cmp(y),
                _ => a.rank().cmp(&b.rank()),
            })
            .unwrap_or(Serving::Empty)
    }
}

/// The barrier's judgement of a RouterConfig at its current generation, as its status says.
pub fn progress_of(rc: &RouterConfig) -> Serving {
    let generation = rc.generation();
    let Some(status) = rc.status.as_ref() else {
        return Serving::Waiting;
    };
    let current = |t: &str| {
        crate::conditions::find(&status.conditions, t).filter(|c| c.observed_generation == Some(generation))
    };
    if let Some(accepted) = current(rc_condition::ACCEPTED)
        && accepted.status == "False"
    {
        return Serving::NotAccepted(accepted.message.clone());
    }
    let Some(ready) = current(rc_condition::READY) else {
        return Serving::Waiting;
    };
    let replicas = u32::try_from(status.replicas.unwrap_or(0)).unwrap_or(0);
    let synced = u32::try_from(status.synced_replicas.unwrap_or(0)).unwrap_or(0);
    Serving::Progress(if ready.status == "True" {
        FleetProgress::AllServe { replicas }
    } else if ready.reason == rc_reason::NO_REPLICAS {
        FleetProgress::NoReplicas
    } else if ready.reason == rc_reason::REJECTED {
        let rejected = status
            .replica_status
            .iter()
            .filter(|r| r.rejected.as_ref().is_some_and(|x| x.generation == generation))
            .count();
        FleetProgress::Rejected {
            rejected: u32::try_from(rejected).unwrap_or(u32::MAX).max(1),
            replicas,
        }
    } else {
        FleetProgress::Behind { synced, replicas }
    })
}

/// The barrier's judgement of a generated RouterConfig ([`progress_of`]), held back while a
/// replica report at its current generation carries another digest than the spec with the
/// certificates of `plan` ([`ListenerPlan::tls`]): a certificate change changes no
/// generation, and a `Ready` judged before the RouterConfig controller saw it says nothing
/// of the new material. The status copies at most 100 reports, those not at the operator's
/// digest first, so when the list is cut every listed entry must carry it (as
/// `kubectl lockstep wait` judges a rotation).
pub fn judged(plan: &ListenerPlan, rc: &RouterConfig) -> Serving {
    let serving = progress_of(rc);
    let Serving::Progress(FleetProgress::AllServe { replicas }) = serving else {
        return serving;
    };
    let generation = rc.generation();
    let expected = crate::config_digest(&rc.spec, &plan.tls);
    let entries = rc.status.as_ref().map_or(&[][..], |s| &s.replica_status[..]);
    let presenting = entries
        .iter()
        .filter(|e| e.observed_generation == generation && e.config_digest == expected)
        .count();
    let presenting = u32::try_from(presenting).unwrap_or(u32::MAX);
    let listed = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    if presenting >= replicas.min(listed.max(1)) {
        serving
    } else {
        Serving::Progress(FleetProgress::Behind {
            synced: presenting,
            replicas,
        })
    }
}

/// How far `listener` is served at Gateway generation `generation`, given the generated
/// RouterConfig as the operator reads it (`None`: not there).
pub fn listener_serving(plan: &ListenerPlan, observed: Option<&RouterConfig>, generation: i64) -> Serving {
    match &plan.outcome {
        Outcome::Empty => Serving::Empty,
        Outcome::Gaps(gaps) => Serving::Gaps(describe_all(gaps)),
        Outcome::Publish(spec) => match observed {
            Some(rc) if recorded_gateway_generation(rc) == Some(generation) && generated_from(rc, spec) => {
                judged(plan, rc)
            }
            _ => Serving::Waiting,
        },
    }
}

/// How far route `uid` at `generation` is served: the worst over the listeners that carry it.
pub fn route_serving(
    uid: &str,
    generation: i64,
    plans: &[ListenerPlan],
    observed: &dyn Fn(&str) -> Option<RouterConfig>,
) -> Serving {
    let carrying: Vec<&ListenerPlan> = plans.iter().filter(|p| p.routes.contains_key(uid)).collect();
    if carrying.is_empty() {
        return Serving::NotServed;
    }
    Serving::worst(carrying.into_iter().map(|p| match &p.outcome {
        Outcome::Empty => Serving::NotServed,
        Outcome::Gaps(gaps) => Serving::Gaps(format!("listener {}: {}", p.listener, describe_all(gaps))),
        Outcome::Publish(spec) => match observed(&p.name) {
            Some(rc) if recorded_routes(&rc).get(uid) == Some(&generation) && generated_from(&rc, spec) => {
                judged(p, &rc)
            }
            _ => Serving::Waiting,
        },
    }))
}

fn false_condition(type_: &str, why: &str, message: String, generation: i64, now: Timestamp) -> Condition {
    status::condition(type_, false, why, message, generation, now)
}

/// A served listener's (or the Gateway's) `Programmed` from how far it is served.
pub fn programmed(serving: &Serving, generation: i64, now: Timestamp) -> Condition {
    let p = condition::PROGRAMMED;
    match serving {
        Serving::NoFleet(m) => false_condition(p, reason::PENDING, m.clone(), generation, now),
        Serving::Gaps(m) => false_condition(
            p,
            reason::INVALID,
            format!("lockstep cannot serve this yet: {m}"),
            generation,
            now,
        ),
        Serving::NotAccepted(m) => false_condition(
            p,
            reason::PENDING,
            format!("the generated RouterConfig is not accepted: {m}"),
            generation,
            now,
        ),
        Serving::NotServed => {
            false_condition(p, reason::PENDING, "nothing is served".into(), generation, now)
        }
        Serving::Empty => status::condition(
            p,
            true,
            reason::PROGRAMMED,
            "no route attached: nothing to serve",
            generation,
            now,
        ),
        Serving::Waiting => gateway_programmed(true, None, generation, now),
        Serving::Progress(progress) => gateway_programmed(true, Some(*progress), generation, now),
    }
}

/// A route parent's `lockstep.dev/Ready` from its conditions and how far the route is served.
pub fn ready(
    parent_conditions: &[Condition],
    serving: &Serving,
    generation: i64,
    now: Timestamp,
) -> Condition {
    let judged = route_ready(
        parent_conditions,
        match serving {
            Serving::Progress(p) => Some(*p),
            _ => None,
        },
        generation,
        now,
    );
    // The route's own verdicts (not accepted, rules dropped, references unresolved) come
    // first.
    if judged.reason == status::ready_reason::NOT_ACCEPTED
        || judged.reason == status::ready_reason::PARTIALLY_INVALID
        || judged.reason == status::ready_reason::UNRESOLVED_REFS
    {
        return judged;
    }
    let r = condition::LOCKSTEP_READY;
    match serving {
        Serving::NoFleet(m) => false_condition(r, ready_reason::NO_FLEET, m.clone(), generation, now),
        Serving::Gaps(m) => false_condition(
            r,
            ready_reason::UNSERVABLE,
            format!("lockstep cannot serve this yet: {m}"),
            generation,
            now,
        ),
        Serving::NotAccepted(m) => false_condition(
            r,
            ready_reason::CONFIG_NOT_ACCEPTED,
            format!("the generated RouterConfig is not accepted: {m}"),
            generation,
            now,
        ),
        Serving::NotServed | Serving::Empty => false_condition(
            r,
            ready_reason::NOT_SERVED,
            "no served listener of this Gateway carries the route".into(),
            generation,
            now,
        ),
        Serving::Waiting | Serving::Progress(_) => judged,
    }
}

/// Rewrites the barrier's conditions into `translation`: the Gateway's `Programmed`, each
/// served listener's `Programmed`, and a `lockstep.dev/Ready` on every route parent entry.
/// `fleet` is [`fleet_of`] the Gateway; `plans` is [`plan`] (empty without a fleet);
/// `observed` gives a generated RouterConfig by name as the operator reads it.
pub fn judge(
    translation: &mut Translation,
    fleet: Option<&Result<String, String>>,
    plans: &[ListenerPlan],
    observed: &dyn Fn(&str) -> Option<RouterConfig>,
    now: Timestamp,
) {
    let no_fleet = match fleet {
        None => Some(format!(
            "no fleet is named: annotate the Gateway with {FLEET_ANNOTATION}=FLEET to serve it with an \
             existing fleet (the operator passes the fleet it provisions)"
        )),
        Some(Err(m)) => Some(m.clone()),
        Some(Ok(_)) => None,
    };
    let Some(gateway_generation) = translation.config.as_ref().map(|c| c.generation) else {
        // Not accepted: the translation's Programmed False Invalid stands; routes are not
        // accepted by it either.
        for verdict in &mut translation.routes {
            for parent in &mut verdict.parents {
                let c = ready(
                    &parent.conditions,
                    &Serving::NotServed,
                    verdict.route.generation,
                    now,
                );
                parent.conditions.push(c);
            }
        }
        return;
    };
    let mut listener_servings = Vec::new();
    for l in &mut translation.listeners {
        let Some(plan) = plans.iter().find(|p| p.listener == l.name) else {
            if let Some(m) = &no_fleet
                && let Some(c) = l
                    .conditions
                    .iter_mut()
                    .find(|c| c.type_ == condition::PROGRAMMED && c.reason == reason::PENDING)
            {
                *c = programmed(&Serving::NoFleet(m.clone()), gateway_generation, now);
                listener_servings.push(Serving::NoFleet(m.clone()));
            }
            continue;
        };
        let serving = listener_serving(plan, observed(&plan.name).as_ref(), gateway_generation);
        if let Some(c) = l.conditions.iter_mut().find(|c| c.type_ == condition::PROGRAMMED) {
            *c = programmed(&serving, gateway_generation, now);
        }
        listener_servings.push(serving);
    }
    let gateway = match &no_fleet {
        Some(m) => Serving::NoFleet(m.clone()),
        None => Serving::worst(listener_servings),
    };
    for c in &mut translation.gateway_conditions {
        if c.type_ == condition::PROGRAMMED && c.reason != reason::INVALID {
            // Every listener with nothing to serve: the Gateway is programmed as it is.
            *c = programmed(&gateway, gateway_generation, now);
        }
    }
    judge_listener_sets(
        translation,
        no_fleet.as_deref(),
        plans,
        observed,
        gateway_generation,
        now,
    );
    for verdict in &mut translation.routes {
        let serving = match &no_fleet {
            Some(m) => Serving::NoFleet(m.clone()),
            None => route_serving(&verdict.route.uid, verdict.route.generation, plans, observed),
        };
        for parent in &mut verdict.parents {
            let c = ready(&parent.conditions, &serving, verdict.route.generation, now);
            parent.conditions.push(c);
        }
    }
}

/// Each accepted ListenerSet's listeners' `Programmed` from their plans (keyed
/// [`super::listener_sets::listener_key`]), at the ListenerSet's generation, and its own
/// `Programmed`: the worst of its served listeners'. The RouterConfigs record the Gateway's
/// generation (`gateway_generation`); a ListenerSet edit shows in their spec digest.
fn judge_listener_sets(
    translation: &mut Translation,
    no_fleet: Option<&str>,
    plans: &[ListenerPlan],
    observed: &dyn Fn(&str) -> Option<RouterConfig>,
    gateway_generation: i64,
    now: Timestamp,
) {
    for set in translation.listener_sets.iter_mut().filter(|s| s.accepted) {
        let mut servings = Vec::new();
        for l in &mut set.listeners {
            let key = super::listener_sets::listener_key(&set.key, &l.name);
            let Some(c) = l.conditions.iter_mut().find(|c| c.type_ == condition::PROGRAMMED) else {
                continue;
            };
            let serving = match (plans.iter().find(|p| p.listener == key), no_fleet) {
                (_, Some(m)) if c.reason == reason::PENDING => Serving::NoFleet(m.to_owned()),
                (Some(plan), None) => {
                    listener_serving(plan, observed(&plan.name).as_ref(), gateway_generation)
                }
                _ => continue,
            };
            *c = programmed(&serving, set.generation, now);
            servings.push(serving);
        }
        let worst = Serving::worst(servings);
        if let Some(c) = set
            .conditions
            .iter_mut()
            .find(|c| c.type_ == condition::PROGRAMMED)
        {
            *c = programmed(&worst, set.generation, now);
        }
    }
}
