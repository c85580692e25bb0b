//! Steady traffic to every replica that is not being faulted and says it is ready; a failed
//! request counts against the run unless it overlapped a fault of its replica, or a delete
//! and re-create of `web` (no route while it is deleted).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lockstep_e2e::check;

use crate::World;

/// Sends requests round the replicas until `stop` is set.
pub fn spawn(world: Arc<World>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = check::http();
        let tally = &world.tally;
        while !stop.load(Ordering::SeqCst) {
            let targets: Vec<(usize, SocketAddr, SocketAddr)> = world
                .slots
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.faulted)
                .filter_map(|(i, s)| s.proxy.as_ref().map(|p| (i, p.http, p.admin)))
                .collect();
            for (i, addr, admin) in targets {
                // The promise is for replicas that say they are ready (a load balancer
                // would send them nothing otherwise).
                if !check::is_ready(&http, admin).await {
                    continue;
                }
                let sent = Instant::now();
                let outcome = check::request(&http, addr, "chaos.test", "/").await;
                let ok = matches!(outcome, Ok((200, Some(ref b))) if b == "default");
                tally.requests.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    let slot_excused = {
                        let slots = world.slots.lock().unwrap();
                        slots[i].faulted || slots[i].excused_until > sent
                    };
                    let recreating = world
                        .recreations
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|(from, until)| *from <= sent && until.is_none_or(|until| sent <= until));
                    let slot_excused = slot_excused || recreating;
                    if slot_excused {
                        tally.excused_failures.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tally.failed_requests.fetch_add(1, Ordering::Relaxed);
                        eprintln!("chaos: request to proxy-{i} at {addr} failed: {outcome:?}");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}
