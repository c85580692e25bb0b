//! The control plane restarts under a running fleet (etcd and kube-apiserver stop and start
//! on the same data, so every watch resumes from a resource version the new apiserver's
//! cache no longer has): the proxies keep serving, and the next rollout still reaches
//! Ready. This binary has a control plane of its own because the test restarts it.

use std::time::Duration;

use lockstep_e2e::{
    ControlPlane, check,
    fixture::Fixture,
    fleet::{Backend, Operator, OperatorSpec, Proxy, ProxySpec},
};

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_rollout_after_a_control_plane_restart_reaches_ready_and_serving_never_stops() {
    let f = Fixture::new("restart").await;
    let (cp, ns, dir, fleet) = (f.cp, &f.ns, &f.dir, &f.fleet);
    let one = Backend::start(dir, "one").unwrap();
    let two = Backend::start(dir, "two").unwrap();
    let _operator = Operator::start(cp, dir, OperatorSpec::default()).unwrap();
    let mut proxies: Vec<Proxy> = (0..2)
        .map(|i| Proxy::start(cp, dir, ProxySpec::new(&format!("proxy-{i}"), ns, fleet)).unwrap())
        .collect();
    for proxy in &mut proxies {
        proxy.wait_joined().unwrap();
    }
    f.apply_route("web", "app.test", "/", &one.url());
    f.kubectl_wait("web", WAIT);

    // Traffic keeps flowing through every proxy while the apiserver and etcd restart: each
    // replica serves its last table with the control plane gone.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic: Vec<_> = proxies
        .iter()
        .map(|proxy| {
            let (addr, name, stop) = (proxy.http, proxy.spec.name.clone(), stop.clone());
            tokio::spawn(async move {
                let http = check::http();
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    match check::request(&http, addr, "app.test", "/").await {
                        Ok((200, Some(b))) if b == "one" => ok += 1,
                        other => failed.push(format!("{name}: {other:?}")),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::spawn_blocking(|| ControlPlane::shared().restart())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for handle in traffic {
        let (ok, failed) = handle.await.unwrap();
        assert!(
            failed.is_empty(),
            "requests failed across the restart: {failed:?}"
        );
        assert!(ok > 10, "traffic flowed through the restart ({ok} requests)");
    }
    let http = check::http();

    f.apply_route("web", "app.test", "/", &two.url());
    f.kubectl_wait("web", WAIT);
    for proxy in &proxies {
        assert_eq!(
            check::served_generation(&http, proxy.admin, ns, "web").await,
            Some(2),
            "{} (logs in {})",
            proxy.spec.name,
            dir.display()
        );
        let (status, landed) = check::request(&http, proxy.http, "app.test", "/").await.unwrap();
        assert_eq!((status, landed.as_deref()), (200, Some("two")));
    }
}
