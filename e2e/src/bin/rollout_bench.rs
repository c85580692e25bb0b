//! Rollout benchmark: time from a spec change of a RouterConfig to `Ready=True` for the new
//! generation, over many rollouts, at several fleet sizes, on a real local control plane with
//! the real operator; the fleet is real proxy processes (`--replicas`) or hollow replicas
//! (`--hollow`: the real fleet code without a data plane, many in one process, each with its
//! own apiserver client). Per rollout it also reports apiserver requests, RouterConfig watch
//! events, apiserver + etcd CPU-seconds and the replicas' own CPU (the proxy processes, or the
//! hollow process, per replica), net of the fleet's background load (Lease renewals) measured
//! in an idle window before the rollouts. A real proxy's CPU includes its data plane's idle
//! work; a hollow replica's is the fleet code alone, sharing one process and runtime.
//!
//! Each apply waits `--pause-ms` (default 250) after the previous `Ready`. Back to back
//! (`--pause-ms 0`) the rollouts lock onto a period of 100 ms that is kube-apiserver's, not
//! lockstep's: the operator's quorum list of Leases before a `Ready=True` is served from the
//! apiserver's watch cache once the cache has caught up with etcd, and the cache asks etcd
//! for its progress at most every 100 ms (`progressRequestPeriod` in
//! `k8s.io/apiserver/pkg/storage/cacher`); so each rollout's list waits for the tick after
//! the previous rollout's. A user's next apply rarely comes within 100 ms of a `Ready`.
//!
//! With `--route`, each fleet also gets a row for an HTTPRoute edit: a Gateway of lockstep's
//! class annotated with the fleet (`lockstep.dev/fleet`), one HTTP listener, one HTTPRoute
//! attached to it; each rollout edits the route (a path of its own per rollout, so the
//! generated RouterConfig gets a new generation each time) and waits for the route's
//! `lockstep.dev/Ready=True` at the route's generation, as `kubectl lockstep wait httproute/`
//! does. The same columns: the RouterConfig watch events are those of the generated
//! RouterConfig; the operator then also runs its Gateway controller, for every row (the
//! Gateway API CRDs are installed before it starts). A third row edits the Gateway's listener
//! instead (its host name, a new one per rollout) and waits for the Gateway's
//! `Programmed=True` at its generation: a listener change reaches the running replicas as a
//! new generated RouterConfig, with no pod restarted.
//!
//! `lockstep-e2e-rollout-bench [--replicas 3,10,30] [--hollow 100,300,1000] [--rollouts 100]
//! [--hollow-rollouts 50] [--pause-ms 250] [--timeline] [--route]` (see e2e/bench/rollout.sh).

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use clap::Parser;
use futures::StreamExt;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use lockstep_crds::{
    RouterConfig, RouterReplica,
    gateway::{CONTROLLER_NAME, Gateway, GatewayClass, HTTPRoute},
};
use lockstep_e2e::{
    ControlPlane,
    check::ready_generation,
    fleet::{Backend, Operator, OperatorSpec, Proxy, ProxySpec},
    percentile,
    process::{ChildGuard, workspace_bin},
};

/// Sums a counter family of the apiserver's /metrics whose label set contains every `filter`.
async fn apiserver_counter(http: &reqwest::Client, cp: &ControlPlane, metric: &str, filters: &[&str]) -> f64 {
    let token = std::fs::read_to_string(cp.dir().join("token")).unwrap_or_default();
    let url = format!("https://127.0.0.1:{}/metrics", cp.apiserver_port().expect("port"));
    let Ok(response) = http.get(url).bearer_auth(token.trim()).send().await else {
        return f64::NAN;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{'))
        .filter(|l| filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// CPU-seconds (user + system) a process has used, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn pid_of(cp: &ControlPlane, file: &str) -> u32 {
    std::fs::read_to_string(cp.dir().join(file))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// What the apiserver and the fleet did in a window.
#[derive(Clone, Copy)]
struct Load {
    requests: f64,
    rc_events: f64,
    cpu: f64,
    /// CPU-seconds of the replicas' processes (every real proxy, or the hollow process).
    fleet_cpu: f64,
}

async fn load(http: &reqwest::Client, cp: &ControlPlane, fleet: &Fleet) -> Load {
    Load {
        requests: apiserver_counter(http, cp, "apiserver_request_total", &[]).await,
        rc_events: apiserver_counter(http, cp, "apiserver_watch_events_total", &["routerconfigs"]).await,
        cpu: cpu_seconds(pid_of(cp, "apiserver.pid")) + cpu_seconds(pid_of(cp, "etcd.pid")),
        fleet_cpu: fleet.pids().map(cpu_seconds).sum(),
    }
}

impl std::ops::Sub for Load {
    type Output = Load;
    fn sub(self, o: Load) -> Load {
        Load {
            requests: self.requests - o.requests,
            rc_events: self.rc_events - o.rc_events,
            cpu: self.cpu - o.cpu,
            fleet_cpu: self.fleet_cpu - o.fleet_cpu,
        }
    }
}

/// What the bench's watches saw in one event.
enum Seen {
    /// The edited object: the RouterConfig, or the HTTPRoute.
    Edited {
        generation: i64,
        /// The generation it is Ready at: the RouterConfig's `Ready=True`, the route's
        /// `lockstep.dev/Ready=True`.
        ready: Option<i64>,
        /// `status.syncedReplicas/replicas`, or the route's condition message, for the timeline.
        synced: String,
        at: Instant,
    },
    Report {
        replica: String,
        generation: i64,
        at: Instant,
    },
}

/// The fleet under test: real proxy processes, or one process of hollow replicas; stopped (by
/// pid) when dropped.
enum Fleet {
    Real(Vec<Proxy>),
    Hollow(ChildGuard),
}

impl Fleet {
    fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        let (real, hollow) = match self {
            Fleet::Real(proxies) => (proxies.as_slice(), None),
            Fleet::Hollow(process) => (&[][..], Some(process.pid())),
        };
        real.iter().map(|p| p.process.pid()).chain(hollow)
    }
}

fn start_fleet(
    cp: &ControlPlane,
    dir: &Path,
    ns: &str,
    fleet: &str,
    size: usize,
    hollow: bool,
) -> anyhow::Result<Fleet> {
    if !hollow {
        let mut proxies: Vec<Proxy> = (0..size)
            .map(|i| {
                let mut spec = ProxySpec::new(&format!("proxy-{i}"), ns, fleet);
                spec.lease_seconds = 10;
                Proxy::start(cp, dir, spec)
            })
            .collect::<Result<_, _>>()?;
        for proxy in &mut proxies {
            proxy.wait_joined()?;
        }
        return Ok(Fleet::Real(proxies));
    }
    let mut cmd = Command::new(workspace_bin("lockstep-e2e-hollow"));
    cmd.env("KUBECONFIG", cp.kubeconfig())
        .args([
            "--replicas",
            &size.to_string(),
            "--namespace",
            ns,
            "--fleet",
            fleet,
        ])
        .args(["--lease-duration", "30", "--start-rate", "100"]);
    let mut process = ChildGuard::spawn("hollow replicas", cmd, &dir.join("hollow.log"))?;
    process.wait_for_log("hollow replicas joined", Duration::from_secs(600))?;
    Ok(Fleet::Hollow(process))
}

/// Rollout latency and control-plane cost at several fleet sizes.
#[derive(Debug, Parser)]
#[command(name = "lockstep-e2e-rollout-bench")]
struct Args {
    /// Fleet sizes of real proxy replicas, comma-separated (empty: none).
    #[arg(long, default_value = "3,10,30")]
    replicas: String,
    /// Fleet sizes of hollow replicas, comma-separated (empty: none).
    #[arg(long, default_value = "")]
    hollow: String,
    /// Rollouts per real fleet.
    #[arg(long, default_value_t = 100)]
    rollouts: usize,
    /// Rollouts per hollow fleet.
    #[arg(long, default_value_t = 50)]
    hollow_rollouts: usize,
    /// Print every RouterConfig and report event of each rollout, in ms since its apply,
    /// on stderr (where a rollout's time goes).
    #[arg(long)]
    timeline: bool,
    /// Milliseconds between a rollout's `Ready` and the next apply (0: back to back).
    #[arg(long, default_value_t = 250)]
    pause_ms: u64,
    /// Also time an HTTPRoute edit on each fleet (a row of its own beside the RouterConfig
    /// edit): apply to `lockstep.dev/Ready=True` at the route's generation.
    #[arg(long)]
    route: bool,
}

/// What a rollout edits.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Edit {
    /// RouterConfig `web`.
    RouterConfig,
    /// HTTPRoute `web`, attached to Gateway `gw` served by the fleet.
    Route,
    /// The host name of Gateway `gw`'s listener `web`.
    Listener,
}

/// The GatewayClass of the `--route` rows.
const BENCH_CLASS: &str = "lockstep-bench";

/// The route's `lockstep.dev/Ready=True` generation, and its message.
fn route_ready(route: &HTTPRoute) -> (Option<i64>, String) {
    let ready = route
        .status
        .iter()
        .flat_map(|s| &s.parents)
        .filter(|p| p.controller_name == CONTROLLER_NAME)
        .flat_map(|p| &p.conditions)
        .find(|c| c.type_ == "lockstep.dev/Ready");
    match ready {
        Some(c) if c.status == "True" => (c.observed_generation, c.message.clone()),
        Some(c) => (None, c.message.clone()),
        None => (None, String::new()),
    }
}

/// Server-side applies the objects of the `--route` row in `ns`: a Service for the route's
/// backend (no endpoints are needed for a rollout), the Gateway naming `fleet`, and route
/// `web` at rollout `n`. Returns the route's generation.
async fn apply_route(client: &Client, ns: &str, fleet: &str, n: usize) -> anyhow::Result<i64> {
    let params = PatchParams::apply("rollout-bench").force();
    if n == 0 {
        let service = serde_json::json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench", "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80}]}});
        Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns)
            .patch("bench", &params, &Patch::Apply(service))
            .await?;
        let gateway = serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": ns, "annotations": {"lockstep.dev/fleet": fleet}},
            "spec": {"gatewayClassName": BENCH_CLASS, "listeners": [
                {"name": "web", "protocol": "HTTP", "port": 80, "hostname": "route.test"}]}});
        Api::<Gateway>::namespaced(client.clone(), ns)
            .patch("gw", &params, &Patch::Apply(gateway))
            .await?;
    }
    let backend = serde_json::json!([{"name": "bench", "port": 80}]);
    let route = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backend},
            {"matches": [{"path": {"type": "PathPrefix", "value": format!("/v{n}")}}], "backendRefs": backend}]}});
    let route = Api::<HTTPRoute>::namespaced(client.clone(), ns)
        .patch("web", &params, &Patch::Apply(route))
        .await?;
    Ok(route.metadata.generation.unwrap_or_default())
}

/// The Gateway's `Programmed=True` generation, and its message.
fn gateway_programmed(gateway: &Gateway) -> (Option<i64>, String) {
    let programmed = gateway
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == "Programmed");
    match programmed {
        Some(c) if c.status == "True" => (c.observed_generation, c.message.clone()),
        Some(c) => (None, c.message.clone()),
        None => (None, String::new()),
    }
}

/// The `--route` objects at rollout 0, then at rollout `n` Gateway `gw`'s listener with host
/// name `l<n>.test`. Returns the Gateway's generation.
async fn apply_listener(client: &Client, ns: &str, fleet: &str, n: usize) -> anyhow::Result<i64> {
    let gateways = Api::<Gateway>::namespaced(client.clone(), ns);
    if n == 0 {
        apply_route(client, ns, fleet, 0).await?;
        return Ok(gateways.get("gw").await?.metadata.generation.unwrap_or_default());
    }
    let gateway = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": ns, "annotations": {"lockstep.dev/fleet": fleet}},
        "spec": {"gatewayClassName": BENCH_CLASS, "listeners": [
            {"name": "web", "protocol": "HTTP", "port": 80, "hostname": format!("l{n}.test")}]}});
    let gateway = gateways
        .patch(
            "gw",
            &PatchParams::apply("rollout-bench").force(),
            &Patch::Apply(gateway),
        )
        .await?;
    Ok(gateway.metadata.generation.unwrap_or_default())
}

/// `N,M,...` as numbers.
fn sizes(list: &str) -> anyhow::Result<Vec<usize>> {
    Ok(list
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let real = sizes(&args.replicas)?;
    let hollow = sizes(&args.hollow)?;
    let (rollouts, hollow_rollouts) = (args.rollouts, args.hollow_rollouts);
    let cp = ControlPlane::start()?;
    let client = cp.client().await?;
    lockstep_e2e::install_crds(&client).await?;
    if args.route {
        // Before any operator starts: it looks for the Gateway API once, at start.
        lockstep_e2e::install_gateway_api_crds(&client).await?;
        let class = serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": BENCH_CLASS}, "spec": {"controllerName": CONTROLLER_NAME}});
        Api::<GatewayClass>::all(client.clone())
            .patch(
                BENCH_CLASS,
                &PatchParams::apply("rollout-bench").force(),
                &Patch::Apply(class),
            )
            .await?;
    }
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()?;
    println!(
        "| fleet | rollouts | p50 | p90 | p99 | max | first report p50 | last report p50 | apiserver requests / rollout | RouterConfig watch events / rollout | apiserver+etcd CPU-s / rollout | fleet CPU ms / replica / rollout | background requests / s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let runs = real
        .into_iter()
        .map(|n| (n, false, rollouts))
        .chain(hollow.into_iter().map(|n| (n, true, hollow_rollouts)));
    let edits: &[Edit] = if args.route {
        &[Edit::RouterConfig, Edit::Route, Edit::Listener]
    } else {
        &[Edit::RouterConfig]
    };
    for (replicas, is_hollow, rollouts) in runs {
        let ns = cp.namespace(&client, "bench").await?;
        let dir = cp.test_dir(&format!("bench-{replicas}"));
        let backend = Backend::start(&dir, "bench")?;
        let operator = Operator::start(&cp, &dir, OperatorSpec::default())?;
        let fleet_name = format!("bench-{replicas}");
        let fleet = start_fleet(&cp, &dir, &ns, &fleet_name, replicas, is_hollow)?;
        for &edit in edits {
            let label = format!(
                "{replicas} {}{}",
                if is_hollow { "hollow" } else { "real" },
                match edit {
                    Edit::RouterConfig => "",
                    Edit::Route => ", HTTPRoute",
                    Edit::Listener => ", Gateway listener",
                }
            );
            // The RouterConfig the replicas report on: `web`, or the one generated for the
            // route's listener. Its generation minus the route's is `offset`, known once the
            // first generation is Ready (each route edit here gives it one new generation).
            let served_name = match edit {
                Edit::RouterConfig => "web".to_owned(),
                Edit::Route | Edit::Listener => lockstep_core::gateway::serve::generated_name("gw", "web"),
            };
            let offset = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
            let api: Api<RouterConfig> = Api::namespaced(client.clone(), &ns);
            let spec = |n: usize| {
                serde_json::json!({
                    "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
                    "metadata": {"name": "web", "namespace": ns},
                    "spec": {"fleet": fleet_name, "rules": [{"host": "app.test", "paths": [
                        {"path": "/", "backend": {"url": backend.url()}},
                        {"path": format!("/v{n}"), "backend": {"url": backend.url()}}]}]}
                })
            };
            let params = PatchParams::apply("rollout-bench").force();
            let apply = async |n: usize| -> anyhow::Result<i64> {
                Ok(match edit {
                    Edit::RouterConfig => api
                        .patch("web", &params, &Patch::Apply(spec(n)))
                        .await?
                        .metadata
                        .generation
                        .unwrap_or_default(),
                    Edit::Route => apply_route(&client, &ns, &fleet_name, n).await?,
                    Edit::Listener => apply_listener(&client, &ns, &fleet_name, n).await?,
                })
            };
            let first = apply(0).await?;

            // Ready transitions arrive through one watch, as `kubectl wait` would see them; a
            // second watch on the RouterReplicas notes when the first and the last replica
            // reported, which splits a rollout into the fleet's part (apply to last report) and
            // the operator's (last report to Ready).
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
            let edited_watch = match edit {
                Edit::RouterConfig => {
                    let (api, tx) = (api.clone(), tx.clone());
                    tokio::spawn(async move {
                        let config = watcher::Config::default().fields("metadata.name=web");
                        let mut stream = std::pin::pin!(watcher(api, config).applied_objects());
                        while let Some(Ok(rc)) = stream.next().await {
                            let _ = tx.send(Seen::Edited {
                                generation: rc.metadata.generation.unwrap_or_default(),
                                ready: ready_generation(&rc),
                                synced: rc.status.as_ref().map_or_else(String::new, |s| {
                                    format!(
                                        "{}/{}",
                                        s.synced_replicas.unwrap_or_default(),
                                        s.replicas.unwrap_or_default()
                                    )
                                }),
                                at: Instant::now(),
                            });
                        }
                    })
                }
                Edit::Listener => {
                    let (gateways, tx) = (Api::<Gateway>::namespaced(client.clone(), &ns), tx.clone());
                    tokio::spawn(async move {
                        let config = watcher::Config::default().fields("metadata.name=gw");
                        let mut stream = std::pin::pin!(watcher(gateways, config).applied_objects());
                        while let Some(Ok(gateway)) = stream.next().await {
                            let (ready, message) = gateway_programmed(&gateway);
                            let _ = tx.send(Seen::Edited {
                                generation: gateway.metadata.generation.unwrap_or_default(),
                                ready,
                                synced: message,
                                at: Instant::now(),
                            });
                        }
                    })
                }
                Edit::Route => {
                    let (routes, tx) = (Api::<HTTPRoute>::namespaced(client.clone(), &ns), tx.clone());
                    tokio::spawn(async move {
                        let config = watcher::Config::default().fields("metadata.name=web");
                        let mut stream = std::pin::pin!(watcher(routes, config).applied_objects());
                        while let Some(Ok(route)) = stream.next().await {
                            let (ready, message) = route_ready(&route);
                            let _ = tx.send(Seen::Edited {
                                generation: route.metadata.generation.unwrap_or_default(),
                                ready,
                                synced: message,
                                at: Instant::now(),
                            });
                        }
                    })
                }
            };
            let report_watch = {
                let rreps: Api<RouterReplica> = Api::namespaced(client.clone(), &ns);
                let (served_name, offset) = (served_name.clone(), offset.clone());
                tokio::spawn(async move {
                    let mut stream =
                        std::pin::pin!(watcher(rreps, watcher::Config::default()).applied_objects());
                    while let Some(Ok(rrep)) = stream.next().await {
                        let generation = rrep
                            .status
                            .iter()
                            .flat_map(|s| &s.served)
                            .find(|e| e.name == served_name)
                            .map_or(0, |e| {
                                e.observed_generation - offset.load(std::sync::atomic::Ordering::SeqCst)
                            });
                        let _ = tx.send(Seen::Report {
                            replica: rrep.metadata.name.clone().unwrap_or_default(),
                            generation,
                            at: Instant::now(),
                        });
                    }
                })
            };
            let timeline = args.timeline;
            let wait_ready = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
                                    g: i64,
                                    started: Instant| {
                let (mut first, mut last) = (None, None);
                let mut reported = std::collections::HashSet::new();
                loop {
                    let seen = tokio::time::timeout(Duration::from_secs(120), rx.recv()).await;
                    if timeline && let Ok(Some(event)) = &seen {
                        let ms = |at: &Instant| at.saturating_duration_since(started).as_secs_f64() * 1000.0;
                        match event {
                            Seen::Report {
                                replica,
                                generation,
                                at,
                            } => {
                                eprintln!("g{g} +{:6.1} ms report {replica} serves {generation}", ms(at))
                            }
                            Seen::Edited {
                                generation,
                                ready,
                                synced,
                                at,
                            } => eprintln!(
                                "g{g} +{:6.1} ms {edit:?} generation {generation} synced {synced} ready {ready:?}",
                                ms(at)
                            ),
                        }
                    }
                    match seen {
                        Ok(Some(Seen::Report {
                            replica,
                            generation,
                            at,
                        })) if generation >= g => {
                            first.get_or_insert(at);
                            reported.insert(replica);
                            if reported.len() >= replicas {
                                last.get_or_insert(at);
                            }
                        }
                        Ok(Some(Seen::Edited {
                            generation,
                            ready,
                            at,
                            ..
                        })) if generation >= g && ready.is_some_and(|r| r >= g) => {
                            return Ok((at, first.unwrap_or(at), last.unwrap_or(at)));
                        }
                        Ok(Some(_)) => {}
                        _ => anyhow::bail!("generation {g} did not become Ready within 120 s"),
                    }
                }
            };
            wait_ready(&mut rx, first, Instant::now()).await?;
            if edit != Edit::RouterConfig {
                // Both the edited object and the generated RouterConfig gain one generation
                // per rollout from here.
                let generated = api.get(&served_name).await?;
                offset.store(
                    generated.metadata.generation.unwrap_or_default() - first,
                    std::sync::atomic::Ordering::SeqCst,
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;

            // The fleet's background load (Lease renewals, resyncs) over an idle window.
            let idle = Duration::from_secs(10);
            let before_idle = load(&insecure, &cp, &fleet).await;
            tokio::time::sleep(idle).await;
            let idle_load = load(&insecure, &cp, &fleet).await - before_idle;

            let before = load(&insecure, &cp, &fleet).await;
            let started_all = Instant::now();
            let (mut times, mut firsts, mut lasts) = (Vec::new(), Vec::new(), Vec::new());
            for n in 1..=rollouts {
                tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
                let started = Instant::now();
                let generation = apply(n).await?;
                let (ready_at, first, last) = wait_ready(&mut rx, generation, started).await?;
                times.push(ready_at.saturating_duration_since(started));
                firsts.push(first.saturating_duration_since(started));
                lasts.push(last.saturating_duration_since(started));
            }
            let elapsed = started_all.elapsed();
            let total = load(&insecure, &cp, &fleet).await - before;
            let scale = elapsed.as_secs_f64() / idle.as_secs_f64();
            let net = Load {
                requests: total.requests - idle_load.requests * scale,
                rc_events: total.rc_events - idle_load.rc_events * scale,
                cpu: total.cpu - idle_load.cpu * scale,
                fleet_cpu: total.fleet_cpu - idle_load.fleet_cpu * scale,
            };
            edited_watch.abort();
            report_watch.abort();
            times.sort();
            firsts.sort();
            lasts.sort();
            let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
            let per = |v: f64| v / rollouts as f64;
            println!(
                "| {label} | {rollouts} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.3} | {:.2} | {:.1} |",
                ms(percentile(&times, 50.0)),
                ms(percentile(&times, 90.0)),
                ms(percentile(&times, 99.0)),
                ms(*times.last().expect("rollouts > 0")),
                ms(percentile(&firsts, 50.0)),
                ms(percentile(&lasts, 50.0)),
                per(net.requests),
                per(net.rc_events),
                per(net.cpu),
                per(net.fleet_cpu) * 1000.0 / replicas as f64,
                idle_load.requests / idle.as_secs_f64(),
            );
        }
        drop(fleet);
        drop(operator);
    }
    Ok(())
}
