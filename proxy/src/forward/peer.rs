//! Phase 3, upstream peer selection: which address a route's backend sends this request to.
//! Service backends balance over the ready endpoints the fleet sync keeps in
//! [`crate::endpoints::Endpoints`]; URL backends have one address.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicUsize, Ordering},
    },
};

use arc_swap::ArcSwap;
use lockstep_core::BackendRef;

use super::error::ProxyError;
use crate::{endpoints::ServiceKey, options::LoadBalancing, state::ProxyState};

/// Past this many remembered endpoints, idle ones are forgotten, so endpoint churn over
/// weeks does not grow the map without bound.
const MAX_TRACKED_ENDPOINTS: usize = 4096;

/// Where one attempt goes.
#[derive(Debug)]
pub(crate) struct Peer {
    /// host:port for the upstream URI.
    pub authority: PeerAuthority,
    /// Counts the attempt as in flight on its endpoint while alive.
    pub guard: Option<EndpointGuard>,
    /// Spoken to in HTTP/2 with prior knowledge (an `h2c://` URL, a Service backend with
    /// `appProtocol: kubernetes.io/h2c`, or a Service port with that appProtocol); over
    /// TLS that is h2 by ALPN.
    pub h2c: bool,
    /// Reached over TLS verified as this says (a Service backend's `tls`).
    pub tls: Option<Arc<lockstep_crds::BackendTls>>,
    /// The certificate presented over that TLS (`tls.clientCertificateSecretName`).
    pub client_certificate: Option<crate::certs::ClientCert>,
}

/// The address of a peer (and the key of its pooled connections).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum PeerAuthority {
    /// A Service endpoint.
    Endpoint(SocketAddr),
    /// A URL backend's host:port.
    Static(Arc<str>),
}

impl std::fmt::Display for PeerAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAuthority::Endpoint(addr) => addr.fmt(f),
            PeerAuthority::Static(authority) => f.write_str(authority),
        }
    }
}

/// Decrements an endpoint's in-flight count when dropped.
#[derive(Debug)]
pub(crate) struct EndpointGuard(Arc<AtomicU32>);

impl Drop for EndpointGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Load balancer state shared by every listener of the process.
#[derive(Debug)]
pub(crate) struct Balancer {
    mode: LoadBalancing,
    in_flight: ArcSwap<HashMap<SocketAddr, Arc<AtomicU32>>>,
    next: ArcSwap<HashMap<ServiceKey, Arc<AtomicUsize>>>,
}

impl Balancer {
    pub(crate) fn new(mode: LoadBalancing) -> Self {
        Self {
            mode,
            in_flight: ArcSwap::default(),
            next: ArcSwap::default(),
        }
    }

    /// Chooses the peer of one attempt, never `exclude` (the endpoint that just failed).
    pub(crate) fn select(
        &self,
        state: &ProxyState,
        backend: &BackendRef,
        exclude: Option<&PeerAuthority>,
    ) -> Result<Peer, ProxyError> {
        match backend {
            // No peer: the route answers this share of requests itself.
            BackendRef::Status(status) => Err(ProxyError::Status(*status)),
            BackendRef::Url { scheme, authority } => {
                let h2c = match &**scheme {
                    "http" => false,
                    "h2c" => true,
                    _ => return Err(ProxyError::UnsupportedScheme(scheme.to_string())),
                };
                Ok(Peer {
                    authority: PeerAuthority::Static(authority.clone()),
                    guard: None,
                    h2c,
                    tls: None,
                    client_certificate: None,
                })
            }
            BackendRef::Service {
                namespace,
                name,
                port,
                h2c,
                tls,
                client_certificate,
            } => {
                // A certificate the backend may require and the replica has no good material
                // for: the attempt fails rather than reaching the backend without it.
                let client_certificate = match client_certificate {
                    None => None,
                    Some(secret) => {
                        Some(
                            state
                                .certs
                                .client(secret)
                                .ok_or_else(|| ProxyError::UpstreamTls {
                                    peer: backend.to_string(),
                                    message: format!(
                                        "the client certificate Secret {secret} has no usable material"
                                    ),
                                })?,
                        )
                    }
                };
                let key = ServiceKey {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    port: *port,
                };
                let endpoints = state.endpoints.get(&key).unwrap_or_default();
                let excluded = match exclude {
                    Some(PeerAuthority::Endpoint(addr)) => Some(*addr),
                    _ => None,
                };
                let candidates: Vec<SocketAddr>;
                let pool: &[SocketAddr] = match excluded {
                    Some(addr) => {
                        candidates = endpoints.iter().copied().filter(|e| *e != addr).collect();
                        &candidates
                    }
                    None => &endpoints,
                };
                let addr = match pool.len() {
                    0 => return Err(ProxyError::NoEndpoints(backend.to_string())),
                    1 => pool[0],
                    n => match self.mode {
                        LoadBalancing::P2c => self.p2c(pool, n),
                        LoadBalancing::RoundRobin => {
                            pool[self.counter(&key).fetch_add(1, Ordering::Relaxed) % n]
                        }
                    },
                };
                let count = self.in_flight_of(addr);
                count.fetch_add(1, Ordering::Relaxed);
                Ok(Peer {
                    authority: PeerAuthority::Endpoint(addr),
                    guard: Some(EndpointGuard(count)),
                    // The RouterConfig's appProtocol, else the Service port's.
                    h2c: *h2c || state.endpoints.is_h2c(&key),
                    tls: tls.clone(),
                    client_certificate,
                })
            }
        }
    }

    fn p2c(&self, pool: &[SocketAddr], n: usize) -> SocketAddr {
        let a = rand::random_range(0..n);
        // A second, distinct index: draw from n-1 and skip over `a`.
        let mut b = rand::random_range(0..n - 1);
        if b >= a {
            b += 1;
        }
        let load = |addr: &SocketAddr| {
            self.in_flight
                .load()
                .get(addr)
                .map_or(0, |c| c.load(Ordering::Relaxed))
        };
        if load(&pool[b]) < load(&pool[a]) {
            pool[b]
        } else {
            pool[a]
        }
    }

    fn in_flight_of(&self, addr: SocketAddr) -> Arc<AtomicU32> {
        if let Some(count) = self.in_flight.load().get(&addr) {
            return count.clone();
        }
        let mut found = None;
        self.in_flight.rcu(|map| {
            let mut map = HashMap::clone(map);
            if map.len() >= MAX_TRACKED_ENDPOINTS {
                map.retain(|_, c| c.load(Ordering::Relaxed) > 0);
            }
            found = Some(map.entry(addr).or_default().clone());
            map
        });
        found.unwrap_or_default()
    }

    fn counter(&self, key: &ServiceKey) -> Arc<AtomicUsize> {
        if let Some(counter) = self.next.load().get(key) {
            return counter.clone();
        }
        let mut found = None;
        self.next.rcu(|map| {
            let mut map = HashMap::clone(map);
            if map.len() >= MAX_TRACKED_ENDPOINTS {
                map.clear();
            }
            found = Some(map.entry(key.clone()).or_default().clone());
            map
        });
        found.unwrap_or_default()
    }

    /// Requests in flight to an endpoint (for tests and metrics).
    #[cfg(test)]
    pub(crate) fn in_flight(&self, addr: SocketAddr) -> u32 {
        self.in_flight
            .load()
            .get(&addr)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn service() -> (BackendRef, ServiceKey) {
        (
            BackendRef::Service {
                namespace: "ns".into(),
                name: "svc".into(),
                port: 80,
                h2c: false,
                tls: None,
                client_certificate: None,
            },
            ServiceKey {
                namespace: "ns".into(),
                name: "svc".into(),
                port: 80,
            },
        )
    }

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 10000 + i)))
            .collect()
    }

    #[test]
    fn round_robin_visits_every_endpoint_in_turn() {
        let state = ProxyState::new("t");
        let (backend, key) = service();
        state.endpoints.set(key, addrs(3));
        let lb = Balancer::new(LoadBalancing::RoundRobin);
        let mut seen = BTreeMap::new();
        for _ in 0..30 {
            let peer = lb.select(&state, &backend, None).expect("peer");
            *seen.entry(peer.authority.to_string()).or_insert(0) += 1;
        }
        assert_eq!(seen.values().copied().collect::<Vec<_>>(), vec![10, 10, 10]);
    }

    #[test]
    fn p2c_avoids_the_busy_endpoint() {
        let state = ProxyState::new("t");
        let (backend, key) = service();
        let endpoints = addrs(2);
        state.endpoints.set(key, endpoints.clone());
        let lb = Balancer::new(LoadBalancing::P2c);
        // Hold many requests on whichever endpoint comes first; the rest must go elsewhere.
        let first = lb.select(&state, &backend, None).expect("peer");
        let busy = first.authority.clone();
        let mut held = vec![first];
        for _ in 0..50 {
            let peer = lb.select(&state, &backend, None).expect("peer");
            if peer.authority == busy {
                held.push(peer);
            } else {
                // With two endpoints both are always compared, so once busy has more in
                // flight every pick is the other one.
                drop(peer);
            }
        }
        assert_eq!(
            held.len(),
            1,
            "p2c sent requests to the endpoint with more in flight"
        );
        drop(held);
        assert_eq!(lb.in_flight(endpoints[0]) + lb.in_flight(endpoints[1]), 0);
    }

    #[test]
    fn a_service_is_spoken_to_in_h2c_when_the_router_config_or_the_service_port_says_so() {
        let state = ProxyState::new("t");
        let (plain, key) = service();
        let BackendRef::Service {
            namespace,
            name,
            port,
            ..
        } = plain.clone()
        else {
            unreachable!()
        };
        let forced = BackendRef::Service {
            namespace,
            name,
            port,
            h2c: true,
            tls: None,
            client_certificate: None,
        };
        state.endpoints.set(key.clone(), addrs(1));
        let lb = Balancer::new(LoadBalancing::P2c);
        let h2c = |backend: &BackendRef| lb.select(&state, backend, None).expect("peer").h2c;
        // (RouterConfig appProtocol, Service port appProtocol kubernetes.io/h2c) -> h2c.
        for (backend, port_h2c, want) in [
            (&plain, false, false),
            (&plain, true, true),
            (&forced, false, true),
            (&forced, true, true),
        ] {
            state.endpoints.set_h2c(&key, port_h2c);
            assert_eq!(h2c(backend), want, "{backend:?}, port h2c {port_h2c}");
        }
    }

    #[test]
    fn exclusion_and_empty_sets() {
        let state = ProxyState::new("t");
        let (backend, key) = service();
        let lb = Balancer::new(LoadBalancing::P2c);
        assert!(matches!(
            lb.select(&state, &backend, None),
            Err(ProxyError::NoEndpoints(_))
        ));
        state.endpoints.set(key, addrs(2));
        let failed = PeerAuthority::Endpoint(addrs(2)[0]);
        for _ in 0..20 {
            let peer = lb.select(&state, &backend, Some(&failed)).expect("peer");
            assert_eq!(peer.authority, PeerAuthority::Endpoint(addrs(2)[1]));
        }
    }
}
