//! Kubernetes mode: the replica watches the RouterConfigs of its fleet and the EndpointSlices
//! and Services they reference, swaps its route table, reports what it serves on its own
//! `RouterReplica`, and holds a Lease that makes it a member of the fleet.
//!
//! The promise the operator builds `Ready` on: a replica answers ready only while it holds a
//! fresh Lease (judged from when it *sent* the renewal) and has confirmed with a quorum read,
//! after its Lease was written, that it serves the newest generation of every RouterConfig it
//! serves. A replica that could not renew in time (frozen, partitioned, a renewal answered
//! late) fences itself: unready until it has rejoined through that check. The decisions are
//! `lockstep_config::lease::ReplicaLease`; this module is their I/O.

mod lease;
mod report;
mod secrets;
pub mod slices;
pub mod tls;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, Client, Resource,
    runtime::{WatchStreamExt, reflector, reflector::Store, watcher},
};
use lockstep_config::{
    BackendRef, ObjectKey,
    lease::{Mono, Readiness, ReplicaLease},
};
use lockstep_crds::{ALL_NAMESPACES, RouterConfig};
use tokio::{sync::Notify, task::JoinHandle};

use crate::{endpoints::ServiceKey, state::ProxyState};

use lockstep_config::plan;
pub use lockstep_config::plan::Report;

/// Errors of the fleet sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Kubernetes client configuration (KUBECONFIG, in-cluster) could be loaded.
    #[error("kubernetes client: {0}")]
    Client(#[from] kube::Error),
    /// The options are not usable.
    #[error("{0}")]
    Options(String),
}

/// Which namespaces the replica serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchScope {
    /// Every namespace (--all-namespaces).
    All,
    /// These namespaces (--watch-namespaces, or the replica's own).
    Namespaces(Vec<String>),
}

impl WatchScope {
    /// The `spec.namespaces` of the replica's RouterReplica.
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::All => vec![ALL_NAMESPACES.to_owned()],
            Self::Namespaces(names) => names.clone(),
        }
    }
}

/// The Pod a replica runs in, for the ownerReference that deletes its RouterReplica with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// metadata.name.
    pub name: String,
    /// metadata.uid.
    pub uid: String,
}

/// Options of Kubernetes mode.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Replica name (--replica-name); names the Lease and the RouterReplica.
    pub replica: String,
    /// Namespace of the replica's Lease and RouterReplica (--namespace).
    pub namespace: String,
    /// Fleet name (--fleet).
    pub fleet: String,
    /// The namespaces whose RouterConfigs, EndpointSlices, Services and Secrets it reads.
    pub scope: WatchScope,
    /// Lease duration (whole seconds, at least one); renewed every third of it.
    pub lease_duration: Duration,
    /// Quiet time that ends a burst of changes before one swap.
    pub debounce: Duration,
    /// Longest a burst can delay a swap.
    pub debounce_max: Duration,
    /// The Pod the replica runs in, when it runs in one.
    pub pod: Option<PodRef>,
}

impl FleetOptions {
    /// Options with the default timings (10 s Lease, 20 ms debounce capped at 250 ms),
    /// serving the replica's own namespace.
    pub fn new(replica: impl Into<String>, namespace: impl Into<String>, fleet: impl Into<String>) -> Self {
        let namespace = namespace.into();
        Self {
            replica: replica.into(),
            scope: WatchScope::Namespaces(vec![namespace.clone()]),
            namespace,
            fleet: fleet.into(),
            lease_duration: Duration::from_secs(10),
            debounce: Duration::from_millis(20),
            debounce_max: Duration::from_millis(250),
            pod: None,
        }
    }
}

/// State shared by the fleet sync's tasks.
struct Shared {
    options: FleetOptions,
    state: Arc<ProxyState>,
    client: Client,
    rc_stores: Vec<Store<RouterConfig>>,
    /// Reports as last written to the RouterReplica.
    reported: Mutex<BTreeMap<ObjectKey, Report>>,
    /// The replica serves (or rejected) the current generation of every RouterConfig its
    /// watch shows.
    serving_current: AtomicBool,
    /// ... and its RouterReplica says so.
    reported_current: AtomicBool,
    /// The replica's side of its Lease: stage and freshness.
    lease: Mutex<ReplicaLease>,
    /// Why the last Lease write failed, while it keeps failing.
    lease_problem: Mutex<Option<String>>,
    /// Origin of [`Mono`] times.
    origin: Instant,
    /// Wakes the sync loop after a debounce: something that changes what is served.
    wake: Arc<Notify>,
    /// Wakes the sync loop at once: only the report needs a look (readiness changed, or a
    /// status-only RouterConfig event).
    wake_now: Notify,
    /// Wakes the Lease loop.
    wake_lease: Notify,
}

impl Shared {
    fn mono(&self) -> Mono {
        self.origin.elapsed()
    }

    fn fleet_objects(&self) -> Vec<Arc<RouterConfig>> {
        self.rc_stores
            .iter()
            .flat_map(|store| store.state())
            .filter(|rc| rc.spec.fleet == self.options.fleet)
            .collect()
    }

    /// Judges readiness now and publishes it to `/readyz`, bounded by the Lease's freshness
    /// so a replica that wakes from a freeze is unready before any task runs.
    fn update_readiness(&self) -> Readiness {
        let now = self.mono();
        let lease = *self.lease.lock().expect("lease lock");
        let serving = self.serving_current.load(Ordering::SeqCst);
        let problem = self.lease_problem.lock().expect("lease problem lock").clone();
        let readiness = lease.readiness(serving, problem.as_deref(), now);
        self.state.set_synced(readiness.ready);
        self.state
            .set_ready_until(readiness.ready.then(|| self.origin + lease.fresh_until()));
        readiness
    }
}

/// A running fleet sync.
pub struct FleetHandle {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for FleetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetHandle")
            .field("replica", &self.shared.options.replica)
            .finish()
    }
}

impl FleetHandle {
    /// Leaves the fleet: stops renewing and reporting, deletes the Lease and then the
    /// RouterReplica, so the operator neither waits for it nor counts it. Called on SIGTERM
    /// after the replica turned unready and before draining.
    pub async fn leave(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.lease.lock().expect("lease lock").leave();
        self.shared.update_readiness();
        lease::delete(&self.shared).await;
        report::delete(&self.shared).await;
    }
}

/// Starts the sync in the background with a client from the usual places (KUBECONFIG,
/// in-cluster).
pub async fn start(state: Arc<ProxyState>, options: FleetOptions) -> Result<FleetHandle, Error> {
    let client = lockstep_apiclient::client().await?;
    start_with_client(state, options, client)
}

/// Starts the sync with a given client.
pub fn start_with_client(
    state: Arc<ProxyState>,
    options: FleetOptions,
    client: Client,
) -> Result<FleetHandle, Error> {
    lockstep_config::lease::lease_duration(options.lease_duration).map_err(Error::Options)?;
    let namespaces: Vec<Option<String>> = match &options.scope {
        WatchScope::All => vec![None],
        WatchScope::Namespaces(names) if names.is_empty() => {
            return Err(Error::Options(
                "a replica must serve at least one namespace".into(),
            ));
        }
        WatchScope::Namespaces(names) => names.iter().cloned().map(Some).collect(),
    };
    let api = |ns: &Option<String>| match ns {
        Some(ns) => (
            Api::<RouterConfig>::namespaced(client.clone(), ns),
            Api::<EndpointSlice>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let mut rc_parts = Vec::new();
    let mut slice_parts = Vec::new();
    let mut svc_parts = Vec::new();
    for ns in &namespaces {
        let (rc_api, slice_api, svc_api) = api(ns);
        let (rc_store, rc_writer) = reflector::store();
        let (slice_store, slice_writer) = reflector::store::<EndpointSlice>();
        let (svc_store, svc_writer) = reflector::store::<Service>();
        rc_parts.push((rc_api, rc_store, rc_writer));
        slice_parts.push((slice_api, slice_store, slice_writer));
        svc_parts.push((svc_api, svc_store, svc_writer));
    }

    let shared = Arc::new(Shared {
        lease: Mutex::new(ReplicaLease::new(options.lease_duration)),
        options,
        state,
        client,
        rc_stores: rc_parts.iter().map(|(_, store, _)| store.clone()).collect(),
        reported: Mutex::default(),
        serving_current: AtomicBool::new(false),
        reported_current: AtomicBool::new(false),
        lease_problem: Mutex::new(None),
        origin: Instant::now(),
        wake: Arc::new(Notify::new()),
        wake_now: Notify::new(),
        wake_lease: Notify::new(),
    });

    let mut tasks = Vec::new();
    let slice_stores: Vec<Store<EndpointSlice>> = slice_parts.iter().map(|(_, s, _)| s.clone()).collect();
    let svc_stores: Vec<Store<Service>> = svc_parts.iter().map(|(_, s, _)| s.clone()).collect();
    for (api, _, writer) in rc_parts {
        tasks.push(spawn_routerconfig_reflector(api, writer, shared.clone()));
    }
    for (api, _, writer) in slice_parts {
        tasks.push(spawn_reflector("endpointslices", api, writer, shared.clone()));
    }
    for (api, _, writer) in svc_parts {
        tasks.push(spawn_reflector("services", api, writer, shared.clone()));
    }
    tasks.push(tokio::spawn(sync_loop(shared.clone(), slice_stores, svc_stores)));
    tasks.push(tokio::spawn(lease::run(shared.clone())));
    Ok(FleetHandle { shared, tasks })
}

/// Keeps a store current; the watcher reconnects with backoff when the apiserver is gone,
/// and the replica serves its last table meanwhile.
fn spawn_reflector<K>(
    what: &'static str,
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    shared: Arc<Shared>,
) -> JoinHandle<()>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    tokio::spawn(async move {
        let stream = reflector(
            writer,
            watcher(api, watcher::Config::default()).backoff(lockstep_apiclient::watch_backoff()),
        );
        let mut stream = std::pin::pin!(
            stream.map_err(move |e| tracing::warn!(what, error = %e, "watch error; retrying"))
        );
        while stream.next().await.is_some() {
            shared.wake.notify_one();
        }
    })
}

/// Like [`spawn_reflector`] for RouterConfigs, telling changes the plan reads (a new
/// generation, or a new `status.lastAccepted`; debounced: a burst of edits costs one swap)
/// from the operator's other status writes, which change nothing here.
fn spawn_routerconfig_reflector(
    api: Api<RouterConfig>,
    writer: reflector::store::Writer<RouterConfig>,
    shared: Arc<Shared>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // The generation and the operator's last accepted generation: the plan reads both.
        let mut generations: std::collections::HashMap<ObjectKey, (i64, Option<i64>)> =
            std::collections::HashMap::new();
        let stream = reflector(
            writer,
            watcher(api, watcher::Config::default()).backoff(lockstep_apiclient::watch_backoff()),
        );
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let spec_change = match &event {
                Ok(watcher::Event::Apply(rc) | watcher::Event::InitApply(rc)) => {
                    let key = ObjectKey::of(rc);
                    let generation = (rc.generation(), rc.last_accepted().map(|a| a.generation));
                    let ours = rc.spec.fleet == shared.options.fleet;
                    match generations.insert(key.clone(), generation) {
                        Some(previous) => previous != generation,
                        // An object of another fleet that was never ours changes nothing here.
                        None => ours,
                    }
                }
                Ok(watcher::Event::Delete(rc)) => generations.remove(&ObjectKey::of(rc)).is_some(),
                Ok(watcher::Event::Init | watcher::Event::InitDone) => true,
                Err(error) => {
                    tracing::warn!(what = "routerconfigs", %error, "watch error; retrying");
                    continue;
                }
            };
            if spec_change {
                shared.wake.notify_one();
            }
        }
    })
}

async fn sync_loop(shared: Arc<Shared>, slices: Vec<Store<EndpointSlice>>, services: Vec<Store<Service>>) {
    for store in &shared.rc_stores {
        let _ = store.wait_until_ready().await;
    }
    for store in &slices {
        let _ = store.wait_until_ready().await;
    }
    for store in &services {
        let _ = store.wait_until_ready().await;
    }
    let mut applied_at = BTreeMap::new();
    let secrets = secrets::SecretWatches::new(shared.client.clone(), shared.wake.clone());
    let mut good_tls = std::collections::HashMap::new();
    let mut reporter = report::Reporter::default();
    // Retries of failed report writes, and a periodic level check, ride on this tick.
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let objects = shared.fleet_objects();
        secrets.ensure(&tls::referenced(&objects));
        let now = k8s_openapi::jiff::Timestamp::now();
        let previous = shared.state.certs.snapshot();
        let tls = tls::assemble(
            &objects,
            &secrets.states(),
            &mut good_tls,
            &previous,
            now.as_second(),
        );
        if tls.pending {
            // A referenced Secret has not been listed yet; judging now would report it
            // missing. Its watch wakes the loop.
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = retry.tick() => {}
            }
            continue;
        }
        refresh_endpoints(&shared, &objects, &slices, &services).await;
        // Certificates first: a host the new table routes has its certificate in place.
        shared.state.certs.replace(tls.by_host);
        let served = shared.state.served();
        let view = plan::TlsView {
            hashes: tls.hashes,
            problems: tls.problems,
        };
        let (plan, swapped, moved) = {
            let (objects, state) = (objects.clone(), shared.state.clone());
            let mut moved = std::mem::take(&mut applied_at);
            crate::state::off_the_runtime(move || {
                let mut plan = plan::plan(&objects, &served, &view, &mut moved, now);
                let next = plan.next.take();
                let swapped = next.is_some();
                if let Some(next) = next {
                    state.swap(next);
                }
                (plan, swapped, moved)
            })
            .await
        };
        applied_at = moved;
        if swapped {
            let generations = shared.state.served().generations();
            tracing::info!(replica = %shared.options.replica, routerconfigs = ?generations, "route table swapped");
        }
        for (key, report) in &plan.reports {
            if let Some(rejected) = &report.rejected {
                tracing::debug!(routerconfig = %key, generation = rejected.generation, message = %rejected.message, "generation rejected; serving the last accepted one");
            }
        }
        let serving = plan::in_sync(objects.iter().map(|rc| rc.as_ref()), &plan.reports);
        shared.serving_current.store(serving, Ordering::SeqCst);
        let readiness = shared.update_readiness();

        let written = reporter.write(&shared, &objects, &plan.reports, &readiness).await;
        shared
            .reported_current
            .store(serving && written, Ordering::SeqCst);
        if serving && written {
            shared.wake_lease.notify_one();
        }

        tokio::select! {
            _ = shared.wake.notified() => debounce(&shared).await,
            _ = shared.wake_now.notified() => {}
            _ = retry.tick() => {}
        }
    }
}

/// Lets a burst of changes settle: waits until `debounce` passes without a change, but no
/// longer than `debounce_max` in all.
async fn debounce(shared: &Shared) {
    let deadline = tokio::time::Instant::now() + shared.options.debounce_max;
    loop {
        let quiet = tokio::time::sleep(shared.options.debounce);
        tokio::select! {
            _ = quiet => return,
            _ = shared.wake.notified() => {
                if tokio::time::Instant::now() >= deadline {
                    return;
                }
            }
        }
    }
}

/// Updates the endpoints of every Service any RouterConfig of the fleet names, before a table
/// that routes to them is swapped in.
async fn refresh_endpoints(
    shared: &Shared,
    objects: &[Arc<RouterConfig>],
    slices: &[Store<EndpointSlice>],
    services: &[Store<Service>],
) {
    let mut wanted = BTreeSet::new();
    for rc in objects {
        let key = ObjectKey::of(rc);
        for rule in &rc.spec.rules {
            for (backend, _) in rule.paths.iter().flat_map(|p| p.weighted_backends()) {
                if let Some(svc) = &backend.service
                    && let Ok(port) = u16::try_from(svc.port)
                {
                    wanted.insert(ServiceKey {
                        namespace: key.namespace.clone(),
                        name: svc.name.clone(),
                        port,
                    });
                }
            }
        }
    }
    // Services still routed by a served (possibly older) generation stay resolved too.
    for (backend, _) in shared
        .state
        .served()
        .table
        .routes()
        .iter()
        .flat_map(|r| &r.backends)
    {
        if let BackendRef::Service {
            namespace,
            name,
            port,
        } = backend
        {
            wanted.insert(ServiceKey {
                namespace: namespace.to_string(),
                name: name.to_string(),
                port: *port,
            });
        }
    }
    let all_slices: Vec<Arc<EndpointSlice>> = slices.iter().flat_map(|s| s.state()).collect();
    for key in wanted {
        let service = services.iter().find_map(|store| {
            store.find(|s| {
                s.metadata.namespace.as_deref() == Some(key.namespace.as_str())
                    && s.metadata.name.as_deref() == Some(key.name.as_str())
            })
        });
        let listed = slices::ready_endpoint_addrs(
            &key.namespace,
            &key.name,
            key.port,
            service.as_deref(),
            all_slices.iter().map(|s| s.as_ref()),
        );
        let h2c = slices::app_protocol(
            &key.namespace,
            &key.name,
            key.port,
            service.as_deref(),
            all_slices.iter().map(|s| s.as_ref()),
        )
        .is_some_and(|p| p == slices::H2C_APP_PROTOCOL);
        shared.state.endpoints.set_h2c(&key, h2c);
        let ready = slices::resolve(listed).await;
        if shared.state.endpoints.get(&key).as_deref() != Some(&ready) {
            tracing::debug!(service = ?key, endpoints = ready.len(), "endpoints updated");
            shared.state.endpoints.set(key, ready);
        }
    }
}
