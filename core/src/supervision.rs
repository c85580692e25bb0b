//! Whether a replica's sync loop still does its job, free of I/O.
//!
//! A replica counts for the fleet only while it holds its Lease, and the operator waits for
//! every member's report. A sync loop that died (a panic) or hangs (a pass that never ends)
//! while the Lease renewer goes on would hold every later generation at `Ready=False` for
//! good, and `/readyz` would keep answering 200 for a replica that no longer follows its
//! RouterConfigs. So the loop's health gates both: a replica whose sync is unhealthy is
//! unready at once and stops renewing, and the operator stops counting it when the Lease runs
//! out. Faults then only delay `Ready`.
//!
//! | last event | pass running for | health | replica |
//! |---|---|---|---|
//! | a pass finished (or none started yet) | - | healthy | as its Lease says |
//! | a pass started | less than the bound | healthy | as its Lease says |
//! | a pass started | the bound or more | `SyncStalled` | unready, stops renewing |
//! | the loop panicked | - | `SyncFailed` | unready, stops renewing; the loop restarts |
//!
//! A pass that finishes after a stall or a restart makes the replica healthy again; it then
//! rejoins like a new member (Lease write, quorum check), never straight back to ready.

use std::time::Duration;

use crate::lease::{Mono, Readiness, ReplicaReason};

/// Why a replica's sync loop is not doing its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncProblem {
    /// The loop panicked; it restarts after a pause.
    Failed(String),
    /// One pass has been running for at least the bound.
    Stalled(Duration),
}

impl SyncProblem {
    /// The reason of the RouterReplica's `Ready` condition, and the metric's kind label.
    pub fn reason(&self) -> ReplicaReason {
        match self {
            SyncProblem::Failed(_) => ReplicaReason::SyncFailed,
            SyncProblem::Stalled(_) => ReplicaReason::SyncStalled,
        }
    }

    /// The readiness a replica with this problem has, whatever its Lease says.
    pub fn readiness(&self) -> Readiness {
        let message = match self {
            SyncProblem::Failed(panic) => {
                format!("the sync loop panicked ({panic}); restarting it; not renewing the Lease")
            }
            SyncProblem::Stalled(running) => format!(
                "a sync pass has been running for {}s; not renewing the Lease",
                running.as_secs()
            ),
        };
        Readiness {
            ready: false,
            reason: self.reason(),
            message,
        }
    }
}

/// The health of one replica's sync loop, fed by the loop's own events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncWatch {
    bound: Duration,
    running_since: Option<Mono>,
    failure: Option<String>,
}

impl SyncWatch {
    /// A loop that has not started; one pass may run for less than `bound`.
    pub fn new(bound: Duration) -> Self {
        Self {
            bound,
            running_since: None,
            failure: None,
        }
    }

    /// A pass began at `now`.
    pub fn pass_started(&mut self, now: Mono) {
        self.running_since = Some(now);
    }

    /// A pass ended: the loop works (again).
    pub fn pass_finished(&mut self) {
        self.running_since = None;
        self.failure = None;
    }

    /// The loop panicked with `message`.
    pub fn panicked(&mut self, message: String) {
        self.running_since = None;
        self.failure = Some(message);
    }

    /// What is wrong at `now`, if anything.
    pub fn problem(&self, now: Mono) -> Option<SyncProblem> {
        if let Some(message) = &self.failure {
            return Some(SyncProblem::Failed(message.clone()));
        }
        let running = now.saturating_sub(self.running_since?);
        (running >= self.bound).then_some(SyncProblem::Stalled(running))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Mono {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_pass_running_past_the_bound_is_a_stall_until_it_ends() {
        let mut watch = SyncWatch::new(s(10));
        assert_eq!(watch.problem(s(100)), None, "not started: nothing pending");
        watch.pass_started(s(100));
        assert_eq!(watch.problem(s(109)), None);
        assert_eq!(watch.problem(s(110)), Some(SyncProblem::Stalled(s(10))));
        let readiness = watch.problem(s(112)).unwrap().readiness();
        assert!(!readiness.ready);
        assert_eq!(readiness.reason, ReplicaReason::SyncStalled);
        assert!(readiness.message.contains("12s"), "{}", readiness.message);
        watch.pass_finished();
        assert_eq!(watch.problem(s(200)), None);
    }

    #[test]
    fn a_panic_is_a_failure_until_a_pass_finishes() {
        let mut watch = SyncWatch::new(s(10));
        watch.pass_started(s(1));
        watch.panicked("boom".into());
        let problem = watch.problem(s(2)).unwrap();
        assert_eq!(problem, SyncProblem::Failed("boom".into()));
        assert_eq!(problem.readiness().reason, ReplicaReason::SyncFailed);
        assert!(problem.readiness().message.contains("boom"));
        // The restarted loop starts a pass: still failed until it ends.
        watch.pass_started(s(3));
        assert!(matches!(watch.problem(s(4)), Some(SyncProblem::Failed(_))));
        watch.pass_finished();
        assert_eq!(watch.problem(s(5)), None);
    }
}
