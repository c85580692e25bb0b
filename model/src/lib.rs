//! A model of lockstep's barrier protocol, checked exhaustively with stateright.
//!
//! (One file on purpose: the state, the actions and the properties are read together, and
//! splitting them would hide how a step changes the state the properties look at.)
//!
//! The model is the protocol's moving parts and faults; every decision in it is the project's
//! own code, called as the operator and the proxies call it:
//! - the operator's judgement: `lockstep_core::barrier::{members_serving, decide}`, fed by a
//!   `lockstep_core::lease::LeaseClock` that it updates from delayed watch events and, before
//!   it writes `Ready=True`, from a quorum list;
//! - each proxy's membership and readiness: `lockstep_core::lease::ReplicaLease`
//!   (`renewed`, `verified`, `ready`, `renewal_due`).
//!
//! What it models: the apiserver's store (the RouterConfig's generation and status, each
//! proxy's Lease version and RouterReplica report); proxies whose watch delivers late, that
//! apply (or reject) and report in separate steps, write their Lease as a request that lands
//! and is answered in separate steps (so an answer can come after the Lease ran out), verify
//! with a quorum read, freeze and wake, crash and restart, and leave; one or two operators
//! with their own caches, each fed by its own delayed watches, a leader that can change while
//! the old one's status write is still in flight; and time that moves in whole seconds past
//! Lease expiry and the stall timeout.
//!
//! The promise (docs/protocol.md, "The promise") is checked at every state: while the stored
//! status says `Ready=True` for the current generation G, every proxy that would answer
//! `/readyz` 200 serves G or newer. Liveness: once faults stop, every run ends with
//! `Ready=True` for the newest generation (unless a replica rejects it).
//!
//! [`Mutation`] puts back, one at a time, the four bugs a review found in the first design;
//! the checker must find a counterexample for each (`tests/barrier_model.rs`).
//!
//! [`objects`] is the second model: the promise per object across the RouterConfigs of a
//! fleet (identity by uid, certificates, conflicts, replica processes), with the mutants of
//! the review that found those gaps.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use lockstep_core::{
    Verdict,
    barrier::{self, Member, Settings, members_serving},
    lease::{GenerationMembers, LeaseClock, LeaseView, ReplicaLease, Stage},
};
use lockstep_crds::{
    Rejection, ReplicaId, ReplicaStatus, RouterConfigStatus, RouterReplica, RouterReplicaSpec,
    RouterReplicaStatus, ServedRouterConfig, condition,
};
use stateright::{Model, Property};

pub mod objects;

/// The namespace of the RouterConfig.
const NS: &str = "apps";
/// Its name.
const NAME: &str = "web";
/// Its fleet.
const FLEET: &str = "blue";

/// A bug put back for the checker to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// The code as it is.
    None,
    /// A renewal answered after the Lease ran out keeps the replica's stage (skips the fence),
    /// as the first design's proxy did.
    LateRenewalKeepsStage,
    /// A replica is ready as soon as its Lease is written, without the quorum check after it.
    JoinWithoutQuorumCheck,
    /// Replicas are told apart by name only, so same-named replicas of two namespaces collide.
    NameOnlyIdentity,
    /// The operator trusts its Lease cache when it writes Ready=True (no quorum list, neither
    /// at the rollout's first judgement nor before Ready=True).
    NoMembershipRelist,
    /// At Ready=True the operator trusts the list it made at the rollout's first judgement even
    /// when a Lease that list showed live ran out in its cache since (a stalled Lease watch
    /// looks like that).
    RolloutListTrustedAfterExpiry,
    /// Identity is namespace/name and generation, no uid: a report, the join check and the
    /// status write of one incarnation stand for a re-created one ([`objects`] model).
    NameGenerationIdentity,
    /// Each TLS host's certificate comes from the current spec of whichever object names it,
    /// rejected or not, not from the generation that owns the host ([`objects`] model).
    CertificateFromCurrentSpec,
    /// The operator judges membership on its cached RouterReplica spec (no re-list of the
    /// RouterReplicas before `Ready=True`) ([`objects`] model).
    StaleReplicaSpec,
    /// A sync loop that died leaves the replica renewing and ready ([`objects`] model).
    UnsupervisedSyncLoop,
    /// SIGTERM aborts the writers, so a write already on the wire re-creates the Lease and
    /// RouterReplica after leave's deletes ([`objects`] model).
    LeaveRecreatesLease,
    /// Only the edited RouterConfig is re-judged when it takes or frees another's match or
    /// TLS host ([`objects`] model).
    EditedObjectOnlyRejudged,
    /// The operator judges TLS material usable on its own weaker check (keys present) while
    /// the replicas reject it ([`objects`] model).
    OperatorJudgesTlsApart,
    /// The operator never removes the RouterReplica of a replica whose Lease is gone
    /// ([`objects`] model).
    NoReplicaGarbageCollection,
}

/// The model's shape and bounds.
#[derive(Debug, Clone)]
pub struct BarrierModel {
    /// The proxies: (namespace, name) of each. Same names in two namespaces are two replicas.
    pub proxies: Vec<(String, String)>,
    /// Operators (1 or 2); with 2 the leader can change (a fault).
    pub operators: usize,
    /// Generations the RouterConfig reaches (1 = never edited).
    pub max_generation: i64,
    /// A proxy (index) that rejects a generation.
    pub rejecting: Option<(usize, i64)>,
    /// Lease duration, whole seconds.
    pub lease_seconds: u64,
    /// Stall timeout, seconds.
    pub stall_seconds: u64,
    /// Time runs from 0 to this, in seconds.
    pub max_time: u64,
    /// Faults and edits happen only before this time, so the run can settle after it.
    pub faults_until: u64,
    /// Most faults (freeze, crash, leave, failover) in one run.
    pub max_faults: u8,
    /// Which faults exist.
    pub faults: Faults,
    /// Start from a settled fleet (every proxy a member at generation 1, Ready=True) rather
    /// than from processes that have yet to join.
    pub steady_start: bool,
    /// The proxy (index) whose Lease writes land (and are answered) as a step of their own,
    /// any time later, rather than with the send: a slow apiserver, answers that come after
    /// the Lease ran out. One proxy suffices to show the race and keeps the space small.
    pub slow_lease_writes: Option<usize>,
    /// A bug put back.
    pub mutation: Mutation,
}

/// Which faults the checker may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// SIGSTOP and SIGCONT of a proxy.
    pub freeze: bool,
    /// SIGKILL of a proxy and its restart.
    pub crash: bool,
    /// SIGTERM: a proxy leaves cleanly, then restarts.
    pub leave: bool,
    /// The operator leader changes.
    pub failover: bool,
}

impl Faults {
    /// Every fault.
    pub const ALL: Faults = Faults {
        freeze: true,
        crash: true,
        leave: true,
        failover: true,
    };
    /// No fault at all.
    pub const NONE: Faults = Faults {
        freeze: false,
        crash: false,
        leave: false,
        failover: false,
    };
}

impl BarrierModel {
    /// Two proxies in one namespace start cold (nothing joined yet), one operator, one edit,
    /// one crash, freeze or leave.
    pub fn small() -> Self {
        Self {
            proxies: vec![("proxies".into(), "p0".into()), ("proxies".into(), "p1".into())],
            operators: 1,
            max_generation: 2,
            rejecting: None,
            lease_seconds: 3,
            stall_seconds: 3,
            max_time: 3,
            faults_until: 1,
            max_faults: 1,
            faults: Faults::ALL,
            slow_lease_writes: None,
            steady_start: false,
            mutation: Mutation::None,
        }
    }

    /// A rollout from a settled fleet in which one proxy's Lease writes land late (and a 2 s
    /// Lease, so a renewal can be answered after the previous one ran out).
    pub fn rollout() -> Self {
        Self {
            steady_start: true,
            slow_lease_writes: Some(0),
            lease_seconds: 2,
            max_time: 4,
            faults_until: 3,
            max_faults: 0,
            faults: Faults::NONE,
            ..Self::small()
        }
    }

    /// A rollout from a settled fleet with two operators whose leadership can change while a
    /// status write is in flight, or a proxy that freezes.
    pub fn failover() -> Self {
        Self {
            operators: 2,
            steady_start: true,
            max_time: 4,
            faults_until: 3,
            faults: Faults {
                failover: true,
                freeze: true,
                crash: false,
                leave: false,
            },
            ..Self::small()
        }
    }

    /// A rollout to two replicas of the same name in two namespaces, both serving the
    /// RouterConfig's namespace.
    pub fn same_names() -> Self {
        Self {
            proxies: vec![
                ("east".into(), "proxy-0".into()),
                ("west".into(), "proxy-0".into()),
            ],
            steady_start: true,
            max_time: 5,
            faults_until: 3,
            ..Self::small()
        }
    }

    /// Three proxies, two faults, two edits, one of which a replica rejects: the deep run.
    pub fn wide() -> Self {
        Self {
            proxies: vec![
                ("proxies".into(), "p0".into()),
                ("proxies".into(), "p1".into()),
                ("proxies".into(), "p2".into()),
            ],
            max_generation: 3,
            rejecting: Some((2, 2)),
            max_faults: 2,
            steady_start: true,
            slow_lease_writes: Some(0),
            faults_until: 4,
            max_time: 7,
            ..Self::small()
        }
    }
}

/// A counterexample as a reader wants it: each step with the time, the stored generation and
/// Ready, and each proxy's served generation, stage and readiness after it, up to the first
/// state that breaks the promise.
pub fn explain(model: &BarrierModel, actions: &[Action]) -> String {
    let mut state = model.init_states().remove(0);
    let mut out = String::new();
    for action in actions {
        let Some(next) = model.next_state(&state, *action) else {
            out.push_str(&format!("{action:?}: not applicable\n"));
            break;
        };
        state = next;
        let proxies: Vec<String> = state
            .proxies
            .iter()
            .enumerate()
            .map(|(p, proxy)| {
                let (ns, name) = &model.proxies[p];
                format!(
                    "{ns}/{name}: {} serves {} sees {} {:?}{}",
                    if !proxy.up {
                        "down"
                    } else if proxy.frozen {
                        "frozen"
                    } else {
                        "up"
                    },
                    proxy.report.serving,
                    proxy.seen,
                    proxy.lease.stage(mono(state.now)),
                    if proxy.answers_ready(state.now) {
                        " READY"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        out.push_str(&format!(
            "t={} {action:?}: generation {} Ready for {:?} | {}\n",
            state.now,
            state.store.generation,
            state.store.status.ready_for(),
            proxies.join(" | ")
        ));
        if !promise_holds(&state) {
            out.push_str("^ the promise breaks here: Ready=True for the generation while a ready replica serves an older one\n");
            break;
        }
    }
    out
}

/// The operator's part of the stored status, without wall-clock types so states hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Status {
    observed_generation: Option<i64>,
    /// (type, status, reason, message, observedGeneration, lastTransitionTime seconds)
    conditions: Vec<(String, String, String, String, i64, i64)>,
    synced_replicas: Option<i32>,
    replicas: Option<i32>,
    synced: Option<String>,
    replica_status: Vec<ReplicaStatus>,
}

fn wall(seconds: u64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds as i64).expect("model time")
}

impl Status {
    fn to_crd(&self) -> RouterConfigStatus {
        RouterConfigStatus {
            observed_generation: self.observed_generation,
            conditions: self
                .conditions
                .iter()
                .map(|(t, s, r, m, g, at)| Condition {
                    type_: t.clone(),
                    status: s.clone(),
                    reason: r.clone(),
                    message: m.clone(),
                    observed_generation: Some(*g),
                    last_transition_time: Time(Timestamp::from_second(*at).expect("time")),
                })
                .collect(),
            synced_replicas: self.synced_replicas,
            replicas: self.replicas,
            synced: self.synced.clone(),
            replica_status: self.replica_status.clone(),
            last_accepted: None,
        }
    }

    fn of(out: &barrier::OperatorStatus) -> Self {
        Self {
            observed_generation: Some(out.observed_generation),
            conditions: out
                .conditions
                .iter()
                .map(|c| {
                    (
                        c.type_.clone(),
                        c.status.clone(),
                        c.reason.clone(),
                        c.message.clone(),
                        c.observed_generation.unwrap_or(0),
                        c.last_transition_time.0.as_second(),
                    )
                })
                .collect(),
            synced_replicas: Some(out.synced_replicas),
            replicas: Some(out.replicas),
            synced: Some(out.synced.clone()),
            replica_status: out.replica_status.clone(),
        }
    }

    /// The status (True, False) of condition `type_`.
    pub fn condition(&self, type_: &str) -> Option<&str> {
        self.conditions
            .iter()
            .find(|c| c.0 == type_)
            .map(|c| c.1.as_str())
    }

    /// The generation a `Ready=True` condition was computed for.
    pub fn ready_for(&self) -> Option<i64> {
        self.conditions
            .iter()
            .find(|c| c.0 == condition::READY && c.1 == "True")
            .map(|c| c.4)
    }
}

/// What a proxy reports on its RouterReplica for the RouterConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Report {
    /// Generation served (0: none).
    pub serving: i64,
    /// Generation rejected.
    pub rejected: Option<i64>,
}

impl Report {
    fn processed(&self, generation: i64) -> bool {
        self.serving == generation || self.rejected == Some(generation)
    }
}

/// The apiserver's store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Store {
    /// `metadata.generation`.
    pub generation: i64,
    /// The status.
    pub status: Status,
    /// Bumped by every write to the RouterConfig (spec or status).
    pub rc_version: u32,
    /// Each proxy's Lease: its resourceVersion, None when absent.
    pub leases: Vec<Option<u32>>,
    /// Each proxy's RouterReplica report, None when absent.
    pub reports: Vec<Option<Report>>,
    /// The source of resourceVersions.
    pub versions: u32,
}

/// One proxy replica.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proxy {
    /// Running (not crashed, not left).
    pub up: bool,
    /// SIGSTOPped.
    pub frozen: bool,
    /// The generation its watch has delivered (0: none yet).
    pub seen: i64,
    /// What it serves and rejected.
    pub report: Report,
    /// What its RouterReplica says, as it last wrote it (None: not written by this process).
    pub reported: Option<Report>,
    /// Its side of the Lease.
    pub lease: ReplicaLease,
    /// A Lease write in flight: when it was sent.
    pub renewal: Option<u64>,
}

impl Proxy {
    fn fresh(lease_seconds: u64) -> Self {
        Self {
            up: true,
            frozen: false,
            seen: 0,
            report: Report {
                serving: 0,
                rejected: None,
            },
            reported: None,
            lease: ReplicaLease::new(Duration::from_secs(lease_seconds)),
            renewal: None,
        }
    }

    fn active(&self) -> bool {
        self.up && !self.frozen
    }

    /// It has processed what its watch shows.
    fn serving_current(&self) -> bool {
        self.seen > 0 && self.report.processed(self.seen)
    }

    /// ... and its RouterReplica says so.
    fn reported_current(&self) -> bool {
        self.serving_current() && self.reported == Some(self.report)
    }

    /// `/readyz` would answer 200 now.
    pub fn answers_ready(&self, now: u64) -> bool {
        self.active() && self.lease.ready(self.serving_current(), mono(now))
    }
}

/// One operator instance and its caches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operator {
    /// Lease versions its watch delivered, per proxy.
    pub leases_seen: Vec<Option<u32>>,
    /// Its Lease clock.
    pub clock: LeaseClock,
    /// RouterReplica reports its watch delivered, per proxy.
    pub reports: Vec<Option<Report>>,
    /// A status write in flight.
    pub pending: Option<Status>,
    /// The fleet's Leases as it listed them at the current rollout's first judgement.
    pub listed: Option<GenerationMembers>,
}

/// The whole system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    /// Seconds since the start.
    pub now: u64,
    /// Faults injected so far.
    pub faults: u8,
    /// The store.
    pub store: Store,
    /// The proxies.
    pub proxies: Vec<Proxy>,
    /// The operators.
    pub operators: Vec<Operator>,
    /// Which operator leads.
    pub leader: usize,
}

/// A step of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// A second passes.
    Tick,
    /// Someone applies a new spec.
    Edit,
    /// A proxy's RouterConfig watch delivers the current object, the proxy applies (or
    /// rejects) it and writes its RouterReplica; until then its cache is stale.
    Sync(usize),
    /// A proxy sends a Lease write (join or renewal).
    SendLease(usize),
    /// That write lands in the store and its answer reaches the proxy.
    LeaseLands(usize),
    /// A proxy in the Verifying stage passes its quorum check.
    Verify(usize),
    /// SIGSTOP.
    Freeze(usize),
    /// SIGCONT.
    Wake(usize),
    /// SIGKILL.
    Crash(usize),
    /// SIGTERM: unready, delete Lease and RouterReplica, exit.
    Leave(usize),
    /// A new process for a crashed or departed proxy.
    Restart(usize),
    /// An operator's Lease watch delivers what changed.
    OperatorWatchLeases(usize),

    /// The leader judges and sends a status write.
    Reconcile(usize),
    /// An operator's status write lands (even if it no longer leads).
    WriteLands(usize),
    /// The other operator becomes leader.
    Failover,
}

fn mono(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

impl BarrierModel {
    fn cold_start(&self) -> State {
        let n = self.proxies.len();
        State {
            now: 0,
            faults: 0,
            store: Store {
                generation: 1,
                status: Status::default(),
                rc_version: 1,
                leases: vec![None; n],
                reports: vec![None; n],
                versions: 1,
            },
            proxies: (0..n).map(|_| Proxy::fresh(self.lease_seconds)).collect(),
            operators: (0..self.operators)
                .map(|_| Operator {
                    leases_seen: vec![None; n],
                    clock: LeaseClock::default(),
                    reports: vec![None; n],
                    pending: None,
                    listed: None,
                })
                .collect(),
            leader: 0,
        }
    }

    fn id(&self, p: usize) -> ReplicaId {
        let (ns, name) = &self.proxies[p];
        match self.mutation {
            Mutation::NameOnlyIdentity => ReplicaId::new("", name.clone()),
            _ => ReplicaId::new(ns.clone(), name.clone()),
        }
    }

    fn lease_view(&self, p: usize, version: u32) -> LeaseView {
        LeaseView {
            id: self.id(p),
            fleet: FLEET.into(),
            held: true,
            duration: mono(self.lease_seconds),
            version: version.to_string(),
            uid: String::new(),
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            stall_timeout: mono(self.stall_seconds),
            progress_interval: Duration::ZERO,
        }
    }

    fn may_fault(&self, state: &State) -> bool {
        state.faults < self.max_faults && state.now < self.faults_until
    }

    /// The status the leader would write now from its caches, as the operator judges (rule (d)):
    /// it lists the fleet's Leases at a rollout's first judgement, and again before it says
    /// Ready=True only when a Lease that list showed live ran out in its cache since. The
    /// rollout's list is taken at the reconcile that writes its first status: the code makes it
    /// beside that write, later, and a later list only sees more.
    fn judge(&self, state: &State, o: usize) -> Option<(Status, LeaseClock, Option<GenerationMembers>)> {
        // Reports are read as the store has them: a report cache that lags only shows replicas
        // further behind (reports of a running process only move forward, and a restarted
        // process is not ready before its quorum check), so its staleness delays Ready and
        // cannot make it lie; leaving it out keeps the state space to what can.
        // The RouterConfig is read as the store has it too: judging an older generation from a
        // lagging cache only writes conditions for that older generation, which no waiter of
        // the current one reads.
        let mut op = state.operators[o].clone();
        op.reports = state.store.reports.clone();
        let op = &op;
        let (generation, current) = (&state.store.generation, &state.store.status);
        let now = mono(state.now);
        let mut clock = op.clock.clone();
        let mut listed = op.listed.clone();
        let relist = |clock: &mut LeaseClock| {
            let views = state
                .store
                .leases
                .iter()
                .enumerate()
                .filter_map(|(p, v)| v.map(|v| self.lease_view(p, v)))
                .collect();
            clock.relist(FLEET, views, now);
        };
        let mut out = self.decide(op, &clock, *generation, current, state.now);
        if self.mutation != Mutation::NoMembershipRelist {
            if !out.ready {
                if !listed.as_ref().is_some_and(|l| l.is_for("", *generation)) {
                    relist(&mut clock);
                    let live = clock.live(FLEET, now).map(|(id, _)| id);
                    listed = Some(GenerationMembers::listed("", *generation, live));
                }
            } else if out.changed {
                let covered = listed.as_ref().is_some_and(|l| match self.mutation {
                    Mutation::RolloutListTrustedAfterExpiry => l.is_for("", *generation),
                    _ => l.still_cover("", *generation, clock.live(FLEET, now).map(|(id, _)| id)),
                });
                if !covered {
                    relist(&mut clock);
                    out = self.decide(op, &clock, *generation, current, state.now);
                }
            }
        }
        out.changed.then(|| (Status::of(&out.status), clock, listed))
    }

    fn decide(
        &self,
        op: &Operator,
        clock: &LeaseClock,
        generation: i64,
        current: &Status,
        now: u64,
    ) -> barrier::Outcome {
        let live: Vec<ReplicaId> = clock.live(FLEET, mono(now)).map(|(id, _)| id.clone()).collect();
        // The operator's RouterReplica cache, as objects keyed by the (maybe mutated) identity.
        let mut replicas: BTreeMap<ReplicaId, RouterReplica> = BTreeMap::new();
        for (p, report) in op.reports.iter().enumerate() {
            let Some(report) = report else { continue };
            let mut rrep = RouterReplica::new(
                &self.proxies[p].1,
                RouterReplicaSpec {
                    fleet: FLEET.into(),
                    namespaces: vec![NS.into()],
                },
            );
            rrep.status = Some(RouterReplicaStatus {
                served: vec![ServedRouterConfig {
                    namespace: NS.into(),
                    name: NAME.into(),
                    uid: String::new(),
                    observed_generation: report.serving,
                    config_digest: digest(report.serving),
                    applied_at: None,
                    rejected: report.rejected.map(|g| Rejection {
                        generation: g,
                        message: "rejected".into(),
                    }),
                }],
                ..Default::default()
            });
            replicas.entry(self.id(p)).or_insert(rrep);
        }
        let members: Vec<Member<'_>> = members_serving(NS, NAME, "", FLEET, &live, |id| replicas.get(id));
        let current = current.to_crd();
        barrier::decide(barrier::Input {
            generation,
            fleet: FLEET,
            current: &current,
            members: &members,
            verdict: &Verdict::Accepted,
            tls_problem: None,
            expected_digest: &digest(generation),
            last_accepted: None,
            now: wall(now),
            settings: self.settings(),
        })
    }
}

fn digest(generation: i64) -> String {
    format!("sha256:{generation}")
}

impl Model for BarrierModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let cold = self.cold_start();
        if !self.steady_start {
            return vec![cold];
        }
        // Every proxy a member serving generation 1, every cache current, Ready=True for 1:
        // the state a cold start reaches when nothing goes wrong, from which rollouts start.
        let mut s = cold;
        for p in 0..s.proxies.len() {
            let proxy = &mut s.proxies[p];
            proxy.seen = 1;
            proxy.report = Report {
                serving: 1,
                rejected: None,
            };
            proxy.reported = Some(proxy.report);
            proxy.lease.renewed(mono(0), mono(0));
            proxy.lease.verified(true, mono(0));
            s.store.reports[p] = Some(proxy.report);
            s.store.leases[p] = Some(1);
        }
        for o in 0..s.operators.len() {
            for p in 0..s.proxies.len() {
                s.operators[o].leases_seen[p] = Some(1);
                s.operators[o].clock.observe(self.lease_view(p, 1), mono(0));
            }
        }
        let (status, _, _) = self.judge(&s, 0).expect("a first judgement");
        s.store.status = status;
        assert_eq!(s.store.status.ready_for(), Some(1), "the steady start is Ready");
        vec![s]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        let now = mono(state.now);
        if state.now < self.max_time {
            actions.push(Action::Tick);
        }
        if state.store.generation < self.max_generation && state.now < self.faults_until {
            actions.push(Action::Edit);
        }
        for (p, proxy) in state.proxies.iter().enumerate() {
            if proxy.active() {
                if proxy.seen != state.store.generation || proxy.reported != Some(proxy.report) {
                    actions.push(Action::Sync(p));
                }
                let stage = proxy.lease.stage(now);
                // Without slow writes a member's renewals ride on the clock (see Tick); joins
                // are steps of their own.
                let renews_here = self.slow_lease_writes == Some(p) || stage == Stage::Outside;
                if renews_here
                    && proxy.renewal.is_none()
                    && proxy.lease.renewal_due(now) <= now
                    && (stage != Stage::Outside || proxy.reported_current())
                {
                    actions.push(Action::SendLease(p));
                }
                if proxy.renewal.is_some() {
                    actions.push(Action::LeaseLands(p));
                }
                if stage == Stage::Verifying
                    && proxy.reported_current()
                    && proxy
                        .reported
                        .is_some_and(|r| r.processed(state.store.generation))
                {
                    actions.push(Action::Verify(p));
                }
            }
            if proxy.frozen {
                actions.push(Action::Wake(p));
            }
            if !proxy.up {
                actions.push(Action::Restart(p));
            }
            if self.may_fault(state) && proxy.active() {
                if self.faults.freeze {
                    actions.push(Action::Freeze(p));
                }
                if self.faults.crash {
                    actions.push(Action::Crash(p));
                }
                if self.faults.leave {
                    actions.push(Action::Leave(p));
                }
            }
        }
        for (o, op) in state.operators.iter().enumerate() {
            if op.leases_seen != state.store.leases {
                actions.push(Action::OperatorWatchLeases(o));
            }

            if o == state.leader && op.pending.is_none() && self.judge(state, o).is_some() {
                actions.push(Action::Reconcile(o));
            }
            if op.pending.is_some() {
                actions.push(Action::WriteLands(o));
            }
        }
        if self.operators > 1 && self.faults.failover && self.may_fault(state) {
            actions.push(Action::Failover);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let now = s.now;
        match action {
            Action::Tick => {
                s.now += 1;
                {
                    // Healthy members renew on time: send, land and answer at the tick. What
                    // can go wrong with a renewal is a fault or a slow write, modelled apart.
                    for p in 0..s.proxies.len() {
                        if self.slow_lease_writes == Some(p) {
                            continue;
                        }
                        let proxy = &s.proxies[p];
                        let t = mono(s.now);
                        if proxy.active()
                            && proxy.lease.stage(t) != Stage::Outside
                            && proxy.lease.renewal_due(t) <= t
                        {
                            let version = s.store.leases[p].map_or(s.store.versions, |v| v + 1);
                            s.store.leases[p] = Some(version);
                            s.proxies[p].lease.renewed(t, t);
                        }
                    }
                }
            }
            Action::Edit => {
                s.store.generation += 1;
                s.store.rc_version += 1;
            }
            Action::Sync(p) => {
                let proxy = &mut s.proxies[p];
                proxy.seen = s.store.generation;
                if self.rejecting == Some((p, proxy.seen)) {
                    proxy.report.rejected = Some(proxy.seen);
                } else {
                    proxy.report = Report {
                        serving: proxy.seen,
                        rejected: None,
                    };
                }
                proxy.reported = Some(proxy.report);
                s.store.reports[p] = Some(proxy.report);
            }
            Action::SendLease(p) if self.slow_lease_writes != Some(p) => {
                s.proxies[p].renewal = Some(now);
                return self.next_state(&s, Action::LeaseLands(p));
            }
            Action::SendLease(p) => s.proxies[p].renewal = Some(now),
            Action::LeaseLands(p) => {
                // Each Lease's own version: only equality matters, and a global counter would
                // make the order of two unrelated renewals a difference between states.
                let version = s.store.leases[p].map_or(s.store.versions, |v| v + 1);
                s.store.leases[p] = Some(version);
                let sent = s.proxies[p].renewal.take()?;
                let proxy = &mut s.proxies[p];
                let was_member = proxy.lease.stage(mono(sent)) == Stage::Member;
                proxy.lease.renewed(mono(sent), mono(now));
                let skip_check = match self.mutation {
                    // The first design kept a member's standing whenever a renewal landed,
                    // however late its answer came.
                    Mutation::LateRenewalKeepsStage => was_member,
                    Mutation::JoinWithoutQuorumCheck => true,
                    _ => false,
                };
                if skip_check {
                    proxy.lease.verified(true, mono(now));
                }
            }
            Action::Verify(p) => s.proxies[p].lease.verified(true, mono(now)),
            Action::Freeze(p) => {
                s.proxies[p].frozen = true;
                s.faults += 1;
            }
            Action::Wake(p) => s.proxies[p].frozen = false,
            Action::Crash(p) => {
                let proxy = &mut s.proxies[p];
                proxy.up = false;
                // A write that had not landed dies with the process (landing just before the
                // crash is the other order of the same two steps).
                proxy.renewal = None;
                s.faults += 1;
            }
            Action::Leave(p) => {
                // A Lease created again later must not reuse a version the operator saw.
                s.store.versions = s.store.versions.max(s.store.leases[p].unwrap_or(0) + 1);
                s.proxies[p].lease.leave();
                s.proxies[p].up = false;
                s.proxies[p].renewal = None;
                s.store.leases[p] = None;
                s.store.reports[p] = None;
                s.faults += 1;
            }
            Action::Restart(p) => s.proxies[p] = Proxy::fresh(self.lease_seconds),
            Action::OperatorWatchLeases(o) => {
                for p in 0..s.proxies.len() {
                    let version = s.store.leases[p];
                    let op = &mut s.operators[o];
                    if op.leases_seen[p] == version {
                        continue;
                    }
                    op.leases_seen[p] = version;
                    match version {
                        Some(v) => {
                            op.clock.observe(self.lease_view(p, v), mono(now));
                        }
                        None => op.clock.forget(&self.id(p)),
                    }
                }
            }

            Action::Reconcile(o) => {
                let (status, clock, listed) = self.judge(&s, o)?;
                let op = &mut s.operators[o];
                op.clock = clock;
                op.listed = listed;
                if self.operators == 1 {
                    // With one operator a write in flight only delays what it decided; the
                    // decision's inputs were read at decision time either way.
                    write_status(&mut s.store, status);
                } else {
                    op.pending = Some(status);
                }
            }
            Action::WriteLands(o) => {
                let status = s.operators[o].pending.take()?;
                write_status(&mut s.store, status);
            }
            Action::Failover => {
                s.leader = (s.leader + 1) % self.operators;
                s.faults += 1;
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(
                "ready means every ready replica serves the generation",
                |_: &Self, s: &State| promise_holds(s),
            ),
            Property::always(
                "a rejected generation is never counted as applied",
                |m: &Self, s: &State| {
                    let Some(g) = s.store.status.ready_for().filter(|g| *g == s.store.generation) else {
                        return true;
                    };
                    !s.proxies
                        .iter()
                        .any(|p| p.answers_ready(s.now) && p.report.rejected == Some(g))
                        || m.rejecting.is_none()
                },
            ),
            Property::always(
                "every finished run is ready for the newest generation",
                |m: &Self, s: &State| {
                    let mut actions = Vec::new();
                    m.actions(s, &mut actions);
                    if !actions.is_empty() {
                        return true;
                    }
                    let rejected = m.rejecting.is_some_and(|(_, g)| g == s.store.generation);
                    rejected || s.store.status.ready_for() == Some(s.store.generation)
                },
            ),
            Property::sometimes("the newest generation becomes ready", |m: &Self, s: &State| {
                s.store.generation == m.max_generation && s.store.status.ready_for() == Some(m.max_generation)
            }),
        ]
    }

    fn within_boundary(&self, state: &State) -> bool {
        state.now <= self.max_time
    }
}

/// An apply that changes nothing is no write: no new resourceVersion, no event.
fn write_status(store: &mut Store, status: Status) {
    if status != store.status {
        store.status = status;
        store.rc_version += 1;
    }
}

/// The promise: while the store says Ready=True for the current generation G, every proxy that
/// would answer `/readyz` 200 serves G or newer.
pub fn promise_holds(s: &State) -> bool {
    let Some(g) = s.store.status.ready_for().filter(|g| *g == s.store.generation) else {
        return true;
    };
    s.proxies
        .iter()
        .all(|p| !p.answers_ready(s.now) || p.report.serving >= g)
}
