//! State shared by the data plane, the admin server and the configuration sources (the
//! Kubernetes fleet sync or the standalone file): what the replica serves, its Service
//! endpoints, and whether it is ready.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use arc_swap::ArcSwap;
use lockstep_core::ObjectKey;
pub use lockstep_core::{ServedConfig, ServedObject};

use crate::{
    endpoints::Endpoints,
    metrics::{Metrics, RouteSet, ScrapeView},
};

/// A served configuration with the metric handles of its routes, swapped in together.
#[derive(Debug)]
pub(crate) struct Serving {
    /// What is served.
    pub config: Arc<ServedConfig>,
    /// Its routes' metric handles, in the table's order.
    pub routes: RouteSet,
}

/// State shared across the proxy's tasks.
#[derive(Debug)]
pub struct ProxyState {
    /// The replica name reported in status and `/config`.
    pub replica: String,
    served: ArcSwap<Serving>,
    swaps: AtomicU64,
    /// Ready endpoints of Service backends.
    pub endpoints: Endpoints,
    /// TLS certificates by host, for the TLS listener.
    pub certs: Arc<crate::certs::CertStore>,
    /// The configuration source's verdict (see [`ProxyState::set_ready`]).
    ready: AtomicBool,
    draining: AtomicBool,
    /// In Kubernetes mode, the instant the replica's Lease may have expired; readiness is
    /// judged against it when asked, so a replica that wakes from a freeze is unready at once.
    ready_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// The data plane's Prometheus metrics (served on the admin `/metrics`).
    pub metrics: Metrics,
}

impl ProxyState {
    /// Fresh state serving nothing, not ready.
    pub fn new(replica: impl Into<String>) -> Arc<Self> {
        // The metrics read the served configuration at scrape time, so they point back here.
        Arc::new_cyclic(|state: &std::sync::Weak<Self>| {
            let metrics = Metrics::new(state.clone());
            let config = Arc::new(ServedConfig::default());
            let routes = metrics.route_set(&config.table);
            Self {
                metrics,
                replica: replica.into(),
                served: ArcSwap::from_pointee(Serving { config, routes }),
                swaps: AtomicU64::new(0),
                endpoints: Endpoints::default(),
                certs: Arc::default(),
                ready: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                ready_until: std::sync::Mutex::new(None),
            }
        })
    }

    /// The configuration in force now.
    pub fn served(&self) -> Arc<ServedConfig> {
        self.served.load().config.clone()
    }

    /// The configuration in force now with its routes' metric handles, for one request.
    /// (Not a yes/no "is it serving": that is what `serving` means in the fleet sync.)
    pub(crate) fn served_with_metrics(&self) -> Arc<Serving> {
        self.served.load_full()
    }

    /// Atomically replaces the served configuration. Its routes' metric handles are built
    /// here, once, not by the requests that use them.
    pub fn swap(&self, config: ServedConfig) {
        let routes = self.metrics.route_set(&config.table);
        self.served.store(Arc::new(Serving {
            config: Arc::new(config),
            routes,
        }));
        self.swaps.fetch_add(1, Ordering::Relaxed);
    }

    /// How many swaps happened since start.
    pub fn swap_count(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    /// Set by the configuration source: whether `/readyz` may answer ready (in Kubernetes
    /// mode: the replica's readiness verdict, which asks for a fresh Lease and a healthy sync
    /// loop as well as every RouterConfig of its fleet served at its current generation).
    /// Not "synced" in the operator's sense, a generation match: a replica can serve every
    /// current generation and still be unready.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Marks the replica as shutting down; it stays unready from then on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Shutting down?
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Bounds readiness in time (Kubernetes mode: the end of the Lease just renewed).
    pub fn set_ready_until(&self, until: Option<std::time::Instant>) {
        *self.ready_until.lock().expect("ready_until lock") = until;
    }

    /// What `/readyz` answers.
    pub fn is_ready(&self) -> bool {
        let in_time = self
            .ready_until
            .lock()
            .expect("ready_until lock")
            .is_none_or(|until| std::time::Instant::now() < until);
        in_time && self.ready.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }
}

impl ScrapeView for ProxyState {
    fn swap_count(&self) -> u64 {
        ProxyState::swap_count(self)
    }

    fn is_ready(&self) -> bool {
        ProxyState::is_ready(self)
    }

    fn served_generations(&self) -> Vec<(ObjectKey, i64)> {
        self.served()
            .objects
            .values()
            .map(|object| (object.key.clone(), object.generation))
            .collect()
    }
}

/// Runs a configuration source's heavy step (parsing, compiling a table and building its
/// routes' metric handles: about a second at 100k routes) on a blocking thread, so the
/// runtime's workers keep serving requests meanwhile; a panic in it is the caller's.
pub(crate) async fn off_the_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()))
}
