//! Kubernetes mode: the replica watches the RouterConfigs of its fleet and the EndpointSlices
//! and Services they reference, swaps its route table, reports what it serves in each
//! RouterConfig's `status.replicaStatus`, and holds a Lease that makes it a member of the
//! fleet.
//!
//! The promise the operator builds `Ready` on: a replica holds a fresh Lease only while it
//! has processed (served, or rejected and reported) the current generation of every
//! RouterConfig of its fleet and has written that into status. A replica that could not
//! renew in time (frozen, partitioned) fences itself: unready and no renewals until it has
//! re-listed and caught up.

mod lease;
pub mod plan;
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
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, Client, Resource,
    runtime::{WatchStreamExt, reflector, reflector::Store, watcher},
};
use lockstep_config::{BackendRef, ObjectKey};
use lockstep_crds::RouterConfig;
use tokio::{sync::Notify, task::JoinHandle};

use crate::{endpoints::ServiceKey, state::ProxyState};

pub use plan::Report;

/// Options of Kubernetes mode.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Replica name (--replica-name); names the Lease and the status entries.
    pub replica: String,
    /// Namespace of the replica's Lease (--namespace); also the only namespace watched for
    /// RouterConfigs unless `all_namespaces`.
    pub namespace: String,
    /// Fleet name (--fleet).
    pub fleet: String,
    /// Watch RouterConfigs, EndpointSlices and Services in all namespaces.
    pub all_namespaces: bool,
    /// Lease duration; renewed every third of it.
    pub lease_duration: Duration,
    /// Quiet time that ends a burst of changes before one swap.
    pub debounce: Duration,
    /// Longest a burst can delay a swap.
    pub debounce_max: Duration,
}

impl FleetOptions {
    /// Options with the default timings (10 s Lease, 20 ms debounce capped at 250 ms).
    pub fn new(replica: impl Into<String>, namespace: impl Into<String>, fleet: impl Into<String>) -> Self {
        Self {
            replica: replica.into(),
            namespace: namespace.into(),
            fleet: fleet.into(),
            all_namespaces: false,
            lease_duration: Duration::from_secs(10),
            debounce: Duration::from_millis(20),
            debounce_max: Duration::from_millis(250),
        }
    }
}

/// State shared by the fleet sync's tasks.
struct Shared {
    options: FleetOptions,
    state: Arc<ProxyState>,
    client: Client,
    rc_store: Store<RouterConfig>,
    /// Reports as last computed by the sync loop.
    reports: Mutex<BTreeMap<ObjectKey, Report>>,
    /// The replica serves the current generation of every RouterConfig of the fleet.
    serving_current: AtomicBool,
    /// ... and its status entries say so.
    reported_current: AtomicBool,
    /// Wakes the sync loop after a debounce: something that changes what is served.
    wake: Arc<Notify>,
    /// Wakes the sync loop at once: status-only changes (another replica's report, the
    /// operator pruning this replica's entry), which only need a report checked.
    wake_now: Notify,
    /// Wakes the Lease loop.
    wake_lease: Notify,
    /// The Lease loop holds a fresh Lease.
    lease_fresh: AtomicBool,
}

impl Shared {
    fn fleet_objects(&self) -> Vec<Arc<RouterConfig>> {
        self.rc_store
            .state()
            .into_iter()
            .filter(|rc| rc.spec.fleet == self.options.fleet)
            .collect()
    }

    fn update_readiness(&self) {
        let ready = self.serving_current.load(Ordering::SeqCst) && self.lease_fresh.load(Ordering::SeqCst);
        self.state.set_synced(ready);
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
    /// Leaves the fleet: stops renewing, deletes the Lease, then removes this replica's status
    /// entries, so the operator neither waits for it nor counts it. Called on SIGTERM after
    /// the replica turned unready and before draining.
    pub async fn leave(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.state.set_synced(false);
        lease::delete(&self.shared).await;
        report::remove_all(&self.shared).await;
    }
}

/// Starts the sync in the background with a client from the usual places (KUBECONFIG,
/// in-cluster).
pub async fn start(state: Arc<ProxyState>, options: FleetOptions) -> anyhow::Result<FleetHandle> {
    let client = lockstep_apiclient::client().await?;
    start_with_client(state, options, client).await
}

/// Starts the sync with a given client.
pub async fn start_with_client(
    state: Arc<ProxyState>,
    options: FleetOptions,
    client: Client,
) -> anyhow::Result<FleetHandle> {
    let (rc_api, slice_api, svc_api) = if options.all_namespaces {
        (
            Api::<RouterConfig>::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        )
    } else {
        let ns = options.namespace.as_str();
        (
            Api::<RouterConfig>::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        )
    };
    let (rc_store, rc_writer) = reflector::store();
    let (slice_store, slice_writer) = reflector::store::<EndpointSlice>();
    let (svc_store, svc_writer) = reflector::store::<Service>();

    let shared = Arc::new(Shared {
        options,
        state,
        client,
        rc_store,
        reports: Mutex::new(BTreeMap::new()),
        serving_current: AtomicBool::new(false),
        reported_current: AtomicBool::new(false),
        wake: Arc::new(Notify::new()),
        wake_now: Notify::new(),
        wake_lease: Notify::new(),
        lease_fresh: AtomicBool::new(false),
    });

    let tasks = vec![
        spawn_routerconfig_reflector(rc_api, rc_writer, shared.clone()),
        spawn_reflector("endpointslices", slice_api, slice_writer, shared.clone()),
        spawn_reflector("services", svc_api, svc_writer, shared.clone()),
        tokio::spawn(sync_loop(shared.clone(), slice_store, svc_store)),
        tokio::spawn(lease::run(shared.clone())),
    ];
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

/// Like [`spawn_reflector`] for RouterConfigs, telling spec changes (debounced: a burst of
/// edits costs one swap) from status-only changes (at once: every replica's report is an
/// event for every replica, and waiting out a debounce on each would stretch rollouts).
fn spawn_routerconfig_reflector(
    api: Api<RouterConfig>,
    writer: reflector::store::Writer<RouterConfig>,
    shared: Arc<Shared>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut generations: std::collections::HashMap<ObjectKey, i64> = std::collections::HashMap::new();
        let stream = reflector(
            writer,
            watcher(api, watcher::Config::default()).backoff(lockstep_apiclient::watch_backoff()),
        );
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let spec_change = match &event {
                Ok(watcher::Event::Apply(rc) | watcher::Event::InitApply(rc)) => {
                    let key = ObjectKey::of(rc);
                    let generation = rc.metadata.generation.unwrap_or(1);
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
            } else {
                shared.wake_now.notify_one();
            }
        }
    })
}

async fn sync_loop(shared: Arc<Shared>, slices: Store<EndpointSlice>, services: Store<Service>) {
    let stores_ready = async {
        let _ = shared.rc_store.wait_until_ready().await;
        let _ = slices.wait_until_ready().await;
        let _ = services.wait_until_ready().await;
    };
    stores_ready.await;
    let mut applied_at = BTreeMap::new();
    let secrets = secrets::SecretWatches::new(shared.client.clone(), shared.wake.clone());
    let mut good_tls = std::collections::HashMap::new();
    // Retries of failed status writes, and a periodic level check, ride on this tick.
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
        let plan = plan::plan(&objects, &served, &view, &mut applied_at, now);
        if let Some(next) = plan.next {
            let generations: Vec<String> = next
                .objects
                .values()
                .map(|o| format!("{}@{}", o.key, o.generation))
                .collect();
            shared.state.swap(next);
            tracing::info!(replica = %shared.options.replica, routerconfigs = ?generations, "route table swapped");
        }
        for (key, report) in &plan.reports {
            if let Some((generation, message)) = &report.rejected {
                tracing::warn!(routerconfig = %key, generation, %message, "generation rejected; serving the last good one");
            }
        }
        let serving = plan::in_sync(&objects, &plan.reports);
        shared.serving_current.store(serving, Ordering::SeqCst);
        *shared.reports.lock().expect("reports lock") = plan.reports.clone();
        shared.update_readiness();

        let written = report::write_changed(&shared, &objects, &plan.reports).await;
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
    slices: &Store<EndpointSlice>,
    services: &Store<Service>,
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
    let all_slices = slices.state();
    for key in wanted {
        let service = services.find(|s| {
            s.metadata.namespace.as_deref() == Some(key.namespace.as_str())
                && s.metadata.name.as_deref() == Some(key.name.as_str())
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
