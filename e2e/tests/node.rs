//! The install on a real one-node cluster (`e2e/node/up.sh`: kubelet, containerd, runc,
//! bridge CNI, controller-manager, scheduler, kube-proxy; images from `e2e/images`):
//! `kubectl apply -k deploy/` for real, then a backend behind a Service whose EndpointSlices
//! the real controller writes, requests through the proxies' Service, `kubectl wait` as the
//! barrier, `kubectl rollout restart` of the proxies under load with no failed request, a
//! Pod deletion removing its RouterReplica (ownerReference garbage collection), a Gateway
//! served by the fleet the operator provisions for it, and the Helm chart installed the same
//! way.
//!
//! Needs root and a machine that can run containers, so `cargo test` lists it as ignored;
//! `e2e/test` runs it (`cargo test -p lockstep-e2e --test node -- --ignored`) when
//! `e2e/node/up.sh --check` passes, and prints `SKIPPED` with the reason when it does not.

use std::{
    io::Write,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use lockstep_e2e::{
    node::{Node, pod_is_ready},
    repo_root,
};
use serde_json::Value;

const SYSTEM: &str = "lockstep-system";

fn json(node: &Node, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&node.kubectl_ok(&all).expect("kubectl get")).expect("JSON")
}

fn apply_stdin(node: &Node, yaml: &str) {
    let mut child = node
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl apply");
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pods of `namespace` matching `selector` that are Ready (and not terminating).
fn ready_pods(node: &Node, namespace: &str, selector: &str) -> Vec<Value> {
    let list = json(node, &["get", "pods", "-n", namespace, "-l", selector]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| pod_is_ready(p))
        .cloned()
        .collect()
}

/// Prints the cluster's state ([`Node::state_report`]) when the test panics, before the node
/// is stopped: declared after the node, it is dropped first.
struct ReportOnPanic<'a>(&'a Node);

impl Drop for ReportOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "[node] the cluster when the test failed:\n{}",
                self.0.state_report()
            );
        }
    }
}

fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

const BACKEND: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: lockstep.local/lockstep-e2e-backend:0.1.0
        imagePullPolicy: Never
        args: [--listen, "0.0.0.0:8080", --name, web]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: http}]
---
apiVersion: lockstep.dev/v1alpha1
kind: RouterConfig
metadata: {name: web, namespace: default}
spec:
  fleet: default
  rules:
  - host: web.example
    paths:
    - path: /
      backend:
        service: {name: web, port: 8080}
"#;

/// One request through the proxies' Service (ClusterIP, routed by kube-proxy) on a new
/// connection; Ok when the backend answered.
async fn request(client: &reqwest::Client, url: &str) -> Result<(), String> {
    let response = client
        .get(url)
        .header("host", "web.example")
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("{e:?}"))?;
    if status.is_success() && body.contains(r#""backend":"web""#) {
        Ok(())
    } else {
        Err(format!("{status}: {body}"))
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn proxy_url(node: &Node, namespace: &str) -> String {
    let ip = node
        .kubectl_ok(&[
            "get",
            "svc",
            "-n",
            namespace,
            "lockstep-proxy",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .unwrap();
    format!("http://{ip}/")
}

/// The backend behind its Service, the RouterConfig Ready (the real `kubectl wait`), and
/// requests through the proxies' Service answered by it.
async fn serve_web(node: &Node, namespace: &str) {
    apply_stdin(node, BACKEND);
    wait_until("2 web backends Ready", Duration::from_secs(120), || {
        (ready_pods(node, "default", "app=web").len() == 2).then_some(())
    });
    // The EndpointSlice is the real controller's.
    wait_until(
        "the web EndpointSlice lists both backends",
        Duration::from_secs(60),
        || {
            let slices = json(
                node,
                &[
                    "get",
                    "endpointslices",
                    "-n",
                    "default",
                    "-l",
                    "kubernetes.io/service-name=web",
                ],
            );
            let slice = slices["items"].as_array()?.first()?.clone();
            let ready = slice["endpoints"]
                .as_array()?
                .iter()
                .filter(|e| e["conditions"]["ready"] == true)
                .count();
            (slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
                == "endpointslice-controller.k8s.io"
                && ready == 2)
                .then_some(())
        },
    );
    wait_web_ready(node, "kubectl wait --for=condition=Ready rcfg/web");
    let url = proxy_url(node, namespace);
    let client = client();
    // kube-proxy programs a new Service's rules some time after its endpoints turn ready,
    // and nothing in the API says when (a fresh Helm release's Service was refused once,
    // 2026-11-28): the first answer is waited for, then every request must be answered.
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(error) = request(&client, &url).await {
        assert!(
            Instant::now() < deadline,
            "no answer through {url} within 60 s: {error}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for i in 0..30 {
        request(&client, &url)
            .await
            .unwrap_or_else(|e| panic!("request {i} through {url}: {e}"));
    }
}

/// The real `kubectl wait --for=condition=Ready` on RouterConfig web, the barrier.
fn wait_web_ready(node: &Node, what: &str) {
    node.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "routerconfig/web",
        "-n",
        "default",
        "--timeout=120s",
    ])
    .unwrap_or_else(|e| panic!("kubectl wait rcfg/web ({what}): {e}"));
}

fn rollout_status(node: &Node, namespace: &str, deployment: &str) {
    node.kubectl_ok(&["rollout", "status", "-n", namespace, deployment, "--timeout=300s"])
        .unwrap_or_else(|e| panic!("rollout status {deployment}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root and a machine that runs containers: e2e/test runs it when `e2e/node/up.sh --check` passes"]
async fn install_on_a_node_kustomize_then_helm() {
    if let Some(why) = Node::cannot_start() {
        panic!("e2e/node/up.sh --check: {why}");
    }
    let bin_dir = {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().to_path_buf()
    };
    let node = tokio::task::block_in_place(|| Node::start(&bin_dir)).expect("start the node");
    let _report = ReportOnPanic(&node);
    let started = Instant::now();
    tokio::task::block_in_place(|| kustomize_install(&node));
    eprintln!("[node] kustomize install Ready in {:?}", started.elapsed());

    tokio::task::block_in_place(|| an_unprogrammed_service_address_is_refused(&node));
    serve_web(&node, SYSTEM).await;
    a_gateway_gets_a_fleet_that_serves(&node).await;
    rollout_restart_under_load(&node).await;
    tokio::task::block_in_place(|| pod_deletion_removes_its_router_replica(&node));

    // Uninstall, then the Helm chart on the same node.
    tokio::task::block_in_place(|| {
        let deploy = repo_root().join("deploy");
        node.kubectl_ok(&["delete", "routerconfig", "web", "-n", "default", "--wait=true"])
            .unwrap();
        // The GatewayClass may be gone before kubectl reaches it: deleting its CRD deletes it.
        node.kubectl_ok(&[
            "delete",
            "-k",
            deploy.to_str().unwrap(),
            "--ignore-not-found",
            "--wait=true",
            "--timeout=180s",
        ])
        .expect("kubectl delete -k deploy/");
        helm_install(&node);
    });
    serve_web(&node, "lockstep-helm").await;
    tokio::task::block_in_place(|| {
        let helm = helm_bin();
        let out = std::process::Command::new(helm)
            .args([
                "uninstall",
                "lockstep",
                "-n",
                "lockstep-helm",
                "--wait",
                "--timeout",
                "3m",
            ])
            .env("KUBECONFIG", node.kubeconfig())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm uninstall: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A connection to a Service address kube-proxy has not programmed (here: one no Service
/// holds) is refused on the node, not sent down the machine's default route. A Gateway's
/// address is its Service's cluster IP, and a client that dials it in the second before
/// kube-proxy's rules are in must get an error it retries, not some other server's answer
/// on a connection it keeps (a conformance run's gRPC client once got a 404 from the
/// machine's egress proxy for 90 seconds that way).
fn an_unprogrammed_service_address_is_refused(node: &Node) {
    let services = json(node, &["get", "services", "--all-namespaces"]);
    let taken: Vec<String> = services["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["spec"]["clusterIP"].as_str().map(str::to_owned))
        .collect();
    let free = (200..=254)
        .rev()
        .map(|last| format!("10.0.0.{last}"))
        .find(|ip| !taken.contains(ip))
        .expect("a free address in the Service range");
    let address: std::net::SocketAddr = format!("{free}:80").parse().unwrap();
    match std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("{address}, which no Service holds: {e} (want: connection refused)"),
        Ok(_) => panic!("{address}, which no Service holds, accepted a connection on the node"),
    }
}

/// The GatewayClass `lockstep` the install ships, a Gateway naming no fleet and an HTTPRoute to
/// the web backend: the operator provisions the Gateway's fleet (2 proxy Pods by default),
/// the Gateway gets its Service's cluster IP as address and `Programmed=True` (the real
/// `kubectl wait`), and a request to that address on the listener's port reaches the backend.
/// Deleting the Gateway takes its Deployment and Service with it.
async fn a_gateway_gets_a_fleet_that_serves(node: &Node) {
    let started = Instant::now();
    apply_stdin(
        node,
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: lockstep
  listeners: [{name: web, protocol: HTTP, port: 80, hostname: web.example}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: edge}]
  hostnames: [web.example]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
"#,
    );
    let fleet = lockstep_core::gateway::provision::fleet_name("default", "edge");
    let selector = format!("lockstep.dev/fleet={fleet}");
    wait_until("2 provisioned proxies Ready", Duration::from_secs(180), || {
        (ready_pods(node, "default", &selector).len() == 2).then_some(())
    });
    node.kubectl_ok(&[
        "wait",
        "--for=condition=Programmed",
        "gateway/edge",
        "-n",
        "default",
        "--timeout=120s",
    ])
    .expect("kubectl wait --for=condition=Programmed gateway/edge");
    let gateway = json(node, &["get", "gateway", "edge", "-n", "default"]);
    let address = gateway["status"]["addresses"][0]["value"]
        .as_str()
        .expect("an address")
        .to_owned();
    let service = json(node, &["get", "service", &fleet, "-n", "default"]);
    assert_eq!(service["spec"]["clusterIP"], address.as_str());
    eprintln!(
        "[node] Gateway edge Programmed at {address} in {:?}",
        started.elapsed()
    );
    let url = format!("http://{address}/");
    let client = client();
    // kube-proxy programs a new Service's rules some time after its endpoints turn ready.
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(error) = request(&client, &url).await {
        assert!(
            Instant::now() < deadline,
            "no answer through the Gateway at {url} within 60 s: {error}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for i in 0..10 {
        request(&client, &url)
            .await
            .unwrap_or_else(|e| panic!("request {i} through the Gateway at {url}: {e}"));
    }
    node.kubectl_ok(&["delete", "gateway", "edge", "-n", "default", "--wait=true"])
        .unwrap();
    node.kubectl_ok(&["delete", "httproute", "web", "-n", "default"])
        .unwrap();
    wait_until("the provisioned fleet deleted", Duration::from_secs(120), || {
        let gone = node
            .kubectl_ok(&[
                "get",
                "deployment,service",
                "-n",
                "default",
                "-l",
                &selector,
                "-o",
                "name",
            ])
            .ok()?;
        let pods = ready_pods(node, "default", &selector);
        (gone.trim().is_empty() && pods.is_empty()).then_some(())
    });
}

fn kustomize_install(node: &Node) {
    let deploy = repo_root().join("deploy");
    // As README.md installs: the Gateway API CRDs first, because kubectl maps the kind of every
    // object of deploy/ (its GatewayClass included) before it applies any. Client-side, as the
    // apply of deploy/ that follows takes them over.
    let crds = deploy.join("gateway-api/standard");
    node.kubectl_ok(&["apply", "-f", crds.to_str().unwrap()])
        .expect("kubectl apply -f deploy/gateway-api/standard/");
    node.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/gatewayclasses.gateway.networking.k8s.io",
    ])
    .expect("the GatewayClass CRD established");
    node.kubectl_ok(&["apply", "-k", deploy.to_str().unwrap()])
        .expect("kubectl apply -k deploy/");
    rollout_status(node, SYSTEM, "deployment/lockstep-operator");
    rollout_status(node, SYSTEM, "deployment/lockstep-proxy");
    let operators = ready_pods(node, SYSTEM, "app.kubernetes.io/component=operator");
    assert_eq!(operators.len(), 2, "2 operator replicas Ready");
    let proxies = ready_pods(node, SYSTEM, "app.kubernetes.io/component=proxy");
    assert_eq!(proxies.len(), 3, "3 proxy replicas Ready");
    // One operator leads: a Lease in lockstep-system held by one of the operator Pods.
    let names: Vec<&str> = operators
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    wait_until(
        "an operator Pod holds the leader Lease",
        Duration::from_secs(60),
        || {
            let leases = json(node, &["get", "leases", "-n", SYSTEM]);
            leases["items"].as_array()?.iter().find_map(|l| {
                let holder = l["spec"]["holderIdentity"].as_str()?;
                names.contains(&holder).then_some(())
            })
        },
    );
    // Each proxy Pod reports on its own RouterReplica.
    wait_until("a RouterReplica per proxy Pod", Duration::from_secs(60), || {
        let replicas = json(node, &["get", "routerreplicas", "-n", SYSTEM]);
        let mut got: Vec<String> = replicas["items"]
            .as_array()?
            .iter()
            .map(|r| r["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        got.sort();
        let mut want: Vec<String> = proxies
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        want.sort();
        (got == want).then_some(())
    });
}

async fn rollout_restart_under_load(node: &Node) {
    let url = proxy_url(node, SYSTEM);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (url, stop, ok, failed) = (url.clone(), stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                match request(&client, &url).await {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failed.lock().unwrap().push(e),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: Vec<String> = ready_pods(node, SYSTEM, "app.kubernetes.io/component=proxy")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    let started = Instant::now();
    tokio::task::block_in_place(|| {
        node.kubectl_ok(&["rollout", "restart", "-n", SYSTEM, "deployment/lockstep-proxy"])
            .expect("kubectl rollout restart");
        rollout_status(node, SYSTEM, "deployment/lockstep-proxy");
        // The old Pods are gone (their drain finished), not just replaced in the status.
        wait_until("the old proxy Pods are gone", Duration::from_secs(120), || {
            let pods = json(
                node,
                &[
                    "get",
                    "pods",
                    "-n",
                    SYSTEM,
                    "-l",
                    "app.kubernetes.io/component=proxy",
                ],
            );
            let names: Vec<&str> = pods["items"]
                .as_array()?
                .iter()
                .map(|p| p["metadata"]["name"].as_str().unwrap())
                .collect();
            (!names.iter().any(|n| before.iter().any(|b| b == n))).then_some(())
        });
        wait_web_ready(node, "Ready after the rollout");
    });
    let rollout = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let failed = failed.lock().unwrap();
    let ok = ok.load(Ordering::Relaxed);
    eprintln!(
        "[node] rollout restart of 3 proxies under load: {ok} requests answered, {} failed, rollout {rollout:?}",
        failed.len()
    );
    assert!(ok > 100, "the load ran ({ok} requests)");
    assert!(
        failed.is_empty(),
        "{} failed requests, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(
        ready_pods(node, SYSTEM, "app.kubernetes.io/component=proxy").len(),
        3
    );
}

/// A proxy frozen (SIGSTOP, so it cannot clean up after itself) and its Pod deleted: the
/// garbage collector removes its RouterReplica through the ownerReference to the Pod.
fn pod_deletion_removes_its_router_replica(node: &Node) {
    let pod = ready_pods(node, SYSTEM, "app.kubernetes.io/component=proxy")
        .into_iter()
        .next()
        .unwrap();
    let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
    let replica = json(node, &["get", "routerreplica", "-n", SYSTEM, &name]);
    let owners = replica["metadata"]["ownerReferences"]
        .as_array()
        .expect("ownerReferences");
    assert!(
        owners
            .iter()
            .any(|o| o["kind"] == "Pod" && o["uid"] == uid.as_str()),
        "RouterReplica {name} is owned by its Pod: {owners:?}"
    );
    // Freeze the proxy process (its host pid, from containerd) so only the GC can act.
    let container = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_owned();
    let out = std::process::Command::new("ctr")
        .arg("-a")
        .arg(node.containerd_socket())
        .args(["-n", "k8s.io", "tasks", "ls"])
        .output()
        .unwrap();
    let tasks = String::from_utf8_lossy(&out.stdout);
    let pid: i32 = tasks
        .lines()
        .find(|l| l.starts_with(&container))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no task {container} in {tasks}"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP)
        .expect("SIGSTOP the proxy");
    node.kubectl_ok(&[
        "delete",
        "pod",
        "-n",
        SYSTEM,
        &name,
        "--grace-period=0",
        "--force",
        "--wait=false",
    ])
    .expect("delete the Pod");
    wait_until(
        "the deleted Pod's RouterReplica is gone",
        Duration::from_secs(90),
        || {
            let out = node
                .kubectl()
                .args(["get", "routerreplica", "-n", SYSTEM, &name])
                .stdin(Stdio::null())
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stderr)
                .contains("NotFound")
                .then_some(())
        },
    );
    eprintln!("[node] RouterReplica {name} removed by the garbage collector after its Pod was deleted");
    // The ReplicaSet replaces the Pod and the barrier holds again.
    wait_until("3 proxies Ready again", Duration::from_secs(120), || {
        (ready_pods(node, SYSTEM, "app.kubernetes.io/component=proxy").len() == 3).then_some(())
    });
    wait_web_ready(node, "Ready with the replacement");
}

fn helm_bin() -> std::path::PathBuf {
    lockstep_e2e::built_tool("e2e/helm/build.sh").expect("build helm")
}

/// `helm install` of deploy/helm/lockstep into lockstep-helm (restricted Pod Security), the
/// proxies' Service as ClusterIP, `--wait` for every Pod.
fn helm_install(node: &Node) {
    let ns = "lockstep-helm";
    node.kubectl_ok(&["create", "namespace", ns]).unwrap();
    node.kubectl_ok(&[
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    ])
    .unwrap();
    let chart = repo_root().join("deploy/helm/lockstep");
    let out = std::process::Command::new(helm_bin())
        .args(["install", "lockstep", chart.to_str().unwrap(), "-n", ns])
        .args([
            "--set",
            "proxy.service.type=ClusterIP",
            "--wait",
            "--timeout",
            "5m",
        ])
        .env("KUBECONFIG", node.kubeconfig())
        .env("HELM_CONFIG_HOME", node.dir().join("helm/config"))
        .env("HELM_CACHE_HOME", node.dir().join("helm/cache"))
        .env("HELM_DATA_HOME", node.dir().join("helm/data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ready_pods(node, ns, "app.kubernetes.io/component=operator").len(),
        2
    );
    assert_eq!(ready_pods(node, ns, "app.kubernetes.io/component=proxy").len(), 3);
    eprintln!("[node] helm install: operator 2/2 and proxies 3/3 Ready in {ns}");
}
