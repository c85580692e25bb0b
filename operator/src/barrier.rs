//! The barrier decision, free of Kubernetes I/O: given one RouterConfig (its generation, its
//! status as replicas reported it), the Leases of its fleet, the fleet-wide verdict on its spec,
//! the digest every replica must report and the time, what should the operator's part of the
//! status say, which replica entries are garbage, and when must it look again even if nothing
//! changes.
//!
//! # Condition semantics (DESIGN.md "Status")
//!
//! | situation | Ready | Reconciling | Stalled |
//! |---|---|---|---|
//! | spec not accepted (invalid, conflict, unusable TLS Secret) | False `NotAccepted` | False `NotAccepted` | True `NotAccepted` |
//! | no live replica in the fleet | False `NoReplicas` | True `NoReplicas` | False `Idle` |
//! | every live replica serves generation and digest | True `AllReplicasSynced` | False `Idle` | False `Idle` |
//! | some live replica rejected the generation | False `Rejected` | True `Rejected` | False `Idle` |
//! | some live replica is behind | False `RolloutInProgress` | True `RolloutInProgress` | False `Idle` |
//! | behind or rejecting longer than the stall timeout | False (as above) | False `RolloutStalled` | True `RolloutStalled` |
//!
//! Why these choices: kstatus (Flux, kpt, cli-utils) ignores `Ready` and judges a resource by
//! `Reconciling`/`Stalled`, taking the *first* true one in list order. So every `Ready=False`
//! case sets exactly one of them: a fleet without replicas is waiting (InProgress), never
//! Current; a spec the operator will not accept cannot progress without an edit, so it is
//! Failed at once; a replica's rejection may be transient (a TLS Secret that is created a moment
//! later), so it is InProgress until the stall timeout turns it into Failed. `Reconciling` and
//! `Stalled` are never both True, so list order does not matter.
//!
//! The stall clock is persisted state, so it survives leader failover: the rollout started at
//! the `lastTransitionTime` of `Reconciling=True` for this generation. That time is reset when a
//! new generation arrives or when replicas appear after `NoReplicas` (waiting for a fleet is not
//! lagging). Once `Stalled=True` for a generation it stays until the rollout completes or a new
//! generation arrives.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::coordination::v1::Lease,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use lockstep_config::{
    Verdict,
    conditions::{NewCondition, eq_ignoring_time, find, same_verdicts, set_condition, status_str},
};
use lockstep_crds::{PROXY_LEASE_PREFIX, RouterConfig, condition, reason};
use serde_json::{Value, json};

/// Most replica names a condition message lists; the rest are counted.
const MAX_NAMES: usize = 10;

/// Tunables of the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long a rollout may lag before `Stalled=True`.
    pub stall_timeout: Duration,
    /// How long an entry of a replica that has no Lease at all is left alone. A proxy reports
    /// before it creates its Lease (it joins only once in sync), so a fresh entry without a
    /// Lease is usually a replica about to join, not garbage.
    pub orphan_grace: Duration,
    /// The least time between two status writes that only report progress (more replicas at
    /// the generation, a reworded message). Every replica's report is a watch event for the
    /// whole fleet; writing the count after each one doubled the writes to a contended object
    /// during a rollout. Verdicts (a condition's status or reason, a new generation, a member
    /// joining or leaving) are written at once.
    pub progress_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            stall_timeout: Duration::from_secs(60),
            orphan_grace: Duration::from_secs(30),
            progress_interval: Duration::from_secs(1),
        }
    }
}

/// The replica a proxy Lease stands for: its holderIdentity, else the name after the prefix.
pub fn lease_replica(lease: &Lease) -> Option<String> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .or_else(|| {
            lease
                .metadata
                .name
                .as_deref()
                .and_then(|n| n.strip_prefix(PROXY_LEASE_PREFIX))
                .map(str::to_owned)
        })
}

/// The instant a Lease stops counting: `renewTime + leaseDurationSeconds` (acquireTime when it
/// was never renewed). None when it has no holder, no time or no duration: a released Lease.
pub fn lease_expiry(lease: &Lease) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    spec.holder_identity.as_ref()?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let seconds = spec.lease_duration_seconds.filter(|d| *d > 0)?;
    renewed
        .checked_add(SignedDuration::from_secs(i64::from(seconds)))
        .ok()
}

/// True while `lease` is held by `holder` and fresh at `now`.
pub fn lease_held_by(lease: &Lease, holder: &str, now: Timestamp) -> bool {
    let held = lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(holder);
    held && lease_expiry(lease).is_some_and(|expiry| expiry > now)
}

/// Who is in the fleet at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Live replicas and when each one's Lease expires.
    pub live: BTreeMap<String, Timestamp>,
    /// Every replica with a Lease, live or not.
    pub known: BTreeSet<String>,
}

/// Membership of a fleet from its Leases: live iff `renewTime + leaseDurationSeconds > now`.
pub fn membership(leases: &[Lease], now: Timestamp) -> Membership {
    let mut m = Membership::default();
    for lease in leases {
        let Some(name) = lease_replica(lease) else {
            continue;
        };
        m.known.insert(name.clone());
        if let Some(expiry) = lease_expiry(lease).filter(|e| *e > now) {
            let slot = m.live.entry(name).or_insert(expiry);
            *slot = (*slot).max(expiry);
        }
    }
    m
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The RouterConfig as last seen (metadata.generation and status from one snapshot).
    pub rc: &'a RouterConfig,
    /// The Leases labelled with its fleet.
    pub leases: &'a [Lease],
    /// The fleet-wide verdict on its spec.
    pub verdict: &'a Verdict,
    /// A problem with the TLS Secrets it names that the operator can see (missing, lacking
    /// keys); makes it `Accepted=False, reason=InvalidTLS`.
    pub tls_problem: Option<&'a str>,
    /// The digest a replica serving this generation must report.
    pub expected_digest: &'a str,
    /// The time of the decision.
    pub now: Timestamp,
    /// Tunables.
    pub settings: Settings,
}

/// The part of the status the operator owns (field manager `lockstep-operator`); never
/// `replicaStatus`, whose entries belong to the replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorStatus {
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// Accepted, Ready, Reconciling, Stalled (and any others already present).
    pub conditions: Vec<Condition>,
    /// Live replicas serving the generation with the expected digest.
    pub synced_replicas: i32,
    /// Live replicas.
    pub replicas: i32,
    /// "synced/replicas" for the SYNCED printer column.
    pub synced: String,
}

impl OperatorStatus {
    /// The server-side apply body for the status subresource.
    pub fn apply_patch(&self) -> Value {
        json!({
            "apiVersion": lockstep_crds::API_VERSION,
            "kind": lockstep_crds::KIND,
            "status": {
                "observedGeneration": self.observed_generation,
                "conditions": self.conditions,
                "syncedReplicas": self.synced_replicas,
                "replicas": self.replicas,
                "synced": self.synced,
            }
        })
    }
}

/// A `replicaStatus` entry to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prune {
    /// Its index in the list as seen.
    pub index: usize,
    /// Its name, tested before the removal so a list that moved meanwhile is left alone.
    pub name: String,
}

/// The JSON patch (an Update, so no apply conflicts with the replicas' field managers) that
/// removes `prunes`: each removal guarded by a `test` of the name at that index, highest index
/// first so earlier removals do not shift later ones.
pub fn prune_patch(prunes: &[Prune]) -> Value {
    let mut sorted: Vec<&Prune> = prunes.iter().collect();
    sorted.sort_by_key(|p| std::cmp::Reverse(p.index));
    let ops: Vec<Value> = sorted
        .into_iter()
        .flat_map(|p| {
            let path = format!("/status/replicaStatus/{}", p.index);
            [
                json!({"op": "test", "path": format!("{path}/name"), "value": p.name}),
                json!({"op": "remove", "path": path}),
            ]
        })
        .collect();
    Value::Array(ops)
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
    pub reason: &'static str,
    /// The condition message.
    pub note: String,
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The generation it was computed for.
    pub generation: i64,
    /// What the operator's part of the status should be.
    pub status: OperatorStatus,
    /// True when `status` differs from the current one other than in transition times.
    pub changed: bool,
    /// True when the change is progress only: counts and messages, no verdict (see
    /// [`Settings::progress_interval`]).
    pub progress_only: bool,
    /// Ready=True for `generation`.
    pub ready: bool,
    /// Entries of replicas that are no longer members.
    pub prune: Vec<Prune>,
    /// When the decision may change without any event: the next Lease expiry, the stall
    /// deadline, the end of an orphan's grace.
    pub recheck_at: Option<Timestamp>,
    /// Transitions to announce as Events once the status is written.
    pub transitions: Vec<Transition>,
}

/// Where one live replica stands with the current generation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Standing {
    Synced,
    Rejected(String),
    NoReport,
    Behind(i64),
    OtherDigest,
}

enum Phase {
    NotAccepted(&'static str, String),
    NoReplicas,
    Synced,
    Rejected,
    InProgress,
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

/// Computes the operator's status, the entries to prune and the next deadline.
pub fn decide(input: Input<'_>) -> Outcome {
    let Input {
        rc,
        leases,
        verdict,
        tls_problem,
        expected_digest,
        now,
        settings,
    } = input;
    let generation = rc.metadata.generation.unwrap_or(0);
    let current = rc.status.clone().unwrap_or_default();
    let entries = &current.replica_status;
    let members = membership(leases, now);
    let mut deadlines: Vec<Timestamp> = members.live.values().copied().collect();

    let mut prune = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if members.live.contains_key(&entry.name) {
            continue;
        }
        let applied = entry
            .applied_at
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok());
        match applied.map(|t| plus(t, settings.orphan_grace)) {
            Some(end) if !members.known.contains(&entry.name) && end > now => deadlines.push(end),
            _ => prune.push(Prune {
                index,
                name: entry.name.clone(),
            }),
        }
    }

    let standings: Vec<(&str, Standing)> = members
        .live
        .keys()
        .map(|name| {
            let standing = match entries.iter().find(|e| &e.name == name) {
                None => Standing::NoReport,
                Some(e) => match &e.rejected {
                    Some(r) if r.generation == generation => Standing::Rejected(r.message.clone()),
                    _ if e.observed_generation != generation => Standing::Behind(e.observed_generation),
                    _ if e.config_digest != expected_digest => Standing::OtherDigest,
                    _ => Standing::Synced,
                },
            };
            (name.as_str(), standing)
        })
        .collect();
    let replicas = standings.len();
    let synced = standings.iter().filter(|(_, s)| *s == Standing::Synced).count();
    let lagging: Vec<&(&str, Standing)> = standings.iter().filter(|(_, s)| *s != Standing::Synced).collect();
    let rejected: Vec<(&str, &str)> = standings
        .iter()
        .filter_map(|(n, s)| match s {
            Standing::Rejected(m) => Some((*n, m.as_str())),
            _ => None,
        })
        .collect();

    let phase = match (verdict, tls_problem) {
        (Verdict::Invalid(m), _) => Phase::NotAccepted(reason::INVALID, m.clone()),
        (Verdict::Conflict(m), _) => Phase::NotAccepted(reason::CONFLICT, m.clone()),
        (Verdict::Accepted, Some(problem)) => Phase::NotAccepted(reason::INVALID_TLS, problem.to_owned()),
        _ if replicas == 0 => Phase::NoReplicas,
        _ if !rejected.is_empty() => Phase::Rejected,
        _ if lagging.is_empty() => Phase::Synced,
        _ => Phase::InProgress,
    };

    let old = &current.conditions;
    let old_reconciling = find(old, condition::RECONCILING);
    let clock_running = old_reconciling.is_some_and(|c| {
        c.status == "True" && c.observed_generation == Some(generation) && c.reason != reason::NO_REPLICAS
    });
    let rollout_start = old_reconciling
        .filter(|_| clock_running)
        .map_or(now, |c| c.last_transition_time.0);
    let was_stalled = find(old, condition::STALLED).is_some_and(|c| {
        c.status == "True" && c.observed_generation == Some(generation) && c.reason == reason::ROLLOUT_STALLED
    });
    let lags = matches!(phase, Phase::Rejected | Phase::InProgress);
    let stall_at = plus(rollout_start, settings.stall_timeout);
    let stalled = lags && (was_stalled || now >= stall_at);
    if lags && !stalled {
        deadlines.push(stall_at);
    }

    let counts = format!("{synced}/{replicas} replicas serve generation {generation}");
    let fleet = &rc.spec.fleet;
    let cond = |type_, value: bool, reason, message: String| NewCondition {
        type_,
        status: status_str(value),
        reason,
        message,
        observed_generation: generation,
    };
    let accepted = match &phase {
        Phase::NotAccepted(why, message) => cond(condition::ACCEPTED, false, *why, message.clone()),
        _ => cond(
            condition::ACCEPTED,
            true,
            reason::VALID,
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
                Standing::Synced => (*name).to_owned(),
            })
        )
    };
    let (ready, reconciling) = match &phase {
        Phase::NotAccepted(why, message) => (
            cond(
                condition::READY,
                false,
                reason::NOT_ACCEPTED,
                format!("generation {generation} is not accepted ({why}): {message}"),
            ),
            cond(
                condition::RECONCILING,
                false,
                reason::NOT_ACCEPTED,
                format!("generation {generation} is not accepted; nothing to roll out"),
            ),
        ),
        Phase::NoReplicas => (
            cond(
                condition::READY,
                false,
                reason::NO_REPLICAS,
                format!("no live replica in fleet {fleet}"),
            ),
            cond(
                condition::RECONCILING,
                true,
                reason::NO_REPLICAS,
                format!("waiting for a live replica in fleet {fleet}"),
            ),
        ),
        Phase::Synced => (
            cond(
                condition::READY,
                true,
                reason::ALL_REPLICAS_SYNCED,
                counts.clone(),
            ),
            cond(
                condition::RECONCILING,
                false,
                reason::IDLE,
                format!("every live replica serves generation {generation}"),
            ),
        ),
        Phase::Rejected | Phase::InProgress => {
            let (why, message) = if rejected.is_empty() {
                (reason::ROLLOUT_IN_PROGRESS, counts.clone())
            } else {
                let rejections = list_names(&rejected, |(n, m)| format!("rejected by {n}: {m}"));
                (reason::REJECTED, format!("{counts}; {rejections}"))
            };
            let reconciling = if stalled {
                cond(
                    condition::RECONCILING,
                    false,
                    reason::ROLLOUT_STALLED,
                    "the rollout is stalled; see the Stalled condition".into(),
                )
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
            reason::NOT_ACCEPTED,
            format!("generation {generation} cannot roll out until the spec is fixed; see Accepted"),
        ),
        _ if stalled => {
            let names = list_names(&lagging, |(n, _)| (*n).to_owned());
            let verb = if lagging.len() == 1 { "has" } else { "have" };
            cond(
                condition::STALLED,
                true,
                reason::ROLLOUT_STALLED,
                format!(
                    "{names} {verb} not served generation {generation} within the stall timeout ({}s)",
                    settings.stall_timeout.as_secs()
                ),
            )
        }
        _ => cond(condition::STALLED, false, reason::IDLE, String::new()),
    };

    let mut conditions = old.clone();
    for new in [accepted, ready, reconciling, stalled_cond] {
        set_condition(&mut conditions, new, now);
    }
    if lags && !stalled && !clock_running {
        // A new generation (or the first replicas after NoReplicas) starts the stall clock even
        // though Reconciling stays True; the clock is this persisted time.
        if let Some(c) = conditions.iter_mut().find(|c| c.type_ == condition::RECONCILING) {
            c.last_transition_time = Time(now);
        }
    }

    let transitions = transitions(old, &conditions, generation);
    let status = OperatorStatus {
        observed_generation: generation,
        conditions,
        synced_replicas: synced as i32,
        replicas: replicas as i32,
        synced: format!("{synced}/{replicas}"),
    };
    let verdict_changed = current.observed_generation != Some(status.observed_generation)
        || current.replicas != Some(status.replicas)
        || !same_verdicts(&current.conditions, &status.conditions);
    let changed = verdict_changed
        || current.synced_replicas != Some(status.synced_replicas)
        || current.synced.as_deref() != Some(status.synced.as_str())
        || !eq_ignoring_time(&current.conditions, &status.conditions);
    Outcome {
        generation,
        ready: matches!(phase, Phase::Synced),
        status,
        changed,
        progress_only: changed && !verdict_changed,
        prune,
        recheck_at: deadlines.into_iter().min(),
        transitions,
    }
}

/// Ready changing status or reason (or turning True for a new generation), Accepted turning
/// False (or False for another reason), Stalled turning True because the rollout lags.
fn transitions(old: &[Condition], new: &[Condition], generation: i64) -> Vec<Transition> {
    let pick = |list: &[Condition], t: &str| find(list, t).cloned();
    let mut out = Vec::new();
    let static_reason = |r: &str| -> &'static str {
        [
            reason::INVALID,
            reason::CONFLICT,
            reason::INVALID_TLS,
            reason::ALL_REPLICAS_SYNCED,
            reason::ROLLOUT_IN_PROGRESS,
            reason::REJECTED,
            reason::NO_REPLICAS,
            reason::NOT_ACCEPTED,
            reason::ROLLOUT_STALLED,
        ]
        .into_iter()
        .find(|known| *known == r)
        .unwrap_or(reason::IDLE)
    };
    if let Some(ready) = pick(new, condition::READY) {
        let before = pick(old, condition::READY);
        let moved = before.as_ref().is_none_or(|b| {
            b.status != ready.status
                || b.reason != ready.reason
                || (ready.status == "True" && b.observed_generation != Some(generation))
        });
        if moved {
            out.push(Transition {
                warning: [reason::REJECTED, reason::NO_REPLICAS].contains(&ready.reason.as_str()),
                reason: static_reason(&ready.reason),
                note: ready.message.clone(),
            });
        }
    }
    if let Some(accepted) = pick(new, condition::ACCEPTED).filter(|c| c.status == "False") {
        let before = pick(old, condition::ACCEPTED);
        if before.is_none_or(|b| {
            b.status != "False" || b.reason != accepted.reason || b.message != accepted.message
        }) {
            out.push(Transition {
                warning: true,
                reason: static_reason(&accepted.reason),
                note: accepted.message.clone(),
            });
        }
    }
    if let Some(stalled) =
        pick(new, condition::STALLED).filter(|c| c.status == "True" && c.reason == reason::ROLLOUT_STALLED)
    {
        let before = pick(old, condition::STALLED);
        if before.is_none_or(|b| b.status != "True" || b.observed_generation != Some(generation)) {
            out.push(Transition {
                warning: true,
                reason: reason::ROLLOUT_STALLED,
                note: stalled.message.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
