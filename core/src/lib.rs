//! Pure RouterConfig logic shared by the operator and the proxy, with no Kubernetes client:
//! validation, the fleet policy (who owns a match, what is served while a generation is
//! rejected), the plan of what a replica serves, route table compilation, the barrier
//! decision, Lease freshness, configuration digests and condition helpers; and the HTTP/1.1
//! codec of the proxy's own HTTP/1 server (`http1`).

pub mod barrier;
pub mod conditions;
pub mod cors;
pub mod digest;
pub mod file;
pub mod fleet;
pub mod garbage;
pub mod gateway;
pub mod http1;
pub mod lease;
pub mod path;
pub mod plan;
pub mod rejudge;
pub mod supervision;
pub mod table;
#[cfg(any(test, feature = "test-util"))]
pub mod test_certs;
pub mod tls_material;
pub mod traffic;
pub mod validate;

#[cfg(test)]
mod testutil;

/// A hash map looked up on every request (routes by host and path segment, idle upstream
/// connections by key). Its keys come from configuration, so a request can only look one up,
/// not add colliding ones. Seeded per process, foldhash takes about 80 of a proxied request's
/// instructions where std's SipHash took about 950 (callgrind).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use digest::{config_digest, tls_material_hash, tls_secret_names};
pub use fleet::{Candidate, Resolution, ServedSpec, Verdict, last_accepted, resolve_fleet};
pub use path::normalize_path;
pub use plan::{ServedConfig, ServedObject};
pub use table::{BackendRef, Route, RouteTable, normalize_host};
pub use validate::{Invalid, validate_origin, validate_spec};

/// A namespaced object's identity, ordered namespace first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a RouterConfig ("default" when it has no namespace, as in files).
    pub fn of(rc: &lockstep_crds::RouterConfig) -> Self {
        Self {
            namespace: rc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            name: rc.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
