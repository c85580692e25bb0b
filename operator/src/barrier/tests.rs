use super::*;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use lockstep_crds::{Rejection, ReplicaStatus, RouterConfigStatus};

const DIGEST: &str = "sha256:expected";

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn mk_rc(generation: i64, status: RouterConfigStatus) -> RouterConfig {
    let mut rc: RouterConfig = serde_json::from_value(json!({
        "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
        "metadata": {"name": "web", "namespace": "ns", "generation": generation},
        "spec": {"fleet": "blue", "rules": [{"host": "a.test", "paths": [{"path": "/", "backend": {"url": "http://127.0.0.1:1"}}]}]}
    }))
    .unwrap();
    rc.status = Some(status);
    rc
}

fn mk_entry(name: &str, generation: i64, digest: &str) -> ReplicaStatus {
    ReplicaStatus {
        name: name.into(),
        observed_generation: generation,
        config_digest: digest.into(),
        applied_at: Some(t(0).to_string()),
        rejected: None,
    }
}

fn mk_rejecting(name: &str, serving: i64, rejected: i64, message: &str) -> ReplicaStatus {
    ReplicaStatus {
        rejected: Some(Rejection {
            generation: rejected,
            message: message.into(),
        }),
        ..mk_entry(name, serving, DIGEST)
    }
}

fn mk_status(entries: Vec<ReplicaStatus>) -> RouterConfigStatus {
    RouterConfigStatus {
        replica_status: entries,
        ..Default::default()
    }
}

/// A proxy Lease renewed at `renewed` for `seconds`.
fn mk_lease(replica: &str, renewed: i64, seconds: i32) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(lockstep_crds::proxy_lease_name(replica)),
            namespace: Some("proxies".into()),
            labels: Some([(lockstep_crds::FLEET_LABEL.to_owned(), "blue".to_owned())].into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(replica.into()),
            lease_duration_seconds: Some(seconds),
            renew_time: Some(MicroTime(t(renewed))),
            ..Default::default()
        }),
    }
}

fn settings() -> Settings {
    Settings {
        stall_timeout: Duration::from_secs(60),
        orphan_grace: Duration::from_secs(30),
        progress_interval: Duration::from_secs(1),
    }
}

fn decide_with(
    rc: &RouterConfig,
    leases: &[Lease],
    verdict: &Verdict,
    tls: Option<&str>,
    now: i64,
) -> Outcome {
    decide(Input {
        rc,
        leases,
        verdict,
        tls_problem: tls,
        expected_digest: DIGEST,
        now: t(now),
        settings: settings(),
    })
}

fn decide_at(rc: &RouterConfig, leases: &[Lease], now: i64) -> Outcome {
    decide_with(rc, leases, &Verdict::Accepted, None, now)
}

/// The object as it is after the operator wrote `out` (the replicas' entries unchanged).
fn written(rc: &RouterConfig, out: &Outcome) -> RouterConfig {
    let mut next = rc.clone();
    let status = next.status.get_or_insert_with(Default::default);
    status.observed_generation = Some(out.status.observed_generation);
    status.conditions = out.status.conditions.clone();
    status.synced_replicas = Some(out.status.synced_replicas);
    status.replicas = Some(out.status.replicas);
    status.synced = Some(out.status.synced.clone());
    next
}

fn cond<'a>(out: &'a Outcome, type_: &str) -> &'a Condition {
    find(&out.status.conditions, type_).unwrap_or_else(|| panic!("{type_} missing"))
}

fn assert_cond(out: &Outcome, type_: &str, status: &str, reason: &str) {
    let c = cond(out, type_);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        (status, reason),
        "{type_}: {}",
        c.message
    );
}

#[test]
fn every_live_replica_at_the_generation_and_digest_makes_ready() {
    let rc = mk_rc(
        7,
        mk_status(vec![mk_entry("p0", 7, DIGEST), mk_entry("p1", 7, DIGEST)]),
    );
    let leases = [mk_lease("p0", 0, 10), mk_lease("p1", 2, 10)];
    let out = decide_at(&rc, &leases, 1);
    assert!(out.ready);
    assert_cond(&out, "Accepted", "True", "Valid");
    assert_cond(&out, "Ready", "True", "AllReplicasSynced");
    assert_eq!(cond(&out, "Ready").message, "2/2 replicas serve generation 7");
    assert_cond(&out, "Reconciling", "False", "Idle");
    assert_cond(&out, "Stalled", "False", "Idle");
    assert!(
        out.status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(7))
    );
    assert_eq!(
        (
            out.status.observed_generation,
            out.status.synced_replicas,
            out.status.replicas
        ),
        (7, 2, 2)
    );
    assert_eq!(out.status.synced, "2/2");
    assert!(out.changed && out.prune.is_empty());
    assert_eq!(out.recheck_at, Some(t(10)), "the first Lease expiry");
    assert_eq!(out.generation, 7);
}

#[test]
fn lagging_replicas_hold_ready_back_and_are_named() {
    let rc = mk_rc(
        8,
        mk_status(vec![
            mk_entry("p0", 8, DIGEST),
            mk_entry("p1", 7, DIGEST),
            mk_entry("p2", 8, "sha256:old-cert"),
        ]),
    );
    let leases = ["p0", "p1", "p2", "p3"].map(|n| mk_lease(n, 0, 10));
    let out = decide_at(&rc, &leases, 1);
    assert!(!out.ready);
    assert_cond(&out, "Ready", "False", "RolloutInProgress");
    assert_eq!(cond(&out, "Ready").message, "1/4 replicas serve generation 8");
    assert_cond(&out, "Reconciling", "True", "RolloutInProgress");
    assert_eq!(
        cond(&out, "Reconciling").message,
        "waiting for p1 (at generation 7), p2 (generation 8 with another digest), p3 (no report)"
    );
    assert_cond(&out, "Stalled", "False", "Idle");
    assert_eq!(out.status.synced, "1/4");
    assert_eq!(
        out.recheck_at,
        Some(t(10)),
        "Lease expiry comes before the stall deadline"
    );
}

#[test]
fn a_fleet_without_live_replicas_is_not_ready_and_in_progress_for_kstatus() {
    let rc = mk_rc(1, mk_status(vec![]));
    let out = decide_at(&rc, &[], 0);
    assert_cond(&out, "Ready", "False", "NoReplicas");
    assert_eq!(cond(&out, "Ready").message, "no live replica in fleet blue");
    // kstatus reads Reconciling/Stalled, not Ready: without Reconciling=True it says Current.
    assert_cond(&out, "Reconciling", "True", "NoReplicas");
    assert_cond(&out, "Stalled", "False", "Idle");
    assert_eq!(
        out.status.observed_generation, 1,
        "observedGeneration from the first reconcile"
    );
    assert_eq!(out.status.synced, "0/0");
    assert_eq!(out.recheck_at, None, "nothing to expire, nothing to stall");

    // Waiting for a fleet never stalls, however long.
    let later = decide_at(&written(&rc, &out), &[], 3600);
    assert_cond(&later, "Stalled", "False", "Idle");
    assert!(!later.changed);
}

#[test]
fn an_expired_lease_excludes_its_replica_and_its_entry_is_pruned() {
    let rc = mk_rc(
        2,
        mk_status(vec![mk_entry("dead", 1, DIGEST), mk_entry("p0", 2, DIGEST)]),
    );
    let leases = [mk_lease("p0", 0, 100), mk_lease("dead", 0, 3)];
    let before = decide_at(&rc, &leases, 2);
    assert!(!before.ready, "dead still holds a fresh Lease");
    assert!(before.prune.is_empty());
    assert_eq!(before.recheck_at, Some(t(3)), "wake up when dead's Lease expires");

    // At renewTime + leaseDurationSeconds the Lease no longer counts.
    let after = decide_at(&rc, &leases, 3);
    assert!(after.ready);
    assert_eq!(after.status.synced, "1/1");
    assert_eq!(
        after.prune,
        vec![Prune {
            index: 0,
            name: "dead".into()
        }]
    );
}

#[test]
fn an_entry_without_any_lease_is_a_joining_replica_until_its_grace_ends() {
    // A proxy reports before it takes its Lease; pruning that entry would make it re-report
    // in a loop until it joins.
    let mut joining = mk_entry("joining", 2, DIGEST);
    joining.applied_at = Some(t(10).to_string());
    let rc = mk_rc(2, mk_status(vec![mk_entry("p0", 2, DIGEST), joining]));
    let leases = [mk_lease("p0", 0, 1000)];
    let out = decide_at(&rc, &leases, 11);
    assert!(out.prune.is_empty());
    assert_eq!(out.status.synced, "1/1", "not a member until it holds a Lease");
    assert_eq!(out.recheck_at, Some(t(40)), "the end of its grace");
    let late = decide_at(&rc, &leases, 40);
    assert_eq!(
        late.prune.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["joining"]
    );

    // Without appliedAt there is no telling its age: garbage.
    let mut undated = mk_entry("undated", 1, DIGEST);
    undated.applied_at = None;
    let rc = mk_rc(2, mk_status(vec![undated]));
    assert_eq!(decide_at(&rc, &leases, 0).prune.len(), 1);
}

#[test]
fn a_rejected_generation_is_never_counted_as_applied() {
    let rc = mk_rc(
        8,
        mk_status(vec![
            mk_entry("p0", 8, DIGEST),
            // A replica that rejects keeps its old generation; a buggy one might even claim
            // the new generation: the rejection still wins.
            mk_rejecting("p1", 7, 8, "spec.rules[0].tls.secretName: certificate expired"),
            mk_rejecting("p2", 8, 8, "spec.rules[0].tls.secretName: key does not match"),
        ]),
    );
    let leases = ["p0", "p1", "p2"].map(|n| mk_lease(n, 0, 1000));
    let out = decide_at(&rc, &leases, 0);
    assert!(!out.ready);
    assert_eq!(out.status.synced, "1/3");
    assert_cond(&out, "Ready", "False", "Rejected");
    assert_eq!(
        cond(&out, "Ready").message,
        "1/3 replicas serve generation 8; rejected by p1: spec.rules[0].tls.secretName: certificate expired, \
         rejected by p2: spec.rules[0].tls.secretName: key does not match"
    );
    // Possibly transient (a Secret fixed a moment later): in progress until the stall timeout.
    assert_cond(&out, "Reconciling", "True", "Rejected");
    assert_cond(&out, "Stalled", "False", "Idle");
    let stalled = decide_at(&written(&rc, &out), &leases, 60);
    assert_cond(&stalled, "Stalled", "True", "RolloutStalled");
    assert_cond(&stalled, "Ready", "False", "Rejected");

    // A rejection of an older generation is history once the replica serves this one.
    let rc = mk_rc(9, mk_status(vec![mk_rejecting("p0", 9, 8, "old news")]));
    assert!(decide_at(&rc, &leases[..1], 0).ready);
}

#[test]
fn a_spec_that_is_not_accepted_is_not_ready_and_stalled_at_once() {
    let rc = mk_rc(3, mk_status(vec![mk_entry("p0", 3, DIGEST)]));
    let leases = [mk_lease("p0", 0, 1000)];
    let message = "spec.rules[0].paths[0]: host a.test Prefix / is already routed by RouterConfig ns/old (spec.rules[0].paths[0]), which is older";
    let out = decide_with(&rc, &leases, &Verdict::Conflict(message.into()), None, 0);
    assert!(!out.ready, "even though every replica reports generation 3");
    assert_cond(&out, "Accepted", "False", "Conflict");
    assert_eq!(cond(&out, "Accepted").message, message);
    assert_cond(&out, "Ready", "False", "NotAccepted");
    assert!(cond(&out, "Ready").message.contains("ns/old"));
    assert_cond(&out, "Reconciling", "False", "NotAccepted");
    assert_cond(&out, "Stalled", "True", "NotAccepted");

    let invalid = decide_with(
        &rc,
        &leases,
        &Verdict::Invalid("spec.rules[0].host: must be lower case".into()),
        None,
        0,
    );
    assert_cond(&invalid, "Accepted", "False", "Invalid");
    assert_eq!(
        cond(&invalid, "Accepted").message,
        "spec.rules[0].host: must be lower case"
    );

    let tls = decide_with(
        &rc,
        &leases,
        &Verdict::Accepted,
        Some("spec.rules[0].tls.secretName: kubernetes.io/tls secret ns/app-tls not found"),
        0,
    );
    assert_cond(&tls, "Accepted", "False", "InvalidTLS");
    assert_cond(&tls, "Ready", "False", "NotAccepted");
}

#[test]
fn a_rollout_lagging_past_the_stall_timeout_is_stalled_naming_the_replicas() {
    let leases = ["p0", "slow"].map(|n| mk_lease(n, 0, 100_000));
    let rc = mk_rc(
        2,
        mk_status(vec![mk_entry("p0", 2, DIGEST), mk_entry("slow", 1, DIGEST)]),
    );
    let first = decide_at(&rc, &leases, 0);
    assert_cond(&first, "Stalled", "False", "Idle");
    assert_eq!(first.recheck_at, Some(t(60)), "the stall deadline");

    // A new leader reads the start of the rollout from the stored status.
    let stored = written(&rc, &first);
    let before = decide_at(&stored, &leases, 59);
    assert_cond(&before, "Stalled", "False", "Idle");
    assert!(!before.changed);
    let at = decide_at(&stored, &leases, 60);
    assert_cond(&at, "Stalled", "True", "RolloutStalled");
    assert_eq!(
        cond(&at, "Stalled").message,
        "slow has not served generation 2 within the stall timeout (60s)"
    );
    // Exactly one of Reconciling/Stalled is True, so kstatus says Failed whatever the order.
    assert_cond(&at, "Reconciling", "False", "RolloutStalled");
    assert_cond(&at, "Ready", "False", "RolloutInProgress");
    assert!(
        at.transitions
            .iter()
            .any(|e| e.warning && e.reason == "RolloutStalled")
    );

    // Stalled sticks while the rollout lags...
    let stalled = written(&rc, &at);
    let still = decide_at(&stalled, &leases, 500);
    assert_cond(&still, "Stalled", "True", "RolloutStalled");
    assert!(!still.changed && still.transitions.is_empty());

    // ...and clears once the laggard catches up.
    let mut caught_up = stalled.clone();
    caught_up.status.as_mut().unwrap().replica_status[1] = mk_entry("slow", 2, DIGEST);
    let done = decide_at(&caught_up, &leases, 501);
    assert!(done.ready);
    assert_cond(&done, "Stalled", "False", "Idle");
    assert_cond(&done, "Reconciling", "False", "Idle");
}

#[test]
fn a_new_generation_restarts_the_stall_clock() {
    let leases = [mk_lease("p0", 0, 100_000)];
    let rc = mk_rc(2, mk_status(vec![mk_entry("p0", 1, DIGEST)]));
    let g2 = decide_at(&rc, &leases, 0);
    let stalled = decide_at(&written(&rc, &g2), &leases, 100);
    assert_cond(&stalled, "Stalled", "True", "RolloutStalled");

    // Generation 3 is pushed (a fix): a fresh rollout, measured from now.
    let mut rc3 = written(&rc, &stalled);
    rc3.metadata.generation = Some(3);
    let g3 = decide_at(&rc3, &leases, 200);
    assert_cond(&g3, "Stalled", "False", "Idle");
    assert_cond(&g3, "Reconciling", "True", "RolloutInProgress");
    assert_eq!(cond(&g3, "Reconciling").last_transition_time.0, t(200));
    assert_eq!(g3.recheck_at, Some(t(260)));

    // Even when Reconciling was already True for generation 2 (no stall yet).
    let lagging = written(&rc, &g2);
    let mut rc3 = lagging.clone();
    rc3.metadata.generation = Some(3);
    let g3 = decide_at(&rc3, &leases, 50);
    assert_eq!(cond(&g3, "Reconciling").last_transition_time.0, t(50));
    assert_cond(
        &decide_at(&written(&rc3, &g3), &leases, 100),
        "Stalled",
        "False",
        "Idle",
    );
}

#[test]
fn replicas_arriving_after_no_replicas_start_the_stall_clock() {
    let rc = mk_rc(1, mk_status(vec![]));
    let empty = decide_at(&rc, &[], 0);
    let mut joined = written(&rc, &empty);
    joined.status.as_mut().unwrap().replica_status = vec![mk_entry("p0", 0, "")];
    let leases = [mk_lease("p0", 1000, 100_000)];
    let out = decide_at(&joined, &leases, 1000);
    assert_cond(&out, "Reconciling", "True", "RolloutInProgress");
    assert_cond(&out, "Stalled", "False", "Idle");
    assert_eq!(cond(&out, "Reconciling").last_transition_time.0, t(1000));
}

#[test]
fn a_stale_ready_true_never_carries_the_new_generation() {
    let leases = [mk_lease("p0", 0, 1000)];
    let v1 = mk_rc(1, mk_status(vec![mk_entry("p0", 1, DIGEST)]));
    let out1 = decide_at(&v1, &leases, 0);
    assert!(out1.ready);
    let mut v2 = written(&v1, &out1);
    v2.metadata.generation = Some(2);
    let out2 = decide_at(&v2, &leases, 1);
    let ready = cond(&out2, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.observed_generation),
        ("False", Some(2))
    );
    assert_eq!(ready.last_transition_time.0, t(1));
    assert!(out2.changed);
    assert_eq!(out2.status.observed_generation, 2);
}

#[test]
fn more_replicas_at_the_generation_is_progress_and_the_last_one_a_verdict() {
    let leases = ["p0", "p1", "p2"].map(|n| mk_lease(n, 0, 10));
    // Generation 2 is new: a verdict (Ready turns False for it).
    let before = mk_rc(
        2,
        mk_status(["p0", "p1", "p2"].map(|n| mk_entry(n, 1, DIGEST)).into()),
    );
    let start = decide_at(&before, &leases, 1);
    assert!(start.changed && !start.progress_only);
    // One replica reports: only the counts and messages move.
    let one = mk_rc(
        2,
        mk_status(vec![
            mk_entry("p0", 2, DIGEST),
            mk_entry("p1", 1, DIGEST),
            mk_entry("p2", 1, DIGEST),
        ]),
    );
    let one = RouterConfig {
        status: written(&before, &start).status.map(|s| RouterConfigStatus {
            replica_status: one.status.clone().unwrap().replica_status,
            ..s
        }),
        ..one
    };
    let progress = decide_at(&one, &leases, 1);
    assert!(progress.changed && progress.progress_only, "{progress:?}");
    assert_eq!(progress.status.synced, "1/3");
    // The last one: Ready turns True, a verdict written at once.
    let mut all = written(&one, &progress);
    for entry in &mut all.status.as_mut().unwrap().replica_status {
        entry.observed_generation = 2;
    }
    let done = decide_at(&all, &leases, 1);
    assert!(done.ready && done.changed && !done.progress_only);
    // A rejection changes Ready's reason: a verdict too.
    let mut rejecting = written(&one, &progress);
    rejecting.status.as_mut().unwrap().replica_status[1] = mk_rejecting("p1", 1, 2, "bad");
    let rejected = decide_at(&rejecting, &leases, 1);
    assert!(rejected.changed && !rejected.progress_only, "{rejected:?}");
    // A member leaving is a verdict even when the rest of the counts would be progress.
    let left = decide_at(&written(&one, &progress), &leases[..2], 1);
    assert!(left.changed && !left.progress_only);
}

#[test]
fn progress_writes_wait_out_the_interval_since_the_last_write() {
    let interval = Duration::from_secs(1);
    let now = Instant::now();
    assert_eq!(
        progress_wait(None, now, interval),
        None,
        "never written: write now"
    );
    let last = now - Duration::from_millis(300);
    assert_eq!(
        progress_wait(Some(last), now, interval),
        Some(Duration::from_millis(700))
    );
    assert_eq!(progress_wait(Some(now - interval), now, interval), None);
    assert_eq!(
        progress_wait(Some(now - Duration::from_secs(5)), now, interval),
        None
    );
}

#[test]
fn only_time_passing_is_not_a_change() {
    let leases = [mk_lease("p0", 0, 1000)];
    let rc = mk_rc(1, mk_status(vec![mk_entry("p0", 1, DIGEST)]));
    let first = decide_at(&rc, &leases, 0);
    let again = decide_at(&written(&rc, &first), &leases, 5);
    assert!(!again.changed);
    assert!(again.transitions.is_empty());
    assert_eq!(
        again.status.conditions, first.status.conditions,
        "transition times are kept"
    );
    // A replica dropping out is a change even though Ready stays True.
    let fewer = decide_at(&written(&rc, &first), &leases[..0], 5);
    assert!(fewer.changed);
}

#[test]
fn transitions_announce_ready_acceptance_and_stalls_once() {
    let leases = [mk_lease("p0", 0, 100_000)];
    let rc = mk_rc(1, mk_status(vec![mk_entry("p0", 1, DIGEST)]));
    let ready = decide_at(&rc, &leases, 0);
    assert_eq!(
        ready.transitions,
        vec![Transition {
            warning: false,
            reason: "AllReplicasSynced",
            note: "1/1 replicas serve generation 1".into()
        }]
    );
    let mut next = written(&rc, &ready);
    next.metadata.generation = Some(2);
    let rolling = decide_at(&next, &leases, 1);
    assert_eq!(
        rolling.transitions.iter().map(|e| e.reason).collect::<Vec<_>>(),
        ["RolloutInProgress"]
    );
    let conflict = decide_with(&next, &leases, &Verdict::Conflict("taken".into()), None, 1);
    assert_eq!(
        conflict
            .transitions
            .iter()
            .map(|e| (e.warning, e.reason))
            .collect::<Vec<_>>(),
        [(false, "NotAccepted"), (true, "Conflict")],
        "no separate Stalled event for a spec that is not accepted"
    );
    let again = decide_with(
        &written(&next, &conflict),
        &leases,
        &Verdict::Conflict("taken".into()),
        None,
        2,
    );
    assert!(again.transitions.is_empty());
}

#[test]
fn the_operator_patch_never_touches_replica_entries() {
    let rc = mk_rc(1, mk_status(vec![mk_entry("p0", 1, DIGEST)]));
    let out = decide_at(&rc, &[mk_lease("p0", 0, 10)], 0);
    let patch = out.status.apply_patch();
    assert_eq!(patch["apiVersion"], "lockstep.dev/v1alpha1");
    assert_eq!(patch["kind"], "RouterConfig");
    let status = patch["status"].as_object().unwrap();
    let mut keys: Vec<&str> = status.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "conditions",
            "observedGeneration",
            "replicas",
            "synced",
            "syncedReplicas"
        ]
    );
    assert_eq!(status["synced"], "1/1");
}

#[test]
fn prune_patch_tests_each_name_and_removes_highest_index_first() {
    let patch = prune_patch(&[
        Prune {
            index: 1,
            name: "a".into(),
        },
        Prune {
            index: 3,
            name: "b".into(),
        },
    ]);
    assert_eq!(
        patch,
        json!([
            {"op": "test", "path": "/status/replicaStatus/3/name", "value": "b"},
            {"op": "remove", "path": "/status/replicaStatus/3"},
            {"op": "test", "path": "/status/replicaStatus/1/name", "value": "a"},
            {"op": "remove", "path": "/status/replicaStatus/1"},
        ])
    );
    assert!(serde_json::from_value::<json_patch::Patch>(patch).is_ok());
}

#[test]
fn leases_name_their_replica_and_expire_after_their_duration() {
    let lease = mk_lease("p0", 0, 10);
    assert_eq!(lease_replica(&lease).as_deref(), Some("p0"));
    assert_eq!(lease_expiry(&lease), Some(t(10)));
    assert!(lease_held_by(&lease, "p0", t(9)));
    assert!(!lease_held_by(&lease, "p0", t(10)));
    assert!(!lease_held_by(&lease, "p1", t(0)));

    // Released (no holder): named after the Lease, never live.
    let mut released = mk_lease("p1", 0, 10);
    released.spec.as_mut().unwrap().holder_identity = None;
    assert_eq!(lease_replica(&released).as_deref(), Some("p1"));
    assert_eq!(lease_expiry(&released), None);
    let m = membership(&[lease.clone(), released], t(1));
    assert_eq!(m.live.keys().collect::<Vec<_>>(), ["p0"]);
    assert_eq!(m.known.iter().collect::<Vec<_>>(), ["p0", "p1"]);

    // Never renewed: acquireTime counts.
    let mut acquired = mk_lease("p2", 0, 10);
    let spec = acquired.spec.as_mut().unwrap();
    spec.acquire_time = spec.renew_time.take();
    assert_eq!(lease_expiry(&acquired), Some(t(10)));
}

#[test]
fn long_name_lists_are_cut() {
    let names: Vec<String> = (0..12).map(|i| format!("p{i:02}")).collect();
    let leases: Vec<Lease> = names.iter().map(|n| mk_lease(n, 0, 1000)).collect();
    let out = decide_at(&mk_rc(1, mk_status(vec![])), &leases, 0);
    let message = &cond(&out, "Reconciling").message;
    assert!(message.ends_with("p09 (no report), and 2 more"), "{message}");
}
