//! Fault injection: each fault starts now and, where it is reverted (a killed process
//! restarted, a frozen one woken), reverts itself from a task after a random time.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use lockstep_crds::RouterConfig;
use lockstep_e2e::fleet::{Operator, Proxy};
use nix::{sys::signal::Signal, unistd::Pid};
use rand::{Rng, rngs::StdRng};

use crate::{OPERATOR_LEASE_NAMESPACE, Rollouts, TLS_HOST, World, operator_spec};

/// The faults, in the order the schedule draws them from (the order keeps a seed's schedule).
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// SIGKILL a replica; restart it 0.5 to 6 s later.
    KillProxy,
    /// SIGSTOP a replica; SIGCONT 0.5 to 7 s later.
    FreezeProxy,
    /// SIGKILL the operator leader; restart it 1 s later.
    KillLeader,
    /// Restart etcd and kube-apiserver on the same data.
    RestartApiserver,
    /// Five edits faster than the debounce; only the last must win.
    EditBurst,
    /// SIGSTOP the operator leader; SIGCONT 1 to 8 s later.
    FreezeLeader,
    /// Delete `web` and create it again under the same name (`kubectl replace --force`): a
    /// new uid, generation 1, no status.
    Recreate,
    /// A newer RouterConfig `rival` names `web`'s TLS host with another certificate; it is
    /// deleted 1 to 6 s later. `web` (older) keeps the host and its certificate.
    TlsTakeover,
}

impl Fault {
    const ALL: [Fault; 8] = [
        Fault::KillProxy,
        Fault::FreezeProxy,
        Fault::KillLeader,
        Fault::RestartApiserver,
        Fault::EditBurst,
        Fault::FreezeLeader,
        Fault::Recreate,
        Fault::TlsTakeover,
    ];

    /// A fault drawn uniformly.
    pub fn pick(rng: &mut StdRng) -> Self {
        Self::ALL[rng.random_range(0..Self::ALL.len())]
    }

    /// What the log calls it.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillProxy => "kill proxy",
            Fault::FreezeProxy => "freeze proxy",
            Fault::KillLeader => "kill operator leader",
            Fault::RestartApiserver => "restart apiserver",
            Fault::EditBurst => "edit burst",
            Fault::FreezeLeader => "freeze operator leader",
            Fault::Recreate => "delete and re-create web",
            Fault::TlsTakeover => "a newer RouterConfig names web's TLS host",
        }
    }
}

/// Injects `fault`; returns once it is in effect (an apiserver restart: once it is back).
pub async fn inject(
    world: &Arc<World>,
    web: &mut Rollouts,
    fault: Fault,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    match fault {
        Fault::KillProxy => kill_proxy(world, rng),
        Fault::FreezeProxy => freeze_proxy(world, rng),
        Fault::KillLeader => kill_leader(world).await,
        Fault::RestartApiserver => {
            world.tally.apiserver_restarts.fetch_add(1, Ordering::Relaxed);
            let world = world.clone();
            tokio::task::spawn_blocking(move || world.cp.restart()).await??;
        }
        Fault::EditBurst => {
            world.tally.bursts.fetch_add(1, Ordering::Relaxed);
            for _ in 0..5 {
                web.next(world);
                web.apply().await?;
            }
        }
        Fault::FreezeLeader => freeze_leader(world, rng).await,
        Fault::Recreate => recreate(world, web).await?,
        Fault::TlsTakeover => tls_takeover(world, web, rng).await?,
    }
    Ok(())
}

fn kill_proxy(world: &Arc<World>, rng: &mut StdRng) {
    let i = rng.random_range(0..world.proxy_kubeconfigs.len());
    let mut slots = world.slots.lock().unwrap();
    let slot = &mut slots[i];
    if slot.faulted {
        return;
    }
    let Some(mut proxy) = slot.proxy.take() else {
        return;
    };
    slot.faulted = true;
    proxy.crash();
    world.tally.proxy_kills.fetch_add(1, Ordering::Relaxed);
    let (world, spec) = (world.clone(), slot.spec.clone());
    let down_for = Duration::from_millis(rng.random_range(500..6000));
    tokio::spawn(async move {
        tokio::time::sleep(down_for).await;
        let restarted = {
            let world = world.clone();
            tokio::task::spawn_blocking(move || {
                Proxy::start_with_kubeconfig(&world.proxy_kubeconfigs[i], &world.dir, spec)
            })
            .await
        };
        let mut slots = world.slots.lock().unwrap();
        if let Ok(Ok(p)) = restarted {
            slots[i].proxy = Some(p);
        }
        slots[i].faulted = false;
        slots[i].excused_until = Instant::now() + Duration::from_millis(100);
    });
}

fn freeze_proxy(world: &Arc<World>, rng: &mut StdRng) {
    let i = rng.random_range(0..world.proxy_kubeconfigs.len());
    let mut slots = world.slots.lock().unwrap();
    let slot = &mut slots[i];
    if slot.faulted {
        return;
    }
    let Some(proxy) = slot.proxy.as_ref() else {
        return;
    };
    slot.faulted = true;
    let _ = proxy.process.signal(Signal::SIGSTOP);
    world.tally.proxy_freezes.fetch_add(1, Ordering::Relaxed);
    let pid = Pid::from_raw(proxy.process.pid() as i32);
    let world = world.clone();
    let frozen_for = Duration::from_millis(rng.random_range(500..7000));
    tokio::spawn(async move {
        tokio::time::sleep(frozen_for).await;
        let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
        // Requests that were queued while frozen complete late; they are not failures of
        // the barrier.
        let mut slots = world.slots.lock().unwrap();
        slots[i].faulted = false;
        slots[i].excused_until = Instant::now() + Duration::from_secs(6);
    });
}

/// Which operator (`operator-<i>`) holds the leader Lease now.
async fn leader_index(client: &kube::Client) -> Option<usize> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_LEASE_NAMESPACE);
    let holder = leases
        .get_opt(lockstep_crds::OPERATOR_LEASE_NAME)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)?;
    holder.strip_prefix("operator-")?.parse().ok()
}

async fn kill_leader(world: &Arc<World>) {
    let Some(i) = leader_index(&world.client).await else {
        return;
    };
    let Some(mut op) = world.operators.lock().unwrap()[i].take() else {
        return;
    };
    op.process.kill();
    world.tally.operator_kills.fetch_add(1, Ordering::Relaxed);
    let world = world.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let restarted = {
            let world = world.clone();
            tokio::task::spawn_blocking(move || {
                Operator::start_with_kubeconfig(&world.operator_kubeconfig, &world.dir, operator_spec(i))
            })
            .await
        };
        if let Ok(Ok(op)) = restarted {
            world.operators.lock().unwrap()[i] = Some(op);
        }
    });
}

/// A frozen leader wakes believing it leads: its Lease check must stop it.
async fn freeze_leader(world: &Arc<World>, rng: &mut StdRng) {
    let Some(i) = leader_index(&world.client).await else {
        return;
    };
    let pid = world.operators.lock().unwrap()[i]
        .as_ref()
        .map(|op| op.process.pid());
    let Some(pid) = pid else {
        return;
    };
    let pid = Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::kill(pid, Signal::SIGSTOP);
    world.tally.operator_freezes.fetch_add(1, Ordering::Relaxed);
    let frozen_for = Duration::from_millis(rng.random_range(1000..8000));
    tokio::spawn(async move {
        tokio::time::sleep(frozen_for).await;
        let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
    });
}

/// Deletes `web`, waits until it is gone, and creates it again (the same spec, so the same
/// `/gen/TAG` path: the next rollout moves on from it). A `rival` naming web's TLS host is
/// deleted first: created again, web would be the newer of the two and lose the host to it
/// for as long as it exists (the older owns), which is the policy, not a fault.
async fn recreate(world: &Arc<World>, web: &mut Rollouts) -> anyhow::Result<()> {
    delete_rival(&web.api).await?;
    let window = {
        let mut recreations = world.recreations.lock().unwrap();
        recreations.push((Instant::now(), None));
        recreations.len() - 1
    };
    let old = web.api.get_opt("web").await?.map(|rc| rc.uid().to_owned());
    web.api.delete("web", &DeleteParams::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while web
        .api
        .get_opt("web")
        .await?
        .is_some_and(|rc| Some(rc.uid()) == old.as_deref())
    {
        anyhow::ensure!(Instant::now() < deadline, "web not deleted within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A new version for the new incarnation: the old one's path is never Ready again.
    web.next(world);
    web.apply().await?;
    world.tally.recreates.fetch_add(1, Ordering::Relaxed);
    // The window closes once the new incarnation is Ready (or after 60 s, so a stuck one
    // is not excused for the rest of the run).
    let (api, old) = (&web.api, old.as_deref());
    let _ = lockstep_e2e::eventually(
        "the re-created web Ready",
        Duration::from_secs(60),
        || async move {
            let rc = api.get_opt("web").await.ok().flatten()?;
            (Some(rc.uid()) != old && lockstep_e2e::check::ready_generation(&rc).is_some()).then_some(())
        },
    )
    .await;
    world.recreations.lock().unwrap()[window].1 = Some(Instant::now() + Duration::from_millis(100));
    Ok(())
}

/// Creates `rival`, newer than `web`, naming `web`'s TLS host with Secret `rival-tls` (and a
/// path of its own, so only the TLS host is contested); deletes it 1 to 6 s later.
async fn tls_takeover(world: &Arc<World>, web: &Rollouts, rng: &mut StdRng) -> anyhow::Result<()> {
    if web.api.get_opt("rival").await?.is_some() {
        return Ok(());
    }
    let rival = serde_json::json!({
        "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
        "metadata": {"name": "rival", "namespace": world.ns},
        "spec": {"fleet": "chaos", "rules": [{"host": TLS_HOST, "tls": {"secretName": "rival-tls"}, "paths": [
            {"path": "/rival", "pathType": "Prefix", "backend": {"url": web.gen_url}}]}]}
    });
    let api: Api<RouterConfig> = web.api.clone();
    api.patch(
        "rival",
        &PatchParams::apply("chaos").force(),
        &Patch::Apply(rival),
    )
    .await?;
    world.tally.tls_takeovers.fetch_add(1, Ordering::Relaxed);
    let lasts = Duration::from_millis(rng.random_range(1000..6000));
    tokio::spawn(async move {
        tokio::time::sleep(lasts).await;
        if let Err(error) = delete_rival(&api).await {
            eprintln!("chaos: rival not deleted: {error:#}");
        }
    });
    Ok(())
}

/// Deletes `rival` and waits until it is gone; each request is bounded (a connection the
/// apiserver's restart left half open must not hang it) and retried for up to 30 s (the
/// apiserver may be restarting).
async fn delete_rival(api: &Api<RouterConfig>) -> anyhow::Result<()> {
    let bounded = Duration::from_secs(3);
    lockstep_e2e::eventually("rival deleted", Duration::from_secs(30), || async move {
        let _ = tokio::time::timeout(bounded, api.delete("rival", &DeleteParams::default())).await;
        matches!(
            tokio::time::timeout(bounded, api.get_opt("rival")).await,
            Ok(Ok(None))
        )
        .then_some(())
    })
    .await?;
    Ok(())
}
