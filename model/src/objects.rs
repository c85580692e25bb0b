//! The promise per object, across the RouterConfigs of one fleet: identity by uid (delete and
//! re-create under the same name restarts the generation at 1), a TLS Secret per generation
//! (a certificate that can be usable or not), two objects that claim one match or name one
//! TLS host (the older owns), a replica restarted with wider namespaces, a sync loop that
//! dies, a clean leave and the garbage of dead replicas.
//!
//! The barrier model (the crate root) checks the protocol's timing: Lease freshness, late
//! renewal answers, the join's quorum check, the operator's Lease relist. This model takes
//! those rules as checked and leaves time out, so that what it explores is which object,
//! which incarnation and which certificate a replica serves, and what the operator writes
//! about each object:
//! - a Lease is live, expired or absent; it expires (for the operator and, first, for the
//!   proxy itself) only while its replica is not renewing (down, frozen, or its sync loop dead
//!   under supervision), in one step (`Expire`);
//! - the operator reads Leases fresh (the barrier model's relist); its RouterConfig cache
//!   lags (`OperatorWatchConfigs`: across objects a lagging copy matters, since another
//!   object's edit changes this one's verdict), and so does its RouterReplica cache
//!   (`OperatorWatchReplicas`), which it lists again before `Ready=True` only when a cached
//!   spec leaves a live replica out (`barrier::left_out_by_spec`, as `confirm_members`).
//!
//! An object's `Ready` speaks for its own writes: another object's write that moves its
//! verdict or a TLS host's owner is that object's rollout (docs/protocol.md, rule (n)), so the
//! properties give a disturbed object the window the real system has ([`FleetState::disturbed`]).

//!
//! The decisions are the project's code: `lockstep_core::fleet::{resolve_fleet,
//! last_accepted}` decides what every replica serves and what the operator accepts (the TLS
//! host rule included: the older RouterConfig owns a TLS host, a newer one naming another
//! Secret for it is in `Conflict`, and `Resolution::certificates` names each host's Secret),
//! `lockstep_core::barrier::{members_serving, decide}` the status. Two functions of the
//! model only put a mutant back over the project's answer: [`reported_uid`]
//! (`barrier::members_serving` counts a report only for the object's uid;
//! `NameGenerationIdentity` lets every report stand for the current incarnation) and
//! [`Usability`]: the project judges TLS material with one function for the operator and the
//! replicas (`lockstep_core::tls_material::servable`), which the model abstracts as the bool
//! of [`Shape::tls`]; the operator's judgement differs only under `OperatorJudgesTlsApart`.

use std::collections::BTreeMap;

use lockstep_core::{
    Candidate, ObjectKey, Verdict,
    barrier::{self, Member, Settings, TlsProblem, left_out_by_spec, members_serving},
    fleet::CertificateChoice,
    last_accepted, resolve_fleet,
};
use lockstep_crds::{
    AcceptedGeneration, Backend, HostRule, HostTls, HttpPath, PathType, Rejection, ReplicaId,
    RouterConfigSpec, RouterReplica, RouterReplicaSpec, RouterReplicaStatus, ServedRouterConfig, condition,
};
use stateright::{Model, Property};

use crate::{Mutation, Status, mono, wall};

/// The fleet of every object and proxy of this model.
const FLEET: &str = "blue";
/// The namespace of the proxies (their Leases and RouterReplicas).
const PROXY_NS: &str = "proxies";
/// The host that two objects can both name.
const SHARED_HOST: &str = "shop.example";

/// The property names, as the tests look them up.
pub mod property {
    /// The promise, per object and with certificates.
    pub const PROMISE: &str = "ready means every ready replica serving the namespace serves that object's generation with the owning certificate";
    /// No ready replica serves a host's routes without a usable certificate.
    pub const CERTIFICATE: &str = "a ready replica serves a TLS host only with a usable certificate";
    /// A rejection is never counted as applied.
    pub const REJECTED: &str = "a rejected generation is never counted as applied";
    /// Liveness within the bound, and the status agrees with the policy.
    pub const SETTLED: &str =
        "every finished run is ready for each accepted object and says why the others are not";
    /// Leave is clean.
    pub const LEAVE: &str = "nothing re-creates a departed replica's Lease or RouterReplica";
    /// No dead replica shows in `kubectl get rrep`.
    pub const GARBAGE: &str = "a finished run shows no RouterReplica of a replica that is not running";
    /// Reachability.
    pub const REACHED: &str = "every write of the script becomes ready";
}

/// One generation's spec, as the few choices that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Route on the shared host (else on the object's own host).
    pub shared_host: bool,
    /// Its path: `/` or `/b`.
    pub path_b: bool,
    /// Which backend (two generations with the same shape have the same digest).
    pub backend: u8,
    /// A TLS Secret on the host, and whether its certificate can be served.
    pub tls: Option<bool>,
}

impl Shape {
    /// A plain route on the object's own host.
    pub const fn own(backend: u8) -> Self {
        Self {
            shared_host: false,
            path_b: false,
            backend,
            tls: None,
        }
    }

    /// The same with TLS: a certificate that is usable or not.
    pub const fn with_tls(self, usable: bool) -> Self {
        Self {
            tls: Some(usable),
            ..self
        }
    }

    /// The same on the shared host.
    pub const fn shared(self, path_b: bool) -> Self {
        Self {
            shared_host: true,
            path_b,
            ..self
        }
    }
}

/// One RouterConfig of the model.
#[derive(Debug, Clone)]
pub struct ObjectSetup {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The spec of its first generation.
    pub shape: Shape,
}

/// One proxy of the model.
#[derive(Debug, Clone)]
pub struct ProxySetup {
    /// Name (in namespace `proxies`).
    pub name: String,
    /// `--watch-namespaces`.
    pub namespaces: Vec<String>,
    /// `--watch-namespaces` after the restart of `Widen`, if it can happen.
    pub widened: Option<Vec<String>>,
}

/// A write by the user, in script order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Write {
    /// A new generation of object `.0`.
    Edit(usize, Shape),
    /// Delete object `.0` and create it again under the same name: a new uid, generation 1,
    /// an empty status (`kubectl replace --force`).
    Recreate(usize, Shape),
}

/// Which faults exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetFaults {
    /// SIGSTOP, SIGCONT later.
    pub freeze: bool,
    /// SIGKILL, for good (a node lost): what is left of it is garbage.
    pub crash: bool,
    /// SIGTERM, for good (scaled down).
    pub leave: bool,
    /// The sync loop dies (a panic in the plan).
    pub sync_death: bool,
    /// A restart with wider `--watch-namespaces` (of a proxy with `widened`).
    pub widen: bool,
}

/// The model's shape and bounds.
#[derive(Debug, Clone)]
pub struct FleetModel {
    /// The RouterConfigs, oldest first.
    pub objects: Vec<ObjectSetup>,
    /// The proxies.
    pub proxies: Vec<ProxySetup>,
    /// The user's writes, in this order, interleaved with everything else.
    pub script: Vec<Write>,
    /// Which faults exist.
    pub faults: FleetFaults,
    /// Most faults in one run.
    pub max_faults: u8,
    /// A bug put back.
    pub mutation: Mutation,
}

fn proxy(name: &str, namespaces: &[&str]) -> ProxySetup {
    ProxySetup {
        name: name.into(),
        namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
        widened: None,
    }
}

fn object(namespace: &str, name: &str, shape: Shape) -> ObjectSetup {
    ObjectSetup {
        namespace: namespace.into(),
        name: name.into(),
        shape,
    }
}

impl FleetModel {
    /// `apps/web`, served by two proxies, is edited, then deleted and re-created with another
    /// spec; one proxy may freeze across it.
    pub fn recreate() -> Self {
        Self {
            objects: vec![object("apps", "web", Shape::own(0))],
            proxies: vec![proxy("p0", &["apps"]), proxy("p1", &["apps"])],
            script: vec![Write::Edit(0, Shape::own(1)), Write::Recreate(0, Shape::own(2))],
            faults: FleetFaults {
                freeze: true,
                ..FleetFaults::default()
            },
            max_faults: 1,
            mutation: Mutation::None,
        }
    }

    /// `a/old` (older) and `b/new` (newer, with TLS on the shared host): `old` is edited to
    /// claim `new`'s very match, with a TLS Secret of its own for the host. The older owns:
    /// `new` loses the match and the host's certificate and must say so.
    pub fn takeover() -> Self {
        Self {
            objects: vec![
                object("a", "old", Shape::own(0)),
                object("b", "new", Shape::own(0).shared(false).with_tls(true)),
            ],
            proxies: vec![proxy("p0", &["a", "b"]), proxy("p1", &["a", "b"])],
            script: vec![Write::Edit(0, Shape::own(1).shared(false).with_tls(true))],
            faults: FleetFaults::default(),
            max_faults: 0,
            mutation: Mutation::None,
        }
    }

    /// [`FleetModel::takeover`] while no proxy serves `b` yet (a fleet being set up in a new
    /// namespace): no replica report changes when `old` takes `new`'s match, so only the
    /// operator's RouterConfig watch can re-judge `new`.
    pub fn takeover_unserved() -> Self {
        Self {
            proxies: vec![proxy("p0", &["a"]), proxy("p1", &["a"])],
            ..Self::takeover()
        }
    }

    /// [`FleetModel::takeover`] in steps (for `e2e/bench/model.sh`): `old` first takes only
    /// the TLS host (another path), then the match, then gives both back, so `new` is
    /// accepted again.
    pub fn takeover_steps() -> Self {
        Self {
            script: vec![
                Write::Edit(0, Shape::own(1).shared(true).with_tls(true)),
                Write::Edit(0, Shape::own(1).shared(false).with_tls(true)),
                Write::Edit(0, Shape::own(2)),
            ],
            ..Self::takeover()
        }
    }

    /// `apps/web` with TLS: generation 2's certificate cannot be served (its key does not
    /// match), generation 3 fixes it. (With a freeze as well: `tls_freeze`, the deep run.)
    pub fn tls() -> Self {
        Self {
            objects: vec![object("apps", "web", Shape::own(0).with_tls(true))],
            proxies: vec![proxy("p0", &["apps"]), proxy("p1", &["apps"])],
            script: vec![
                Write::Edit(0, Shape::own(1).with_tls(false)),
                Write::Edit(0, Shape::own(2).with_tls(true)),
            ],
            faults: FleetFaults::default(),
            max_faults: 0,
            mutation: Mutation::None,
        }
    }

    /// [`FleetModel::tls`] with one proxy that may freeze (for `e2e/bench/model.sh`).
    pub fn tls_freeze() -> Self {
        Self {
            faults: FleetFaults {
                freeze: true,
                ..FleetFaults::default()
            },
            max_faults: 1,
            ..Self::tls()
        }
    }

    /// `apps/web` is edited while `p1`, which served only `other`, restarts with
    /// `--watch-namespaces other,apps`.
    pub fn widen() -> Self {
        let mut p1 = proxy("p1", &["other"]);
        p1.widened = Some(vec!["other".into(), "apps".into()]);
        Self {
            objects: vec![object("apps", "web", Shape::own(0))],
            proxies: vec![proxy("p0", &["apps"]), p1],
            script: vec![Write::Edit(0, Shape::own(1))],
            faults: FleetFaults {
                widen: true,
                ..FleetFaults::default()
            },
            max_faults: 1,
            mutation: Mutation::None,
        }
    }

    /// `apps/web` is edited while one proxy's sync loop dies, or it leaves, or it is
    /// SIGKILLed for good.
    pub fn faults() -> Self {
        Self {
            objects: vec![object("apps", "web", Shape::own(0))],
            proxies: vec![proxy("p0", &["apps"]), proxy("p1", &["apps"])],
            script: vec![Write::Edit(0, Shape::own(1))],
            faults: FleetFaults {
                crash: true,
                leave: true,
                sync_death: true,
                ..FleetFaults::default()
            },
            max_faults: 1,
            mutation: Mutation::None,
        }
    }
}

/// What status.lastAccepted holds: the incarnation, generation and spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Accepted {
    /// metadata.uid it was accepted for.
    pub uid: u8,
    /// The generation.
    pub generation: i64,
    /// Its spec.
    pub shape: Shape,
}

/// A RouterConfig as a watch delivers it: metadata, spec and lastAccepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Snapshot {
    /// metadata.uid (a number here).
    pub uid: u8,
    /// metadata.creationTimestamp, as an order.
    pub created: u8,
    /// metadata.generation.
    pub generation: i64,
    /// The spec.
    pub shape: Shape,
    /// status.lastAccepted.
    pub last_accepted: Option<Accepted>,
}

/// A stored RouterConfig.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Obj {
    /// What a watch delivers.
    pub snapshot: Snapshot,
    /// The operator's status (without lastAccepted, which is in the snapshot).
    pub status: Status,
}

/// A proxy's report on one object (an entry of its RouterReplica's `served`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Served {
    /// The incarnation it is about.
    pub uid: u8,
    /// Generation served (0: none).
    pub generation: i64,
    /// Its spec (the digest is of it).
    pub shape: Option<Shape>,
    /// The current generation, rejected.
    pub rejected: Option<i64>,
}

/// A certificate: the Secret named by one generation of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cert {
    /// Object (index).
    pub object: usize,
    /// Its uid.
    pub uid: u8,
    /// The generation naming it.
    pub generation: i64,
    /// Its key matches and it can be served.
    pub usable: bool,
}

/// A RouterReplica as stored: its `--watch-namespaces` (wide or not) and its reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rrep {
    /// spec.namespaces is the widened list.
    pub widened: bool,
    /// status.served, per object.
    pub served: Vec<Option<Served>>,
}

/// A Lease as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseState {
    /// Renewed in time: the operator counts it.
    Live,
    /// Ran out: the operator no longer counts it.
    Expired,
}

/// A proxy's stage (`lockstep_core::lease::Stage`, without its clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// No fresh Lease.
    Outside,
    /// Its Lease landed; its quorum check has not passed.
    Verifying,
    /// Confirmed.
    Member,
}

/// One proxy process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proxy {
    /// Running.
    pub up: bool,
    /// SIGSTOPped.
    pub frozen: bool,
    /// Left (SIGTERM), for good.
    pub left: bool,
    /// Its sync loop runs.
    pub sync_alive: bool,
    /// Restarted with the wider `--watch-namespaces`.
    pub widened: bool,
    /// Its membership.
    pub stage: Stage,
    /// What its watch has delivered, per object (None: none, or not in its namespaces).
    pub seen: Vec<Option<Snapshot>>,
    /// It has planned at least once.
    pub synced: bool,
    /// What it serves and reports, per object.
    pub served: Vec<Option<Served>>,
    /// The certificate it presents per TLS host.
    pub certs: Vec<(String, Cert)>,
    /// A Lease or RouterReplica write on the wire that SIGTERM did not stop.
    pub stray_write: bool,
}

impl Proxy {
    fn fresh(objects: usize, widened: bool) -> Self {
        Self {
            up: true,
            frozen: false,
            left: false,
            sync_alive: true,
            widened,
            stage: Stage::Outside,
            seen: vec![None; objects],
            synced: false,
            served: vec![None; objects],
            certs: Vec::new(),
            stray_write: false,
        }
    }

    fn active(&self) -> bool {
        self.up && !self.frozen
    }

    /// `/readyz` answers 200.
    pub fn answers_ready(&self) -> bool {
        self.active() && self.stage == Stage::Member
    }

    fn rrep(&self) -> Rrep {
        Rrep {
            widened: self.widened,
            served: self.served.clone(),
        }
    }
}

/// The operator (one: its failover is the barrier model's).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operator {
    /// Its RouterConfig cache.
    pub objects: Vec<Option<Obj>>,
    /// Its RouterReplica cache, per proxy.
    pub rreps: Vec<Option<Rrep>>,
    /// Objects with an event not reconciled yet.
    pub dirty: Vec<bool>,
    /// A status write in flight: object, the uid it was computed for, status, lastAccepted.
    pub pending: Option<(usize, u8, Status, Option<Accepted>)>,
}

/// The whole system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FleetState {
    /// The RouterConfigs (None: deleted).
    pub objects: Vec<Option<Obj>>,
    /// Each proxy's Lease.
    pub leases: Vec<Option<LeaseState>>,
    /// Each proxy's RouterReplica.
    pub rreps: Vec<Option<Rrep>>,
    /// The proxies.
    pub proxies: Vec<Proxy>,
    /// The operator.
    pub operator: Operator,
    /// Writes of the script done.
    pub written: usize,
    /// Faults so far.
    pub faults: u8,
    /// The last uid and creation order given out.
    pub last_uid: u8,
    /// Objects whose verdict, or the owner of one of whose TLS hosts, a store write of
    /// another object changed (by the fleet policy over the store), with that object's index,
    /// uid and generation: a disturbance that is the writer's rollout until its own `Ready`
    /// covers it and the operator has judged the disturbed object again (see
    /// [`promise_holds`]).
    pub disturbed: BTreeMap<usize, (usize, u8, i64)>,
}

/// A step of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FleetAction {
    /// The next write of the script.
    Write(Write),
    /// A proxy's watch delivers the objects of its namespaces; it plans, serves and writes its
    /// RouterReplica.
    Sync(usize),
    /// A proxy outside writes its Lease (and its RouterReplica if the operator removed it).
    Join(usize),
    /// A verifying proxy's quorum read shows it serves what the store holds.
    Verify(usize),
    /// A Lease that is not renewed runs out (for the proxy first, then the operator).
    Expire(usize),
    /// SIGSTOP.
    Freeze(usize),
    /// SIGCONT.
    Wake(usize),
    /// SIGKILL, for good.
    Crash(usize),
    /// SIGTERM: unready, delete Lease and RouterReplica, exit, for good.
    Leave(usize),
    /// A write that SIGTERM did not stop lands after the deletes.
    StrayWriteLands(usize),
    /// The sync loop dies.
    SyncDies(usize),
    /// A new process (after its sync loop died, the supervisor exits).
    Restart(usize),
    /// Restart with the wider `--watch-namespaces`.
    Widen(usize),
    /// The operator's RouterConfig watch delivers what changed.
    OperatorWatchConfigs,
    /// The operator's RouterReplica watch delivers one replica's object.
    OperatorWatchReplicas(usize),
    /// The operator judges one object and sends a status write.
    Reconcile(usize),
    /// That write lands.
    WriteLands,
    /// The operator deletes the RouterReplica (and Lease) of a replica whose Lease is gone or
    /// ran out.
    CollectReplica(usize),
}

/// Who judges whether a certificate can be served. Both call
/// `lockstep_core::tls_material::servable` (here: [`Shape::tls`]); the distinction exists
/// only for `OperatorJudgesTlsApart`, which gives the operator its old check (keys present).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usability {
    /// The replicas: a certificate whose key does not match is unusable.
    Replica,
    /// The operator: the same judgement (fixed), or only "has the keys" (mutant).
    Operator,
}

/// What the fleet policy decides over a set of objects.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The verdict on each object's current generation (None: absent).
    pub verdicts: Vec<Option<Verdict>>,
    /// Why its current generation's TLS cannot be served.
    pub tls_problem: Vec<Option<String>>,
    /// What is served of each object: uid, generation, spec.
    pub served: Vec<Option<Accepted>>,
    /// lastAccepted after this judgement (`fleet::last_accepted`).
    pub last_accepted: Vec<Option<Accepted>>,
    /// The certificate of each TLS host.
    pub certs: Vec<(String, Cert)>,
}

impl FleetModel {
    fn host(&self, o: usize, shape: &Shape) -> String {
        if shape.shared_host {
            SHARED_HOST.into()
        } else {
            format!("{}.example", self.objects[o].name)
        }
    }

    fn spec(&self, o: usize, shape: &Shape) -> RouterConfigSpec {
        RouterConfigSpec {
            fleet: FLEET.into(),
            rules: vec![HostRule {
                host: self.host(o, shape),
                tls: shape.tls.map(|_| HostTls {
                    secret_name: self.secret(o).name,
                    redirect_http: false,
                }),
                wildcard_match: None,
                paths: vec![HttpPath {
                    path: if shape.path_b { "/b" } else { "/" }.into(),
                    path_type: PathType::Prefix,
                    backend: Some(Backend {
                        service: None,
                        url: Some(format!("http://10.0.0.{}:80", shape.backend + 1)),
                        status: None,
                    }),
                    ..Default::default()
                }],
            }],
        }
    }

    /// The TLS Secret every generation of object `o` names (namespace/name).
    fn secret(&self, o: usize) -> ObjectKey {
        ObjectKey::new(
            &self.objects[o].namespace,
            format!("{}-tls", self.objects[o].name),
        )
    }

    fn key(&self, o: usize) -> ObjectKey {
        ObjectKey::new(&self.objects[o].namespace, &self.objects[o].name)
    }

    fn usable(&self, shape: &Shape, by: Usability, mutation: Mutation) -> bool {
        match (by, mutation) {
            // The operator's own check looked at the Secret's keys only.
            (Usability::Operator, Mutation::OperatorJudgesTlsApart) => true,
            _ => shape.tls != Some(false),
        }
    }

    /// The fleet policy over `objects`: `resolve_fleet`, with the usability check of `by`.
    pub fn policy(&self, objects: &[Option<Snapshot>], by: Usability) -> Policy {
        self.policy_of(objects, by, self.mutation)
    }

    /// [`FleetModel::policy`] as the code with `mutation` decides it: one `resolve_fleet`
    /// gives the verdicts (a TLS host an older object holds included), what is served and
    /// each TLS host's Secret.
    fn policy_of(&self, objects: &[Option<Snapshot>], by: Usability, mutation: Mutation) -> Policy {
        let n = objects.len();
        let specs: Vec<Option<(RouterConfigSpec, Option<RouterConfigSpec>)>> = objects
            .iter()
            .enumerate()
            .map(|(o, s)| {
                s.map(|s| {
                    (
                        self.spec(o, &s.shape),
                        s.last_accepted.map(|a| self.spec(o, &a.shape)),
                    )
                })
            })
            .collect();
        let uids: Vec<String> = objects
            .iter()
            .map(|s| s.map_or(String::new(), |s| uid(s.uid)))
            .collect();
        let unusable = "spec.rules[0].tls.secretName: tls.key does not match the certificate in tls.crt";
        let tls_problem: Vec<Option<String>> = objects
            .iter()
            .map(|s| {
                s.filter(|s| !self.usable(&s.shape, by, mutation))
                    .map(|_| unusable.to_owned())
            })
            .collect();
        let candidates = self.candidates(objects, &specs, &uids, &tls_problem);
        let resolution = resolve_fleet(candidates.clone());
        let verdicts: Vec<Option<Verdict>> = (0..n)
            .map(|o| resolution.verdicts.get(&self.key(o)).cloned())
            .collect();
        let mut served = vec![None; n];
        for s in &resolution.served {
            let o = self.index(&s.key);
            let snap = objects[o].expect("served");
            let shape = if s.generation == snap.generation {
                snap.shape
            } else {
                snap.last_accepted.expect("last accepted").shape
            };
            served[o] = Some(Accepted {
                uid: snap.uid,
                generation: s.generation,
                shape,
            });
        }
        let mut accepted = vec![None; n];
        for c in &candidates {
            let o = self.index(&c.key);
            let snap = objects[o].expect("candidate");
            let verdict = verdicts[o].as_ref().expect("judged");
            accepted[o] = last_accepted(c, verdict).map(|a: AcceptedGeneration| Accepted {
                uid: snap.uid,
                generation: a.generation,
                shape: if a.generation == snap.generation {
                    snap.shape
                } else {
                    snap.last_accepted.expect("last accepted").shape
                },
            });
        }
        let certs = match mutation {
            Mutation::CertificateFromCurrentSpec => certificates_from_current_specs(self, objects),
            _ => certificates_of_owners(self, &resolution.certificates, &served),
        };
        Policy {
            verdicts,
            tls_problem,
            served,
            last_accepted: accepted,
            certs,
        }
    }

    /// The objects as `resolve_fleet` takes them.
    fn candidates<'a>(
        &self,
        objects: &[Option<Snapshot>],
        specs: &'a [Option<(RouterConfigSpec, Option<RouterConfigSpec>)>],
        uids: &'a [String],
        tls_problem: &'a [Option<String>],
    ) -> Vec<Candidate<'a>> {
        (0..objects.len())
            .filter_map(|o| {
                let s = objects[o]?;
                let (spec, last) = specs[o].as_ref()?;
                Some(Candidate {
                    key: self.key(o),
                    uid: &uids[o],
                    created: Some(wall(u64::from(s.created))),
                    generation: s.generation,
                    spec,
                    last_accepted: last
                        .as_ref()
                        .map(|l| (s.last_accepted.expect("a spec").generation, l)),
                    tls_problem: tls_problem[o].as_deref(),
                    unwatched_backend: None,
                    generated: false,
                })
            })
            .collect()
    }

    fn index(&self, key: &ObjectKey) -> usize {
        (0..self.objects.len())
            .find(|&o| self.key(o) == *key)
            .expect("a known object")
    }
}

/// Fixed: each TLS host's certificate is the Secret `resolve_fleet` gives it
/// (`Resolution::certificates`), as the served generation of the object that names it has it
/// (its uid, generation and whether its material can be served).
fn certificates_of_owners(
    model: &FleetModel,
    certificates: &BTreeMap<String, CertificateChoice>,
    served: &[Option<Accepted>],
) -> Vec<(String, Cert)> {
    certificates
        .iter()
        .map(|(host, CertificateChoice { secret, .. })| {
            let (o, s) = served
                .iter()
                .enumerate()
                .find_map(|(o, s)| {
                    s.filter(|s| {
                        s.shape.tls.is_some()
                            && model.host(o, &s.shape) == *host
                            && model.secret(o) == *secret
                    })
                    .map(|s| (o, s))
                })
                .expect("a Secret of a served generation");
            let cert = Cert {
                object: o,
                uid: s.uid,
                generation: s.generation,
                usable: s.shape.tls == Some(true),
            };
            (host.clone(), cert)
        })
        .collect()
}

/// The bug: each host's certificate from the current spec of whichever object names it
/// (rejected or not; the last one in map order wins).
fn certificates_from_current_specs(model: &FleetModel, objects: &[Option<Snapshot>]) -> Vec<(String, Cert)> {
    let mut certs: BTreeMap<String, Cert> = BTreeMap::new();
    for (o, s) in objects.iter().enumerate() {
        let Some(s) = s else { continue };
        if let Some(usable) = s.shape.tls {
            certs.insert(
                model.host(o, &s.shape),
                Cert {
                    object: o,
                    uid: s.uid,
                    generation: s.generation,
                    usable,
                },
            );
        }
    }
    certs.into_iter().collect()
}

/// The uid a report names, as the operator's judgement reads it. The project's
/// `barrier::members_serving` counts a report only for the object's own uid;
/// `NameGenerationIdentity` puts back identity by name and generation by letting every
/// report stand for the object's current incarnation.
pub fn reported_uid(report: &Served, current: u8, mutation: Mutation) -> u8 {
    if mutation == Mutation::NameGenerationIdentity {
        current
    } else {
        report.uid
    }
}

/// What a list of stored (or cached) objects holds of each: its snapshot.
fn snapshots(objects: &[Option<Obj>]) -> Vec<Option<Snapshot>> {
    objects.iter().map(|x| x.as_ref().map(|x| x.snapshot)).collect()
}

fn uid(u: u8) -> String {
    format!("uid-{u}")
}

fn digest(generation: i64, shape: &Shape) -> String {
    format!("sha256:{generation}:{shape:?}")
}

impl FleetModel {
    fn namespaces(&self, p: usize, widened: bool) -> &[String] {
        let setup = &self.proxies[p];
        match (&setup.widened, widened) {
            (Some(wide), true) => wide,
            _ => &setup.namespaces,
        }
    }

    fn watches(&self, p: usize, widened: bool, o: usize) -> bool {
        self.namespaces(p, widened).contains(&self.objects[o].namespace)
    }

    /// What proxy `p`'s watch would deliver now.
    fn snapshot_for(&self, s: &FleetState, p: usize) -> Vec<Option<Snapshot>> {
        let widened = s.proxies[p].widened;
        s.objects
            .iter()
            .enumerate()
            .map(|(o, obj)| {
                obj.as_ref()
                    .filter(|_| self.watches(p, widened, o))
                    .map(|obj| obj.snapshot)
            })
            .collect()
    }

    /// The proxy's plan over what its watch delivered.
    fn plan(&self, proxy: &mut Proxy) {
        let policy = self.policy(&proxy.seen, Usability::Replica);
        for (o, seen) in proxy.seen.iter().enumerate() {
            proxy.served[o] = seen.map(|snap| {
                let served = policy.served[o];
                // As `plan::plan` reports it (`Resolution::unserved_reason`): the current
                // generation is rejected when it is not accepted or its TLS cannot be served,
                // even when the generation served (`lastAccepted`) has the same number, as
                // when an older object takes its match or TLS host.
                let accepted = policy.verdicts[o].as_ref().is_some_and(Verdict::is_accepted)
                    && policy.tls_problem[o].is_none();
                Served {
                    uid: snap.uid,
                    generation: served.map_or(0, |s| s.generation),
                    shape: served.map(|s| s.shape),
                    rejected: (!accepted).then_some(snap.generation),
                }
            });
        }
        proxy.certs = policy.certs;
        proxy.synced = true;
    }

    /// The quorum read of a verifying proxy: the store holds nothing it has not processed.
    fn in_step(&self, s: &FleetState, p: usize) -> bool {
        let now = self.snapshot_for(s, p);
        let seen = &s.proxies[p].seen;
        now.iter().zip(seen).all(|(now, seen)| match (now, seen) {
            (None, None) => true,
            // The bug: identity is name and generation.
            (Some(a), Some(b)) if self.mutation == Mutation::NameGenerationIdentity => {
                a.generation == b.generation
                    && a.last_accepted.map(|l| l.generation) == b.last_accepted.map(|l| l.generation)
            }
            (Some(a), Some(b)) => a == b,
            _ => false,
        })
    }

    /// The proxy renews its Lease.
    fn renewing(&self, proxy: &Proxy) -> bool {
        proxy.active() && (proxy.sync_alive || self.mutation == Mutation::UnsupervisedSyncLoop)
    }

    fn replica_id(&self, p: usize) -> ReplicaId {
        ReplicaId::new(PROXY_NS, self.proxies[p].name.clone())
    }

    /// A RouterReplica object as the operator reads it, with the entries that count for the
    /// current incarnations.
    fn rrep_object(&self, s: &FleetState, p: usize, rrep: &Rrep) -> RouterReplica {
        let mut object = RouterReplica::new(
            &self.proxies[p].name,
            RouterReplicaSpec {
                fleet: FLEET.into(),
                namespaces: self.namespaces(p, rrep.widened).to_vec(),
            },
        );
        let served = rrep
            .served
            .iter()
            .enumerate()
            .filter_map(|(o, entry)| {
                let entry = entry.as_ref()?;
                let obj = s.operator.objects[o].as_ref()?;
                Some(ServedRouterConfig {
                    namespace: self.objects[o].namespace.clone(),
                    name: self.objects[o].name.clone(),
                    uid: uid(reported_uid(entry, obj.snapshot.uid, self.mutation)),
                    observed_generation: entry.generation,
                    config_digest: entry
                        .shape
                        .map_or(String::new(), |shape| digest(entry.generation, &shape)),
                    applied_at: None,
                    rejected: entry.rejected.map(|g| Rejection {
                        generation: g,
                        message: "rejected".into(),
                    }),
                })
            })
            .collect();
        object.status = Some(RouterReplicaStatus {
            served,
            ..Default::default()
        });
        object
    }

    /// The status the operator would write for object `o` from its caches, re-listing the
    /// RouterReplicas before it says Ready=True.
    fn judge(&self, s: &FleetState, o: usize) -> Option<(Status, Option<Accepted>)> {
        // From its RouterConfig cache: another object's edit may not have reached it yet.
        let cached = &s.operator.objects;
        let obj = cached[o].as_ref()?;
        let snapshots = snapshots(cached);
        let policy = self.policy(&snapshots, Usability::Operator);
        let verdict = policy.verdicts[o].clone()?;
        let tls_problem = policy.tls_problem[o]
            .as_ref()
            .filter(|_| verdict.is_accepted())
            .map(|m| TlsProblem::Unusable(m.clone()));
        let last = policy.last_accepted[o];
        let last_crd = last.map(|a| AcceptedGeneration {
            uid: uid(a.uid),
            generation: a.generation,
            spec: self.spec(o, &a.shape),
        });
        let live: Vec<ReplicaId> = (0..self.proxies.len())
            .filter(|&p| s.leases[p] == Some(LeaseState::Live))
            .map(|p| self.replica_id(p))
            .collect();
        let ns = &self.objects[o].namespace;
        let objects_of = |rreps: &[Option<Rrep>]| -> BTreeMap<ReplicaId, RouterReplica> {
            rreps
                .iter()
                .enumerate()
                .filter_map(|(p, r)| {
                    r.as_ref()
                        .map(|r| (self.replica_id(p), self.rrep_object(s, p, r)))
                })
                .collect()
        };
        let decide = |objects: &BTreeMap<ReplicaId, RouterReplica>| {
            let current_uid = uid(obj.snapshot.uid);
            let members: Vec<Member<'_>> =
                members_serving(ns, &self.objects[o].name, &current_uid, FLEET, &live, |id| {
                    objects.get(id)
                });
            let current = obj.status.to_crd();
            barrier::decide(barrier::Input {
                generation: obj.snapshot.generation,
                fleet: FLEET,
                current: &current,
                members: &members,
                verdict: &verdict,
                tls_problem: tls_problem.as_ref(),
                expected_digest: &digest(obj.snapshot.generation, &obj.snapshot.shape),
                last_accepted: last_crd.as_ref(),
                now: wall(0),
                settings: Settings {
                    stall_timeout: mono(3600),
                    progress_interval: mono(0),
                },
            })
        };
        let cached = objects_of(&s.operator.rreps);
        let mut out = decide(&cached);
        // As `confirm_members` does: Leases are read fresh (here: always), RouterReplicas
        // again only when the cache leaves a live replica out by its spec; the reports
        // themselves come from the cache otherwise.
        if out.ready
            && out.changed
            && self.mutation != Mutation::StaleReplicaSpec
            && !left_out_by_spec(ns, FLEET, &live, |id| cached.get(id)).is_empty()
        {
            out = decide(&objects_of(&s.rreps));
        }
        let status = Status::of(&out.status);
        let changed = status != obj.status || last != obj.snapshot.last_accepted;
        changed.then_some((status, last))
    }

    /// The fleet policy over the store: each object's verdict (accepted or not) and each TLS
    /// host's owner.
    fn owners(&self, s: &FleetState) -> (Vec<bool>, Vec<(String, Cert)>) {
        let snapshots = snapshots(&s.objects);
        let policy = self.policy_of(&snapshots, Usability::Replica, Mutation::None);
        let accepted = policy
            .verdicts
            .iter()
            .map(|v| v.as_ref().is_some_and(Verdict::is_accepted))
            .collect();
        (accepted, policy.certs)
    }

    /// The TLS hosts an object names, now or in its `lastAccepted`.
    fn tls_hosts_of(&self, s: &FleetState, o: usize) -> Vec<String> {
        let Some(x) = s.objects[o].as_ref() else {
            return Vec::new();
        };
        [Some(x.snapshot.shape), x.snapshot.last_accepted.map(|a| a.shape)]
            .into_iter()
            .flatten()
            .filter(|shape| shape.tls.is_some())
            .map(|shape| self.host(o, &shape))
            .collect()
    }

    /// After a store write of object `o`: records each other object whose verdict or TLS
    /// host owner it changed as disturbed by `o`.
    fn note_disturbances(&self, s: &mut FleetState, o: usize, before: &(Vec<bool>, Vec<(String, Cert)>)) {
        let after = self.owners(s);
        let owner = |certs: &[(String, Cert)], host: &str| {
            certs
                .iter()
                .find(|(h, _)| h == host)
                .map(|(_, c)| (c.object, c.uid))
        };
        let (uid, generation) = s.objects[o]
            .as_ref()
            .map_or((0, 0), |x| (x.snapshot.uid, x.snapshot.generation));
        for u in (0..s.objects.len()).filter(|&u| u != o) {
            let verdict_moved = before.0.get(u) != after.0.get(u);
            let host_moved = self
                .tls_hosts_of(s, u)
                .iter()
                .any(|h| owner(&before.1, h) != owner(&after.1, h));
            if verdict_moved || host_moved {
                s.disturbed.insert(u, (o, uid, generation));
            }
        }
    }

    /// Forgets each disturbance once the writer's `Ready` covers its write (every replica
    /// has processed it) and the operator has judged the disturbed object since its cache
    /// showed the write.
    fn settle_disturbances(s: &mut FleetState) {
        let covers = |x: Option<&Obj>, uid: u8, generation: i64, ready: bool| {
            x.is_some_and(|x| {
                (!ready || x.status.ready_for() == Some(x.snapshot.generation))
                    && (x.snapshot.uid != uid || x.snapshot.generation >= generation)
            })
        };
        let (objects, operator) = (&s.objects, &s.operator);
        s.disturbed.retain(|&u, &mut (m, uid, generation)| {
            let writer_ready = covers(objects[m].as_ref(), uid, generation, true);
            let seen = covers(operator.objects[m].as_ref(), uid, generation, false);
            let judged = seen && !operator.dirty[u] && operator.pending.as_ref().is_none_or(|p| p.0 != u);
            !(writer_ready && judged)
        });
    }

    fn cold_start(&self) -> FleetState {
        let (n, m) = (self.objects.len(), self.proxies.len());
        FleetState {
            objects: self
                .objects
                .iter()
                .enumerate()
                .map(|(o, setup)| {
                    Some(Obj {
                        snapshot: Snapshot {
                            uid: o as u8 + 1,
                            created: o as u8 + 1,
                            generation: 1,
                            shape: setup.shape,
                            last_accepted: None,
                        },
                        status: Status::default(),
                    })
                })
                .collect(),
            leases: vec![None; m],
            rreps: vec![None; m],
            proxies: (0..m).map(|_| Proxy::fresh(n, false)).collect(),
            operator: Operator {
                objects: vec![None; n],
                rreps: vec![None; m],
                dirty: vec![true; n],
                pending: None,
            },
            written: 0,
            faults: 0,
            last_uid: n as u8,
            disturbed: BTreeMap::new(),
        }
    }

    fn may_fault(&self, s: &FleetState) -> bool {
        s.faults < self.max_faults
    }

    fn mark_all_dirty(s: &mut FleetState) {
        s.operator.dirty.iter_mut().for_each(|d| *d = true);
    }

    fn write_rrep(s: &mut FleetState, p: usize) {
        let rrep = s.proxies[p].rrep();
        if s.rreps[p].as_ref() != Some(&rrep) {
            s.rreps[p] = Some(rrep);
        }
    }
}

impl Model for FleetModel {
    type State = FleetState;
    type Action = FleetAction;

    fn init_states(&self) -> Vec<FleetState> {
        // A settled fleet: what a cold start reaches when nothing goes wrong.
        let mut s = self.cold_start();
        let settling = |a: &FleetAction| {
            matches!(
                a,
                FleetAction::Sync(_)
                    | FleetAction::Join(_)
                    | FleetAction::Verify(_)
                    | FleetAction::OperatorWatchConfigs
                    | FleetAction::OperatorWatchReplicas(_)
                    | FleetAction::Reconcile(_)
                    | FleetAction::WriteLands
            )
        };
        for _ in 0..1000 {
            let mut actions = Vec::new();
            self.actions(&s, &mut actions);
            let Some(action) = actions.into_iter().find(settling) else {
                break;
            };
            s = self.next_state(&s, action).expect("a settling step");
        }
        vec![s]
    }

    fn actions(&self, s: &FleetState, actions: &mut Vec<FleetAction>) {
        if let Some(write) = self.script.get(s.written) {
            actions.push(FleetAction::Write(*write));
        }
        for (p, proxy) in s.proxies.iter().enumerate() {
            if proxy.active() && proxy.sync_alive {
                let rrep_written = s.rreps[p].as_ref() == Some(&proxy.rrep());
                if !proxy.synced
                    || proxy.seen != self.snapshot_for(s, p)
                    || !rrep_written && s.rreps[p].is_some()
                {
                    actions.push(FleetAction::Sync(p));
                }
                if proxy.stage == Stage::Outside && proxy.synced {
                    actions.push(FleetAction::Join(p));
                }
                if proxy.stage == Stage::Verifying && rrep_written && self.in_step(s, p) {
                    actions.push(FleetAction::Verify(p));
                }
            }
            if s.leases[p] == Some(LeaseState::Live) && !self.renewing(proxy) {
                actions.push(FleetAction::Expire(p));
            }
            if proxy.frozen {
                actions.push(FleetAction::Wake(p));
            }
            if proxy.stray_write {
                actions.push(FleetAction::StrayWriteLands(p));
            }
            if proxy.up && !proxy.sync_alive && self.mutation != Mutation::UnsupervisedSyncLoop {
                actions.push(FleetAction::Restart(p));
            }
            if self.may_fault(s) && proxy.active() {
                if self.faults.freeze {
                    actions.push(FleetAction::Freeze(p));
                }
                if self.faults.crash {
                    actions.push(FleetAction::Crash(p));
                }
                if self.faults.leave {
                    actions.push(FleetAction::Leave(p));
                }
                if self.faults.sync_death && proxy.sync_alive {
                    actions.push(FleetAction::SyncDies(p));
                }
                if self.faults.widen && self.proxies[p].widened.is_some() && !proxy.widened {
                    actions.push(FleetAction::Widen(p));
                }
            }
            let lease_gone = !matches!(s.leases[p], Some(LeaseState::Live));
            if s.rreps[p].is_some() && lease_gone && self.mutation != Mutation::NoReplicaGarbageCollection {
                actions.push(FleetAction::CollectReplica(p));
            }
        }
        if s.operator.objects != s.objects {
            actions.push(FleetAction::OperatorWatchConfigs);
        }
        for p in 0..s.rreps.len() {
            if s.operator.rreps[p] != s.rreps[p] {
                actions.push(FleetAction::OperatorWatchReplicas(p));
            }
        }
        if s.operator.pending.is_some() {
            actions.push(FleetAction::WriteLands);
        } else {
            for (o, dirty) in s.operator.dirty.iter().enumerate() {
                if *dirty && s.operator.objects[o].is_some() {
                    actions.push(FleetAction::Reconcile(o));
                }
            }
        }
    }

    fn next_state(&self, last: &FleetState, action: FleetAction) -> Option<FleetState> {
        let mut s = last.clone();
        // The object whose store write this action is: a TLS host it moves is its rollout.
        let mover = match action {
            FleetAction::Write(Write::Edit(o, _) | Write::Recreate(o, _)) => Some(o),
            FleetAction::WriteLands => s.operator.pending.as_ref().map(|p| p.0),
            _ => None,
        };
        let owners_before = mover.map(|_| self.owners(&s));
        match action {
            FleetAction::Write(write) => {
                s.written += 1;
                match write {
                    Write::Edit(o, shape) => {
                        let snap = &mut s.objects[o].as_mut()?.snapshot;
                        snap.generation += 1;
                        snap.shape = shape;
                    }
                    Write::Recreate(o, shape) => {
                        // In one step: a watch that missed the delete is the worst case for
                        // identity. A new incarnation starts from nothing: no status, no
                        // lastAccepted. (The operator's watch marks what to re-judge.)
                        s.last_uid += 1;
                        s.objects[o] = Some(Obj {
                            snapshot: Snapshot {
                                uid: s.last_uid,
                                created: s.last_uid,
                                generation: 1,
                                shape,
                                last_accepted: None,
                            },
                            status: Status::default(),
                        });
                    }
                }
            }
            FleetAction::Sync(p) => {
                let seen = self.snapshot_for(&s, p);
                let proxy = &mut s.proxies[p];
                proxy.seen = seen;
                self.plan(proxy);
                Self::write_rrep(&mut s, p);
            }
            FleetAction::Join(p) => {
                // A RouterReplica the operator removed meanwhile is written again first.
                Self::write_rrep(&mut s, p);
                s.leases[p] = Some(LeaseState::Live);
                s.proxies[p].stage = Stage::Verifying;
                Self::mark_all_dirty(&mut s);
            }
            FleetAction::Verify(p) => s.proxies[p].stage = Stage::Member,
            FleetAction::Expire(p) => {
                s.leases[p] = Some(LeaseState::Expired);
                s.proxies[p].stage = Stage::Outside;
                Self::mark_all_dirty(&mut s);
            }
            FleetAction::Freeze(p) => {
                s.proxies[p].frozen = true;
                s.faults += 1;
            }
            FleetAction::Wake(p) => s.proxies[p].frozen = false,
            FleetAction::Crash(p) => {
                let proxy = &mut s.proxies[p];
                proxy.up = false;
                proxy.stage = Stage::Outside;
                s.faults += 1;
            }
            FleetAction::Leave(p) => {
                let proxy = &mut s.proxies[p];
                proxy.up = false;
                proxy.left = true;
                proxy.stage = Stage::Outside;
                // The writers stop before the deletes; the bug aborted them, so one already
                // on the wire lands after.
                proxy.stray_write = self.mutation == Mutation::LeaveRecreatesLease;
                s.leases[p] = None;
                s.rreps[p] = None;
                s.faults += 1;
                Self::mark_all_dirty(&mut s);
            }
            FleetAction::StrayWriteLands(p) => {
                s.proxies[p].stray_write = false;
                s.leases[p] = Some(LeaseState::Live);
                s.rreps[p] = Some(s.proxies[p].rrep());
                Self::mark_all_dirty(&mut s);
            }
            FleetAction::SyncDies(p) => {
                let proxy = &mut s.proxies[p];
                proxy.sync_alive = false;
                if self.mutation != Mutation::UnsupervisedSyncLoop {
                    // Supervised: it stops renewing and turns unready at once.
                    proxy.stage = Stage::Outside;
                }
                s.faults += 1;
            }
            FleetAction::Restart(p) => {
                let widened = s.proxies[p].widened;
                s.proxies[p] = Proxy::fresh(self.objects.len(), widened);
            }
            FleetAction::Widen(p) => {
                s.proxies[p] = Proxy::fresh(self.objects.len(), true);
                s.faults += 1;
            }
            FleetAction::OperatorWatchConfigs => {
                for o in 0..s.objects.len() {
                    if s.operator.objects[o] != s.objects[o] {
                        s.operator.objects[o] = s.objects[o].clone();
                        if self.mutation == Mutation::EditedObjectOnlyRejudged {
                            s.operator.dirty[o] = true;
                        } else {
                            // Every object of the fleet whose verdict can change with this
                            // one: it may take or free their matches and TLS hosts.
                            Self::mark_all_dirty(&mut s);
                        }
                    }
                }
            }
            FleetAction::OperatorWatchReplicas(p) => {
                // A RouterReplica event: every object of the fleet in the namespaces the event's
                // object serves (the operator's `routerconfigs_served_by`; a delete event
                // carries the last state).
                let event = s.rreps[p]
                    .as_ref()
                    .or(s.operator.rreps[p].as_ref())
                    .map(|r| r.widened);
                for o in 0..s.objects.len() {
                    if event.is_some_and(|widened| self.watches(p, widened, o)) {
                        s.operator.dirty[o] = true;
                    }
                }
                s.operator.rreps[p] = s.rreps[p].clone();
            }
            FleetAction::Reconcile(o) => {
                s.operator.dirty[o] = false;
                if let Some((status, accepted)) = self.judge(&s, o) {
                    let uid = s.operator.objects[o].as_ref()?.snapshot.uid;
                    s.operator.pending = Some((o, uid, status, accepted));
                }
            }
            FleetAction::WriteLands => {
                let (o, uid, status, accepted) = s.operator.pending.take()?;
                if let Some(obj) = s.objects[o].as_mut() {
                    // The precondition: a write computed for one incarnation does not land
                    // on another (the bug wrote by name).
                    if obj.snapshot.uid == uid || self.mutation == Mutation::NameGenerationIdentity {
                        obj.status = status;
                        obj.snapshot.last_accepted = accepted;
                    }
                }
            }
            FleetAction::CollectReplica(p) => {
                s.rreps[p] = None;
                s.leases[p] = None;
                Self::mark_all_dirty(&mut s);
            }
        }
        if let (Some(o), Some(before)) = (mover, owners_before) {
            self.note_disturbances(&mut s, o, &before);
        }
        if !s.disturbed.is_empty() {
            Self::settle_disturbances(&mut s);
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(property::PROMISE, |m: &Self, s: &FleetState| promise_holds(m, s)),
            Property::always(property::CERTIFICATE, |m: &Self, s: &FleetState| {
                s.proxies.iter().filter(|p| p.answers_ready()).all(|p| {
                    p.served
                        .iter()
                        .enumerate()
                        .all(|(o, served)| match served.and_then(|r| r.shape) {
                            Some(shape) if shape.tls.is_some() => {
                                let host = m.host(o, &shape);
                                p.certs.iter().any(|(name, c)| *name == host && c.usable)
                            }
                            _ => true,
                        })
                })
            }),
            Property::always(property::REJECTED, |m: &Self, s: &FleetState| {
                s.objects.iter().enumerate().all(|(o, obj)| {
                    let Some(obj) = obj else { return true };
                    let g = obj.snapshot.generation;
                    // An older object's write that takes its match or TLS host makes the
                    // replicas reject a generation they served: the writer's rollout, until
                    // the operator has judged this object again (see `promise_holds`).
                    obj.status.ready_for() != Some(g)
                        || s.disturbed.contains_key(&o)
                        || !s.proxies.iter().enumerate().any(|(p, proxy)| {
                            proxy.answers_ready()
                                && m.watches(p, proxy.widened, o)
                                && proxy.served[o]
                                    .is_some_and(|r| r.uid == obj.snapshot.uid && r.rejected == Some(g))
                        })
                })
            }),
            Property::always(property::SETTLED, |m: &Self, s: &FleetState| {
                settled_as_decided(m, s)
            }),
            Property::always(property::LEAVE, |_: &Self, s: &FleetState| {
                s.proxies
                    .iter()
                    .enumerate()
                    .all(|(p, proxy)| !proxy.left || s.leases[p].is_none() && s.rreps[p].is_none())
            }),
            Property::always(property::GARBAGE, |m: &Self, s: &FleetState| {
                finished(m, s).is_none_or(|()| {
                    s.proxies
                        .iter()
                        .enumerate()
                        .all(|(p, proxy)| proxy.up || s.rreps[p].is_none())
                })
            }),
            Property::sometimes(property::REACHED, |m: &Self, s: &FleetState| {
                s.written == m.script.len() && all_decided_ready(m, s)
            }),
        ]
    }
}

/// Some(()) when no action is left: the run has finished.
fn finished(m: &FleetModel, s: &FleetState) -> Option<()> {
    let mut actions = Vec::new();
    m.actions(s, &mut actions);
    actions.is_empty().then_some(())
}

/// Whether object `o` is accepted and servable by the policy the replicas apply, with some
/// running replica serving its namespace.
fn servable(m: &FleetModel, s: &FleetState, o: usize) -> Option<bool> {
    let snapshots = snapshots(&s.objects);
    let policy = m.policy_of(&snapshots, Usability::Replica, Mutation::None);
    let accepted = policy.verdicts[o].as_ref()?.is_accepted() && policy.tls_problem[o].is_none();
    Some(accepted)
}

fn all_decided_ready(m: &FleetModel, s: &FleetState) -> bool {
    s.objects.iter().enumerate().all(|(o, obj)| {
        let Some(obj) = obj else { return true };
        obj.status.ready_for() == Some(obj.snapshot.generation) || servable(m, s, o) != Some(true)
    })
}

/// In a finished run, every object the policy accepts is Ready=True at its generation
/// (while some running replica serves its namespace), and every other says Accepted=False.
fn settled_as_decided(m: &FleetModel, s: &FleetState) -> bool {
    if finished(m, s).is_none() {
        return true;
    }
    s.objects.iter().enumerate().all(|(o, obj)| {
        let Some(obj) = obj else { return true };
        let served = s
            .proxies
            .iter()
            .enumerate()
            .any(|(p, proxy)| proxy.up && m.watches(p, proxy.widened, o));
        match servable(m, s, o) {
            Some(true) => !served || obj.status.ready_for() == Some(obj.snapshot.generation),
            _ => obj.status.condition(condition::ACCEPTED) == Some("False"),
        }
    })
}

/// The promise per object: while object `o` (uid U) says Ready=True for its generation G,
/// every replica that answers ready and serves its namespace serves U at G or newer and, for
/// a TLS host that U owns (by the policy over the store), presents U's certificate of G or
/// newer.
///
/// A host that another object takes over, or gives back, is that object's to answer for
/// while `o` is disturbed ([`FleetState::disturbed`]): its own `Ready` waits for the
/// replicas, while `o` is only judged again after the operator's cache showed the write (the
/// settled property checks that it is).
pub fn promise_holds(m: &FleetModel, s: &FleetState) -> bool {
    let snapshots = snapshots(&s.objects);
    let mut owners: Option<Vec<(String, Cert)>> = None;
    s.objects.iter().enumerate().all(|(o, obj)| {
        let Some(obj) = obj else { return true };
        let (u, g) = (obj.snapshot.uid, obj.snapshot.generation);
        if obj.status.ready_for() != Some(g) {
            return true;
        }
        let owners =
            owners.get_or_insert_with(|| m.policy_of(&snapshots, Usability::Replica, Mutation::None).certs);
        let host = obj
            .snapshot
            .shape
            .tls
            .map(|_| m.host(o, &obj.snapshot.shape))
            .filter(|h| {
                owners
                    .iter()
                    .any(|(name, c)| name == h && c.object == o && c.uid == u)
            })
            // Moved (taken, or given back) by another object's write that is still that
            // object's rollout: replicas may present either side's certificate until then.
            .filter(|_| !s.disturbed.contains_key(&o));
        s.proxies.iter().enumerate().all(|(p, proxy)| {
            if !proxy.answers_ready() || !m.watches(p, proxy.widened, o) {
                return true;
            }
            let serves = proxy.served[o].is_some_and(|r| r.uid == u && r.generation >= g);
            let certified = host.as_ref().is_none_or(|h| {
                proxy
                    .certs
                    .iter()
                    .any(|(name, c)| name == h && c.object == o && c.uid == u && c.generation >= g)
            });
            serves && certified
        })
    })
}

/// A counterexample as a reader wants it: each step, then each object (uid, generation,
/// Ready, lastAccepted) and each proxy (stage, what it serves, its certificates).
pub fn explain_fleet(model: &FleetModel, actions: &[FleetAction]) -> String {
    let mut state = model.init_states().remove(0);
    let mut out = format!("start: {}\n", describe(model, &state));
    for action in actions {
        let Some(next) = model.next_state(&state, *action) else {
            out.push_str(&format!("{action:?}: not applicable\n"));
            break;
        };
        state = next;
        out.push_str(&format!("{action:?}: {}\n", describe(model, &state)));
    }
    out
}

fn describe(m: &FleetModel, s: &FleetState) -> String {
    let objects: Vec<String> = s
        .objects
        .iter()
        .enumerate()
        .map(|(o, obj)| {
            let name = &m.objects[o].name;
            match obj {
                None => format!("{name} deleted"),
                Some(obj) => format!(
                    "{name} uid {} generation {} Ready for {:?} Accepted {:?} lastAccepted {:?}",
                    obj.snapshot.uid,
                    obj.snapshot.generation,
                    obj.status.ready_for(),
                    obj.status.condition(condition::ACCEPTED),
                    obj.snapshot.last_accepted.map(|a| (a.uid, a.generation)),
                ),
            }
        })
        .collect();
    let proxies: Vec<String> = s
        .proxies
        .iter()
        .enumerate()
        .map(|(p, proxy)| {
            let served: Vec<String> = proxy
                .served
                .iter()
                .enumerate()
                .filter_map(|(o, r)| {
                    r.map(|r| {
                        format!(
                            "{} uid {} at {}{}",
                            m.objects[o].name,
                            r.uid,
                            r.generation,
                            r.rejected.map_or(String::new(), |g| format!(" (rejects {g})"))
                        )
                    })
                })
                .collect();
            let certs: Vec<String> = proxy
                .certs
                .iter()
                .map(|(h, c)| {
                    format!(
                        "{h} cert of {} uid {} at {}{}",
                        m.objects[c.object].name,
                        c.uid,
                        c.generation,
                        if c.usable { "" } else { " (unusable)" }
                    )
                })
                .collect();
            format!(
                "{}: {} {:?}{} lease {:?} serves [{}] certs [{}]",
                m.proxies[p].name,
                if proxy.left {
                    "left"
                } else if !proxy.up {
                    "down"
                } else if proxy.frozen {
                    "frozen"
                } else if !proxy.sync_alive {
                    "sync dead"
                } else {
                    "up"
                },
                proxy.stage,
                if proxy.answers_ready() { " READY" } else { "" },
                s.leases[p],
                served.join(", "),
                certs.join(", ")
            )
        })
        .collect();
    format!("{} | {}", objects.join("; "), proxies.join(" | "))
}
