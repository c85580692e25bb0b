//! Condition helpers with `meta.SetStatusCondition` semantics.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition without its transition time, which [`set_condition`] fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCondition {
    /// Type ("Ready").
    pub type_: &'static str,
    /// "True", "False" or "Unknown".
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The generation it was computed for.
    pub observed_generation: i64,
}

/// "True" or "False".
pub fn status_str(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// Sets a condition in place, keeping `lastTransitionTime` when the status did not change.
pub fn set_condition(conditions: &mut Vec<Condition>, new: NewCondition, now: Timestamp) {
    let existing = conditions.iter_mut().find(|c| c.type_ == new.type_);
    match existing {
        Some(c) => {
            if c.status != new.status {
                c.last_transition_time = Time(now);
            }
            c.status = new.status.to_owned();
            c.reason = new.reason.to_owned();
            c.message = new.message;
            c.observed_generation = Some(new.observed_generation);
        }
        None => conditions.push(Condition {
            type_: new.type_.to_owned(),
            status: new.status.to_owned(),
            reason: new.reason.to_owned(),
            message: new.message,
            observed_generation: Some(new.observed_generation),
            last_transition_time: Time(now),
        }),
    }
}

/// The condition of a type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when both lists hold the same conditions, ignoring order and transition times; used to
/// skip writes that would change nothing but a timestamp (and loop forever).
pub fn eq_ignoring_time(a: &[Condition], b: &[Condition]) -> bool {
    same_conditions(a, b, true)
}

/// True when both lists say the same thing (type, status, reason, generation), whatever their
/// messages and times: a change of message alone is progress to report, not a verdict.
pub fn same_verdicts(a: &[Condition], b: &[Condition]) -> bool {
    same_conditions(a, b, false)
}

fn same_conditions(a: &[Condition], b: &[Condition], messages: bool) -> bool {
    a.len() == b.len()
        && a.iter().all(|x| {
            b.iter().any(|y| {
                x.type_ == y.type_
                    && x.status == y.status
                    && x.reason == y.reason
                    && (!messages || x.message == y.message)
                    && x.observed_generation == y.observed_generation
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: &'static str, reason: &'static str, generation: i64) -> NewCondition {
        NewCondition {
            type_: "Ready",
            status,
            reason,
            message: format!("{reason} at {generation}"),
            observed_generation: generation,
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let mut cs = Vec::new();
        set_condition(
            &mut cs,
            cond("False", "RolloutInProgress", 1),
            t("2025-01-01T00:00:00Z"),
        );
        assert_eq!(cs[0].last_transition_time.0, t("2025-01-01T00:00:00Z"));
        // Same status, new reason, message and generation: time kept, the rest updated.
        set_condition(&mut cs, cond("False", "NoReplicas", 2), t("2025-01-01T00:01:00Z"));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time.0, t("2025-01-01T00:00:00Z"));
        assert_eq!(
            (cs[0].reason.as_str(), cs[0].observed_generation),
            ("NoReplicas", Some(2))
        );
        assert_eq!(cs[0].message, "NoReplicas at 2");
        // Status flips: time moves.
        set_condition(
            &mut cs,
            cond("True", "AllReplicasSynced", 2),
            t("2025-01-01T00:02:00Z"),
        );
        assert_eq!(cs[0].last_transition_time.0, t("2025-01-01T00:02:00Z"));
        assert_eq!(cs[0].status, "True");
        // Another type is added beside it.
        set_condition(
            &mut cs,
            NewCondition {
                type_: "Accepted",
                ..cond("True", "Valid", 2)
            },
            t("2025-01-01T00:03:00Z"),
        );
        assert_eq!(cs.len(), 2);
        assert_eq!(find(&cs, "Accepted").unwrap().reason, "Valid");
        assert_eq!(find(&cs, "Ready").unwrap().status, "True");
        assert!(find(&cs, "Stalled").is_none());
    }

    #[test]
    fn eq_ignoring_time_ignores_time_and_order_only() {
        let mut a = Vec::new();
        set_condition(
            &mut a,
            cond("True", "AllReplicasSynced", 3),
            t("2025-01-01T00:00:00Z"),
        );
        set_condition(
            &mut a,
            NewCondition {
                type_: "Accepted",
                ..cond("True", "Valid", 3)
            },
            t("2025-01-01T00:00:00Z"),
        );
        let mut b = a.clone();
        b.reverse();
        for c in &mut b {
            c.last_transition_time = Time(t("2026-01-01T00:00:00Z"));
        }
        assert!(eq_ignoring_time(&a, &b));
        assert!(eq_ignoring_time(&[], &[]));
        for change in [
            |c: &mut Condition| c.status = "False".into(),
            |c: &mut Condition| c.reason = "Other".into(),
            |c: &mut Condition| c.message = "other".into(),
            |c: &mut Condition| c.observed_generation = Some(4),
            |c: &mut Condition| c.type_ = "Stalled".into(),
        ] {
            let mut c = a.clone();
            change(&mut c[0]);
            assert!(!eq_ignoring_time(&a, &c), "{c:?}");
        }
        assert!(!eq_ignoring_time(&a, &a[..1]));
        // A verdict is the same whatever its message says, and differs in anything else.
        let mut reworded = b.clone();
        reworded[0].message = "2/3 replicas at generation 3".into();
        assert!(same_verdicts(&a, &reworded));
        assert!(!eq_ignoring_time(&a, &reworded));
        for change in [
            |c: &mut Condition| c.status = "False".into(),
            |c: &mut Condition| c.reason = "Other".into(),
            |c: &mut Condition| c.observed_generation = Some(4),
            |c: &mut Condition| c.type_ = "Stalled".into(),
        ] {
            let mut c = a.clone();
            change(&mut c[0]);
            assert!(!same_verdicts(&a, &c), "{c:?}");
        }
        assert!(!same_verdicts(&a, &a[..1]));
        assert_eq!(status_str(true), "True");
        assert_eq!(status_str(false), "False");
    }
}
