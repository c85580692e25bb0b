//! Fleet membership through Leases, judged on each side's own monotonic clock.
//!
//! The Lease `lockstep-proxy-<replica>` is liveness; nobody trusts the other side's wall clock:
//! - the operator ([`LeaseClock`]) counts a Lease live for `leaseDurationSeconds` after it
//!   *observed* a new version of it, so a proxy whose clock runs 30 s fast or slow changes
//!   nothing;
//! - the proxy ([`ReplicaLease`]) counts itself fresh for the same duration after it *sent*
//!   the renewal that landed.
//!
//! A renewal is sent before the apiserver stores it and stored before the operator observes
//! it, so the proxy's freshness always ends before the operator stops counting it: the
//! operator never drops a replica that still answers ready. A renewal whose answer arrives
//! after the proxy's freshness ran out does not extend it: the operator may have dropped the
//! replica meanwhile, so the replica rejoins through the quorum check like a new one.
//!
//! Times are [`Mono`]: a duration since some origin of the process's monotonic clock.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::coordination::v1::Lease;
use lockstep_crds::{FLEET_LABEL, PROXY_LEASE_PREFIX, ReplicaId, replica_reason};

/// A point on a monotonic clock: the time since an arbitrary origin of one process.
pub type Mono = Duration;

/// What the operator needs of a proxy Lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseView {
    /// The replica it stands for: its namespace and its name after `lockstep-proxy-`.
    pub id: ReplicaId,
    /// Its `lockstep.dev/fleet` label.
    pub fleet: String,
    /// Held by its replica (holderIdentity is the replica's name) for a positive duration.
    pub held: bool,
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// Its resourceVersion, compared only for equality: a new one is a renewal.
    pub version: String,
    /// Its metadata.uid: which incarnation of the Lease this is. A Lease deleted and created
    /// again under the same name (a replica that left and came back) is another one.
    pub uid: String,
}

impl LeaseView {
    /// The view of a proxy Lease; None for a Lease that is not a proxy's.
    pub fn of(lease: &Lease) -> Option<Self> {
        let namespace = lease.metadata.namespace.clone()?;
        let name = lease.metadata.name.as_deref()?.strip_prefix(PROXY_LEASE_PREFIX)?;
        let fleet = lease.metadata.labels.as_ref()?.get(FLEET_LABEL)?.clone();
        let spec = lease.spec.as_ref();
        let seconds = spec.and_then(|s| s.lease_duration_seconds).unwrap_or(0);
        let held = spec.and_then(|s| s.holder_identity.as_deref()) == Some(name) && seconds > 0;
        Some(Self {
            id: ReplicaId::new(namespace, name),
            fleet,
            held,
            duration: Duration::from_secs(u64::try_from(seconds).unwrap_or(0)),
            version: lease.metadata.resource_version.clone().unwrap_or_default(),
            uid: lease.metadata.uid.clone().unwrap_or_default(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Observed {
    view: LeaseView,
    at: Mono,
}

/// The operator's record of when it saw each proxy Lease change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LeaseClock {
    leases: BTreeMap<ReplicaId, Observed>,
}

impl LeaseClock {
    /// Records a Lease as seen at `now`; its clock restarts only when its version changed.
    /// Returns true when it did (a renewal, or a Lease not seen before).
    pub fn observe(&mut self, view: LeaseView, now: Mono) -> bool {
        match self.leases.get_mut(&view.id) {
            Some(seen) if seen.view.version == view.version => false,
            Some(seen) => {
                *seen = Observed { view, at: now };
                true
            }
            None => {
                self.leases.insert(view.id.clone(), Observed { view, at: now });
                true
            }
        }
    }

    /// Forgets whatever is known of `id`'s Lease.
    pub fn forget(&mut self, id: &ReplicaId) {
        self.leases.remove(id);
    }

    /// A watch reported `deleted` gone. Only that incarnation is forgotten: the watch can lag
    /// a quorum list that already saw the Lease created again (the replica came back), and
    /// forgetting the new one would judge the fleet without a live member. Returns true when
    /// something was forgotten.
    pub fn deleted(&mut self, deleted: &LeaseView) -> bool {
        let same = self
            .leases
            .get(&deleted.id)
            .is_some_and(|seen| seen.view.uid == deleted.uid);
        if same {
            self.leases.remove(&deleted.id);
        }
        same
    }

    /// Keeps only the Leases `keep` says still exist (after a watch relisted them all).
    pub fn retain(&mut self, keep: impl Fn(&ReplicaId) -> bool) {
        self.leases.retain(|id, _| keep(id));
    }

    /// Replaces what is known of `fleet`'s Leases with a fresh (quorum) list of them: each is
    /// observed, and Leases of the fleet missing from the list are forgotten.
    pub fn relist(&mut self, fleet: &str, listed: Vec<LeaseView>, now: Mono) {
        let present: std::collections::BTreeSet<ReplicaId> = listed.iter().map(|v| v.id.clone()).collect();
        self.leases
            .retain(|id, seen| seen.view.fleet != fleet || present.contains(id));
        for view in listed {
            self.observe(view, now);
        }
    }

    /// The live replicas of `fleet` at `now`, each with the instant it stops counting.
    pub fn live<'a>(&'a self, fleet: &'a str, now: Mono) -> impl Iterator<Item = (&'a ReplicaId, Mono)> + 'a {
        self.leases.values().filter_map(move |seen| {
            let until = seen.at + seen.view.duration;
            (seen.view.fleet == fleet && seen.view.held && until > now).then_some((&seen.view.id, until))
        })
    }

    /// When `id`'s Lease stops (or stopped) counting, on this clock: its duration after the
    /// version last seen, or when it was seen released. None when no Lease of it is known.
    pub fn counts_until(&self, id: &ReplicaId) -> Option<Mono> {
        let seen = self.leases.get(id)?;
        Some(if seen.view.held {
            seen.at + seen.view.duration
        } else {
            seen.at
        })
    }

    /// True when some Lease of `fleet` is known (live or not).
    pub fn knows_fleet(&self, fleet: &str) -> bool {
        self.leases.values().any(|seen| seen.view.fleet == fleet)
    }
}

/// The fleet's live Leases as the operator listed them when it first judged one generation of
/// one RouterConfig (rule (d) of docs/protocol.md), kept until that generation is Ready.
///
/// Rule (d) needs the membership behind a `Ready=True` to be at least as new as the
/// generation's write. A list made at the generation's first judgement is, and so is the Lease
/// cache after it, as long as every Lease live at that list is still live in the cache: the
/// cache adds what the watch brings, and a Lease created after the list belongs to a replica
/// whose own quorum read after its Lease write shows it the generation (rule (b)). A listed
/// Lease that ran out in the cache since may be a replica that left, or a Lease watch that
/// stalled while the replica kept renewing and serving the older generation; only a new list
/// tells them apart. So `Ready=True` lists again only then, and the list is off the rollout's
/// critical path in the common case (e2e/bench/RESULTS.md: 15 ms p50, 42 ms p99 after the last
/// report at 10 replicas).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GenerationMembers {
    uid: String,
    generation: i64,
    live: std::collections::BTreeSet<ReplicaId>,
}

impl GenerationMembers {
    /// The list made for generation `generation` of the RouterConfig incarnation `uid`:
    /// the replicas live on the clock right after it.
    pub fn listed<'a>(uid: &str, generation: i64, live: impl IntoIterator<Item = &'a ReplicaId>) -> Self {
        Self {
            uid: uid.to_owned(),
            generation,
            live: live.into_iter().cloned().collect(),
        }
    }

    /// Whether this list was made for that generation of that incarnation.
    pub fn is_for(&self, uid: &str, generation: i64) -> bool {
        self.uid == uid && self.generation == generation
    }

    /// Whether a `Ready=True` on that generation may rest on the Lease cache, whose live
    /// replicas are `live_now`, without listing again: the list was made for it and every
    /// replica live at the list is live still.
    pub fn still_cover<'a>(
        &self,
        uid: &str,
        generation: i64,
        live_now: impl IntoIterator<Item = &'a ReplicaId>,
    ) -> bool {
        if !self.is_for(uid, generation) {
            return false;
        }
        let live_now: std::collections::BTreeSet<&ReplicaId> = live_now.into_iter().collect();
        self.live.iter().all(|id| live_now.contains(id))
    }
}

/// Where a proxy replica stands with its fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// No fresh Lease: not a member (never joined, frozen past its Lease, or its renewals
    /// failed). Not ready; rejoins only once it serves what its own cache shows.
    Outside,
    /// Holds a fresh Lease, so the operator counts it, but has not yet confirmed with a
    /// quorum read that it serves the newest generation of everything. Not ready.
    Verifying,
    /// Holds a fresh Lease and confirmed it serves the newest generations.
    Member,
}

/// The proxy's side of its Lease: its stage and until when it may count itself fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplicaLease {
    stage: Stage,
    fresh_until: Mono,
    duration: Duration,
}

impl ReplicaLease {
    /// A replica outside the fleet whose Lease lasts `duration` (whole seconds, as the Lease
    /// records it).
    pub fn new(duration: Duration) -> Self {
        Self {
            stage: Stage::Outside,
            fresh_until: Duration::ZERO,
            duration,
        }
    }

    /// The stage at `now` (a Lease past its freshness puts the replica outside).
    pub fn stage(&self, now: Mono) -> Stage {
        if self.fresh_until > now {
            self.stage
        } else {
            Stage::Outside
        }
    }

    /// Until when the replica counts itself fresh (meaningful while not outside).
    pub fn fresh_until(&self) -> Mono {
        self.fresh_until
    }

    /// The Lease duration.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// When the next renewal is due: a third of the duration after the last landed one,
    /// at once when outside.
    pub fn renewal_due(&self, now: Mono) -> Mono {
        match self.stage(now) {
            Stage::Outside => now,
            _ => self.fresh_until.saturating_sub(self.duration) + self.duration / 3,
        }
    }

    /// A renewal (or the first write) sent at `sent` landed; its answer arrived at `now`.
    /// When the replica was still fresh it stays in its stage; otherwise the operator may
    /// have dropped it meanwhile, so it starts over as a new member that must verify.
    pub fn renewed(&mut self, sent: Mono, now: Mono) {
        let until = sent + self.duration;
        if until <= now {
            // Landed, but already stale by the replica's own measure.
            self.stage = Stage::Outside;
            return;
        }
        if self.stage(now) == Stage::Outside {
            self.stage = Stage::Verifying;
        }
        self.fresh_until = until;
    }

    /// The quorum check after joining: `caught_up` when a fresh list of the RouterConfigs it
    /// serves shows nothing newer than what it serves (or rejected) and reported.
    pub fn verified(&mut self, caught_up: bool, now: Mono) {
        if caught_up && self.stage(now) == Stage::Verifying {
            self.stage = Stage::Member;
        }
    }

    /// Leaves the fleet (SIGTERM): outside at once.
    pub fn leave(&mut self) {
        self.stage = Stage::Outside;
        self.fresh_until = Duration::ZERO;
    }

    /// Ready (`/readyz` 200): a verified member with a fresh Lease that serves what its cache
    /// shows. Readiness lives here alone.
    pub fn ready(&self, serving_current: bool, now: Mono) -> bool {
        serving_current && self.stage(now) == Stage::Member
    }

    /// The replica's readiness and the reason its RouterReplica's `Ready` condition gives.
    /// `lease_problem` is why the last Lease write failed, while it keeps failing.
    pub fn readiness(&self, serving_current: bool, lease_problem: Option<&str>, now: Mono) -> Readiness {
        let (reason, message) = match (self.stage(now), lease_problem) {
            (Stage::Member, _) if serving_current => (
                ReplicaReason::Serving,
                "serves the current generation of everything it serves".to_owned(),
            ),
            (Stage::Member, _) => (ReplicaReason::Syncing, "applying a newer generation".to_owned()),
            (Stage::Verifying, _) => (
                ReplicaReason::Joining,
                "holds its Lease; confirming with a quorum read that it serves the newest generations"
                    .to_owned(),
            ),
            (Stage::Outside, Some(problem)) => (
                ReplicaReason::LeaseUnavailable,
                format!("cannot hold its Lease: {problem}"),
            ),
            (Stage::Outside, None) => (ReplicaReason::Joining, "not a member of the fleet yet".to_owned()),
        };
        Readiness {
            ready: self.ready(serving_current, now),
            reason,
            message,
        }
    }
}

/// A replica's readiness as its RouterReplica's `Ready` condition reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// `/readyz` answers 200.
    pub ready: bool,
    /// Why it is (not) ready, in a word.
    pub reason: ReplicaReason,
    /// Why, for people.
    pub message: String,
}

/// Every reason a replica's `Ready` condition can carry. Its RouterReplica's condition is
/// written from these, so a replica cannot report a reason the contract does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaReason {
    /// Ready=True: a member of the fleet serving the current generation of everything it
    /// serves.
    Serving,
    /// Ready=False: a member applying a newer generation.
    Syncing,
    /// Ready=False: not a member yet, or holding its Lease while the quorum check runs.
    Joining,
    /// Ready=False: the Lease write keeps failing.
    LeaseUnavailable,
    /// Ready=False: the sync loop panicked ([`crate::supervision`]).
    SyncFailed,
    /// Ready=False: a sync pass ran past its bound ([`crate::supervision`]).
    SyncStalled,
}

impl ReplicaReason {
    /// The reason as written in the condition (and as the proxy's sync-failure metric labels
    /// it).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Serving => replica_reason::SERVING,
            Self::Syncing => replica_reason::SYNCING,
            Self::Joining => replica_reason::JOINING,
            Self::LeaseUnavailable => replica_reason::LEASE_UNAVAILABLE,
            Self::SyncFailed => replica_reason::SYNC_FAILED,
            Self::SyncStalled => replica_reason::SYNC_STALLED,
        }
    }
}

impl std::fmt::Display for ReplicaReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a Lease duration flag: the one duration syntax ([`lockstep_crds::duration::parse`]),
/// then [`lease_duration`]'s rule. The operator's leader Lease and the replicas' Leases both
/// take it, so `1m30s` works on both and `1.5s` is refused by both.
pub fn parse_lease_duration(text: &str) -> Result<Duration, String> {
    lease_duration(lockstep_crds::duration::parse(text)?)
}

/// Parses a Lease duration: whole seconds, at least one, as `leaseDurationSeconds` records
/// it. A fractional or sub-second duration would let the replica count itself fresh longer
/// (or shorter) than the operator, who reads the whole seconds the Lease records.
pub fn lease_duration(duration: Duration) -> Result<Duration, String> {
    if duration < Duration::from_secs(1) {
        return Err(format!("a Lease duration must be at least 1s, got {duration:?}"));
    }
    if duration.subsec_nanos() != 0 {
        return Err(format!(
            "a Lease records whole seconds; {duration:?} is not (use e.g. 10s)"
        ));
    }
    if duration > Duration::from_secs(3600) {
        return Err(format!(
            "a Lease duration above 1h is not useful, got {duration:?}"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ReplicaId {
        ReplicaId::new("edge", name)
    }

    #[test]
    fn a_generations_list_covers_its_ready_while_every_listed_lease_is_live() {
        let (a, b, c) = (id("proxy-a"), id("proxy-b"), id("proxy-c"));
        let listed = GenerationMembers::listed("u1", 4, [&a, &b]);
        assert!(listed.still_cover("u1", 4, [&a, &b]), "nothing changed");
        assert!(
            listed.still_cover("u1", 4, [&a, &b, &c]),
            "a Lease created after the list: rule (b) covers its replica"
        );
        assert!(
            !listed.still_cover("u1", 4, [&a]),
            "a listed Lease ran out in the cache: a leave or a stalled watch, list again"
        );
        assert!(!listed.still_cover("u1", 5, [&a, &b]), "another generation");
        assert!(
            !listed.still_cover("u2", 4, [&a, &b]),
            "the same generation of an object created again under the name"
        );
    }

    fn s(secs: u64) -> Mono {
        Duration::from_secs(secs)
    }

    fn ms(millis: u64) -> Mono {
        Duration::from_millis(millis)
    }

    fn mk_view(name: &str, version: &str) -> LeaseView {
        LeaseView {
            id: ReplicaId::new("proxies", name),
            fleet: "blue".into(),
            held: true,
            duration: s(10),
            version: version.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn live_names(clock: &LeaseClock, now: Mono) -> Vec<String> {
        clock.live("blue", now).map(|(id, _)| id.to_string()).collect()
    }

    #[test]
    fn the_operator_counts_a_lease_from_when_it_saw_the_renewal() {
        let mut clock = LeaseClock::default();
        assert!(clock.observe(mk_view("p0", "1"), s(100)));
        assert_eq!(live_names(&clock, s(109)), ["proxies/p0"]);
        assert!(
            live_names(&clock, s(110)).is_empty(),
            "expired after its duration"
        );
        // The same version seen again (a relist) is no renewal.
        assert!(!clock.observe(mk_view("p0", "1"), s(105)));
        assert!(live_names(&clock, s(110)).is_empty());
        // A new version is.
        assert!(clock.observe(mk_view("p0", "7"), s(111)));
        assert_eq!(live_names(&clock, s(120)), ["proxies/p0"]);
    }

    #[test]
    fn versions_are_opaque_so_a_smaller_one_after_a_restore_is_still_a_renewal() {
        let mut clock = LeaseClock::default();
        clock.observe(mk_view("p0", "900"), s(0));
        assert!(
            clock.observe(mk_view("p0", "12"), s(5)),
            "etcd restored: lower number, new version"
        );
        assert_eq!(live_names(&clock, s(14)), ["proxies/p0"]);
    }

    #[test]
    fn a_released_lease_and_other_fleets_do_not_count() {
        let mut clock = LeaseClock::default();
        clock.observe(
            LeaseView {
                held: false,
                ..mk_view("p0", "1")
            },
            s(0),
        );
        clock.observe(
            LeaseView {
                fleet: "green".into(),
                ..mk_view("p1", "1")
            },
            s(0),
        );
        assert!(live_names(&clock, s(1)).is_empty());
        assert!(clock.knows_fleet("blue"));
    }

    #[test]
    fn same_name_in_two_namespaces_is_two_replicas() {
        let mut clock = LeaseClock::default();
        clock.observe(mk_view("p0", "1"), s(0));
        clock.observe(
            LeaseView {
                id: ReplicaId::new("other", "p0"),
                ..mk_view("p0", "1")
            },
            s(0),
        );
        assert_eq!(live_names(&clock, s(1)), ["other/p0", "proxies/p0"]);
    }

    #[test]
    fn a_relist_forgets_deleted_leases_of_that_fleet_only() {
        let mut clock = LeaseClock::default();
        clock.observe(mk_view("p0", "1"), s(0));
        clock.observe(mk_view("p1", "1"), s(0));
        clock.observe(
            LeaseView {
                fleet: "green".into(),
                ..mk_view("g0", "1")
            },
            s(0),
        );
        clock.relist("blue", vec![mk_view("p1", "2")], s(5));
        assert_eq!(
            live_names(&clock, s(12)),
            ["proxies/p1"],
            "p1 renewed at 5, p0 gone"
        );
        assert_eq!(clock.live("green", s(1)).count(), 1);
    }

    #[test]
    fn a_late_delete_of_an_earlier_lease_does_not_forget_the_one_created_since() {
        let mut clock = LeaseClock::default();
        clock.observe(mk_view("p0", "1"), s(0));
        // p0 left and came back: its Lease was deleted and created again. A quorum list sees
        // the new Lease before the watch delivers the old one's deletion.
        let again = LeaseView {
            uid: "uid-p0-again".into(),
            ..mk_view("p0", "9")
        };
        clock.relist("blue", vec![again.clone()], s(1));
        assert!(
            !clock.deleted(&mk_view("p0", "8")),
            "the old Lease is already gone"
        );
        assert_eq!(live_names(&clock, s(2)), ["proxies/p0"]);
        // The deletion of the Lease it holds does forget it.
        assert!(clock.deleted(&again));
        assert!(live_names(&clock, s(2)).is_empty());
    }

    #[test]
    fn lease_view_reads_the_proxy_lease_contract() {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "lockstep-proxy-p0", "namespace": "proxies", "resourceVersion": "42",
                         "uid": "uid-p0",
                         "labels": {"lockstep.dev/fleet": "blue"}},
            "spec": {"holderIdentity": "p0", "leaseDurationSeconds": 10}
        }))
        .unwrap();
        assert_eq!(LeaseView::of(&lease), Some(mk_view("p0", "42")));
        let mut other = lease.clone();
        other.spec.as_mut().unwrap().holder_identity = Some("someone-else".into());
        assert!(!LeaseView::of(&other).unwrap().held);
        let mut operator = lease;
        operator.metadata.name = Some("lockstep-operator".into());
        assert_eq!(LeaseView::of(&operator), None);
    }

    #[test]
    fn a_replica_is_ready_only_after_the_quorum_check() {
        let mut lease = ReplicaLease::new(s(10));
        assert_eq!(lease.stage(s(0)), Stage::Outside);
        lease.renewed(s(0), ms(50));
        assert_eq!(lease.stage(ms(50)), Stage::Verifying);
        assert!(
            !lease.ready(true, ms(50)),
            "counted by the operator, but not ready yet"
        );
        lease.verified(false, ms(60));
        assert!(!lease.ready(true, ms(60)), "a newer generation exists");
        lease.verified(true, ms(70));
        assert!(lease.ready(true, ms(70)));
        assert!(!lease.ready(false, ms(70)), "not while behind its own cache");
    }

    #[test]
    fn freshness_counts_from_the_send_and_ends_with_the_duration() {
        let mut lease = ReplicaLease::new(s(10));
        lease.renewed(s(1), s(2));
        lease.verified(true, s(2));
        assert_eq!(lease.renewal_due(s(2)), s(1) + s(10) / 3);
        assert!(lease.ready(true, ms(10_999)));
        assert!(!lease.ready(true, s(11)), "fresh until send + duration");
        assert_eq!(lease.stage(s(11)), Stage::Outside);
    }

    #[test]
    fn a_renewal_that_lands_after_the_lease_ran_out_does_not_skip_the_fence() {
        let mut lease = ReplicaLease::new(s(10));
        lease.renewed(s(0), s(0));
        lease.verified(true, s(0));
        // Sent at 9 s while fresh, answered at 12 s: the operator may have dropped the
        // replica between 10 s and 12 s, so it must verify again.
        lease.renewed(s(9), s(12));
        assert_eq!(lease.stage(s(12)), Stage::Verifying);
        assert!(!lease.ready(true, s(12)));
        lease.verified(true, s(12));
        assert!(lease.ready(true, s(12)));
    }

    #[test]
    fn a_renewal_answered_after_its_own_duration_leaves_the_replica_outside() {
        let mut lease = ReplicaLease::new(s(10));
        lease.renewed(s(0), s(11));
        assert_eq!(lease.stage(s(11)), Stage::Outside);
    }

    #[test]
    fn a_member_renewing_in_time_stays_a_member() {
        let mut lease = ReplicaLease::new(s(10));
        lease.renewed(s(0), s(0));
        lease.verified(true, s(0));
        lease.renewed(s(3), ms(3_100));
        assert_eq!(lease.stage(ms(3_100)), Stage::Member);
        lease.leave();
        assert!(!lease.ready(true, ms(3_100)));
    }

    #[test]
    fn lease_durations_are_whole_seconds_of_at_least_one() {
        assert_eq!(lease_duration(s(10)), Ok(s(10)));
        assert!(lease_duration(ms(500)).unwrap_err().contains("at least 1s"));
        assert!(lease_duration(ms(1500)).unwrap_err().contains("whole seconds"));
    }

    #[test]
    fn readiness_reasons_follow_the_stage() {
        let mut lease = ReplicaLease::new(s(10));
        let reason = |lease: &ReplicaLease, serving, problem, now| {
            let r = lease.readiness(serving, problem, now);
            (r.ready, r.reason)
        };
        assert_eq!(reason(&lease, true, None, s(0)), (false, ReplicaReason::Joining));
        assert_eq!(
            reason(&lease, true, Some("403"), s(0)),
            (false, ReplicaReason::LeaseUnavailable)
        );
        lease.renewed(s(0), s(0));
        assert_eq!(
            reason(&lease, true, None, s(1)),
            (false, ReplicaReason::Joining),
            "verifying"
        );
        lease.verified(true, s(1));
        assert_eq!(reason(&lease, true, None, s(2)), (true, ReplicaReason::Serving));
        assert_eq!(reason(&lease, false, None, s(2)), (false, ReplicaReason::Syncing));
        assert_eq!(
            reason(&lease, true, None, s(11)),
            (false, ReplicaReason::Joining),
            "its Lease ran out"
        );
    }

    /// The reasons are API: `kubectl wait`, dashboards and alerts match these strings.
    #[test]
    fn replica_reasons_are_the_strings_of_the_contract() {
        let all = [
            (ReplicaReason::Serving, "Serving"),
            (ReplicaReason::Syncing, "Syncing"),
            (ReplicaReason::Joining, "Joining"),
            (ReplicaReason::LeaseUnavailable, "LeaseUnavailable"),
            (ReplicaReason::SyncFailed, "SyncFailed"),
            (ReplicaReason::SyncStalled, "SyncStalled"),
        ];
        for (reason, text) in all {
            assert_eq!(reason.as_str(), text);
            assert_eq!(reason.to_string(), text);
        }
    }
}
