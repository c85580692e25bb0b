//! Chaos run: checks the barrier's promise under faults. While hundreds of rollouts run,
//! proxies are SIGKILLed and restarted or SIGSTOPped and resumed, the operator leader is
//! killed or SIGSTOPped, the apiserver and etcd are restarted, and bursts of edits arrive
//! faster than the debounce; one proxy runs with its wall clock 30 s ahead (libfaketime, when
//! installed). At every status event that shows `Ready=True` for the current generation G,
//! every replica that answers `/readyz` 200 (a faulted one too, e.g. one just woken from a
//! freeze) must serve G (its `/config`, and a real request to a path only G routes); steady
//! traffic counts failed requests to replicas that were not being faulted.
//!
//! `lockstep-e2e-chaos [--rollouts 200] [--seconds 600] [--replicas 3] [--seed N]`
//! (see e2e/bench/chaos.sh). Loopback only; bounded in count and time; stops by itself.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use lockstep_crds::RouterConfig;
use lockstep_e2e::{
    ControlPlane,
    check::{self, ready_generation},
    flag_or,
    fleet::{Backend, Operator, OperatorSpec, Proxy, ProxySpec},
};
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A proxy slot: the running process (None while crashed) and whether a fault is active.
struct Slot {
    proxy: Option<Proxy>,
    spec: ProxySpec,
    faulted: bool,
    /// Requests that ended before this instant overlapped a fault and are excused.
    excused_until: Instant,
}

#[derive(Default)]
struct Tally {
    rollouts: AtomicU64,
    rollouts_timed_out: AtomicU64,
    proxy_kills: AtomicU64,
    proxy_freezes: AtomicU64,
    operator_kills: AtomicU64,
    apiserver_restarts: AtomicU64,
    bursts: AtomicU64,
    requests: AtomicU64,
    failed_requests: AtomicU64,
    excused_failures: AtomicU64,
    ready_checks: AtomicU64,
    ready_events: AtomicU64,
    operator_freezes: AtomicU64,
}

const OPERATOR_LEASE_NAMESPACE: &str = "lockstep-system";

fn spec_for(ns: &str, generation_tag: u64, default_url: &str, gen_url: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"fleet": "chaos", "rules": [{"host": "chaos.test", "paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"url": default_url}},
            {"path": format!("/gen/{generation_tag}"), "pathType": "Exact", "backend": {"url": gen_url}}]}]}
    })
}

/// Which operator (`operator-<i>`) holds the leader Lease now.
async fn leader_index(client: &kube::Client) -> Option<usize> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_LEASE_NAMESPACE);
    let holder = leases
        .get_opt(lockstep_crds::OPERATOR_LEASE_NAME)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)?;
    holder.strip_prefix("operator-")?.parse().ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rollouts: u64 = flag_or("--rollouts", "200").parse()?;
    let budget = Duration::from_secs(flag_or("--seconds", "600").parse()?);
    let replicas: usize = flag_or("--replicas", "3").parse()?;
    let seed: u64 = flag_or("--seed", &format!("{}", rand::random::<u32>())).parse()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    eprintln!("chaos: seed {seed}, {rollouts} rollouts, {replicas} replicas, budget {budget:?}");

    let cp = Arc::new(ControlPlane::start()?);
    let client = cp.client().await?;
    lockstep_e2e::install_crds(&client).await?;
    cp.kubectl_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {OPERATOR_LEASE_NAMESPACE}}}\n"
    ))?;
    let ns = cp.namespace(&client, "chaos").await?;
    // One Pod-bound token per replica, as the kubelet gives each Pod its own.
    let proxy_kubeconfigs: Vec<std::path::PathBuf> = (0..replicas)
        .map(|i| cp.proxy_kubeconfig(&ns, &format!("proxy-{i}"), &[&ns]))
        .collect::<Result<_, _>>()?;
    let operator_kubeconfig = cp.operator_kubeconfig(OPERATOR_LEASE_NAMESPACE)?;
    let dir = cp.test_dir("chaos");
    let faketime = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(str::to_owned);
    match &faketime {
        Some(lib) => eprintln!("chaos: proxy-0's wall clock runs 30 s ahead ({lib})"),
        None => eprintln!("chaos: libfaketime not installed (apt-get install faketime): no clock skew"),
    }
    eprintln!("chaos: logs in {}", dir.display());
    let default_backend = Backend::start(&dir, "default")?;
    let gen_backend = Backend::start(&dir, "gen")?;

    let operator_spec = |i: usize| OperatorSpec {
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
    };
    let operators: Arc<Mutex<Vec<Option<Operator>>>> = Arc::new(Mutex::new(
        (0..2)
            .map(|i| Operator::start_with_kubeconfig(&operator_kubeconfig, &dir, operator_spec(i)).map(Some))
            .collect::<Result<_, _>>()?,
    ));
    let slots: Arc<Mutex<Vec<Slot>>> = Arc::new(Mutex::new(
        (0..replicas)
            .map(|i| {
                let mut spec = ProxySpec::new(&format!("proxy-{i}"), &ns, "chaos");
                if i == 0
                    && let Some(lib) = &faketime
                {
                    // Its wall clock (and so the renewTime it writes) runs 30 s ahead; its
                    // monotonic clock, which its Lease freshness uses, is left alone.
                    spec.env = vec![
                        ("LD_PRELOAD".into(), lib.clone()),
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
            .collect::<Result<_, _>>()?,
    ));

    let api: Api<RouterConfig> = Api::namespaced(client.clone(), &ns);
    let params = PatchParams::apply("chaos").force();
    let tally = Arc::new(Tally::default());
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    // Steady traffic to every replica that is not being faulted.
    let traffic = {
        let (slots, tally, stop) = (slots.clone(), tally.clone(), stop.clone());
        tokio::spawn(async move {
            let http = check::http();
            while !stop.load(Ordering::SeqCst) {
                let targets: Vec<(usize, std::net::SocketAddr, std::net::SocketAddr)> = slots
                    .lock()
                    .unwrap()
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| !s.faulted)
                    .filter_map(|(i, s)| s.proxy.as_ref().map(|p| (i, p.http, p.admin)))
                    .collect();
                for (i, addr, admin) in targets {
                    // The promise is for replicas that say they are ready (a load balancer
                    // would send them nothing otherwise).
                    if !check::is_ready(&http, admin).await {
                        continue;
                    }
                    let sent = Instant::now();
                    let outcome = check::request(&http, addr, "chaos.test", "/").await;
                    let ok = matches!(outcome, Ok((200, Some(ref b))) if b == "default");
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        let slot_excused = {
                            let slots = slots.lock().unwrap();
                            slots[i].faulted || slots[i].excused_until > sent
                        };
                        if slot_excused {
                            tally.excused_failures.fetch_add(1, Ordering::Relaxed);
                        } else {
                            tally.failed_requests.fetch_add(1, Ordering::Relaxed);
                            eprintln!("chaos: request to proxy-{i} at {addr} failed: {outcome:?}");
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // The invariant: at every Ready=True for generation G, replicas that answer ready serve G.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let checker = {
        let (slots, tally, violations, api) = (slots.clone(), tally.clone(), violations.clone(), api.clone());
        let ns = ns.clone();
        tokio::spawn(async move {
            let http = check::http();
            let mut stream = std::pin::pin!(
                watcher(api, watcher::Config::default())
                    .backoff(watcher::ExponentialBackoff::from(
                        // Quick to reconnect after an apiserver restart, so the harness
                        // measures the fleet's recovery rather than its own.
                        backon::ExponentialBuilder::default()
                            .with_min_delay(Duration::from_millis(100))
                            .with_max_delay(Duration::from_secs(1))
                            .without_max_times()
                    ))
                    .applied_objects()
            );
            let mut last = 0;
            while let Some(event) = stream.next().await {
                let Ok(rc) = event else { continue };
                let Some(generation) = ready_generation(&rc) else {
                    continue;
                };
                // Every event that shows Ready=True for the current generation is checked,
                // not only the first per generation.
                tally.ready_events.fetch_add(1, Ordering::Relaxed);
                if generation > last {
                    last = generation;
                    let _ = ready_tx.send((generation, Instant::now()));
                }
                let tag = rc.spec.rules[0].paths[1]
                    .path
                    .trim_start_matches("/gen/")
                    .to_owned();
                let targets: Vec<(String, std::net::SocketAddr, std::net::SocketAddr)> = slots
                    .lock()
                    .unwrap()
                    .iter()
                    .filter_map(|s| s.proxy.as_ref().map(|p| (s.spec.name.clone(), p.admin, p.http)))
                    .collect();
                for (name, admin, http_addr) in targets {
                    if !check::is_ready(&http, admin).await {
                        continue;
                    }
                    tally.ready_checks.fetch_add(1, Ordering::Relaxed);
                    let served = check::served_generation(&http, admin, &ns, "web").await;
                    let landed = check::request(&http, http_addr, "chaos.test", &format!("/gen/{tag}")).await;
                    let behind = served.is_some_and(|s| s < generation);
                    // A replica already on a newer generation routes that generation's path instead.
                    let misrouted =
                        served == Some(generation) && !matches!(landed, Ok((200, Some(ref b))) if b == "gen");
                    if behind || misrouted {
                        // A replica that stopped being ready in between is not a violation.
                        if check::is_ready(&http, admin).await {
                            let message = format!(
                                "Ready=True at generation {generation}: {name} answers ready but serves {served:?}, /gen/{tag} -> {landed:?}"
                            );
                            eprintln!("chaos: VIOLATION {message}");
                            violations.lock().unwrap().push(message);
                        }
                    }
                }
            }
        })
    };

    let mut longest_not_ready = Duration::ZERO;
    let mut tag = 0u64;
    api.patch(
        "web",
        &params,
        &Patch::Apply(spec_for(&ns, tag, &default_backend.url(), &gen_backend.url())),
    )
    .await?;
    let mut rollout = 0;
    while rollout < rollouts && started.elapsed() < budget {
        rollout += 1;
        // A fault, sometimes, right before the rollout.
        if rng.random_bool(0.35) {
            let kind = rng.random_range(0..6);
            let names = [
                "kill proxy",
                "freeze proxy",
                "kill operator leader",
                "restart apiserver",
                "edit burst",
                "freeze operator leader",
            ];
            eprintln!(
                "chaos: {:?} rollout {rollout}: {}",
                started.elapsed(),
                names[kind]
            );
            match kind {
                0 => {
                    let i = rng.random_range(0..replicas);
                    let mut slots_guard = slots.lock().unwrap();
                    let slot = &mut slots_guard[i];
                    if !slot.faulted
                        && let Some(mut proxy) = slot.proxy.take()
                    {
                        slot.faulted = true;
                        proxy.crash();
                        tally.proxy_kills.fetch_add(1, Ordering::Relaxed);
                        let (slots, kubeconfig, dir, spec) = (
                            slots.clone(),
                            proxy_kubeconfigs[i].clone(),
                            dir.clone(),
                            slot.spec.clone(),
                        );
                        let down_for = Duration::from_millis(rng.random_range(500..6000));
                        tokio::spawn(async move {
                            tokio::time::sleep(down_for).await;
                            let restarted = tokio::task::spawn_blocking(move || {
                                Proxy::start_with_kubeconfig(&kubeconfig, &dir, spec)
                            })
                            .await;
                            let mut slots = slots.lock().unwrap();
                            if let Ok(Ok(p)) = restarted {
                                slots[i].proxy = Some(p);
                            }
                            slots[i].faulted = false;
                            slots[i].excused_until = Instant::now() + Duration::from_millis(100);
                        });
                    }
                }
                1 => {
                    let i = rng.random_range(0..replicas);
                    let mut slots_guard = slots.lock().unwrap();
                    let slot = &mut slots_guard[i];
                    if !slot.faulted
                        && let Some(proxy) = slot.proxy.as_ref()
                    {
                        slot.faulted = true;
                        let _ = proxy.process.signal(Signal::SIGSTOP);
                        tally.proxy_freezes.fetch_add(1, Ordering::Relaxed);
                        let pid = proxy.process.pid();
                        let slots = slots.clone();
                        let frozen_for = Duration::from_millis(rng.random_range(500..7000));
                        tokio::spawn(async move {
                            tokio::time::sleep(frozen_for).await;
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid as i32),
                                Signal::SIGCONT,
                            );
                            // Requests that were queued while frozen complete late; they are
                            // not failures of the barrier.
                            let mut slots = slots.lock().unwrap();
                            slots[i].faulted = false;
                            slots[i].excused_until = Instant::now() + Duration::from_secs(6);
                        });
                    }
                }
                2 => {
                    if let Some(i) = leader_index(&client).await {
                        let mut ops = operators.lock().unwrap();
                        if let Some(mut op) = ops[i].take() {
                            op.process.kill();
                            tally.operator_kills.fetch_add(1, Ordering::Relaxed);
                            let (operators, kubeconfig, dir, spec) = (
                                operators.clone(),
                                operator_kubeconfig.clone(),
                                dir.clone(),
                                operator_spec(i),
                            );
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                let restarted = tokio::task::spawn_blocking(move || {
                                    Operator::start_with_kubeconfig(&kubeconfig, &dir, spec)
                                })
                                .await;
                                if let Ok(Ok(op)) = restarted {
                                    operators.lock().unwrap()[i] = Some(op);
                                }
                            });
                        }
                    }
                }
                3 => {
                    let cp = cp.clone();
                    tally.apiserver_restarts.fetch_add(1, Ordering::Relaxed);
                    tokio::task::spawn_blocking(move || cp.restart()).await??;
                }
                5 => {
                    // A frozen leader wakes believing it leads: its Lease check must stop it.
                    if let Some(i) = leader_index(&client).await {
                        let pid = operators.lock().unwrap()[i].as_ref().map(|op| op.process.pid());
                        if let Some(pid) = pid {
                            let pid = nix::unistd::Pid::from_raw(pid as i32);
                            let _ = nix::sys::signal::kill(pid, Signal::SIGSTOP);
                            tally.operator_freezes.fetch_add(1, Ordering::Relaxed);
                            let frozen_for = Duration::from_millis(rng.random_range(1000..8000));
                            tokio::spawn(async move {
                                tokio::time::sleep(frozen_for).await;
                                let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
                            });
                        }
                    }
                }
                _ => {
                    // A burst of edits faster than the debounce; only the last must win.
                    tally.bursts.fetch_add(1, Ordering::Relaxed);
                    for _ in 0..5 {
                        tag += 1;
                        api.patch(
                            "web",
                            &params,
                            &Patch::Apply(spec_for(&ns, tag, &default_backend.url(), &gen_backend.url())),
                        )
                        .await?;
                    }
                }
            }
        }
        tag += 1;
        let rollout_start = Instant::now();
        let patched = loop {
            match api
                .patch(
                    "web",
                    &params,
                    &Patch::Apply(spec_for(&ns, tag, &default_backend.url(), &gen_backend.url())),
                )
                .await
            {
                Ok(rc) => break rc,
                Err(e) if rollout_start.elapsed() < Duration::from_secs(60) => {
                    eprintln!("chaos: apply failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let generation = patched.metadata.generation.unwrap_or_default();
        tally.rollouts.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
                Ok(Some((g, at))) if g >= generation => {
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
                    tally.rollouts_timed_out.fetch_add(1, Ordering::Relaxed);
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

    let t = &tally;
    let v = violations.lock().unwrap().clone();
    println!(
        "| seed | rollouts | timed out | proxy SIGKILL | proxy SIGSTOP | operator leader kills | operator leader SIGSTOP | apiserver restarts | edit bursts | clock skew | Ready=True events checked | ready replicas checked (per event) | invariant violations | requests | failed (ready replicas) | excused (faulted replica) | longest apply→Ready |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let (events, checks) = (
        t.ready_events.load(Ordering::Relaxed),
        t.ready_checks.load(Ordering::Relaxed),
    );
    println!(
        "| {seed} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({:.1}) | {} | {} | {} | {} | {:.2} s |",
        t.rollouts.load(Ordering::Relaxed),
        t.rollouts_timed_out.load(Ordering::Relaxed),
        t.proxy_kills.load(Ordering::Relaxed),
        t.proxy_freezes.load(Ordering::Relaxed),
        t.operator_kills.load(Ordering::Relaxed),
        t.operator_freezes.load(Ordering::Relaxed),
        t.apiserver_restarts.load(Ordering::Relaxed),
        t.bursts.load(Ordering::Relaxed),
        if faketime.is_some() {
            "proxy-0 +30 s"
        } else {
            "none"
        },
        events,
        checks,
        checks as f64 / events.max(1) as f64,
        v.len(),
        t.requests.load(Ordering::Relaxed),
        t.failed_requests.load(Ordering::Relaxed),
        t.excused_failures.load(Ordering::Relaxed),
        longest_not_ready.as_secs_f64(),
    );
    for violation in &v {
        println!("violation: {violation}");
    }
    drop(slots);
    drop(operators);
    if !v.is_empty() || t.failed_requests.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
    Ok(())
}
