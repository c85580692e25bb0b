//! The endpoints of the Services a table may route to, refreshed by each sync pass before the
//! table is swapped in, so a route to a Service has its endpoints when it goes live.
//!
//! Which Services: those the fleet's RouterConfigs name, and those the table served now still
//! routes to (an older generation served while a newer one is rejected). Their endpoints come
//! from the EndpointSlice and Service watches ([`super::slices`]), names among them through
//! the [`Resolver`]'s cache, which keeps DNS off the swap path.

use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::runtime::reflector::{ObjectRef, Store};
use lockstep_core::{BackendRef, ObjectKey};
use lockstep_crds::RouterConfig;

use super::{Shared, resolver::Resolver, slices};
use crate::{endpoints::ServiceKey, state::ProxyState};

/// Where a pass reads endpoints from.
pub(super) struct EndpointSources {
    slices: Vec<Store<EndpointSlice>>,
    services: Vec<Store<Service>>,
    resolver: Resolver,
}

impl EndpointSources {
    pub(super) fn new(
        slices: Vec<Store<EndpointSlice>>,
        services: Vec<Store<Service>>,
        resolver: Resolver,
    ) -> Self {
        Self {
            slices,
            services,
            resolver,
        }
    }

    /// Waits until every EndpointSlice and Service watch has listed once.
    pub(super) async fn wait_until_listed(&self) {
        for store in &self.slices {
            let _ = store.wait_until_ready().await;
        }
        for store in &self.services {
            let _ = store.wait_until_ready().await;
        }
    }

    /// Updates the endpoints (and whether they speak h2c) of every Service port a table may
    /// route to.
    pub(super) async fn refresh(&self, shared: &Shared, objects: &[Arc<RouterConfig>]) {
        let all_slices: Vec<Arc<EndpointSlice>> = self.slices.iter().flat_map(|s| s.state()).collect();
        let index = slices::SliceIndex::new(all_slices.iter().map(|s| s.as_ref()));
        let mut listed = Vec::new();
        for key in wanted(&shared.state, objects) {
            let service = self
                .services
                .iter()
                .find_map(|store| store.get(&ObjectRef::new(&key.name).within(&key.namespace)));
            let own = index.of(&key.namespace, &key.name);
            let addrs = slices::ready_endpoint_addrs(
                &key.namespace,
                &key.name,
                key.port,
                service.as_deref(),
                own.iter().copied(),
            );
            let h2c = slices::app_protocol(
                &key.namespace,
                &key.name,
                key.port,
                service.as_deref(),
                own.iter().copied(),
            )
            .is_some_and(|p| p == slices::H2C_APP_PROTOCOL);
            shared.state.endpoints.set_h2c(&key, h2c);
            listed.push((key, addrs));
        }
        // All names of all Services at once, concurrently, from the cache where it can.
        self.resolver
            .prepare(listed.iter().flat_map(|(_, addrs)| addrs))
            .await;
        for (key, addrs) in listed {
            let ready = self.resolver.addrs(&addrs);
            if shared.state.endpoints.get(&key).as_deref() != Some(&ready) {
                tracing::debug!(service = ?key, endpoints = ready.len(), "endpoints updated");
                shared.state.endpoints.set(key, ready);
            }
        }
    }
}

/// The Service ports the fleet's RouterConfigs name, and those the served table routes to.
fn wanted(state: &ProxyState, objects: &[Arc<RouterConfig>]) -> BTreeSet<ServiceKey> {
    let mut wanted = BTreeSet::new();
    for rc in objects {
        let key = ObjectKey::of(rc);
        for rule in &rc.spec.rules {
            // Backends and mirrors alike.
            for (_, svc) in rule
                .paths
                .iter()
                .flat_map(lockstep_core::validate::service_backends)
            {
                if let Ok(port) = u16::try_from(svc.port) {
                    wanted.insert(ServiceKey {
                        namespace: svc.namespace.as_deref().unwrap_or(&key.namespace).into(),
                        name: svc.name.as_str().into(),
                        port,
                    });
                }
            }
        }
    }
    // Services still routed by a served (possibly older) generation stay resolved too.
    let served = state.served();
    let routes = served.table.routes().iter();
    let backends = routes.flat_map(|r| {
        r.backends
            .iter()
            .map(|(b, _)| b)
            .chain(r.filters.mirrors.iter().map(|m| &m.backend))
    });
    for backend in backends {
        if let BackendRef::Service {
            namespace,
            name,
            port,
            ..
        } = backend
        {
            wanted.insert(ServiceKey {
                namespace: namespace.clone(),
                name: name.clone(),
                port: *port,
            });
        }
    }
    wanted
}
