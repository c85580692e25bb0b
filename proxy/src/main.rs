//! lockstep-proxy binary.
//!
//! Kubernetes mode:
//! `lockstep-proxy --replica-name NAME --namespace NS --fleet default --listen ADDR --admin ADDR`
//! Standalone mode: `lockstep-proxy --config FILE.yaml --listen ADDR --admin ADDR`.
//!
//! Every listener is bound before anything else starts, and each bound address is logged
//! (on stderr) as one line whose message is exactly
//!
//! ```text
//! lockstep-proxy listening KIND=IP:PORT
//! ```
//!
//! with KIND one of `http`, `tls`, `admin`, so `--listen 127.0.0.1:0` can be used and the port
//! read back with the pattern `lockstep-proxy listening (\w+)=([^\s"]+)` (with
//! `--log-format json` the line is the `message` field of a JSON object, hence the quote).
//!
//! On SIGTERM or SIGINT the replica turns unready, leaves its fleet (Kubernetes mode), stops
//! accepting, lets in-flight requests finish for up to `--drain-timeout`, and exits 0.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use lockstep_crds::duration::parse as parse_duration;
use lockstep_proxy::{
    LoadBalancing, Proxy, ProxyOptions, admin, fleet,
    server::{self, Drained},
    standalone,
    state::ProxyState,
};
use tokio::net::TcpListener;

/// mimalloc, in every build: musl's own allocator (the static image's) cost the proxy a
/// quarter of its keep-alive requests per CPU-second, and glibc's serves tokio's aligned task
/// of every new connection on its slow path (see proxy/Cargo.toml).
#[global_allocator]
static ALLOCATOR: lockstep_allocator::Mimalloc = lockstep_allocator::Mimalloc;

/// lockstep's reverse proxy.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Replica name (Kubernetes mode): names its Lease and its RouterReplica.
    #[arg(long, env = "LOCKSTEP_REPLICA_NAME", required_unless_present = "config")]
    replica_name: Option<String>,
    /// Namespace of the replica's Lease and RouterReplica; RouterConfigs are watched there
    /// unless --watch-namespaces or --all-namespaces say otherwise.
    #[arg(long, env = "LOCKSTEP_NAMESPACE", required_unless_present = "config")]
    namespace: Option<String>,
    /// The fleet whose RouterConfigs this replica serves.
    #[arg(long, default_value = lockstep_crds::DEFAULT_FLEET)]
    fleet: String,
    /// Serve RouterConfigs (and read Services, EndpointSlices and TLS Secrets) of every
    /// namespace.
    #[arg(long, conflicts_with_all = ["config", "watch_namespaces"])]
    all_namespaces: bool,
    /// Serve RouterConfigs of these namespaces (comma-separated) instead of --namespace's.
    /// A Service of another namespace that a generated RouterConfig names
    /// (`service.namespace`) is resolved only when its namespace is among them; otherwise the
    /// replica reports that generation rejected, naming the field.
    #[arg(long, value_delimiter = ',', conflicts_with = "config")]
    watch_namespaces: Vec<String>,
    /// Duration of the replica's membership Lease (Kubernetes mode), in whole seconds of at
    /// least one (as the Lease records it); renewed every third of it. A replica that cannot
    /// renew within it is excluded from the barrier.
    #[arg(long, default_value = "10s", value_parser = lockstep_core::lease::parse_lease_duration)]
    lease_duration: Duration,
    /// The Pod this replica runs in (downward API); its RouterReplica is owned by the Pod, so
    /// deleting the Pod deletes it. Needs --pod-uid.
    #[arg(long, env = "POD_NAME", requires = "pod_uid")]
    pod_name: Option<String>,
    /// The uid of that Pod (downward API `metadata.uid`).
    #[arg(long, env = "POD_UID")]
    pod_uid: Option<String>,
    /// Quiet time that ends a burst of RouterConfig changes before one swap (a change after
    /// such a quiet time is served at once).
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    debounce: Duration,
    /// Longest a burst of changes can delay a swap.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    debounce_max: Duration,
    /// Standalone mode: serve the RouterConfig documents of this YAML file, reloaded on change.
    #[arg(long, conflicts_with = "namespace")]
    config: Option<PathBuf>,
    /// How often standalone mode checks the file for changes.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    reload_interval: Duration,
    /// HTTP listener (HTTP/1.1 and h2c prior knowledge); port 0 picks a free port.
    #[arg(long)]
    listen: SocketAddr,
    /// TLS listener (Kubernetes mode): certificates from the `kubernetes.io/tls` Secrets the
    /// RouterConfigs name, chosen by SNI; TLS 1.2 and 1.3; ALPN h2 and http/1.1.
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// Admin listener: /healthz, /readyz, /metrics, /config.
    #[arg(long)]
    admin: SocketAddr,
    /// Longest time in-flight requests get to finish after SIGTERM.
    #[arg(long, default_value = "25s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Longest time a client may take to send a request head once it started one.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// Connections with nothing in flight and nothing received for this long are closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// A connection that sends nothing for this long while the proxy waits for its request
    /// body is closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    request_body_timeout: Duration,
    /// A connection that reads nothing of its response for this long is closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    send_timeout: Duration,
    /// An upgraded connection (WebSocket) with no byte either way for this long is closed.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    tunnel_idle_timeout: Duration,
    /// Most client connections open at once per listener; above it new ones are closed at
    /// accept. 0: no limit.
    #[arg(long, default_value_t = 50_000)]
    max_client_connections: usize,
    /// Largest request head (HTTP/1) or header list (HTTP/2) in bytes; 431 above.
    #[arg(long, default_value_t = 32 * 1024, value_parser = clap::value_parser!(u32).range(8192..))]
    max_header_bytes: u32,
    /// Most header fields in an HTTP/1 request; 431 above.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_header_count: u32,
    /// Longest wait for a TCP connection to an upstream; 504 after.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Longest wait for an upstream's response head; 504 after.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    response_timeout: Duration,
    /// Idle pooled upstream connections are closed after this long (keep it below the
    /// backends' keep-alive timeout).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    upstream_idle_timeout: Duration,
    /// Endpoint choice for Service backends.
    #[arg(long, value_enum, default_value_t = LoadBalancing::P2c)]
    load_balancing: LoadBalancing,
    /// Log one line per request (target "access").
    #[arg(long)]
    access_log: bool,
    /// Log format on stderr.
    #[arg(long, default_value = "text")]
    log_format: lockstep_apiclient::LogFormat,
    /// Runtime worker threads (default: one per CPU). With 1, a single-threaded runtime runs
    /// everything on the main thread.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
}

/// How long a blocking thread (a file poll, a table build, a DNS lookup) waits for more work
/// before it exits, when one thread serves: tokio's default is 10 s, and the standalone file
/// poll (every 500 ms by default) then kept a second thread alive for good. While a process
/// has one thread, the kernel skips the file table's reference counting on each socket call
/// (fdget/fput): about 0.25 µs less kernel time per new-connection request and 0.1 µs per
/// keep-alive one (perf; e2e/bench/RESULTS.md, "Data plane, 2026-12-05 noon"). The price is
/// a thread started per poll: about 0.25 ms of CPU each, 15 ms more a minute at rest.
const SINGLE_THREAD_BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_millis(50);

fn main() -> ExitCode {
    let args = Args::parse();
    lockstep_apiclient::init_logging(args.log_format);
    let threads = args
        .worker_threads
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_keep_alive(SINGLE_THREAD_BLOCKING_KEEP_ALIVE)
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "lockstep-proxy failed");
            ExitCode::FAILURE
        }
    }
}

async fn bind(kind: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {kind} listener {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!("lockstep-proxy listening {kind}={bound}");
    Ok(listener)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let replica = match (&args.replica_name, &args.config) {
        (Some(name), _) => name.clone(),
        (None, _) => "standalone".to_owned(),
    };
    let state = ProxyState::new(replica);
    let options = ProxyOptions {
        header_read_timeout: args.header_read_timeout,
        idle_timeout: args.idle_timeout,
        request_body_timeout: args.request_body_timeout,
        send_timeout: args.send_timeout,
        tunnel_idle_timeout: args.tunnel_idle_timeout,
        max_client_connections: args.max_client_connections,
        max_header_bytes: args.max_header_bytes as usize,
        max_header_count: args.max_header_count as usize,
        connect_timeout: args.connect_timeout,
        response_timeout: args.response_timeout,
        upstream_idle_timeout: args.upstream_idle_timeout,
        load_balancing: args.load_balancing,
        access_log: args.access_log,
        scheme: "http",
    };

    let admin_listener = bind("admin", args.admin).await?;
    let http_listener = bind("http", args.listen).await?;
    let tls_listener = match args.tls_listen {
        Some(addr) => Some(bind("tls", addr).await?),
        None => None,
    };
    let admin = admin::serve(state.clone(), admin_listener)?;
    let proxy = Proxy::new(state.clone(), options);
    let server = server::serve_proxy(proxy.clone(), http_listener)?;
    let tls_server = match tls_listener {
        Some(listener) => {
            let acceptor = server::tls_acceptor(state.certs.clone()).context("TLS configuration")?;
            Some(server::serve_tls(proxy, listener, acceptor)?)
        }
        None => None,
    };

    let fleet_handle = match &args.config {
        Some(path) => {
            standalone::watch(
                state.clone(),
                standalone::WatchOptions {
                    path: path.clone(),
                    fleet: args.fleet.clone(),
                    interval: args.reload_interval,
                },
            );
            None
        }
        None => {
            let replica = args
                .replica_name
                .clone()
                .context("--replica-name is required without --config")?;
            let namespace = args
                .namespace
                .clone()
                .context("--namespace is required without --config")?;
            let mut options = fleet::FleetOptions::new(replica, namespace, args.fleet.clone());
            if args.all_namespaces {
                options.scope = fleet::WatchScope::All;
            } else if !args.watch_namespaces.is_empty() {
                options.scope = fleet::WatchScope::Namespaces(args.watch_namespaces.clone());
            }
            options.pod = args
                .pod_name
                .clone()
                .zip(args.pod_uid.clone())
                .map(|(name, uid)| fleet::PodRef { name, uid });
            options.lease_duration = args.lease_duration;
            options.debounce = args.debounce;
            options.debounce_max = args.debounce_max;
            Some(
                fleet::start(state.clone(), options)
                    .await
                    .context("starting the Kubernetes sync")?,
            )
        }
    };

    let signal = lockstep_apiclient::shutdown_signal()
        .await
        .context("installing the SIGTERM and SIGINT handlers")?;
    tracing::info!(signal, drain_timeout = ?args.drain_timeout, "shutting down: unready, leaving the fleet, draining");
    state.start_draining();
    let deadline = tokio::time::Instant::now() + args.drain_timeout;
    if let Some(handle) = fleet_handle
        && tokio::time::timeout_at(deadline, handle.leave()).await.is_err()
    {
        tracing::warn!("leaving the fleet took the whole drain timeout");
    }
    let remaining = || deadline.saturating_duration_since(tokio::time::Instant::now());
    let (plain, tls) = tokio::join!(server.shutdown(remaining()), async {
        match tls_server {
            Some(tls) => tls.shutdown(remaining()).await,
            None => Drained::Complete,
        }
    });
    let drained = match (plain, tls) {
        (Drained::Complete, Drained::Complete) => Drained::Complete,
        (Drained::TimedOut { remaining: a }, Drained::TimedOut { remaining: b }) => {
            Drained::TimedOut { remaining: a + b }
        }
        (Drained::TimedOut { remaining }, _) | (_, Drained::TimedOut { remaining }) => {
            Drained::TimedOut { remaining }
        }
    };
    match drained {
        Drained::Complete => tracing::info!("drained; exiting"),
        Drained::TimedOut { remaining } => {
            tracing::warn!(
                remaining,
                "drain timeout passed; closing the remaining connections"
            )
        }
    }
    admin.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_flags_take_the_one_syntax_and_the_lease_rule() {
        let args = |extra: &[&str]| {
            let mut argv = vec![
                "p",
                "--config",
                "f.yaml",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv)
        };
        let parsed =
            args(&["--lease-duration", "1m30s", "--drain-timeout", "1m0.5s"]).expect("kubectl syntax");
        assert_eq!(parsed.lease_duration, Duration::from_secs(90));
        assert_eq!(parsed.drain_timeout, Duration::from_millis(60_500));
        for refused in [
            ["--lease-duration", "1.5s"],
            ["--lease-duration", "500ms"],
            ["--drain-timeout", "5d"],
        ] {
            assert!(args(&refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn modes() {
        let standalone = Args::try_parse_from([
            "p",
            "--config",
            "f.yaml",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ]);
        assert!(standalone.is_ok());
        let kube = Args::try_parse_from([
            "p",
            "--replica-name",
            "r",
            "--namespace",
            "ns",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--all-namespaces",
        ]);
        assert!(kube.is_ok_and(|a| a.all_namespaces));
        let neither = Args::try_parse_from(["p", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]);
        assert!(neither.is_err());
    }
}
