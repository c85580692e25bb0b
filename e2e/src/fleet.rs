//! The lockstep processes of an end-to-end test: backends, proxy replicas and operators,
//! started from the workspace's binaries against a [`ControlPlane`], each stopped by pid when
//! dropped.

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use crate::{
    ControlPlane, Error, Result,
    process::{ChildGuard, workspace_bin},
};

const START_TIMEOUT: Duration = Duration::from_secs(30);

fn parse_addr(text: &str) -> Result<SocketAddr> {
    text.trim_end_matches([',', ')'])
        .parse()
        .map_err(|e| Error::Command {
            what: "parse a listen address".into(),
            detail: format!("{text:?}: {e}"),
        })
}

/// A demo/test backend that answers with a JSON description of each request, including its
/// own name.
#[derive(Debug)]
pub struct Backend {
    /// The process.
    pub process: ChildGuard,
    /// Its address.
    pub addr: SocketAddr,
}

impl Backend {
    /// Starts a backend named `name` on an ephemeral port.
    pub fn start(dir: &Path, name: &str) -> Result<Self> {
        let mut cmd = Command::new(workspace_bin("lockstep-e2e-backend"));
        cmd.args(["--listen", "127.0.0.1:0", "--name", name]);
        let mut process = ChildGuard::spawn(
            &format!("backend {name}"),
            cmd,
            &dir.join(format!("backend-{name}.log")),
        )?;
        let addr = parse_addr(&process.wait_for_log("listening http=", START_TIMEOUT)?)?;
        Ok(Self { process, addr })
    }

    /// `http://ADDR` for a RouterConfig url backend.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// How to start a proxy replica.
#[derive(Debug, Clone)]
pub struct ProxySpec {
    /// --replica-name.
    pub name: String,
    /// --namespace.
    pub namespace: String,
    /// --fleet.
    pub fleet: String,
    /// --lease-duration in seconds.
    pub lease_seconds: u64,
    /// Also serve TLS (--tls-listen 127.0.0.1:0).
    pub tls: bool,
    /// Extra flags.
    pub extra: Vec<String>,
    /// Extra environment (e.g. libfaketime's, for a skewed wall clock).
    pub env: Vec<(String, String)>,
}

impl ProxySpec {
    /// A replica with a 3 s Lease, so tests see expiry quickly.
    pub fn new(name: &str, namespace: &str, fleet: &str) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            fleet: fleet.into(),
            lease_seconds: 3,
            tls: false,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// A running proxy replica in Kubernetes mode.
#[derive(Debug)]
pub struct Proxy {
    /// The process.
    pub process: ChildGuard,
    /// How it was started.
    pub spec: ProxySpec,
    /// The HTTP listener.
    pub http: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The TLS listener, when started with `tls`.
    pub tls: Option<SocketAddr>,
}

impl Proxy {
    /// Starts a replica with the admin kubeconfig of `cp`.
    pub fn start(cp: &ControlPlane, dir: &Path, spec: ProxySpec) -> Result<Self> {
        Self::start_with_kubeconfig(&cp.kubeconfig(), dir, spec)
    }

    /// Starts a replica with the given kubeconfig (e.g. a ServiceAccount's).
    pub fn start_with_kubeconfig(kubeconfig: &Path, dir: &Path, spec: ProxySpec) -> Result<Self> {
        let mut cmd = Command::new(workspace_bin("lockstep-proxy"));
        cmd.env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,lockstep_proxy=debug")
            .args([
                "--replica-name",
                &spec.name,
                "--namespace",
                &spec.namespace,
                "--fleet",
                &spec.fleet,
            ])
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--lease-duration", &format!("{}s", spec.lease_seconds)])
            .args(&spec.extra)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if spec.tls {
            cmd.args(["--tls-listen", "127.0.0.1:0"]);
        }
        let mut process = ChildGuard::spawn(
            &format!("proxy {}", spec.name),
            cmd,
            &dir.join(format!("proxy-{}.log", spec.name)),
        )?;
        let http = parse_addr(&process.wait_for_log("listening http=", START_TIMEOUT)?)?;
        let admin = parse_addr(&process.wait_for_log("listening admin=", START_TIMEOUT)?)?;
        let tls = if spec.tls {
            Some(parse_addr(
                &process.wait_for_log("listening tls=", START_TIMEOUT)?,
            )?)
        } else {
            None
        };
        Ok(Self {
            process,
            spec,
            http,
            admin,
            tls,
        })
    }

    /// Waits until the replica holds its Lease, i.e. the operator counts it as live. A test
    /// that applies a RouterConfig before then sees the barrier close over fewer replicas.
    pub fn wait_joined(&mut self) -> Result<()> {
        self.process
            .wait_for_log("joined the fleet", START_TIMEOUT)
            .map(drop)
    }

    /// Stops it with SIGKILL (a crash).
    pub fn crash(&mut self) {
        self.process.kill();
    }
}

/// How to start an operator.
#[derive(Debug, Clone, Default)]
pub struct OperatorSpec {
    /// Extra flags (e.g. `--stall-timeout 5s`).
    pub extra: Vec<String>,
    /// Log file name suffix, to tell two operators apart.
    pub name: String,
}

/// A running operator.
#[derive(Debug)]
pub struct Operator {
    /// The process.
    pub process: ChildGuard,
    /// The admin listener.
    pub admin: SocketAddr,
}

impl Operator {
    /// Starts an operator with the admin kubeconfig of `cp`.
    pub fn start(cp: &ControlPlane, dir: &Path, spec: OperatorSpec) -> Result<Self> {
        Self::start_with_kubeconfig(&cp.kubeconfig(), dir, spec)
    }

    /// Starts an operator with the given kubeconfig.
    pub fn start_with_kubeconfig(kubeconfig: &Path, dir: &Path, spec: OperatorSpec) -> Result<Self> {
        let mut cmd = Command::new(workspace_bin("lockstep-operator"));
        cmd.env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,lockstep_operator=debug")
            .args(["--admin", "127.0.0.1:0"])
            .args(&spec.extra);
        let log = dir.join(format!("operator{}.log", spec.name));
        let mut process = ChildGuard::spawn(&format!("operator{}", spec.name), cmd, &log)?;
        let admin = parse_addr(&process.wait_for_log("listening admin=", START_TIMEOUT)?)?;
        Ok(Self { process, admin })
    }
}
