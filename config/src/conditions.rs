//! Condition helpers with `meta.SetStatusCondition` semantics.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use jiff::Timestamp;

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
    a.len() == b.len()
        && a.iter().all(|x| {
            b.iter().any(|y| {
                x.type_ == y.type_
                    && x.status == y.status
                    && x.reason == y.reason
                    && x.message == y.message
                    && x.observed_generation == y.observed_generation
            })
        })
}
