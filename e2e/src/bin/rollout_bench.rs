//! Rollout benchmark: time from a spec change of a RouterConfig to `Ready=True` for the new
//! generation, over many rollouts, at several fleet sizes, on a real local control plane with
//! the real operator and proxy binaries; plus apiserver requests and watch events per rollout.
//!
//! `lockstep-e2e-rollout-bench [--replicas 3,10,30] [--rollouts 100]` (see e2e/bench/rollout.sh).

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use lockstep_crds::RouterConfig;
use lockstep_e2e::{
    ControlPlane,
    check::ready_generation,
    flag_or,
    fleet::{Backend, Operator, OperatorSpec, Proxy, ProxySpec},
    percentile,
};

/// Sums a counter family of the apiserver's /metrics, optionally filtered by a label match.
async fn apiserver_counter(http: &reqwest::Client, cp: &ControlPlane, metric: &str, filter: &str) -> f64 {
    let token = std::fs::read_to_string(cp.dir().join("token")).unwrap_or_default();
    let url = format!("https://127.0.0.1:{}/metrics", cp.apiserver_port().expect("port"));
    let Ok(response) = http.get(url).bearer_auth(token.trim()).send().await else {
        return f64::NAN;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{') && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What the bench's watch saw in one event.
struct Seen {
    generation: i64,
    /// Replica entries at `generation` or later.
    reports: usize,
    ready: Option<i64>,
    at: Instant,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = flag_or("--replicas", "3,10,30")
        .split(',')
        .map(|s| s.parse().expect("--replicas N,M"))
        .collect();
    let rollouts: usize = flag_or("--rollouts", "100").parse()?;
    let cp = ControlPlane::start()?;
    let client = cp.client().await?;
    lockstep_e2e::install_crds(&client).await?;
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()?;
    println!(
        "| replicas | rollouts | first report p50 | last report p50 | p50 | p90 | p99 | max | apiserver requests / rollout | watch events / rollout |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for replicas in sizes {
        let ns = cp.namespace(&client, "bench").await?;
        let dir = cp.test_dir(&format!("bench-{replicas}"));
        let backend = Backend::start(&dir, "bench")?;
        let operator = Operator::start(&cp, &dir, OperatorSpec::default())?;
        let fleet = format!("bench-{replicas}");
        let proxies: Vec<Proxy> = (0..replicas)
            .map(|i| {
                let mut spec = ProxySpec::new(&format!("proxy-{i}"), &ns, &fleet);
                spec.lease_seconds = 10;
                Proxy::start(&cp, &dir, spec)
            })
            .collect::<Result<_, _>>()?;
        let api: Api<RouterConfig> = Api::namespaced(client.clone(), &ns);
        let spec = |n: usize| {
            serde_json::json!({
                "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {"fleet": fleet, "rules": [{"host": "app.test", "paths": [
                    {"path": "/", "backend": {"url": backend.url()}},
                    {"path": format!("/v{n}"), "backend": {"url": backend.url()}}]}]}
            })
        };
        let params = PatchParams::apply("rollout-bench").force();
        api.patch("web", &params, &Patch::Apply(spec(0))).await?;

        // Ready transitions arrive through one watch, as `kubectl wait` would see them; the same
        // watch notes when the first and the last replica reported, which splits a rollout into
        // the proxies' part (apply to last report) and the operator's (last report to Ready).
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
        let watch_api = api.clone();
        let watch = tokio::spawn(async move {
            let mut stream = std::pin::pin!(watcher(watch_api, watcher::Config::default()).applied_objects());
            while let Some(Ok(rc)) = stream.next().await {
                let generation = rc.metadata.generation.unwrap_or_default();
                let reports = rc.status.as_ref().map_or(0, |s| {
                    s.replica_status
                        .iter()
                        .filter(|e| e.observed_generation >= generation)
                        .count()
                });
                let _ = tx.send(Seen {
                    generation,
                    reports,
                    ready: ready_generation(&rc),
                    at: Instant::now(),
                });
            }
        });
        let wait_ready = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>, g: i64| {
            let (mut first, mut last) = (None, None);
            loop {
                match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
                    Ok(Some(seen)) => {
                        if seen.generation == g && seen.reports > 0 {
                            first.get_or_insert(seen.at);
                            if seen.reports >= replicas {
                                last.get_or_insert(seen.at);
                            }
                        }
                        if seen.ready.is_some_and(|r| r >= g) {
                            return Ok((seen.at, first.unwrap_or(seen.at), last.unwrap_or(seen.at)));
                        }
                    }
                    _ => anyhow::bail!("generation {g} did not become Ready within 60 s"),
                }
            }
        };
        wait_ready(&mut rx, 1).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;

        let requests_before = apiserver_counter(&insecure, &cp, "apiserver_request_total", "").await;
        let events_before =
            apiserver_counter(&insecure, &cp, "apiserver_watch_events_total", "lockstep.dev").await;
        let (mut times, mut firsts, mut lasts) = (Vec::new(), Vec::new(), Vec::new());
        for n in 1..=rollouts {
            let started = Instant::now();
            let rc = api.patch("web", &params, &Patch::Apply(spec(n))).await?;
            let generation = rc.metadata.generation.unwrap_or_default();
            let (ready_at, first, last) = wait_ready(&mut rx, generation).await?;
            times.push(ready_at.saturating_duration_since(started));
            firsts.push(first.saturating_duration_since(started));
            lasts.push(last.saturating_duration_since(started));
        }
        let requests =
            apiserver_counter(&insecure, &cp, "apiserver_request_total", "").await - requests_before;
        let events = apiserver_counter(&insecure, &cp, "apiserver_watch_events_total", "lockstep.dev").await
            - events_before;
        watch.abort();
        times.sort();
        firsts.sort();
        lasts.sort();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {replicas} | {rollouts} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            ms(percentile(&firsts, 50.0)),
            ms(percentile(&lasts, 50.0)),
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 90.0)),
            ms(percentile(&times, 99.0)),
            ms(*times.last().expect("rollouts > 0")),
            requests / rollouts as f64,
            events / rollouts as f64,
        );
        drop(proxies);
        drop(operator);
    }
    Ok(())
}
