//! Soak load with configuration churn against a running standalone `lockstep-proxy`: keeps
//! `--concurrency` keep-alive clients busy while the config file is rewritten every
//! `--rewrite-ms` with one path renamed (`/pr-N`, like preview environments coming and
//! going), and samples the proxy's RSS and the number of per-route series on `/metrics`.
//!
//! `lockstep-e2e-churn --proxy 127.0.0.1:P --admin 127.0.0.1:A --pid PID --config FILE
//! --backend http://127.0.0.1:B [--seconds 150] [--rewrite-ms 100] [--sample-s 10]
//! [--concurrency 16] [--routes 20]` prints a tab-separated line per sample (seconds,
//! config version, requests per second, failures, RSS KiB, /metrics lines, routes with
//! series) and a final summary line. `e2e/bench/churn.sh` starts everything and runs it.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Parser;

/// Soak load with configuration churn against a running standalone `lockstep-proxy`.
#[derive(Debug, Parser)]
#[command(name = "lockstep-e2e-churn")]
struct Args {
    /// The proxy's HTTP listener.
    #[arg(long)]
    proxy: SocketAddr,
    /// The proxy's admin listener (for /metrics).
    #[arg(long)]
    admin: SocketAddr,
    /// The proxy's pid (for its RSS).
    #[arg(long)]
    pid: u32,
    /// The config file the proxy reloads; rewritten by this run.
    #[arg(long)]
    config: PathBuf,
    /// The backend url every route goes to.
    #[arg(long)]
    backend: String,
    /// How long to run.
    #[arg(long, default_value_t = 150)]
    seconds: u64,
    /// Milliseconds between rewrites of the file.
    #[arg(long, default_value_t = 100)]
    rewrite_ms: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample_s: u64,
    /// Keep-alive clients.
    #[arg(long, default_value_t = 16)]
    concurrency: u64,
    /// Fixed routes besides the renamed one.
    #[arg(long, default_value_t = 20)]
    routes: u64,
}

/// Version `n` of the file: `routes` fixed paths plus the renamed one.
fn config(n: u64, routes: u64, backend: &str) -> String {
    let mut paths = String::new();
    for i in 0..routes {
        paths.push_str(&format!(
            "    - {{path: /static-{i}, pathType: Prefix, backend: {{url: \"{backend}\"}}}}\n"
        ));
    }
    paths.push_str(&format!(
        "    - {{path: /pr-{n}, pathType: Prefix, backend: {{url: \"{backend}\"}}}}\n"
    ));
    format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: churn, namespace: default, generation: {n}}}\n\
         spec:\n  rules:\n  - host: churn.test\n    paths:\n{paths}"
    )
}

/// Replaces the file in one step, so the proxy never reads half of it.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// (lines of the exposition, distinct route labels of the per-route request series).
async fn scrape(client: &reqwest::Client, admin: SocketAddr) -> Result<(usize, usize)> {
    let text = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let routes: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("lockstep_proxy_request"))
        .filter_map(|l| l.split("route=\"").nth(1)?.split('"').next())
        .collect();
    Ok((text.lines().count(), routes.len()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let Args {
        proxy,
        admin,
        pid,
        config: file,
        backend,
        seconds,
        rewrite_ms,
        sample_s,
        concurrency,
        routes,
    } = Args::parse();
    let rewrite = Duration::from_millis(rewrite_ms);
    let sample = Duration::from_secs(sample_s);

    let version = Arc::new(AtomicU64::new(1));
    write_atomically(&file, &config(1, routes, &backend))?;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..concurrency {
        let (stop, ok, failed, version) = (stop.clone(), ok.clone(), failed.clone(), version.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Half the requests go to the path renamed in each version (404 until the
                // proxy has loaded it: those count as answered, not failed), half to fixed ones.
                let path = if i % 2 == 0 {
                    format!("/pr-{}/x", version.load(Ordering::Relaxed))
                } else {
                    format!("/static-{}/x", i % routes.max(1))
                };
                let answer = client
                    .get(format!("http://{proxy}{path}"))
                    .header("host", "churn.test")
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status().is_success() || r.status() == 404 => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let rewriter = {
        let (stop, version, file, backend) = (stop.clone(), version.clone(), file.clone(), backend.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(rewrite).await;
                let n = version.load(Ordering::Relaxed) + 1;
                if write_atomically(&file, &config(n, routes, &backend)).is_ok() {
                    version.store(n, Ordering::Relaxed);
                }
            }
        })
    };

    let scraper = reqwest::Client::new();
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut rss_samples = Vec::new();
    let mut series_samples = Vec::new();
    println!("seconds\tversion\treq/s\tfailed\trss_kib\tmetrics_lines\troute_series");
    loop {
        tokio::time::sleep(sample).await;
        let done = ok.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), done);
        let rss = rss_kib(pid).context("the proxy is gone")?;
        let (lines, series) = scrape(&scraper, admin).await?;
        rss_samples.push(rss);
        series_samples.push(series);
        println!(
            "{:.0}\t{}\t{rate:.0}\t{}\t{rss}\t{lines}\t{series}",
            started.elapsed().as_secs_f64(),
            version.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        );
        if started.elapsed() >= Duration::from_secs(seconds) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = rewriter.await;
    for c in clients {
        let _ = c.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let first_half = &rss_samples[..rss_samples.len() / 2];
    println!(
        "summary: {elapsed:.0} s, {} rewrites, {} requests ({:.0}/s), {} failed, RSS {} → {} KiB (max {}; max of the first half {}), route series max {} (live: {} + unrouted)",
        version.load(Ordering::Relaxed) - 1,
        ok.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
        rss_samples.first().copied().unwrap_or(0),
        rss_samples.last().copied().unwrap_or(0),
        rss_samples.iter().max().copied().unwrap_or(0),
        first_half.iter().max().copied().unwrap_or(0),
        series_samples.iter().max().copied().unwrap_or(0),
        routes + 1,
    );
    Ok(())
}
