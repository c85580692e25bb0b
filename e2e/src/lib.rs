//! Test harness for lockstep against a real local control plane: kube-apiserver and etcd
//! built from the Go module proxy (`e2e/controlplane/build.sh`), started on 127.0.0.1 with
//! ephemeral ports and a temp dir, and stopped with the test binary.
//!
//! One control plane serves a whole test binary ([`ControlPlane::shared`]); tests isolate
//! themselves with a namespace each ([`ControlPlane::namespace`]).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, Config,
    api::{Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{await_condition, conditions},
};

pub mod check;
pub mod fixture;
pub mod fleet;
pub mod node;
pub mod process;
pub mod simulated;

/// A fleet name no other test of the run uses: `PREFIX-` and six hex digits.
pub fn unique_fleet(prefix: &str) -> String {
    format!("{prefix}-{:06x}", rand::random::<u32>() & 0xffffff)
}

/// The `p`th percentile (0 to 100, nearest rank) of sorted, non-empty `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The arguments of `kubectl wait --for=condition=Ready routerconfig/NAME -n NAMESPACE
/// --timeout=…`: the wait a deploy pipeline runs.
pub fn kubectl_wait_ready_args(namespace: &str, name: &str, timeout: Duration) -> Vec<String> {
    vec![
        "wait".into(),
        "--for=condition=Ready".into(),
        format!("routerconfig/{name}"),
        "-n".into(),
        namespace.into(),
        format!("--timeout={}s", timeout.as_secs()),
    ]
}

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A script or command failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// What was run.
        what: String,
        /// Its stderr or exit status.
        detail: String,
    },
    /// I/O on the harness's files.
    #[error("harness I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A wait ran out of time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

/// Result of the harness.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The repository root (the workspace of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// `kubectl kustomize deploy/` as JSON objects (no cluster needed).
pub fn kustomize_deploy() -> Vec<serde_json::Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo_root().join("deploy"))
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_saphyr::from_multiple(&text).expect("kustomize output is YAML")
}

/// A tool built from the Go module proxy by its `e2e/<tool>/build.sh` (helm, h2spec, the
/// gRPC probe, the kstatus judge): built on first use and cached outside the repo; the script
/// prints the binary's path. `script` is relative to the repository root.
pub fn built_tool(script: &str) -> Result<PathBuf> {
    let script = repo_root().join(script);
    let out = Command::new(&script).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(Error::Command {
            what: script.display().to_string(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The gRPC probe (`e2e/grpc/`, grpc-go) built, and its greeter server started on an
/// ephemeral port of 127.0.0.1 with its log in `dir`: the probe's path (to run it as a
/// client), the server (stopped when dropped) and the port it listens on.
pub fn grpc_probe_server(dir: &Path) -> Result<(PathBuf, process::ChildGuard, String)> {
    let probe = built_tool("e2e/grpc/build.sh")?;
    let mut cmd = Command::new(&probe);
    cmd.args(["server", "--listen", "127.0.0.1:0"]);
    let mut server = process::ChildGuard::spawn("grpc server", cmd, &dir.join("grpc-server.log"))?;
    let line = server.wait_for_log("grpc-probe listening ", std::time::Duration::from_secs(30))?;
    let port = line.rsplit(':').next().unwrap_or_default().trim().to_owned();
    Ok((probe, server, port))
}

/// A running kube-apiserver + etcd. Dropping it stops both; a watchdog also stops them when
/// the test process exits without running destructors.
#[derive(Debug)]
pub struct ControlPlane {
    dir: tempfile::TempDir,
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();

impl ControlPlane {
    /// Builds (first time only; cached outside the repo) and starts a control plane.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("lockstep-cp-").tempdir()?;
        let script = repo_root().join("e2e/controlplane/up.sh");
        let out = Command::new(&script)
            .arg(dir.path())
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()?;
        if !out.status.success() {
            return Err(Error::Command {
                what: script.display().to_string(),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(Self { dir })
    }

    /// The control plane of this test binary, started on first use, with the RouterConfig
    /// CRD installed.
    pub fn shared() -> &'static ControlPlane {
        SHARED.get_or_init(|| {
            // Tests call this from inside their own runtime, which must not be blocked on;
            // start-up gets a thread and runtime of its own.
            std::thread::spawn(|| {
                let cp = ControlPlane::start().expect("start the local control plane");
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let client = cp.client().await.expect("client");
                    install_crds(&client).await.expect("install the lockstep CRDs");
                });
                cp
            })
            .join()
            .expect("control plane start-up thread")
        })
    }

    /// The state directory (logs, pid files, kubeconfig).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh directory for one test's logs, inside the control plane's state directory (so
    /// it is removed with it).
    pub fn test_dir(&self, test: &str) -> PathBuf {
        let dir = self
            .dir
            .path()
            .join("tests")
            .join(format!("{test}-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).expect("create test dir");
        dir
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A new admin client. Make one per test: a client's connections belong to the tokio
    /// runtime that created it.
    pub async fn client(&self) -> Result<Client> {
        client_from_kubeconfig(&self.kubeconfig()).await
    }

    /// `kubectl` with this control plane's kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", self.kubeconfig());
        cmd
    }

    /// Runs kubectl with `args`, returning stdout; an error carries stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl().args(args).stdin(Stdio::null()).output()?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Command {
                what: format!("kubectl {}", args.join(" ")),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }

    /// `kubectl wait --for=condition=Ready routerconfig/NAME`, the real one, as a pipeline
    /// runs it; returns stdout, or an error carrying kubectl's stderr.
    pub fn wait_ready(&self, namespace: &str, name: &str, timeout: Duration) -> Result<String> {
        let args = kubectl_wait_ready_args(namespace, name, timeout);
        self.kubectl_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Runs kubectl with `args` and `input` on stdin (None: no stdin) and returns its output,
    /// whatever its exit status.
    pub fn kubectl_output(&self, args: &[&str], input: Option<&str>) -> Result<std::process::Output> {
        use std::io::Write;
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(text) = input {
            child.stdin.take().expect("stdin").write_all(text.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }

    /// `kubectl apply -f -` of `yaml`; returns stdout.
    pub fn kubectl_apply(&self, yaml: &str) -> Result<String> {
        let out = self.kubectl_output(&["apply", "-f", "-"], Some(yaml))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Command {
                what: "kubectl apply".into(),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }

    /// Applies the cluster-scoped objects of `deploy/generated/rbac-<component>.yaml` (ClusterRoles
    /// and, for the proxy, the admission policy that keeps a replica to its own objects).
    fn apply_cluster_rbac(&self, component: &str) -> Result<()> {
        // Tests of one binary run in parallel; two first-time creations of the same
        // ClusterRole would race (AlreadyExists).
        static RBAC: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _serialised = RBAC.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let manifest =
            std::fs::read_to_string(repo_root().join(format!("deploy/generated/rbac-{component}.yaml")))?;
        let cluster_scoped: Vec<&str> = manifest
            .split("\n---\n")
            .filter(|doc| {
                doc.lines().any(|l| {
                    matches!(
                        l.trim(),
                        "kind: ClusterRole"
                            | "kind: ValidatingAdmissionPolicy"
                            | "kind: ValidatingAdmissionPolicyBinding"
                    )
                })
            })
            .collect();
        self.kubectl_apply(&cluster_scoped.join("\n---\n"))?;
        Ok(())
    }

    /// Writes a kubeconfig with `token` for `user`, named `file`.
    fn token_kubeconfig(&self, token: &str, user: &str, namespace: &str, file: &str) -> Result<PathBuf> {
        let admin = std::fs::read_to_string(self.kubeconfig())?;
        let admin_token = std::fs::read_to_string(self.dir.path().join("token"))?;
        let kubeconfig = admin
            .replace(admin_token.trim(), token.trim())
            .replace("lockstep-admin", user)
            .replace("namespace: default", &format!("namespace: {namespace}"));
        let path = self.dir.path().join(file);
        std::fs::write(&path, kubeconfig)?;
        Ok(path)
    }

    /// Creates (if needed) the ServiceAccount `lockstep-operator` in `namespace` with the RBAC
    /// of `deploy/generated/rbac-operator.yaml`, and writes a kubeconfig with a token for it. An operator
    /// started with it runs with least privilege, as in a real cluster.
    pub fn operator_kubeconfig(&self, namespace: &str) -> Result<PathBuf> {
        self.apply_cluster_rbac("operator")?;
        let sa = "lockstep-operator";
        self.kubectl_apply(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: {namespace}}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {sa}-{namespace}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {sa}}}\n\
             subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {namespace}}}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: lockstep-operator-leader, namespace: {namespace}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: lockstep-operator-leader}}\n\
             subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {namespace}}}]\n"
        ))?;
        let token = self.kubectl_ok(&["create", "token", sa, "-n", namespace, "--duration=24h"])?;
        self.token_kubeconfig(
            &token,
            &format!("{sa}-{namespace}"),
            namespace,
            &format!("kubeconfig-{sa}-{namespace}"),
        )
    }

    /// A kubeconfig for proxy replica `replica` living in `namespace` and serving `serves`,
    /// with the RBAC of `deploy/generated/rbac-proxy.yaml`: reads in the namespaces it serves, its
    /// Lease and RouterReplica in its own. Its token is bound to a Pod object named after the
    /// replica (created here; nothing runs it), as the kubelet binds a real Pod's token, so the
    /// admission policy lets it write only its own objects.
    pub fn proxy_kubeconfig(&self, namespace: &str, replica: &str, serves: &[&str]) -> Result<PathBuf> {
        self.apply_cluster_rbac("proxy")?;
        let sa = "lockstep-proxy";
        let mut docs = vec![
            format!(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: {namespace}}}\n"
            ),
            format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {sa}-member, namespace: {namespace}}}\n\
                 roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {sa}-member}}\n\
                 subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {namespace}}}]\n"
            ),
        ];
        for served in serves {
            docs.push(format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {sa}-read-{namespace}, namespace: {served}}}\n\
                 roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {sa}-read}}\n\
                 subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {namespace}}}]\n"
            ));
        }
        self.kubectl_apply(&docs.join("---\n"))?;
        self.pod_bound_kubeconfig(namespace, sa, replica)
    }

    /// A kubeconfig for ServiceAccount `sa` of `namespace` whose token is bound to a Pod object
    /// named `replica` running as it (created here; nothing runs it), as the kubelet binds a
    /// real Pod's token: what the admission policy `lockstep-proxy-own-objects` reads. The
    /// cluster-scoped objects of `deploy/generated/rbac-proxy.yaml` (the policy included) are
    /// applied; the ServiceAccount's rights are whatever its bindings say.
    pub fn pod_bound_kubeconfig(&self, namespace: &str, sa: &str, replica: &str) -> Result<PathBuf> {
        self.apply_cluster_rbac("proxy")?;
        self.kubectl_apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {replica}, namespace: {namespace}}}\n\
             spec: {{serviceAccountName: {sa}, containers: [{{name: proxy, image: lockstep-proxy:e2e}}]}}\n"
        ))?;
        let uid = self.kubectl_ok(&[
            "get",
            "pod",
            replica,
            "-n",
            namespace,
            "-o",
            "jsonpath={.metadata.uid}",
        ])?;
        let token = self.kubectl_ok(&[
            "create",
            "token",
            sa,
            "-n",
            namespace,
            "--duration=24h",
            "--bound-object-kind=Pod",
            &format!("--bound-object-name={replica}"),
            &format!("--bound-object-uid={}", uid.trim()),
        ])?;
        self.token_kubeconfig(
            &token,
            &format!("{sa}-{namespace}-{replica}"),
            namespace,
            &format!("kubeconfig-{sa}-{namespace}-{replica}"),
        )
    }

    /// Creates namespace `name` unless it exists (e.g. `lockstep-system`, shared by a binary's
    /// tests).
    pub fn ensure_namespace(&self, name: &str) -> Result<()> {
        self.kubectl_apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"
        ))?;
        Ok(())
    }

    /// Creates a namespace with a unique name starting with `prefix`.
    pub async fn namespace(&self, client: &Client, prefix: &str) -> Result<String> {
        use k8s_openapi::api::core::v1::Namespace;
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("namespace literal");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(name)
    }

    /// The apiserver's port.
    pub fn apiserver_port(&self) -> Result<u16> {
        let text = std::fs::read_to_string(self.dir.path().join("apiserver.port"))?;
        text.trim()
            .parse()
            .map_err(|e| Error::Kubeconfig(format!("apiserver.port: {e}")))
    }

    /// Restarts etcd and kube-apiserver on the same ports and data (a fault for chaos runs);
    /// returns once the apiserver is ready again.
    pub fn restart(&self) -> Result<()> {
        let script = repo_root().join("e2e/controlplane/restart.sh");
        let out = Command::new(&script)
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Command {
                what: script.display().to_string(),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }

    /// The pid of the kube-apiserver process (for fault injection).
    pub fn apiserver_pid(&self) -> Result<u32> {
        let text = std::fs::read_to_string(self.dir.path().join("apiserver.pid"))?;
        text.trim()
            .parse()
            .map_err(|e| Error::Kubeconfig(format!("apiserver.pid: {e}")))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::env::var_os("LOCKSTEP_KEEP_LOGS").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            eprintln!("control plane state kept in {}", dir.keep().display());
        }
        let _ = Command::new(repo_root().join("e2e/controlplane/down.sh"))
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    Ok(Client::try_from(config)?)
}

/// Applies the checked-in CRDs (RouterConfig, RouterReplica, GatewayParameters, from the
/// chart's `crds/`, their one copy; server-side) and waits until they are Established.
pub async fn install_crds(client: &Client) -> Result<()> {
    for file in [
        "deploy/helm/lockstep/crds/routerconfig.yaml",
        "deploy/helm/lockstep/crds/routerreplica.yaml",
        "deploy/helm/lockstep/crds/gatewayparameters.yaml",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file))?;
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&text).map_err(|e| Error::Kubeconfig(format!("{file}: {e}")))?;
        apply_crd(client, &crd).await?;
    }
    install_admission_policy(client).await
}

/// The Gateway API v1.6.3 standard-channel CRDs of `deploy/gateway-api/standard/`
/// (server-side applied), waiting until each is Established. Separate from [`install_crds`]:
/// a control plane without them is the cluster the operator must keep working on.
pub async fn install_gateway_api_crds(client: &Client) -> Result<()> {
    let dir = repo_root().join("deploy/gateway-api/standard");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text)
            .map_err(|e| Error::Kubeconfig(format!("{}: {e}", file.display())))?;
        apply_crd(client, &crd).await?;
    }
    Ok(())
}

/// The Gateway API CRDs applied with kubectl and the GatewayClass CRD Established, as the
/// README's install does before `kubectl apply -k deploy/` (kubectl maps every object's kind
/// before applying any, and a dry run creates no CRD): for the synchronous install tests.
pub fn kubectl_install_gateway_api_crds(cp: &ControlPlane) {
    let crds = repo_root().join("deploy/gateway-api/standard");
    cp.kubectl_ok(&["apply", "--server-side", "-f", crds.to_str().unwrap()])
        .expect("install the Gateway API CRDs");
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/gatewayclasses.gateway.networking.k8s.io",
    ])
    .expect("the GatewayClass CRD established");
}

async fn apply_crd(client: &Client, crd: &CustomResourceDefinition) -> Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let name = crd.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply("lockstep-e2e").force(),
        &Patch::Apply(crd),
    )
    .await?;
    let established = await_condition(api, &name, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .map_err(|_| Error::Timeout(format!("CRD {name} Established")))?
        .map_err(|e| Error::Timeout(format!("CRD {name}: {e}")))?;
    Ok(())
}

/// The RouterConfig admission policy (`deploy/generated/routerconfig-admission.yaml`, rendered
/// from the Helm chart's template by `deploy/generate.sh`): a policy and its binding. The apiserver compiles a policy asynchronously, so this waits until a request
/// that breaks it is denied.
async fn install_admission_policy(client: &Client) -> Result<()> {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    let file = "deploy/generated/routerconfig-admission.yaml";
    let text = std::fs::read_to_string(repo_root().join(file))?;
    let invalid = |e: &dyn std::fmt::Display| Error::Kubeconfig(format!("{file}: {e}"));
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).map_err(|e| invalid(&e))?;
    let of_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .cloned()
            .ok_or_else(|| invalid(&format!("no {kind}")))
    };
    let policy: ValidatingAdmissionPolicy =
        serde_json::from_value(of_kind("ValidatingAdmissionPolicy")?).map_err(|e| invalid(&e))?;
    let binding: ValidatingAdmissionPolicyBinding =
        serde_json::from_value(of_kind("ValidatingAdmissionPolicyBinding")?).map_err(|e| invalid(&e))?;
    let params = PatchParams::apply("lockstep-e2e").force();
    let name = policy.metadata.name.clone().unwrap_or_default();
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .patch(&name, &params, &Patch::Apply(&policy))
        .await?;
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .patch(&name, &params, &Patch::Apply(&binding))
        .await?;
    let probe: lockstep_crds::RouterConfig = serde_json::from_value(serde_json::json!({
        "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
        "metadata": {"name": "admission-probe", "namespace": "default"},
        "spec": {"rules": [{"host": "probe.example.com", "paths": [
            {"path": "/", "backend": {"url": "http://127.0.0.1:1"}},
            {"path": "/", "backend": {"url": "http://127.0.0.1:1"}}]}]}
    }))
    .map_err(|e| invalid(&e))?;
    let api = Api::<lockstep_crds::RouterConfig>::namespaced(client.clone(), "default");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually(
        "the RouterConfig admission policy denies",
        Duration::from_secs(30),
        || async {
            match api.create(&dry_run, &probe).await {
                Err(kube::Error::Api(s)) if s.message.contains("two paths of one host") => Some(()),
                _ => None,
            }
        },
    )
    .await
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout(what.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
