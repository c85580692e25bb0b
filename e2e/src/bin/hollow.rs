//! Hollow proxy replicas: many replicas of one fleet in one process, each running the real
//! fleet sync of `lockstep_proxy::fleet` (watches, plan, route table swap, RouterReplica
//! report, Lease, join check) with its own apiserver client and connections, and no data
//! plane. Kubernetes' kubemark does the same with hollow nodes to measure a control plane at a
//! scale one machine cannot run for real.
//!
//! `lockstep-e2e-hollow --replicas N --namespace NS --fleet F [--prefix hollow]
//!  [--lease-duration 30] [--start-rate 50]`: uses `KUBECONFIG`; logs
//! `hollow replicas joined n=N` once every replica is ready, and leaves the fleet (deletes
//! every Lease and RouterReplica) on SIGTERM or SIGINT.

use std::{sync::Arc, time::Duration};

use clap::Parser;
use lockstep_proxy::{fleet, state::ProxyState};

/// Many hollow replicas of one fleet in one process (uses `KUBECONFIG`).
#[derive(Debug, Parser)]
#[command(name = "lockstep-e2e-hollow")]
struct Args {
    /// How many replicas.
    #[arg(long, default_value_t = 100)]
    replicas: usize,
    /// The namespace their Leases and RouterReplicas live in, and the one they serve.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// The fleet they join.
    #[arg(long = "fleet", default_value = "default")]
    fleet_name: String,
    /// Replica names are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "hollow")]
    prefix: String,
    /// Lease duration in seconds.
    #[arg(long = "lease-duration", default_value_t = 30)]
    lease: u64,
    /// Replicas started per second.
    #[arg(long, default_value_t = 50)]
    start_rate: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber_init();
    let Args {
        replicas,
        namespace,
        fleet_name,
        prefix,
        lease,
        start_rate,
    } = Args::parse();
    let kubeconfig = std::env::var("KUBECONFIG").map_err(|_| anyhow::anyhow!("KUBECONFIG must be set"))?;

    let mut handles = Vec::with_capacity(replicas);
    let mut states = Vec::with_capacity(replicas);
    let pause = Duration::from_micros(1_000_000 / start_rate.max(1));
    for i in 0..replicas {
        // A client per replica: its own connection pool, so the apiserver sees N clients.
        let client = lockstep_e2e::client_from_kubeconfig(std::path::Path::new(&kubeconfig)).await?;
        let name = format!("{prefix}-{i}");
        let state = ProxyState::new(name.clone());
        let mut options = fleet::FleetOptions::new(name, namespace.clone(), fleet_name.clone());
        options.lease_duration = Duration::from_secs(lease);
        handles.push(fleet::start_with_client(state.clone(), options, client)?);
        states.push(state);
        tokio::time::sleep(pause).await;
    }
    eprintln!("hollow replicas started n={replicas}");
    let all_ready = |states: &[Arc<ProxyState>]| states.iter().filter(|s| s.is_ready()).count();
    loop {
        let ready = all_ready(&states);
        if ready == replicas {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("hollow replicas joined n={replicas}");

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("hollow replicas leaving");
    futures::future::join_all(handles.into_iter().map(|h| h.leave())).await;
    Ok(())
}

fn tracing_subscriber_init() {
    // Quiet by default: a thousand replicas logging each swap would measure the logger.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}
