//! The consistency barrier end to end: real kube-apiserver, the real operator and proxy
//! binaries, real kubectl and real HTTP requests. After `kubectl wait --for=condition=Ready`
//! returns, every live replica serves that generation; rejected generations never count;
//! dead and frozen replicas drop out when their Lease expires. (The operator's side alone,
//! with the test playing the replicas, is `operator/tests/simulated/barrier.rs`.)

use super::operator;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use lockstep_crds::RouterConfig;
use lockstep_e2e::{
    check::{self, ready_generation},
    eventually,
    fixture::{Fixture, router_config},
    fleet::{Backend, Proxy, ProxySpec},
};
use nix::sys::signal::Signal;

const WAIT: Duration = Duration::from_secs(60);

async fn fixture(test: &str) -> Fixture {
    let _ = operator();
    Fixture::new(test).await
}

trait BarrierFixture {
    /// `kubectl wait` for `name` in the test's namespace, with this binary's timeout.
    fn wait(&self, name: &str);
    /// Asserts every proxy serves `generation` of `name` and routes `host/` to `backend`.
    async fn assert_all_serve(
        &self,
        proxies: &[&Proxy],
        name: &str,
        generation: i64,
        host: &str,
        backend: &str,
    );
}

impl BarrierFixture for Fixture {
    fn wait(&self, name: &str) {
        self.kubectl_wait(name, WAIT);
    }

    async fn assert_all_serve(
        &self,
        proxies: &[&Proxy],
        name: &str,
        generation: i64,
        host: &str,
        backend: &str,
    ) {
        for proxy in proxies {
            let served = check::served_generation(&self.http, proxy.admin, &self.ns, name).await;
            assert_eq!(
                served,
                Some(generation),
                "{} /config (logs in {})",
                proxy.spec.name,
                self.dir.display()
            );
            let (status, landed) = check::request(&self.http, proxy.http, host, "/").await.unwrap();
            assert_eq!(
                (status, landed.as_deref()),
                (200, Some(backend)),
                "request via {}",
                proxy.spec.name
            );
        }
    }
}

/// Watches a RouterConfig and, the moment Ready=True is current for a generation, asks every
/// given proxy what it serves; any proxy behind is a violation of the barrier.
struct InvariantChecker {
    violations: Arc<Mutex<Vec<String>>>,
    ready_seen: Arc<Mutex<Vec<i64>>>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_invariant_checker(
    api: Api<RouterConfig>,
    name: &str,
    ns: &str,
    admins: Vec<std::net::SocketAddr>,
) -> InvariantChecker {
    let violations = Arc::new(Mutex::new(Vec::new()));
    let ready_seen = Arc::new(Mutex::new(Vec::new()));
    let (v, seen, name, ns) = (
        violations.clone(),
        ready_seen.clone(),
        name.to_owned(),
        ns.to_owned(),
    );
    let task = tokio::spawn(async move {
        let http = check::http();
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut events = std::pin::pin!(watcher(api, cfg).applied_objects());
        while let Some(Ok(rc)) = events.next().await {
            let Some(generation) = ready_generation(&rc) else {
                continue;
            };
            seen.lock().unwrap().push(generation);
            for admin in &admins {
                let served = check::served_generation(&http, *admin, &ns, &name).await;
                if served.is_none_or(|s| s < generation) {
                    v.lock().unwrap().push(format!(
                        "Ready=True at generation {generation} but {admin} serves {served:?}"
                    ));
                }
            }
        }
    });
    InvariantChecker {
        violations,
        ready_seen,
        task,
    }
}

#[tokio::test]
async fn kubectl_wait_returns_only_when_every_replica_serves_the_generation() {
    let f = fixture("rollout").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let two = Backend::start(&f.dir, "two").unwrap();
    let proxies = f.proxies(3);
    let all: Vec<&Proxy> = proxies.iter().collect();

    f.apply("web", &[("app.test", "/", &one.url())]);
    f.wait("web");
    f.assert_all_serve(&all, "web", 1, "app.test", "one").await;
    let rc = f.get("web").await;
    let status = rc.status.clone().unwrap();
    assert_eq!(
        (status.synced_replicas, status.replicas, status.synced.as_deref()),
        (Some(3), Some(3), Some("3/3"))
    );
    assert_eq!(status.observed_generation, Some(1));
    let json =
        f.cp.kubectl_ok(&["get", "rcfg", "web", "-n", &f.ns, "-o", "json"])
            .unwrap();
    assert_eq!(
        check::kstatus(&json).unwrap().0,
        "Current",
        "kstatus judges a Ready RouterConfig Current"
    );

    let InvariantChecker {
        violations,
        ready_seen,
        task: checker,
    } = spawn_invariant_checker(
        f.api.clone(),
        "web",
        &f.ns,
        proxies.iter().map(|p| p.admin).collect(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // apply and wait back to back, as a deploy pipeline does: no sleep in between.
    f.apply("web", &[("app.test", "/", &two.url())]);
    f.wait("web");
    f.assert_all_serve(&all, "web", 2, "app.test", "two").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    checker.abort();
    assert!(
        violations.lock().unwrap().is_empty(),
        "{:?}",
        violations.lock().unwrap()
    );
    assert!(
        ready_seen.lock().unwrap().contains(&2),
        "the checker saw Ready=True for generation 2"
    );

    let table = f.cp.kubectl_ok(&["get", "rcfg", "web", "-n", &f.ns]).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "SYNCED", "GENERATION", "AGE"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "True", "3/3", "2"]);
}

#[tokio::test]
async fn a_conflicting_generation_is_not_accepted_and_every_replica_keeps_its_table() {
    let f = fixture("conflict").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let two = Backend::start(&f.dir, "two").unwrap();
    let proxies = f.proxies(2);
    let all: Vec<&Proxy> = proxies.iter().collect();

    f.apply("owner", &[("app.test", "/", &one.url())]);
    // creationTimestamp has one-second resolution; "owner" must be strictly older (a tie
    // would go to namespace/name order, where "other" comes first).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.apply("other", &[("other.test", "/", &two.url())]);
    f.wait("owner");
    f.wait("other");

    // "other" now claims the host+path "owner" (older) routes: admissible, but a conflict.
    f.apply("other", &[("app.test", "/", &two.url())]);
    let rc = eventually("other to be judged at generation 2", WAIT, || async {
        let rc = f.get("other").await;
        let accepted = check::condition(&rc, "Accepted")?;
        (accepted.2 == 2).then_some(rc)
    })
    .await
    .unwrap();
    let accepted = rc
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .unwrap();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "Conflict")
    );
    assert!(
        accepted.message.contains("spec.rules[0].paths[0]"),
        "names the field: {}",
        accepted.message
    );
    assert!(
        accepted.message.contains(&format!("{}/owner", f.ns)),
        "names the owner: {}",
        accepted.message
    );
    let ready = check::ready_condition(&rc).unwrap();
    assert_eq!((ready.0.as_str(), ready.2), ("False", 2));

    // Every replica rejected generation 2 of "other", reported it, and still routes as before.
    let rc = eventually("both replicas to report the rejection", WAIT, || async {
        let rc = f.get("other").await;
        let entries = &rc.status.as_ref()?.replica_status;
        (entries.len() == 2
            && entries
                .iter()
                .all(|e| e.rejected.as_ref().is_some_and(|r| r.generation == 2)))
        .then_some(rc)
    })
    .await
    .unwrap();
    assert!(
        rc.status
            .unwrap()
            .replica_status
            .iter()
            .all(|e| e.observed_generation == 1)
    );
    f.assert_all_serve(&all, "owner", 1, "app.test", "one").await;
    for proxy in &all {
        let (status, landed) = check::request(&f.http, proxy.http, "other.test", "/")
            .await
            .unwrap();
        assert_eq!(
            (status, landed.as_deref()),
            (200, Some("two")),
            "the last good generation of other"
        );
    }

    // The operator recorded generation 1 of "other" as its last accepted one. A newer
    // RouterConfig that wants other.test is in conflict with it: "other"'s typo does not hand
    // its traffic over, and no Ready=True may name a route nobody serves. (Before
    // status.lastAccepted, "grabber" was Accepted and Ready while every replica kept routing
    // other.test to "other".)
    let rc = f.get("other").await;
    let last = rc.last_accepted();
    assert_eq!(last.map(|l| l.generation), Some(1), "{:?}", rc.status);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.apply("grabber", &[("other.test", "/", &one.url())]);
    let rc = eventually("grabber to be judged", WAIT, || async {
        let rc = f.get("grabber").await;
        check::condition(&rc, "Accepted").is_some().then_some(rc)
    })
    .await
    .unwrap();
    let accepted = check::condition(&rc, "Accepted").unwrap();
    assert_eq!(
        (accepted.0.as_str(), accepted.1.as_str()),
        ("False", "Conflict"),
        "{:?}",
        rc.status
    );
    let message = &rc
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .unwrap()
        .message;
    assert!(
        message.contains(&format!("{}/other", f.ns)),
        "names the holder: {message}"
    );
    assert_eq!(check::ready_condition(&rc).unwrap().0, "False");

    // The recorded spec survives the apiserver's round trip unchanged: a settled RouterConfig
    // gets no further status writes while Lease renewals keep the operator reconciling.
    let settled = f.get("owner").await;
    assert!(settled.last_accepted().is_some());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        f.get("owner").await.metadata.resource_version,
        settled.metadata.resource_version,
        "no status write without a change"
    );

    // A replica that starts now has no memory of generation 1, and serves it all the same.
    let mut late = f.proxy("proxy-late");
    late.wait_joined().unwrap();
    for proxy in all.iter().copied().chain([&late]) {
        let served = check::served_generation(&f.http, proxy.admin, &f.ns, "other").await;
        assert_eq!(served, Some(1), "{} serves other@1", proxy.spec.name);
        let (status, landed) = check::request(&f.http, proxy.http, "other.test", "/")
            .await
            .unwrap();
        assert_eq!(
            (status, landed.as_deref()),
            (200, Some("two")),
            "{}: other.test stays with other",
            proxy.spec.name
        );
    }
}

#[tokio::test]
async fn a_fleet_without_replicas_is_not_ready() {
    let f = fixture("empty").await;
    f.apply("web", &[("app.test", "/", "http://127.0.0.1:9")]);
    let rc = eventually("Ready to be computed", WAIT, || async {
        let rc = f.get("web").await;
        check::ready_condition(&rc).map(|_| rc)
    })
    .await
    .unwrap();
    let ready = check::ready_condition(&rc).unwrap();
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str(), ready.2),
        ("False", "NoReplicas", 1)
    );
    assert_eq!(rc.status.unwrap().observed_generation, Some(1));
    let json =
        f.cp.kubectl_ok(&["get", "rcfg", "web", "-n", &f.ns, "-o", "json"])
            .unwrap();
    assert_eq!(
        check::kstatus(&json).unwrap().0,
        "InProgress",
        "kstatus must not call a fleet without replicas Current"
    );
}

#[tokio::test]
async fn a_crashed_replica_holds_ready_back_until_its_lease_expires_and_rejoins_after_syncing() {
    let f = fixture("crash").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let two = Backend::start(&f.dir, "two").unwrap();
    let mut proxies = f.proxies(3);
    f.apply("web", &[("app.test", "/", &one.url())]);
    f.wait("web");

    proxies[2].crash();
    f.apply("web", &[("app.test", "/", &two.url())]);
    // Right after the edit the crashed replica still holds a fresh Lease: not Ready.
    let rc = eventually("generation 2 to be observed", WAIT, || async {
        let rc = f.get("web").await;
        (check::ready_condition(&rc)?.2 == 2).then_some(rc)
    })
    .await
    .unwrap();
    assert_eq!(
        check::ready_condition(&rc).unwrap().0,
        "False",
        "the crashed replica has not applied generation 2"
    );

    // Once its Lease (3 s) expires, Ready is computed without it.
    f.wait("web");
    let status = f.get("web").await.status.unwrap();
    assert_eq!(status.synced.as_deref(), Some("2/2"));
    let expired = format!("{}/proxy-2", f.ns);
    let names: Vec<String> = status.replica_status.iter().map(|e| e.name.clone()).collect();
    assert!(
        names.len() == 2 && !names.contains(&expired),
        "only live replicas are copied into the status: {names:?}"
    );
    let live: Vec<&Proxy> = proxies[..2].iter().collect();
    f.assert_all_serve(&live, "web", 2, "app.test", "two").await;

    // The restarted replica is ready only once it serves generation 2, then counts again.
    let restarted = f.proxy("proxy-2");
    let rejoined = eventually("proxy-2 to rejoin", WAIT, || async {
        if check::is_ready(&f.http, restarted.admin).await {
            let served = check::served_generation(&f.http, restarted.admin, &f.ns, "web").await;
            assert_eq!(served, Some(2), "ready implies serving the current generation");
        }
        let status = f.get("web").await.status?;
        (status.synced.as_deref() == Some("3/3") && check::is_ready(&f.http, restarted.admin).await)
            .then_some(())
    })
    .await;
    if let Err(e) = rejoined {
        let status = f.get("web").await.status;
        let ready = check::is_ready(&f.http, restarted.admin).await;
        panic!(
            "{e}: status {status:?}, proxy-2 ready {ready}, logs in {}",
            f.dir.display()
        );
    }
    f.wait("web");
}

#[tokio::test]
async fn a_frozen_replica_is_excluded_and_unready_after_waking_until_resynced() {
    let f = fixture("freeze").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let two = Backend::start(&f.dir, "two").unwrap();
    let proxies = f.proxies(3);
    f.apply("web", &[("app.test", "/", &one.url())]);
    f.wait("web");

    proxies[1].process.signal(Signal::SIGSTOP).unwrap();
    f.apply("web", &[("app.test", "/", &two.url())]);
    f.wait("web");
    let status = f.get("web").await.status.unwrap();
    assert_eq!(
        status.synced.as_deref(),
        Some("2/2"),
        "the frozen replica is excluded once its Lease expires"
    );

    proxies[1].process.signal(Signal::SIGCONT).unwrap();
    // From the moment it wakes, the replica may answer ready only while it serves generation 2.
    let frozen = &proxies[1];
    eventually("the woken replica to re-sync", WAIT, || async {
        let ready = check::is_ready(&f.http, frozen.admin).await;
        let served = check::served_generation(&f.http, frozen.admin, &f.ns, "web").await;
        if ready {
            assert_eq!(
                served,
                Some(2),
                "a woken replica reported ready before re-syncing"
            );
        }
        let synced = f.get("web").await.status?.synced;
        (ready && synced.as_deref() == Some("3/3")).then_some(())
    })
    .await
    .unwrap();
    f.wait("web");
    let all: Vec<&Proxy> = proxies.iter().collect();
    f.assert_all_serve(&all, "web", 2, "app.test", "two").await;
}

#[tokio::test]
async fn service_backends_follow_their_endpointslices() {
    let f = fixture("service").await;
    let a = Backend::start(&f.dir, "a").unwrap();
    let b = Backend::start(&f.dir, "b").unwrap();
    let proxies = f.proxies(2);
    // A Service without selector: the test plays kubelet and endpoint controller. Names under
    // .localhost are how a slice points at this host (the apiserver refuses loopback IPs).
    let slice = |ready_a: bool, ready_b: bool| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: 8080}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: api-a\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: api}}\n\
             addressType: FQDN\nports: [{{name: http, port: {pa}}}]\nendpoints: [{{addresses: [a.localhost], conditions: {{ready: {ready_a}}}}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: api-b\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: api}}\n\
             addressType: FQDN\nports: [{{name: http, port: {pb}}}]\nendpoints: [{{addresses: [b.localhost], conditions: {{ready: {ready_b}}}}}]\n",
            ns = f.ns,
            pa = a.addr.port(),
            pb = b.addr.port(),
        )
    };
    f.cp.kubectl_apply(&slice(true, false)).unwrap();
    f.cp.kubectl_apply(&format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  fleet: {fleet}\n  rules:\n  - host: api.test\n    paths:\n    - path: /\n      backend: {{service: {{name: api, port: 8080}}}}\n",
        ns = f.ns,
        fleet = f.fleet
    ))
    .unwrap();
    f.wait("web");
    let landed_on = |proxy: &Proxy| {
        let (http, addr) = (f.http.clone(), proxy.http);
        async move { check::request(&http, addr, "api.test", "/").await.unwrap() }
    };
    for proxy in &proxies {
        for _ in 0..4 {
            assert_eq!(
                landed_on(proxy).await,
                (200, Some("a".to_owned())),
                "only a is ready"
            );
        }
    }
    // b turns ready, a stops being ready: traffic moves without any RouterConfig change.
    f.cp.kubectl_apply(&slice(false, true)).unwrap();
    for proxy in &proxies {
        eventually("traffic to move to b", WAIT, || async {
            (landed_on(proxy).await == (200, Some("b".to_owned()))).then_some(())
        })
        .await
        .unwrap();
    }
    // No ready endpoint at all: 503, not a hang or a 502.
    f.cp.kubectl_apply(&slice(false, false)).unwrap();
    for proxy in &proxies {
        eventually("503 without ready endpoints", WAIT, || async {
            (landed_on(proxy).await.0 == 503).then_some(())
        })
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_proxy_writes_only_its_own_lease_and_router_replica_and_never_a_routerconfig() {
    let f = fixture("rbac").await;
    f.apply("web", &[("app.test", "/", "http://127.0.0.1:9")]);
    let kubeconfig = f.cp.proxy_kubeconfig(&f.ns, "proxy-0", &[&f.ns]).unwrap();
    let as_proxy = |args: &[&str]| {
        let mut cmd = std::process::Command::new("kubectl");
        cmd.env("KUBECONFIG", &kubeconfig).args(args);
        cmd.output().unwrap()
    };
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    for (what, args) in [
        (
            "patch a spec",
            vec![
                "patch",
                "rcfg",
                "web",
                "--type=merge",
                "-p",
                r#"{"spec":{"fleet":"stolen"}}"#,
            ],
        ),
        (
            "patch a status",
            vec![
                "patch",
                "rcfg",
                "web",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"synced":"9/9"}}"#,
            ],
        ),
        ("delete a RouterConfig", vec!["delete", "rcfg", "web"]),
    ] {
        let out = as_proxy(&[&args[..], &["-n", &f.ns]].concat());
        assert!(
            !out.status.success() && stderr(&out).contains("forbidden"),
            "a proxy could {what}: {}",
            stderr(&out)
        );
    }

    // Its own RouterReplica and Lease: allowed.
    let own = |name: &str| {
        format!(
            "apiVersion: lockstep.dev/v1alpha1\nkind: RouterReplica\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec: {{fleet: {fleet}, namespaces: [{ns}]}}\n---\n\
             apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: lockstep-proxy-{name}, namespace: {ns}}}\n\
             spec: {{holderIdentity: {name}, leaseDurationSeconds: 10}}\n",
            ns = f.ns,
            fleet = f.fleet
        )
    };
    let apply_as_proxy = |yaml: String| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("objects.yaml");
        std::fs::write(&file, yaml).unwrap();
        as_proxy(&[
            "apply",
            "--server-side",
            "--field-manager=lockstep-proxy",
            "-f",
            file.to_str().unwrap(),
        ])
    };
    let out = apply_as_proxy(own("proxy-0"));
    assert!(out.status.success(), "its own objects: {}", stderr(&out));
    // Another replica's: refused by the admission policy, with a message saying why.
    let out = apply_as_proxy(own("proxy-1"));
    assert!(!out.status.success(), "proxy-0 wrote proxy-1's objects");
    assert!(
        stderr(&out).contains("may write only its own Lease and RouterReplica")
            && stderr(&out).contains("proxy-0"),
        "{}",
        stderr(&out)
    );
    for (verb, resource, allowed) in [
        ("update", "routerconfigs.lockstep.dev", "no"),
        ("create", "routerconfigs.lockstep.dev", "no"),
        ("create", "leases.coordination.k8s.io", "yes"),
        ("create", "routerreplicas.lockstep.dev", "yes"),
        ("create", "secrets", "no"),
        ("list", "secrets", "yes"),
    ] {
        let out = as_proxy(&["auth", "can-i", verb, resource, "-n", &f.ns]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            allowed,
            "can a proxy {verb} {resource}?"
        );
    }
    // No cluster-wide Secret read: only the namespaces it serves.
    let out = as_proxy(&["auth", "can-i", "list", "secrets", "-n", "kube-system"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    assert_eq!(f.get("web").await.spec.fleet, f.fleet, "the spec is unchanged");
}

/// Backends each proxy sent `n` requests for `host/` to, by backend name.
async fn split(
    f: &Fixture,
    proxy: &Proxy,
    host: &str,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let (status, backend) = check::request(&f.http, proxy.http, host, "/").await.unwrap();
        assert_eq!(status, 200);
        *seen.entry(backend.unwrap_or_default()).or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn a_canary_weight_change_is_a_barrier_like_any_other() {
    let f = fixture("canary").await;
    let v1 = Backend::start(&f.dir, "v1").unwrap();
    let v2 = Backend::start(&f.dir, "v2").unwrap();
    let proxies = f.proxies(2);
    let canary = |w1: u32, w2: u32| {
        format!(
            "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: shop, namespace: {ns}}}\nspec:\n  fleet: {fleet}\n  rules:\n  - host: shop.test\n    paths:\n    - path: /\n      backends:\n      - {{url: \"{u1}\", weight: {w1}}}\n      - {{url: \"{u2}\", weight: {w2}}}\n",
            ns = f.ns,
            fleet = f.fleet,
            u1 = v1.url(),
            u2 = v2.url(),
        )
    };
    // 10%: once kubectl wait returns, every replica splits 90/10 (smoothly: exactly 20 of
    // every 200 requests of one replica).
    f.cp.kubectl_apply(&canary(90, 10)).unwrap();
    f.wait("shop");
    for proxy in &proxies {
        let seen = split(&f, proxy, "shop.test", 200).await;
        assert_eq!(seen.get("v2"), Some(&20), "{seen:?}");
        assert_eq!(seen.get("v1"), Some(&180), "{seen:?}");
    }
    // Promote: a weight change is a new generation; once kubectl wait returns, no replica
    // sends anything to v1 (weight 0 drains).
    f.cp.kubectl_apply(&canary(0, 100)).unwrap();
    f.wait("shop");
    assert_eq!(f.get("shop").await.metadata.generation, Some(2));
    for proxy in &proxies {
        let seen = split(&f, proxy, "shop.test", 50).await;
        assert_eq!(seen.get("v2"), Some(&50), "{seen:?}");
    }
}

#[tokio::test]
async fn grpc_reaches_a_service_port_with_app_protocol_h2c() {
    let f = fixture("grpc").await;
    let (probe, _server, port) =
        lockstep_e2e::grpc_probe_server(&f.dir).expect("build and start the gRPC probe's server");
    let proxies = f.proxies(2);
    // The Service port says it speaks HTTP/2 over cleartext; the slice points at this host.
    f.cp.kubectl_apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: greeter, namespace: {ns}}}\nspec:\n  ports: [{{name: grpc, port: 80, appProtocol: kubernetes.io/h2c}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: greeter-a\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: greeter}}\n\
         addressType: FQDN\nports: [{{name: grpc, port: {port}, appProtocol: kubernetes.io/h2c}}]\nendpoints: [{{addresses: [g.localhost]}}]\n---\n\
         apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: grpc, namespace: {ns}}}\nspec:\n  fleet: {fleet}\n  rules:\n  - host: grpc.test\n    paths:\n    - path: /\n      backend: {{service: {{name: greeter, port: 80}}}}\n",
        ns = f.ns,
        fleet = f.fleet,
    ))
    .unwrap();
    f.wait("grpc");
    for proxy in &proxies {
        let out = std::process::Command::new(&probe)
            .args([
                "client",
                "--target",
                &proxy.http.to_string(),
                "--authority",
                "grpc.test",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("ok stream 5"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn sigterm_turns_a_proxy_unready_deletes_its_lease_and_router_replica_and_drains() {
    let f = fixture("sigterm").await;
    let backend = Backend::start(&f.dir, "slow").unwrap();
    // A 30 s Lease: if the replica did not delete it, the operator would wait that long.
    let mut proxies = f.proxies_with(2, |spec| spec.lease_seconds = 30);
    f.apply("web", &[("app.test", "/", &backend.url())]);
    f.wait("web");

    // A request in flight (the backend answers after 1.5 s) when SIGTERM arrives.
    let (http, addr) = (f.http.clone(), proxies[1].http);
    let in_flight =
        tokio::spawn(async move { check::request(&http, addr, "app.test", "/?sleep_ms=1500").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let leaving = &mut proxies[1];
    leaving.process.signal(Signal::SIGTERM).unwrap();
    let admin = leaving.admin;
    eventually("proxy-1 to turn unready", WAIT, || async {
        (!check::is_ready(&f.http, admin).await).then_some(())
    })
    .await
    .unwrap();

    let client = f.cp.client().await.unwrap();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), &f.ns);
    let replicas: Api<lockstep_crds::RouterReplica> = Api::namespaced(client, &f.ns);
    eventually(
        "proxy-1's Lease and RouterReplica to be deleted",
        WAIT,
        || async {
            let lease = leases.get_opt("lockstep-proxy-proxy-1").await.ok()?;
            let rrep = replicas.get_opt("proxy-1").await.ok()?;
            (lease.is_none() && rrep.is_none()).then_some(())
        },
    )
    .await
    .unwrap();
    assert!(leases.get_opt("lockstep-proxy-proxy-0").await.unwrap().is_some());
    assert!(replicas.get_opt("proxy-0").await.unwrap().is_some());

    let (status, landed) = in_flight.await.unwrap().unwrap();
    assert_eq!(
        (status, landed.as_deref()),
        (200, Some("slow")),
        "the in-flight request was drained"
    );
    assert_eq!(leaving.process.wait_exit(WAIT).unwrap(), Some(0), "a clean exit");

    // The operator counts the remaining replica at once, long before a 30 s Lease would run out.
    f.apply("web", &[("app.test", "/", &format!("{}/", backend.url()))]);
    let started = std::time::Instant::now();
    f.wait("web");
    let rc = f.get("web").await;
    assert_eq!(rc.status.unwrap().synced.as_deref(), Some("1/1"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_all_namespaces_fleet_serves_and_reports_every_namespace() {
    let f = fixture("all-ns").await;
    let client = f.cp.client().await.unwrap();
    let other = f.cp.namespace(&client, "all-ns-other").await.unwrap();
    let one = Backend::start(&f.dir, "one").unwrap();
    let two = Backend::start(&f.dir, "two").unwrap();
    // Cluster-wide reads need cluster-wide RBAC (deploy/ grants reads per namespace instead);
    // this replica runs as admin.
    let mut spec = ProxySpec::new("proxy-all", &f.ns, &f.fleet);
    spec.extra = vec!["--all-namespaces".into()];
    let mut proxy = Proxy::start(f.cp, &f.dir, spec).unwrap();
    proxy.wait_joined().unwrap();
    f.apply("web", &[("one.test", "/", &one.url())]);
    f.cp.kubectl_apply(&router_config(
        &other,
        &f.fleet,
        "web",
        &[("two.test", "/", &two.url())],
    ))
    .unwrap();
    f.wait("web");
    lockstep_e2e::fixture::kubectl_wait(f.cp, &other, "web", WAIT);
    for (host, backend) in [("one.test", "one"), ("two.test", "two")] {
        let (status, landed) = check::request(&f.http, proxy.http, host, "/").await.unwrap();
        assert_eq!((status, landed.as_deref()), (200, Some(backend)));
    }
    let rrep: lockstep_crds::RouterReplica = Api::namespaced(client, &f.ns).get("proxy-all").await.unwrap();
    assert_eq!(rrep.spec.namespaces, ["*"]);
    let mut served: Vec<String> = rrep
        .status
        .unwrap()
        .served
        .iter()
        .map(|e| format!("{}/{}@{}", e.namespace, e.name, e.observed_generation))
        .collect();
    served.sort();
    let mut want = vec![format!("{}/web@1", f.ns), format!("{other}/web@1")];
    want.sort();
    assert_eq!(served, want);
}
