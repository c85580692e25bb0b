//! What the run counts, and the Markdown row it prints (the table of e2e/bench/RESULTS.md).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

#[derive(Default)]
pub struct Tally {
    pub rollouts: AtomicU64,
    pub rollouts_timed_out: AtomicU64,
    pub proxy_kills: AtomicU64,
    pub proxy_freezes: AtomicU64,
    pub operator_kills: AtomicU64,
    pub apiserver_restarts: AtomicU64,
    pub bursts: AtomicU64,
    pub requests: AtomicU64,
    pub failed_requests: AtomicU64,
    pub excused_failures: AtomicU64,
    pub ready_checks: AtomicU64,
    pub ready_events: AtomicU64,
    pub operator_freezes: AtomicU64,
    pub recreates: AtomicU64,
    pub tls_takeovers: AtomicU64,
}

/// Prints the header, the run's row and one line per violation.
pub fn print(seed: u64, t: &Tally, clock_skew: bool, violations: &[String], longest_not_ready: Duration) {
    println!(
        "| seed | rollouts | timed out | proxy SIGKILL | proxy SIGSTOP | operator leader kills | operator leader SIGSTOP | apiserver restarts | edit bursts | re-creates | TLS-host takeovers | clock skew | Ready=True events checked | ready replicas checked (per event) | invariant violations | requests | failed (ready replicas) | excused (faulted replica) | longest apply→Ready |"
    );
    println!(
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let (events, checks) = (
        t.ready_events.load(Ordering::Relaxed),
        t.ready_checks.load(Ordering::Relaxed),
    );
    println!(
        "| {seed} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({:.1}) | {} | {} | {} | {} | {:.2} s |",
        t.rollouts.load(Ordering::Relaxed),
        t.rollouts_timed_out.load(Ordering::Relaxed),
        t.proxy_kills.load(Ordering::Relaxed),
        t.proxy_freezes.load(Ordering::Relaxed),
        t.operator_kills.load(Ordering::Relaxed),
        t.operator_freezes.load(Ordering::Relaxed),
        t.apiserver_restarts.load(Ordering::Relaxed),
        t.bursts.load(Ordering::Relaxed),
        t.recreates.load(Ordering::Relaxed),
        t.tls_takeovers.load(Ordering::Relaxed),
        if clock_skew { "proxy-0 +30 s" } else { "none" },
        events,
        checks,
        checks as f64 / events.max(1) as f64,
        violations.len(),
        t.requests.load(Ordering::Relaxed),
        t.failed_requests.load(Ordering::Relaxed),
        t.excused_failures.load(Ordering::Relaxed),
        longest_not_ready.as_secs_f64(),
    );
    for violation in violations {
        println!("violation: {violation}");
    }
}
