//! Names of the contract (docs/design.md) that other processes and outside tests rely on.

/// The API group.
pub const GROUP: &str = "lockstep.dev";
/// `apiVersion` of RouterConfig.
pub const API_VERSION: &str = "lockstep.dev/v1alpha1";
/// `kind` of RouterConfig.
pub const KIND: &str = "RouterConfig";
/// `kind` of RouterReplica.
pub const REPLICA_KIND: &str = "RouterReplica";
/// The fleet a RouterConfig belongs to when it names none.
pub const DEFAULT_FLEET: &str = "default";

/// Label on a RouterConfig the operator generated (value: the kind of object it comes from,
/// `Gateway`). What only generated RouterConfigs may say (host `*`, a Service of another
/// namespace) needs it, and the admission policy also requires the operator as the writer.
pub const GENERATED_FROM_LABEL: &str = "lockstep.dev/generated-from";
/// The host of a rule that matches any host no other rule covers (generated RouterConfigs).
pub const ANY_HOST: &str = "*";

/// Label on proxy Leases naming the fleet of the replica.
pub const FLEET_LABEL: &str = "lockstep.dev/fleet";
/// Prefix of a proxy replica's Lease name: `lockstep-proxy-<replica>`.
pub const PROXY_LEASE_PREFIX: &str = "lockstep-proxy-";
/// Field manager of the operator's status writes.
pub const OPERATOR_FIELD_MANAGER: &str = "lockstep-operator";
/// Name of the operator's leader-election Lease.
pub const OPERATOR_LEASE_NAME: &str = "lockstep-operator";

/// The Lease name of a proxy replica.
pub fn proxy_lease_name(replica: &str) -> String {
    format!("{PROXY_LEASE_PREFIX}{replica}")
}

/// The field manager of a proxy replica's writes (its Lease and RouterReplica). Only that
/// replica writes those objects, so one name serves every replica.
pub const PROXY_FIELD_MANAGER: &str = "lockstep-proxy";

/// A proxy replica's identity: the namespace and name of its RouterReplica (and of its Lease,
/// `lockstep-proxy-<name>`). Two `proxy-0`s in different namespaces are two replicas.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId {
    /// The proxy's --namespace.
    pub namespace: String,
    /// The proxy's --replica-name.
    pub name: String,
}

impl ReplicaId {
    /// Builds an id.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Condition types the operator writes.
pub mod condition {
    /// The spec is valid and owns all its host+path pairs.
    pub const ACCEPTED: &str = "Accepted";
    /// Every live replica serves the current generation.
    pub const READY: &str = "Ready";
    /// A rollout is in progress.
    pub const RECONCILING: &str = "Reconciling";
    /// A rollout has lagged beyond the stall timeout.
    pub const STALLED: &str = "Stalled";
}

/// Condition reasons the operator writes.
pub mod reason {
    /// Accepted=True.
    pub const VALID: &str = "Valid";
    /// Accepted=False: the spec failed semantic validation.
    pub const INVALID: &str = "Invalid";
    /// Accepted=False: an older RouterConfig of the fleet claims the same host and path.
    pub const CONFLICT: &str = "Conflict";
    /// Accepted=False: a referenced TLS Secret is missing or unusable.
    pub const INVALID_TLS: &str = "InvalidTLS";
    /// Ready=True.
    pub const ALL_REPLICAS_SYNCED: &str = "AllReplicasSynced";
    /// Ready=False: some live replicas do not serve the current generation yet.
    pub const ROLLOUT_IN_PROGRESS: &str = "RolloutInProgress";
    /// Ready=False: a replica rejected the current generation.
    pub const REJECTED: &str = "Rejected";
    /// Ready=False: the fleet has no live replica.
    pub const NO_REPLICAS: &str = "NoReplicas";
    /// Ready=False / Reconciling=True: a referenced TLS Secret does not exist yet.
    pub const WAITING_FOR_SECRET: &str = "WaitingForSecret";
    /// Ready=False: the spec is not accepted.
    pub const NOT_ACCEPTED: &str = "NotAccepted";
    /// Reconciling=False / Stalled=False: nothing in progress.
    pub const IDLE: &str = "Idle";
    /// Stalled=True: the rollout lagged beyond the stall timeout.
    pub const ROLLOUT_STALLED: &str = "RolloutStalled";
}

/// Reasons of the `Ready` condition a proxy replica writes on its own RouterReplica.
pub mod replica_reason {
    /// Ready=True: a member of the fleet serving the current generation of everything it
    /// serves.
    pub const SERVING: &str = "Serving";
    /// Ready=False: a member applying a newer generation.
    pub const SYNCING: &str = "Syncing";
    /// Ready=False: not a member yet, or holding its Lease while the quorum check runs.
    pub const JOINING: &str = "Joining";
    /// Ready=False: the Lease write keeps failing.
    pub const LEASE_UNAVAILABLE: &str = "LeaseUnavailable";
    /// Ready=False: the sync loop panicked; it restarts.
    pub const SYNC_FAILED: &str = "SyncFailed";
    /// Ready=False: a sync pass ran longer than its bound (the Lease duration).
    pub const SYNC_STALLED: &str = "SyncStalled";
}
