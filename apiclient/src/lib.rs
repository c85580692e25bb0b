//! How lockstep's operator and proxies talk to the Kubernetes API.
//!
//! A barrier is only as quick as its slowest party to notice a change, so both sides share
//! one policy for the moments the apiserver is away: requests fail at once and are retried
//! by their callers on their own short ticks, and watches reconnect within seconds. kube's
//! defaults suit a fleet of controllers that must spare a struggling apiserver; here they
//! left `Ready` False for 30–60 s after an apiserver restart (measured in
//! `e2e/bench/RESULTS.md`, "Chaos").

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
