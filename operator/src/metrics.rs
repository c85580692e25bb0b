//! The operator's Prometheus metrics, all prefixed `lockstep_operator_`.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `reconciles_total` | counter | reconciles run |
//! | `reconcile_errors_total` | counter | reconciles that failed (retried) |
//! | `reconcile_duration_seconds` | histogram | time of one (leader) reconcile, writes included |
//! | `status_writes_total` | counter | status applies sent |
//! | `status_conflicts_total` | counter | status applies refused because the object changed since it was judged (resourceVersion precondition) |
//! | `gateway_status_writes_total` | counter | Gateway API status writes sent (classes, Gateways, routes) |
//! | `membership_checks_total` | counter | lists of a fleet's Leases at least as new as the RouterConfig judged: one at a rollout's first judgement, and one before its Ready=True only when a Lease that list showed live ran out since |
//! | `replica_checks_total` | counter | quorum lists of a fleet's RouterReplicas before writing Ready=True (only when the cache leaves a live replica out of the namespace) |
//! | `replicas_collected_total` | counter | RouterReplicas deleted because their Lease was dead longer than `--replica-gc-after` |
//! | `rollout_duration_seconds` | histogram | first sight of a generation to Ready=True for it |
//! | `leader` | gauge | 1 while this instance may write |
//! | `routerconfig_ready` | gauge {namespace,name} | 1 while Ready=True for the current generation |
//! | `routerconfig_synced_replicas` | gauge {namespace,name} | live replicas serving it |
//! | `routerconfig_replicas` | gauge {namespace,name} | live replicas of its fleet |
//! | `routerconfig_generation` | gauge {namespace,name} | metadata.generation |

use std::{collections::BTreeSet, sync::Mutex};

use lockstep_core::ObjectKey;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of per-RouterConfig gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouterConfigLabels {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl From<&ObjectKey> for RouterConfigLabels {
    fn from(key: &ObjectKey) -> Self {
        Self {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }
    }
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles run.
    pub reconciles: Counter,
    /// Reconciles that failed.
    pub reconcile_errors: Counter,
    /// Seconds per leader reconcile.
    pub reconcile_duration: Histogram,
    /// Status writes sent.
    pub status_writes: Counter,
    /// Status applies refused by the resourceVersion precondition.
    pub status_conflicts: Counter,
    /// Gateway API status writes sent.
    pub gateway_status_writes: Counter,
    /// Quorum lists of a fleet's Leases before a Ready=True write.
    pub membership_checks: Counter,
    /// Quorum lists of a fleet's RouterReplicas before a Ready=True write.
    pub replica_checks: Counter,
    /// RouterReplicas deleted because their Lease was dead for `--replica-gc-after`.
    pub replicas_collected: Counter,
    /// Seconds from the first sight of a generation to Ready=True for it.
    pub rollout_duration: Histogram,
    /// 1 while this instance is the leader.
    pub leader: Gauge,
    ready: Family<RouterConfigLabels, Gauge>,
    synced_replicas: Family<RouterConfigLabels, Gauge>,
    replicas: Family<RouterConfigLabels, Gauge>,
    generation: Family<RouterConfigLabels, Gauge>,
    known: Mutex<BTreeSet<ObjectKey>>,
}

impl Default for Metrics {
    fn default() -> Self {
        // Rollouts take tens of milliseconds when healthy and up to the stall timeout when not.
        let rollout_buckets = [
            0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
        ];
        let reconcile_buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
        let mut registry = Registry::with_prefix("lockstep_operator");
        let m = Metrics {
            reconciles: Counter::default(),
            reconcile_errors: Counter::default(),
            reconcile_duration: Histogram::new(reconcile_buckets),
            status_writes: Counter::default(),
            status_conflicts: Counter::default(),
            gateway_status_writes: Counter::default(),
            membership_checks: Counter::default(),
            replica_checks: Counter::default(),
            replicas_collected: Counter::default(),
            rollout_duration: Histogram::new(rollout_buckets),
            leader: Gauge::default(),
            ready: Family::default(),
            synced_replicas: Family::default(),
            replicas: Family::default(),
            generation: Family::default(),
            known: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register("reconciles", "Reconciles run", m.reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Seconds per leader reconcile, writes included",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "status_writes",
            "RouterConfig status applies sent",
            m.status_writes.clone(),
        );
        registry.register(
            "status_conflicts",
            "Status applies refused because the object changed since it was judged",
            m.status_conflicts.clone(),
        );
        registry.register(
            "gateway_status_writes",
            "Gateway API status writes sent (GatewayClasses, Gateways, routes)",
            m.gateway_status_writes.clone(),
        );
        registry.register(
            "membership_checks",
            "Quorum lists of a fleet's Leases before writing Ready=True",
            m.membership_checks.clone(),
        );
        registry.register(
            "replica_checks",
            "Quorum lists of a fleet's RouterReplicas before writing Ready=True",
            m.replica_checks.clone(),
        );
        registry.register(
            "replicas_collected",
            "RouterReplicas deleted because their Lease was dead longer than --replica-gc-after",
            m.replicas_collected.clone(),
        );
        registry.register(
            "rollout_duration_seconds",
            "Seconds from the first sight of a generation to Ready=True for it",
            m.rollout_duration.clone(),
        );
        registry.register("leader", "1 while this instance is the leader", m.leader.clone());
        registry.register(
            "routerconfig_ready",
            "1 while Ready=True for the current generation",
            m.ready.clone(),
        );
        registry.register(
            "routerconfig_synced_replicas",
            "Live replicas serving the current generation with the expected digest",
            m.synced_replicas.clone(),
        );
        registry.register(
            "routerconfig_replicas",
            "Live replicas of the RouterConfig's fleet",
            m.replicas.clone(),
        );
        registry.register(
            "routerconfig_generation",
            "metadata.generation of the RouterConfig",
            m.generation.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Sets the gauges of one RouterConfig.
    pub fn set_routerconfig(
        &self,
        key: &ObjectKey,
        ready: bool,
        synced: i32,
        replicas: i32,
        generation: i64,
    ) {
        let labels = RouterConfigLabels::from(key);
        self.ready.get_or_create(&labels).set(i64::from(ready));
        self.synced_replicas.get_or_create(&labels).set(i64::from(synced));
        self.replicas.get_or_create(&labels).set(i64::from(replicas));
        self.generation.get_or_create(&labels).set(generation);
        self.known.lock().expect("known lock").insert(key.clone());
    }

    /// Drops the gauges of RouterConfigs not in `live`.
    pub fn retain_routerconfigs(&self, live: &[ObjectKey]) {
        let mut known = self.known.lock().expect("known lock");
        known.retain(|key| {
            let keep = live.contains(key);
            if !keep {
                let labels = RouterConfigLabels::from(key);
                for family in [
                    &self.ready,
                    &self.synced_replicas,
                    &self.replicas,
                    &self.generation,
                ] {
                    family.remove(&labels);
                }
            }
            keep
        });
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_exported_per_routerconfig_and_dropped_with_it() {
        let m = Metrics::default();
        let (a, b) = (ObjectKey::new("ns", "a"), ObjectKey::new("ns", "b"));
        m.set_routerconfig(&a, true, 3, 3, 7);
        m.set_routerconfig(&b, false, 1, 3, 2);
        m.rollout_duration.observe(0.04);
        let text = m.encode();
        for line in [
            r#"lockstep_operator_routerconfig_ready{namespace="ns",name="a"} 1"#,
            r#"lockstep_operator_routerconfig_synced_replicas{namespace="ns",name="b"} 1"#,
            r#"lockstep_operator_routerconfig_replicas{namespace="ns",name="a"} 3"#,
            r#"lockstep_operator_routerconfig_generation{namespace="ns",name="a"} 7"#,
            r#"lockstep_operator_rollout_duration_seconds_bucket{le="0.05"} 1"#,
            "lockstep_operator_leader 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        m.retain_routerconfigs(std::slice::from_ref(&a));
        let text = m.encode();
        assert!(!text.contains(r#"name="b""#), "{text}");
        assert!(text.contains(r#"name="a""#));
    }
}
