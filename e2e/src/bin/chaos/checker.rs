//! The invariant, per incarnation: at every Ready=True for generation G of `web` (uid U),
//! replicas that answer ready serve that version (a real request to the path only it routes;
//! paths are never reused, across re-creations either) and present `web`'s certificate for its
//! TLS host (the certificate of the generation that owns the host, whatever a newer
//! RouterConfig naming it brings).

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use futures::StreamExt;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use lockstep_crds::RouterConfig;
use lockstep_e2e::check::{self, ready_generation};
use tokio::sync::mpsc::UnboundedSender;

use crate::{TLS_HOST, World};

/// Watches the RouterConfigs and checks every replica at every status event showing
/// Ready=True for the current generation of `web`; sends each newly Ready (uid, generation),
/// with when it was seen, to `ready`.
pub fn spawn(
    world: Arc<World>,
    api: Api<RouterConfig>,
    ready: UnboundedSender<(String, i64, Instant)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = check::http();
        let current = api.clone();
        let tally = &world.tally;
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
        let mut last: (String, i64) = (String::new(), 0);
        while let Some(event) = stream.next().await {
            let Ok(rc) = event else { continue };
            // The RouterConfig that tries to take web's TLS host is judged through web.
            if rc.metadata.name.as_deref() != Some("web") {
                continue;
            }
            let Some(generation) = ready_generation(&rc) else {
                continue;
            };
            let uid = rc.uid().to_owned();
            // Every event that shows Ready=True for the current generation is checked,
            // not only the first per generation.
            tally.ready_events.fetch_add(1, Ordering::Relaxed);
            if uid != last.0 || generation > last.1 {
                last = (uid.clone(), generation);
                let _ = ready.send((uid.clone(), generation, Instant::now()));
            }
            let Some(tag) = rc.spec.rules[0]
                .paths
                .get(1)
                .and_then(|p| p.path.strip_prefix("/gen/"))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            let targets: Vec<(String, SocketAddr, SocketAddr, Option<SocketAddr>)> = world
                .slots
                .lock()
                .unwrap()
                .iter()
                .filter_map(|s| {
                    s.proxy
                        .as_ref()
                        .map(|p| (s.spec.name.clone(), p.admin, p.http, p.tls))
                })
                .collect();
            for (name, admin, http_addr, tls_addr) in targets {
                if !check::is_ready(&http, admin).await {
                    continue;
                }
                tally.ready_checks.fetch_add(1, Ordering::Relaxed);
                let landed = routes_version(&http, http_addr, tag).await;
                let certificate = match tls_addr {
                    Some(addr) => presented(&world, addr).await,
                    None => Err("no TLS listener".into()),
                };
                let right_certificate = certificate.as_ref().is_ok_and(|der| *der == world.certs.web.der);
                if landed && right_certificate {
                    continue;
                }
                // A replica that stopped being ready in between is not a violation, nor one
                // that moved on to a newer version between the reads (the next edit may land
                // the moment Ready turns True).
                let newest = world.newest_tag.load(Ordering::SeqCst);
                let mut moved_on = false;
                for newer in tag + 1..=newest {
                    moved_on |= routes_version(&http, http_addr, newer).await;
                }
                if (moved_on && right_certificate) || !check::is_ready(&http, admin).await {
                    continue;
                }
                // Nor one checked after this incarnation was deleted (the event was read
                // late): the promise is about an object that exists, and the replicas have
                // moved on to the one created since.
                let replaced = match current.get_opt("web").await {
                    Ok(None) => true,
                    Ok(Some(now)) => now.uid() != uid,
                    Err(_) => false,
                };
                if replaced {
                    continue;
                }
                let served = check::served_generation(&http, admin, &world.ns, "web").await;
                let presented_text = match &certificate {
                    Ok(der) if *der == world.certs.web.der => "web's certificate".to_owned(),
                    Ok(der) if *der == world.certs.rival.der => {
                        "the certificate of RouterConfig rival".to_owned()
                    }
                    Ok(_) => "an unknown certificate".to_owned(),
                    Err(e) => format!("no certificate ({e})"),
                };
                let message = format!(
                    "Ready=True at generation {generation} of uid {uid}: {name} answers ready, serves generation {served:?}, /gen/{tag} {}, and presents {presented_text} for {TLS_HOST}",
                    if landed { "routed" } else { "not routed" }
                );
                eprintln!("chaos: VIOLATION {message}");
                world.violations.lock().unwrap().push(message);
            }
        }
    })
}

/// Whether `/gen/TAG` reaches the gen backend through the replica: it serves that version.
async fn routes_version(http: &reqwest::Client, addr: SocketAddr, tag: u64) -> bool {
    matches!(
        check::request(http, addr, "chaos.test", &format!("/gen/{tag}")).await,
        Ok((200, Some(ref b))) if b == "gen"
    )
}

/// The certificate (DER) a replica presents for [`TLS_HOST`] on its TLS listener `addr`,
/// through a client that trusts both certificates, so the handshake shows which one it is.
async fn presented(world: &World, addr: SocketAddr) -> Result<Vec<u8>, String> {
    let mut builder = reqwest::Client::builder()
        .tls_info(true)
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .resolve(TLS_HOST, addr);
    for cert in [&world.certs.web, &world.certs.rival] {
        let root = reqwest::Certificate::from_pem(cert.pem.as_bytes()).map_err(|e| e.to_string())?;
        builder = builder.add_root_certificate(root);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    let response = client
        .get(format!("https://{TLS_HOST}:{}/", addr.port()))
        .send()
        .await
        .map_err(|e| format!("{e}"))?;
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate().map(<[u8]>::to_vec))
        .ok_or_else(|| "no peer certificate".to_owned())
}
