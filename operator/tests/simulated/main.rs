//! The operator against a real kube-apiserver, with proxy replicas simulated
//! (`lockstep_e2e::simulated`), in one test binary on one control plane
//! (`ControlPlane::shared`). Each topic is a module:
//! - [`barrier`]: Ready, `kubectl wait`, Lease expiry, conflicts, reports and metrics;
//! - [`failover`]: leader election, a killed leader's rollout finished by the standby;
//! - [`stall`]: `Stalled` after a short `--stall-timeout`.
//!
//! Every operator judges every namespace, so two modules' operators running at once would
//! both write the same RouterConfigs (and the failover test would pass on another module's
//! operator). The modules therefore take turns ([`take_turn`]): the tests of one module run in
//! parallel with each other and with that module's operators, never beside another module's.
//! Each module's operators hold their leader Lease in a namespace of their own.

mod barrier;
mod failover;
mod stall;

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use lockstep_e2e::{ControlPlane, fleet::Operator, simulated::start_operator};

/// The module whose turn it is: how many of its tests run, and its operator.
struct Active {
    module: &'static str,
    tests: usize,
    operator: Option<Arc<Operator>>,
}

static ACTIVE: Mutex<Option<Active>> = Mutex::new(None);
static TURN_ENDED: Condvar = Condvar::new();

/// A test's share of its module's turn; the turn ends (and the module's operator stops) when
/// the module's last running test drops its share.
pub struct Turn {
    operator: Option<Arc<Operator>>,
}

impl Turn {
    /// The operator of this module's turn.
    pub fn operator(&self) -> &Operator {
        self.operator
            .as_deref()
            .expect("this module's turn has an operator")
    }
}

/// Waits until no other module's test runs, then joins `module`'s turn. The turn's first test
/// starts the module's operator when `operator_flags` are given: the real binary with those
/// flags and its leader Lease in namespace `simulated-<module>`.
pub fn take_turn(module: &'static str, operator_flags: Option<&[&str]>) -> Turn {
    let mut active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        match active.as_mut() {
            None => {
                let operator = operator_flags.map(|flags| {
                    let cp = ControlPlane::shared();
                    let lease_namespace = format!("simulated-{module}");
                    cp.ensure_namespace(&lease_namespace)
                        .expect("the operator's Lease namespace");
                    let mut flags = flags.to_vec();
                    flags.extend(["--lease-namespace", lease_namespace.as_str()]);
                    Arc::new(start_operator(cp, &format!("-{module}"), &flags))
                });
                *active = Some(Active {
                    module,
                    tests: 1,
                    operator: operator.clone(),
                });
                return Turn { operator };
            }
            Some(turn) if turn.module == module => {
                turn.tests += 1;
                return Turn {
                    operator: turn.operator.clone(),
                };
            }
            Some(_) => active = TURN_ENDED.wait(active).unwrap_or_else(PoisonError::into_inner),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // Drop this share of the operator first: the last share stops the process below,
        // before another module's turn can begin.
        self.operator = None;
        let mut active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
        let turn = active.as_mut().expect("a turn is running");
        turn.tests -= 1;
        if turn.tests == 0 {
            drop(active.take());
            TURN_ENDED.notify_all();
        }
    }
}
