//! The Gateway API edge of the operator: watches GatewayClasses, Gateways, HTTPRoutes,
//! GRPCRoutes, ReferenceGrants, Services, TLS Secrets and Namespaces, hands each Gateway of a
//! lockstep class to [`lockstep_core::gateway::translate`], and writes the statuses it
//! returns. Every decision is the translation's; this module gathers, calls and writes.
//!
//! What it writes, only while leader (checked right before every write):
//! - a GatewayClass of `spec.controllerName: lockstep.dev/gateway-controller`: `Accepted`
//!   and `supportedFeatures`, the sorted list of [`lockstep_core::gateway::features`] (its one
//!   copy; a feature is listed there only once the conformance suite passes it, and the suite
//!   reads the list back from this status); a stored list that differs is rewritten;
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
//! Nothing runs while the Gateway API CRDs are not installed: [`run`] logs it once and looks
//! for them again every [`GATEWAY_API_LOOK_AGAIN`]. Whether a kind is served is asked until
//! the apiserver answers ([`crate::served`]).

use std::{sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
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
    features::supported_features,
    listener_sets::{self, ListenerSetVerdict, refers_to_listener_set},
    lower::Gap,
    provision::{self, DeploymentReplicas, FleetPlan},
    serve::{self, ListenerPlan, Outcome},
    status::{condition as condition_type, reason},
    translate,
};
use lockstep_crds::gateway::{
    BackendTLSPolicy, CONTROLLER_NAME, GRPCRoute, Gateway, GatewayClass, GatewayClassStatus,
    GatewayStatusAddress, HTTPRoute, ListenerSet, ListenerStatus, PolicyAncestorStatus, ReferenceGrant,
    RouteParentStatus, SupportedFeature,
};
use lockstep_crds::{GatewayParameters, RouterConfig};
use serde_json::json;
use tokio::sync::watch;

use crate::{Error, Result, leader::Leadership, metrics::Metrics, served};

/// The field manager of every status write.
const FIELD_MANAGER: &str = "lockstep-operator";
/// Longest wait for the caches to list everything before a reconcile gives up (and retries).
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Retry delay after a failed reconcile (a write conflict, an API error).
const RETRY: Duration = Duration::from_millis(200);

/// How the Gateway controller provisions fleets.
#[derive(Debug, Clone)]
pub struct Options {
    /// The image of the proxies provisioned for Gateways (`--gateway-proxy-image`).
    pub proxy_image: String,
}

/// What every reconcile shares.
struct Context {
    client: Client,
    classes: Store<GatewayClass>,
    /// ListenerSets (empty when the apiserver does not serve them).
    listener_sets: Store<ListenerSet>,
    http_routes: Store<HTTPRoute>,
    grpc_routes: Store<GRPCRoute>,
    grants: Store<ReferenceGrant>,
    services: Store<Service>,
    secrets: Store<Secret>,
    namespaces: Store<Namespace>,
    /// BackendTLSPolicies (empty when the apiserver does not serve them).
    backend_tls_policies: Store<BackendTLSPolicy>,
    /// ConfigMaps: the CA bundles BackendTLSPolicies and frontend validation name (any
    /// ConfigMap may be named).
    config_maps: Store<ConfigMap>,
    /// Generated RouterConfigs (label `lockstep.dev/generated-from=Gateway`).
    router_configs: Store<RouterConfig>,
    /// GatewayParameters, for the Gateways' reconciles.
    parameters: Store<GatewayParameters>,
    /// GatewayParameters again, for the classes' reconciles (each controller decides from the
    /// store of the watch that triggered it, so it never sees an older object than the event).
    class_parameters: Store<GatewayParameters>,
    /// Provisioned objects (label `lockstep.dev/generated-from=Gateway`); the Services are in
    /// `services`.
    deployments: Store<Deployment>,
    service_accounts: Store<ServiceAccount>,
    roles: Store<Role>,
    role_bindings: Store<RoleBinding>,
    options: Options,
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
            self.listener_sets.wait_until_ready().await?;
            self.http_routes.wait_until_ready().await?;
            self.grpc_routes.wait_until_ready().await?;
            self.grants.wait_until_ready().await?;
            self.services.wait_until_ready().await?;
            self.secrets.wait_until_ready().await?;
            self.backend_tls_policies.wait_until_ready().await?;
            self.config_maps.wait_until_ready().await?;
            self.router_configs.wait_until_ready().await?;
            self.parameters.wait_until_ready().await?;
            self.deployments.wait_until_ready().await?;
            self.service_accounts.wait_until_ready().await?;
            self.roles.wait_until_ready().await?;
            self.role_bindings.wait_until_ready().await?;
            self.namespaces.wait_until_ready().await
        };
        match tokio::time::timeout(CACHE_SYNC_TIMEOUT, all).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Error::CacheNotSynced(CACHE_SYNC_TIMEOUT)),
        }
    }
}

/// How long the operator waits between two looks for the Gateway API while it is not served:
/// CRDs installed after the operator are found within this, without a restart.
pub const GATEWAY_API_LOOK_AGAIN: Duration = Duration::from_secs(10);

/// Returns once the Gateway API is served (its GatewayClass kind can be listed), after one
/// log line if it was not at first.
async fn gateway_api_served(client: &Client) {
    let classes = Api::<GatewayClass>::all(client.clone());
    let mut said = false;
    while let Err(error) = served::answer(&classes, "gatewayclasses").await {
        if !std::mem::replace(&mut said, true) {
            tracing::info!(
                %error,
                look_again = ?GATEWAY_API_LOOK_AGAIN,
                "Gateway API not available; the Gateway controller starts once it is"
            );
        }
        tokio::time::sleep(GATEWAY_API_LOOK_AGAIN).await;
    }
}

/// Runs the Gateway API controllers until `shutdown` resolves. While the Gateway API CRDs are
/// not installed it only looks for them again now and then (one log line), so a cluster
/// without them keeps working and one that installs them later gets the controllers.
pub async fn run(
    client: Client,
    options: Options,
    leader: Arc<Leadership>,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let mut shutdown = Box::pin(shutdown);
    tokio::select! {
        () = gateway_api_served(&client) => {}
        () = &mut shutdown => return,
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
    // BackendTLSPolicy is standard channel since v1.4; a cluster with older CRDs has none, and
    // then no backend is reached over TLS.
    let policies_api = Api::<BackendTLSPolicy>::all(client.clone());
    let (backend_tls_policies, policy_stream) = if served::answer(&policies_api, "backendtlspolicies")
        .await
        .map_err(
            |error| tracing::warn!(%error, "BackendTLSPolicy not available: no backend is reached over TLS"),
        )
        .is_ok()
    {
        let (store, events) = stream(policies_api, all(), "backendtlspolicies");
        (store, events.boxed())
    } else {
        none_served()
    };
    let (config_maps, config_map_stream) = stream(Api::<ConfigMap>::all(client.clone()), all(), "configmaps");
    let generated = format!("{}={}", serve::GENERATED_LABEL, serve::GENERATED_BY_GATEWAY);
    let (router_configs, rc_stream) = stream(
        Api::<RouterConfig>::all(client.clone()),
        all().labels(&generated),
        "generated routerconfigs",
    );
    // The class controller has a watch of its own: a controller's trigger stream is its own.
    let (class_store2, class_stream2) =
        stream(Api::<GatewayClass>::all(client.clone()), all(), "gatewayclasses");
    // GatewayParameters is lockstep's own CRD, and `helm upgrade` installs no new CRD: without
    // it every parametersRef to one is "not found" and the rest works.
    let parameters_api = Api::<GatewayParameters>::all(client.clone());
    let parameters_served = served::answer(&parameters_api, "gatewayparameters")
        .await
        .map_err(|error| {
            tracing::warn!(%error, "GatewayParameters not available: a parametersRef to one is InvalidParameters");
        })
        .is_ok();
    let parameters_watch = || {
        if parameters_served {
            let (store, events) = stream(parameters_api.clone(), all(), "gatewayparameters");
            (store, events.boxed())
        } else {
            none_served()
        }
    };
    let (parameters, parameters_stream) = parameters_watch();
    // ListenerSets are standard since v1.6, but a cluster may hold older Gateway API CRDs:
    // without the kind, Gateways have their own listeners only.
    let sets_api = Api::<ListenerSet>::all(client.clone());
    let (listener_sets, listener_set_stream) = match served::answer(&sets_api, "listenersets").await {
        Ok(_) => {
            let (store, events) = stream(sets_api, all(), "listenersets");
            (store, events.boxed())
        }
        Err(error) => {
            tracing::info!(%error, "ListenerSets not available: Gateways have their own listeners only");
            none_served()
        }
    };
    let (class_parameters, class_parameters_stream) = parameters_watch();
    let (deployments, deployment_stream) = stream(
        Api::<Deployment>::all(client.clone()),
        all().labels(&generated),
        "provisioned deployments",
    );
    let (service_accounts, sa_stream) = stream(
        Api::<ServiceAccount>::all(client.clone()),
        all().labels(&generated),
        "provisioned serviceaccounts",
    );
    let (roles, role_stream) = stream(
        Api::<Role>::all(client.clone()),
        all().labels(&generated),
        "provisioned roles",
    );
    let (role_bindings, rb_stream) = stream(
        Api::<RoleBinding>::all(client.clone()),
        all().labels(&generated),
        "provisioned rolebindings",
    );

    let ctx = Arc::new(Context {
        client,
        classes: classes.clone(),
        listener_sets,
        http_routes,
        grpc_routes,
        grants,
        services,
        secrets,
        namespaces,
        backend_tls_policies,
        config_maps,
        router_configs: router_configs.clone(),
        parameters,
        class_parameters,
        deployments,
        service_accounts,
        roles,
        role_bindings,
        options,
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
    let on_parameters = every(gateways.clone(), classes.clone());
    let on_policy = every(gateways.clone(), classes.clone());
    let on_config_map = every(gateways.clone(), classes.clone());
    let on_listener_set = every(gateways.clone(), classes.clone());
    let gateway_controller = Controller::for_stream(gateway_stream, gateways.clone())
        .watches_stream(class_stream, move |_| on_class())
        .watches_stream(http_stream, move |_| on_http())
        .watches_stream(grpc_stream, move |_| on_grpc())
        .watches_stream(grant_stream, move |_| on_grant())
        .watches_stream(service_stream, move |_| on_service())
        .watches_stream(secret_stream, move |_| on_secret())
        .watches_stream(namespace_stream, move |_| on_namespace())
        .watches_stream(policy_stream, move |_| on_policy())
        .watches_stream(config_map_stream, move |_| on_config_map())
        // A generated RouterConfig's status (the barrier) changes its Gateway's status.
        .watches_stream(rc_stream, |rc: RouterConfig| owner_gateway(&rc))
        .watches_stream(parameters_stream, move |_| on_parameters())
        .watches_stream(listener_set_stream, move |_| on_listener_set())
        // A provisioned object changed (its Deployment's ready replicas, or someone edited or
        // deleted one): its Gateway re-applies and re-judges.
        .watches_stream(deployment_stream, |o: Deployment| owner_gateway(&o))
        .watches_stream(sa_stream, |o: ServiceAccount| owner_gateway(&o))
        .watches_stream(role_stream, |o: Role| owner_gateway(&o))
        .watches_stream(rb_stream, |o: RoleBinding| owner_gateway(&o))
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
    let every_class = class_store2.clone();
    let class_controller = Controller::for_stream(class_stream2, class_store2)
        // A class's Accepted depends on its GatewayParameters existing.
        .watches_stream(class_parameters_stream, move |_| {
            every_class
                .state()
                .iter()
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        })
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

/// An empty store, ready, and a stream that never yields: a kind the apiserver does not serve.
fn none_served<K>() -> (
    Store<K>,
    futures::stream::BoxStream<'static, std::result::Result<K, watcher::Error>>,
)
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (store, mut writer) = reflector::store::<K>();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
    // The writer lives as long as the stream, so the store stays as it is.
    let events = futures::stream::pending().map(move |event| {
        let _ = &writer;
        event
    });
    (store, events.boxed())
}

/// The controller ownerReference of a generated RouterConfig or provisioned object: its
/// Gateway.
fn controller_owner<K: Resource>(object: &K) -> Option<&OwnerReference> {
    object
        .owner_references()
        .iter()
        .find(|o| o.kind == "Gateway" && o.controller == Some(true))
}

/// The Gateway that owns a generated RouterConfig or provisioned object.
fn owner_gateway<K: Resource>(object: &K) -> Option<ObjectRef<Gateway>> {
    let owner = generated_for_gateway(object)?;
    Some(ObjectRef::new(&owner.name).within(&owner.namespace))
}

/// The Gateway an object was generated or provisioned for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GatewayOwner {
    namespace: String,
    name: String,
    uid: String,
}

/// Generated or provisioned for a Gateway by lockstep: labelled so and controlled by a Gateway
/// of its namespace, or, outside the Gateway's namespace (where an ownerReference cannot
/// point), naming it in [`provision::OWNER_ANNOTATION`].
fn generated_for_gateway<K: Resource>(object: &K) -> Option<GatewayOwner> {
    let labelled =
        object.labels().get(serve::GENERATED_LABEL).map(String::as_str) == Some(serve::GENERATED_BY_GATEWAY);
    if !labelled {
        return None;
    }
    if let Some(owner) = controller_owner(object) {
        return Some(GatewayOwner {
            namespace: object.namespace().unwrap_or_default(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        });
    }
    let value = object.annotations().get(provision::OWNER_ANNOTATION)?;
    let (namespace, name, uid) = provision::parse_owner_annotation(value)?;
    Some(GatewayOwner {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
    })
}

/// Deletes generated RouterConfigs and provisioned objects whose owning Gateway (by uid) is
/// gone: without a controller-manager nothing collects them (and nothing ever collects the
/// Roles of backend namespaces, which no ownerReference can tie to the Gateway), and a replica
/// would keep serving them. Runs on every Gateway event (a deletion included) once both caches
/// have listed.
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
            if ctx.synced().await.is_err() {
                continue;
            }
            sweep(&ctx, &ctx.router_configs, &live).await;
            sweep(&ctx, &ctx.deployments, &live).await;
            sweep(&ctx, &ctx.services, &live).await;
            sweep(&ctx, &ctx.role_bindings, &live).await;
            sweep(&ctx, &ctx.roles, &live).await;
            sweep(&ctx, &ctx.service_accounts, &live).await;
            sweep(&ctx, &ctx.secrets, &live).await;
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

/// Deletes the objects of `store` generated or provisioned for a Gateway whose uid is not in
/// `live`, once the apiserver confirms that Gateway is gone (this watch may lag the
/// controller's, and a Gateway re-created under its name is another owner).
async fn sweep<K>(ctx: &Context, store: &Store<K>, live: &std::collections::HashSet<String>)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    for object in store.state() {
        let Some(owner) = generated_for_gateway(&*object).filter(|o| !live.contains(&o.uid)) else {
            continue;
        };
        let api = Api::<Gateway>::namespaced(ctx.client.clone(), &owner.namespace);
        match api.get_opt(&owner.name).await {
            Ok(Some(g)) if g.uid().as_deref() == Some(owner.uid.as_str()) => {}
            Ok(_) => delete_object(ctx, &*object).await,
            Err(error) => tracing::debug!(%error, "reading a Gateway before a sweep failed"),
        }
    }
}

/// Deletes one object generated or provisioned for a Gateway (only while leader).
async fn delete_object<K>(ctx: &Context, object: &K)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    if !ctx.leader.is_leader() {
        return;
    }
    let api = Api::<K>::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let (kind, name) = (K::kind(&()), object.name_any());
    match api.delete(&name, &Default::default()).await {
        Ok(_) => tracing::info!(%kind, %name, "deleted an object generated for a Gateway, no longer wanted"),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(error) => {
            tracing::warn!(%error, %kind, %name, "deleting an object generated for a Gateway failed")
        }
    }
}

/// Deletes what was provisioned for `gw` (its Deployment, Service, ServiceAccount, Roles and
/// RoleBindings, those of its backend namespaces included): it names an existing fleet now,
/// or is no longer of a lockstep class.
async fn delete_provisioned(ctx: &Context, gw: &Gateway) {
    async fn of<K>(ctx: &Context, store: &Store<K>, gw: &Gateway)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        let (ns, uid) = (gw.namespace(), gw.uid());
        for object in store.state() {
            let ours = generated_for_gateway(&*object)
                .is_some_and(|o| Some(&o.namespace) == ns.as_ref() && Some(&o.uid) == uid.as_ref());
            if ours {
                delete_object(ctx, &*object).await;
            }
        }
    }
    of(ctx, &ctx.deployments, gw).await;
    of(ctx, &ctx.services, gw).await;
    of(ctx, &ctx.role_bindings, gw).await;
    of(ctx, &ctx.roles, gw).await;
    of(ctx, &ctx.service_accounts, gw).await;
}

/// Why provisioning cannot go on; retrying cannot help until something changes, so the
/// Gateway's `Programmed` says it instead of the reconcile failing in a loop.
enum Blocked {
    /// An object of that name belongs to someone else, or the apiserver refused one
    /// (`Programmed=False Pending`).
    Object(String),
    /// The apiserver refused the Service's static cluster IPs: out of the Service range, or
    /// taken (`Programmed=False AddressNotUsable`).
    Address(String),
}

/// Applies `plan`'s objects, each only when the cached one is not this Gateway's with the
/// same digest. Returns why provisioning cannot go on, if it cannot.
async fn provision_fleet(ctx: &Context, plan: &FleetPlan) -> Result<Option<Blocked>> {
    // The RBAC first, so the pods find their rights when they start: a replica that may not
    // list in a namespace it watches retries until it may, but serves nothing meanwhile.
    let mut backend_rbac = Vec::new();
    for ns in plan.backend_namespaces() {
        backend_rbac.push(apply_object(ctx, &ctx.roles, plan.backend_role(ns), &plan.gateway_uid).await?);
        backend_rbac.push(
            apply_object(
                ctx,
                &ctx.role_bindings,
                plan.backend_role_binding(ns),
                &plan.gateway_uid,
            )
            .await?,
        );
    }
    // Pods watching a namespace they may not read would never get ready: the Deployment
    // waits (its pods as they are keep serving) until the RBAC there is in place.
    if let Some(problem) = backend_rbac.into_iter().flatten().next() {
        return Ok(Some(Blocked::Object(problem)));
    }
    let steps = [
        apply_object(
            ctx,
            &ctx.service_accounts,
            plan.service_account(),
            &plan.gateway_uid,
        )
        .await?,
        apply_object(ctx, &ctx.roles, plan.role(), &plan.gateway_uid).await?,
        apply_object(ctx, &ctx.role_bindings, plan.role_binding(), &plan.gateway_uid).await?,
        apply_object(ctx, &ctx.role_bindings, plan.member_binding(), &plan.gateway_uid).await?,
        apply_object(ctx, &ctx.deployments, plan.deployment(), &plan.gateway_uid).await?,
    ];
    if let Some(problem) = steps.into_iter().flatten().next() {
        return Ok(Some(Blocked::Object(problem)));
    }
    // Only once the Deployment no longer names them: its old pods lose the read there as they
    // are replaced (a replica that loses it keeps what it listed and retries the watch).
    delete_unwatched(ctx, plan).await;
    // A Service needs a port: a Gateway with no HTTP or HTTPS listener keeps its last one.
    if plan.ports.is_empty() {
        return Ok(None);
    }
    // A Service's cluster IPs cannot change: one of this Gateway's with other cluster IPs
    // than its static addresses ask for is deleted and created anew (its clients lose the
    // old address, which is what changing the address means).
    if !plan.cluster_ips.is_empty()
        && let Some(existing) = ctx
            .services
            .get(&ObjectRef::new(&plan.name).within(&plan.namespace))
            .filter(|s| generated_for_gateway(&**s).is_some_and(|o| o.uid == plan.gateway_uid))
        && existing.spec.as_ref().and_then(|s| s.cluster_ips.as_ref()) != Some(&plan.cluster_ips)
    {
        delete_object(ctx, &*existing).await;
    }
    Ok(
        apply_object(ctx, &ctx.services, plan.service(), &plan.gateway_uid)
            .await?
            .map(|problem| {
                if plan.cluster_ips.is_empty() {
                    Blocked::Object(problem)
                } else {
                    Blocked::Address(problem)
                }
            }),
    )
}

/// Deletes the Roles and RoleBindings provisioned for `plan`'s Gateway in namespaces its
/// fleet no longer watches (no route there names a Service of its own namespace any more, say).
async fn delete_unwatched(ctx: &Context, plan: &FleetPlan) {
    async fn of<K>(ctx: &Context, store: &Store<K>, plan: &FleetPlan)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        for object in store.state() {
            let ns = object.namespace().unwrap_or_default();
            let unwatched = ns != plan.namespace && !plan.watch_namespaces.contains(&ns);
            let ours = generated_for_gateway(&*object)
                .is_some_and(|o| o.namespace == plan.namespace && o.uid == plan.gateway_uid);
            if unwatched && ours {
                delete_object(ctx, &*object).await;
            }
        }
    }
    of(ctx, &ctx.role_bindings, plan).await;
    of(ctx, &ctx.roles, plan).await;
}

async fn apply_object<K>(
    ctx: &Context,
    store: &Store<K>,
    object: serde_json::Value,
    gateway_uid: &str,
) -> Result<Option<String>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
{
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let digest = object["metadata"]["annotations"][provision::APPLIED_ANNOTATION].as_str();
    let kind = K::kind(&());
    let ours = |o: &K| generated_for_gateway(o).is_some_and(|owner| owner.uid == gateway_uid);
    let cached = store.get(&ObjectRef::new(&name).within(&namespace));
    let cached = cached.as_deref().filter(|c| ours(c));
    if cached.is_some_and(|c| {
        c.annotations()
            .get(provision::APPLIED_ANNOTATION)
            .map(String::as_str)
            == digest
    }) {
        return Ok(None);
    }
    let api = Api::<K>::namespaced(ctx.client.clone(), &namespace);
    if cached.is_none() {
        // Not known as this Gateway's: an object of that name that is someone else's is left
        // alone (a forced apply would take it over).
        if let Some(existing) = api.get_opt(&name).await?
            && !ours(&existing)
        {
            return Ok(Some(format!(
                "{kind} {namespace}/{name} exists and is not this Gateway's: delete or rename it"
            )));
        }
    }
    if !ctx.leader.is_leader() {
        return Ok(None);
    }
    match api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(%kind, %name, %namespace, "applied an object provisioned for a Gateway");
            Ok(None)
        }
        Err(kube::Error::Api(e)) if [400, 403, 422].contains(&e.code) => {
            tracing::warn!(%kind, %name, error = %e.message, "an object provisioned for a Gateway was refused");
            Ok(Some(format!(
                "{kind} {namespace}/{name} was refused: {}",
                e.message
            )))
        }
        Err(error) => Err(error.into()),
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

/// Listener statuses about to be written (a Gateway's or a ListenerSet's) against the stored
/// `old`: each condition that did not change keeps its `lastTransitionTime`; true when they
/// say the same as `old` (so nothing needs writing).
fn settle_listeners(new: &mut [ListenerStatus], old: &[ListenerStatus]) -> bool {
    for l in new.iter_mut() {
        if let Some(o) = old.iter().find(|o| o.name == l.name) {
            keep_transition_times(&mut l.conditions, &o.conditions);
        }
    }
    new.len() == old.len()
        && new.iter().all(|l| {
            old.iter().any(|o| {
                o.name == l.name
                    && o.attached_routes == l.attached_routes
                    && o.supported_kinds == l.supported_kinds
                    && same_conditions(&o.conditions, &l.conditions)
            })
        })
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

/// Whether a class's stored status already says `conditions` and `features`, so nothing is
/// written. The features are compared in order: the CRD wants them sorted, and a list another
/// writer reordered, emptied or extended is rewritten (an older lockstep wrote an empty one).
fn class_status_current(
    old: Option<&GatewayClassStatus>,
    conditions: &[Condition],
    features: &[SupportedFeature],
) -> bool {
    old.is_some_and(|s| same_conditions(conditions, &s.conditions) && s.supported_features == features)
}

async fn reconcile_class(class: Arc<GatewayClass>, ctx: Arc<Context>) -> Result<Action> {
    let now = Timestamp::now();
    if class.spec.controller_name != CONTROLLER_NAME {
        return Ok(Action::await_change());
    }
    if ctx.class_parameters.wait_until_ready().await.is_err() {
        return Ok(Action::await_change());
    }
    let parameters = cloned(&ctx.class_parameters);
    let Some(mut conditions) = lockstep_core::gateway::class_conditions(&class, &parameters, now) else {
        return Ok(Action::await_change());
    };
    if !ctx.leader.is_leader() {
        return Ok(Action::await_change());
    }
    let old = class.status.as_ref();
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    keep_transition_times(&mut conditions, old_conditions);
    let features = supported_features();
    if class_status_current(old, &conditions, &features) {
        return Ok(Action::await_change());
    }
    let patch = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "status": {"conditions": conditions, "supportedFeatures": features},
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
        // A class not (yet) known is none of lockstep's: what was served for the Gateway
        // goes now. Waiting for the class's own event would not do: it reconciles only the
        // Gateways of lockstep's classes, which this one, moved to another class, is not.
        // Should the class turn out to be lockstep's, its event brings the Gateway back.
        stop_serving(&ctx, &gw).await;
        return Ok(Action::await_change());
    };
    let (http_routes, grpc_routes) = (cloned(&ctx.http_routes), cloned(&ctx.grpc_routes));
    let (services, secrets) = (cloned(&ctx.services), cloned(&ctx.secrets));
    let (grants, namespaces) = (cloned(&ctx.grants), cloned(&ctx.namespaces));
    let parameters = cloned(&ctx.parameters);
    let (policies, config_maps) = (cloned(&ctx.backend_tls_policies), cloned(&ctx.config_maps));
    let sets = cloned(&ctx.listener_sets);
    let inputs = GatewayInputs {
        class: &class,
        gateway: &gw,
        listener_sets: &sets,
        http_routes: &http_routes,
        grpc_routes: &grpc_routes,
        services: &services,
        secrets: &secrets,
        grants: &grants,
        namespaces: &namespaces,
        parameters: &parameters,
        backend_tls_policies: &policies,
        config_maps: &config_maps,
    };
    let now = Timestamp::now();
    let Some(mut translation) = translate(inputs, now) else {
        // Not (or no longer) of a lockstep class: nothing of lockstep's is served for it.
        stop_serving(&ctx, &gw).await;
        return Ok(Action::await_change());
    };
    let gw_ns = gw.namespace().unwrap_or_default();
    let gw_name = gw.name_any();

    // What the fleet is to serve: the generated RouterConfigs (the provisioned fleet's
    // watched namespaces follow from them).
    let provisioned = serve::fleet_of(&gw.metadata).is_none();
    let fleet_name = provision::fleet_name(&gw_ns, &gw_name);
    let fleet = serve::fleet_of(&gw.metadata).or_else(|| Some(Ok(fleet_name.clone())));
    let mut plans = match (&fleet, &translation.config) {
        (Some(Ok(fleet)), Some(config)) => serve::plan(config, fleet),
        _ => Vec::new(),
    };

    // Provisioning: a Gateway naming no existing fleet gets one of its own. Nothing is
    // applied or deleted while the Gateway is not accepted (a bad parametersRef included):
    // what runs keeps running.
    let mut provision_problem = None;
    if !provisioned {
        delete_provisioned(&ctx, &gw).await;
    } else if translation.config.is_some()
        && let Ok(params) = provision::class_parameters(&class, &parameters)
    {
        // The specs about to be applied, and those a listener with gaps keeps (its replicas
        // keep serving the last one applied, so its Services must stay resolvable).
        let kept: Vec<Arc<RouterConfig>> = plans
            .iter()
            .filter(|p| matches!(p.outcome, Outcome::Gaps(_)))
            .filter_map(|p| ctx.router_configs.get(&ObjectRef::new(&p.name).within(&gw_ns)))
            .filter(|rc| controller_owner(&**rc).is_some_and(|o| Some(&o.uid) == gw.uid().as_ref()))
            .collect();
        let publishing = plans.iter().filter_map(|p| match &p.outcome {
            Outcome::Publish(spec) => Some(spec),
            _ => None,
        });
        let specs = publishing.chain(kept.iter().map(|rc| &rc.spec));
        // The fleet serves the attached ListenerSets' listeners too (their ports, their
        // Secrets in the Gateway's namespace).
        let mut merged = (*gw).clone();
        for v in translation.listener_sets.iter().filter(|v| v.accepted) {
            if let Some(set) = sets.iter().find(|s| {
                s.metadata.namespace.as_deref() == Some(&v.key.namespace) && s.name_any() == v.key.name
            }) {
                merged
                    .spec
                    .listeners
                    .extend(listener_sets::listeners_with_namespaces(set));
            }
        }
        let plan = provision::plan(&merged, &params, &ctx.options.proxy_image, specs);
        provision_problem = provision_fleet(&ctx, &plan).await?;
    }

    // Serving: the generated RouterConfigs, then what the barrier says of them.
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

    // A provisioned fleet: its Service's address, and Programmed only once it can take traffic.
    let mut addresses: Vec<GatewayStatusAddress> = Vec::new();
    if provisioned {
        let owned = |o: GatewayOwner| Some(&o.uid) == gw.uid().as_ref();
        let key = ObjectRef::new(&fleet_name).within(&gw_ns);
        let service = ctx
            .services
            .get(&ObjectRef::new(&fleet_name).within(&gw_ns))
            .filter(|s| generated_for_gateway(&**s).is_some_and(owned));
        let statics = provision::static_addresses(&gw);
        addresses = provision::addresses(service.as_deref(), &statics.cluster_ips);
        let replicas = ctx
            .deployments
            .get(&key)
            .filter(|d| generated_for_gateway(&**d).is_some_and(owned))
            .map(|d| DeploymentReplicas {
                ready: d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
                desired: d.spec.replicas.unwrap_or(1),
            });
        let generation = gw
            .metadata
            .generation
            .unwrap_or(lockstep_crds::DEFAULT_GENERATION);
        for c in &mut translation.gateway_conditions {
            if c.type_ != condition_type::PROGRAMMED {
                continue;
            }
            *c = provision::programmed(c, &fleet_name, replicas, !addresses.is_empty(), generation, now);
            if c.reason == reason::INVALID {
                continue;
            }
            let (why, message) = match (&provision_problem, &statics.not_usable) {
                (Some(Blocked::Address(problem)), _) => (
                    reason::ADDRESS_NOT_USABLE,
                    format!("the Service refused the static addresses: {problem}"),
                ),
                (_, Some(not_usable)) => (reason::ADDRESS_NOT_USABLE, not_usable.clone()),
                (Some(Blocked::Object(problem)), None) => (
                    reason::PENDING,
                    format!("provisioning the fleet failed: {problem}"),
                ),
                (None, None) => continue,
            };
            c.status = "False".into();
            c.reason = why.into();
            c.message = message;
        }
    }

    // ListenerSets: Programmed only while the Gateway is, then their status.
    if let Some(gateway_programmed) = translation
        .gateway_conditions
        .iter()
        .find(|c| c.type_ == condition_type::PROGRAMMED)
        .cloned()
    {
        for set in translation.listener_sets.iter_mut().filter(|s| s.accepted) {
            if let Some(c) = set
                .conditions
                .iter_mut()
                .find(|c| c.type_ == condition_type::PROGRAMMED)
            {
                listener_sets::under_parent(c, &gateway_programmed);
            }
        }
    }
    for set in &mut translation.listener_sets {
        write_listener_set_status(&ctx, set).await?;
    }

    // Gateway status: conditions and listeners, server-side applied.
    let old = gw.status.clone().unwrap_or_default();
    keep_transition_times(&mut translation.gateway_conditions, &old.conditions);
    let listeners_same = settle_listeners(&mut translation.listeners, &old.listeners);
    if !(listeners_same
        && old.addresses == addresses
        && old.attached_listener_sets == Some(translation.attached_listener_sets)
        && same_conditions(&translation.gateway_conditions, &old.conditions))
    {
        write_gateway_status(
            &ctx,
            &gw_ns,
            &gw_name,
            &translation.gateway_conditions,
            &translation.listeners,
            &addresses,
            translation.attached_listener_sets,
        )
        .await?;
    }

    // Route parents: lockstep's entries for this Gateway, replaced in every route that has or
    // should have one.
    let set_keys: Vec<lockstep_core::ObjectKey> =
        translation.listener_sets.iter().map(|s| s.key.clone()).collect();
    let scope = ParentScope {
        gateway_namespace: &gw_ns,
        gateway: &gw_name,
        listener_sets: &set_keys,
    };
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
        write_route_parents(&ctx, &api, route, old, ours, &scope).await?;
    }
    for route in grpc_routes.iter() {
        let ours = ours_for("GRPCRoute", route.uid());
        let api = Api::<GRPCRoute>::namespaced(ctx.client.clone(), &route.namespace().unwrap_or_default());
        let old = route
            .status
            .as_ref()
            .map(|s| s.parents.as_slice())
            .unwrap_or_default();
        write_route_parents(&ctx, &api, route, old, ours, &scope).await?;
    }
    // BackendTLSPolicy ancestors: lockstep's entry for this Gateway, in every policy that has
    // or should have one.
    for policy in &policies {
        let key = lockstep_core::ObjectKey::new(policy.namespace().unwrap_or_default(), policy.name_any());
        let ours = translation.policies.get(&key).cloned();
        write_policy_ancestor(&ctx, policy, ours, &gw_ns, &gw_name).await?;
    }
    Ok(Action::await_change())
}

/// Replaces lockstep's ancestor entry for Gateway `gw_ns/gw_name` in `policy`'s
/// `status.ancestors` by `ours` (none: removed), keeping every other entry; written back
/// with the read `resourceVersion` as a precondition (`status.ancestors` is an atomic list).
async fn write_policy_ancestor(
    ctx: &Context,
    policy: &BackendTLSPolicy,
    ours: Option<PolicyAncestorStatus>,
    gw_ns: &str,
    gw_name: &str,
) -> Result<()> {
    let policy_ns = policy.namespace().unwrap_or_default();
    let is_ours = |a: &PolicyAncestorStatus| {
        a.controller_name == CONTROLLER_NAME && refers_to_gateway(&a.ancestor_ref, &policy_ns, gw_ns, gw_name)
    };
    let old = policy
        .status
        .as_ref()
        .map(|s| s.ancestors.as_slice())
        .unwrap_or_default();
    let mut ours = ours;
    if let (Some(new), Some(o)) = (ours.as_mut(), old.iter().find(|a| is_ours(a))) {
        keep_transition_times(&mut new.conditions, &o.conditions);
    }
    let old_ours: Vec<&PolicyAncestorStatus> = old.iter().filter(|a| is_ours(a)).collect();
    let unchanged = match (&ours, old_ours.as_slice()) {
        (None, []) => true,
        (Some(n), [o]) => n.ancestor_ref == o.ancestor_ref && same_conditions(&n.conditions, &o.conditions),
        _ => false,
    };
    if unchanged {
        return Ok(());
    }
    let mut ancestors: Vec<PolicyAncestorStatus> = old.iter().filter(|a| !is_ours(a)).cloned().collect();
    ancestors.extend(ours);
    let patch = json!({
        "metadata": {"resourceVersion": policy.meta().resource_version},
        "status": {"ancestors": ancestors},
    });
    if !ctx.leader.is_leader() {
        return Ok(());
    }
    Api::<BackendTLSPolicy>::namespaced(ctx.client.clone(), &policy_ns)
        .patch_status(
            &policy.name_any(),
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
            (serve::SPEC_DIGEST_ANNOTATION.to_owned(), serve::spec_digest(spec)),
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
                "ownerReferences": [serve::gateway_owner_reference(&gw.name_any(), &gw_uid)],
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
                "ownerReferences": [serve::gateway_owner_reference(&gw.name_any(), &gw_uid)],
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
            delete_object(ctx, copy.as_ref()).await;
        }
    }
}

/// Deletes everything generated or provisioned for `gw`: it is none of lockstep's.
async fn stop_serving(ctx: &Context, gw: &Gateway) {
    delete_owned(ctx, gw, &[]).await;
    delete_owned_copies(ctx, gw, &[]).await;
    delete_provisioned(ctx, gw).await;
}

/// Deletes the generated RouterConfigs owned by `gw` except those named in `keep`.
async fn delete_owned(ctx: &Context, gw: &Gateway, keep: &[&str]) {
    let gw_ns = gw.namespace().unwrap_or_default();
    let gw_uid = gw.uid().unwrap_or_default();
    for rc in ctx.router_configs.state() {
        let ours = rc.namespace().as_deref() == Some(gw_ns.as_str())
            && controller_owner(&*rc).is_some_and(|o| o.uid == gw_uid);
        if ours && !keep.contains(&rc.name_any().as_str()) {
            delete_object(ctx, &*rc).await;
        }
    }
}

/// Server-side applies a ListenerSet's conditions and listener statuses (both keyed lists),
/// unless the stored ones already say the same; unchanged conditions keep their
/// `lastTransitionTime`.
async fn write_listener_set_status(ctx: &Context, set: &mut ListenerSetVerdict) -> Result<()> {
    let stored = ctx
        .listener_sets
        .get(&ObjectRef::new(&set.key.name).within(&set.key.namespace));
    let old = stored.as_ref().and_then(|s| s.status.clone()).unwrap_or_default();
    keep_transition_times(&mut set.conditions, &old.conditions);
    let listeners_same = settle_listeners(&mut set.listeners, &old.listeners);
    if listeners_same && same_conditions(&set.conditions, &old.conditions) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "ListenerSet",
        "status": {"conditions": set.conditions, "listeners": set.listeners},
    });
    if !ctx.leader.is_leader() {
        return Ok(());
    }
    Api::<ListenerSet>::namespaced(ctx.client.clone(), &set.key.namespace)
        .patch_status(
            &set.key.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.metrics.gateway_status_writes.inc();
    Ok(())
}

async fn write_gateway_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    conditions: &[Condition],
    listeners: &[ListenerStatus],
    addresses: &[GatewayStatusAddress],
    attached_listener_sets: i32,
) -> Result<()> {
    let patch = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "status": {"conditions": conditions, "listeners": listeners, "addresses": addresses,
            "attachedListenerSets": attached_listener_sets},
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

/// The parents one Gateway's reconcile writes route entries for: the Gateway, and the
/// ListenerSets naming it.
struct ParentScope<'a> {
    gateway_namespace: &'a str,
    gateway: &'a str,
    listener_sets: &'a [lockstep_core::ObjectKey],
}

/// Replaces lockstep's parent entries for the Gateway of `scope` (and its ListenerSets) in `route`'s
/// `status.parents` by `ours`, keeping every other entry, and writes the list back with the
/// read `resourceVersion` as a precondition (`status.parents` is an atomic list).
async fn write_route_parents<K>(
    ctx: &Context,
    api: &Api<K>,
    route: &K,
    old: &[RouteParentStatus],
    mut ours: Vec<RouteParentStatus>,
    scope: &ParentScope<'_>,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let route_ns = route.meta().namespace.clone().unwrap_or_default();
    // This Gateway's entries: those naming it, or a ListenerSet naming it.
    let is_ours = |p: &RouteParentStatus| {
        p.controller_name == CONTROLLER_NAME
            && (refers_to_gateway(&p.parent_ref, &route_ns, scope.gateway_namespace, scope.gateway)
                || scope
                    .listener_sets
                    .iter()
                    .any(|k| refers_to_listener_set(&p.parent_ref, &route_ns, &k.namespace, &k.name)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted() -> Vec<Condition> {
        vec![Condition {
            type_: "Accepted".into(),
            status: "True".into(),
            reason: "Accepted".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().unwrap(),
            ),
        }]
    }

    fn stored(features: &[&str]) -> GatewayClassStatus {
        GatewayClassStatus {
            conditions: accepted(),
            supported_features: features
                .iter()
                .map(|n| SupportedFeature { name: (*n).into() })
                .collect(),
        }
    }

    #[test]
    fn a_status_with_the_claimed_features_is_not_rewritten() {
        let features = supported_features();
        let names: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
        assert!(class_status_current(
            Some(&stored(&names)),
            &accepted(),
            &features
        ));
    }

    #[test]
    fn a_status_whose_features_differ_is_rewritten() {
        let features = supported_features();
        // What an older operator wrote (no feature), a list missing one, one with a feature
        // lockstep does not claim, and the claimed ones out of order.
        for old in [
            vec![],
            vec!["GRPCRoute", "Gateway", "HTTPRoute"],
            vec![
                "GRPCRoute",
                "Gateway",
                "HTTPRoute",
                "HTTPRouteHostRewrite",
                "ReferenceGrant",
            ],
            vec!["Gateway", "GRPCRoute", "HTTPRoute", "ReferenceGrant"],
        ] {
            assert!(
                !class_status_current(Some(&stored(&old)), &accepted(), &features),
                "{old:?}"
            );
        }
    }

    #[test]
    fn no_status_or_other_conditions_are_written() {
        let features = supported_features();
        let names: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
        assert!(!class_status_current(None, &accepted(), &features));
        let mut rejected = accepted();
        rejected[0].status = "False".into();
        assert!(!class_status_current(Some(&stored(&names)), &rejected, &features));
    }
}
