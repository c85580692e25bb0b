//! Scenario tests of the barrier decision, one per row of the module's phase table and one
//! per transition that matters to kstatus, kubectl wait and Events. (Over 600 lines: the
//! scenarios share the `World` builder above them.)

use super::*;
use lockstep_crds::Rejection;

const DIGEST: &str = "sha256:expected";
/// metadata.uid of the RouterConfig the reports are about.
const UID: &str = "uid-of-web";

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn mk_report(generation: i64, digest: &str) -> ServedRouterConfig {
    ServedRouterConfig {
        namespace: "ns".into(),
        name: "web".into(),
        uid: UID.into(),
        observed_generation: generation,
        config_digest: digest.into(),
        applied_at: Some(t(0).to_string()),
        rejected: None,
    }
}

fn mk_rejecting(serving: i64, rejected: i64, message: &str) -> ServedRouterConfig {
    ServedRouterConfig {
        rejected: Some(Rejection {
            generation: rejected,
            message: message.into(),
        }),
        ..mk_report(serving, DIGEST)
    }
}

/// One RouterConfig as the decision sees it: its generation, its stored status and the live
/// members with their reports.
#[derive(Clone)]
struct World {
    generation: i64,
    status: RouterConfigStatus,
    members: Vec<(String, Option<ServedRouterConfig>)>,
}

fn mk_world(generation: i64, members: &[(&str, Option<ServedRouterConfig>)]) -> World {
    World {
        generation,
        status: RouterConfigStatus::default(),
        members: members.iter().map(|(n, r)| (n.to_string(), r.clone())).collect(),
    }
}

fn settings() -> Settings {
    Settings {
        stall_timeout: Duration::from_secs(60),
        progress_interval: Duration::from_secs(1),
    }
}

impl World {
    fn decide_with(&self, verdict: &Verdict, tls: Option<&TlsProblem>, now: i64) -> Outcome {
        let members: Vec<Member<'_>> = self
            .members
            .iter()
            .map(|(name, report)| Member {
                id: ReplicaId::new("proxies", name.as_str()),
                report: report.as_ref(),
            })
            .collect();
        decide(Input {
            generation: self.generation,
            fleet: "blue",
            current: &self.status,
            members: &members,
            verdict,
            tls_problem: tls,
            expected_digest: DIGEST,
            last_accepted: None,
            now: t(now),
            settings: settings(),
        })
    }

    fn decide_at(&self, now: i64) -> Outcome {
        self.decide_with(&Verdict::Accepted, None, now)
    }

    /// The world after the operator wrote `out`.
    fn written(&self, out: &Outcome) -> World {
        let mut next = self.clone();
        next.status = RouterConfigStatus {
            observed_generation: Some(out.status.observed_generation),
            conditions: out.status.conditions.clone(),
            synced_replicas: Some(out.status.synced_replicas),
            replicas: Some(out.status.replicas),
            synced: Some(out.status.synced.clone()),
            replica_status: out.status.replica_status.clone(),
            last_accepted: out.status.last_accepted.clone(),
        };
        next
    }

    fn with_generation(mut self, generation: i64) -> Self {
        self.generation = generation;
        self
    }

    fn with_report(mut self, name: &str, report: Option<ServedRouterConfig>) -> Self {
        match self.members.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = report,
            None => self.members.push((name.to_owned(), report)),
        }
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.members.retain(|(n, _)| n != name);
        self
    }
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

/// The rows of the module doc's table: (phase set-up, Accepted, Ready, Reconciling, Stalled).
#[test]
fn each_row_of_the_table() {
    let synced = mk_world(7, &[("p0", Some(mk_report(7, DIGEST)))]);
    let behind = mk_world(7, &[("p0", Some(mk_report(6, DIGEST)))]);
    let rejecting = mk_world(7, &[("p0", Some(mk_rejecting(6, 7, "bad")))]);
    let empty = mk_world(7, &[]);
    let conflict = Verdict::Conflict("spec.rules[0].paths[0]: taken".into());
    let missing = TlsProblem::Missing("spec.rules[0].tls.secretName: secret ns/app-tls not found".into());
    let unusable =
        TlsProblem::Unusable("spec.rules[0].tls.secretName: secret ns/app-tls lacks tls.key".into());
    type Row<'a> = (&'a str, Outcome, [(&'a str, &'a str); 4]);
    let rows: Vec<Row<'_>> = vec![
        (
            "not accepted",
            synced.decide_with(&conflict, None, 0),
            [
                ("False", "Conflict"),
                ("False", "NotAccepted"),
                ("False", "NotAccepted"),
                ("True", "NotAccepted"),
            ],
        ),
        (
            "unusable TLS",
            synced.decide_with(&Verdict::Accepted, Some(&unusable), 0),
            [
                ("False", "InvalidTLS"),
                ("False", "NotAccepted"),
                ("False", "NotAccepted"),
                ("True", "NotAccepted"),
            ],
        ),
        (
            "Secret missing",
            synced.decide_with(&Verdict::Accepted, Some(&missing), 0),
            [
                ("True", "Valid"),
                ("False", "WaitingForSecret"),
                ("True", "WaitingForSecret"),
                ("False", "Idle"),
            ],
        ),
        (
            "no replicas",
            empty.decide_at(0),
            [
                ("True", "Valid"),
                ("False", "NoReplicas"),
                ("True", "NoReplicas"),
                ("False", "Idle"),
            ],
        ),
        (
            "rejected",
            rejecting.decide_at(0),
            [
                ("True", "Valid"),
                ("False", "Rejected"),
                ("True", "Rejected"),
                ("False", "Idle"),
            ],
        ),
        (
            "behind",
            behind.decide_at(0),
            [
                ("True", "Valid"),
                ("False", "RolloutInProgress"),
                ("True", "RolloutInProgress"),
                ("False", "Idle"),
            ],
        ),
        (
            "synced",
            synced.decide_at(0),
            [
                ("True", "Valid"),
                ("True", "AllReplicasSynced"),
                ("False", "Idle"),
                ("False", "Idle"),
            ],
        ),
        (
            "stalled",
            behind.written(&behind.decide_at(0)).decide_at(60),
            [
                ("True", "Valid"),
                ("False", "RolloutInProgress"),
                ("False", "RolloutStalled"),
                ("True", "RolloutStalled"),
            ],
        ),
        (
            "Secret missing past the stall timeout",
            {
                let first = synced.decide_with(&Verdict::Accepted, Some(&missing), 0);
                synced
                    .written(&first)
                    .decide_with(&Verdict::Accepted, Some(&missing), 60)
            },
            [
                ("True", "Valid"),
                ("False", "WaitingForSecret"),
                ("False", "RolloutStalled"),
                ("True", "RolloutStalled"),
            ],
        ),
    ];
    for (name, out, expected) in rows {
        let got: Vec<(&str, &str)> = ["Accepted", "Ready", "Reconciling", "Stalled"]
            .map(|type_| {
                let c = cond(&out, type_);
                (c.status.as_str(), c.reason.as_str())
            })
            .into();
        assert_eq!(got, expected, "row {name:?}");
        assert!(
            out.status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(7)),
            "row {name:?}"
        );
        let reconciling = cond(&out, "Reconciling").status == "True";
        let stalled = cond(&out, "Stalled").status == "True";
        assert!(
            !(reconciling && stalled),
            "row {name:?}: kstatus needs exactly one"
        );
    }
}

#[test]
fn every_live_replica_at_the_generation_and_digest_makes_ready() {
    let world = mk_world(
        7,
        &[
            ("p0", Some(mk_report(7, DIGEST))),
            ("p1", Some(mk_report(7, DIGEST))),
        ],
    );
    let out = world.decide_at(1);
    assert!(out.ready);
    assert_eq!(cond(&out, "Ready").message, "2/2 replicas serve generation 7");
    assert_eq!(
        (
            out.status.observed_generation,
            out.status.synced_replicas,
            out.status.replicas
        ),
        (7, 2, 2)
    );
    assert_eq!(out.status.synced, "2/2");
    assert!(out.changed);
    assert_eq!(out.recheck_at, None, "nothing to stall");
    let names: Vec<&str> = out
        .status
        .replica_status
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["proxies/p0", "proxies/p1"],
        "replica identity is namespaced"
    );
}

#[test]
fn lagging_replicas_hold_ready_back_and_are_named() {
    let world = mk_world(
        8,
        &[
            ("p0", Some(mk_report(8, DIGEST))),
            ("p1", Some(mk_report(7, DIGEST))),
            ("p2", Some(mk_report(8, "sha256:old-cert"))),
            ("p3", None),
        ],
    );
    let out = world.decide_at(1);
    assert!(!out.ready);
    assert_eq!(cond(&out, "Ready").message, "1/4 replicas serve generation 8");
    assert_eq!(
        cond(&out, "Reconciling").message,
        "waiting for proxies/p1 (at generation 7), proxies/p2 (generation 8 with another digest), proxies/p3 (no report)"
    );
    assert_eq!(out.status.synced, "1/4");
    assert_eq!(out.recheck_at, Some(t(61)), "the stall deadline");
}

#[test]
fn a_fleet_without_live_replicas_is_not_ready_and_in_progress_for_kstatus() {
    let world = mk_world(1, &[]);
    let out = world.decide_at(0);
    assert_eq!(
        cond(&out, "Ready").message,
        "no live replica of fleet blue serves this namespace"
    );
    assert_eq!(
        out.status.observed_generation, 1,
        "observedGeneration from the first reconcile"
    );
    assert_eq!(out.status.synced, "0/0");
    assert_eq!(out.recheck_at, None);
    // Waiting for a fleet never stalls, however long.
    let later = world.written(&out).decide_at(3600);
    assert_cond(&later, "Stalled", "False", "Idle");
    assert!(!later.changed);
}

#[test]
fn a_rejected_generation_is_never_counted_as_applied() {
    let world = mk_world(
        8,
        &[
            ("p0", Some(mk_report(8, DIGEST))),
            // A replica that rejects keeps its old generation; a buggy one might even claim the
            // new generation: the rejection still wins.
            (
                "p1",
                Some(mk_rejecting(
                    7,
                    8,
                    "spec.rules[0].tls.secretName: certificate expired",
                )),
            ),
            (
                "p2",
                Some(mk_rejecting(
                    8,
                    8,
                    "spec.rules[0].tls.secretName: key does not match",
                )),
            ),
        ],
    );
    let out = world.decide_at(0);
    assert!(!out.ready);
    assert_eq!(out.status.synced, "1/3");
    assert_eq!(
        cond(&out, "Ready").message,
        "1/3 replicas serve generation 8; rejected by proxies/p1: spec.rules[0].tls.secretName: certificate expired, \
         rejected by proxies/p2: spec.rules[0].tls.secretName: key does not match"
    );
    let stalled = world.written(&out).decide_at(60);
    assert_cond(&stalled, "Stalled", "True", "RolloutStalled");
    assert_cond(&stalled, "Ready", "False", "Rejected");
    // A rejection of an older generation is history once the replica serves this one.
    assert!(
        mk_world(9, &[("p0", Some(mk_rejecting(9, 8, "old news")))])
            .decide_at(0)
            .ready
    );
}

#[test]
fn rejecters_and_laggards_come_first_in_the_copied_reports_which_are_capped() {
    let mut members: Vec<(String, Option<ServedRouterConfig>)> = (0..150)
        .map(|i| (format!("p{i:03}"), Some(mk_report(2, DIGEST))))
        .collect();
    members.push(("zz-behind".into(), Some(mk_report(1, DIGEST))));
    members.push(("zz-rejecting".into(), Some(mk_rejecting(1, 2, "bad"))));
    let world = World {
        generation: 2,
        status: RouterConfigStatus::default(),
        members,
    };
    let out = world.decide_at(0);
    assert_eq!(out.status.replica_status.len(), MAX_REPLICA_STATUS);
    assert_eq!(out.status.replica_status[0].name, "proxies/zz-rejecting");
    assert_eq!(out.status.replica_status[1].name, "proxies/zz-behind");
    assert_eq!(
        (out.status.replicas, out.status.synced_replicas),
        (152, 150),
        "counts stay exact"
    );
}

#[test]
fn a_spec_that_is_not_accepted_names_the_field_and_the_owner() {
    let world = mk_world(3, &[("p0", Some(mk_report(3, DIGEST)))]);
    let message = "spec.rules[0].paths[0]: host a.test Prefix / is already routed by RouterConfig ns/old (spec.rules[0].paths[0]), which is older";
    let out = world.decide_with(&Verdict::Conflict(message.into()), None, 0);
    assert!(!out.ready, "even though every replica reports generation 3");
    assert_eq!(cond(&out, "Accepted").message, message);
    assert!(cond(&out, "Ready").message.contains("ns/old"));
    let invalid = world.decide_with(
        &Verdict::Invalid("spec.rules[0].host: must be lower case".into()),
        None,
        0,
    );
    assert_cond(&invalid, "Accepted", "False", "Invalid");
    assert_eq!(
        cond(&invalid, "Accepted").message,
        "spec.rules[0].host: must be lower case"
    );
}

#[test]
fn a_missing_secret_is_a_wait_that_ends_when_it_appears() {
    let world = mk_world(
        1,
        &[("p0", Some(mk_rejecting(0, 1, "secret ns/app-tls not found")))],
    );
    let missing = TlsProblem::Missing("spec.rules[0].tls.secretName: secret ns/app-tls not found".into());
    let waiting = world.decide_with(&Verdict::Accepted, Some(&missing), 0);
    assert!(cond(&waiting, "Ready").message.contains("ns/app-tls"));
    assert_eq!(waiting.recheck_at, Some(t(60)));
    // The Secret appears and the replica serves the generation: Ready without any edit.
    let served = world
        .written(&waiting)
        .with_report("p0", Some(mk_report(1, DIGEST)));
    let ready = served.decide_at(5);
    assert!(ready.ready);
}

#[test]
fn a_rollout_lagging_past_the_stall_timeout_is_stalled_naming_the_replicas() {
    let world = mk_world(
        2,
        &[
            ("p0", Some(mk_report(2, DIGEST))),
            ("slow", Some(mk_report(1, DIGEST))),
        ],
    );
    let first = world.decide_at(0);
    assert_eq!(first.recheck_at, Some(t(60)), "the stall deadline");
    // A new leader reads the start of the rollout from the stored status.
    let stored = world.written(&first);
    let before = stored.decide_at(59);
    assert_cond(&before, "Stalled", "False", "Idle");
    assert!(!before.changed);
    let at = stored.decide_at(60);
    assert_cond(&at, "Stalled", "True", "RolloutStalled");
    assert_eq!(
        cond(&at, "Stalled").message,
        "proxies/slow has not served generation 2 within the stall timeout (60s)"
    );
    assert!(
        at.transitions
            .iter()
            .any(|e| e.warning && e.reason == Reason::RolloutStalled)
    );
    // Stalled sticks while the rollout lags...
    let stalled = stored.written(&at);
    let still = stalled.decide_at(500);
    assert_cond(&still, "Stalled", "True", "RolloutStalled");
    assert!(!still.changed && still.transitions.is_empty());
    // ...and clears once the laggard catches up.
    let done = stalled
        .with_report("slow", Some(mk_report(2, DIGEST)))
        .decide_at(501);
    assert!(done.ready);
    assert_cond(&done, "Stalled", "False", "Idle");
}

#[test]
fn a_new_generation_restarts_the_stall_clock() {
    let world = mk_world(2, &[("p0", Some(mk_report(1, DIGEST)))]);
    let g2 = world.decide_at(0);
    let stalled = world.written(&g2).decide_at(100);
    assert_cond(&stalled, "Stalled", "True", "RolloutStalled");
    let g3 = world
        .written(&g2)
        .written(&stalled)
        .with_generation(3)
        .decide_at(200);
    assert_cond(&g3, "Stalled", "False", "Idle");
    assert_cond(&g3, "Reconciling", "True", "RolloutInProgress");
    assert_eq!(cond(&g3, "Reconciling").last_transition_time.0, t(200));
    assert_eq!(g3.recheck_at, Some(t(260)));
    // Even when Reconciling was already True for generation 2 (no stall yet).
    let rc3 = world.written(&g2).with_generation(3);
    let g3 = rc3.decide_at(50);
    assert_eq!(cond(&g3, "Reconciling").last_transition_time.0, t(50));
    assert_cond(&rc3.written(&g3).decide_at(100), "Stalled", "False", "Idle");
}

#[test]
fn replicas_arriving_after_no_replicas_start_the_stall_clock() {
    let world = mk_world(1, &[]);
    let empty = world.decide_at(0);
    let joined = world.written(&empty).with_report("p0", None);
    let out = joined.decide_at(1000);
    assert_cond(&out, "Reconciling", "True", "RolloutInProgress");
    assert_eq!(cond(&out, "Reconciling").last_transition_time.0, t(1000));
}

#[test]
fn a_stale_ready_true_never_carries_the_new_generation() {
    let v1 = mk_world(1, &[("p0", Some(mk_report(1, DIGEST)))]);
    let out1 = v1.decide_at(0);
    assert!(out1.ready);
    let out2 = v1.written(&out1).with_generation(2).decide_at(1);
    let ready = cond(&out2, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.observed_generation),
        ("False", Some(2))
    );
    assert_eq!(ready.last_transition_time.0, t(1));
    assert!(out2.changed);
}

#[test]
fn more_replicas_at_the_generation_is_progress_and_the_last_one_a_verdict() {
    let names = ["p0", "p1", "p2"];
    let before = mk_world(2, &names.map(|n| (n, Some(mk_report(1, DIGEST)))));
    let start = before.decide_at(1);
    assert!(
        start.changed && !start.progress_only,
        "a new generation is a verdict"
    );
    let one = before
        .written(&start)
        .with_report("p0", Some(mk_report(2, DIGEST)));
    let progress = one.decide_at(1);
    assert!(progress.changed && progress.progress_only, "{progress:?}");
    assert_eq!(progress.status.synced, "1/3");
    let all = one
        .written(&progress)
        .with_report("p1", Some(mk_report(2, DIGEST)))
        .with_report("p2", Some(mk_report(2, DIGEST)));
    let done = all.decide_at(1);
    assert!(done.ready && done.changed && !done.progress_only);
    let rejected = one
        .written(&progress)
        .with_report("p1", Some(mk_rejecting(1, 2, "bad")))
        .decide_at(1);
    assert!(
        rejected.changed && !rejected.progress_only,
        "a rejection changes Ready's reason"
    );
    let left = one.written(&progress).without("p2").decide_at(1);
    assert!(
        left.changed && !left.progress_only,
        "a member leaving is a verdict"
    );
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
}

#[test]
fn a_larger_fleet_spaces_its_progress_writes_further() {
    let settings = Settings::default();
    for (replicas, interval_ms) in [
        (0, 1000),
        (3, 1000),
        (100, 1000),
        (101, 1010),
        (300, 3000),
        (1000, 10_000),
    ] {
        assert_eq!(
            settings.progress_interval_for(replicas),
            Duration::from_millis(interval_ms),
            "{replicas} replicas"
        );
    }
    let zero = Settings {
        progress_interval: Duration::ZERO,
        ..settings
    };
    assert_eq!(
        zero.progress_interval_for(usize::MAX),
        Duration::from_millis(10) * u32::MAX
    );
}

#[test]
fn only_time_passing_is_not_a_change() {
    let world = mk_world(1, &[("p0", Some(mk_report(1, DIGEST)))]);
    let first = world.decide_at(0);
    let again = world.written(&first).decide_at(5);
    assert!(!again.changed);
    assert!(again.transitions.is_empty());
    assert_eq!(
        again.status.conditions, first.status.conditions,
        "transition times are kept"
    );
    let fewer = world.written(&first).without("p0").decide_at(5);
    assert!(fewer.changed, "a replica dropping out is a change");
}

#[test]
fn transitions_announce_ready_acceptance_and_stalls_once() {
    let world = mk_world(1, &[("p0", Some(mk_report(1, DIGEST)))]);
    let ready = world.decide_at(0);
    assert_eq!(
        ready.transitions,
        vec![Transition {
            warning: false,
            reason: Reason::AllReplicasSynced,
            note: "1/1 replicas serve generation 1".into()
        }]
    );
    let next = world.written(&ready).with_generation(2);
    let rolling = next.decide_at(1);
    assert_eq!(
        rolling.transitions.iter().map(|e| e.reason).collect::<Vec<_>>(),
        [Reason::RolloutInProgress]
    );
    let conflict = next.decide_with(&Verdict::Conflict("taken".into()), None, 1);
    assert_eq!(
        conflict
            .transitions
            .iter()
            .map(|e| (e.warning, e.reason))
            .collect::<Vec<_>>(),
        [(false, Reason::NotAccepted), (true, Reason::Conflict)],
        "no separate Stalled event for a spec that is not accepted"
    );
    let again = next
        .written(&conflict)
        .decide_with(&Verdict::Conflict("taken".into()), None, 2);
    assert!(again.transitions.is_empty());
}

#[test]
fn the_operator_patch_holds_the_whole_status() {
    let mut out = mk_world(1, &[("p0", Some(mk_report(1, DIGEST)))]).decide_at(0);
    assert!(
        !out.status.apply_patch("42")["status"]
            .as_object()
            .unwrap()
            .contains_key("lastAccepted")
    );
    out.status.last_accepted = Some(lockstep_crds::AcceptedGeneration {
        uid: String::new(),
        generation: 1,
        spec: serde_json::from_value(serde_json::json!({"rules": []})).unwrap(),
    });
    let patch = out.status.apply_patch("42");
    assert_eq!(patch["kind"], "RouterConfig");
    let status = patch["status"].as_object().unwrap();
    let mut keys: Vec<&str> = status.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "conditions",
            "lastAccepted",
            "observedGeneration",
            "replicaStatus",
            "replicas",
            "synced",
            "syncedReplicas"
        ]
    );
    assert_eq!(status["replicaStatus"][0]["name"], "proxies/p0");
    // The precondition that keeps it off a re-created object of the same name.
    assert_eq!(patch["metadata"], serde_json::json!({"resourceVersion": "42"}));
}

#[test]
fn long_name_lists_are_cut() {
    let members: Vec<(String, Option<ServedRouterConfig>)> =
        (0..12).map(|i| (format!("p{i:02}"), None)).collect();
    let world = World {
        generation: 1,
        status: RouterConfigStatus::default(),
        members,
    };
    let out = world.decide_at(0);
    let message = &cond(&out, "Reconciling").message;
    assert!(
        message.ends_with("proxies/p09 (no report), and 2 more"),
        "{message}"
    );
}

fn mk_rrep(
    namespace: &str,
    name: &str,
    fleet: &str,
    namespaces: &[&str],
    served: Vec<ServedRouterConfig>,
) -> RouterReplica {
    let mut rrep = RouterReplica::new(
        name,
        lockstep_crds::RouterReplicaSpec {
            fleet: fleet.into(),
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
        },
    );
    rrep.metadata.namespace = Some(namespace.into());
    rrep.status = Some(lockstep_crds::RouterReplicaStatus {
        served,
        ..Default::default()
    });
    rrep
}

#[test]
fn members_are_the_live_replicas_serving_the_namespace_with_their_reports() {
    let ids = [
        ReplicaId::new("proxies", "p0"),
        ReplicaId::new("proxies", "only-other"),
        ReplicaId::new("proxies", "all"),
        ReplicaId::new("proxies", "no-rrep"),
        ReplicaId::new("proxies", "wrong-fleet"),
        ReplicaId::new("elsewhere", "p0"),
    ];
    let rreps = [
        mk_rrep("proxies", "p0", "blue", &["ns"], vec![mk_report(3, DIGEST)]),
        mk_rrep("proxies", "only-other", "blue", &["other"], vec![]),
        mk_rrep("proxies", "all", "blue", &["*"], vec![mk_report(3, DIGEST)]),
        mk_rrep(
            "proxies",
            "wrong-fleet",
            "green",
            &["*"],
            vec![mk_report(3, DIGEST)],
        ),
        // Reports for unknown RouterConfigs are simply not looked at.
        mk_rrep(
            "elsewhere",
            "p0",
            "blue",
            &["ns"],
            vec![ServedRouterConfig {
                name: "ghost".into(),
                ..mk_report(3, DIGEST)
            }],
        ),
    ];
    let find = |id: &ReplicaId| {
        rreps.iter().find(|r| {
            r.metadata.namespace.as_deref() == Some(id.namespace.as_str())
                && r.metadata.name.as_deref() == Some(id.name.as_str())
        })
    };
    let members = members_serving("ns", "web", UID, "blue", &ids, find);
    let got: Vec<(String, bool)> = members
        .iter()
        .map(|m| (m.id.to_string(), m.report.is_some()))
        .collect();
    assert_eq!(
        got,
        [
            ("proxies/p0".to_owned(), true),
            ("proxies/all".to_owned(), true),
            ("proxies/no-rrep".to_owned(), false),
            ("proxies/wrong-fleet".to_owned(), false),
            ("elsewhere/p0".to_owned(), false),
        ]
    );
}

#[test]
fn a_report_on_an_earlier_object_of_the_same_name_never_counts_for_a_re_created_one() {
    // web was deleted and re-created: generation 1 again, another uid. Both replicas still
    // report generation 1 of the old object, with the digest the new spec would have.
    let ids = [ReplicaId::new("proxies", "p0"), ReplicaId::new("proxies", "p1")];
    let rreps = [
        mk_rrep("proxies", "p0", "blue", &["ns"], vec![mk_report(1, DIGEST)]),
        mk_rrep("proxies", "p1", "blue", &["ns"], vec![mk_report(1, DIGEST)]),
    ];
    let find = |id: &ReplicaId| {
        rreps
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(id.name.as_str()))
    };
    let members = members_serving("ns", "web", "uid-of-the-new-web", "blue", &ids, find);
    assert!(
        members.iter().all(|m| m.report.is_none()),
        "reports on the old uid counted: {members:?}"
    );
    let out = decide(Input {
        generation: 1,
        fleet: "blue",
        current: &RouterConfigStatus::default(),
        members: &members,
        verdict: &Verdict::Accepted,
        tls_problem: None,
        expected_digest: DIGEST,
        last_accepted: None,
        now: t(0),
        settings: settings(),
    });
    assert!(!out.ready);
    assert_cond(&out, "Ready", "False", reason::ROLLOUT_IN_PROGRESS);
    assert_eq!(
        cond(&out, "Reconciling").message,
        "waiting for proxies/p0 (no report), proxies/p1 (no report)"
    );
    // The same reports on the object's own uid make it Ready.
    let members = members_serving("ns", "web", UID, "blue", &ids, find);
    assert!(members.iter().all(|m| m.report.is_some()));
}

#[test]
fn a_live_replica_left_out_by_a_stale_spec_is_named_for_a_fresh_read() {
    // p0 was restarted with a wider namespace list: it serves "ns" now, at generation 1, while
    // the cached RouterReplica still has its old spec.
    let ids = [ReplicaId::new("proxies", "p0"), ReplicaId::new("proxies", "p1")];
    let stale = [
        mk_rrep("proxies", "p0", "blue", &["other"], vec![]),
        mk_rrep("proxies", "p1", "blue", &["ns"], vec![mk_report(2, DIGEST)]),
    ];
    let fresh = [
        mk_rrep(
            "proxies",
            "p0",
            "blue",
            &["other", "ns"],
            vec![mk_report(1, DIGEST)],
        ),
        mk_rrep("proxies", "p1", "blue", &["ns"], vec![mk_report(2, DIGEST)]),
    ];
    fn find<'r>(rreps: &'r [RouterReplica]) -> impl Fn(&ReplicaId) -> Option<&'r RouterReplica> {
        move |id| {
            rreps
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(id.name.as_str()))
        }
    }
    let judged = |members: &[Member<'_>]| {
        decide(Input {
            generation: 2,
            fleet: "blue",
            current: &RouterConfigStatus::default(),
            members,
            verdict: &Verdict::Accepted,
            tls_problem: None,
            expected_digest: DIGEST,
            last_accepted: None,
            now: t(0),
            settings: settings(),
        })
    };
    // On the stale spec p0 is out, and generation 2 would be Ready on p1 alone.
    let members = members_serving("ns", "web", UID, "blue", &ids, find(&stale));
    assert!(judged(&members).ready);
    // So the stale spec names p0 for a fresh read...
    let left_out: Vec<String> = left_out_by_spec("ns", "blue", &ids, find(&stale))
        .into_iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(left_out, ["proxies/p0"]);
    // ...which counts it, serving generation 1: not Ready.
    let members = members_serving("ns", "web", UID, "blue", &ids, find(&fresh));
    let out = judged(&members);
    assert!(!out.ready);
    assert_eq!(cond(&out, "Ready").message, "1/2 replicas serve generation 2");
    assert!(left_out_by_spec("ns", "blue", &ids, find(&fresh)).is_empty());
    // A missing RouterReplica or one of another fleet holds Ready back already: no re-read.
    assert!(left_out_by_spec("ns", "blue", &ids, |_| None).is_empty());
}
