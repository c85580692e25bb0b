//! The watch wiring: the four watches (RouterConfigs, RouterReplicas, proxy Leases, TLS
//! Secrets), the sync gate that tells reconciles (and `/readyz`) when every cache has listed,
//! the Lease clock observer, and the mappers from each event to the RouterConfigs to judge
//! again. Nothing here decides or writes; it says what to reconcile and when.
//!
//! Reactions: every RouterConfig event (and the other RouterConfigs of its fleet sharing a
//! host with it, whose verdict it can change: `lockstep_core::rejudge`), every
//! RouterReplica event (mapped to the RouterConfigs of its fleet in the namespaces it
//! serves), every Lease event of a fleet (mapped to all RouterConfigs of that fleet), every
//! TLS Secret event (mapped to the RouterConfigs naming it), becoming leader (everything),
//! and time: each reconcile requeues at the next Lease expiry or stall deadline, so an expiry
//! is noticed within milliseconds without any event.
//!
//! Leases are judged on this process's monotonic clock from when each renewal was observed
//! ([`LeaseClock`], fed by `observe_leases` here), never from the proxy's `renewTime`.

use std::{
    collections::{BTreeSet, HashSet},
    sync::{Arc, Mutex},
    time::Instant,
};

use futures::{Stream, StreamExt};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Secret};
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        events::{Recorder, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use lockstep_core::{
    ObjectKey,
    lease::{LeaseClock, LeaseView},
    rejudge::HostIndex,
};
use lockstep_crds::{FLEET_LABEL, ReplicaId, RouterConfig, RouterReplica};
use tokio::sync::watch;

use super::{
    Context, Options,
    cleanup::{collect_garbage, forget_deleted},
    reconcile::{error_policy, reconcile},
    replica_id,
};
use crate::{leader::Leadership, metrics::Metrics};

/// Runs the controller until `shutdown` resolves. `leader` says whether this instance may
/// write; `ready` is set once the caches are synced.
pub async fn run(
    client: Client,
    options: Options,
    leader: Arc<Leadership>,
    metrics: Arc<Metrics>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // Readiness is read off the watch streams (InitDone) rather than Store::wait_until_ready:
    // that keeps a single waker, and the controller's applier already waits on its store, so a
    // second waiter could starve it.
    let (synced_tx, synced) = watch::channel(false);
    let gate = SyncGate::new(4, synced_tx, ready);
    let origin = Instant::now();
    let clock = Arc::new(Mutex::new(LeaseClock::default()));
    let (store, rc_writer) = reflector::store::<RouterConfig>();
    let (rejudge, rejudged) = futures::channel::mpsc::unbounded();
    let rc_stream = watcher(
        Api::<RouterConfig>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .backoff(lockstep_apiclient::watch_backoff())
    .inspect(gate.marker(0))
    .reflect(rc_writer)
    .inspect(sharing_hosts(store.clone(), rejudge))
    .touched_objects()
    .filter_map(log_watch_error("routerconfigs"));
    let lease_stream = watcher(
        Api::<Lease>::all(client.clone()),
        watcher::Config::default().labels(FLEET_LABEL),
    )
    .backoff(lockstep_apiclient::watch_backoff())
    .inspect(gate.marker(1))
    .inspect(observe_leases(clock.clone(), origin))
    .touched_objects()
    .filter_map(log_watch_error("leases"));
    let (replica_store, replica_writer) = reflector::store::<RouterReplica>();
    let last_report_seen = Arc::new(Mutex::new(None));
    let replica_stream = watcher(
        Api::<RouterReplica>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(lockstep_apiclient::watch_backoff())
    .inspect(gate.marker(2))
    .inspect({
        let seen = last_report_seen.clone();
        move |_| *seen.lock().expect("last report lock") = Some(Instant::now())
    })
    .reflect(replica_writer)
    .touched_objects()
    .filter_map(log_watch_error("routerreplicas"));
    let (secret_store, secret_writer) = reflector::store::<Secret>();
    let secret_stream = watcher(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default().fields("type=kubernetes.io/tls"),
    )
    .backoff(lockstep_apiclient::watch_backoff())
    .inspect(gate.marker(3))
    .reflect(secret_writer)
    .touched_objects()
    .filter_map(log_watch_error("secrets"));

    let controller = Controller::for_stream(rc_stream, store.clone());
    let ctx = Arc::new(Context {
        synced,
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "lockstep-operator".into(),
                instance: Some(options.identity.clone()),
            },
        ),
        fence: super::fence::LeaseCacheFence::new(client.clone(), leader.namespace()),
        client,
        routerconfigs: store.clone(),
        replicas: replica_store,
        secrets: secret_store,
        leases: clock,
        origin,
        leader: leader.clone(),
        settings: options.settings,
        metrics,
        rollouts: Mutex::default(),
        last_report_seen: last_report_seen.clone(),
        last_written: Mutex::default(),
        rollout_lists: Mutex::default(),
    });

    let (fleet_store, replica_rcs, tls_store) = (store.clone(), store.clone(), store.clone());
    let suspicious = Arc::new(Mutex::new(HashSet::new()));
    tokio::spawn(forget_deleted(store.clone(), ctx.clone()));
    tokio::spawn(collect_garbage(ctx.clone(), options.replica_gc_after));

    controller
        .watches_stream(lease_stream, move |lease| {
            routerconfigs_of_fleet(&fleet_store, &lease)
        })
        .watches_stream(replica_stream, move |rrep| {
            warn_once_about(&suspicious, &replica_rcs, &rrep);
            routerconfigs_served_by(&replica_rcs, &rrep)
        })
        .watches_stream(secret_stream, move |secret| {
            routerconfigs_naming_secret(&tls_store, &secret)
        })
        .reconcile_on(rejudged)
        .reconcile_all_on(became_leader(leader.changes()))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile failed");
            }
        })
        .await;
}

/// Tracks which watch streams have listed once; when all have, flips `ready` (for /readyz)
/// and the `synced` channel reconciles wait on.
#[derive(Clone)]
struct SyncGate {
    parts: Arc<Vec<std::sync::atomic::AtomicBool>>,
    synced: Arc<watch::Sender<bool>>,
    ready: Arc<std::sync::atomic::AtomicBool>,
}

impl SyncGate {
    fn new(n: usize, synced: watch::Sender<bool>, ready: Arc<std::sync::atomic::AtomicBool>) -> Self {
        Self {
            parts: Arc::new((0..n).map(|_| Default::default()).collect()),
            synced: Arc::new(synced),
            ready,
        }
    }

    /// An `inspect` callback for watch stream `i`.
    fn marker<K>(
        &self,
        i: usize,
    ) -> impl FnMut(&std::result::Result<watcher::Event<K>, watcher::Error>) + Send + use<K> {
        let gate = self.clone();
        move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                use std::sync::atomic::Ordering::SeqCst;
                gate.parts[i].store(true, SeqCst);
                if gate.parts.iter().all(|p| p.load(SeqCst)) && !gate.ready.swap(true, SeqCst) {
                    gate.synced.send_replace(true);
                    tracing::info!("caches synced");
                }
            }
        }
    }
}

/// Logs a watch error and drops it. The watchers back off on their own; an error reaching the
/// controller would pause every trigger behind kube's own backoff (up to 30 s), so an
/// apiserver restart would hold Ready back long after the apiserver was back.
fn log_watch_error<K: Send + 'static>(
    what: &'static str,
) -> impl FnMut(
    std::result::Result<K, watcher::Error>,
) -> std::future::Ready<Option<std::result::Result<K, watcher::Error>>>
+ Send
+ 'static {
    move |event| {
        if let Err(error) = &event {
            tracing::warn!(what, %error, "watch error; retrying");
        }
        std::future::ready(event.ok().map(Ok))
    }
}

/// Yields whenever this instance becomes the leader, so it judges everything afresh.
fn became_leader(leader: watch::Receiver<bool>) -> impl Stream<Item = ()> + Send {
    futures::stream::unfold(leader, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                return Some(((), rx));
            }
        }
    })
}

fn routerconfigs_of_fleet(store: &Store<RouterConfig>, lease: &Lease) -> Vec<ObjectRef<RouterConfig>> {
    let Some(fleet) = lease.labels().get(FLEET_LABEL) else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|rc| &rc.spec.fleet == fleet)
        .map(|rc| ObjectRef::from_obj(rc.as_ref()))
        .collect()
}

/// Sends, for each RouterConfig event, the other RouterConfigs whose verdict it can change
/// ([`lockstep_core::rejudge`]): an older object taking or freeing a match changes the
/// newer one's verdict and what the replicas serve of it, though nothing about the newer one
/// changed.
fn sharing_hosts(
    store: Store<RouterConfig>,
    rejudge: futures::channel::mpsc::UnboundedSender<ObjectRef<RouterConfig>>,
) -> impl FnMut(&std::result::Result<watcher::Event<RouterConfig>, watcher::Error>) + Send + 'static {
    let mut index = HostIndex::default();
    move |event| {
        let (rc, deleted) = match event {
            Ok(watcher::Event::Init) => return index.clear(),
            Ok(watcher::Event::InitApply(rc)) => return index.listed(rc),
            Ok(watcher::Event::Apply(rc)) => (rc, false),
            Ok(watcher::Event::Delete(rc)) => (rc, true),
            _ => return,
        };
        let state = store.state();
        for key in index.changed(rc, deleted, state.iter().map(Arc::as_ref)) {
            tracing::debug!(routerconfig = %key, because = %ObjectKey::of(rc), "re-judging: shares a host");
            // Closed only when the controller stopped.
            let _ = rejudge.unbounded_send(ObjectRef::new(&key.name).within(&key.namespace));
        }
    }
}

fn routerconfigs_served_by(
    store: &Store<RouterConfig>,
    rrep: &RouterReplica,
) -> Vec<ObjectRef<RouterConfig>> {
    store
        .state()
        .iter()
        .filter(|rc| {
            rc.spec.fleet == rrep.spec.fleet && rrep.spec.serves_namespace(&ObjectKey::of(rc).namespace)
        })
        .map(|rc| ObjectRef::from_obj(rc.as_ref()))
        .collect()
}

/// Keeps the Lease clock current from the Lease watch: every new version is a renewal seen
/// now; a relist forgets Leases deleted while the watch was down.
fn observe_leases(
    clock: Arc<Mutex<LeaseClock>>,
    origin: Instant,
) -> impl FnMut(&std::result::Result<watcher::Event<Lease>, watcher::Error>) + Send + 'static {
    let mut relisted: Option<BTreeSet<ReplicaId>> = None;
    move |event| {
        let Ok(event) = event else { return };
        let now = origin.elapsed();
        let mut clock = clock.lock().expect("lease clock lock");
        match event {
            watcher::Event::Init => relisted = Some(BTreeSet::new()),
            watcher::Event::InitApply(lease) | watcher::Event::Apply(lease) => {
                if let Some(view) = LeaseView::of(lease) {
                    if let Some(seen) = relisted.as_mut() {
                        seen.insert(view.id.clone());
                    }
                    clock.observe(view, now);
                }
            }
            watcher::Event::Delete(lease) => {
                if let Some(view) = LeaseView::of(lease) {
                    clock.deleted(&view);
                }
            }
            watcher::Event::InitDone => {
                if let Some(seen) = relisted.take() {
                    clock.retain(|id| seen.contains(id));
                }
            }
        }
    }
}

/// Logs, once per replica and problem, a RouterReplica that cannot count: one whose label
/// names another fleet than its spec, or that reports RouterConfigs that do not exist. Such a
/// report is judged as a laggard or ignored, never counted as synced.
fn warn_once_about(warned: &Mutex<HashSet<String>>, store: &Store<RouterConfig>, rrep: &RouterReplica) {
    let id = replica_id(rrep);
    let mut problems = Vec::new();
    if let Some(label) = rrep.labels().get(FLEET_LABEL)
        && label != &rrep.spec.fleet
    {
        problems.push(format!(
            "its label {FLEET_LABEL}={label} differs from spec.fleet {}",
            rrep.spec.fleet
        ));
    }
    let unknown: Vec<String> = rrep
        .status
        .iter()
        .flat_map(|s| &s.served)
        .filter(|e| store.get(&ObjectRef::new(&e.name).within(&e.namespace)).is_none())
        .map(|e| format!("{}/{}", e.namespace, e.name))
        .collect();
    if !unknown.is_empty() {
        problems.push(format!(
            "it reports RouterConfigs that do not exist: {}",
            unknown.join(", ")
        ));
    }
    for problem in problems {
        if warned
            .lock()
            .expect("warned lock")
            .insert(format!("{id}: {problem}"))
        {
            tracing::warn!(replica = %id, %problem, "ignoring part of a RouterReplica");
        }
    }
}

fn routerconfigs_naming_secret(store: &Store<RouterConfig>, secret: &Secret) -> Vec<ObjectRef<RouterConfig>> {
    let (ns, name) = (secret.namespace(), secret.name_any());
    store
        .state()
        .iter()
        .filter(|rc| rc.namespace() == ns && lockstep_core::tls_secret_names(&rc.spec).contains(&name))
        .map(|rc| ObjectRef::from_obj(rc.as_ref()))
        .collect()
}
