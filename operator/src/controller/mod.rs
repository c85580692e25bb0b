//! The Kubernetes edge of the operator: watches RouterConfigs, the replicas' RouterReplicas,
//! the fleets' Leases and TLS Secrets, hands each RouterConfig to
//! [`lockstep_core::barrier::decide`], and writes what it decides. It is the only writer of
//! RouterConfig status; only the leader writes, and it checks its leadership right before
//! every write.
//!
//! The parts share one [`Context`] (the caches, the Lease clock, the bookkeeping) and nothing
//! else, so each is a module that can be read without the others:
//! - `watches`: [`run`], the four watches, the sync gate that holds reconciles until every
//!   cache has listed, the Lease clock observer, and the mappers from each event to the
//!   RouterConfigs it can change;
//! - `judge`: what a reconcile decides from: the fleet's verdict on the spec (with the TLS view
//!   of the Secrets it names), the membership from the caches or from a quorum read, and the
//!   call to the barrier;
//! - `reconcile`: one reconcile: judge, confirm before `Ready=True`, write the status, requeue
//!   at the next deadline;
//! - `telemetry`: what a reconcile tells besides the status: Events and logs of transitions,
//!   the per-RouterConfig metrics and rollout times, the ready-path trace;
//! - `cleanup`: the background sweeps: bookkeeping of deleted RouterConfigs, and the
//!   RouterReplicas of replicas whose Lease is long dead.

mod cleanup;
mod fence;
mod judge;
mod reconcile;
mod telemetry;
mod watches;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Secret;
use kube::{Client, ResourceExt, runtime::events::Recorder, runtime::reflector::Store};
use lockstep_core::{
    ObjectKey, barrier,
    lease::{LeaseClock, Mono},
};
use lockstep_crds::{ReplicaId, RouterConfig, RouterReplica};
use tokio::sync::watch;

pub use watches::run;

use crate::{leader::Leadership, metrics::Metrics};
use telemetry::Rollout;

/// What every reconcile shares.
pub struct Context {
    client: Client,
    routerconfigs: Store<RouterConfig>,
    replicas: Store<RouterReplica>,
    secrets: Store<Secret>,
    /// When each proxy Lease was last seen renewed, on this process's clock.
    leases: Arc<Mutex<LeaseClock>>,
    /// The origin of [`Mono`] times.
    origin: Instant,
    leader: Arc<Leadership>,
    /// Written beside the membership list of a `Ready=True`, so the apiserver's Lease cache
    /// serves that list at once.
    fence: fence::LeaseCacheFence,
    /// True once every cache has listed.
    synced: watch::Receiver<bool>,
    settings: barrier::Settings,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    rollouts: Mutex<HashMap<Incarnation, Rollout>>,
    /// When the RouterReplica watch last delivered an event, for the ready-path trace.
    last_report_seen: Arc<Mutex<Option<Instant>>>,
    /// When this instance last wrote each object's status, to space out progress writes.
    last_written: Mutex<HashMap<Incarnation, Instant>>,
    /// The fleet's Leases as listed at each rollout's first judgement, so its `Ready=True`
    /// lists them again only when one of them ran out since
    /// ([`lockstep_core::lease::GenerationMembers`], [`judge::list_for_rollout`]).
    rollout_lists: Mutex<judge::RolloutLists>,
}

/// One object of a name: namespace/name and metadata.uid. What the operator remembers of a
/// RouterConfig is keyed on it, so a RouterConfig deleted and re-created under the same name
/// starts from nothing (its generation restarts at 1 and would otherwise match the old
/// object's rollout clock or last write).
type Incarnation = (ObjectKey, String);

fn incarnation(rc: &RouterConfig) -> Incarnation {
    (ObjectKey::of(rc), rc.uid().to_owned())
}

impl Context {
    fn mono(&self) -> Mono {
        self.origin.elapsed()
    }
}

/// Options of the controller.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stall timeout and progress interval.
    pub settings: barrier::Settings,
    /// This instance's identity (for Events).
    pub identity: String,
    /// How long a RouterReplica is kept after its Lease ran out ([`lockstep_core::garbage`]).
    pub replica_gc_after: Duration,
}

/// The replica a RouterReplica stands for: its namespace and name.
fn replica_id(rrep: &RouterReplica) -> ReplicaId {
    ReplicaId::new(rrep.namespace().unwrap_or_default(), rrep.name_any())
}
