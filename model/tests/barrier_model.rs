//! The barrier's promise, model-checked over the project's own decision code: every state of
//! each configuration is explored and the real code keeps every property; each bug of the
//! first design, put back, is caught with a trace. Figures: `e2e/bench/model.sh`.

use lockstep_model::{
    BarrierModel, Mutation, explain,
    objects::{FleetModel, explain_fleet, property},
};
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

#[test]
fn trusting_the_rollouts_list_after_a_listed_lease_ran_out_is_caught() {
    let trace = counterexample(BarrierModel::rollout(), Mutation::RolloutListTrustedAfterExpiry);
    assert!(trace.contains("Reconcile"), "{trace}");
}

// The promise per object across the RouterConfigs of a fleet (`lockstep_model::objects`):
// delete and re-create, TLS certificates, conflicts and takeovers, a widened replica, a dead
// sync loop, leave and garbage.

fn exhaust_fleet(name: &str, model: FleetModel) {
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
fn the_promise_holds_per_uid_across_delete_and_recreate() {
    exhaust_fleet("recreate", FleetModel::recreate());
}

#[test]
fn the_promise_holds_with_certificates_that_cannot_be_served() {
    exhaust_fleet("tls", FleetModel::tls());
}

#[test]
fn the_promise_holds_when_an_older_object_takes_a_match_and_a_tls_host() {
    exhaust_fleet("takeover", FleetModel::takeover());
}

#[test]
fn the_promise_holds_when_an_older_object_takes_the_match_of_one_no_replica_serves_yet() {
    exhaust_fleet("takeover-unserved", FleetModel::takeover_unserved());
}

#[test]
fn the_promise_holds_when_a_replica_restarts_with_wider_namespaces() {
    exhaust_fleet("widen", FleetModel::widen());
}

#[test]
fn the_promise_holds_through_a_dead_sync_loop_a_leave_and_a_lost_replica() {
    exhaust_fleet("faults", FleetModel::faults());
}

/// Runs `model` with `mutation` until `property` fails and returns the printed trace.
fn fleet_counterexample(model: FleetModel, mutation: Mutation, property: &'static str) -> String {
    let model = FleetModel { mutation, ..model };
    let checker = model
        .clone()
        .checker()
        .threads(2)
        .finish_when(HasDiscoveries::AnyOf([property].into()))
        .spawn_bfs()
        .join();
    let path = checker.assert_any_discovery(property);
    let trace = explain_fleet(&model, &path.into_actions());
    eprintln!(
        "{mutation:?} breaks \"{property}\" after {} states:\n{trace}",
        checker.state_count()
    );
    trace
}

#[test]
fn identity_by_name_and_generation_across_a_recreate_is_caught() {
    let trace = fleet_counterexample(
        FleetModel::recreate(),
        Mutation::NameGenerationIdentity,
        property::PROMISE,
    );
    assert!(trace.contains("Write(Recreate(0"), "{trace}");
    // The old incarnation's Ready=True and lastAccepted land on the new one.
    assert!(
        trace.contains(
            "web uid 2 generation 1 Ready for Some(1) Accepted Some(\"True\") lastAccepted Some((1, 1))"
        ),
        "{trace}"
    );
}

#[test]
fn a_certificate_taken_from_a_rejected_current_spec_is_caught() {
    let trace = fleet_counterexample(
        FleetModel::tls(),
        Mutation::CertificateFromCurrentSpec,
        property::CERTIFICATE,
    );
    assert!(trace.contains("(unusable)"), "{trace}");
    assert!(trace.contains("serves [web uid 1 at 1 (rejects 2)]"), "{trace}");
}

#[test]
fn a_tls_host_certificate_taken_by_the_newer_object_is_caught() {
    let trace = fleet_counterexample(
        FleetModel::takeover(),
        Mutation::CertificateFromCurrentSpec,
        property::PROMISE,
    );
    assert!(trace.contains("shop.example cert of new"), "{trace}");
    assert!(
        trace.contains("old uid 1 generation 2 Ready for Some(2)"),
        "{trace}"
    );
}

#[test]
fn membership_judged_on_a_stale_replica_spec_is_caught() {
    let trace = fleet_counterexample(FleetModel::widen(), Mutation::StaleReplicaSpec, property::PROMISE);
    assert!(trace.contains("Widen(1)"), "{trace}");
    assert!(
        trace.contains("p1: up Member READY lease Some(Live) serves [web uid 1 at 1]"),
        "{trace}"
    );
}

#[test]
fn an_unsupervised_sync_loop_that_holds_ready_back_forever_is_caught() {
    let trace = fleet_counterexample(
        FleetModel::faults(),
        Mutation::UnsupervisedSyncLoop,
        property::SETTLED,
    );
    assert!(trace.contains("SyncDies("), "{trace}");
    assert!(trace.contains("sync dead Member READY"), "{trace}");
}

#[test]
fn a_write_that_recreates_the_lease_after_leave_is_caught() {
    let trace = fleet_counterexample(
        FleetModel::faults(),
        Mutation::LeaveRecreatesLease,
        property::LEAVE,
    );
    assert!(trace.contains("Leave("), "{trace}");
    assert!(trace.contains("StrayWriteLands("), "{trace}");
}

#[test]
fn rejudging_only_the_edited_object_after_a_takeover_is_caught() {
    // Where replicas serve `new`, their reports of the lost match re-judge it anyway; where
    // none does yet, only the RouterConfig watch can.
    let trace = fleet_counterexample(
        FleetModel::takeover_unserved(),
        Mutation::EditedObjectOnlyRejudged,
        property::SETTLED,
    );
    assert!(
        trace.contains("old uid 1 generation 2 Ready for Some(2)"),
        "{trace}"
    );
    assert!(
        trace.contains("new uid 2 generation 1 Ready for None Accepted Some(\"True\")"),
        "{trace}"
    );
}

#[test]
fn the_operator_and_the_replicas_judging_tls_apart_is_caught() {
    let trace = fleet_counterexample(
        FleetModel::tls(),
        Mutation::OperatorJudgesTlsApart,
        property::CERTIFICATE,
    );
    assert!(trace.contains("lastAccepted Some((1, 2))"), "{trace}");
    assert!(
        trace.contains("web.example cert of web uid 1 at 2 (unusable)"),
        "{trace}"
    );
}

#[test]
fn a_dead_replica_left_in_kubectl_get_rrep_is_caught() {
    let trace = fleet_counterexample(
        FleetModel::faults(),
        Mutation::NoReplicaGarbageCollection,
        property::GARBAGE,
    );
    assert!(trace.contains("Crash("), "{trace}");
}
