//! The Gateway API edge of the operator: watches GatewayClasses, Gateways, HTTPRoutes,
//! GRPCRoutes, ReferenceGrants, Services, TLS Secrets and Namespaces, hands each Gateway of a
//! lockstep class to [`lockstep_core::gateway::translate`], and writes the statuses it
//! returns. Every decision is the translation's; this module gathers, calls and writes.
//!
//! What it writes, only while leader (checked right before every write):
//! - a GatewayClass of `spec.controllerName: lockstep.dev/gateway-controller`: `Accepted`
//!   and `supportedFeatures` (empty: a feature is claimed only once the conformance suite passes it);
//! - each Gateway of such a class: `conditions` (Accepted; Programmed False until the fleet
//!   is wired) and `listeners`, by server-side apply with field manager `lockstep-operator`
//!   (both lists are keyed maps, so other managers' entries stay);
//! - each route naming such a Gateway: its `status.parents` entries for that Gateway, with
//!   `lockstep.dev/Ready`;
//! - for a Gateway naming an existing fleet (annotation `lockstep.dev/fleet`), one generated
//!   RouterConfig per served listener ([`lockstep_core::gateway::serve`]), server-side
//!   applied with its record of the Gateway and route generations, owned by the Gateway, and
//!   deleted when no longer wanted (also when the Gateway is deleted: without a
//!   controller-manager no garbage collector follows the ownerReference). The RouterConfig
//!   controller judges them like any other; their status, watched, is fed back into the
//!   Gateway's and listeners' `Programmed` and the routes' `lockstep.dev/Ready`.
//!   A listener certificate of another namespace (allowed by a ReferenceGrant) is copied into
//!   the Gateway's namespace ([`serve::CertificateCopy`]: a `kubernetes.io/tls` Secret with
//!   its `tls.crt` and `tls.key`, labelled and owned like the RouterConfigs, kept equal to its
//!   source, deleted with them), because a RouterConfig names Secrets of its own namespace and
//!   the replicas read Secrets only of the namespaces they serve.
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
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference};
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
use lockstep_core::gateway::{
    GatewayInputs,
    attachment::refers_to_gateway,
    lower::Gap,
    serve::{self, ListenerPlan, Outcome},
    translate,
};
use lockstep_crds::RouterConfig;
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
    /// Generated RouterConfigs (label `lockstep.dev/generated-from=Gateway`).
    router_configs: Store<RouterConfig>,
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
            self.router_configs.wait_until_ready().await?;
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
    let generated = format!("{}={}", serve::GENERATED_LABEL, serve::GENERATED_BY_GATEWAY);
    let (router_configs, rc_stream) = stream(
        Api::<RouterConfig>::all(client.clone()),
        all().labels(&generated),
        "generated routerconfigs",
    );
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
        router_configs: router_configs.clone(),
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
        // A generated RouterConfig's status (the barrier) changes its Gateway's status.
        .watches_stream(rc_stream, |rc: RouterConfig| owner_gateway(&rc))
        .reconcile_all_on(became_leader(leader.changes()))
        .graceful_shutdown_on(stop(rx.clone()))
        .run(reconcile_gateway, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "gateway reconcile failed");
            }
        });
    let ctx_for_sweep = ctx.clone();
    let rx_sweep = rx.clone();
    let class_controller = Controller::for_stream(class_stream2, class_store2)
        .reconcile_all_on(became_leader(leader.changes()))
        .graceful_shutdown_on(stop(rx))
        .run(reconcile_class, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "gatewayclass reconcile failed");
            }
        });
    let sweeper = sweep_orphans(ctx_for_sweep, stop(rx_sweep));
    futures::future::join3(gateway_controller, class_controller, sweeper).await;
}

/// The controller ownerReference of a generated RouterConfig or certificate copy: its Gateway.
fn controller_owner(rc: &impl Resource) -> Option<&OwnerReference> {
    rc.owner_references()
        .iter()
        .find(|o| o.kind == "Gateway" && o.controller == Some(true))
}

/// The Gateway that owns a generated RouterConfig (its controller ownerReference).
fn owner_gateway(rc: &RouterConfig) -> Option<ObjectRef<Gateway>> {
    let owner = controller_owner(rc)?;
    Some(ObjectRef::new(&owner.name).within(&rc.namespace().unwrap_or_default()))
}

/// Deletes generated RouterConfigs whose owning Gateway (by uid) is gone: without a
/// controller-manager nothing collects them, and a replica would keep serving them. Runs on
/// every Gateway event (a deletion included) once both caches have listed.
async fn sweep_orphans(ctx: Arc<Context>, stop: impl std::future::Future<Output = ()>) {
    let gateways = Api::<Gateway>::all(ctx.client.clone());
    let events = watcher(gateways, watcher::Config::default()).backoff(lockstep_apiclient::watch_backoff());
    let mut live: std::collections::HashSet<String> = Default::default();
    let mut init: std::collections::HashSet<String> = Default::default();
    let mut listed = false;
    let work = async {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let Ok(event) = event else { continue };
            match event {
                watcher::Event::Init => init.clear(),
                watcher::Event::InitApply(g) => {
                    init.insert(g.uid().unwrap_or_default());
                }
                watcher::Event::InitDone => {
                    live = std::mem::take(&mut init);
                    listed = true;
                }
                watcher::Event::Apply(g) => {
                    live.insert(g.uid().unwrap_or_default());
                    continue;
                }
                watcher::Event::Delete(g) => {
                    live.remove(&g.uid().unwrap_or_default());
                }
            }
            if !listed || !ctx.leader.is_leader() {
                continue;
            }
            if ctx.router_configs.wait_until_ready().await.is_err() {
                continue;
            }
            let orphan = async |owner: &OwnerReference, namespace: &str| {
                // This watch may lag the controller's: ask the apiserver before deleting.
                let api = Api::<Gateway>::namespaced(ctx.client.clone(), namespace);
                match api.get_opt(&owner.name).await {
                    Ok(Some(g)) => g.uid().as_deref() != Some(owner.uid.as_str()),
                    Ok(None) => true,
                    Err(error) => {
                        tracing::debug!(%error, "reading a Gateway before a sweep failed");
                        false
                    }
                }
            };
            for rc in ctx.router_configs.state() {
                let Some(owner) = controller_owner(&*rc).filter(|o| !live.contains(&o.uid)) else {
                    continue;
                };
                if orphan(owner, &rc.namespace().unwrap_or_default()).await {
                    delete_generated(&ctx, rc.as_ref()).await;
                }
            }
            for copy in ctx.secrets.state().iter().filter(|s| is_certificate_copy(s)) {
                let Some(owner) = controller_owner(&**copy).filter(|o| !live.contains(&o.uid)) else {
                    continue;
                };
                if orphan(owner, &copy.namespace().unwrap_or_default()).await {
                    delete_generated(&ctx, copy.as_ref()).await;
                }
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}

/// True for a Secret lockstep made: a certificate copy ([`serve::CertificateCopy`]).
fn is_certificate_copy(secret: &Secret) -> bool {
    secret.labels().get(serve::GENERATED_LABEL).map(String::as_str) == Some(serve::GENERATED_BY_GATEWAY)
}

/// Deletes a generated RouterConfig or certificate copy.
async fn delete_generated<K>(ctx: &Context, object: &K)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    if !ctx.leader.is_leader() {
        return;
    }
    let kind = K::kind(&());
    let api = Api::<K>::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    match api.delete(&object.name_any(), &Default::default()).await {
        Ok(_) => {
            tracing::info!(name = %object.name_any(), %kind, "deleted a generated object no longer wanted")
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(error) => {
            tracing::warn!(%error, name = %object.name_any(), %kind, "deleting a generated object failed")
        }
    }
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
    let Some(mut conditions) = lockstep_core::gateway::class_conditions(&class, now) else {
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
    // No feature is claimed: a feature is claimed only once the conformance suite passes it.
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
    let now = Timestamp::now();
    let Some(mut translation) = translate(inputs, now) else {
        // Not (or no longer) of a lockstep class: nothing of lockstep's is served for it.
        delete_owned(&ctx, &gw, &[]).await;
        delete_owned_copies(&ctx, &gw, &[]).await;
        return Ok(Action::await_change());
    };
    let gw_ns = gw.namespace().unwrap_or_default();
    let gw_name = gw.name_any();

    // Serving: the generated RouterConfigs, then what the barrier says of them.
    let fleet = serve::fleet_of(&gw.metadata);
    let mut plans = match (&fleet, &translation.config) {
        (Some(Ok(fleet)), Some(config)) => serve::plan(config, fleet),
        _ => Vec::new(),
    };
    publish(
        &ctx,
        &gw,
        fleet.as_ref(),
        translation.config.is_some(),
        &mut plans,
    )
    .await?;
    let observed = |name: &str| {
        ctx.router_configs
            .get(&ObjectRef::new(name).within(&gw_ns))
            .map(|rc| rc.as_ref().clone())
    };
    serve::judge(&mut translation, fleet.as_ref(), &plans, &observed, now);

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

/// Applies the generated RouterConfig of every listener to publish (when the cached one
/// differs) and deletes the generated RouterConfigs of this Gateway no longer wanted: those
/// of listeners with nothing to serve or gone, all of them when the Gateway names no usable
/// fleet. A listener with gaps keeps its last RouterConfig (replicas keep serving it). Nothing
/// is deleted while the Gateway is not accepted.
async fn publish(
    ctx: &Context,
    gw: &Gateway,
    fleet: Option<&std::result::Result<String, String>>,
    accepted: bool,
    plans: &mut [ListenerPlan],
) -> Result<()> {
    let gw_ns = gw.namespace().unwrap_or_default();
    let gw_uid = gw.uid().unwrap_or_default();
    let generation = gw
        .metadata
        .generation
        .unwrap_or(lockstep_crds::DEFAULT_GENERATION);
    let api = Api::<RouterConfig>::namespaced(ctx.client.clone(), &gw_ns);
    for plan in plans.iter_mut() {
        if !matches!(plan.outcome, Outcome::Publish(_)) {
            continue;
        }
        // The copies first: the RouterConfig naming one would otherwise wait for it.
        copy_certificates(ctx, gw, plan).await?;
        let Outcome::Publish(spec) = &plan.outcome else {
            continue;
        };
        let annotations = std::collections::BTreeMap::from([
            (serve::LISTENER_ANNOTATION.to_owned(), plan.listener.clone()),
            (
                serve::GATEWAY_GENERATION_ANNOTATION.to_owned(),
                generation.to_string(),
            ),
            (
                serve::ROUTES_ANNOTATION.to_owned(),
                serve::routes_annotation(&plan.routes),
            ),
        ]);
        let cached = ctx.router_configs.get(&ObjectRef::new(&plan.name).within(&gw_ns));
        let current = cached.as_ref().is_some_and(|rc| {
            rc.spec == *spec
                && annotations
                    .iter()
                    .all(|(k, v)| rc.annotations().get(k) == Some(v))
                && controller_owner(&**rc).is_some_and(|o| o.name == gw.name_any() && o.uid == gw_uid)
        });
        if current {
            continue;
        }
        let patch = json!({
            "apiVersion": "lockstep.dev/v1alpha1",
            "kind": "RouterConfig",
            "metadata": {
                "name": plan.name,
                "namespace": gw_ns,
                "labels": {serve::GENERATED_LABEL: serve::GENERATED_BY_GATEWAY},
                "annotations": annotations,
                "ownerReferences": [{
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "Gateway",
                    "name": gw.name_any(),
                    "uid": gw_uid,
                    "controller": true,
                }],
            },
            "spec": spec,
        });
        if !ctx.leader.is_leader() {
            return Ok(());
        }
        match api
            .patch(
                &plan.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(name = %plan.name, listener = %plan.listener, generation, "applied a generated RouterConfig")
            }
            // Refused (admission, validation, RBAC): retrying cannot help until something
            // changes; the listener says why instead of the reconcile failing in a loop.
            Err(kube::Error::Api(e)) if [400, 403, 422].contains(&e.code) => {
                tracing::warn!(name = %plan.name, error = %e.message, "a generated RouterConfig was refused");
                plan.outcome = Outcome::Gaps(vec![Gap::Invalid(format!(
                    "refused by the apiserver: {}",
                    e.message
                ))]);
            }
            Err(error) => return Err(error.into()),
        }
    }
    if !accepted {
        return Ok(());
    }
    let kept = |p: &&ListenerPlan| matches!(fleet, Some(Ok(_))) && !matches!(p.outcome, Outcome::Empty);
    let keep: Vec<&str> = plans.iter().filter(kept).map(|p| p.name.as_str()).collect();
    // A listener with gaps keeps its last RouterConfig, so its copies stay too (its plan
    // lists none: they are found by the RouterConfig's Secret names).
    let mut keep_copies: Vec<String> = plans
        .iter()
        .filter(kept)
        .flat_map(|p| p.copies.iter().map(|c| c.name.clone()))
        .collect();
    for p in plans.iter().filter(kept) {
        if let Some(rc) = ctx.router_configs.get(&ObjectRef::new(&p.name).within(&gw_ns)) {
            keep_copies.extend(lockstep_core::tls_secret_names(&rc.spec));
        }
    }
    delete_owned(ctx, gw, &keep).await;
    delete_owned_copies(ctx, gw, &keep_copies).await;
    Ok(())
}

/// Server-side applies the copy of each certificate of another namespace `plan` names, when
/// the cached copy differs from its source. A Secret of the copy's name that lockstep did not
/// make is never overwritten: the listener then names that as a gap.
async fn copy_certificates(ctx: &Context, gw: &Gateway, plan: &mut ListenerPlan) -> Result<()> {
    let gw_ns = gw.namespace().unwrap_or_default();
    let gw_uid = gw.uid().unwrap_or_default();
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &gw_ns);
    for copy in plan.copies.clone() {
        let source_ref = ObjectRef::new(&copy.source.name).within(&copy.source.namespace);
        let Some(source) = ctx.secrets.get(&source_ref) else {
            // Resolved from this cache a moment ago; its deletion's event re-runs the reconcile.
            continue;
        };
        let data: std::collections::BTreeMap<String, k8s_openapi::ByteString> = ["tls.crt", "tls.key"]
            .iter()
            .filter_map(|k| Some(((*k).to_owned(), source.data.as_ref()?.get(*k)?.clone())))
            .collect();
        let cached = ctx.secrets.get(&ObjectRef::new(&copy.name).within(&gw_ns));
        if let Some(existing) = &cached {
            let ours = is_certificate_copy(existing)
                && controller_owner(&**existing).is_some_and(|o| o.uid == gw_uid);
            if !ours {
                plan.outcome = Outcome::Gaps(vec![Gap::ListenerCertificate(format!(
                    "{}/{} (its copy {gw_ns}/{}: a Secret of that name exists and lockstep did not make it)",
                    copy.source.namespace, copy.source.name, copy.name
                ))]);
                return Ok(());
            }
            if existing.data.as_ref() == Some(&data) {
                continue;
            }
        }
        let source_name = format!("{}/{}", copy.source.namespace, copy.source.name);
        let patch = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": copy.name,
                "namespace": gw_ns,
                "labels": {serve::GENERATED_LABEL: serve::GENERATED_BY_GATEWAY},
                "annotations": {serve::SOURCE_SECRET_ANNOTATION: source_name},
                "ownerReferences": [{
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "Gateway",
                    "name": gw.name_any(),
                    "uid": gw_uid,
                    "controller": true,
                }],
            },
            "data": data,
        });
        if !ctx.leader.is_leader() {
            return Ok(());
        }
        api.patch(
            &copy.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        tracing::info!(name = %copy.name, source = %source_name, "copied a listener certificate into the Gateway's namespace");
    }
    Ok(())
}

/// Deletes the certificate copies owned by `gw` except those named in `keep`.
async fn delete_owned_copies(ctx: &Context, gw: &Gateway, keep: &[String]) {
    let gw_ns = gw.namespace().unwrap_or_default();
    let gw_uid = gw.uid().unwrap_or_default();
    for copy in ctx.secrets.state() {
        let ours = copy.namespace().as_deref() == Some(gw_ns.as_str())
            && is_certificate_copy(&copy)
            && controller_owner(&*copy).is_some_and(|o| o.uid == gw_uid);
        if ours && !keep.contains(&copy.name_any()) {
            delete_generated(ctx, copy.as_ref()).await;
        }
    }
}

/// Deletes the generated RouterConfigs owned by `gw` except those named in `keep`.
async fn delete_owned(ctx: &Context, gw: &Gateway, keep: &[&str]) {
    let gw_ns = gw.namespace().unwrap_or_default();
    let gw_uid = gw.uid().unwrap_or_default();
    for rc in ctx.router_configs.state() {
        let ours = rc.namespace().as_deref() == Some(gw_ns.as_str())
            && controller_owner(&*rc).is_some_and(|o| o.uid == gw_uid);
        if ours && !keep.contains(&rc.name_any().as_str()) {
            delete_generated(ctx, rc.as_ref()).await;
        }
    }
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
