//! The operator's barrier: the real `lockstep-operator` binary, real `kubectl`, and proxy
//! replicas simulated (no data plane) exactly as the protocol has them write Leases and
//! RouterReplicas (`lockstep_e2e::simulated`; `e2e/tests/cluster/barrier.rs` runs the same
//! promise with real proxies). One operator serves every test of this module; tests stay apart
//! by namespace and fleet.

use std::time::Duration;

use lockstep_e2e::{
    eventually,
    fixture::{Fixture, exit_within},
    simulated::*,
};

use crate::Turn;

/// This module's turn, with its operator.
fn take_turn() -> Turn {
    crate::take_turn(
        "barrier",
        Some(&["--lease-duration", "3s", "--replica-gc-after", "2s"]),
    )
}

#[tokio::test]
async fn kubectl_wait_returns_only_once_every_live_replica_serves_the_generation() {
    let _turn = take_turn();
    let f = Fixture::new("wait").await;
    let mut replicas: Vec<SimulatedReplica> = (0..3).map(|i| f.replica(&format!("proxy-{i}"), 10)).collect();
    for r in &mut replicas {
        r.join().await;
    }
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9001");
    let mut wait = f.spawn_kubectl_wait("web", Duration::from_secs(30));
    for r in &replicas[..2] {
        r.report_current(&f.api, "web").await;
    }
    let (rc, ready) = f
        .wait_condition("web", "Ready", "to count 2/3", |c| c.message.starts_with("2/3"))
        .await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "RolloutInProgress")
    );
    let status = rc.status.unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.synced.as_deref(), Some("2/3"));
    let reconciling = condition(&f.get("web").await, "Reconciling").unwrap();
    assert_eq!(
        (reconciling.status.as_str(), reconciling.message.as_str()),
        (
            "True",
            format!("waiting for {}/proxy-2 (no report)", f.ns).as_str()
        )
    );
    assert!(
        exit_within(&mut wait, Duration::from_millis(500)).is_none(),
        "kubectl wait returned with proxy-2 behind"
    );

    replicas[2].report_current(&f.api, "web").await;
    let status = exit_within(&mut wait, Duration::from_secs(10)).expect("kubectl wait returns");
    assert!(status.success());
    let rc = f.get("web").await;
    let ready = condition(&rc, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str(), ready.generation),
        ("True", "AllReplicasSynced", 1)
    );
    assert_eq!(ready.message, "3/3 replicas serve generation 1");
    let row = f.get_row("web");
    assert_eq!(
        (
            row["READY"].as_str(),
            row["SYNCED"].as_str(),
            row["GENERATION"].as_str()
        ),
        ("True", "3/3", "1")
    );
    // The operator copies each replica's report, named <namespace>/<replica>.
    let entries = rc.status.unwrap().replica_status;
    let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    assert_eq!(
        names,
        (0..3).map(|i| format!("{}/proxy-{i}", f.ns)).collect::<Vec<_>>()
    );
    assert!(entries.iter().all(|e| e.observed_generation == 1));

    // A new generation: apply and wait back to back. The stale Ready=True of generation 1
    // must not let kubectl wait through.
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9002");
    let mut wait = f.spawn_kubectl_wait("web", Duration::from_secs(30));
    let (_, ready) = f
        .wait_condition("web", "Ready", "to be judged for generation 2", |_| true)
        .await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "RolloutInProgress")
    );
    assert_eq!(ready.message, "0/3 replicas serve generation 2");
    for r in &replicas[..2] {
        r.report_current(&f.api, "web").await;
    }
    assert!(
        exit_within(&mut wait, Duration::from_millis(700)).is_none(),
        "kubectl wait returned before proxy-2 served generation 2"
    );
    replicas[2].report_current(&f.api, "web").await;
    assert!(
        exit_within(&mut wait, Duration::from_secs(10))
            .expect("kubectl wait returns")
            .success()
    );
    assert_eq!(f.get_row("web")["GENERATION"], "2");

    let events = f.events("web");
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "AllReplicasSynced" && note == "3/3 replicas serve generation 2"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_fleet_without_replicas_is_not_ready() {
    let _turn = take_turn();
    let f = Fixture::new("empty").await;
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9001");
    let (rc, ready) = f.wait_condition("web", "Ready", "to be judged", |_| true).await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NoReplicas")
    );
    assert!(ready.message.contains(&f.fleet), "{}", ready.message);
    let status = rc.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.synced.as_deref(), Some("0/0"));
    // kstatus judges by Reconciling/Stalled: waiting for replicas is in progress, not done.
    let reconciling = condition(&rc, "Reconciling").unwrap();
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", "NoReplicas")
    );
    assert_eq!(f.get_row("web")["READY"], "False");

    // The first replica to join and report makes it Ready.
    let mut r = f.replica("proxy-0", 10);
    r.report_current(&f.api, "web").await;
    r.join().await;
    f.wait_condition("web", "Ready", "True", |c| c.status == "True")
        .await;
}

#[tokio::test]
async fn an_expired_lease_drops_its_replica_and_ready_is_computed_without_it() {
    let _turn = take_turn();
    let f = Fixture::new("expiry").await;
    let mut alive = f.replica("alive", 10);
    let mut doomed = f.replica("doomed", 4);
    alive.join().await;
    doomed.join().await;
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9001");
    alive.report_current(&f.api, "web").await;
    doomed.report_current(&f.api, "web").await;
    f.wait_condition("web", "Ready", "True at generation 1", |c| c.status == "True")
        .await;

    // doomed crashes right after a renewal (its Lease is fresh for 4 s more) and generation 2
    // arrives: only alive applies it.
    doomed.crash();
    doomed.renew_once().await;
    let renewed = std::time::Instant::now();
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9002");
    alive.report_current(&f.api, "web").await;
    let (rc, ready) = f
        .wait_condition("web", "Ready", "judged with alive at generation 2", |c| {
            c.message.starts_with("1/")
        })
        .await;
    assert!(
        renewed.elapsed() < Duration::from_secs(3),
        "the test itself was too slow to judge"
    );
    assert_eq!(
        (ready.status.as_str(), ready.message.as_str()),
        ("False", "1/2 replicas serve generation 2"),
        "doomed still holds a fresh Lease and serves generation 1"
    );
    assert_eq!(rc.status.unwrap().replicas, Some(2));

    // No event announces the expiry: the operator wakes up on its own 4 s after it saw the
    // last renewal.
    let (rc, ready) = f
        .wait_condition("web", "Ready", "True without doomed", |c| c.status == "True")
        .await;
    assert_eq!(ready.message, "1/1 replicas serve generation 2");
    let status = rc.status.unwrap();
    assert_eq!(status.synced.as_deref(), Some("1/1"));
    let names: Vec<String> = status.replica_status.into_iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [format!("{}/alive", f.ns)],
        "only live replicas are copied"
    );
}

#[tokio::test]
async fn a_rejected_generation_is_not_ready_and_names_the_replica() {
    let _turn = take_turn();
    let f = Fixture::new("reject").await;
    let mut good = f.replica("good", 10);
    let mut picky = f.replica("picky", 10);
    good.join().await;
    picky.join().await;
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9001");
    let g1 = f.get("web").await;
    good.report_current(&f.api, "web").await;
    picky.report_current(&f.api, "web").await;
    f.wait_condition("web", "Ready", "True", |c| c.status == "True")
        .await;

    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9002");
    good.report_current(&f.api, "web").await;
    picky
        .reject(
            &f.api,
            "web",
            1,
            &digest_of(&g1),
            2,
            "spec.rules[0].paths[0].backend: no route to host",
        )
        .await;
    let (rc, ready) = f
        .wait_condition("web", "Ready", "Rejected", |c| c.reason == "Rejected")
        .await;
    assert_eq!(ready.status, "False");
    assert_eq!(
        ready.message,
        format!(
            "1/2 replicas serve generation 2; rejected by {}/picky: spec.rules[0].paths[0].backend: no route to host",
            f.ns
        )
    );
    assert_eq!(rc.status.unwrap().synced.as_deref(), Some("1/2"));
    let mut wait = f.spawn_kubectl_wait("web", Duration::from_secs(2));
    let status = exit_within(&mut wait, Duration::from_secs(10)).expect("kubectl wait times out");
    assert!(
        !status.success(),
        "a rejected generation never satisfies kubectl wait"
    );
}

#[tokio::test]
async fn the_newer_of_two_conflicting_routerconfigs_is_not_accepted() {
    let _turn = take_turn();
    let f = Fixture::new("conflict").await;
    let mut r = f.replica("proxy-0", 10);
    r.join().await;
    f.apply_route("older", "app.test", "/api", "http://127.0.0.1:9001");
    r.report_current(&f.api, "older").await;
    f.wait_condition("older", "Ready", "True", |c| c.status == "True")
        .await;
    // Creation timestamps have one-second resolution: make sure "newer" is newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.apply_route("newer", "app.test", "/api", "http://127.0.0.1:9002");
    r.report_current(&f.api, "newer").await;

    let (rc, accepted) = f.wait_condition("newer", "Accepted", "judged", |_| true).await;
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "Conflict")
    );
    assert!(
        accepted.message.contains("spec.rules[0].paths[0]"),
        "{}",
        accepted.message
    );
    assert!(
        accepted.message.contains(&format!("{}/older", f.ns)),
        "{}",
        accepted.message
    );
    let ready = condition(&rc, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NotAccepted"),
        "even though the replica reports the generation"
    );
    // Nothing will change without an edit: kstatus must say Failed, not InProgress.
    let stalled = condition(&rc, "Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "NotAccepted")
    );
    let older = condition(&f.get("older").await, "Accepted").unwrap();
    assert_eq!(older.status, "True");
    assert!(f.events("newer").iter().any(|(reason, _)| reason == "Conflict"));
}

#[tokio::test]
async fn admin_endpoint_serves_health_readiness_and_metrics() {
    let turn = take_turn();
    let f = Fixture::new("metrics").await;
    let op = turn.operator();
    let mut r = f.replica("proxy-0", 10);
    r.join().await;
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9001");
    r.report_current(&f.api, "web").await;
    f.wait_condition("web", "Ready", "True", |c| c.status == "True")
        .await;

    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        async move {
            let resp = http
                .get(format!("http://{}{path}", op.admin))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    let series = format!(r#"{{namespace="{}",name="web"}}"#, f.ns);
    let text = eventually("the gauges to be exported", WAIT, || async {
        let (_, text) = get("/metrics").await;
        text.contains(&format!("lockstep_operator_routerconfig_ready{series} 1"))
            .then_some(text)
    })
    .await
    .unwrap();
    for line in [
        format!("lockstep_operator_routerconfig_synced_replicas{series} 1"),
        format!("lockstep_operator_routerconfig_replicas{series} 1"),
        format!("lockstep_operator_routerconfig_generation{series} 1"),
        "lockstep_operator_leader 1".to_owned(),
    ] {
        assert!(text.contains(&line), "{line} missing in\n{text}");
    }
    let rollouts: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("lockstep_operator_rollout_duration_seconds_count "))
        .expect("rollout histogram")
        .parse()
        .unwrap();
    assert!(rollouts >= 1.0, "{text}");
}

#[tokio::test]
async fn replica_identity_is_namespaced_and_replicas_of_other_namespaces_do_not_block() {
    let _turn = take_turn();
    let f = Fixture::new("identity").await;
    let other = f.cp.namespace(&f.client, "identity-other").await.unwrap();
    // Two replicas named proxy-0: one in the test namespace serving it, one elsewhere serving
    // only its own namespace. They are two replicas, and only the first serves "web".
    let mut here = f.replica("proxy-0", 10);
    let mut there = f.replica_in(&other, "proxy-0", 10, &[&other]);
    here.join().await;
    there.join().await;
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9001");
    here.report_current(&f.api, "web").await;
    let (rc, ready) = f
        .wait_condition("web", "Ready", "True with one replica", |c| c.status == "True")
        .await;
    assert_eq!(ready.message, "1/1 replicas serve generation 1");
    let names: Vec<String> = rc
        .status
        .unwrap()
        .replica_status
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, [format!("{}/proxy-0", f.ns)]);

    // The other proxy-0 starts serving every namespace: now it is a member for "web" too, and
    // it has not reported.
    there.set_spec(&f.fleet, &["*"]).await;
    let (_, ready) = f
        .wait_condition("web", "Ready", "to count both proxy-0s", |c| {
            c.message.starts_with("1/2")
        })
        .await;
    assert_eq!(ready.status, "False");
    let reconciling = condition(&f.get("web").await, "Reconciling").unwrap();
    assert_eq!(
        reconciling.message,
        format!("waiting for {other}/proxy-0 (no report)")
    );
}

#[tokio::test]
async fn hand_written_reports_are_never_counted_as_synced() {
    let turn = take_turn();
    let f = Fixture::new("garbage").await;
    let mut honest = f.replica("honest", 10);
    let mut liar = f.replica("liar", 10);
    honest.join().await;
    liar.join().await;
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9001");
    honest.report_current(&f.api, "web").await;
    // The right generation with a made-up digest, plus a report on a RouterConfig that does
    // not exist.
    liar.report(&f.api, "web", 1, "sha256:garbage").await;
    liar.report_raw(
        "ghost",
        serde_json::json!({"namespace": f.ns, "name": "ghost", "observedGeneration": 9, "configDigest": "sha256:x"}),
    )
    .await;
    let (_, ready) = f
        .wait_condition("web", "Ready", "judged with liar's report", |c| {
            c.message.starts_with("1/2")
        })
        .await;
    assert_eq!(ready.status, "False");
    let reconciling = condition(&f.get("web").await, "Reconciling").unwrap();
    assert_eq!(
        reconciling.message,
        format!("waiting for {}/liar (generation 1 with another digest)", f.ns)
    );

    // A RouterReplica claiming another fleet than its Lease: no report, whatever it says.
    liar.report_current(&f.api, "web").await;
    liar.set_spec("another-fleet", &["*"]).await;
    f.wait_condition("web", "Reconciling", "to name liar without a report", |c| {
        c.message.ends_with("liar (no report)")
    })
    .await;
    // Logged once, not once per event.
    liar.report_current(&f.api, "web").await;
    liar.report_current(&f.api, "web").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = turn.operator().process.log_text();
    let mentions = log
        .lines()
        .filter(|l| {
            l.contains("ignoring part of a RouterReplica")
                && l.contains(&format!("{}/liar", f.ns))
                && l.contains("ghost")
        })
        .count();
    assert_eq!(mentions, 1, "the unknown RouterConfig is logged once:\n{log}");
}

#[tokio::test]
async fn lease_expiry_is_judged_from_when_the_operator_saw_the_renewal_not_the_proxys_clock() {
    let _turn = take_turn();
    let f = Fixture::new("skew").await;
    // One replica's clock is an hour behind, another's 30 s ahead. Both renew in time.
    let mut behind = f.replica("behind", 3);
    behind.clock_skew = jiff::SignedDuration::from_secs(-3600);
    let mut ahead = f.replica("ahead", 3);
    ahead.clock_skew = jiff::SignedDuration::from_secs(30);
    behind.join().await;
    ahead.join().await;
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9001");
    let (_, ready) = f
        .wait_condition("web", "Ready", "to count both", |c| c.message.starts_with("0/2"))
        .await;
    assert_eq!(
        ready.reason, "RolloutInProgress",
        "a renewTime an hour old still counts"
    );
    behind.report_current(&f.api, "web").await;
    ahead.report_current(&f.api, "web").await;
    f.wait_condition("web", "Ready", "True", |c| c.status == "True")
        .await;

    // The fast clock stops renewing: it drops out 3 s after its last renewal was seen, not
    // 3 s after the renewTime it wrote (30 s in the future).
    ahead.crash();
    let stopped = std::time::Instant::now();
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9002");
    behind.report_current(&f.api, "web").await;
    let (_, ready) = f
        .wait_condition("web", "Ready", "True without ahead", |c| c.status == "True")
        .await;
    assert_eq!(ready.message, "1/1 replicas serve generation 2");
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "ahead counted until its own clock's renewTime: {:?}",
        stopped.elapsed()
    );
}

#[tokio::test]
async fn a_replica_that_reports_without_a_lease_is_not_a_member() {
    let _turn = take_turn();
    let f = Fixture::new("no-lease").await;
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9001");
    // It reports the current generation but never takes its Lease (a replica whose Lease
    // writes are refused): it is not counted, as synced or at all.
    let orphan = f.replica("orphan", 10);
    orphan.report_current(&f.api, "web").await;
    let (rc, ready) = f.wait_condition("web", "Ready", "judged", |_| true).await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NoReplicas")
    );
    assert_eq!(rc.status.unwrap().synced.as_deref(), Some("0/0"));
    // Once a live replica reports, Ready counts that one alone.
    let mut live = f.replica("live", 10);
    live.join().await;
    live.report_current(&f.api, "web").await;
    let (_, ready) = f
        .wait_condition("web", "Ready", "True", |c| c.status == "True")
        .await;
    assert_eq!(ready.message, "1/1 replicas serve generation 1");
}

#[tokio::test]
async fn the_operator_is_not_ready_until_every_cache_has_listed() {
    let turn = take_turn();
    let f = Fixture::new("unsynced").await;
    // An operator whose ServiceAccount may not list RouterReplicas: that cache never lists,
    // so it must never say ready (judging without the reports would say NoReplicas).
    let sa = "lockstep-operator-partial";
    f.cp.kubectl_apply(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: {ns}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {sa}-{ns}}}\n\
         rules:\n- {{apiGroups: [lockstep.dev], resources: [routerconfigs], verbs: [get, list, watch]}}\n\
         - {{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, list, watch, create, update, patch]}}\n\
         - {{apiGroups: [\"\"], resources: [secrets], verbs: [get, list, watch]}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {sa}-{ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {sa}-{ns}}}\n\
         subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {ns}}}]\n",
        ns = f.ns
    ))
    .unwrap();
    let token = f.cp.kubectl_ok(&["create", "token", sa, "-n", &f.ns]).unwrap();
    let admin = std::fs::read_to_string(f.cp.kubeconfig()).unwrap();
    let admin_token = std::fs::read_to_string(f.cp.dir().join("token")).unwrap();
    let kubeconfig = f.dir.join("kubeconfig-partial");
    std::fs::write(&kubeconfig, admin.replace(admin_token.trim(), token.trim())).unwrap();
    let partial = lockstep_e2e::fleet::Operator::start_with_kubeconfig(
        &kubeconfig,
        &f.dir,
        lockstep_e2e::fleet::OperatorSpec {
            extra: vec![
                "--lease-namespace".into(),
                f.ns.clone(),
                "--identity".into(),
                "partial".into(),
            ],
            name: "-partial".into(),
        },
    )
    .unwrap();
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let http = http.clone();
        let admin = partial.admin;
        async move {
            http.get(format!("http://{admin}{path}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Long enough for every permitted cache to list many times over.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status("/healthz").await, 200, "alive");
    assert_eq!(
        status("/readyz").await,
        503,
        "not ready while a cache has not listed"
    );
    // The operator with every permission (this module's) turns ready once it has listed.
    let admin = turn.operator().admin;
    eventually("the full operator to be ready", WAIT, || async {
        let ready = reqwest::get(format!("http://{admin}/readyz"))
            .await
            .ok()?
            .status()
            .as_u16();
        (ready == 200).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(status("/readyz").await, 503, "the partial one still is not");
}

/// RouterConfig `name` of the fixture's fleet routing `app.test/` to `url`, as an object.
fn web_object(f: &Fixture, url: &str) -> lockstep_crds::RouterConfig {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
        "metadata": {"name": "web", "namespace": f.ns},
        "spec": {"fleet": f.fleet, "rules": [{"host": "app.test", "paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"url": url}}]}]}
    }))
    .unwrap()
}

/// Deletes `web` and waits until it is gone.
async fn delete_web(f: &Fixture) {
    f.api.delete("web", &Default::default()).await.unwrap();
    eventually("web deleted", WAIT, || async {
        f.api.get_opt("web").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_re_created_routerconfig_is_never_ready_on_the_old_objects_reports_or_writes() {
    let _turn = take_turn();
    let f = Fixture::new("recreate").await;
    let mut replicas: Vec<SimulatedReplica> = (0..2).map(|i| f.replica(&format!("proxy-{i}"), 10)).collect();
    for r in &mut replicas {
        r.join().await;
    }
    let post = kube::api::PostParams::default();

    // Re-created with the very same spec: generation 1 and the same digest again, but the
    // replicas' reports are about the old object, whose routes they may still serve.
    let old = f
        .api
        .create(&post, &web_object(&f, "http://127.0.0.1:9001"))
        .await
        .unwrap();
    for r in &replicas {
        r.report_current(&f.api, "web").await;
    }
    f.wait_condition("web", "Ready", "True", |c| c.status == "True")
        .await;
    delete_web(&f).await;
    let new = f
        .api
        .create(&post, &web_object(&f, "http://127.0.0.1:9001"))
        .await
        .unwrap();
    assert_ne!(new.uid(), old.uid());
    let (rc, ready) = f.wait_condition("web", "Ready", "judged", |_| true).await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "RolloutInProgress"),
        "{:?}",
        rc.status
    );
    assert_eq!(ready.message, "0/2 replicas serve generation 1");
    let status = rc.status.unwrap();
    assert!(
        status.last_accepted.as_ref().is_none_or(|a| a.uid == new.uid()),
        "{status:?}"
    );
    for r in &replicas {
        r.report_current(&f.api, "web").await;
    }
    f.wait_condition("web", "Ready", "True on the new object's reports", |c| {
        c.status == "True"
    })
    .await;

    // Deleted and re-created with another spec right after the last report that completes the
    // old object's rollout: the operator's Ready=True write for the old object is in flight
    // (its quorum list, then the write) while the new object appears. It must not land on
    // the new object, whose replicas have reported nothing.
    for round in 0..8 {
        delete_web(&f).await;
        let old = f
            .api
            .create(&post, &web_object(&f, "http://127.0.0.1:9001"))
            .await
            .unwrap();
        replicas[0].report_current(&f.api, "web").await;
        replicas[1].report_on("web", old.uid(), 1, &digest_of(&old)).await;
        f.api.delete("web", &Default::default()).await.unwrap();
        let new = f
            .api
            .create(&post, &web_object(&f, "http://127.0.0.1:9002"))
            .await
            .unwrap();
        let until = std::time::Instant::now() + Duration::from_millis(700);
        while std::time::Instant::now() < until {
            let rc = f.get("web").await;
            assert_eq!(rc.uid(), new.uid());
            let ready = condition(&rc, "Ready");
            let last = rc.status.as_ref().and_then(|s| s.last_accepted.clone());
            assert!(
                ready.as_ref().is_none_or(|c| c.status != "True"),
                "round {round}: the new object says Ready=True though no replica reported on it: {:?}",
                rc.status
            );
            assert!(
                last.as_ref().is_none_or(|a| a.uid == new.uid()),
                "round {round}: the old object's lastAccepted landed on the new one: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_routerconfig_whose_match_another_takes_or_frees_is_judged_again_at_once() {
    let _turn = take_turn();
    let f = Fixture::new("takeover").await;
    // A Lease that stays live for a minute without renewals (each of which would re-judge
    // every RouterConfig of the fleet): what the test sees comes from the edits alone.
    let mut replica = f.replica("proxy-0", 60);
    replica.join().await;
    replica.crash();
    // Created in this order (and named so, for creationTimestamps within one second).
    f.apply("a-older", &[("a.test", "/", "http://127.0.0.1:9001")]);
    f.apply("b-newer", &[("b.test", "/", "http://127.0.0.1:9002")]);
    replica.report_current(&f.api, "a-older").await;
    replica.report_current(&f.api, "b-newer").await;
    f.wait_condition("b-newer", "Ready", "True", |c| c.status == "True")
        .await;

    // The older one takes b.test/: the replicas drop b-newer's route, so b-newer must say so.
    let edited = std::time::Instant::now();
    f.apply(
        "a-older",
        &[
            ("a.test", "/", "http://127.0.0.1:9001"),
            ("b.test", "/", "http://127.0.0.1:9001"),
        ],
    );
    let (_, accepted) = f
        .wait_condition("b-newer", "Accepted", "False", |c| c.status == "False")
        .await;
    assert!(
        edited.elapsed() < Duration::from_secs(3),
        "re-judged only after {:?}, by a renewal",
        edited.elapsed()
    );
    assert_eq!(accepted.reason, "Conflict");
    assert!(accepted.message.contains("a-older"), "{}", accepted.message);
    let ready = condition(&f.get("b-newer").await, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NotAccepted")
    );

    // And frees it again: b-newer is accepted again without any edit of its own.
    let edited = std::time::Instant::now();
    f.apply("a-older", &[("a.test", "/", "http://127.0.0.1:9001")]);
    f.wait_condition("b-newer", "Accepted", "True again", |c| c.status == "True")
        .await;
    assert!(
        edited.elapsed() < Duration::from_secs(3),
        "re-judged only after {:?}, by a renewal",
        edited.elapsed()
    );
}

/// The `Ready` condition status of RouterReplica `name` as `kubectl get rrep` shows it; None
/// once it is gone.
fn rrep_ready(f: &Fixture, name: &str) -> Option<String> {
    let out =
        f.cp.kubectl_output(&["get", "rrep", name, "-n", &f.ns, "-o", "json"], None)
            .unwrap();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("NotFound"), "{stderr}");
        return None;
    }
    let rrep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let conditions = rrep["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = conditions.iter().find(|c| c["type"] == "Ready")?;
    Some(ready["status"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_sigkilled_replicas_routerreplica_is_deleted_once_its_lease_is_long_dead() {
    let turn = take_turn();
    let f = Fixture::new("collect").await;
    // A real proxy (3 s Lease), SIGKILLed: it deletes nothing, so its RouterReplica keeps
    // the Ready=True it wrote last.
    let mut doomed = f.proxy("doomed");
    doomed.wait_joined().unwrap();
    eventually("doomed's RouterReplica says Ready=True", WAIT, || async {
        (rrep_ready(&f, "doomed").as_deref() == Some("True")).then_some(())
    })
    .await
    .unwrap();
    doomed.crash();
    let killed = std::time::Instant::now();
    assert_eq!(rrep_ready(&f, "doomed").as_deref(), Some("True"));
    // Gone once its Lease has been dead for --replica-gc-after (2 s): its last renewal was
    // at most a second before the kill, so that is 4 to 5 s after it.
    eventually("doomed's RouterReplica deleted", WAIT, || async {
        rrep_ready(&f, "doomed").is_none().then_some(())
    })
    .await
    .unwrap();
    let after = killed.elapsed();
    assert!(
        after >= Duration::from_secs(3),
        "deleted {after:?} after the kill, before its Lease had been dead for the bound"
    );
    assert!(
        after < Duration::from_secs(15),
        "deleted only {after:?} after the kill"
    );
    let log = turn.operator().process.log_text();
    assert!(
        log.lines().any(
            |l| l.contains("deleted the RouterReplica of a replica whose Lease is gone")
                && l.contains(&format!("{}/doomed", f.ns))
        ),
        "{log}"
    );
}
