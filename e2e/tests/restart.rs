//! The control plane restarts under a running fleet (etcd and kube-apiserver stop and start
//! on the same data, so every watch resumes from a resource version the new apiserver's
//! cache no longer has): the proxies keep serving, and the next rollout still reaches
//! Ready. This binary has a control plane of its own because the test restarts it.

use std::time::Duration;

use lockstep_e2e::{
    ControlPlane, check,
    fleet::{Backend, Operator, OperatorSpec, Proxy, ProxySpec},
};

fn router_config(ns: &str, fleet: &str, url: &str) -> String {
    format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  fleet: {fleet}\n  rules:\n  - host: app.test\n    paths:\n    - path: /\n      backend: {{url: \"{url}\"}}\n"
    )
}

fn kubectl_wait(cp: &ControlPlane, ns: &str) {
    cp.wait_ready(ns, "web", Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("kubectl wait for {ns}/web: {e}"));
}

#[tokio::test]
async fn a_rollout_after_a_control_plane_restart_reaches_ready_and_serving_never_stops() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "restart").await.unwrap();
    let dir = cp.test_dir("restart");
    let fleet = "restart";
    let one = Backend::start(&dir, "one").unwrap();
    let two = Backend::start(&dir, "two").unwrap();
    let _operator = Operator::start(cp, &dir, OperatorSpec::default()).unwrap();
    let mut proxies: Vec<Proxy> = (0..2)
        .map(|i| Proxy::start(cp, &dir, ProxySpec::new(&format!("proxy-{i}"), &ns, fleet)).unwrap())
        .collect();
    for proxy in &mut proxies {
        proxy.wait_joined().unwrap();
    }
    cp.kubectl_apply(&router_config(&ns, fleet, &one.url())).unwrap();
    kubectl_wait(cp, &ns);

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

    cp.kubectl_apply(&router_config(&ns, fleet, &two.url())).unwrap();
    kubectl_wait(cp, &ns);
    for proxy in &proxies {
        assert_eq!(
            check::served_generation(&http, proxy.admin, &ns, "web").await,
            Some(2),
            "{} (logs in {})",
            proxy.spec.name,
            dir.display()
        );
        let (status, landed) = check::request(&http, proxy.http, "app.test", "/").await.unwrap();
        assert_eq!((status, landed.as_deref()), (200, Some("two")));
    }
}
