//! Kubernetes mode: the replica watches the RouterConfigs of its fleet and the EndpointSlices
//! and Services they reference, swaps its route table, reports what it serves on its own
//! `RouterReplica`, and holds a Lease that makes it a member of the fleet.
//!
//! The promise the operator builds `Ready` on: a replica answers ready only while it holds a
//! fresh Lease (judged from when it *sent* the renewal) and has confirmed with a quorum read,
//! after its Lease was written, that it serves the newest generation of every RouterConfig it
//! serves. A replica that could not renew in time (frozen, partitioned, a renewal answered
//! late) fences itself: unready until it has rejoined through that check. The decisions are
//! `lockstep_core::lease::ReplicaLease`; this module is their I/O.
//!
//! The sync loop is supervised (`lockstep_core::supervision`): a panic restarts it after a
//! pause, and a pass that runs past a bound (the Lease duration) or a dead loop makes the
//! replica unready and stops its Lease renewals, so the operator stops waiting for it.
//! Restarting the loop rather than exiting the process keeps the data plane serving its last
//! table: a panic that some RouterConfig triggers would hit every replica at once, and a
//! process exit would take the whole fleet's traffic down with it.
//!
//! Leaving (SIGTERM) stops the writers (Lease renewer, report writer) and waits for their
//! requests in flight before deleting the Lease and the RouterReplica, so no write sent
//! earlier can land after a delete and create the object again.
//!
//! Where each job lives: this module starts the watches and tasks, supervises the sync loop
//! and leaves; `sync` is the loop, one step per job of a pass (TLS, endpoints, plan and swap,
//! readiness, report); `refresh`, `slices` and `resolver` give Services their endpoints;
//! `tls` and `secrets` the certificates; `report` writes the RouterReplica; `lease` holds the
//! Lease.

mod lease;
mod refresh;
mod report;
mod resolver;
mod secrets;
pub mod slices;
mod sync;
pub mod tls;

use std::{
    collections::BTreeMap,
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
use lockstep_core::{
    ObjectKey,
    lease::{Mono, Readiness, ReplicaLease, ReplicaReason},
    supervision::{SyncProblem, SyncWatch},
};
use lockstep_crds::{ALL_NAMESPACES, RouterConfig};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::state::ProxyState;

pub use lockstep_core::plan::Report;

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

    /// The namespaces whose Services the replica can resolve, for the plan.
    pub fn watched(&self) -> lockstep_core::plan::Watched {
        match self {
            Self::All => lockstep_core::plan::Watched::All,
            Self::Namespaces(names) => {
                lockstep_core::plan::Watched::Namespaces(names.iter().cloned().collect())
            }
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
    /// The health of the sync loop.
    sync: Mutex<SyncWatch>,
    /// Set when the replica leaves: writers stop before their next request.
    leaving: CancellationToken,
    /// How many `Ready` conditions were written beside the report writer (by
    /// `report::mark_unready`): the writer's idea of what the RouterReplica says is stale
    /// once this moves.
    unready_marks: std::sync::atomic::AtomicU64,
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
        let readiness = match self.sync_problem() {
            Some(sync) => sync.readiness(),
            None => lease.readiness(serving, problem.as_deref(), now),
        };
        self.state.set_ready(readiness.ready);
        self.state
            .set_ready_until(readiness.ready.then(|| self.origin + lease.fresh_until()));
        readiness
    }

    fn new(
        options: FleetOptions,
        state: Arc<ProxyState>,
        client: Client,
        rc_stores: Vec<Store<RouterConfig>>,
    ) -> Arc<Self> {
        Arc::new(Shared {
            lease: Mutex::new(ReplicaLease::new(options.lease_duration)),
            // A pass that runs longer than a Lease would have the operator wait on a replica that
            // cannot answer; one pass normally takes milliseconds (a second at 100k routes).
            sync: Mutex::new(SyncWatch::new(options.lease_duration)),
            leaving: CancellationToken::new(),
            unready_marks: Default::default(),
            options,
            state,
            client,
            rc_stores,
            reported: Mutex::default(),
            serving_current: AtomicBool::new(false),
            reported_current: AtomicBool::new(false),
            lease_problem: Mutex::new(None),
            origin: Instant::now(),
            wake: Arc::new(Notify::new()),
            wake_now: Notify::new(),
            wake_lease: Notify::new(),
        })
    }

    /// What is wrong with the sync loop now, if anything.
    fn sync_problem(&self) -> Option<SyncProblem> {
        self.sync.lock().expect("sync watch lock").problem(self.mono())
    }
}

/// Longest [`FleetHandle::leave`] waits for a writer's request in flight before it cancels
/// it: only an apiserver this slow to answer can see a cancelled write after the deletes.
const WRITER_STOP_BOUND: Duration = Duration::from_secs(3);

/// A running fleet sync.
pub struct FleetHandle {
    shared: Arc<Shared>,
    /// Tasks that only read (watches): aborted on leave.
    watchers: Vec<JoinHandle<()>>,
    /// Tasks that write (the Lease renewer, the supervised sync loop with its report writer):
    /// stopped and awaited on leave.
    writers: Vec<JoinHandle<()>>,
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
    ///
    /// The writers are stopped first and their requests in flight answered (or, past
    /// [`WRITER_STOP_BOUND`], cancelled) before the first delete is sent: a Lease renewal or
    /// report sent before the delete but applied after it would create the object again, a
    /// member without a report that nobody cleans up.
    pub async fn leave(self) {
        self.shared.leaving.cancel();
        for task in &self.watchers {
            task.abort();
        }
        self.shared.lease.lock().expect("lease lock").leave();
        self.shared.update_readiness();
        let deadline = tokio::time::Instant::now() + WRITER_STOP_BOUND;
        for mut writer in self.writers {
            if tokio::time::timeout_at(deadline, &mut writer).await.is_err() {
                tracing::warn!(replica = %self.shared.options.replica, "a writer did not stop in time; cancelling its request");
                writer.abort();
                let _ = writer.await;
            }
        }
        // A renewal answered meanwhile must not count: outside for good.
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
    lockstep_core::lease::lease_duration(options.lease_duration).map_err(Error::Options)?;
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

    let rc_stores = rc_parts.iter().map(|(_, store, _)| store.clone()).collect();
    let shared = Shared::new(options, state, client, rc_stores);

    let mut watchers = Vec::new();
    let slice_stores: Vec<Store<EndpointSlice>> = slice_parts.iter().map(|(_, s, _)| s.clone()).collect();
    let svc_stores: Vec<Store<Service>> = svc_parts.iter().map(|(_, s, _)| s.clone()).collect();
    for (api, _, writer) in rc_parts {
        watchers.push(spawn_routerconfig_reflector(api, writer, shared.clone()));
    }
    for (api, _, writer) in slice_parts {
        watchers.push(spawn_reflector("endpointslices", api, writer, shared.clone()));
    }
    for (api, _, writer) in svc_parts {
        watchers.push(spawn_reflector("services", api, writer, shared.clone()));
    }
    let writers = vec![
        tokio::spawn(supervise(shared.clone(), slice_stores, svc_stores)),
        tokio::spawn(lease::run(shared.clone())),
    ];
    Ok(FleetHandle {
        shared,
        watchers,
        writers,
    })
}

/// First pause before restarting a sync loop that panicked; doubled per panic in a row.
const MIN_RESTART: Duration = Duration::from_secs(1);
/// Longest pause before restarting a sync loop.
const MAX_RESTART: Duration = Duration::from_secs(30);

/// Runs the sync loop and restarts it when it panics (see the module doc); returns when the
/// replica leaves.
async fn supervise(shared: Arc<Shared>, slices: Vec<Store<EndpointSlice>>, services: Vec<Store<Service>>) {
    let mut pause = MIN_RESTART;
    loop {
        let resolver = resolver::Resolver::new(resolver::system_lookup(), shared.wake.clone());
        let endpoints = refresh::EndpointSources::new(slices.clone(), services.clone(), resolver);
        let run = tokio::spawn(sync::run(shared.clone(), endpoints));
        // Dropping a JoinHandle does not stop its task: abort it when this one is stopped.
        let abort = run.abort_handle();
        let _stop_with_me = scopeguard(move || abort.abort());
        let failure = match run.await {
            Ok(()) => return,
            Err(error) if error.is_cancelled() => return,
            Err(error) => panic_message(error.into_panic()),
        };
        let restarted_healthy = shared.sync_problem().is_none();
        if restarted_healthy {
            pause = MIN_RESTART;
        }
        tracing::error!(replica = %shared.options.replica, panic = %failure, restart_in = ?pause, "the sync loop panicked; unready and not renewing the Lease until it works again");
        shared.sync.lock().expect("sync watch lock").panicked(failure);
        shared
            .state
            .metrics
            .sync_failure(ReplicaReason::SyncFailed.as_str());
        shared.update_readiness();
        shared.wake_lease.notify_one();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shared.leaving.cancelled() => return,
        }
        pause = (pause * 2).min(MAX_RESTART);
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// The message of a panic payload.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
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
/// generation, or a new `status.lastAccepted`: the first after a quiet time is served at
/// once, the rest of a burst is debounced, so a burst costs at most two swaps) from the
/// operator's other status writes, which change nothing here.
fn spawn_routerconfig_reflector(
    api: Api<RouterConfig>,
    writer: reflector::store::Writer<RouterConfig>,
    shared: Arc<Shared>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // The incarnation (uid), the generation and the operator's last accepted generation:
        // the plan reads all three (an object created again under its name restarts at
        // generation 1, so the generation alone would not tell it from the deleted one).
        type Seen = (String, i64, Option<i64>);
        let mut generations: std::collections::HashMap<ObjectKey, Seen> = std::collections::HashMap::new();
        let stream = reflector(
            writer,
            watcher(api, watcher::Config::default()).backoff(lockstep_apiclient::watch_backoff()),
        );
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let spec_change = match &event {
                Ok(watcher::Event::Apply(rc) | watcher::Event::InitApply(rc)) => {
                    let key = ObjectKey::of(rc);
                    let generation = (
                        rc.uid().to_owned(),
                        rc.generation(),
                        rc.last_accepted().map(|a| a.generation),
                    );
                    let ours = rc.spec.fleet == shared.options.fleet;
                    match generations.insert(key.clone(), generation.clone()) {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use lockstep_apiclient::mock::{self, ApiServer};

    use super::*;
    use crate::endpoints::ServiceKey;

    /// The shared state of replica `r1` (Lease and RouterReplica in namespace `ns`, serving
    /// it, fleet `default`) whose client talks to the returned fake apiserver.
    pub(super) fn replica(options: FleetOptions) -> (Arc<Shared>, ApiServer) {
        let (client, server) = mock::pair();
        let shared = Shared::new(options, ProxyState::new("r1"), client, Vec::new());
        (shared, server)
    }

    pub(super) fn options() -> FleetOptions {
        FleetOptions::new("r1", "ns", "default")
    }

    /// A fleet's RouterConfigs, and the EndpointSlice and Service stores of its watches.
    type Fleet = (
        Vec<Arc<RouterConfig>>,
        Vec<Store<EndpointSlice>>,
        Vec<Store<Service>>,
    );

    /// `services` Services of one FQDN endpoint each (`svc-<i>.example`), named by one
    /// RouterConfig, as the watches would hold them.
    fn fqdn_fleet(services: usize) -> Fleet {
        let (slice_store, mut slice_writer) = reflector::store::<EndpointSlice>();
        let (svc_store, mut svc_writer) = reflector::store::<Service>();
        let mut paths = Vec::new();
        for i in 0..services {
            let name = format!("svc-{i}");
            paths.push(serde_json::json!({
                "path": format!("/{i}"), "pathType": "Prefix",
                "backend": {"service": {"name": name, "port": 80}}
            }));
            let service: Service = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"ports": [{"name": "http", "port": 80}]}
            }))
            .unwrap();
            svc_writer.apply_watcher_event(&watcher::Event::Apply(service));
            let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("{name}-x"), "namespace": "ns",
                             "labels": {slices::SERVICE_NAME_LABEL: name}},
                "addressType": "FQDN",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": [format!("{name}.example")]}]
            }))
            .unwrap();
            slice_writer.apply_watcher_event(&watcher::Event::Apply(slice));
        }
        let rc: RouterConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {"fleet": "default", "rules": [{"host": "a.example", "paths": paths}]}
        }))
        .unwrap();
        (vec![Arc::new(rc)], vec![slice_store], vec![svc_store])
    }

    /// A resolver whose every answer takes `delay`: 10.0.0.1 for any name.
    fn slow_lookup(delay: Duration) -> resolver::Lookup {
        Arc::new(move |_name: String, port: u16| {
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(vec![std::net::SocketAddr::from(([10, 0, 0, 1], port))])
            })
        })
    }

    /// What the endpoint step costs the swap when every name takes 200 ms to resolve: the
    /// numbers go to stdout (`--nocapture`).
    #[tokio::test]
    async fn endpoint_refresh_with_slow_names_measured() {
        const SERVICES: usize = 32;
        let (objects, slice_stores, svc_stores) = fqdn_fleet(SERVICES);
        let (shared, _server) = replica(options());
        let resolver = resolver::Resolver::new(slow_lookup(Duration::from_millis(200)), Arc::default());
        let endpoints = refresh::EndpointSources::new(slice_stores, svc_stores, resolver);
        let mut took = Vec::new();
        for pass in ["first", "second"] {
            let started = Instant::now();
            endpoints.refresh(&shared, &objects).await;
            took.push(started.elapsed());
            println!(
                "{SERVICES} names at 200 ms each, {pass} pass: {:?} before the swap",
                took.last().unwrap()
            );
        }
        // Two rounds of 16 lookups at once, then the cache: generous bounds for a busy machine.
        assert!(
            took[0] < Duration::from_millis(1500),
            "first pass took {:?}",
            took[0]
        );
        assert!(
            took[1] < Duration::from_millis(150),
            "second pass took {:?}",
            took[1]
        );
        let key = ServiceKey {
            namespace: "ns".into(),
            name: "svc-0".into(),
            port: 80,
        };
        assert_eq!(
            shared.state.endpoints.get(&key).as_deref(),
            Some(&vec!["10.0.0.1:8080".parse().unwrap()])
        );
    }

    #[tokio::test]
    async fn leave_deletes_only_after_the_lease_write_in_flight_is_answered() {
        let (shared, mut server) = replica(options());
        shared.reported_current.store(true, Ordering::SeqCst);
        let handle = FleetHandle {
            shared: shared.clone(),
            watchers: Vec::new(),
            writers: vec![tokio::spawn(lease::run(shared.clone()))],
        };

        let renewal = server.next().await;
        assert_eq!(
            renewal.describe(),
            "PATCH /apis/coordination.k8s.io/v1/namespaces/ns/leases/lockstep-proxy-r1"
        );

        // SIGTERM while the write is on the wire: nothing else may be sent until it is answered,
        // or the apiserver could apply it after the delete and create the Lease again.
        let leaving = tokio::spawn(handle.leave());
        server.expect_quiet(Duration::from_millis(300)).await;
        renewal.ok(&serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "lockstep-proxy-r1", "namespace": "ns", "resourceVersion": "2"}
        }));

        let deleted = serde_json::json!({
            "apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200, "metadata": {}
        });
        let mut order = Vec::new();
        for _ in 0..2 {
            let request = server.next().await;
            order.push(request.describe());
            request.ok(&deleted);
        }
        assert_eq!(
            order,
            vec![
                "DELETE /apis/coordination.k8s.io/v1/namespaces/ns/leases/lockstep-proxy-r1",
                "DELETE /apis/lockstep.dev/v1alpha1/namespaces/ns/routerreplicas/r1",
            ]
        );
        leaving.await.unwrap();
        // The writers are gone: nothing can write (and so create) either object again.
        server.expect_quiet(Duration::from_millis(300)).await;
    }
}
