//! The Gateway API edge of the operator: watches GatewayClasses, Gateways, HTTPRoutes,
//! GRPCRoutes, ReferenceGrants, Services, TLS Secrets and Namespaces, hands each Gateway of a
//! lockstep class to [`lockstep_config::gateway::translate`], and writes the statuses it
//! returns. Every decision is the translation's; this module gathers, calls and writes.
//!
//! What it writes, only while leader (checked right before every write):
//! - a GatewayClass of `spec.controllerName: lockstep.dev/gateway-controller`: `Accepted`
//!   and `supportedFeatures` (empty: nothing is served yet, so no feature is claimed);
//! - each Gateway of such a class: `conditions` (Accepted; Programmed False until the fleet
//!   is wired) and `listeners`, by server-side apply with field manager `lockstep-operator`
//!   (both lists are keyed maps, so other managers' entries stay);
//! - each route naming such a Gateway: its `status.parents` entries for that Gateway.
//!   `status.parents` is an atomic list in the v1.6.3 CRDs, so an apply would take the whole
//!   list; instead the list is read, lockstep's entries for this Gateway are replaced, every
//!   other entry is kept, and it is written back with the read `resourceVersion` as a
//!   precondition (a conflict is retried from a fresh read).
//!
//! Unchanged conditions keep their `lastTransitionTime`, and a status equal to the one stored
//! is not written, so a write does not trigger another one.
//!
//! Nothing runs when the Gateway API CRDs are not installed: [`run`] logs it once and returns.

use std::{sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use lockstep_config::gateway::{GatewayInputs, attachment::refers_to_gateway, translate};
use lockstep_crds::gateway::{
    CONTROLLER_NAME, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ListenerStatus, ReferenceGrant,
    RouteParentStatus,
};
use serde_json::json;
use tokio::sync::watch;

use crate::{Error, Result, leader::Leadership, metrics::Metrics};

/// The field manager of every status write.
const FIELD_MANAGER: &str = "lockstep-operator";
/// Longest wait for the caches to list everything before a reconcile gives up (and retries).
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Retry delay after a failed reconcile (a write conflict, an API error).
const RETRY: Duration = Duration::from_millis(200);

/// What every reconcile shares.
struct Context {
    client: Client,
    classes: Store<GatewayClass>,
    http_routes: Store<HTTPRoute>,
    grpc_routes: Store<GRPCRoute>,
    grants: Store<ReferenceGrant>,
    services: Store<Service>,
    secrets: Store<Secret>,
    namespaces: Store<Namespace>,
    leader: Arc<Leadership>,
    metrics: Arc<Metrics>,
}

impl Context {
    /// Waits until every cache has listed once: a translation from a partial view would write
    /// BackendNotFound for a Service not listed yet.
    async fn synced(&self) -> Result<()> {
        let all = async {
            // Not the Gateway store: the controller's applier already waits on it.
            self.classes.wait_until_ready().await?;
            self.http_routes.wait_until_ready().await?;
            self.grpc_routes.wait_until_ready().await?;
            self.grants.wait_until_ready().await?;
            self.services.wait_until_ready().await?;
            self.secrets.wait_until_ready().await?;
            self.namespaces.wait_until_ready().await
        };
        match tokio::time::timeout(CACHE_SYNC_TIMEOUT, all).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Error::CacheNotSynced(CACHE_SYNC_TIMEOUT)),
        }
    }
}

/// True when the Gateway API is served (its GatewayClass kind can be listed). Any other answer
/// (404: CRDs not installed; 403: RBAC without the Gateway API rules) means no.
pub async fn installed(client: &Client) -> std::result::Result<(), kube::Error> {
    Api::<GatewayClass>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map(|_| ())
}

/// Runs the Gateway API controllers until `shutdown` resolves; returns at once (after one log
/// line) when the Gateway API CRDs are not installed, so a cluster without them keeps working.
pub async fn run(
    client: Client,
    leader: Arc<Leadership>,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    if let Err(error) = installed(&client).await {
        tracing::info!(%error, "Gateway API not available; the Gateway controller is off");
        return;
    }
    tracing::info!("Gateway API found; the Gateway controller is on");

    fn stream<K>(
        api: Api<K>,
        config: watcher::Config,
        what: &'static str,
    ) -> (
        Store<K>,
        impl Stream<Item = std::result::Result<K, watcher::Error>> + Send,
    )
    where
        K: Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let (store, writer) = reflector::store::<K>();
        let s = watcher(api, config)
            .backoff(lockstep_apiclient::watch_backoff())
            .reflect(writer)
            .touched_objects()
            .filter_map(move |event| {
                if let Err(error) = &event {
                    tracing::warn!(what, %error, "watch error; retrying");
                }
                std::future::ready(event.ok().map(Ok))
            });
        (store, s)
    }
    let all = watcher::Config::default;
    let (classes, class_stream) = stream(Api::<GatewayClass>::all(client.clone()), all(), "gatewayclasses");
    let (gateways, gateway_stream) = stream(Api::<Gateway>::all(client.clone()), all(), "gateways");
    let (http_routes, http_stream) = stream(Api::<HTTPRoute>::all(client.clone()), all(), "httproutes");
    let (grpc_routes, grpc_stream) = stream(Api::<GRPCRoute>::all(client.clone()), all(), "grpcroutes");
    let (grants, grant_stream) = stream(
        Api::<ReferenceGrant>::all(client.clone()),
        all(),
        "referencegrants",
    );
    let (services, service_stream) = stream(Api::<Service>::all(client.clone()), all(), "services");
    // Listener certificates must be kubernetes.io/tls Secrets; no other Secret is read.
    let (secrets, secret_stream) = stream(
        Api::<Secret>::all(client.clone()),
        all().fields("type=kubernetes.io/tls"),
        "secrets",
    );
    let (namespaces, namespace_stream) = stream(Api::<Namespace>::all(client.clone()), all(), "namespaces");
    // The class controller has a watch of its own: a controller's trigger stream is its own.
    let (class_store2, class_stream2) =
        stream(Api::<GatewayClass>::all(client.clone()), all(), "gatewayclasses");

    let ctx = Arc::new(Context {
        client,
        classes: classes.clone(),
        http_routes,
        grpc_routes,
        grants,
        services,
        secrets,
        namespaces,
        leader: leader.clone(),
        metrics,
    });

    // Any change around a Gateway can change its translation: every secondary event
    // reconciles every Gateway of a lockstep class (the translation decides what matters).
    let every = |gateways: Store<Gateway>, classes: Store<GatewayClass>| {
        move || lockstep_gateways(&gateways, &classes)
    };
    let (tx, rx) = watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = tx.send(true);
    };
    tokio::spawn(shutdown);
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let on_class = every(gateways.clone(), classes.clone());
    let on_http = every(gateways.clone(), classes.clone());
    let on_grpc = every(gateways.clone(), classes.clone());
    let on_grant = every(gateways.clone(), classes.clone());
    let on_service = every(gateways.clone(), classes.clone());
    let on_secret = every(gateways.clone(), classes.clone());
    let on_namespace = every(gateways.clone(), classes.clone());
    let gateway_controller = Controller::for_stream(gateway_stream, gateways.clone())
        .watches_stream(class_stream, move |_| on_class())
        .watches_stream(http_stream, move |_| on_http())
        .watches_stream(grpc_stream, move |_| on_grpc())
        .watches_stream(grant_stream, move |_| on_grant())
        .watches_stream(service_stream, move |_| on_service())
        .watches_stream(secret_stream, move |_| on_secret())
        .watches_stream(namespace_stream, move |_| on_namespace())
        .reconcile_all_on(became_leader(leader.changes()))
        .graceful_shutdown_on(stop(rx.clone()))
        .run(reconcile_gateway, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "gateway reconcile failed");
            }
        });
    let class_controller = Controller::for_stream(class_stream2, class_store2)
        .reconcile_all_on(became_leader(leader.changes()))
        .graceful_shutdown_on(stop(rx))
        .run(reconcile_class, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "gatewayclass reconcile failed");
            }
        });
    futures::future::join(gateway_controller, class_controller).await;
}

/// Every Gateway whose class names lockstep's controller.
fn lockstep_gateways(gateways: &Store<Gateway>, classes: &Store<GatewayClass>) -> Vec<ObjectRef<Gateway>> {
    let ours: Vec<String> = classes
        .state()
        .iter()
        .filter(|c| c.spec.controller_name == CONTROLLER_NAME)
        .map(|c| c.name_any())
        .collect();
    gateways
        .state()
        .iter()
        .filter(|g| ours.contains(&g.spec.gateway_class_name))
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// Yields whenever this instance becomes the leader, so it writes everything afresh.
fn became_leader(leader: watch::Receiver<bool>) -> impl Stream<Item = ()> + Send {
    futures::stream::unfold(leader, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                return Some(((), rx));
            }
        }
    })
}

fn error_policy<K>(_: Arc<K>, error: &Error, _: Arc<Context>) -> Action {
    tracing::debug!(%error, "retrying");
    Action::requeue(RETRY)
}

/// Copies `lastTransitionTime` from `old` into each condition of `new` whose type and status
/// did not change (`meta.SetStatusCondition` semantics).
fn keep_transition_times(new: &mut [Condition], old: &[Condition]) {
    for c in new {
        if let Some(o) = old.iter().find(|o| o.type_ == c.type_ && o.status == c.status) {
            c.last_transition_time = o.last_transition_time.clone();
        }
    }
}

/// Conditions equal as a set (the apiserver may reorder a list-map).
fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len() && a.iter().all(|c| b.contains(c))
}

async fn reconcile_class(class: Arc<GatewayClass>, ctx: Arc<Context>) -> Result<Action> {
    let now = Timestamp::now();
    let Some(mut conditions) = lockstep_config::gateway::class_conditions(&class, now) else {
        return Ok(Action::await_change());
    };
    if !ctx.leader.is_leader() {
        return Ok(Action::await_change());
    }
    let old = class.status.as_ref();
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    keep_transition_times(&mut conditions, old_conditions);
    let features_empty = old.is_some_and(|s| s.supported_features.is_empty());
    if same_conditions(&conditions, old_conditions) && features_empty {
        return Ok(Action::await_change());
    }
    // No feature is claimed: nothing is served until the fleet is wired, and a feature is
    // claimed only once the conformance suite passes it.
    let patch = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "status": {"conditions": conditions, "supportedFeatures": []},
    });
    if !ctx.leader.is_leader() {
        return Ok(Action::await_change());
    }
    Api::<GatewayClass>::all(ctx.client.clone())
        .patch_status(
            &class.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.metrics.gateway_status_writes.inc();
    Ok(Action::await_change())
}

fn cloned<K: Clone + kube::Resource<DynamicType = ()> + 'static>(store: &Store<K>) -> Vec<K> {
    store.state().iter().map(|o| o.as_ref().clone()).collect()
}

async fn reconcile_gateway(gw: Arc<Gateway>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.leader.is_leader() {
        // Becoming leader triggers a reconcile of everything.
        return Ok(Action::await_change());
    }
    ctx.synced().await?;
    let class_ref = ObjectRef::<GatewayClass>::new(&gw.spec.gateway_class_name);
    let Some(class) = ctx.classes.get(&class_ref) else {
        return Ok(Action::await_change());
    };
    let (http_routes, grpc_routes) = (cloned(&ctx.http_routes), cloned(&ctx.grpc_routes));
    let (services, secrets) = (cloned(&ctx.services), cloned(&ctx.secrets));
    let (grants, namespaces) = (cloned(&ctx.grants), cloned(&ctx.namespaces));
    let inputs = GatewayInputs {
        class: &class,
        gateway: &gw,
        http_routes: &http_routes,
        grpc_routes: &grpc_routes,
        services: &services,
        secrets: &secrets,
        grants: &grants,
        namespaces: &namespaces,
    };
    let Some(mut translation) = translate(inputs, Timestamp::now()) else {
        return Ok(Action::await_change());
    };
    let gw_ns = gw.namespace().unwrap_or_default();
    let gw_name = gw.name_any();

    // Gateway status: conditions and listeners, server-side applied.
    let old = gw.status.clone().unwrap_or_default();
    keep_transition_times(&mut translation.gateway_conditions, &old.conditions);
    for l in &mut translation.listeners {
        if let Some(o) = old.listeners.iter().find(|o| o.name == l.name) {
            keep_transition_times(&mut l.conditions, &o.conditions);
        }
    }
    let listeners_same = translation.listeners.len() == old.listeners.len()
        && translation.listeners.iter().all(|l| {
            old.listeners.iter().any(|o| {
                o.name == l.name
                    && o.attached_routes == l.attached_routes
                    && o.supported_kinds == l.supported_kinds
                    && same_conditions(&o.conditions, &l.conditions)
            })
        });
    if !(listeners_same && same_conditions(&translation.gateway_conditions, &old.conditions)) {
        write_gateway_status(
            &ctx,
            &gw_ns,
            &gw_name,
            &translation.gateway_conditions,
            &translation.listeners,
        )
        .await?;
    }

    // Route parents: lockstep's entries for this Gateway, replaced in every route that has or
    // should have one.
    // The parent entries the translation gives route `uid` of `kind` (none: it lost them).
    let ours_for = |kind: &str, uid: Option<String>| {
        let uid = uid.unwrap_or_default();
        translation
            .routes
            .iter()
            .find(|v| v.route.kind == kind && v.route.uid == uid)
            .map(|v| v.parents.clone())
            .unwrap_or_default()
    };
    for route in http_routes.iter() {
        let ours = ours_for("HTTPRoute", route.uid());
        let api = Api::<HTTPRoute>::namespaced(ctx.client.clone(), &route.namespace().unwrap_or_default());
        let old = route
            .status
            .as_ref()
            .map(|s| s.parents.as_slice())
            .unwrap_or_default();
        write_route_parents(&ctx, &api, route, old, ours, &gw_ns, &gw_name).await?;
    }
    for route in grpc_routes.iter() {
        let ours = ours_for("GRPCRoute", route.uid());
        let api = Api::<GRPCRoute>::namespaced(ctx.client.clone(), &route.namespace().unwrap_or_default());
        let old = route
            .status
            .as_ref()
            .map(|s| s.parents.as_slice())
            .unwrap_or_default();
        write_route_parents(&ctx, &api, route, old, ours, &gw_ns, &gw_name).await?;
    }
    Ok(Action::await_change())
}

async fn write_gateway_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    conditions: &[Condition],
    listeners: &[ListenerStatus],
) -> Result<()> {
    let patch = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "status": {"conditions": conditions, "listeners": listeners},
    });
    if !ctx.leader.is_leader() {
        return Ok(());
    }
    Api::<Gateway>::namespaced(ctx.client.clone(), namespace)
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.metrics.gateway_status_writes.inc();
    Ok(())
}

/// Replaces lockstep's parent entries for Gateway `gw_ns/gw_name` in `route`'s
/// `status.parents` by `ours`, keeping every other entry, and writes the list back with the
/// read `resourceVersion` as a precondition (`status.parents` is an atomic list).
async fn write_route_parents<K>(
    ctx: &Context,
    api: &Api<K>,
    route: &K,
    old: &[RouteParentStatus],
    mut ours: Vec<RouteParentStatus>,
    gw_ns: &str,
    gw_name: &str,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let route_ns = route.meta().namespace.clone().unwrap_or_default();
    let is_ours = |p: &RouteParentStatus| {
        p.controller_name == CONTROLLER_NAME && refers_to_gateway(&p.parent_ref, &route_ns, gw_ns, gw_name)
    };
    for entry in &mut ours {
        if let Some(o) = old
            .iter()
            .find(|o| is_ours(o) && o.parent_ref == entry.parent_ref)
        {
            keep_transition_times(&mut entry.conditions, &o.conditions);
        }
    }
    let old_ours: Vec<&RouteParentStatus> = old.iter().filter(|p| is_ours(p)).collect();
    let unchanged = old_ours.len() == ours.len()
        && ours.iter().all(|n| {
            old_ours
                .iter()
                .any(|o| o.parent_ref == n.parent_ref && same_conditions(&o.conditions, &n.conditions))
        });
    if unchanged {
        return Ok(());
    }
    let mut parents: Vec<RouteParentStatus> = old.iter().filter(|p| !is_ours(p)).cloned().collect();
    parents.extend(ours);
    let patch = json!({
        "metadata": {"resourceVersion": route.meta().resource_version},
        "status": {"parents": parents},
    });
    if !ctx.leader.is_leader() {
        return Ok(());
    }
    // A 409 (the route changed since it was read) fails the reconcile; the retry reads the
    // cache again, which the route's own event also refreshes.
    api.patch_status(
        &route.meta().name.clone().unwrap_or_default(),
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.metrics.gateway_status_writes.inc();
    Ok(())
}
