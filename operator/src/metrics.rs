//! The operator's Prometheus metrics.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use lockstep_config::ObjectKey;

/// Labels of per-RouterConfig gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouterConfigLabels {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    /// The registry they are in.
    pub registry: Registry,
    /// Reconciles run.
    pub reconciles: Counter,
    /// Reconciles that failed.
    pub reconcile_errors: Counter,
    /// Status writes sent.
    pub status_writes: Counter,
    /// Seconds from the first sight of a generation to Ready=True for it.
    pub rollout_duration: Histogram,
    /// 1 while this instance is the leader.
    pub leader: Gauge,
    /// 1 when Ready=True, per RouterConfig.
    pub ready: Family<RouterConfigLabels, Gauge>,
    /// Live replicas serving the current generation, per RouterConfig.
    pub synced_replicas: Family<RouterConfigLabels, Gauge>,
    /// Live replicas, per RouterConfig.
    pub replicas: Family<RouterConfigLabels, Gauge>,
    /// metadata.generation, per RouterConfig.
    pub generation: Family<RouterConfigLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            reconciles: Counter::default(),
            reconcile_errors: Counter::default(),
            status_writes: Counter::default(),
            rollout_duration: Histogram::new([0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0]),
            leader: Gauge::default(),
            ready: Family::default(),
            synced_replicas: Family::default(),
            replicas: Family::default(),
            generation: Family::default(),
            registry: Registry::default(),
        };
        registry.register("lockstep_operator_reconciles", "Reconciles run", m.reconciles.clone());
        registry.register("lockstep_operator_reconcile_errors", "Reconciles that failed", m.reconcile_errors.clone());
        registry.register("lockstep_operator_status_writes", "RouterConfig status writes sent", m.status_writes.clone());
        registry.register(
            "lockstep_operator_rollout_duration_seconds",
            "Seconds from the first sight of a generation to Ready=True for it",
            m.rollout_duration.clone(),
        );
        registry.register("lockstep_operator_leader", "1 while this instance is the leader", m.leader.clone());
        registry.register("lockstep_operator_routerconfig_ready", "1 when Ready=True", m.ready.clone());
        registry.register(
            "lockstep_operator_routerconfig_synced_replicas",
            "Live replicas serving the current generation",
            m.synced_replicas.clone(),
        );
        registry.register("lockstep_operator_routerconfig_replicas", "Live replicas of the fleet", m.replicas.clone());
        registry.register("lockstep_operator_routerconfig_generation", "metadata.generation", m.generation.clone());
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Sets the gauges of one RouterConfig.
    pub fn set_routerconfig(&self, key: &ObjectKey, ready: bool, synced: i32, replicas: i32, generation: i64) {
        let labels = RouterConfigLabels { namespace: key.namespace.clone(), name: key.name.clone() };
        self.ready.get_or_create(&labels).set(i64::from(ready));
        self.synced_replicas.get_or_create(&labels).set(i64::from(synced));
        self.replicas.get_or_create(&labels).set(i64::from(replicas));
        self.generation.get_or_create(&labels).set(generation);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}
