//! A TLS load generator that never resumes a session: each connection makes a full handshake
//! (with SNI), sends one `GET /` with `Connection: close`, reads the answer and closes. The
//! data-plane benchmark uses it to compare the cost of new TLS visitors across proxies;
//! general-purpose load generators reuse sessions (tickets or session IDs), which hides
//! the cost of the certificate signature.
//!
//! `lockstep-e2e-tls-load --connect 127.0.0.1:8443 --sni bench.local --ca ca.pem
//! --seconds 10 --concurrency 16` prints one JSON object: connections completed, failures,
//! full handshakes, rate, and p50/p99 connection time in ms.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Parser;
use lockstep_e2e::percentile;
use rustls::{
    ClientConfig, HandshakeKind, RootCertStore,
    client::Resumption,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

/// New TLS connections, each with a full handshake and one request.
#[derive(Debug, Parser)]
#[command(name = "lockstep-e2e-tls-load")]
struct Args {
    /// The address to connect to.
    #[arg(long)]
    connect: SocketAddr,
    /// The server name (SNI and Host).
    #[arg(long)]
    sni: String,
    /// PEM file of the CA to trust.
    #[arg(long)]
    ca: std::path::PathBuf,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Connections in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

/// What one connection ended as.
enum Outcome {
    /// A 200 answer after a handshake; whether that handshake was a full one.
    Ok { full: bool, took: Duration },
    /// Anything else, with the reason.
    Failed(String),
}

async fn one_connection(
    addr: SocketAddr,
    connector: &TlsConnector,
    sni: &ServerName<'static>,
    request: &[u8],
) -> Outcome {
    let start = Instant::now();
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut tls = connector.connect(sni.clone(), tcp).await?;
        let full = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Full);
        tls.write_all(request).await?;
        let mut answer = Vec::with_capacity(512);
        // Servers differ in whether they send close_notify before closing: an EOF after a
        // complete answer is not a failure.
        if let Err(e) = tls.read_to_end(&mut answer).await
            && (e.kind() != std::io::ErrorKind::UnexpectedEof || answer.is_empty())
        {
            return Err(e);
        }
        Ok::<_, std::io::Error>((full, answer))
    };
    match attempt.await {
        Ok((full, answer)) if answer.starts_with(b"HTTP/1.1 200") => Outcome::Ok {
            full,
            took: start.elapsed(),
        },
        Ok((_, answer)) => Outcome::Failed(
            String::from_utf8_lossy(answer.split(|b| *b == b'\r').next().unwrap_or_default()).into_owned(),
        ),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let Args {
        connect: addr,
        sni: host,
        ca,
        seconds,
        concurrency,
    } = Args::parse();
    let ca = std::fs::read(ca).context("--ca")?;

    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.context("--ca: PEM")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let sni = ServerName::try_from(host.clone())?;
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (connector, sni, request) = (connector.clone(), sni.clone(), request.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while Instant::now() < deadline {
                    outcomes.push(one_connection(addr, &connector, &sni, &request).await);
                }
                outcomes
            })
        })
        .collect();
    let (mut times, mut failures, mut full) = (Vec::new(), Vec::new(), 0u64);
    for worker in workers {
        for outcome in worker.await? {
            match outcome {
                Outcome::Ok { full: f, took } => {
                    full += u64::from(f);
                    times.push(took);
                }
                Outcome::Failed(reason) => failures.push(reason),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    times.sort();
    if times.is_empty() {
        bail!("no connection succeeded, e.g.: {:?}", failures.first());
    }
    let ms = |p| percentile(&times, p).as_secs_f64() * 1000.0;
    let summary = serde_json::json!({
        "connections": times.len() + failures.len(),
        "failed": failures.len(),
        "firstFailure": failures.first(),
        "fullHandshakes": full,
        "seconds": elapsed,
        "rate": times.len() as f64 / elapsed,
        "p50Ms": ms(50.0),
        "p99Ms": ms(99.0),
    });
    println!("{summary}");
    Ok(())
}
