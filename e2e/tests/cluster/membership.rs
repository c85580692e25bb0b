//! What a replica's membership rests on, end to end with the real control plane, operator and
//! proxy binaries: a report counts for one object (uid), not for a name, and a replica whose
//! sync loop panicked or hangs gives up its membership (unready, no Lease renewal, a reason
//! on its RouterReplica and a metric) instead of holding every later rollout back.

use super::operator;
use std::time::Duration;

use kube::Api;
use lockstep_crds::RouterReplica;
use lockstep_e2e::{
    check, eventually,
    fixture::Fixture,
    fleet::{Backend, Proxy},
};
use nix::sys::signal::Signal;

const WAIT: Duration = Duration::from_secs(60);

async fn fixture(test: &str) -> Fixture {
    let _ = operator();
    Fixture::new(test).await
}

/// Where `host/` lands through `proxy`: the backend's name.
async fn lands(f: &Fixture, proxy: &Proxy, host: &str) -> Option<String> {
    check::request(&f.http, proxy.http, host, "/")
        .await
        .ok()
        .and_then(|(status, landed)| (status == 200).then_some(landed).flatten())
}

#[tokio::test]
async fn a_replica_frozen_across_a_delete_and_recreate_never_turns_ready_serving_the_old_object() {
    let f = fixture("recreate").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let two = Backend::start(&f.dir, "two").unwrap();
    // proxy-1's plan stalls for 2 s (below its 3 s Lease, the supervision's bound) when it
    // first sees `web` under another uid: from the moment it wakes, its join check alone
    // stands between it and answering ready with what it served before the freeze. (A
    // debounce no longer holds a lone change back.)
    let mut proxies = vec![
        f.proxy("proxy-0"),
        f.proxy_with("proxy-1", |spec| {
            spec.env
                .push(("LOCKSTEP_TEST_SYNC_FAULT".into(), "stall-replaced:web:2".into()));
        }),
        f.proxy("proxy-2"),
    ];
    for proxy in &mut proxies {
        proxy.wait_joined().unwrap();
    }
    f.apply("web", &[("app.test", "/", &one.url())]);
    f.kubectl_wait("web", WAIT);

    proxies[1].process.signal(Signal::SIGSTOP).unwrap();
    // Deleted and created again under its name: generation 1 again, another uid.
    f.cp.kubectl_ok(&["delete", "routerconfig", "web", "-n", &f.ns, "--wait=true"])
        .unwrap();
    f.apply("web", &[("app.test", "/", &two.url())]);
    f.kubectl_wait("web", WAIT);
    let rc = f.get("web").await;
    assert_eq!(rc.metadata.generation, Some(1));
    assert_eq!(
        rc.status.unwrap().synced.as_deref(),
        Some("2/2"),
        "the frozen one is out"
    );

    proxies[1].process.signal(Signal::SIGCONT).unwrap();
    let woken = &proxies[1];
    let rejoined = eventually("the woken replica to rejoin", WAIT, || async {
        let ready = check::is_ready(&f.http, woken.admin).await;
        if ready {
            let landed = lands(&f, woken, "app.test").await;
            assert_eq!(
                landed.as_deref(),
                Some("two"),
                "proxy-1 answered ready while serving the deleted object (logs in {})",
                f.dir.display()
            );
        }
        let synced = f.get("web").await.status?.synced;
        (ready && synced.as_deref() == Some("3/3")).then_some(())
    })
    .await;
    rejoined.unwrap();
    f.kubectl_wait("web", WAIT);
    for proxy in &proxies {
        assert_eq!(
            lands(&f, proxy, "app.test").await.as_deref(),
            Some("two"),
            "{} answers with the new object's routes",
            proxy.spec.name
        );
    }
}

/// The `Ready` condition of RouterReplica `name`: (status, reason, message).
async fn replica_ready(f: &Fixture, name: &str) -> Option<(String, String, String)> {
    let replicas: Api<RouterReplica> = Api::namespaced(f.client.clone(), &f.ns);
    let ready = replicas
        .get(name)
        .await
        .ok()?
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((ready.status, ready.reason, ready.message))
}

/// Starts proxy-0 and proxy-1 (with the sync fault `fault` injected: see
/// `proxy/src/fleet/mod.rs` `injected_fault`), serving `web` with `one`.
async fn fleet_with_faulty_replica(f: &Fixture, fault: &str, one: &Backend) -> Vec<Proxy> {
    let mut proxies = vec![
        f.proxy("proxy-0"),
        f.proxy_with("proxy-1", |spec| {
            spec.env.push(("LOCKSTEP_TEST_SYNC_FAULT".into(), fault.into()));
        }),
    ];
    for proxy in &mut proxies {
        proxy.wait_joined().unwrap();
    }
    f.apply("web", &[("app.test", "/", &one.url())]);
    f.kubectl_wait("web", WAIT);
    proxies
}

/// The faulty replica turns unready, says `reason` on its RouterReplica and counts it in
/// its metrics; the fleet's rollouts go on without it once its Lease runs out.
async fn gives_up_membership(f: &Fixture, faulty: &Proxy, reason: &str) {
    eventually("the faulty replica to turn unready", WAIT, || async {
        (!check::is_ready(&f.http, faulty.admin).await).then_some(())
    })
    .await
    .unwrap();
    let said = eventually("its RouterReplica to say why", WAIT, || async {
        let (status, found, message) = replica_ready(f, "proxy-1").await?;
        (status == "False" && found == reason).then_some(message)
    })
    .await;
    let said = match said {
        Ok(message) => message,
        Err(e) => panic!("{e}: {:?}", replica_ready(f, "proxy-1").await),
    };
    assert!(said.contains("not renewing the Lease"), "{said}");
    let metrics = f
        .http
        .get(format!("http://{}/metrics", faulty.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("lockstep_proxy_sync_failures_total{{kind=\"{reason}\"}} ");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(&series) && !l.ends_with(" 0")),
        "{series} in\n{metrics}"
    );
    // Faults only delay Ready: the trigger and a later edit are Ready without it.
    f.kubectl_wait("trigger", WAIT);
    let rc = f.get("trigger").await;
    assert_eq!(rc.status.unwrap().synced.as_deref(), Some("1/1"));
}

#[tokio::test]
async fn a_replica_whose_sync_loop_panics_gives_up_membership_and_rejoins_once_it_works() {
    let f = fixture("sync-panic").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let two = Backend::start(&f.dir, "two").unwrap();
    let proxies = fleet_with_faulty_replica(&f, "panic:trigger", &one).await;
    // A RouterConfig named "trigger" makes proxy-1's plan panic, every time.
    f.apply("trigger", &[("trigger.test", "/", &one.url())]);
    gives_up_membership(&f, &proxies[1], "SyncFailed").await;
    let (_, _, message) = replica_ready(&f, "proxy-1").await.unwrap();
    assert!(message.contains("injected fault"), "{message}");
    f.apply("web", &[("app.test", "/", &two.url())]);
    f.kubectl_wait("web", WAIT);

    // The fault goes away: the restarted loop works, and the replica rejoins the fleet
    // serving the current generation.
    f.cp.kubectl_ok(&["delete", "routerconfig", "trigger", "-n", &f.ns])
        .unwrap();
    let faulty = &proxies[1];
    eventually("proxy-1 to rejoin", WAIT, || async {
        let ready = check::is_ready(&f.http, faulty.admin).await;
        if ready {
            assert_eq!(lands(&f, faulty, "app.test").await.as_deref(), Some("two"));
        }
        let synced = f.get("web").await.status?.synced;
        (ready && synced.as_deref() == Some("2/2")).then_some(())
    })
    .await
    .unwrap();
    // Its RouterReplica says so with its next report: written after /readyz turned 200, so
    // read it until it does (seen "Joining" a moment after the rejoin under load).
    eventually("proxy-1's RouterReplica to say Serving", WAIT, || async {
        let (status, reason, _) = replica_ready(&f, "proxy-1").await?;
        (status == "True" && reason == "Serving").then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_replica_whose_sync_pass_hangs_gives_up_membership() {
    let f = fixture("sync-stall").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let proxies = fleet_with_faulty_replica(&f, "stall:trigger:3600", &one).await;
    // proxy-1's plan blocks for an hour once "trigger" exists; its Lease is 3 s, the bound.
    f.apply("trigger", &[("trigger.test", "/", &one.url())]);
    gives_up_membership(&f, &proxies[1], "SyncStalled").await;
    // Still serving its last table meanwhile: the data plane does not depend on the loop.
    assert_eq!(lands(&f, &proxies[1], "app.test").await.as_deref(), Some("one"));
}
