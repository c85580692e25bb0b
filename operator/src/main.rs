//! `lockstep-operator`: runs the operator (the default), or `status` / `wait` for people and
//! pipelines. Logs `lockstep-operator listening admin=ADDR` once its admin endpoint is bound.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use lockstep_core::barrier;
use lockstep_operator::{admin, cli, controller, gateway, leader, metrics::Metrics};

#[derive(Parser, Debug)]
#[command(
    name = "lockstep-operator",
    version,
    about = "lockstep's operator: Ready means every live proxy serves the generation"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator (the default).
    Run(RunArgs),
    #[command(flatten)]
    People(cli::Command),
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Admin endpoint (/healthz, /readyz, /metrics); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin: SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Identity in the leader Lease (default: hostname-pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Leader Lease duration: whole seconds, as the Lease records them.
    #[arg(long, default_value = "15s", value_parser = lockstep_core::lease::parse_lease_duration)]
    lease_duration: Duration,
    /// A rollout lagging longer than this is Stalled.
    #[arg(long, default_value = "60s", value_parser = cli::parse_duration)]
    stall_timeout: Duration,
    /// Delete a RouterReplica once its replica's Lease has been dead (expired, released or
    /// missing) this long, so `kubectl get rrep` does not list crashed replicas as ready.
    #[arg(long, default_value = "60s", value_parser = cli::parse_duration)]
    replica_gc_after: Duration,
    /// Log format.
    #[arg(long, default_value = "text")]
    log_format: lockstep_apiclient::LogFormat,
    /// The image of the proxies provisioned for Gateways that name no existing fleet (the
    /// chart passes the image of its own proxies).
    #[arg(long, default_value = DEFAULT_PROXY_IMAGE)]
    gateway_proxy_image: String,
}

/// The image the chart's proxy Deployment uses by default (its appVersion is the workspace's).
const DEFAULT_PROXY_IMAGE: &str = concat!("ghcr.io/lockstep-dev/lockstep-proxy:", env!("CARGO_PKG_VERSION"));

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Installed as `kubectl-lockstep`, the binary is the kubectl plugin: `kubectl lockstep status`.
    let cli = Cli::parse();
    match cli.command {
        Some(Command::People(command)) => std::process::exit(command.run().await?),
        Some(Command::Run(args)) => run(args).await,
        None => run(cli.run).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    lockstep_apiclient::init_logging(args.log_format);
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "operator".into());
        format!("{}-{}", host.trim(), std::process::id())
    });
    let client = lockstep_apiclient::client()
        .await
        .context("no Kubernetes client configuration")?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));

    let (listener, bound) = admin::bind(args.admin)
        .await
        .with_context(|| format!("binding --admin {}", args.admin))?;
    tracing::info!("lockstep-operator listening admin={bound}");
    tokio::spawn(admin::serve(listener, metrics.clone(), ready.clone()));

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let leader_metrics = metrics.clone();
    let (leading, election) = leader::campaign(
        client.clone(),
        leader::LeaderOptions {
            namespace: args.lease_namespace.clone(),
            identity: identity.clone(),
            duration: args.lease_duration,
        },
        shutdown_rx.clone(),
        move |leading| {
            leader_metrics.leader.set(i64::from(leading));
        },
    )
    .await
    .context("starting leader election")?;

    let mut stop = shutdown_rx.clone();
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    // The Gateway API front door: waiting (one log line) while its CRDs are not installed.
    let mut gateway_stop = shutdown_rx.clone();
    let gateway = tokio::spawn(gateway::run(
        client.clone(),
        gateway::Options {
            proxy_image: args.gateway_proxy_image.clone(),
        },
        leading.clone(),
        metrics.clone(),
        async move {
            let _ = gateway_stop.changed().await;
        },
    ));
    let controller = tokio::spawn(controller::run(
        client,
        controller::Options {
            settings: barrier::Settings {
                stall_timeout: args.stall_timeout,
                ..Default::default()
            },
            identity: identity.clone(),
            replica_gc_after: args.replica_gc_after,
        },
        leading,
        metrics,
        ready,
        shutdown,
    ));

    let signal = lockstep_apiclient::shutdown_signal()
        .await
        .context("installing the SIGTERM and SIGINT handlers")?;
    tracing::info!(signal, "shutting down: releasing leadership");
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), election).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), controller).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), gateway).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Cli, Command};
    use clap::Parser;
    use std::time::Duration;

    fn wait_timeout(args: &[&str]) -> Result<Duration, clap::Error> {
        let cli = Cli::try_parse_from(["lockstep-operator", "wait", "web"].iter().chain(args))?;
        match cli.command {
            Some(Command::People(lockstep_operator::cli::Command::Wait(args))) => Ok(args.timeout),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn wait_timeout_takes_kubectl_durations_and_bare_seconds() {
        assert_eq!(wait_timeout(&[]).unwrap(), Duration::from_secs(300));
        assert_eq!(
            wait_timeout(&["--timeout", "90s"]).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            wait_timeout(&["--timeout=1h30m"]).unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            wait_timeout(&["--timeout", "500ms"]).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(wait_timeout(&["--timeout", "7"]).unwrap(), Duration::from_secs(7));
        let err = wait_timeout(&["--timeout", "3 days"]).unwrap_err().to_string();
        assert!(err.contains("invalid duration \"3 days\""), "{err}");
    }

    #[test]
    fn run_flags_take_the_same_durations() {
        let cli = Cli::try_parse_from([
            "lockstep-operator",
            "--stall-timeout",
            "1m30s",
            "--lease-duration",
            "15",
        ])
        .unwrap();
        assert_eq!(cli.run.stall_timeout, Duration::from_secs(90));
        assert_eq!(cli.run.lease_duration, Duration::from_secs(15));
        // A Lease records whole seconds: refused, as the proxy refuses it, not truncated.
        let fractional = Cli::try_parse_from(["lockstep-operator", "--lease-duration", "1.5s"]);
        assert!(fractional.is_err());
    }
}
