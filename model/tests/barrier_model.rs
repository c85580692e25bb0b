//! The barrier's promise, model-checked over the project's own decision code: every state of
//! each configuration is explored and the real code keeps every property; each bug of the
//! first design, put back, is caught with a trace. Figures: `e2e/bench/model.sh`.

use lockstep_model::{BarrierModel, Mutation, explain};
use stateright::{Checker, HasDiscoveries, Model};

const PROMISE: &str = "ready means every ready replica serves the generation";

fn exhaust(name: &str, model: BarrierModel) {
    let started = std::time::Instant::now();
    let checker = model.checker().threads(2).spawn_bfs().join();
    eprintln!(
        "{name}: {} states ({} unique), max depth {}, {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64()
    );
    checker.assert_properties();
}

#[test]
fn the_promise_holds_through_joins_crashes_freezes_and_leaves() {
    exhaust("cold start", BarrierModel::small());
}

#[test]
fn the_promise_holds_when_lease_writes_land_late() {
    exhaust("rollout", BarrierModel::rollout());
}

#[test]
fn the_promise_holds_across_an_operator_failover_with_a_write_in_flight() {
    exhaust("failover", BarrierModel::failover());
}

#[test]
fn the_promise_holds_for_same_named_replicas_of_two_namespaces() {
    exhaust("same names", BarrierModel::same_names());
}

/// Runs `model` with `mutation` until the promise breaks and returns the printed trace.
fn counterexample(model: BarrierModel, mutation: Mutation) -> String {
    let model = BarrierModel { mutation, ..model };
    let checker = model
        .clone()
        .checker()
        .threads(2)
        .finish_when(HasDiscoveries::AnyOf([PROMISE].into()))
        .spawn_bfs()
        .join();
    let path = checker.assert_any_discovery(PROMISE);
    let trace = explain(&model, &path.into_actions());
    eprintln!(
        "{mutation:?} breaks the promise after {} states:\n{trace}",
        checker.state_count()
    );
    assert!(trace.contains("the promise breaks here"), "{trace}");
    trace
}

#[test]
fn a_renewal_answered_after_the_lease_ran_out_that_skips_the_fence_is_caught() {
    let trace = counterexample(BarrierModel::rollout(), Mutation::LateRenewalKeepsStage);
    assert!(trace.contains("LeaseLands(0)"), "{trace}");
}

#[test]
fn a_join_without_the_quorum_check_is_caught() {
    let trace = counterexample(BarrierModel::rollout(), Mutation::JoinWithoutQuorumCheck);
    assert!(trace.contains("Edit"), "{trace}");
}

#[test]
fn replica_names_colliding_across_namespaces_is_caught() {
    let trace = counterexample(BarrierModel::same_names(), Mutation::NameOnlyIdentity);
    assert!(trace.contains("west/proxy-0: up serves 1"), "{trace}");
}

#[test]
fn judging_ready_on_a_stale_lease_cache_is_caught() {
    let trace = counterexample(BarrierModel::rollout(), Mutation::NoMembershipRelist);
    assert!(trace.contains("Reconcile"), "{trace}");
}
