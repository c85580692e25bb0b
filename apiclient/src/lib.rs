//! What lockstep's two binaries share as processes: how they talk to the Kubernetes API, how
//! they stop, and how they log.
//!
//! A barrier is only as quick as its slowest party to notice a change, so both sides share
//! one policy for the moments the apiserver is away: requests fail at once and are retried
//! by their callers on their own short ticks, and watches reconnect within seconds. kube's
//! defaults suit a fleet of controllers that must spare a struggling apiserver; here they
//! left `Ready` False for 30–60 s after an apiserver restart (measured in
//! `e2e/bench/RESULTS.md`, "Chaos").

use std::time::Duration;

#[cfg(any(test, feature = "mock"))]
pub mod mock;

use kube::runtime::{
    utils::{Backoff, ResetTimerBackoff},
    watcher::ExponentialBackoff,
};

/// A client from the usual places (KUBECONFIG, in-cluster) whose failed requests fail at
/// once. kube retries 429 and 503 answers itself with a backoff that grows towards 1000 s,
/// which after an apiserver restart held a reconcile (and the object's next one) for over
/// 30 s; every caller in lockstep retries on its own (requeue, the next tick).
pub async fn client() -> Result<kube::Client, kube::Error> {
    let mut config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    config.default_retry = false;
    kube::Client::try_from(config)
}

/// The watchers' reconnect backoff: 250 ms doubling to 3 s, plus up to 100% jitter so a
/// fleet does not reconnect in step; reset by any event. kube's default (client-go's 800 ms
/// to 30 s) left a replica or the operator up to 30 s behind an apiserver that was back.
pub fn watch_backoff() -> impl Backoff {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(3))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(ExponentialBackoff::from(exponential), Duration::from_secs(120))
}

/// Waits for SIGTERM or SIGINT and names it. Both binaries stop the same way: a handler that
/// cannot be installed is an error at start-up, not a process that cannot be stopped.
pub async fn shutdown_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// The format of both binaries' logs on stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, coloured only on a terminal.
    Text,
    /// One JSON object per line, the event's fields at the top level beside `message`,
    /// `level`, `target` and `timestamp`: the same shape from the operator and the proxy, so
    /// one log pipeline reads both.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("log format {other:?}: expected text or json")),
        }
    }
}

/// The log filter when `RUST_LOG` is unset. kube-lease-manager logs every renewal at info.
const DEFAULT_LOG_FILTER: &str = "info,kube_lease_manager=warn";

/// Installs the process's logger: `RUST_LOG` or [`DEFAULT_LOG_FILTER`], to stderr, in
/// `format`. Both binaries call this once at start-up. A release build logs at debug level
/// at most: trace is compiled out (the workspace's `Cargo.toml`, `tracing`).
pub fn init_logging(format: LogFormat) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing::subscriber::set_global_default(subscriber(format, std::io::stderr, ansi))
        .expect("the logger is installed once, at start-up");
}

fn subscriber<W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        // Colour codes only for a terminal: log files and test harnesses parse these lines.
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_logs_put_the_event_fields_beside_the_message() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = subscriber(LogFormat::Json, move || writer.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(replica = "proxy-0", "lockstep-proxy listening http=127.0.0.1:1");
        });
        let line = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let event: serde_json::Value = serde_json::from_str(line.trim()).expect(&line);
        assert_eq!(
            event["message"], "lockstep-proxy listening http=127.0.0.1:1",
            "{line}"
        );
        assert_eq!(event["replica"], "proxy-0", "{line}");
        assert_eq!(event["level"], "INFO", "{line}");
    }

    #[test]
    fn log_formats_are_text_or_json() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().unwrap_err().contains("text or json"));
    }

    #[test]
    fn the_watch_backoff_never_gives_up_and_stays_within_six_seconds() {
        let mut backoff = watch_backoff();
        let delays: Vec<Duration> = (0..50).map(|_| backoff.next().expect("never gives up")).collect();
        assert!(delays[0] >= Duration::from_millis(250) && delays[0] <= Duration::from_millis(500));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(6)), "{delays:?}");
        assert!(
            delays[49] >= Duration::from_secs(3),
            "grows to its cap: {delays:?}"
        );
        backoff.reset();
        assert!(
            backoff.next().unwrap() <= Duration::from_millis(500),
            "reset starts over"
        );
    }
}
