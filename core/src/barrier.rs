//! The barrier decision, free of Kubernetes I/O: given one RouterConfig's generation and status,
//! the reports of the live replicas that serve it, the fleet-wide verdict on its spec, the
//! digest every replica must report and the time, what should its status say, and when must
//! the operator look again even if nothing changes.
//!
//! It runs in three steps: [`classify`] each member and the whole into a [`Phase`], run the
//! stall clock, and render the conditions of the phase.
//!
//! | phase | Accepted | Ready | Reconciling | Stalled |
//! |---|---|---|---|---|
//! | spec not accepted (invalid, conflict, unusable TLS Secret) | False `Invalid`/`Conflict`/`InvalidTLS` | False `NotAccepted` | False `NotAccepted` | True `NotAccepted` |
//! | a referenced TLS Secret does not exist yet | True `Valid` | False `WaitingForSecret` | True `WaitingForSecret` | False `Idle` |
//! | no live replica serves its namespace | True `Valid` | False `NoReplicas` | True `NoReplicas` | False `Idle` |
//! | some live replica rejected the generation | True `Valid` | False `Rejected` | True `Rejected` | False `Idle` |
//! | some live replica is behind | True `Valid` | False `RolloutInProgress` | True `RolloutInProgress` | False `Idle` |
//! | every live replica serves generation and digest | True `Valid` | True `AllReplicasSynced` | False `Idle` | False `Idle` |
//! | waiting, rejected or behind longer than the stall timeout | True `Valid` | False (as above) | False `RolloutStalled` | True `RolloutStalled` |
//!
//! Why these choices: kstatus (Flux, kpt, cli-utils) ignores `Ready` and judges a resource by
//! `Reconciling`/`Stalled`, taking the *first* true one in list order. So every `Ready=False`
//! case sets exactly one of them: a fleet without replicas is waiting (InProgress), never
//! Current; a spec the operator will not accept cannot progress without an edit, so it is
//! Failed at once; a replica's rejection or a missing Secret may be transient (cert-manager
//! creates the Secret a moment later), so it is InProgress until the stall timeout turns it
//! into Failed. `Reconciling` and `Stalled` are never both True, so list order does not matter.
//!
//! The stall clock is persisted state, so it survives leader failover: the rollout started at
//! the `lastTransitionTime` of `Reconciling=True` for this generation. That time is reset when a
//! new generation arrives or when replicas appear after `NoReplicas` (waiting for a fleet is not
//! lagging). Once `Stalled=True` for a generation it stays until the rollout completes or a new
//! generation arrives.
//!
//! (Over 600 lines: the phase table, the stall clock and the rendering of each phase's
//! conditions and events are one decision; split, each part would need the others' types
//! and the table would no longer be read in one place. The scenario tests are in
//! `barrier/tests.rs`.)

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use lockstep_crds::{
    AcceptedGeneration, ReplicaId, ReplicaStatus, RouterConfigStatus, RouterReplica, ServedRouterConfig,
    condition, reason,
};
use serde_json::{Value, json};

use crate::{
    Verdict,
    conditions::{NewCondition, eq_ignoring_time, find, same_verdicts, set_condition, status_str},
};

/// Most replica names a condition message lists; the rest are counted.
const MAX_NAMES: usize = 10;
/// Most replica reports copied into `status.replicaStatus`.
pub const MAX_REPLICA_STATUS: usize = 100;

/// Tunables of the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long a rollout may lag before `Stalled=True`.
    pub stall_timeout: Duration,
    /// The least time between two status writes that only report progress (more replicas at
    /// the generation, a reworded message), for a fleet of up to 100 replicas; a larger fleet
    /// waits longer ([`Settings::progress_interval_for`]). Verdicts (a condition's status or
    /// reason, a new generation, a member joining or leaving) are written at once.
    pub progress_interval: Duration,
}

/// What each replica adds to the least time between progress writes, past 100 replicas.
///
/// Every replica watching the namespace receives and decodes each status write, and a
/// rollout lasts longer the more replicas report (each report is an apiserver write): with a
/// fixed interval the progress writes per rollout grow with the fleet, and their watch events
/// with its square. Measured at 1,000 hollow replicas (e2e/bench/RESULTS.md, 2026-12-03): 7 s
/// rollouts, 6.2 RouterConfig events per replica per rollout against 3.1 at 100 and 300, and
/// each replica's CPU per rollout 4.0 ms against 1.8. Spacing progress by 10 ms per replica
/// keeps progress writes per rollout about constant, so their events grow linearly.
pub const PROGRESS_INTERVAL_PER_REPLICA: Duration = Duration::from_millis(10);

impl Settings {
    /// The least time between two progress-only writes of an object judged on `replicas`
    /// members: `progress_interval`, or 10 ms per replica when that is longer (1 s at 100, 10 s
    /// at 1,000).
    pub fn progress_interval_for(&self, replicas: usize) -> Duration {
        let per_fleet =
            PROGRESS_INTERVAL_PER_REPLICA.saturating_mul(u32::try_from(replicas).unwrap_or(u32::MAX));
        self.progress_interval.max(per_fleet)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            stall_timeout: Duration::from_secs(60),
            progress_interval: Duration::from_secs(1),
        }
    }
}

/// Every reason a condition can carry. Conditions are rendered from these, so an unknown
/// reason cannot be written, and transitions read the phase, not strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Accepted=True.
    Valid,
    /// Accepted=False: the spec failed semantic validation.
    Invalid,
    /// Accepted=False: an older RouterConfig claims the same route.
    Conflict,
    /// Accepted=False: a referenced TLS Secret is unusable.
    InvalidTls,
    /// Ready=True.
    AllReplicasSynced,
    /// Ready=False: some replica is behind.
    RolloutInProgress,
    /// Ready=False: some replica rejected the generation.
    Rejected,
    /// Ready=False: no live replica serves the namespace.
    NoReplicas,
    /// Ready/Reconciling/Stalled while the spec is not accepted.
    NotAccepted,
    /// Ready=False: a referenced TLS Secret does not exist yet.
    WaitingForSecret,
    /// Nothing in progress.
    Idle,
    /// The rollout lagged beyond the stall timeout.
    RolloutStalled,
}

impl Reason {
    /// The reason as written in a condition.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Valid => reason::VALID,
            Self::Invalid => reason::INVALID,
            Self::Conflict => reason::CONFLICT,
            Self::InvalidTls => reason::INVALID_TLS,
            Self::AllReplicasSynced => reason::ALL_REPLICAS_SYNCED,
            Self::RolloutInProgress => reason::ROLLOUT_IN_PROGRESS,
            Self::Rejected => reason::REJECTED,
            Self::NoReplicas => reason::NO_REPLICAS,
            Self::NotAccepted => reason::NOT_ACCEPTED,
            Self::WaitingForSecret => reason::WAITING_FOR_SECRET,
            Self::Idle => reason::IDLE,
            Self::RolloutStalled => reason::ROLLOUT_STALLED,
        }
    }
}

/// What the operator itself sees wrong with the TLS Secrets a RouterConfig names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsProblem {
    /// A Secret does not exist (yet): a wait, until the stall timeout.
    Missing(String),
    /// A Secret exists but cannot be served (lacks keys): not accepted.
    Unusable(String),
}

impl TlsProblem {
    /// The message, naming the field.
    pub fn message(&self) -> &str {
        match self {
            TlsProblem::Missing(m) | TlsProblem::Unusable(m) => m,
        }
    }
}

/// A live member of the fleet that serves the RouterConfig's namespace, and its report.
#[derive(Debug, Clone, PartialEq)]
pub struct Member<'a> {
    /// The replica.
    pub id: ReplicaId,
    /// Its report on this RouterConfig; None when it has none (or no usable RouterReplica).
    pub report: Option<&'a ServedRouterConfig>,
}

/// The live members of `fleet` (`live`, from the Lease clock) that serve RouterConfigs of
/// `namespace`, with their reports on `namespace/name` of incarnation `uid`. A live Lease
/// whose RouterReplica is missing or names another fleet is a member without a report: it
/// holds `Ready` back (it may serve anything) but is never counted as synced. A report on
/// another uid is about an earlier object of the same name (deleted and re-created, its
/// generation restarted at 1): it is no report on this one, so the old object's reports
/// never make the new one Ready.
pub fn members_serving<'a>(
    namespace: &str,
    name: &str,
    uid: &str,
    fleet: &str,
    live: impl IntoIterator<Item = &'a ReplicaId>,
    replica: impl Fn(&ReplicaId) -> Option<&'a RouterReplica>,
) -> Vec<Member<'a>> {
    live.into_iter()
        .filter_map(|id| match replica(id) {
            Some(rrep) if rrep.spec.fleet == fleet => rrep.spec.serves_namespace(namespace).then(|| Member {
                id: id.clone(),
                report: rrep.status.as_ref().and_then(|s| {
                    s.served
                        .iter()
                        .find(|e| e.namespace == namespace && e.name == name && e.uid == uid)
                }),
            }),
            _ => Some(Member {
                id: id.clone(),
                report: None,
            }),
        })
        .collect()
}

/// The live replicas of `fleet` that [`members_serving`] leaves out of `namespace` because
/// their RouterReplica says they do not serve it. Leaving a replica out is the one way a
/// stale RouterReplica can make `Ready` lie (a missing one, or one naming another fleet,
/// holds `Ready` back instead): a replica restarted with a wider namespace list writes its
/// new spec before its Lease, but the operator's RouterReplica cache is a separate watch and
/// can still hold the old spec when the Lease is seen, and so judge out a member that serves
/// an old generation. Before `Ready=True` the operator reads these again with a quorum read.
pub fn left_out_by_spec<'a, 'r>(
    namespace: &str,
    fleet: &str,
    live: impl IntoIterator<Item = &'a ReplicaId>,
    replica: impl Fn(&ReplicaId) -> Option<&'r RouterReplica>,
) -> Vec<&'a ReplicaId> {
    live.into_iter()
        .filter(|id| {
            replica(id).is_some_and(|r| r.spec.fleet == fleet && !r.spec.serves_namespace(namespace))
        })
        .collect()
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// `metadata.generation`.
    pub generation: i64,
    /// The fleet, for messages.
    pub fleet: &'a str,
    /// The status as last seen.
    pub current: &'a RouterConfigStatus,
    /// The live members serving its namespace.
    pub members: &'a [Member<'a>],
    /// The fleet-wide verdict on its spec.
    pub verdict: &'a Verdict,
    /// A problem with its TLS Secrets that the operator can see.
    pub tls_problem: Option<&'a TlsProblem>,
    /// The digest a replica serving this generation must report.
    pub expected_digest: &'a str,
    /// What `status.lastAccepted` holds after this decision ([`crate::last_accepted`]).
    pub last_accepted: Option<&'a AcceptedGeneration>,
    /// The time of the decision.
    pub now: Timestamp,
    /// Tunables.
    pub settings: Settings,
}

/// The status the operator writes (field manager `lockstep-operator`).
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorStatus {
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// Accepted, Ready, Reconciling, Stalled (and any others already present).
    pub conditions: Vec<Condition>,
    /// Live replicas serving the generation with the expected digest.
    pub synced_replicas: i32,
    /// Live replicas serving the namespace.
    pub replicas: i32,
    /// "synced/replicas" for the SYNCED printer column.
    pub synced: String,
    /// At most [`MAX_REPLICA_STATUS`] reports, rejecters and laggards first.
    pub replica_status: Vec<ReplicaStatus>,
    /// `status.lastAccepted`: what every replica serves while a newer generation is rejected.
    pub last_accepted: Option<AcceptedGeneration>,
}

impl OperatorStatus {
    /// The server-side apply body for the status subresource of the object whose
    /// metadata.resourceVersion was `resource_version` when this status was computed. The
    /// resourceVersion is a precondition: the apiserver refuses the write (409) when the object
    /// changed since, and so when it is another object of the same name (deleted and
    /// re-created meanwhile): a verdict on the old object never lands on the new one. (A
    /// metadata.uid in the body would not do: the apiserver ignores it in a status patch.)
    pub fn apply_patch(&self, resource_version: &str) -> Value {
        let mut patch = json!({
            "apiVersion": lockstep_crds::API_VERSION,
            "kind": lockstep_crds::KIND,
            "metadata": {"resourceVersion": resource_version},
            "status": {
                "observedGeneration": self.observed_generation,
                "conditions": self.conditions,
                "syncedReplicas": self.synced_replicas,
                "replicas": self.replicas,
                "synced": self.synced,
                "replicaStatus": self.replica_status,
            }
        });
        // Omitted rather than null: the operator owns the field, so leaving it out of an
        // apply removes it.
        if let Some(accepted) = &self.last_accepted {
            patch["status"]["lastAccepted"] = json!(accepted);
        }
        patch
    }
}

/// How long a progress-only status write has to wait, given when the object's status was last
/// written by this instance; `None` when it may be written now.
pub fn progress_wait(last_write: Option<Instant>, now: Instant, interval: Duration) -> Option<Duration> {
    let since = now.saturating_duration_since(last_write?);
    (since < interval).then(|| interval - since)
}

/// A condition change worth a Kubernetes Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Warning rather than Normal.
    pub warning: bool,
    /// The condition reason.
    pub reason: Reason,
    /// The condition message.
    pub note: String,
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The generation it was computed for.
    pub generation: i64,
    /// What the status should be.
    pub status: OperatorStatus,
    /// True when `status` differs from the current one other than in transition times.
    pub changed: bool,
    /// True when the change is progress only: counts, messages and copied reports, no verdict
    /// (see [`Settings::progress_interval`]).
    pub progress_only: bool,
    /// Ready=True for `generation`.
    pub ready: bool,
    /// When the decision may change without any event: the stall deadline.
    pub recheck_at: Option<Timestamp>,
    /// Transitions to announce as Events once the status is written.
    pub transitions: Vec<Transition>,
}

/// Where one live member stands with the current generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Serves the generation with the expected digest.
    Synced,
    /// Rejected the generation, with its message.
    Rejected(String),
    /// Has no report for this RouterConfig.
    NoReport,
    /// Serves an older (or newer) generation.
    Behind(i64),
    /// Serves the generation with another digest (other TLS material, or a garbage report).
    OtherDigest,
}

/// The judgement of a member's report.
pub fn standing(report: Option<&ServedRouterConfig>, generation: i64, expected_digest: &str) -> Standing {
    match report {
        None => Standing::NoReport,
        Some(e) => match &e.rejected {
            Some(r) if r.generation == generation => Standing::Rejected(r.message.clone()),
            _ if e.observed_generation != generation => Standing::Behind(e.observed_generation),
            _ if e.config_digest != expected_digest => Standing::OtherDigest,
            _ => Standing::Synced,
        },
    }
}

/// The state of the rollout as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The spec is not accepted: why, and the message naming the field.
    NotAccepted(Reason, String),
    /// A TLS Secret it names does not exist yet.
    WaitingForSecret(String),
    /// No live member serves its namespace.
    NoReplicas,
    /// Every member serves the generation.
    Synced,
    /// Some member rejected the generation.
    Rejected,
    /// Some member is behind.
    InProgress,
}

impl Phase {
    /// Phases that run the stall clock.
    fn lags(&self) -> bool {
        matches!(
            self,
            Self::WaitingForSecret(_) | Self::Rejected | Self::InProgress
        )
    }
}

/// Step one: each member's standing and the phase.
pub fn classify<'a>(input: &Input<'a>) -> (Vec<(&'a ReplicaId, Standing)>, Phase) {
    let standings: Vec<(&ReplicaId, Standing)> = input
        .members
        .iter()
        .map(|m| (&m.id, standing(m.report, input.generation, input.expected_digest)))
        .collect();
    let rejected = standings.iter().any(|(_, s)| matches!(s, Standing::Rejected(_)));
    let synced = standings.iter().all(|(_, s)| *s == Standing::Synced);
    let phase = match (input.verdict, input.tls_problem) {
        (Verdict::Invalid(m), _) => Phase::NotAccepted(Reason::Invalid, m.clone()),
        (Verdict::Conflict(m), _) => Phase::NotAccepted(Reason::Conflict, m.clone()),
        (Verdict::Accepted, Some(TlsProblem::Unusable(m))) => {
            Phase::NotAccepted(Reason::InvalidTls, m.clone())
        }
        (Verdict::Accepted, Some(TlsProblem::Missing(m))) => Phase::WaitingForSecret(m.clone()),
        _ if standings.is_empty() => Phase::NoReplicas,
        _ if rejected => Phase::Rejected,
        _ if synced => Phase::Synced,
        _ => Phase::InProgress,
    };
    (standings, phase)
}

/// Step two: when the rollout started and whether it is stalled.
struct StallClock {
    running: bool,
    stalled: bool,
    deadline: Timestamp,
}

fn stall_clock(input: &Input<'_>, phase: &Phase) -> StallClock {
    let (old, generation, now) = (&input.current.conditions, input.generation, input.now);
    let reconciling = find(old, condition::RECONCILING);
    let running = reconciling.is_some_and(|c| {
        c.status == "True" && c.observed_generation == Some(generation) && c.reason != reason::NO_REPLICAS
    });
    let start = reconciling
        .filter(|_| running)
        .map_or(now, |c| c.last_transition_time.0);
    let was_stalled = find(old, condition::STALLED).is_some_and(|c| {
        c.status == "True" && c.observed_generation == Some(generation) && c.reason == reason::ROLLOUT_STALLED
    });
    let deadline = plus(start, input.settings.stall_timeout);
    StallClock {
        running,
        stalled: phase.lags() && (was_stalled || now >= deadline),
        deadline,
    }
}

fn list_names<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    let mut text: Vec<String> = items.iter().take(MAX_NAMES).map(show).collect();
    if items.len() > MAX_NAMES {
        text.push(format!("and {} more", items.len() - MAX_NAMES));
    }
    text.join(", ")
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The reports copied into `status.replicaStatus`: rejecters first, then laggards, then
/// synced replicas, each group by name; at most [`MAX_REPLICA_STATUS`].
fn replica_status(members: &[Member<'_>], standings: &[(&ReplicaId, Standing)]) -> Vec<ReplicaStatus> {
    let rank = |s: &Standing| match s {
        Standing::Rejected(_) => 0,
        Standing::Synced => 2,
        _ => 1,
    };
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| {
        rank(&standings[a].1)
            .cmp(&rank(&standings[b].1))
            .then_with(|| members[a].id.cmp(&members[b].id))
    });
    order
        .into_iter()
        .take(MAX_REPLICA_STATUS)
        .map(|i| {
            let member = &members[i];
            let report = member.report.cloned().unwrap_or_default();
            ReplicaStatus {
                name: member.id.to_string(),
                observed_generation: report.observed_generation,
                config_digest: report.config_digest,
                applied_at: report.applied_at,
                rejected: report.rejected,
            }
        })
        .collect()
}

/// Computes the status and the next deadline.
pub fn decide(input: Input<'_>) -> Outcome {
    let (standings, phase) = classify(&input);
    let clock = stall_clock(&input, &phase);
    let Input {
        generation,
        fleet,
        current,
        now,
        settings,
        ..
    } = input;

    let replicas = standings.len();
    let synced = standings.iter().filter(|(_, s)| *s == Standing::Synced).count();
    let lagging: Vec<&(&ReplicaId, Standing)> =
        standings.iter().filter(|(_, s)| *s != Standing::Synced).collect();
    let rejected: Vec<(&ReplicaId, &str)> = standings
        .iter()
        .filter_map(|(n, s)| match s {
            Standing::Rejected(m) => Some((*n, m.as_str())),
            _ => None,
        })
        .collect();

    let counts = format!("{synced}/{replicas} replicas serve generation {generation}");
    let cond = |type_, value: bool, why: Reason, message: String| NewCondition {
        type_,
        status: status_str(value),
        reason: why.as_str(),
        message,
        observed_generation: generation,
    };
    let accepted = match &phase {
        Phase::NotAccepted(why, message) => cond(condition::ACCEPTED, false, *why, message.clone()),
        _ => cond(
            condition::ACCEPTED,
            true,
            Reason::Valid,
            "the spec is valid and owns all its routes".into(),
        ),
    };
    let waiting_for = || {
        format!(
            "waiting for {}",
            list_names(&lagging, |(name, standing)| match standing {
                Standing::NoReport => format!("{name} (no report)"),
                Standing::Behind(g) => format!("{name} (at generation {g})"),
                Standing::OtherDigest => format!("{name} (generation {generation} with another digest)"),
                Standing::Rejected(_) => format!("{name} (rejected generation {generation})"),
                Standing::Synced => name.to_string(),
            })
        )
    };
    let stalled_reconciling = || {
        cond(
            condition::RECONCILING,
            false,
            Reason::RolloutStalled,
            "the rollout is stalled; see the Stalled condition".into(),
        )
    };
    let (ready, reconciling) = match &phase {
        Phase::NotAccepted(why, message) => (
            cond(
                condition::READY,
                false,
                Reason::NotAccepted,
                format!(
                    "generation {generation} is not accepted ({}): {message}",
                    why.as_str()
                ),
            ),
            cond(
                condition::RECONCILING,
                false,
                Reason::NotAccepted,
                format!("generation {generation} is not accepted; nothing to roll out"),
            ),
        ),
        Phase::WaitingForSecret(message) => (
            cond(condition::READY, false, Reason::WaitingForSecret, message.clone()),
            if clock.stalled {
                stalled_reconciling()
            } else {
                cond(
                    condition::RECONCILING,
                    true,
                    Reason::WaitingForSecret,
                    message.clone(),
                )
            },
        ),
        Phase::NoReplicas => (
            cond(
                condition::READY,
                false,
                Reason::NoReplicas,
                format!("no live replica of fleet {fleet} serves this namespace"),
            ),
            cond(
                condition::RECONCILING,
                true,
                Reason::NoReplicas,
                format!("waiting for a live replica of fleet {fleet}"),
            ),
        ),
        Phase::Synced => (
            cond(condition::READY, true, Reason::AllReplicasSynced, counts.clone()),
            cond(
                condition::RECONCILING,
                false,
                Reason::Idle,
                format!("every live replica serves generation {generation}"),
            ),
        ),
        Phase::Rejected | Phase::InProgress => {
            let (why, message) = if rejected.is_empty() {
                (Reason::RolloutInProgress, counts.clone())
            } else {
                let rejections = list_names(&rejected, |(n, m)| format!("rejected by {n}: {m}"));
                (Reason::Rejected, format!("{counts}; {rejections}"))
            };
            let reconciling = if clock.stalled {
                stalled_reconciling()
            } else {
                cond(condition::RECONCILING, true, why, waiting_for())
            };
            (cond(condition::READY, false, why, message), reconciling)
        }
    };
    let stalled_cond = match &phase {
        Phase::NotAccepted(..) => cond(
            condition::STALLED,
            true,
            Reason::NotAccepted,
            format!("generation {generation} cannot roll out until the spec is fixed; see Accepted"),
        ),
        Phase::WaitingForSecret(message) if clock.stalled => cond(
            condition::STALLED,
            true,
            Reason::RolloutStalled,
            format!(
                "generation {generation} waited longer than the stall timeout ({}s): {message}",
                settings.stall_timeout.as_secs()
            ),
        ),
        _ if clock.stalled => {
            let names = list_names(&lagging, |(n, _)| n.to_string());
            let verb = if lagging.len() == 1 { "has" } else { "have" };
            cond(
                condition::STALLED,
                true,
                Reason::RolloutStalled,
                format!(
                    "{names} {verb} not served generation {generation} within the stall timeout ({}s)",
                    settings.stall_timeout.as_secs()
                ),
            )
        }
        _ => cond(condition::STALLED, false, Reason::Idle, String::new()),
    };

    let old = &current.conditions;
    let mut conditions = old.clone();
    for new in [accepted, ready, reconciling, stalled_cond] {
        set_condition(&mut conditions, new, now);
    }
    if phase.lags() && !clock.stalled && !clock.running {
        // A new generation (or the first replicas after NoReplicas) starts the stall clock even
        // though Reconciling stays True; the clock is this persisted time.
        if let Some(c) = conditions.iter_mut().find(|c| c.type_ == condition::RECONCILING) {
            c.last_transition_time = Time(now);
        }
    }

    let transitions = transitions(old, &conditions, generation, &phase, clock.stalled);
    let status = OperatorStatus {
        observed_generation: generation,
        conditions,
        synced_replicas: synced as i32,
        replicas: replicas as i32,
        synced: format!("{synced}/{replicas}"),
        replica_status: replica_status(input.members, &standings),
        last_accepted: input.last_accepted.cloned(),
    };
    let verdict_changed = current.observed_generation != Some(status.observed_generation)
        || current.last_accepted != status.last_accepted
        || current.replicas != Some(status.replicas)
        || !same_verdicts(&current.conditions, &status.conditions);
    let changed = verdict_changed
        || current.synced_replicas != Some(status.synced_replicas)
        || current.synced.as_deref() != Some(status.synced.as_str())
        || current.replica_status != status.replica_status
        || !eq_ignoring_time(&current.conditions, &status.conditions);
    Outcome {
        generation,
        ready: phase == Phase::Synced,
        status,
        changed,
        progress_only: changed && !verdict_changed,
        recheck_at: (phase.lags() && !clock.stalled).then_some(clock.deadline),
        transitions,
    }
}

/// Ready changing status or reason (or turning True for a new generation), Accepted turning
/// False (or False for another reason), Stalled turning True because the rollout lags. The
/// reasons come from the phase, never from strings read back.
fn transitions(
    old: &[Condition],
    new: &[Condition],
    generation: i64,
    phase: &Phase,
    stalled: bool,
) -> Vec<Transition> {
    let mut out = Vec::new();
    let ready_reason = match phase {
        Phase::NotAccepted(..) => Reason::NotAccepted,
        Phase::WaitingForSecret(_) => Reason::WaitingForSecret,
        Phase::NoReplicas => Reason::NoReplicas,
        Phase::Synced => Reason::AllReplicasSynced,
        Phase::Rejected => Reason::Rejected,
        Phase::InProgress => Reason::RolloutInProgress,
    };
    if let Some(ready) = find(new, condition::READY) {
        let moved = find(old, condition::READY).is_none_or(|b| {
            b.status != ready.status
                || b.reason != ready.reason
                || (ready.status == "True" && b.observed_generation != Some(generation))
        });
        if moved {
            out.push(Transition {
                warning: matches!(ready_reason, Reason::Rejected | Reason::NoReplicas),
                reason: ready_reason,
                note: ready.message.clone(),
            });
        }
    }
    if let (Phase::NotAccepted(why, _), Some(accepted)) = (phase, find(new, condition::ACCEPTED)) {
        let before = find(old, condition::ACCEPTED);
        if before.is_none_or(|b| {
            b.status != "False" || b.reason != accepted.reason || b.message != accepted.message
        }) {
            out.push(Transition {
                warning: true,
                reason: *why,
                note: accepted.message.clone(),
            });
        }
    }
    if stalled && let Some(c) = find(new, condition::STALLED) {
        let before = find(old, condition::STALLED);
        if before.is_none_or(|b| b.status != "True" || b.observed_generation != Some(generation)) {
            out.push(Transition {
                warning: true,
                reason: Reason::RolloutStalled,
                note: c.message.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
