//! The barrier's promise, model-checked over the project's own decision code: the real code
//! passes; each bug of the first design, put back, is caught with a trace.

use lockstep_model::{BarrierModel, Mutation, explain};
use stateright::{Checker, Model};

const PROMISE: &str = "ready means every ready replica serves the generation";

fn check(model: BarrierModel) -> impl Checker<BarrierModel> {
    model.checker().threads(2).spawn_bfs().join()
}

fn report(name: &str, checker: &impl Checker<BarrierModel>) {
    eprintln!(
        "{name}: {} states ({} unique), max depth {}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth()
    );
}

#[test]
fn the_promise_holds_with_crashes_freezes_leaves_and_an_edit() {
    let checker = check(BarrierModel::small());
    report("small", &checker);
    checker.assert_properties();
}

#[test]
fn the_promise_holds_across_an_operator_failover_with_a_write_in_flight() {
    let checker = check(BarrierModel::failover());
    report("failover", &checker);
    checker.assert_properties();
}

#[test]
fn the_promise_holds_for_same_named_replicas_of_two_namespaces() {
    let checker = check(BarrierModel::same_names());
    report("same names", &checker);
    checker.assert_properties();
}

/// Runs `model` with `mutation` and returns the counterexample to the promise, printed.
fn counterexample(model: BarrierModel, mutation: Mutation) -> String {
    let model = BarrierModel { mutation, ..model };
    let checker = model.clone().checker().threads(2).spawn_bfs().join();
    report(&format!("{mutation:?}"), &checker);
    let path = checker.assert_any_discovery(PROMISE);
    let trace = explain(&model, &path.into_actions());
    eprintln!("{mutation:?} breaks the promise:\n{trace}");
    trace
}

#[test]
fn a_renewal_answered_late_that_skips_the_fence_is_caught() {
    let trace = counterexample(BarrierModel::small(), Mutation::LateRenewalKeepsStage);
    assert!(trace.contains("LeaseLands"), "{trace}");
}

#[test]
fn a_join_without_the_quorum_check_is_caught() {
    let trace = counterexample(BarrierModel::small(), Mutation::JoinWithoutQuorumCheck);
    assert!(trace.contains("Edit"), "{trace}");
}

#[test]
fn replica_names_colliding_across_namespaces_is_caught() {
    let trace = counterexample(BarrierModel::same_names(), Mutation::NameOnlyIdentity);
    assert!(trace.contains("READY"), "{trace}");
}

#[test]
fn judging_ready_on_a_stale_lease_cache_is_caught() {
    let trace = counterexample(BarrierModel::small(), Mutation::NoMembershipRelist);
    assert!(trace.contains("Reconcile"), "{trace}");
}
