//! Ready endpoints of Service backends, kept current by the EndpointSlice watch.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
};

use arc_swap::ArcSwap;

/// A Service port: namespace, Service name, Service port number. The names are shared
/// strings, as the route table's are: a request routed to a Service builds its key to look
/// up the endpoints, and with owned strings that was two allocations per request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Service name.
    pub name: Arc<str>,
    /// Service port number (as in RouterConfig `backend.service.port`).
    pub port: u16,
}

/// Ready endpoints per Service port.
#[derive(Debug, Default)]
pub struct Endpoints {
    map: ArcSwap<HashMap<ServiceKey, Arc<Vec<SocketAddr>>>>,
    /// Service ports whose appProtocol is `kubernetes.io/h2c`.
    h2c: ArcSwap<HashSet<ServiceKey>>,
}

impl Endpoints {
    /// Replaces the ready endpoints of one Service port (empty: the route answers 503).
    pub fn set(&self, key: ServiceKey, ready: Vec<SocketAddr>) {
        self.map.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(key.clone(), Arc::new(ready.clone()));
            m
        });
    }

    /// Forgets a Service port.
    pub fn remove(&self, key: &ServiceKey) {
        self.map.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(key);
            m
        });
    }

    /// Marks a Service port as spoken to in HTTP/2 over cleartext (appProtocol
    /// `kubernetes.io/h2c`), or not.
    pub fn set_h2c(&self, key: &ServiceKey, h2c: bool) {
        if self.is_h2c(key) == h2c {
            return;
        }
        self.h2c.rcu(|set| {
            let mut set = HashSet::clone(set);
            if h2c {
                set.insert(key.clone());
            } else {
                set.remove(key);
            }
            set
        });
    }

    /// Whether a Service port is spoken to in HTTP/2 over cleartext.
    pub fn is_h2c(&self, key: &ServiceKey) -> bool {
        self.h2c.load().contains(key)
    }

    /// The ready endpoints of a Service port (None: never seen).
    pub fn get(&self, key: &ServiceKey) -> Option<Arc<Vec<SocketAddr>>> {
        self.map.load().get(key).cloned()
    }
}
