//! The barrier as a pure function: given one RouterConfig, its verdict, the digest replicas
//! must report, the fleet's Leases and the time, what are its conditions and counts, and
//! which replica entries are stale?
//!
//! - `Ready=True` iff the spec is accepted and every live member (fresh Lease) reports the
//!   current generation with the expected digest and has not rejected it. No members: False,
//!   `NoReplicas`. A rejection is never counted as applied.
//! - `Reconciling=True` while live members are still catching up.
//! - `Stalled=True` when the rollout has lagged past the stall timeout (measured from the
//!   persisted `Reconciling` transition, so it survives leader failover), when a live member
//!   rejected the generation, or when the spec is not accepted: nothing will progress
//!   without a change, which is what kstatus, Flux and Argo CD need to hear.
//! - Every condition carries the generation it was computed for.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::coordination::v1::Lease,
    apimachinery::pkg::apis::meta::v1::Condition,
};
use lockstep_config::{
    Verdict,
    conditions::{NewCondition, eq_ignoring_time, find, set_condition, status_str},
};
use lockstep_crds::{RouterConfigStatus, condition, reason};

/// A fleet member as its Lease shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Replica name (the Lease's holderIdentity).
    pub name: String,
    /// When the Lease stops being valid.
    pub expires: Timestamp,
}

impl Member {
    /// A member from a proxy Lease; None when the Lease lacks the fields that make it one.
    pub fn from_lease(lease: &Lease) -> Option<Self> {
        let spec = lease.spec.as_ref()?;
        let name = spec.holder_identity.clone().or_else(|| {
            lease.metadata.name.as_deref()?.strip_prefix(lockstep_crds::PROXY_LEASE_PREFIX).map(str::to_owned)
        })?;
        let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
        let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
        Some(Self { name, expires: renewed.checked_add(duration).ok()? })
    }

    /// Live at `now`?
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires
    }
}

/// Everything the barrier needs to judge one RouterConfig.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// metadata.generation.
    pub generation: i64,
    /// The fleet-wide verdict on the spec.
    pub verdict: &'a Verdict,
    /// A problem with referenced TLS Secrets the operator can see (missing, wrong type).
    pub tls_problem: Option<&'a str>,
    /// The digest a replica serving this generation reports.
    pub expected_digest: &'a str,
    /// The fleet's members, live or not (from all Leases labelled with the fleet).
    pub members: &'a [Member],
    /// The status as stored now.
    pub status: Option<&'a RouterConfigStatus>,
    /// Now.
    pub now: Timestamp,
    /// How long a rollout may lag before it is Stalled.
    pub stall_timeout: Duration,
}

/// What the operator should write and do.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The new top-level status fields (replicaStatus untouched: replicas own it).
    pub observed_generation: i64,
    /// All four conditions.
    pub conditions: Vec<Condition>,
    /// Live members serving the generation.
    pub synced_replicas: i32,
    /// Live members.
    pub replicas: i32,
    /// Replica entries whose Lease has expired: to be pruned.
    pub prune: Vec<String>,
    /// Ready=True?
    pub ready: bool,
    /// When the judgement can change without any event (a Lease expiring, the stall
    /// deadline).
    pub recheck_at: Option<Timestamp>,
    /// Whether the stored status differs from this output (ignoring transition times).
    pub changed: bool,
}

impl Output {
    /// "synced/replicas".
    pub fn synced(&self) -> String {
        format!("{}/{}", self.synced_replicas, self.replicas)
    }
}

/// Judges one RouterConfig.
pub fn judge(input: &Input<'_>) -> Output {
    let generation = input.generation;
    let now = input.now;
    let empty = RouterConfigStatus::default();
    let status = input.status.unwrap_or(&empty);
    let entries = &status.replica_status;

    let live: Vec<&Member> = input.members.iter().filter(|m| m.is_live(now)).collect();
    let is_live = |name: &str| live.iter().any(|m| m.name == name);
    // Entries of replicas that were members and whose Lease expired; an entry without any
    // Lease belongs to a replica still joining (it reports before it takes its Lease).
    let prune: Vec<String> = entries
        .iter()
        .filter(|e| !is_live(&e.name) && input.members.iter().any(|m| m.name == e.name))
        .map(|e| e.name.clone())
        .collect();

    let mut synced = Vec::new();
    let mut lagging = Vec::new();
    let mut rejections = Vec::new();
    for member in &live {
        let entry = entries.iter().find(|e| e.name == member.name);
        match entry {
            Some(e) if e.rejected.as_ref().is_some_and(|r| r.generation == generation) => {
                let message = e.rejected.as_ref().map(|r| r.message.as_str()).unwrap_or_default();
                rejections.push(format!("{} rejected generation {generation}: {message}", member.name));
            }
            Some(e) if e.observed_generation == generation && e.config_digest == input.expected_digest => {
                synced.push(member.name.clone());
            }
            _ => lagging.push(member.name.clone()),
        }
    }
    let replicas = live.len() as i32;
    let synced_replicas = synced.len() as i32;

    let (accepted, accepted_reason, accepted_message) = match (input.verdict, input.tls_problem) {
        (Verdict::Invalid(m), _) => (false, reason::INVALID, m.clone()),
        (Verdict::Conflict(m), _) => (false, reason::CONFLICT, m.clone()),
        (Verdict::Accepted, Some(problem)) => (false, reason::INVALID_TLS, problem.to_owned()),
        (Verdict::Accepted, None) => (true, reason::VALID, format!("generation {generation} is valid")),
    };

    let waiting_for = |names: &[String]| {
        let mut shown: Vec<&str> = names.iter().map(String::as_str).take(10).collect();
        if names.len() > 10 {
            shown.push("...");
        }
        shown.join(", ")
    };
    let (ready, ready_reason, ready_message) = if !accepted {
        (false, reason::NOT_ACCEPTED, format!("generation {generation} is not accepted: {accepted_message}"))
    } else if replicas == 0 {
        (false, reason::NO_REPLICAS, "no live replica in the fleet".to_owned())
    } else if !rejections.is_empty() {
        (false, reason::REJECTED, rejections.join("; "))
    } else if lagging.is_empty() {
        (true, reason::ALL_REPLICAS_SYNCED, format!("{synced_replicas}/{replicas} replicas serve generation {generation}"))
    } else {
        (
            false,
            reason::ROLLOUT_IN_PROGRESS,
            format!(
                "{synced_replicas}/{replicas} replicas serve generation {generation}; waiting for {}",
                waiting_for(&lagging)
            ),
        )
    };

    let reconciling = accepted && replicas > 0 && rejections.is_empty() && !lagging.is_empty();
    // The rollout started when Reconciling last turned True (persisted, so a new leader
    // measures from the same instant).
    let reconciling_since = find(&status.conditions, condition::RECONCILING)
        .filter(|c| c.status == "True")
        .map(|c| c.last_transition_time.0)
        .unwrap_or(now);
    let stall_deadline = reconciling_since
        .checked_add(SignedDuration::try_from(input.stall_timeout).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    let lag_stalled = reconciling && now >= stall_deadline;
    let (stalled, stalled_reason, stalled_message) = if !accepted {
        (true, reason::NOT_ACCEPTED, ready_message.clone())
    } else if !rejections.is_empty() {
        (true, reason::REJECTED, ready_message.clone())
    } else if lag_stalled {
        (
            true,
            reason::ROLLOUT_STALLED,
            format!(
                "replicas {} have not served generation {generation} for more than {}s",
                waiting_for(&lagging),
                input.stall_timeout.as_secs()
            ),
        )
    } else {
        (false, reason::IDLE, "no rollout is stuck".to_owned())
    };

    let mut conditions = status.conditions.clone();
    let mut set = |type_, value: bool, reason, message: String| {
        set_condition(
            &mut conditions,
            NewCondition { type_, status: status_str(value), reason, message, observed_generation: generation },
            now,
        )
    };
    set(condition::ACCEPTED, accepted, accepted_reason, accepted_message);
    set(condition::READY, ready, ready_reason, ready_message);
    set(
        condition::RECONCILING,
        reconciling,
        if reconciling { reason::ROLLOUT_IN_PROGRESS } else { reason::IDLE },
        if reconciling {
            format!("rolling out generation {generation}: {synced_replicas}/{replicas} replicas")
        } else {
            "no rollout in progress".to_owned()
        },
    );
    set(condition::STALLED, stalled, stalled_reason, stalled_message);

    let recheck_at = live
        .iter()
        .map(|m| m.expires)
        .chain(reconciling.then_some(stall_deadline).filter(|d| *d > now))
        .min();

    let synced_text = format!("{synced_replicas}/{replicas}");
    let changed = status.observed_generation != Some(generation)
        || status.synced_replicas != Some(synced_replicas)
        || status.replicas != Some(replicas)
        || status.synced.as_deref() != Some(synced_text.as_str())
        || !eq_ignoring_time(&status.conditions, &conditions);

    Output { observed_generation: generation, conditions, synced_replicas, replicas, prune, ready, recheck_at, changed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_crds::{Rejection, ReplicaStatus};

    const DIGEST: &str = "sha256:current";

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn mk_member(name: &str, expires: i64) -> Member {
        Member { name: name.into(), expires: t(expires) }
    }

    fn mk_entry(name: &str, generation: i64, digest: &str) -> ReplicaStatus {
        ReplicaStatus { name: name.into(), observed_generation: generation, config_digest: digest.into(), ..Default::default() }
    }

    fn mk_status(entries: Vec<ReplicaStatus>) -> RouterConfigStatus {
        RouterConfigStatus { replica_status: entries, ..Default::default() }
    }

    fn judge_at(
        now: i64,
        generation: i64,
        verdict: &Verdict,
        members: &[Member],
        status: &RouterConfigStatus,
    ) -> Output {
        judge(&Input {
            generation,
            verdict,
            tls_problem: None,
            expected_digest: DIGEST,
            members,
            status: Some(status),
            now: t(now),
            stall_timeout: Duration::from_secs(60),
        })
    }

    fn cond<'a>(out: &'a Output, type_: &str) -> &'a Condition {
        find(&out.conditions, type_).unwrap()
    }

    fn assert_cond(out: &Output, type_: &str, status: &str, reason: &str) {
        let c = cond(out, type_);
        assert_eq!((c.status.as_str(), c.reason.as_str()), (status, reason), "{type_}: {}", c.message);
    }

    #[test]
    fn all_live_members_at_generation_make_ready() {
        let members = [mk_member("a", 10), mk_member("b", 10)];
        let status = mk_status(vec![mk_entry("a", 7, DIGEST), mk_entry("b", 7, DIGEST)]);
        let out = judge_at(0, 7, &Verdict::Accepted, &members, &status);
        assert!(out.ready);
        assert_cond(&out, "Ready", "True", "AllReplicasSynced");
        assert_eq!(cond(&out, "Ready").message, "2/2 replicas serve generation 7");
        assert_cond(&out, "Reconciling", "False", "Idle");
        assert_cond(&out, "Stalled", "False", "Idle");
        assert_cond(&out, "Accepted", "True", "Valid");
        assert_eq!((out.synced_replicas, out.replicas, out.synced()), (2, 2, "2/2".into()));
        assert!(out.conditions.iter().all(|c| c.observed_generation == Some(7)));
        assert_eq!(out.observed_generation, 7);
        assert_eq!(out.recheck_at, Some(t(10)), "the next Lease expiry");
    }

    #[test]
    fn a_lagging_member_holds_ready_back_and_is_named() {
        let members = [mk_member("a", 10), mk_member("b", 10)];
        let status = mk_status(vec![mk_entry("a", 8, DIGEST), mk_entry("b", 7, "sha256:old")]);
        let out = judge_at(0, 8, &Verdict::Accepted, &members, &status);
        assert!(!out.ready);
        assert_cond(&out, "Ready", "False", "RolloutInProgress");
        assert!(cond(&out, "Ready").message.contains("waiting for b"));
        assert_cond(&out, "Reconciling", "True", "RolloutInProgress");
        assert_eq!(out.synced(), "1/2");
    }

    #[test]
    fn right_generation_with_wrong_digest_is_not_synced() {
        // A rotated certificate: same generation, new expected digest.
        let members = [mk_member("a", 10)];
        let status = mk_status(vec![mk_entry("a", 3, "sha256:old-cert")]);
        let out = judge_at(0, 3, &Verdict::Accepted, &members, &status);
        assert!(!out.ready);
        assert_eq!(out.synced_replicas, 0);
    }

    #[test]
    fn no_live_member_is_no_replicas() {
        let status = mk_status(vec![]);
        let out = judge_at(0, 1, &Verdict::Accepted, &[], &status);
        assert_cond(&out, "Ready", "False", "NoReplicas");
        assert_cond(&out, "Reconciling", "False", "Idle");
        let expired_only = judge_at(20, 1, &Verdict::Accepted, &[mk_member("a", 10)], &status);
        assert_cond(&expired_only, "Ready", "False", "NoReplicas");
        assert_eq!(expired_only.recheck_at, None);
    }

    #[test]
    fn an_expired_member_is_excluded_and_its_entry_pruned() {
        let members = [mk_member("a", 10), mk_member("dead", 5)];
        let status = mk_status(vec![mk_entry("a", 2, DIGEST), mk_entry("dead", 1, DIGEST)]);
        let before = judge_at(4, 2, &Verdict::Accepted, &members, &status);
        assert!(!before.ready, "dead still holds a fresh Lease");
        assert_eq!(before.recheck_at, Some(t(5)));
        let after = judge_at(6, 2, &Verdict::Accepted, &members, &status);
        assert!(after.ready);
        assert_eq!(after.synced(), "1/1");
        assert_eq!(after.prune, vec!["dead".to_owned()]);
    }

    #[test]
    fn an_entry_without_any_lease_is_a_joining_replica_and_kept() {
        let members = [mk_member("a", 10)];
        let status = mk_status(vec![mk_entry("a", 2, DIGEST), mk_entry("joining", 2, DIGEST)]);
        let out = judge_at(0, 2, &Verdict::Accepted, &members, &status);
        assert!(out.prune.is_empty());
        assert_eq!(out.synced(), "1/1", "not a member until it holds a Lease");
    }

    #[test]
    fn a_rejection_is_never_counted_as_applied() {
        let members = [mk_member("a", 10), mk_member("b", 10)];
        let mut rejected = mk_entry("b", 8, DIGEST);
        rejected.rejected = Some(Rejection { generation: 8, message: "spec.rules[0].tls.secretName: expired".into() });
        let status = mk_status(vec![mk_entry("a", 8, DIGEST), rejected]);
        let out = judge_at(0, 8, &Verdict::Accepted, &members, &status);
        assert!(!out.ready);
        assert_cond(&out, "Ready", "False", "Rejected");
        assert!(cond(&out, "Ready").message.contains("b rejected generation 8: spec.rules[0].tls.secretName: expired"));
        assert_cond(&out, "Stalled", "True", "Rejected");
        assert_eq!(out.synced(), "1/2");
        // A rejection of an older generation does not matter once the replica serves this one.
        let mut old = mk_entry("b", 9, DIGEST);
        old.rejected = Some(Rejection { generation: 8, message: "x".into() });
        let status = mk_status(vec![mk_entry("a", 9, DIGEST), old]);
        assert!(judge_at(0, 9, &Verdict::Accepted, &members, &status).ready);
    }

    #[test]
    fn not_accepted_is_not_ready_and_stalled_with_the_reason() {
        let members = [mk_member("a", 10)];
        let status = mk_status(vec![mk_entry("a", 3, DIGEST)]);
        let verdict = Verdict::Conflict("spec.rules[0].paths[0]: already routed by ns/old".into());
        let out = judge_at(0, 3, &verdict, &members, &status);
        assert_cond(&out, "Accepted", "False", "Conflict");
        assert!(cond(&out, "Accepted").message.contains("spec.rules[0].paths[0]"));
        assert_cond(&out, "Ready", "False", "NotAccepted");
        assert_cond(&out, "Stalled", "True", "NotAccepted");
        let invalid = judge_at(0, 3, &Verdict::Invalid("spec.rules[0].host: bad".into()), &members, &status);
        assert_cond(&invalid, "Accepted", "False", "Invalid");
        let tls = judge(&Input {
            tls_problem: Some("spec.rules[0].tls.secretName: secret ns/x not found"),
            ..Input {
                generation: 3,
                verdict: &Verdict::Accepted,
                tls_problem: None,
                expected_digest: DIGEST,
                members: &members,
                status: Some(&status),
                now: t(0),
                stall_timeout: Duration::from_secs(60),
            }
        });
        assert_cond(&tls, "Accepted", "False", "InvalidTLS");
    }

    #[test]
    fn a_rollout_lagging_past_the_timeout_is_stalled_naming_the_replicas() {
        let members = [mk_member("a", 1000), mk_member("slow", 1000)];
        let status = mk_status(vec![mk_entry("a", 2, DIGEST), mk_entry("slow", 1, DIGEST)]);
        let first = judge_at(0, 2, &Verdict::Accepted, &members, &status);
        assert_cond(&first, "Stalled", "False", "Idle");
        assert_eq!(first.recheck_at, Some(t(60)), "the stall deadline");
        // The stored status now has Reconciling=True since t(0).
        let stored = RouterConfigStatus { conditions: first.conditions.clone(), ..status.clone() };
        let later = judge_at(61, 2, &Verdict::Accepted, &members, &stored);
        assert_cond(&later, "Stalled", "True", "RolloutStalled");
        assert!(cond(&later, "Stalled").message.contains("slow"));
        assert_cond(&later, "Reconciling", "True", "RolloutInProgress");
        let c = cond(&later, "Reconciling");
        assert_eq!(c.last_transition_time.0, t(0), "the rollout start is kept");
    }

    #[test]
    fn a_stale_ready_true_never_carries_the_new_generation() {
        let members = [mk_member("a", 10)];
        let synced_v1 = mk_status(vec![mk_entry("a", 1, DIGEST)]);
        let v1 = judge_at(0, 1, &Verdict::Accepted, &members, &synced_v1);
        assert!(v1.ready);
        let stored = RouterConfigStatus { conditions: v1.conditions.clone(), ..synced_v1.clone() };
        let v2 = judge_at(1, 2, &Verdict::Accepted, &members, &stored);
        let ready = cond(&v2, "Ready");
        assert_eq!((ready.status.as_str(), ready.observed_generation), ("False", Some(2)));
        assert_eq!(ready.last_transition_time.0, t(1));
        assert!(v2.changed);
    }

    #[test]
    fn unchanged_judgement_is_not_a_change() {
        let members = [mk_member("a", 10)];
        let status = mk_status(vec![mk_entry("a", 1, DIGEST)]);
        let first = judge_at(0, 1, &Verdict::Accepted, &members, &status);
        let stored = RouterConfigStatus {
            conditions: first.conditions.clone(),
            observed_generation: Some(1),
            synced_replicas: Some(1),
            replicas: Some(1),
            synced: Some("1/1".into()),
            ..status
        };
        let again = judge_at(5, 1, &Verdict::Accepted, &members, &stored);
        assert!(!again.changed, "only time passed");
        assert_eq!(again.conditions, first.conditions, "transition times are kept");
    }

    #[test]
    fn member_from_lease_uses_holder_and_renew_time() {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "lockstep-proxy-p0"},
            "spec": {"holderIdentity": "p0", "leaseDurationSeconds": 10, "renewTime": "2027-01-15T08:00:00.000000Z"}
        }))
        .unwrap();
        let member = Member::from_lease(&lease).unwrap();
        assert_eq!(member.name, "p0");
        assert_eq!(member.expires, "2027-01-15T08:00:10Z".parse::<Timestamp>().unwrap());
    }
}
