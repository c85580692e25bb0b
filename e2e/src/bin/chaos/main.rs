//! Chaos run: checks the barrier's promise under faults. While hundreds of rollouts run,
//! proxies are SIGKILLed and restarted or SIGSTOPped and resumed, the operator leader is
//! killed or SIGSTOPped, the apiserver and etcd are restarted, bursts of edits arrive faster
//! than the debounce, the RouterConfig is deleted and re-created under the same name
//! (generation back to 1, a new uid), and a newer RouterConfig names its TLS host with another
//! certificate; one proxy runs with its wall clock 30 s ahead (libfaketime, when installed).
//! At every status event that shows `Ready=True` for the current generation G of uid U,
//! every replica that answers `/readyz` 200 (a faulted one too, e.g. one just woken from a
//! freeze) must serve that version (a real request to a path only it routes: paths are never
//! reused across generations or incarnations, so the check is per uid) and present its
//! certificate for its TLS host; steady traffic counts failed requests to replicas that were
//! not being faulted.
//!
//! `lockstep-e2e-chaos [--rollouts 200] [--seconds 600] [--replicas 3] [--seed N]`
//! (see e2e/bench/chaos.sh). Loopback only; bounded in count and time; stops by itself.
//!
//! This file sets the run up and drives the rollouts; [`faults`] injects the faults,
//! [`traffic`] sends the steady traffic, [`checker`] checks the promise at every Ready=True,
//! and [`report`] counts and prints.

mod checker;
mod faults;
mod report;
mod traffic;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use clap::Parser;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use lockstep_crds::RouterConfig;
use lockstep_e2e::{
    ControlPlane,
    fleet::{Backend, Operator, OperatorSpec, Proxy, ProxySpec},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{faults::Fault, report::Tally};

/// Rollouts under faults against a local control plane, checking the barrier's promise.
#[derive(Debug, Parser)]
#[command(name = "lockstep-e2e-chaos")]
struct Args {
    /// Rollouts to run at most.
    #[arg(long, default_value_t = 200)]
    rollouts: u64,
    /// Time budget in seconds: no rollout starts after it.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Proxy replicas in the fleet.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Seed of the fault schedule (random when not given).
    #[arg(long)]
    seed: Option<u64>,
}

const OPERATOR_LEASE_NAMESPACE: &str = "lockstep-system";

/// A proxy slot: the running process (None while crashed) and whether a fault is active.
struct Slot {
    proxy: Option<Proxy>,
    spec: ProxySpec,
    faulted: bool,
    /// Requests that ended before this instant overlapped a fault and are excused.
    excused_until: Instant,
}

/// What the run's tasks share: the control plane, the processes and the counts.
struct World {
    cp: ControlPlane,
    client: kube::Client,
    ns: String,
    dir: PathBuf,
    slots: Mutex<Vec<Slot>>,
    /// Two operators `operator-0`, `operator-1`; None while killed.
    operators: Mutex<Vec<Option<Operator>>>,
    /// One Pod-bound token per replica, as the kubelet gives each Pod its own.
    proxy_kubeconfigs: Vec<PathBuf>,
    operator_kubeconfig: PathBuf,
    tally: Tally,
    violations: Mutex<Vec<String>>,
    /// The tag of the newest version applied (see [`Rollouts`]).
    newest_tag: std::sync::atomic::AtomicU64,
    /// When `web` was deleted and until its new incarnation was Ready (then open): a request
    /// sent meanwhile may find no route, which is what deleting an object does.
    recreations: Mutex<Vec<(Instant, Option<Instant>)>>,
    /// The certificates of `web` and of the RouterConfig that tries to take its TLS host.
    certs: Certs,
}

/// The TLS host of `web`, with its own certificate; a takeover names it with another.
pub const TLS_HOST: &str = "tls.chaos.test";

/// A self-signed certificate for [`TLS_HOST`].
pub struct Cert {
    /// PEM of the certificate.
    pub pem: String,
    /// PEM of its key.
    pub key: String,
    /// DER, to compare with what a replica presents.
    pub der: Vec<u8>,
}

impl Cert {
    fn new() -> anyhow::Result<Self> {
        let params = rcgen::CertificateParams::new(vec![TLS_HOST.to_owned()])?;
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }
}

/// `web`'s certificate (Secret `web-tls`) and the taker's (Secret `rival-tls`).
pub struct Certs {
    /// What every ready replica must present for [`TLS_HOST`] while `web` is Ready.
    pub web: Cert,
    /// What a newer RouterConfig naming the same host brings.
    pub rival: Cert,
}

/// How operator `i` runs: its own identity, sharing the leader Lease.
fn operator_spec(i: usize) -> OperatorSpec {
    OperatorSpec {
        name: format!("-{i}"),
        extra: [
            "--identity",
            &format!("operator-{i}"),
            "--lease-namespace",
            OPERATOR_LEASE_NAMESPACE,
            "--lease-duration",
            "3s",
        ]
        .map(String::from)
        .to_vec(),
    }
}

/// The RouterConfig `web` the rollouts rewrite: `/` to the default backend, and an Exact path
/// `/gen/TAG` only this version routes (to the gen backend); TAG grows with every version
/// applied, across re-creations too, so a path names one version of one incarnation. A second
/// rule serves [`TLS_HOST`] with the certificate of Secret `web-tls`.
struct Rollouts {
    api: Api<RouterConfig>,
    params: PatchParams,
    ns: String,
    default_url: String,
    gen_url: String,
    tag: u64,
}

impl Rollouts {
    /// Server-side applies the current version.
    async fn apply(&self) -> kube::Result<RouterConfig> {
        let object = serde_json::json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
            "metadata": {"name": "web", "namespace": self.ns},
            "spec": {"fleet": "chaos", "rules": [{"host": "chaos.test", "paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"url": self.default_url}},
                {"path": format!("/gen/{}", self.tag), "pathType": "Exact", "backend": {"url": self.gen_url}}]},
                {"host": TLS_HOST, "tls": {"secretName": "web-tls"}, "paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"url": self.default_url}}]}]}
        });
        self.api.patch("web", &self.params, &Patch::Apply(object)).await
    }

    /// Moves to the next version (a new `/gen/TAG` path).
    fn next(&mut self, world: &World) {
        self.tag += 1;
        world.newest_tag.fetch_max(self.tag, Ordering::SeqCst);
    }
}

/// The libfaketime library, when installed.
fn faketime() -> Option<String> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(str::to_owned)
}

/// The control plane, the backends, two operators and the replicas, all started.
async fn start(replicas: usize, faketime: Option<&str>) -> anyhow::Result<(Arc<World>, Backend, Backend)> {
    let cp = ControlPlane::start()?;
    let client = cp.client().await?;
    lockstep_e2e::install_crds(&client).await?;
    cp.ensure_namespace(OPERATOR_LEASE_NAMESPACE)?;
    let ns = cp.namespace(&client, "chaos").await?;
    let proxy_kubeconfigs: Vec<PathBuf> = (0..replicas)
        .map(|i| cp.proxy_kubeconfig(&ns, &format!("proxy-{i}"), &[&ns]))
        .collect::<Result<_, _>>()?;
    let operator_kubeconfig = cp.operator_kubeconfig(OPERATOR_LEASE_NAMESPACE)?;
    let dir = cp.test_dir("chaos");
    match faketime {
        Some(lib) => eprintln!("chaos: proxy-0's wall clock runs 30 s ahead ({lib})"),
        None => eprintln!("chaos: libfaketime not installed (apt-get install faketime): no clock skew"),
    }
    eprintln!("chaos: logs in {}", dir.display());
    let certs = Certs {
        web: Cert::new()?,
        rival: Cert::new()?,
    };
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    for (name, cert) in [("web-tls", &certs.web), ("rival-tls", &certs.rival)] {
        lockstep_e2e::check::put_tls_secret(&secrets, name, &cert.pem, &cert.key).await?;
    }
    let default_backend = Backend::start(&dir, "default")?;
    let gen_backend = Backend::start(&dir, "gen")?;

    let operators = (0..2)
        .map(|i| Operator::start_with_kubeconfig(&operator_kubeconfig, &dir, operator_spec(i)).map(Some))
        .collect::<Result<_, _>>()?;
    let slots = (0..replicas)
        .map(|i| {
            let mut spec = ProxySpec::new(&format!("proxy-{i}"), &ns, "chaos");
            spec.tls = true;
            if i == 0
                && let Some(lib) = faketime
            {
                // Its wall clock (and so the renewTime it writes) runs 30 s ahead; its
                // monotonic clock, which its Lease freshness uses, is left alone.
                spec.env = vec![
                    ("LD_PRELOAD".into(), lib.to_owned()),
                    ("FAKETIME".into(), "+30s".into()),
                    ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
                    ("FAKETIME_NO_CACHE".into(), "1".into()),
                ];
            }
            Proxy::start_with_kubeconfig(&proxy_kubeconfigs[i], &dir, spec.clone()).map(|p| Slot {
                proxy: Some(p),
                spec,
                faulted: false,
                excused_until: Instant::now(),
            })
        })
        .collect::<Result<_, _>>()?;
    let world = World {
        cp,
        client,
        ns,
        dir,
        slots: Mutex::new(slots),
        operators: Mutex::new(operators),
        proxy_kubeconfigs,
        operator_kubeconfig,
        tally: Tally::default(),
        violations: Mutex::default(),
        newest_tag: Default::default(),
        recreations: Mutex::default(),
        certs,
    };
    Ok((Arc::new(world), default_backend, gen_backend))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| u64::from(rand::random::<u32>()));
    let (rollouts, replicas) = (args.rollouts, args.replicas);
    let budget = Duration::from_secs(args.seconds);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    eprintln!("chaos: seed {seed}, {rollouts} rollouts, {replicas} replicas, budget {budget:?}");

    let faketime = faketime();
    let (world, default_backend, gen_backend) = start(replicas, faketime.as_deref()).await?;
    let mut web = Rollouts {
        api: Api::namespaced(world.client.clone(), &world.ns),
        params: PatchParams::apply("chaos").force(),
        ns: world.ns.clone(),
        default_url: default_backend.url(),
        gen_url: gen_backend.url(),
        tag: 0,
    };

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = traffic::spawn(world.clone(), stop.clone());
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<(String, i64, Instant)>();
    let checker = checker::spawn(world.clone(), web.api.clone(), ready_tx);

    let mut longest_not_ready = Duration::ZERO;
    web.apply().await?;
    let mut rollout = 0;
    while rollout < rollouts && started.elapsed() < budget {
        rollout += 1;
        // A fault, sometimes, right before the rollout.
        if rng.random_bool(0.35) {
            let fault = Fault::pick(&mut rng);
            eprintln!(
                "chaos: {:?} rollout {rollout}: {}",
                started.elapsed(),
                fault.name()
            );
            faults::inject(&world, &mut web, fault, &mut rng).await?;
        }
        web.next(&world);
        let rollout_start = Instant::now();
        let patched = loop {
            match web.apply().await {
                Ok(rc) => break rc,
                Err(e) if rollout_start.elapsed() < Duration::from_secs(60) => {
                    eprintln!("chaos: apply failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let generation = patched.metadata.generation.unwrap_or_default();
        let uid = patched.uid().to_owned();
        world.tally.rollouts.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
                Ok(Some((u, g, at))) if u == uid && g >= generation => {
                    let took = at.saturating_duration_since(rollout_start);
                    if took > Duration::from_secs(5) {
                        eprintln!(
                            "chaos: {:?} generation {generation} Ready after {took:?}",
                            started.elapsed()
                        );
                    }
                    longest_not_ready = longest_not_ready.max(took);
                    break;
                }
                Ok(Some(_)) => continue,
                _ => {
                    world.tally.rollouts_timed_out.fetch_add(1, Ordering::Relaxed);
                    eprintln!("chaos: generation {generation} not Ready within 60 s");
                    break;
                }
            }
        }
        if rollout % 20 == 0 {
            eprintln!("chaos: {rollout} rollouts, {:?} elapsed", started.elapsed());
        }
    }
    // Let reverted faults settle, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let _ = traffic.await;
    checker.abort();

    let violations = world.violations.lock().unwrap().clone();
    report::print(
        seed,
        &world.tally,
        faketime.is_some(),
        &violations,
        longest_not_ready,
    );
    // Stop every process now: the exit below runs no destructors.
    world.slots.lock().unwrap().clear();
    world.operators.lock().unwrap().clear();
    if !violations.is_empty() || world.tally.failed_requests.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
    Ok(())
}
