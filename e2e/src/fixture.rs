//! The per-test fixture every end-to-end test binary shares: the binary's control plane, a
//! fresh namespace, a fleet name no other test uses, a log directory, and the helpers tests
//! kept copying (RouterConfig YAML, `kubectl apply`/`wait`, replicas with least privilege, the
//! operator shared by a binary's tests).

use std::{
    path::PathBuf,
    process::{Child, Output, Stdio},
    sync::OnceLock,
    time::Duration,
};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use lockstep_crds::RouterConfig;

use crate::{
    ControlPlane, Result, check,
    fleet::{Operator, OperatorSpec, Proxy, ProxySpec},
    process::workspace_bin,
};

/// A RouterConfig `name` in `ns` of `fleet`, one rule per `(host, path, url)` with a Prefix
/// path to a url backend, as YAML for `kubectl apply`.
pub fn router_config(ns: &str, fleet: &str, name: &str, routes: &[(&str, &str, &str)]) -> String {
    let mut rules = String::new();
    for (host, path, url) in routes {
        rules.push_str(&format!(
            "  - host: {host}\n    paths:\n    - path: {path}\n      pathType: Prefix\n      backend: {{url: \"{url}\"}}\n"
        ));
    }
    format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  fleet: {fleet}\n  rules:\n{rules}"
    )
}

/// The operator every test of this binary shares (tests stay apart by namespace and fleet),
/// started by `start` on first use. Like [`ControlPlane::shared`], one per test binary.
pub fn shared_operator(start: impl FnOnce(&'static ControlPlane) -> Result<Operator>) -> &'static Operator {
    static OPERATOR: OnceLock<Operator> = OnceLock::new();
    OPERATOR.get_or_init(|| start(ControlPlane::shared()).expect("start the shared operator"))
}

/// Starts an operator as deployed: the ServiceAccount and RBAC of `deploy/generated/rbac-operator.yaml`
/// in `lease_namespace`, which also holds its leader Lease.
pub fn least_privilege_operator(cp: &ControlPlane, lease_namespace: &str, test: &str) -> Result<Operator> {
    cp.ensure_namespace(lease_namespace)?;
    let kubeconfig = cp.operator_kubeconfig(lease_namespace)?;
    let spec = OperatorSpec {
        extra: vec!["--lease-namespace".into(), lease_namespace.into()],
        ..OperatorSpec::default()
    };
    Operator::start_with_kubeconfig(&kubeconfig, &cp.test_dir(test), spec)
}

/// One test's namespace, fleet, clients and log directory on the binary's control plane.
pub struct Fixture {
    /// The control plane of this test binary.
    pub cp: &'static ControlPlane,
    /// An admin client made in this test's runtime.
    pub client: Client,
    /// The test's own namespace.
    pub ns: String,
    /// A fleet name no other test uses.
    pub fleet: String,
    /// Where the test's processes log.
    pub dir: PathBuf,
    /// RouterConfigs in the test's namespace.
    pub api: Api<RouterConfig>,
    /// An HTTP client for requests through proxies ([`check::http`]).
    pub http: reqwest::Client,
}

impl Fixture {
    /// A fresh namespace, fleet and log directory named after `test`.
    pub async fn new(test: &str) -> Self {
        let cp = ControlPlane::shared();
        let client = cp.client().await.expect("admin client");
        let ns = cp.namespace(&client, test).await.expect("test namespace");
        Self {
            cp,
            fleet: crate::unique_fleet(test),
            dir: cp.test_dir(test),
            api: Api::namespaced(client.clone(), &ns),
            client,
            ns,
            http: check::http(),
        }
    }

    /// Secrets in the test's namespace.
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// `kubectl apply` of RouterConfig `name` of this fleet ([`router_config`]).
    pub fn apply(&self, name: &str, routes: &[(&str, &str, &str)]) {
        self.cp
            .kubectl_apply(&router_config(&self.ns, &self.fleet, name, routes))
            .unwrap_or_else(|e| panic!("kubectl apply {}/{name}: {e}", self.ns));
    }

    /// [`Fixture::apply`] of a RouterConfig with one route.
    pub fn apply_route(&self, name: &str, host: &str, path: &str, url: &str) {
        self.apply(name, &[(host, path, url)]);
    }

    /// The RouterConfig now, with status.
    pub async fn get(&self, name: &str) -> RouterConfig {
        check::get(&self.api, name)
            .await
            .unwrap_or_else(|e| panic!("get RouterConfig {}/{name}: {e}", self.ns))
    }

    /// `kubectl wait --for=condition=Ready` on `name`, as a pipeline runs it; panics when it
    /// fails or times out.
    pub fn kubectl_wait(&self, name: &str, timeout: Duration) {
        kubectl_wait(self.cp, &self.ns, name, timeout);
    }

    /// Starts `kubectl wait --for=condition=Ready` on `name` without waiting for it.
    pub fn spawn_kubectl_wait(&self, name: &str, timeout: Duration) -> Child {
        self.cp
            .kubectl()
            .args(crate::kubectl_wait_ready_args(&self.ns, name, timeout))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl wait")
    }

    /// One replica of this fleet in this namespace with its own Pod-bound token and the RBAC
    /// of `deploy/generated/rbac-proxy.yaml`, as deployed; `edit` adjusts its spec. Returns once it
    /// listens (not once it has joined: see [`Proxy::wait_joined`]).
    pub fn proxy_with(&self, name: &str, edit: impl FnOnce(&mut ProxySpec)) -> Proxy {
        let kubeconfig = self
            .cp
            .proxy_kubeconfig(&self.ns, name, &[&self.ns])
            .expect("proxy RBAC");
        let mut spec = ProxySpec::new(name, &self.ns, &self.fleet);
        edit(&mut spec);
        Proxy::start_with_kubeconfig(&kubeconfig, &self.dir, spec)
            .unwrap_or_else(|e| panic!("start {name}: {e}"))
    }

    /// [`Fixture::proxy_with`] with the default spec.
    pub fn proxy(&self, name: &str) -> Proxy {
        self.proxy_with(name, |_| {})
    }

    /// Starts replicas `proxy-0..n` ([`Fixture::proxy_with`]) and returns once every one has
    /// joined the fleet.
    pub fn proxies_with(&self, n: usize, edit: impl Fn(&mut ProxySpec)) -> Vec<Proxy> {
        let mut proxies: Vec<Proxy> = (0..n)
            .map(|i| self.proxy_with(&format!("proxy-{i}"), &edit))
            .collect();
        for proxy in &mut proxies {
            proxy.wait_joined().expect("replica joins the fleet");
        }
        proxies
    }

    /// [`Fixture::proxies_with`] with the default spec.
    pub fn proxies(&self, n: usize) -> Vec<Proxy> {
        self.proxies_with(n, |_| {})
    }

    /// The row of `kubectl get rcfg NAME`: column name to value.
    pub fn get_row(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        let table = self
            .cp
            .kubectl_ok(&["get", "rcfg", name, "-n", &self.ns])
            .unwrap();
        let mut lines = table.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        header
            .into_iter()
            .zip(row)
            .map(|(h, v)| (h.to_owned(), v.to_owned()))
            .collect()
    }

    /// Events the operator recorded about `name`: (reason, note).
    pub fn events(&self, name: &str) -> Vec<(String, String)> {
        let out = self
            .cp
            .kubectl_ok(&[
                "get",
                "events.events.k8s.io",
                "-n",
                &self.ns,
                "--field-selector",
                &format!("regarding.name={name}"),
                "-o",
                "json",
            ])
            .unwrap();
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["reportingController"] == "lockstep-operator")
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or_default().to_owned(),
                    e["note"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// How kstatus judges RouterConfig `name` now: (status word, message).
    pub fn kstatus(&self, name: &str) -> (String, String) {
        let json = self
            .cp
            .kubectl_ok(&["get", "rcfg", name, "-n", &self.ns, "-o", "json"])
            .unwrap();
        check::kstatus(&json).unwrap()
    }
}

/// `kubectl wait --for=condition=Ready routerconfig/NAME -n NS`; panics when it fails or times
/// out.
pub fn kubectl_wait(cp: &ControlPlane, ns: &str, name: &str, timeout: Duration) {
    cp.wait_ready(ns, name, timeout)
        .unwrap_or_else(|e| panic!("kubectl wait for {ns}/{name}: {e}"));
}

/// Runs the `kubectl-lockstep` plugin binary with the admin kubeconfig of `cp`.
pub fn lockstep_plugin(cp: &ControlPlane, args: &[&str]) -> Output {
    std::process::Command::new(workspace_bin("kubectl-lockstep"))
        .env("KUBECONFIG", cp.kubeconfig())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl-lockstep")
}

/// Waits up to `timeout` for `child` to exit; None if it is still running.
pub fn exit_within(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
