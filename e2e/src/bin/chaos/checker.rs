//! The invariant: at every Ready=True for generation G, replicas that answer ready serve G
//! (their `/config`, and a real request to the path only G routes).

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

use crate::World;

/// Watches the RouterConfigs and checks every replica at every status event showing
/// Ready=True for the current generation; sends each newly Ready generation, with when it was
/// seen, to `ready`.
pub fn spawn(
    world: Arc<World>,
    api: Api<RouterConfig>,
    ready: UnboundedSender<(i64, Instant)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = check::http();
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
                let _ = ready.send((generation, Instant::now()));
            }
            let tag = rc.spec.rules[0].paths[1]
                .path
                .trim_start_matches("/gen/")
                .to_owned();
            let targets: Vec<(String, SocketAddr, SocketAddr)> = world
                .slots
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
                let served = check::served_generation(&http, admin, &world.ns, "web").await;
                let landed = check::request(&http, http_addr, "chaos.test", &format!("/gen/{tag}")).await;
                let behind = served.is_some_and(|s| s < generation);
                // A replica already on a newer generation routes that generation's path instead.
                let misrouted =
                    served == Some(generation) && !matches!(landed, Ok((200, Some(ref b))) if b == "gen");
                if behind || misrouted {
                    // A replica that stopped being ready in between is not a violation, nor
                    // one that swapped to a newer generation between the two reads (the
                    // next edit may land the moment Ready turns True).
                    let after = check::served_generation(&http, admin, &world.ns, "web").await;
                    let moved_on = misrouted && after.is_some_and(|a| a > generation);
                    if !moved_on && check::is_ready(&http, admin).await {
                        let message = format!(
                            "Ready=True at generation {generation}: {name} answers ready but serves {served:?}, /gen/{tag} -> {landed:?}"
                        );
                        eprintln!("chaos: VIOLATION {message}");
                        world.violations.lock().unwrap().push(message);
                    }
                }
            }
        }
    })
}
