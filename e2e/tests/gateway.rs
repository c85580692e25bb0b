//! The operator's Gateway API status against a real apiserver with the v1.6.3 CRDs: a
//! GatewayClass of lockstep's controller accepted, a Gateway's conditions and listeners, each
//! HTTPRoute's parent entry (another controller's entry kept), ReferenceGrants taking effect,
//! observedGeneration following edits, and another controller's Gateway left alone; and a
//! Gateway naming an existing fleet of real proxies, served through generated RouterConfigs
//! behind the barrier; and a Gateway naming no fleet, for which the operator provisions one
//! (Deployment, Service, ServiceAccount, RBAC) with its class's GatewayParameters. The operator
//! runs with the RBAC of `deploy/generated/rbac-operator.yaml`.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Client, Resource,
    api::{ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use lockstep_crds::{
    RouterConfig,
    gateway::{
        BackendTLSPolicy, CONTROLLER_NAME, Condition, Gateway, GatewayClass, HTTPRoute, ListenerSet,
        PolicyAncestorStatus, ReferenceGrant, RouteParentStatus,
    },
};
use lockstep_e2e::{
    ControlPlane, check, eventually,
    fixture::{Fixture, least_privilege_operator, lockstep_plugin, shared_operator},
    fleet::{Backend, Operator},
    install_gateway_api_crds,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const FOREIGN_CONTROLLER: &str = "example.com/another-controller";

/// The operator runs as ServiceAccount lockstep-operator of lockstep-system, as installed:
/// the admission policy (`deploy/generated/routerconfig-admission.yaml`) admits what only
/// generated RouterConfigs may say (host "*") from that ServiceAccount only.
fn operator() -> &'static Operator {
    shared_operator(|cp| least_privilege_operator(cp, "lockstep-system", "gateway-operator"))
}

async fn create<K>(api: &Api<K>, object: Value) -> K
where
    K: Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let object: K = serde_json::from_value(object).expect("object literal");
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {:?}: {e}", object.meta().name))
}

/// (status, reason, observedGeneration) of the condition of `type_`.
fn cond(conditions: &[Condition], type_: &str) -> Option<(String, String, Option<i64>)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.observed_generation))
}

fn all_at(conditions: &[Condition], generation: i64) -> bool {
    !conditions.is_empty()
        && conditions
            .iter()
            .all(|c| c.observed_generation == Some(generation))
}

fn lockstep_entries(route: &HTTPRoute) -> Vec<RouteParentStatus> {
    route
        .status
        .iter()
        .flat_map(|s| s.parents.iter())
        .filter(|p| p.controller_name == CONTROLLER_NAME)
        .cloned()
        .collect()
}

/// The single lockstep parent entry of route `name`, once it is written for `generation`.
async fn parent_at(routes: &Api<HTTPRoute>, name: &str, generation: i64) -> RouteParentStatus {
    eventually(&format!("route {name} parent status"), WAIT, || async {
        let route = routes.get(name).await.ok()?;
        if route.metadata.generation != Some(generation) {
            return None;
        }
        let entries = lockstep_entries(&route);
        match entries.as_slice() {
            [one] if all_at(&one.conditions, generation) => Some(one.clone()),
            _ => None,
        }
    })
    .await
    .unwrap()
}

/// A GatewayClass of lockstep's controller, named `lockstep-<tag>-<random>` so tests sharing
/// the control plane do not meet: its name.
async fn lockstep_class(client: &kube::Client, tag: &str) -> String {
    let class = format!("lockstep-{tag}-{:08x}", rand::random::<u32>());
    create(
        &Api::<GatewayClass>::all(client.clone()),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": class}, "spec": {"controllerName": CONTROLLER_NAME}}),
    )
    .await;
    class
}

/// Gateway `gw` once all `count` of its listeners are judged at `generation`.
async fn listeners_judged(gateways: &Api<Gateway>, count: usize, generation: i64) -> Gateway {
    eventually(
        &format!("{count} listeners judged at generation {generation}"),
        WAIT,
        || async {
            let gw = gateways.get("gw").await.ok()?;
            let s = gw.status.clone()?;
            (s.listeners.len() == count && s.listeners.iter().all(|l| all_at(&l.conditions, generation)))
                .then_some(gw)
        },
    )
    .await
    .unwrap()
}

fn route(name: &str, ns: &str, gateway: &str, hostnames: &[&str], backend: Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"name": gateway}],
            "hostnames": hostnames,
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [backend]}],
        },
    })
}

fn service(name: &str, ns: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": {"ports": [{"name": "http", "port": 80}]}})
}

#[tokio::test]
async fn gateway_api_status_is_written_from_the_translation() {
    let cp = ControlPlane::shared();
    let client: Client = cp.client().await.unwrap();
    install_gateway_api_crds(&client).await.unwrap();
    operator();
    let ns = cp.namespace(&client, "gw").await.unwrap();
    let backends_ns = cp.namespace(&client, "gw-backends").await.unwrap();
    let suffix = format!("{:08x}", rand::random::<u32>());
    let (ours, theirs) = (format!("lockstep-{suffix}"), format!("another-{suffix}"));

    let classes = Api::<GatewayClass>::all(client.clone());
    let gateways = Api::<Gateway>::namespaced(client.clone(), &ns);
    let routes = Api::<HTTPRoute>::namespaced(client.clone(), &ns);
    let services_here = Api::<Service>::namespaced(client.clone(), &ns);
    let services_there = Api::<Service>::namespaced(client.clone(), &backends_ns);

    for (name, controller) in [(&ours, CONTROLLER_NAME), (&theirs, FOREIGN_CONTROLLER)] {
        create(
            &classes,
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                   "metadata": {"name": name}, "spec": {"controllerName": controller}}),
        )
        .await;
    }
    create(&services_here, service("web", &ns)).await;
    create(&services_there, service("remote", &backends_ns)).await;
    create(
        &gateways,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": ns},
               "spec": {"gatewayClassName": ours, "listeners": [
                   {"name": "web", "protocol": "HTTP", "port": 80, "hostname": "*.example.com"},
                   {"name": "api", "protocol": "HTTP", "port": 8080, "hostname": "api.example.org"}]}}),
    )
    .await;
    create(
        &gateways,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "foreign", "namespace": ns},
               "spec": {"gatewayClassName": theirs, "listeners": [
                   {"name": "web", "protocol": "HTTP", "port": 80}]}}),
    )
    .await;
    let local = json!({"name": "web", "port": 80});
    create(
        &routes,
        route("ok", &ns, "gw", &["app.example.com"], local.clone()),
    )
    .await;
    create(
        &routes,
        route("elsewhere", &ns, "gw", &["shop.example.net"], local.clone()),
    )
    .await;
    create(
        &routes,
        route(
            "missing",
            &ns,
            "gw",
            &["missing.example.com"],
            json!({"name": "nope", "port": 80}),
        ),
    )
    .await;
    create(
        &routes,
        route(
            "cross",
            &ns,
            "gw",
            &["api.example.org"],
            json!({"name": "remote", "namespace": backends_ns, "port": 80}),
        ),
    )
    .await;
    create(&routes, route("foreign-only", &ns, "foreign", &[], local.clone())).await;

    // Another controller's entry on `ok`, written without a precondition (as a careless
    // controller would): lockstep's entry must come back and this one must stay.
    let foreign_entry = json!({
        "parentRef": {"name": "foreign"}, "controllerName": FOREIGN_CONTROLLER,
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]});
    routes
        .patch_status(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"parents": [foreign_entry]}})),
        )
        .await
        .unwrap();

    // The class: Accepted at its generation, with the features lockstep claims, sorted (the
    // conformance suite reads them from here).
    let claimed = lockstep_core::gateway::features::supported_features();
    let class = eventually("GatewayClass accepted", WAIT, || async {
        let c = classes.get(&ours).await.ok()?;
        let s = c.status.clone()?;
        (cond(&s.conditions, "Accepted")? == ("True".into(), "Accepted".into(), Some(1))).then_some(c)
    })
    .await
    .unwrap();
    let names: Vec<String> = class
        .status
        .unwrap()
        .supported_features
        .into_iter()
        .map(|f| f.name)
        .collect();
    let want: Vec<String> = claimed.iter().map(|f| f.name.clone()).collect();
    assert_eq!(names, want);
    assert!(names.iter().any(|n| n == "Gateway"), "{names:?}");
    // A stored list that differs (the empty one an older operator wrote) is rewritten.
    classes
        .patch_status(
            &ours,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"supportedFeatures": []}})),
        )
        .await
        .unwrap();
    eventually("supportedFeatures rewritten", WAIT, || async {
        let s = classes.get(&ours).await.ok()?.status?;
        (s.supported_features == claimed).then_some(())
    })
    .await
    .unwrap();

    // The Gateway: Accepted; Programmed False Pending (its fleet is provisioned, but no kubelet
    // runs its pods here: no replica serves it); listeners.
    let gw = eventually("Gateway status with attached routes", WAIT, || async {
        let g = gateways.get("gw").await.ok()?;
        let s = g.status.clone()?;
        let counts: Vec<(String, i32)> = s
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.attached_routes))
            .collect();
        (counts == [("web".into(), 2), ("api".into(), 1)]).then_some(g)
    })
    .await
    .unwrap();
    let s = gw.status.unwrap();
    assert_eq!(
        cond(&s.conditions, "Accepted").unwrap(),
        ("True".into(), "Accepted".into(), Some(1))
    );
    assert_eq!(
        cond(&s.conditions, "Programmed").unwrap(),
        ("False".into(), "Pending".into(), Some(1))
    );
    for l in &s.listeners {
        let at1 = |status: &str, reason: &str| Some((status.to_owned(), reason.to_owned(), Some(1)));
        assert_eq!(
            cond(&l.conditions, "Accepted"),
            at1("True", "Accepted"),
            "{}",
            l.name
        );
        assert_eq!(
            cond(&l.conditions, "Programmed"),
            at1("False", "Pending"),
            "{}",
            l.name
        );
        assert_eq!(
            cond(&l.conditions, "ResolvedRefs"),
            at1("True", "ResolvedRefs"),
            "{}",
            l.name
        );
        assert_eq!(
            cond(&l.conditions, "Conflicted"),
            at1("False", "NoConflicts"),
            "{}",
            l.name
        );
        let kinds: Vec<&str> = l.supported_kinds.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(kinds, ["HTTPRoute", "GRPCRoute"], "{}", l.name);
    }

    // Each route's parent entry.
    let expect = |p: &RouteParentStatus, accepted: (&str, &str), resolved: (&str, &str)| {
        assert_eq!(p.parent_ref.name, "gw");
        let got = |t| cond(&p.conditions, t).map(|(s, r, _)| (s, r));
        let want = |(s, r): (&str, &str)| Some((s.to_owned(), r.to_owned()));
        assert_eq!(got("Accepted"), want(accepted), "{p:?}");
        assert_eq!(got("ResolvedRefs"), want(resolved), "{p:?}");
        assert_eq!(got("PartiallyInvalid"), None, "{p:?}");
    };
    let ok = parent_at(&routes, "ok", 1).await;
    expect(&ok, ("True", "Accepted"), ("True", "ResolvedRefs"));
    let elsewhere = parent_at(&routes, "elsewhere", 1).await;
    expect(
        &elsewhere,
        ("False", "NoMatchingListenerHostname"),
        ("True", "ResolvedRefs"),
    );
    let missing = parent_at(&routes, "missing", 1).await;
    expect(&missing, ("True", "Accepted"), ("False", "BackendNotFound"));
    let cross = parent_at(&routes, "cross", 1).await;
    expect(&cross, ("True", "Accepted"), ("False", "RefNotPermitted"));

    // The other controller's entry survived lockstep's writes.
    let ok_route = routes.get("ok").await.unwrap();
    let parents = &ok_route.status.unwrap().parents;
    assert_eq!(parents.len(), 2, "{parents:?}");
    assert!(
        parents
            .iter()
            .any(|p| p.controller_name == FOREIGN_CONTROLLER && p.parent_ref.name == "foreign"),
        "{parents:?}"
    );

    // A ReferenceGrant in the backend's namespace lets the cross-namespace backend resolve.
    create(
        &Api::<ReferenceGrant>::namespaced(client.clone(), &backends_ns),
        json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
               "metadata": {"name": "routes-to-remote", "namespace": backends_ns},
               "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": ns}],
                        "to": [{"group": "", "kind": "Service", "name": "remote"}]}}),
    )
    .await;
    eventually("cross-namespace backend resolved", WAIT, || async {
        let p = lockstep_entries(&routes.get("cross").await.ok()?).pop()?;
        (cond(&p.conditions, "ResolvedRefs")?.0 == "True").then_some(())
    })
    .await
    .unwrap();

    // Edits: every condition follows its object's generation.
    let merge = |v: Value| Patch::Merge(v);
    classes
        .patch(
            &ours,
            &PatchParams::default(),
            &merge(json!({"spec": {"description": "edited"}})),
        )
        .await
        .unwrap();
    gateways
        .patch(
            "gw",
            &PatchParams::default(),
            &merge(json!({"spec": {"listeners": [
                {"name": "web", "protocol": "HTTP", "port": 80, "hostname": "*.example.com"},
                {"name": "api", "protocol": "HTTP", "port": 8081, "hostname": "api.example.org"}]}})),
        )
        .await
        .unwrap();
    routes
        .patch(
            "ok",
            &PatchParams::default(),
            &merge(
                json!({"spec": {"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
                                              "backendRefs": [{"name": "web", "port": 80}]}]}}),
            ),
        )
        .await
        .unwrap();
    eventually("class conditions at generation 2", WAIT, || async {
        let c = classes.get(&ours).await.ok()?;
        (c.metadata.generation == Some(2) && all_at(&c.status?.conditions, 2)).then_some(())
    })
    .await
    .unwrap();
    let gw = eventually("Gateway conditions at generation 2", WAIT, || async {
        let g = gateways.get("gw").await.ok()?;
        let s = g.status.clone()?;
        (g.metadata.generation == Some(2)
            && all_at(&s.conditions, 2)
            && s.listeners.iter().all(|l| all_at(&l.conditions, 2)))
        .then_some(g)
    })
    .await
    .unwrap();
    let counts: Vec<(String, i32)> = gw
        .status
        .unwrap()
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.attached_routes))
        .collect();
    assert_eq!(counts, [("web".into(), 2), ("api".into(), 1)]);
    let ok = parent_at(&routes, "ok", 2).await;
    expect(&ok, ("True", "Accepted"), ("True", "ResolvedRefs"));

    // Another controller's class, Gateway and route: nothing of lockstep's. (Checked last,
    // after lockstep has written everything above.)
    let theirs_class = classes.get(&theirs).await.unwrap();
    let decided = |cs: &[Condition]| cs.iter().any(|c| c.status != "Unknown");
    let class_status = theirs_class.status.unwrap_or_default();
    assert!(!decided(&class_status.conditions), "{class_status:?}");
    let foreign = gateways.get("foreign").await.unwrap().status.unwrap_or_default();
    assert!(!decided(&foreign.conditions), "{foreign:?}");
    assert!(foreign.listeners.is_empty(), "{foreign:?}");
    let foreign_route = routes.get("foreign-only").await.unwrap();
    assert!(lockstep_entries(&foreign_route).is_empty(), "{foreign_route:?}");
    let managers: Vec<String> = gateways
        .get("foreign")
        .await
        .unwrap()
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(!managers.iter().any(|m| m == "lockstep-operator"), "{managers:?}");
}

/// A cluster without the Gateway API CRDs: the operator says so once, leaves the Gateway
/// controller off, and the RouterConfig controller still syncs (ready) and judges. Once the
/// CRDs are installed, the operator (not restarted) takes the Gateway API up: a GatewayClass
/// of lockstep's gets `Accepted=True`. The same path covers an install that creates the CRDs
/// and the operator together, where the apiserver may answer 429 for a new CRD at first.
#[tokio::test]
async fn without_the_gateway_api_crds_the_operator_keeps_working_and_takes_them_up_later() {
    // A control plane of its own: the shared one has the Gateway API CRDs.
    let cp = ControlPlane::start().unwrap();
    let client = cp.client().await.unwrap();
    lockstep_e2e::install_crds(&client).await.unwrap();
    let mut operator = Operator::start(
        &cp,
        &cp.test_dir("no-gateway-api"),
        lockstep_e2e::fleet::OperatorSpec::default(),
    )
    .unwrap();
    operator
        .process
        .wait_for_log("Gateway API not available", WAIT)
        .unwrap();
    let http = lockstep_e2e::check::http();
    let admin = operator.admin;
    eventually("operator ready", WAIT, || {
        let http = http.clone();
        async move { lockstep_e2e::check::is_ready(&http, admin).await.then_some(()) }
    })
    .await
    .unwrap();
    cp.kubectl_apply(&lockstep_e2e::fixture::router_config(
        "default",
        "no-gateway-api",
        "web",
        &[("web.example.com", "/", "http://127.0.0.1:1")],
    ))
    .unwrap();
    let rcs = Api::<lockstep_crds::RouterConfig>::namespaced(client.clone(), "default");
    eventually("RouterConfig judged", WAIT, || async {
        let rc = rcs.get("web").await.ok()?;
        let conditions = rc.status?.conditions;
        (cond(&conditions, "Accepted")?.0 == "True").then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        operator
            .process
            .log_text()
            .matches("Gateway API not available")
            .count(),
        1
    );

    install_gateway_api_crds(&client).await.unwrap();
    let class = lockstep_class(&client, "late").await;
    let classes = Api::<GatewayClass>::all(client.clone());
    // The operator looks again every 10 s (`GATEWAY_API_LOOK_AGAIN`), well inside WAIT.
    eventually("the class accepted once the CRDs are installed", WAIT, || async {
        let class = classes.get(&class).await.ok()?;
        let conditions = class.status?.conditions;
        (cond(&conditions, "Accepted")?.0 == "True").then_some(())
    })
    .await
    .unwrap();
    operator.process.wait_for_log("Gateway API found", WAIT).unwrap();
}

/// The lockstep.dev/Ready condition of the single lockstep parent entry of `route`:
/// (status, reason, observedGeneration, message).
fn lockstep_ready(route: &HTTPRoute) -> Option<(String, String, Option<i64>, String)> {
    let entries = lockstep_entries(route);
    let [one] = entries.as_slice() else { return None };
    one.conditions
        .iter()
        .find(|c| c.type_ == "lockstep.dev/Ready")
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone(),
                c.observed_generation,
                c.message.clone(),
            )
        })
}

/// A Service without selector named `name`, port 80, whose one EndpointSlice points at
/// `backend` (the test plays the endpoint controller; `.localhost` names this host).
fn service_for(ns: &str, name: &str, backend: &Backend) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {name}}}\n\
         addressType: FQDN\nports: [{{name: http, port: {port}}}]\nendpoints: [{{addresses: [{name}.localhost], conditions: {{ready: true}}}}]\n",
        port = backend.addr.port(),
    )
}

/// A Gateway of lockstep's class naming an existing fleet of three real proxies: its HTTPRoute
/// is published as a generated RouterConfig, and after each of 20 edits `kubectl lockstep wait
/// httproute/web` returns only once every replica answers with the edited route, while
/// requests flow. A route with a missing backend on the same listener gets BackendNotFound,
/// its share of requests is answered 500 while the listener's other route is served, and it
/// is never lockstep.dev/Ready=True. Deleting the Gateway deletes its generated RouterConfig.
#[tokio::test]
async fn a_gateway_naming_a_fleet_is_served_and_waits_are_exact() {
    let cp = ControlPlane::shared();
    let admin = cp.client().await.unwrap();
    install_gateway_api_crds(&admin).await.unwrap();
    operator();
    let f = Fixture::new("gw-serve").await;
    let client = f.client.clone();
    let ns = f.ns.clone();
    let class = lockstep_class(&client, "serve").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let two = Backend::start(&f.dir, "two").unwrap();
    f.cp.kubectl_apply(&service_for(&ns, "one", &one)).unwrap();
    f.cp.kubectl_apply(&service_for(&ns, "two", &two)).unwrap();
    // Long Leases: a frozen replica stays in the barrier (below) instead of dropping out.
    let proxies = f.proxies_with(3, |spec| spec.lease_seconds = 30);

    let gateways = Api::<Gateway>::namespaced(client.clone(), &ns);
    let routes = Api::<HTTPRoute>::namespaced(client.clone(), &ns);
    let rcs = Api::<RouterConfig>::namespaced(client.clone(), &ns);
    let gateway = |name: &str, host: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": name, "namespace": ns, "annotations": {"lockstep.dev/fleet": f.fleet}},
               "spec": {"gatewayClassName": class, "listeners": [
                   {"name": "web", "protocol": "HTTP", "port": 80, "hostname": host}]}})
    };
    let gw = create(&gateways, gateway("gw", "app.example.com")).await;
    create(
        &routes,
        route(
            "web",
            &ns,
            "gw",
            &["app.example.com"],
            json!({"name": "one", "port": 80}),
        ),
    )
    .await;

    // A route on the same listener, half of whose requests go to a Service that does not
    // exist: Gateway API has that half answered 500 ("the proportion of requests that would
    // otherwise have been routed to an invalid backend MUST receive a 500 status code"), and
    // the listener's other route is served. Watched from its creation: lockstep.dev/Ready=True
    // must never appear.
    create(
        &routes,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "bad", "namespace": ns},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": ["app.example.com"],
                "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/bad"}}],
                           "backendRefs": [{"name": "one", "port": 80}, {"name": "nope", "port": 80}]}],
            },
        }),
    )
    .await;
    let bad_ready_seen = Arc::new(AtomicBool::new(false));
    let bad_watch = {
        let (routes, seen) = (routes.clone(), bad_ready_seen.clone());
        tokio::spawn(async move {
            let cfg = watcher::Config::default().fields("metadata.name=bad");
            let mut events = std::pin::pin!(watcher(routes, cfg).applied_objects());
            while let Some(event) = events.next().await {
                if let Ok(route) = event
                    && lockstep_ready(&route).is_some_and(|r| r.0 == "True")
                {
                    seen.store(true, Ordering::SeqCst);
                }
            }
        })
    };

    let plugin_wait = |target: &str| {
        let started = Instant::now();
        let out = lockstep_plugin(f.cp, &["wait", target, "-n", &ns, "--timeout", "60s"]);
        assert!(
            out.status.success(),
            "kubectl lockstep wait {target}: {:?}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed()
    };
    let answers = |expected: &'static str| {
        let (http, addrs) = (f.http.clone(), proxies.iter().map(|p| p.http).collect::<Vec<_>>());
        async move {
            let mut stale = Vec::new();
            for addr in addrs {
                for _ in 0..3 {
                    let got = check::request(&http, addr, "app.example.com", "/").await.unwrap();
                    if got != (200, Some(expected.to_owned())) {
                        stale.push(format!("{addr}: {got:?}, expected {expected}"));
                    }
                }
            }
            stale
        }
    };

    plugin_wait("httproute/web");
    plugin_wait("gateway/gw");
    assert_eq!(answers("one").await, Vec::<String>::new());

    // The generated RouterConfig: recognisable, owned by the Gateway, in the fleet, and
    // recording the Gateway and route generations it comes from.
    let generated: Vec<RouterConfig> = rcs
        .list(&ListParams::default().labels("lockstep.dev/generated-from=Gateway"))
        .await
        .unwrap()
        .items;
    let names: Vec<String> = generated
        .iter()
        .map(|r| r.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(generated.len(), 1, "one listener, one RouterConfig: {names:?}");
    let rc = &generated[0];
    assert_eq!(rc.spec.fleet, f.fleet);
    let owner = &rc.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.controller,
            Some(&owner.uid)
        ),
        ("Gateway", "gw", Some(true), gw.metadata.uid.as_ref())
    );
    let annotations = rc.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["lockstep.dev/gateway-generation"], "1");
    let uid = |route: HTTPRoute| route.metadata.uid.unwrap();
    let recorded: std::collections::BTreeMap<String, i64> =
        serde_json::from_str(&annotations["lockstep.dev/routes"]).unwrap();
    assert_eq!(
        recorded,
        std::collections::BTreeMap::from([
            (uid(routes.get("web").await.unwrap()), 1),
            (uid(routes.get("bad").await.unwrap()), 1),
        ])
    );

    // The barrier's invariant, checked on every event of the route: the moment
    // lockstep.dev/Ready=True is current for generation g, every replica answers with g's
    // backend (odd generations `one`, even `two`). A check the route outran is not counted.
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let checker = {
        let (routes, http, addrs, violations) = (
            routes.clone(),
            f.http.clone(),
            proxies.iter().map(|p| p.http).collect::<Vec<_>>(),
            violations.clone(),
        );
        tokio::spawn(async move {
            let cfg = watcher::Config::default().fields("metadata.name=web");
            let mut events = std::pin::pin!(watcher(routes.clone(), cfg).applied_objects());
            let mut checked = 0;
            while let Some(event) = events.next().await {
                let Ok(route) = event else { continue };
                let generation = route.metadata.generation.unwrap_or(1);
                let current =
                    lockstep_ready(&route).is_some_and(|r| r.0 == "True" && r.2 == Some(generation));
                if !current || generation == checked {
                    continue;
                }
                checked = generation;
                let expected = if generation % 2 == 1 { "one" } else { "two" };
                let mut wrong = Vec::new();
                for addr in &addrs {
                    let got = check::request(&http, *addr, "app.example.com", "/").await;
                    if !matches!(&got, Ok((200, Some(b))) if b == expected) {
                        wrong.push(format!("{addr}: {got:?}"));
                    }
                }
                let still = routes.get("web").await.ok().and_then(|r| r.metadata.generation);
                if !wrong.is_empty() && still == Some(generation) {
                    violations.lock().unwrap().push(format!(
                        "Ready=True at generation {generation}, expected {expected}: {wrong:?}"
                    ));
                }
            }
        })
    };

    // Requests flow through every replica during the edits.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (http, addrs, stop) = (
            f.http.clone(),
            proxies.iter().map(|p| p.http).collect::<Vec<_>>(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let (mut ok, mut bad) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                for addr in &addrs {
                    match check::request(&http, *addr, "app.example.com", "/").await {
                        Ok((200, Some(b))) if b == "one" || b == "two" => ok += 1,
                        other => bad.push(format!("{addr}: {other:?}")),
                    }
                }
            }
            (ok, bad)
        })
    };

    let mut waits = Vec::new();
    let mut stale = Vec::new();
    for i in 1..=20 {
        let backend = if i % 2 == 1 { "two" } else { "one" };
        routes
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": backend, "port": 80}]}]}})),
            )
            .await
            .unwrap();
        waits.push(plugin_wait("httproute/web"));
        stale.extend(
            answers(backend)
                .await
                .into_iter()
                .map(|s| format!("edit {i}: {s}")),
        );
        let route = routes.get("web").await.unwrap();
        assert_eq!(route.metadata.generation, Some(1 + i));
    }
    stop.store(true, Ordering::SeqCst);
    let (ok, bad) = traffic.await.unwrap();
    assert!(stale.is_empty(), "stale answers after a wait: {stale:?}");
    assert!(
        ok > 0 && bad.is_empty(),
        "{ok} good answers while editing; failed: {bad:?}"
    );
    waits.sort();
    eprintln!(
        "20 edits: kubectl lockstep wait took {:?} median, {:?} max; {ok} requests answered during the edits",
        waits[10], waits[19]
    );
    plugin_wait("gateway/gw");

    // A frozen replica still holds its Lease and cannot apply: the wait must not return, and
    // the route must not be Ready, until it wakes and serves the edit.
    proxies[2].process.signal(Signal::SIGSTOP).unwrap();
    routes
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"name": "two", "port": 80}]}]}})),
        )
        .await
        .unwrap();
    let frozen_wait = lockstep_plugin(f.cp, &["wait", "httproute/web", "-n", &ns, "--timeout", "4s"]);
    let route_then = lockstep_ready(&routes.get("web").await.unwrap());
    proxies[2].process.signal(Signal::SIGCONT).unwrap();
    assert_eq!(
        frozen_wait.status.code(),
        Some(2),
        "the wait timed out while a replica was frozen: {}",
        String::from_utf8_lossy(&frozen_wait.stdout)
    );
    assert_eq!(
        route_then.as_ref().map(|r| (r.0.as_str(), r.1.as_str(), r.2)),
        Some(("False", "RolloutInProgress", Some(22))),
        "{route_then:?}"
    );
    plugin_wait("httproute/web");
    assert_eq!(answers("two").await, Vec::<String>::new());
    checker.abort();
    let violations = violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:?}");

    // The route with a missing backend.
    let bad = eventually("bad route judged", WAIT, || async {
        let route = routes.get("bad").await.ok()?;
        lockstep_ready(&route).map(|r| (route, r))
    })
    .await
    .unwrap();
    let entry = lockstep_entries(&bad.0).pop().unwrap();
    assert_eq!(
        cond(&entry.conditions, "ResolvedRefs"),
        Some(("False".into(), "BackendNotFound".into(), Some(1)))
    );
    assert_eq!(
        (bad.1.0.as_str(), bad.1.1.as_str()),
        ("False", "UnresolvedRefs"),
        "{:?}",
        bad.1
    );
    let gw_status = gateways.get("gw").await.unwrap().status.unwrap();
    let listener = cond(&gw_status.listeners[0].conditions, "Programmed").unwrap();
    assert_eq!((listener.0.as_str(), listener.1.as_str()), ("True", "Programmed"));
    // Every replica answers half of /bad from `one` and half with its own 500 (smooth
    // weighted round robin: exactly one of each in every two consecutive requests).
    for proxy in &proxies {
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(
                check::request(&f.http, proxy.http, "app.example.com", "/bad")
                    .await
                    .unwrap(),
            );
        }
        got.sort();
        assert_eq!(
            got,
            [
                (200, Some("one".to_owned())),
                (200, Some("one".to_owned())),
                (500, None),
                (500, None)
            ],
            "{}",
            proxy.http
        );
    }
    let timed_out = lockstep_plugin(f.cp, &["wait", "httproute/bad", "-n", &ns, "--timeout", "2s"]);
    assert_eq!(
        timed_out.status.code(),
        Some(2),
        "the wait on a route never Ready times out"
    );
    bad_watch.abort();
    assert!(
        !bad_ready_seen.load(Ordering::SeqCst),
        "the route with a missing backend was lockstep.dev/Ready=True"
    );

    // A Gateway of the same fleet whose listener has no host name, with a route without host
    // names (listener hostname: "When unspecified, all hostnames are matched"): its generated
    // RouterConfig has host "*", which the admission policy admits from the operator alone.
    // Any host no other RouterConfig of the fleet covers reaches it; app.example.com still
    // reaches gw's route (an exact host beats any host).
    create(
        &gateways,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw-any", "namespace": ns, "annotations": {"lockstep.dev/fleet": f.fleet}},
               "spec": {"gatewayClassName": class, "listeners": [{"name": "any", "protocol": "HTTP", "port": 80}]}}),
    )
    .await;
    create(
        &routes,
        route("any", &ns, "gw-any", &[], json!({"name": "one", "port": 80})),
    )
    .await;
    plugin_wait("httproute/any");
    plugin_wait("gateway/gw-any");
    for proxy in &proxies {
        for host in ["anything.test", "10.1.2.3", "a.b.example.org:8080"] {
            let got = check::request(&f.http, proxy.http, host, "/").await.unwrap();
            assert_eq!(got, (200, Some("one".to_owned())), "{host} via {}", proxy.http);
        }
    }
    assert_eq!(answers("two").await, Vec::<String>::new());
    gateways.delete("gw-any", &Default::default()).await.unwrap();
    routes.delete("any", &Default::default()).await.unwrap();
    eventually("gw-any's RouterConfig deleted", WAIT, || async {
        let left = rcs
            .list(&ListParams::default().labels("lockstep.dev/generated-from=Gateway"))
            .await
            .ok()?;
        (left.items.len() == 1).then_some(())
    })
    .await
    .unwrap();

    // A listener renamed: the RouterConfig of the old one is deleted, the new one's served.
    let generated_listeners = || async {
        let list = rcs
            .list(&ListParams::default().labels("lockstep.dev/generated-from=Gateway"))
            .await
            .unwrap();
        list.items
            .iter()
            .map(|rc| rc.metadata.annotations.clone().unwrap_or_default()["lockstep.dev/listener"].clone())
            .collect::<Vec<String>>()
    };
    gateways
        .patch(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"listeners": [
                {"name": "site", "protocol": "HTTP", "port": 80, "hostname": "app.example.com"}]}})),
        )
        .await
        .unwrap();
    plugin_wait("gateway/gw");
    plugin_wait("httproute/web");
    eventually("only the renamed listener's RouterConfig", WAIT, || async {
        (generated_listeners().await == ["site"]).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(answers("two").await, Vec::<String>::new());

    // Moved to a class that does not exist yet, then created as another controller's:
    // lockstep serves nothing for it any more, whichever event the operator sees first (the
    // class's event names no lockstep Gateway, so the Gateway's own event must do); moved
    // back: served again.
    let foreign = format!("{class}-foreign");
    let move_to = |class: &str| Patch::Merge(json!({"spec": {"gatewayClassName": class}}));
    gateways
        .patch("gw", &PatchParams::default(), &move_to(&foreign))
        .await
        .unwrap();
    eventually(
        "no generated RouterConfig once the class is none of lockstep's",
        WAIT,
        || async { generated_listeners().await.is_empty().then_some(()) },
    )
    .await
    .unwrap();
    create(
        &Api::<GatewayClass>::all(client.clone()),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": foreign}, "spec": {"controllerName": FOREIGN_CONTROLLER}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        generated_listeners().await,
        Vec::<String>::new(),
        "once the class is another's"
    );
    gateways
        .patch("gw", &PatchParams::default(), &move_to(&class))
        .await
        .unwrap();
    plugin_wait("gateway/gw");
    plugin_wait("httproute/web");
    assert_eq!(generated_listeners().await, ["site"]);
    assert_eq!(answers("two").await, Vec::<String>::new());

    // Deleting the Gateway deletes its generated RouterConfig (no controller-manager here).
    gateways.delete("gw", &Default::default()).await.unwrap();
    eventually("generated RouterConfig deleted", WAIT, || async {
        let left = rcs
            .list(&ListParams::default().labels("lockstep.dev/generated-from=Gateway"))
            .await
            .ok()?;
        left.items.is_empty().then_some(())
    })
    .await
    .unwrap();
}

/// A backendRef to a Service of another namespace, allowed by a ReferenceGrant, is served by
/// replicas that watch that namespace (`--watch-namespaces`, with the RBAC of
/// `deploy/generated/rbac-proxy.yaml` there). A live replica that does not watch it cannot
/// resolve the Service: it reports the generation rejected, naming the field, and serves
/// none of it, so the route is never `lockstep.dev/Ready=True` while that replica is live.
/// Once it is gone, the plugin's wait returns and the replica left answers from the backend.
#[tokio::test]
async fn a_backend_of_another_namespace_is_served_where_the_fleet_watches_it() {
    let cp = ControlPlane::shared();
    let admin = cp.client().await.unwrap();
    install_gateway_api_crds(&admin).await.unwrap();
    operator();
    let f = Fixture::new("gw-xns").await;
    let client = f.client.clone();
    let ns = f.ns.clone();
    let apps = cp.namespace(&client, "gw-xns-apps").await.unwrap();
    let class = lockstep_class(&client, "xns").await;
    let api = Backend::start(&f.dir, "api").unwrap();
    f.cp.kubectl_apply(&service_for(&apps, "api", &api)).unwrap();

    // "wide" watches both namespaces, "narrow" only the Gateway's.
    let start = |name: &str, watches: &[&str]| {
        let kubeconfig = cp.proxy_kubeconfig(&ns, name, watches).unwrap();
        let mut spec = lockstep_e2e::fleet::ProxySpec::new(name, &ns, &f.fleet);
        spec.extra = vec!["--watch-namespaces".into(), watches.join(",")];
        let mut proxy = lockstep_e2e::fleet::Proxy::start_with_kubeconfig(&kubeconfig, &f.dir, spec).unwrap();
        proxy.wait_joined().unwrap();
        proxy
    };
    let wide = start("wide", &[&ns, &apps]);
    let mut narrow = start("narrow", &[&ns]);

    let gateways = Api::<Gateway>::namespaced(client.clone(), &ns);
    let routes = Api::<HTTPRoute>::namespaced(client.clone(), &ns);
    create(
        &gateways,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": ns, "annotations": {"lockstep.dev/fleet": f.fleet}},
               "spec": {"gatewayClassName": class, "listeners": [
                   {"name": "web", "protocol": "HTTP", "port": 80, "hostname": "app.example.com"}]}}),
    )
    .await;
    let route = create(
        &routes,
        route(
            "web",
            &ns,
            "gw",
            &["app.example.com"],
            json!({"name": "api", "namespace": apps, "port": 80}),
        ),
    )
    .await;
    let generation = route.metadata.generation.unwrap();
    let ready_seen = Arc::new(AtomicBool::new(false));
    let ready_watch = {
        let (routes, seen) = (routes.clone(), ready_seen.clone());
        tokio::spawn(async move {
            let cfg = watcher::Config::default().fields("metadata.name=web");
            let mut events = std::pin::pin!(watcher(routes, cfg).applied_objects());
            while let Some(event) = events.next().await {
                if let Ok(route) = event
                    && lockstep_ready(&route).is_some_and(|r| r.0 == "True")
                {
                    seen.store(true, Ordering::SeqCst);
                }
            }
        })
    };

    // The grant: the operator writes the Service's namespace into the generated RouterConfig.
    create(
        &Api::<ReferenceGrant>::namespaced(client.clone(), &apps),
        json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
               "metadata": {"name": "routes-to-api", "namespace": apps},
               "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": ns}],
                        "to": [{"group": "", "kind": "Service", "name": "api"}]}}),
    )
    .await;
    let rcs = Api::<RouterConfig>::namespaced(client.clone(), &ns);
    let generated = eventually(
        "the generated RouterConfig names the Service's namespace",
        WAIT,
        || async {
            let list = rcs
                .list(&ListParams::default().labels("lockstep.dev/generated-from=Gateway"))
                .await
                .ok()?;
            let rc = list.items.into_iter().next()?;
            let service = rc.spec.rules[0].paths[0].backends[0].service.clone()?;
            (service.namespace.as_deref() == Some(apps.as_str())).then_some(rc)
        },
    )
    .await
    .unwrap();
    let rc_name = generated.metadata.name.clone().unwrap();
    let rc_generation = generated.metadata.generation.unwrap();

    // "wide" serves it from the backend of the other namespace.
    eventually("wide answers from the other namespace", WAIT, || async {
        let got = check::request(&f.http, wide.http, "app.example.com", "/")
            .await
            .ok()?;
        (got == (200, Some("api".to_owned()))).then_some(())
    })
    .await
    .unwrap();
    // "narrow" reports that generation rejected, naming the field and the namespace.
    let replicas = Api::<lockstep_crds::RouterReplica>::namespaced(client.clone(), &ns);
    let rejection = eventually("narrow rejects the generation", WAIT, || async {
        let replica = replicas.get("narrow").await.ok()?;
        let served = replica.status?.served;
        let entry = served.into_iter().find(|s| s.name == rc_name)?;
        entry.rejected.filter(|r| r.generation == rc_generation)
    })
    .await
    .unwrap();
    assert!(
        rejection.message.contains(&format!(
            "spec.rules[0].paths[0].backends[0].service.namespace: this replica does not watch namespace {apps}"
        )),
        "{}",
        rejection.message
    );
    // Nor does it serve that generation as its last accepted one (the operator accepted it):
    // once status.lastAccepted is generation 2, narrow serves nothing of the listener.
    eventually("narrow serves none of it", WAIT, || async {
        let got = check::request(&f.http, narrow.http, "app.example.com", "/")
            .await
            .ok()?;
        assert_ne!(got, (200, Some("api".to_owned())), "narrow cannot resolve api");
        (got.0 == 404).then_some(())
    })
    .await
    .unwrap();
    // The route says why it is not Ready: a replica rejected what it was generated into.
    let ready = eventually("the route is not Ready: rejected", WAIT, || async {
        let ready = lockstep_ready(&routes.get("web").await.ok()?)?;
        (ready.1 == lockstep_crds::reason::REJECTED).then_some(ready)
    })
    .await
    .unwrap();
    assert_eq!(
        (ready.0.as_str(), ready.2, ready.3.as_str()),
        (
            "False",
            Some(generation),
            format!("1/2 replicas rejected generation {generation}").as_str()
        ),
        "{ready:?}"
    );
    assert!(
        !ready_seen.load(Ordering::SeqCst),
        "Ready=True while narrow could not resolve it"
    );

    // Without "narrow" in the fleet every live replica serves it: Ready, and the wait returns.
    ready_watch.abort();
    narrow.crash();
    let out = lockstep_plugin(f.cp, &["wait", "httproute/web", "-n", &ns, "--timeout", "60s"]);
    assert!(
        out.status.success(),
        "kubectl lockstep wait httproute/web: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = check::request(&f.http, wide.http, "app.example.com", "/")
        .await
        .unwrap();
    assert_eq!(got, (200, Some("api".to_owned())));
}

/// A GRPCRoute's backend is reached over HTTP/2 cleartext even though its Service port says
/// nothing of it (no `appProtocol: kubernetes.io/h2c`): gRPC needs HTTP/2, and without TLS to
/// the backend that is h2c. A real grpc-go server behind a selector-less Service, the real
/// grpc-go client through every replica: unary calls, a server stream, an error status.
#[tokio::test]
async fn a_grpc_route_reaches_its_backend_over_h2c_whatever_the_service_port_says() {
    let cp = ControlPlane::shared();
    let admin = cp.client().await.unwrap();
    install_gateway_api_crds(&admin).await.unwrap();
    operator();
    let f = Fixture::new("gw-grpc").await;
    let client = f.client.clone();
    let ns = f.ns.clone();
    let (probe, _server, port) =
        lockstep_e2e::grpc_probe_server(&f.dir).expect("build and start the gRPC probe's server");
    // No appProtocol on the Service port nor on the slice's.
    f.cp.kubectl_apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: greeter, namespace: {ns}}}\nspec:\n  ports: [{{name: grpc, port: 80}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: greeter-a\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: greeter}}\n\
         addressType: FQDN\nports: [{{name: grpc, port: {port}}}]\nendpoints: [{{addresses: [g.localhost], conditions: {{ready: true}}}}]\n"
    ))
    .unwrap();
    let proxies = f.proxies(2);
    let class = lockstep_class(&client, "grpc").await;
    create(
        &Api::<Gateway>::namespaced(client.clone(), &ns),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": ns, "annotations": {"lockstep.dev/fleet": f.fleet}},
               "spec": {"gatewayClassName": class, "listeners": [
                   {"name": "grpc", "protocol": "HTTP", "port": 80, "hostname": "grpc.example.com"}]}}),
    )
    .await;
    create(
        &Api::<lockstep_crds::gateway::GRPCRoute>::namespaced(client.clone(), &ns),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
               "metadata": {"name": "health", "namespace": ns},
               "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["grpc.example.com"],
                        "rules": [{"matches": [{"method": {"service": "grpc.health.v1.Health"}}],
                                   "backendRefs": [{"name": "greeter", "port": 80}]}]}}),
    )
    .await;
    let out = lockstep_plugin(f.cp, &["wait", "grpcroute/health", "-n", &ns, "--timeout", "60s"]);
    assert!(
        out.status.success(),
        "kubectl lockstep wait grpcroute/health: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for proxy in &proxies {
        let out = std::process::Command::new(&probe)
            .args([
                "client",
                "--target",
                &proxy.http.to_string(),
                "--authority",
                "grpc.example.com",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("ok stream 5"),
            "via {}: {stdout}\n{}",
            proxy.http,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The proxy image of the chart's own Deployment (`deploy/generated/proxy.yaml`): what the
/// operator's `--gateway-proxy-image` defaults to.
fn chart_proxy_image() -> String {
    let text =
        std::fs::read_to_string(lockstep_e2e::repo_root().join("deploy/generated/proxy.yaml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("image: "))
        .expect("an image line");
    line.trim_start()
        .trim_start_matches("image: ")
        .trim_matches('"')
        .to_owned()
}

async fn json_of<K>(api: &Api<K>, name: &str) -> Option<Value>
where
    K: Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    api.get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

/// `kubectl auth can-i VERB RESOURCE -n NS --as SA`: the apiserver's own RBAC answer.
fn can_i(cp: &ControlPlane, ns: &str, sa: &str, verb: &str, resource: &str) -> bool {
    can_i_in(cp, ns, ns, sa, verb, resource)
}

/// [`can_i`] in namespace `ns` for ServiceAccount `sa` of namespace `sa_ns`.
fn can_i_in(cp: &ControlPlane, ns: &str, sa_ns: &str, sa: &str, verb: &str, resource: &str) -> bool {
    let user = format!("system:serviceaccount:{sa_ns}:{sa}");
    let out = cp
        .kubectl()
        .args(["auth", "can-i", verb, resource, "-n", ns, "--as", &user])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// A Gateway naming no fleet gets one of its own, provisioned by the operator with the
/// deployed RBAC (so the `bind` on lockstep-proxy-member and the Role of rights the operator
/// holds are what the apiserver accepts): a GatewayClass naming missing GatewayParameters is
/// `InvalidParameters` and nothing is provisioned; with them, a Deployment, Service,
/// ServiceAccount, Role and two RoleBindings, owned by the Gateway; the Service's cluster IP
/// as the Gateway's address (no load-balancer controller runs); `Programmed=False` saying no
/// replica is ready (no kubelet runs); parameter edits reach the Deployment and the Service;
/// listener edits reach the Service and the Role, not the pod template; a route of another
/// namespace with a backend there (conformance's HTTPRouteCrossNamespace) has the fleet watch
/// that namespace (`--watch-namespaces`) with a read-only Role there, and not the namespace
/// of a backend no ReferenceGrant allows; deleting that route takes them away again; deleting
/// the Gateway (no garbage collector runs) deletes everything, in every namespace.
#[tokio::test]
async fn a_gateway_naming_no_fleet_gets_one_provisioned() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use lockstep_core::gateway::provision::{fleet_name, service_account_name};
    use lockstep_crds::GatewayParameters;

    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    install_gateway_api_crds(&client).await.unwrap();
    operator();
    let ns = cp.namespace(&client, "gw-provision").await.unwrap();
    let suffix = format!("{:08x}", rand::random::<u32>());
    let (class, params_name) = (format!("lockstep-provision-{suffix}"), format!("small-{suffix}"));
    let classes = Api::<GatewayClass>::all(client.clone());
    let parameters = Api::<GatewayParameters>::all(client.clone());
    let gateways = Api::<Gateway>::namespaced(client.clone(), &ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
    let roles = Api::<Role>::namespaced(client.clone(), &ns);
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), &ns);
    let rcs = Api::<RouterConfig>::namespaced(client.clone(), &ns);
    let name = fleet_name(&ns, "gw");
    let sa = service_account_name(&name);
    let member = format!("{name}-member");

    let class_accepted = |want: (&'static str, &'static str)| {
        let (classes, class) = (classes.clone(), class.clone());
        async move {
            eventually(&format!("GatewayClass Accepted {want:?}"), WAIT, || async {
                let c = classes.get(&class).await.ok()?;
                let accepted = c.status?.conditions.into_iter().find(|c| c.type_ == "Accepted")?;
                let at = c.metadata.generation;
                ((accepted.status.as_str(), accepted.reason.as_str()) == want
                    && accepted.observed_generation == at)
                    .then_some(accepted.message)
            })
            .await
            .unwrap()
        }
    };

    // The class names GatewayParameters that do not exist (yet).
    create(
        &classes,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": class},
               "spec": {"controllerName": CONTROLLER_NAME, "parametersRef":
                   {"group": "lockstep.dev", "kind": "GatewayParameters", "name": params_name}}}),
    )
    .await;
    let message = class_accepted(("False", "InvalidParameters")).await;
    assert_eq!(
        message,
        format!("parametersRef lockstep.dev/GatewayParameters {params_name}: not found")
    );
    create(
        &Api::<Secret>::namespaced(client.clone(), &ns),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "app-tls", "namespace": ns},
               "stringData": {"tls.crt": "not checked here", "tls.key": "not checked here"}}),
    )
    .await;
    let listener = |name: &str, protocol: &str, port: i32| {
        let mut l = json!({"name": name, "protocol": protocol, "port": port, "hostname": format!("{name}.example.com")});
        if protocol == "HTTPS" {
            l["tls"] = json!({"certificateRefs": [{"name": "app-tls"}]});
        }
        l
    };
    let gw = create(
        &gateways,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": ns},
               "spec": {"gatewayClassName": class, "listeners": [
                   listener("web", "HTTP", 80), listener("secure", "HTTPS", 443)]}}),
    )
    .await;
    let gw_uid = gw.metadata.uid.clone().unwrap();
    // Not accepted (its class is not): nothing provisioned.
    eventually("Gateway not accepted", WAIT, || async {
        let g = gateways.get("gw").await.ok()?;
        let (status, reason, _) = cond(&g.status?.conditions, "Accepted")?;
        (status == "False" && reason == "InvalidParameters").then_some(())
    })
    .await
    .unwrap();
    assert!(json_of(&deployments, &name).await.is_none());
    assert!(json_of(&services, &name).await.is_none());

    // The parameters appear: 3 replicas, the default Service type (LoadBalancer).
    create(
        &parameters,
        json!({"apiVersion": "lockstep.dev/v1alpha1", "kind": "GatewayParameters",
               "metadata": {"name": params_name}, "spec": {"replicas": 3}}),
    )
    .await;
    class_accepted(("True", "Accepted")).await;
    create(
        &Api::<Service>::namespaced(client.clone(), &ns),
        service("backend", &ns),
    )
    .await;
    create(
        &Api::<HTTPRoute>::namespaced(client.clone(), &ns),
        route(
            "web",
            &ns,
            "gw",
            &["web.example.com"],
            json!({"name": "backend", "port": 80}),
        ),
    )
    .await;

    let owned = |o: &Value| {
        let refs = &o["metadata"]["ownerReferences"];
        assert_eq!(
            refs,
            &json!([{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "gw",
                     "uid": gw_uid, "controller": true}]),
            "{}",
            o["metadata"]["name"]
        );
    };
    let deployment = eventually("the provisioned Deployment", WAIT, || async {
        json_of(&deployments, &name)
            .await
            .filter(|d| d["spec"]["replicas"] == json!(3))
    })
    .await
    .unwrap();
    owned(&deployment);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], json!(sa));
    let container = &pod["containers"][0];
    assert_eq!(container["image"], json!(chart_proxy_image()));
    let args = container["args"].as_array().unwrap();
    for arg in [
        format!("--fleet={name}"),
        "--namespace=$(POD_NAMESPACE)".into(),
        "--listen=0.0.0.0:8080".into(),
        "--tls-listen=0.0.0.0:8443".into(),
    ] {
        assert!(args.contains(&json!(arg)), "{arg} in {args:?}");
    }
    let svc = eventually("the provisioned Service", WAIT, || async {
        json_of(&services, &name).await
    })
    .await
    .unwrap();
    owned(&svc);
    assert_eq!(svc["spec"]["type"], json!("LoadBalancer"));
    let ports = |svc: &Value| -> Vec<(String, i64, i64)> {
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["port"].as_i64().unwrap(),
                    p["targetPort"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        ports(&svc),
        [
            ("http-80".to_owned(), 80, 8080),
            ("https-443".to_owned(), 443, 8443)
        ]
    );
    // The Service selects the pods (which carry the gateway-name label on top).
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[key], value, "{key}");
    }
    assert_eq!(pod_labels["gateway.networking.k8s.io/gateway-name"], json!("gw"));
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_owned();
    owned(&json_of(&accounts, &sa).await.expect("the ServiceAccount"));
    let role = json_of(&roles, &name).await.expect("the Role");
    owned(&role);
    let secret_rule = |role: &Value| {
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resources"] == json!(["secrets"]))
            .cloned()
    };
    assert_eq!(
        secret_rule(&role).expect("a Secret rule")["resourceNames"],
        json!(["app-tls"])
    );
    let binding = json_of(&bindings, &name).await.expect("the RoleBinding");
    owned(&binding);
    assert_eq!(binding["roleRef"]["name"], json!(name));
    assert_eq!(binding["subjects"][0]["name"], json!(sa));
    let member_binding = json_of(&bindings, &member).await.expect("the member RoleBinding");
    owned(&member_binding);
    assert_eq!(
        member_binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "lockstep-proxy-member"})
    );
    // What the ServiceAccount may do, as the apiserver decides it. The member ClusterRole and
    // the admission policy are the chart's (`deploy/generated/rbac-proxy.yaml`), applied here
    // with a token of the ServiceAccount bound to a Pod object, as a kubelet binds one.
    let as_proxy = cp.pod_bound_kubeconfig(&ns, &sa, "p0").unwrap();
    for (verb, resource, allowed) in [
        ("get", "secrets/app-tls", true),
        ("get", "secrets/another", false),
        ("list", "secrets", false),
        ("watch", "routerconfigs.lockstep.dev", true),
        ("create", "routerconfigs.lockstep.dev", false),
        ("list", "endpointslices.discovery.k8s.io", true),
        ("create", "leases.coordination.k8s.io", true),
        ("create", "routerreplicas.lockstep.dev", true),
        ("create", "deployments.apps", false),
    ] {
        let got = eventually(&format!("can-i {verb} {resource}"), WAIT, || async {
            (can_i(cp, &ns, &sa, verb, resource) == allowed).then_some(())
        })
        .await;
        assert!(got.is_ok(), "{sa} {verb} {resource}: want {allowed}");
    }

    // The admission policy knows the provisioned ServiceAccount as a proxy: its own Lease,
    // yes; another Lease of the namespace (another application's leader election, say), no.
    let apply_as_proxy = |yaml: String| {
        let mut child = std::process::Command::new("kubectl")
            .env("KUBECONFIG", &as_proxy)
            .args(["apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), yaml.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let lease = |name: &str| {
        format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec: {{holderIdentity: p0, leaseDurationSeconds: 10}}\n"
        )
    };
    let out = apply_as_proxy(lease("lockstep-proxy-p0"));
    assert!(
        out.status.success(),
        "its own Lease: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = eventually("the policy refuses another Lease", WAIT, || async {
        let out = apply_as_proxy(lease("leader-of-another-app"));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (!out.status.success()).then_some(stderr)
    })
    .await
    .unwrap();
    assert!(
        refused.contains("a lockstep proxy may write only its own Lease and RouterReplica"),
        "{refused}"
    );

    // The Gateway: the cluster IP as its address; Programmed False while no pod is ready.
    let status = eventually("Gateway address and Programmed", WAIT, || async {
        let g = gateways.get("gw").await.ok()?;
        let s = g.status?;
        let programmed = s.conditions.iter().find(|c| c.type_ == "Programmed")?.clone();
        (!s.addresses.is_empty() && programmed.message.contains("0/3 replicas ready"))
            .then_some((s.addresses, programmed))
    })
    .await
    .unwrap();
    assert_eq!(status.0.len(), 1);
    assert_eq!(status.0[0].address_type.as_deref(), Some("IPAddress"));
    assert_eq!(status.0[0].value, cluster_ip);
    assert_eq!(
        (status.1.status.as_str(), status.1.reason.as_str()),
        ("False", "Pending"),
        "{}",
        status.1.message
    );
    // The generated RouterConfig names the provisioned fleet.
    let generated = eventually("the generated RouterConfig", WAIT, || async {
        rcs.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await
    .unwrap();
    assert_eq!(generated.spec.fleet, name);

    // Parameters edited: 1 replica, ClusterIP.
    parameters
        .patch(
            &params_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1, "serviceType": "ClusterIP"}})),
        )
        .await
        .unwrap();
    eventually(
        "replicas and Service type follow the parameters",
        WAIT,
        || async {
            let d = json_of(&deployments, &name).await?;
            let s = json_of(&services, &name).await?;
            (d["spec"]["replicas"] == json!(1) && s["spec"]["type"] == json!("ClusterIP")).then_some(())
        },
    )
    .await
    .unwrap();
    let generation = |d: &Value| d["metadata"]["generation"].as_i64().unwrap();
    let before = generation(&json_of(&deployments, &name).await.unwrap());

    // Listener edits: a port added, the HTTPS listener removed. The Service's ports and the
    // Role's Secrets follow; the Deployment's spec (pod template) does not change.
    gateways
        .patch(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"listeners": [listener("web", "HTTP", 80), listener("alt", "HTTP", 8080)]}}),
            ),
        )
        .await
        .unwrap();
    eventually("the Service follows the listeners", WAIT, || async {
        let s = json_of(&services, &name).await?;
        (ports(&s)
            == [
                ("http-80".to_owned(), 80, 8080),
                ("http-8080".to_owned(), 8080, 8080),
            ])
        .then_some(())
    })
    .await
    .unwrap();
    eventually("the Role no longer grants the Secret", WAIT, || async {
        secret_rule(&json_of(&roles, &name).await?)
            .is_none()
            .then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        generation(&json_of(&deployments, &name).await.unwrap()),
        before,
        "a listener edit does not change the Deployment"
    );

    // A route of another namespace, on a listener that allows it, to a Service of its own
    // namespace (HTTPRouteCrossNamespace) and to one of a third namespace that no
    // ReferenceGrant allows (answered 500: that namespace is not read).
    let apps = cp.namespace(&client, "gw-provision-apps").await.unwrap();
    let data = cp.namespace(&client, "gw-provision-data").await.unwrap();
    gateways
        .patch(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"listeners": [
                listener("web", "HTTP", 80), listener("alt", "HTTP", 8080),
                {"name": "cross", "protocol": "HTTP", "port": 8081, "hostname": "cross.example.com",
                 "allowedRoutes": {"namespaces": {"from": "All"}}}]}})),
        )
        .await
        .unwrap();
    create(
        &Api::<Service>::namespaced(client.clone(), &apps),
        service("api", &apps),
    )
    .await;
    create(
        &Api::<Service>::namespaced(client.clone(), &data),
        service("db", &data),
    )
    .await;
    let cross_route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "cross", "namespace": apps},
        "spec": {
            "parentRefs": [{"name": "gw", "namespace": ns, "sectionName": "cross"}],
            "rules": [{"backendRefs": [{"name": "api", "port": 80}, {"name": "db", "namespace": data, "port": 80}]}],
        },
    });
    let app_routes = Api::<HTTPRoute>::namespaced(client.clone(), &apps);
    create(&app_routes, cross_route.clone()).await;
    let mut watched = [apps.clone(), ns.clone()];
    watched.sort();
    let watch_arg = json!(format!("--watch-namespaces={}", watched.join(",")));
    let app_roles = Api::<Role>::namespaced(client.clone(), &apps);
    let app_bindings = Api::<RoleBinding>::namespaced(client.clone(), &apps);
    let deployment = eventually("the fleet watches the route's namespace", WAIT, || async {
        let d = json_of(&deployments, &name).await?;
        d["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()?
            .contains(&watch_arg)
            .then_some(d)
    })
    .await
    .unwrap();
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(!args.contains(&data), "{data} is not watched: {args}");
    // The fleet is provisioned before the RouterConfig naming the Service is applied.
    eventually(
        "a generated RouterConfig names the Service there",
        WAIT,
        || async {
            let generated = rcs.list(&ListParams::default()).await.ok()?.items;
            generated
                .iter()
                .any(|rc| serde_json::to_string(&rc.spec).unwrap().contains(&apps))
                .then_some(())
        },
    )
    .await
    .unwrap();
    // Read-only RBAC there, labelled as provisioned and naming its Gateway (an ownerReference
    // cannot cross namespaces).
    let app_role = eventually("the Role in the route's namespace", WAIT, || async {
        json_of(&app_roles, &name).await
    })
    .await
    .unwrap();
    let app_binding = eventually("the RoleBinding in the route's namespace", WAIT, || async {
        json_of(&app_bindings, &name).await
    })
    .await
    .unwrap();
    for object in [&app_role, &app_binding] {
        let meta = &object["metadata"];
        assert!(meta.get("ownerReferences").is_none(), "{object}");
        assert_eq!(
            meta["labels"]["lockstep.dev/generated-from"],
            json!("Gateway"),
            "{object}"
        );
        assert_eq!(meta["labels"]["lockstep.dev/fleet"], json!(name), "{object}");
        assert_eq!(
            meta["annotations"]["lockstep.dev/gateway"],
            json!(format!("{ns}/gw/{gw_uid}")),
            "{object}"
        );
    }
    assert!(secret_rule(&app_role).is_none(), "{app_role}");
    assert_eq!(app_binding["roleRef"]["name"], json!(name));
    assert_eq!(
        app_binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": sa, "namespace": ns}])
    );
    assert!(
        json_of(&Api::<Role>::namespaced(client.clone(), &data), &name)
            .await
            .is_none()
    );
    for (namespace, verb, resource, allowed) in [
        (&apps, "list", "endpointslices.discovery.k8s.io", true),
        (&apps, "watch", "services", true),
        (&apps, "watch", "routerconfigs.lockstep.dev", true),
        (&apps, "get", "secrets/any", false),
        (&apps, "list", "secrets", false),
        (&apps, "create", "routerconfigs.lockstep.dev", false),
        (&data, "list", "endpointslices.discovery.k8s.io", false),
    ] {
        let got = eventually(
            &format!("can-i {verb} {resource} in {namespace}"),
            WAIT,
            || async { (can_i_in(cp, namespace, &ns, &sa, verb, resource) == allowed).then_some(()) },
        )
        .await;
        assert!(
            got.is_ok(),
            "{sa} {verb} {resource} in {namespace}: want {allowed}"
        );
    }
    // The route goes: so do the watch and the RBAC of its namespace.
    app_routes.delete("cross", &Default::default()).await.unwrap();
    eventually("the route's namespace is no longer watched", WAIT, || async {
        let d = json_of(&deployments, &name).await?;
        let args = d["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
        let gone = !args.contains("--watch-namespaces")
            && json_of(&app_roles, &name).await.is_none()
            && json_of(&app_bindings, &name).await.is_none();
        gone.then_some(())
    })
    .await
    .unwrap();
    // Back again, for the Gateway's deletion below to take away.
    create(&app_routes, cross_route).await;
    eventually("the Role in the route's namespace again", WAIT, || async {
        json_of(&app_bindings, &name).await
    })
    .await
    .unwrap();

    // A class naming another kind.
    classes
        .patch(
            &class,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"parametersRef": {"group": "", "kind": "ConfigMap", "name": "proxy", "namespace": ns}}})),
        )
        .await
        .unwrap();
    let message = class_accepted(("False", "InvalidParameters")).await;
    assert_eq!(
        message,
        "parametersRef /ConfigMap proxy: lockstep reads only lockstep.dev/GatewayParameters"
    );
    // What runs keeps running while the class is not accepted.
    assert!(json_of(&deployments, &name).await.is_some());

    // A Gateway naming a fleet gets nothing provisioned.
    classes
        .patch(
            &class,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"parametersRef": null}})),
        )
        .await
        .unwrap();
    class_accepted(("True", "Accepted")).await;
    create(
        &gateways,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "named", "namespace": ns, "annotations": {"lockstep.dev/fleet": "elsewhere"}},
               "spec": {"gatewayClassName": class, "listeners": [listener("web", "HTTP", 80)]}}),
    )
    .await;
    eventually("the annotated Gateway accepted", WAIT, || async {
        let g = gateways.get("named").await.ok()?;
        (cond(&g.status?.conditions, "Accepted")?.0 == "True").then_some(())
    })
    .await
    .unwrap();
    assert!(json_of(&deployments, &fleet_name(&ns, "named")).await.is_none());
    // The default parameters: 2 replicas, LoadBalancer.
    eventually("the defaults", WAIT, || async {
        let d = json_of(&deployments, &name).await?;
        let s = json_of(&services, &name).await?;
        (d["spec"]["replicas"] == json!(2) && s["spec"]["type"] == json!("LoadBalancer")).then_some(())
    })
    .await
    .unwrap();

    // Deleting the Gateway (no controller-manager, so no garbage collector) deletes it all.
    gateways.delete("gw", &Default::default()).await.unwrap();
    eventually("everything provisioned is deleted", WAIT, || async {
        let gone = json_of(&deployments, &name).await.is_none()
            && json_of(&services, &name).await.is_none()
            && json_of(&accounts, &sa).await.is_none()
            && json_of(&roles, &name).await.is_none()
            && json_of(&bindings, &name).await.is_none()
            && json_of(&bindings, &member).await.is_none()
            && json_of(&app_roles, &name).await.is_none()
            && json_of(&app_bindings, &name).await.is_none()
            && rcs.list(&ListParams::default()).await.ok()?.items.is_empty();
        gone.then_some(())
    })
    .await
    .unwrap();
}
/// A self-signed certificate made with rcgen, its key, and its DER (what a TLS client is
/// presented: comparing it is comparing fingerprints).
#[derive(Clone)]
struct Cert {
    pem: String,
    key: String,
    der: Vec<u8>,
}

fn cert_for(host: &str) -> Cert {
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
    params.serial_number = Some(rcgen::SerialNumber::from(
        rand::random::<u64>().to_be_bytes().to_vec(),
    ));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Cert {
        pem: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// GET `https://host/` through the TLS listener `tls` (SNI `host`), trusting only `root`:
/// the certificate presented and the backend that answered.
async fn https_get(tls: SocketAddr, host: &str, root: &Cert) -> Result<(Vec<u8>, Option<String>), String> {
    https_get_trusting(tls, host, Some(root)).await
}

/// As [`https_get`] without checking the certificate at all.
async fn presented_unverified(tls: SocketAddr, host: &str) -> Result<(Vec<u8>, Option<String>), String> {
    https_get_trusting(tls, host, None).await
}

/// GET `https://host/` through `tls` (SNI `host`), trusting only `root`, or anything when
/// None.
async fn https_get_trusting(
    tls: SocketAddr,
    host: &str,
    root: Option<&Cert>,
) -> Result<(Vec<u8>, Option<String>), String> {
    let builder = match root {
        Some(root) => reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(root.pem.as_bytes()).unwrap()),
        None => reqwest::Client::builder().danger_accept_invalid_certs(true),
    };
    let client = builder
        .resolve(host, tls)
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let response = client
        .get(format!("https://{host}:{}/", tls.port()))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let presented = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate().map(<[u8]>::to_vec))
        .ok_or("no peer certificate")?;
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    Ok((presented, body["backend"].as_str().map(str::to_owned)))
}

/// Which of `certs` replica `tls` presents for SNI `host` (None: none of them, or no answer).
async fn presented(tls: SocketAddr, host: &str, certs: &[&Cert]) -> Option<usize> {
    for (i, cert) in certs.iter().enumerate() {
        if let Ok((der, _)) = https_get(tls, host, cert).await
            && der == cert.der
        {
            return Some(i);
        }
    }
    None
}

/// Every replica that does not present `want` for SNI `host` and answer from `backend`.
async fn not_serving(replicas: &[SocketAddr], host: &str, want: &Cert, backend: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    for tls in replicas {
        match https_get(*tls, host, want).await {
            Ok((der, answered)) if der == want.der && answered.as_deref() == Some(backend) => {}
            other => wrong.push(format!("{tls}: {:?}", other.map(|(_, b)| b))),
        }
    }
    wrong
}

fn programmed(gw: &Gateway) -> Option<(String, String, Option<i64>)> {
    cond(&gw.status.as_ref()?.conditions, "Programmed")
}

fn resource_version(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("etcd resourceVersions are numbers")
}

/// Replaces the data of Secret `name` (of `secrets`' namespace) with certificate `new` while
/// the third replica is stopped (SIGSTOP: its Lease stays live), and checks that the Gateway's Programmed=True is never written
/// after the change while a replica does not present `new` for `host`: Programmed turns False
/// while the replica is frozen, the plugin's wait times out, and after SIGCONT Programmed is
/// True again with every replica presenting `new` (and answering from `backend`).
#[allow(clippy::too_many_arguments)]
async fn rotate_with_a_frozen_replica(
    f: &Fixture,
    gateways: &Api<Gateway>,
    secrets: &Api<k8s_openapi::api::core::v1::Secret>,
    name: &str,
    host: &str,
    old: &Cert,
    new: &Cert,
    proxies: &[lockstep_e2e::fleet::Proxy],
    backend: &'static str,
) {
    let replicas: Vec<SocketAddr> = proxies.iter().map(|p| p.tls.unwrap()).collect();
    assert_eq!(
        not_serving(&replicas, host, old, backend).await,
        Vec::<String>::new()
    );
    // The Gateway's generation does not change with a Secret: what was written after the
    // change is told by resourceVersion (etcd's revision, one counter for every object).
    // Each Programmed=True event is checked when it arrives; which came after the change is
    // sorted out once the change's resourceVersion is known.
    let checked = Arc::new(Mutex::new(Vec::<(u64, Vec<String>)>::new()));
    let watch = {
        let (gateways, checked, replicas, host) = (
            gateways.clone(),
            checked.clone(),
            replicas.clone(),
            host.to_owned(),
        );
        let new = new.clone();
        tokio::spawn(async move {
            let cfg = watcher::Config::default().fields("metadata.name=gw");
            let mut events = std::pin::pin!(watcher(gateways, cfg).applied_objects());
            while let Some(event) = events.next().await {
                let Ok(gw) = event else { continue };
                if !programmed(&gw).is_some_and(|(s, _, g)| s == "True" && g == gw.metadata.generation) {
                    continue;
                }
                let mut wrong = Vec::new();
                for tls in &replicas {
                    if presented(*tls, &host, &[&new]).await != Some(0) {
                        wrong.push(tls.to_string());
                    }
                }
                checked
                    .lock()
                    .unwrap()
                    .push((resource_version(&gw.metadata), wrong));
            }
        })
    };

    proxies[2].process.signal(Signal::SIGSTOP).unwrap();
    check::put_tls_secret(secrets, name, &new.pem, &new.key)
        .await
        .unwrap();
    let secret = secrets.get(name).await.unwrap();
    // Programmed turns False once the operator sees the change, and stays so while the
    // frozen replica presents the old certificate.
    let pending = eventually("Programmed=False after the certificate change", WAIT, || async {
        let gw = gateways.get("gw").await.ok()?;
        let p = programmed(&gw)?;
        (resource_version(&gw.metadata) > resource_version(&secret.metadata) && p.0 == "False").then_some(p)
    })
    .await;
    let frozen_wait = lockstep_plugin(f.cp, &["wait", "gateway/gw", "-n", &f.ns, "--timeout", "3s"]);
    let during = (
        programmed(&gateways.get("gw").await.unwrap()),
        presented(replicas[0], host, &[old, new]).await,
        presented(replicas[1], host, &[old, new]).await,
    );
    proxies[2].process.signal(Signal::SIGCONT).unwrap();
    let pending = pending.unwrap();
    assert_eq!(pending.1, "Pending", "{pending:?}");
    assert_eq!(
        frozen_wait.status.code(),
        Some(2),
        "the wait on the Gateway timed out while a replica was frozen: {}",
        String::from_utf8_lossy(&frozen_wait.stdout)
    );
    assert_eq!(
        (during.0.map(|p| p.0), during.1, during.2),
        (Some("False".to_owned()), Some(1), Some(1)),
        "while frozen: Programmed False, the other replicas present the new certificate"
    );

    eventually("Programmed=True after SIGCONT", WAIT, || async {
        let gw = gateways.get("gw").await.ok()?;
        let p = programmed(&gw)?;
        (resource_version(&gw.metadata) > resource_version(&secret.metadata)
            && p.0 == "True"
            && p.2 == gw.metadata.generation)
            .then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        not_serving(&replicas, host, new, backend).await,
        Vec::<String>::new()
    );
    let changed_at = resource_version(&secret.metadata);
    eventually(
        "the watch checked Programmed=True after the change",
        WAIT,
        || async {
            let checked = checked.lock().unwrap();
            checked.iter().any(|(rv, _)| *rv > changed_at).then_some(())
        },
    )
    .await
    .unwrap();
    watch.abort();
    let checked = checked.lock().unwrap().clone();
    let after: Vec<&(u64, Vec<String>)> = checked.iter().filter(|(rv, _)| *rv > changed_at).collect();
    let violations: Vec<String> = after
        .iter()
        .filter(|(_, wrong)| !wrong.is_empty())
        .map(|(rv, wrong)| {
            format!(
                "Programmed=True at resourceVersion {rv} while {wrong:?} did not present the new certificate"
            )
        })
        .collect();
    assert!(violations.is_empty(), "{violations:?}");
}

/// HTTPS listeners of a Gateway naming a fleet of three real proxies with TLS listeners: one
/// with a certificate of the Gateway's namespace, one with a certificate of another namespace
/// allowed by a ReferenceGrant (copied into the Gateway's namespace). Requests over TLS with
/// SNI reach the HTTPRoute's backend on every replica; a certificate change keeps Programmed
/// False until every replica presents the new certificate; certificateRefs to a missing
/// Secret or across namespaces without a grant give ResolvedRefs=False and serve nothing,
/// while the other listeners keep serving.
#[tokio::test]
async fn an_https_gateway_is_programmed_only_once_every_replica_presents_its_certificates() {
    let cp = ControlPlane::shared();
    let admin = cp.client().await.unwrap();
    install_gateway_api_crds(&admin).await.unwrap();
    operator();
    let f = Fixture::new("gw-https").await;
    let client = f.client.clone();
    let ns = f.ns.clone();
    let certs_ns = cp.namespace(&client, "gw-https-certs").await.unwrap();
    let class = lockstep_class(&client, "https").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    f.cp.kubectl_apply(&service_for(&ns, "one", &one)).unwrap();
    let (local_host, remote_host) = ("secure.example.com", "remote.example.com");
    let (local_a, local_b) = (cert_for(local_host), cert_for(local_host));
    let (remote_a, remote_b) = (cert_for(remote_host), cert_for(remote_host));
    let here = f.secrets();
    let there = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &certs_ns);
    check::put_tls_secret(&here, "secure-cert", &local_a.pem, &local_a.key)
        .await
        .unwrap();
    check::put_tls_secret(&there, "remote-cert", &remote_a.pem, &remote_a.key)
        .await
        .unwrap();
    // Not granted (the grant names remote-cert only).
    let ungranted = cert_for("ungranted.example.com");
    check::put_tls_secret(&there, "other-cert", &ungranted.pem, &ungranted.key)
        .await
        .unwrap();
    create(
        &Api::<ReferenceGrant>::namespaced(client.clone(), &certs_ns),
        json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
               "metadata": {"name": "gateways-to-remote-cert", "namespace": certs_ns},
               "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": ns}],
                        "to": [{"group": "", "kind": "Secret", "name": "remote-cert"}]}}),
    )
    .await;
    let proxies = f.proxies_with(3, |spec| {
        spec.lease_seconds = 30;
        spec.tls = true;
    });
    let replicas: Vec<SocketAddr> = proxies.iter().map(|p| p.tls.unwrap()).collect();

    let https = |name: &str, port: u16, host: &str, cert: Value| {
        json!({"name": name, "protocol": "HTTPS", "port": port, "hostname": host,
               "tls": {"certificateRefs": [cert]}})
    };
    let served = vec![
        https("secure", 443, local_host, json!({"name": "secure-cert"})),
        https(
            "remote",
            8443,
            remote_host,
            json!({"name": "remote-cert", "namespace": certs_ns}),
        ),
    ];
    let gateways = Api::<Gateway>::namespaced(client.clone(), &ns);
    let routes = Api::<HTTPRoute>::namespaced(client.clone(), &ns);
    let rcs = Api::<RouterConfig>::namespaced(client.clone(), &ns);
    create(
        &gateways,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": ns, "annotations": {"lockstep.dev/fleet": f.fleet}},
               "spec": {"gatewayClassName": class, "listeners": served.clone()}}),
    )
    .await;
    // No hostnames: the route attaches to every listener, under each listener's host name.
    create(
        &routes,
        route("web", &ns, "gw", &[], json!({"name": "one", "port": 80})),
    )
    .await;

    let plugin_wait = |target: &str| {
        let out = lockstep_plugin(f.cp, &["wait", target, "-n", &ns, "--timeout", "60s"]);
        assert!(
            out.status.success(),
            "kubectl lockstep wait {target}: {:?}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    plugin_wait("gateway/gw");
    plugin_wait("httproute/web");
    // HTTPS end to end: TLS with SNI, the listener's certificate, the route's backend, on every
    // replica, for both listeners.
    assert_eq!(
        not_serving(&replicas, local_host, &local_a, "one").await,
        Vec::<String>::new()
    );
    assert_eq!(
        not_serving(&replicas, remote_host, &remote_a, "one").await,
        Vec::<String>::new()
    );
    // The remote certificate is served from a copy in the Gateway's namespace, made by lockstep.
    let copies: Vec<String> = here
        .list(&ListParams::default().labels("lockstep.dev/generated-from=Gateway"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| {
            let a = s.metadata.annotations.clone().unwrap_or_default();
            format!(
                "{}<-{}",
                s.metadata.name.clone().unwrap(),
                a["lockstep.dev/source-secret"]
            )
        })
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(
        copies[0].ends_with(&format!("<-{certs_ns}/remote-cert")),
        "{copies:?}"
    );

    // A certificate change, in the Gateway's namespace and then across namespaces.
    rotate_with_a_frozen_replica(
        &f,
        &gateways,
        &here,
        "secure-cert",
        local_host,
        &local_a,
        &local_b,
        &proxies,
        "one",
    )
    .await;
    rotate_with_a_frozen_replica(
        &f,
        &gateways,
        &there,
        "remote-cert",
        remote_host,
        &remote_a,
        &remote_b,
        &proxies,
        "one",
    )
    .await;

    // Unusable certificateRefs: a missing Secret, and a Secret of another namespace no grant
    // allows. Those listeners are not served; the others keep serving.
    let mut listeners = served.clone();
    listeners.push(https(
        "missing",
        9443,
        "missing.example.com",
        json!({"name": "nope"}),
    ));
    listeners.push(https(
        "ungranted",
        10443,
        "ungranted.example.com",
        json!({"name": "other-cert", "namespace": certs_ns}),
    ));
    gateways
        .patch(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"listeners": listeners}})),
        )
        .await
        .unwrap();
    let gw = listeners_judged(&gateways, 4, 2).await;
    let status = gw.status.unwrap();
    let listener = |name: &str, t: &str| {
        let l = status.listeners.iter().find(|l| l.name == name).unwrap();
        cond(&l.conditions, t).map(|(s, r, _)| (s, r))
    };
    let want = |s: &str, r: &str| Some((s.to_owned(), r.to_owned()));
    assert_eq!(
        listener("missing", "ResolvedRefs"),
        want("False", "InvalidCertificateRef")
    );
    assert_eq!(
        listener("ungranted", "ResolvedRefs"),
        want("False", "RefNotPermitted")
    );
    assert_eq!(listener("missing", "Programmed"), want("False", "Invalid"));
    assert_eq!(listener("ungranted", "Programmed"), want("False", "Invalid"));
    assert_eq!(listener("secure", "ResolvedRefs"), want("True", "ResolvedRefs"));
    assert_eq!(listener("remote", "ResolvedRefs"), want("True", "ResolvedRefs"));
    plugin_wait("gateway/gw");
    plugin_wait("httproute/web");
    let generated: Vec<String> = rcs
        .list(&ListParams::default().labels("lockstep.dev/generated-from=Gateway"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|rc| rc.metadata.annotations.clone().unwrap_or_default()["lockstep.dev/listener"].clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        generated,
        ["remote", "secure"],
        "nothing is generated for the bad listeners"
    );
    for tls in &replicas {
        assert_eq!(
            presented(*tls, "missing.example.com", &[&local_b, &remote_b]).await,
            None,
            "{tls} presents nothing for missing.example.com"
        );
        assert_eq!(
            presented(*tls, "ungranted.example.com", &[&ungranted, &local_b, &remote_b]).await,
            None,
            "{tls} presents nothing for ungranted.example.com"
        );
    }
    assert_eq!(
        not_serving(&replicas, local_host, &local_b, "one").await,
        Vec::<String>::new()
    );
    assert_eq!(
        not_serving(&replicas, remote_host, &remote_b, "one").await,
        Vec::<String>::new()
    );

    // A listener's certificate is presented for the listener's host name whatever names it
    // holds (Gateway API asks no coverage; the client judges the name), where a RouterConfig
    // of a user's would be refused for it.
    let elsewhere = "elsewhere.example.com";
    let other_names = cert_for("unrelated.example.org");
    check::put_tls_secret(&here, "other-names-cert", &other_names.pem, &other_names.key)
        .await
        .unwrap();
    listeners.push(https(
        "other-names",
        11443,
        elsewhere,
        json!({"name": "other-names-cert"}),
    ));
    gateways
        .patch(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"listeners": listeners}})),
        )
        .await
        .unwrap();
    listeners_judged(&gateways, 5, 3).await;
    plugin_wait("gateway/gw");
    plugin_wait("httproute/web");
    let gw = gateways.get("gw").await.unwrap();
    let l = gw
        .status
        .as_ref()
        .unwrap()
        .listeners
        .iter()
        .find(|l| l.name == "other-names")
        .unwrap();
    assert_eq!(
        cond(&l.conditions, "Programmed").map(|(s, r, _)| (s, r)),
        want("True", "Programmed"),
        "{:?}",
        l.conditions
    );
    for tls in &replicas {
        assert_eq!(
            presented_unverified(*tls, elsewhere).await,
            Ok((other_names.der.clone(), Some("one".to_owned()))),
            "{tls} presents the listener's certificate for {elsewhere}"
        );
    }

    // Deleting the Gateway deletes the copy with the generated RouterConfigs (no
    // controller-manager here).
    gateways.delete("gw", &Default::default()).await.unwrap();
    eventually("the certificate copy deleted", WAIT, || async {
        let left = here
            .list(&ListParams::default().labels("lockstep.dev/generated-from=Gateway"))
            .await
            .ok()?;
        left.items.is_empty().then_some(())
    })
    .await
    .unwrap();
}

/// A Gateway's static address becomes its provisioned Service's cluster IP, against a real
/// apiserver: one outside the Service range (10.0.0.0/24, e2e/controlplane/up.sh) is refused
/// by the apiserver and the Gateway says `Programmed=False AddressNotUsable` naming it; a
/// free one of the range is the Service's cluster IP and the Gateway's `status.addresses`;
/// another one replaces the Service (a cluster IP cannot change). The provisioned objects
/// carry the Gateway's infrastructure labels and annotations and the gateway-name label.
#[tokio::test(flavor = "multi_thread")]
async fn a_static_address_becomes_the_fleet_services_cluster_ip() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use lockstep_core::gateway::provision::{GATEWAY_NAME_LABEL, fleet_name, service_account_name};

    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    install_gateway_api_crds(&client).await.unwrap();
    operator();
    let ns = cp.namespace(&client, "gw-static").await.unwrap();
    let class = format!("lockstep-static-{:08x}", rand::random::<u32>());
    create(
        &Api::<GatewayClass>::all(client.clone()),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": class}, "spec": {"controllerName": CONTROLLER_NAME}}),
    )
    .await;
    let gateways = Api::<Gateway>::namespaced(client.clone(), &ns);
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let name = fleet_name(&ns, "gw");
    create(
        &gateways,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": ns},
               "spec": {"gatewayClassName": class,
                        "addresses": [{"type": "IPAddress", "value": "192.0.2.1"}],
                        "infrastructure": {"labels": {"team": "edge"}, "annotations": {"owner": "edge@example.com"}},
                        "listeners": [{"name": "web", "protocol": "HTTP", "port": 80}]}}),
    )
    .await;
    let programmed = |want_reason: &'static str| {
        let gateways = gateways.clone();
        async move {
            eventually(
                &format!("Gateway Programmed reason {want_reason}"),
                WAIT,
                || async {
                    let gw = gateways.get("gw").await.ok()?;
                    let status = gw.status.clone()?;
                    let (_, reason, at) = cond(&status.conditions, "Programmed")?;
                    (reason == want_reason && at == gw.metadata.generation).then(|| {
                        let c = status
                            .conditions
                            .iter()
                            .find(|c| c.type_ == "Programmed")
                            .unwrap();
                        (c.message.clone(), status.addresses.clone())
                    })
                },
            )
            .await
            .unwrap()
        }
    };
    let (message, addresses) = programmed("AddressNotUsable").await;
    assert!(message.contains("192.0.2.1"), "{message}");
    assert!(addresses.is_empty(), "{addresses:?}");
    assert!(
        services.get_opt(&name).await.unwrap().is_none(),
        "the apiserver refused it"
    );

    // The provisioned objects carry the labels and annotations.
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get(&service_account_name(&name))
        .await
        .unwrap();
    let labels = sa.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("edge"));
    assert_eq!(labels.get(GATEWAY_NAME_LABEL).map(String::as_str), Some("gw"));
    let annotations = sa.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("owner").map(String::as_str),
        Some("edge@example.com")
    );

    let set_address = |ip: &'static str| {
        let gateways = gateways.clone();
        async move {
            gateways
                .patch(
                    "gw",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"addresses": [{"type": "IPAddress", "value": ip}]}})),
                )
                .await
                .unwrap();
        }
    };
    let service_at = |ip: &'static str| {
        let (services, gateways, name) = (services.clone(), gateways.clone(), name.clone());
        async move {
            eventually(&format!("Service and status.addresses at {ip}"), WAIT, || async {
                let svc = services.get_opt(&name).await.ok()??;
                let gw = gateways.get("gw").await.ok()?;
                let listed: Vec<String> = gw.status?.addresses.into_iter().map(|a| a.value).collect();
                (svc.spec.as_ref()?.cluster_ip.as_deref() == Some(ip) && listed == [ip])
                    .then(|| svc.metadata.uid.clone().unwrap())
            })
            .await
            .unwrap()
        }
    };
    set_address("10.0.0.13").await;
    let first = service_at("10.0.0.13").await;
    // No kubelet here, so no replica gets ready: Programmed is Pending, not about the address.
    let (message, _) = programmed("Pending").await;
    assert!(!message.contains("10.0.0.13"), "{message}");
    set_address("10.0.0.12").await;
    let second = service_at("10.0.0.12").await;
    assert_ne!(
        first, second,
        "a cluster IP cannot change: the Service was replaced"
    );
}

/// The lockstep ancestor entry of BackendTLSPolicy `name`: (Accepted, ResolvedRefs) as
/// (status, reason), once both are at `generation`.
async fn policy_at(
    policies: &Api<BackendTLSPolicy>,
    name: &str,
    generation: i64,
    want: (&str, &str),
) -> (Vec<PolicyAncestorStatus>, (String, String), (String, String)) {
    eventually(&format!("policy {name} status {want:?}"), WAIT, || async {
        let policy = policies.get(name).await.ok()?;
        let ancestors = policy.status?.ancestors;
        let ours = ancestors.iter().find(|a| a.controller_name == CONTROLLER_NAME)?;
        if !all_at(&ours.conditions, generation) {
            return None;
        }
        let (a, ar, _) = cond(&ours.conditions, "Accepted")?;
        let (r, rr, _) = cond(&ours.conditions, "ResolvedRefs")?;
        (a == want.0 && ar == want.1).then(|| (ancestors.clone(), (a, ar), (r, rr)))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_backend_tls_policy_is_served_in_the_generated_config_and_gets_its_status() {
    let cp = ControlPlane::shared();
    let client: Client = cp.client().await.unwrap();
    install_gateway_api_crds(&client).await.unwrap();
    operator();
    let ns = cp.namespace(&client, "gw-btls").await.unwrap();
    let class = lockstep_class(&client, "btls").await;
    let ca = cert_for("ca.example.com");
    cp.kubectl_apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ca, namespace: {ns}}}\ndata:\n  ca.crt: |\n{}",
        ca.pem.lines().map(|l| format!("    {l}\n")).collect::<String>()
    ))
    .unwrap();
    create(
        &Api::<Service>::namespaced(client.clone(), &ns),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "secure", "namespace": ns},
               "spec": {"ports": [{"name": "https", "port": 443}]}}),
    )
    .await;
    create(
        &Api::<Gateway>::namespaced(client.clone(), &ns),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": ns},
               "spec": {"gatewayClassName": class, "listeners": [
                   {"name": "web", "protocol": "HTTP", "port": 80}]}}),
    )
    .await;
    create(
        &Api::<HTTPRoute>::namespaced(client.clone(), &ns),
        route(
            "r",
            &ns,
            "gw",
            &["app.example.com"],
            json!({"name": "secure", "port": 443}),
        ),
    )
    .await;
    let policies = Api::<BackendTLSPolicy>::namespaced(client.clone(), &ns);
    create(
        &policies,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy",
               "metadata": {"name": "p", "namespace": ns},
               "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "secure", "sectionName": "https"}],
                        "validation": {"hostname": "abc.example.com",
                                       "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}]}}}),
    )
    .await;

    let (ancestors, _, resolved) = policy_at(&policies, "p", 1, ("True", "Accepted")).await;
    assert_eq!(resolved, ("True".to_owned(), "ResolvedRefs".to_owned()));
    assert_eq!(ancestors.len(), 1);
    assert_eq!(ancestors[0].ancestor_ref.name, "gw");
    assert_eq!(ancestors[0].ancestor_ref.namespace.as_deref(), Some(ns.as_str()));

    // The generated RouterConfig carries the TLS setting through the CRD's schema (a field
    // the schema lacked would be pruned by the apiserver).
    let rcs = Api::<RouterConfig>::namespaced(client.clone(), &ns);
    // The first backend TLS setting of the generated RouterConfigs.
    let backend_tls = || async {
        let list = rcs.list(&ListParams::default()).await.ok()?;
        list.items.iter().find_map(|rc| {
            rc.spec
                .rules
                .iter()
                .flat_map(|r| &r.paths)
                .flat_map(|p| &p.backends)
                .find_map(|b| b.service.as_ref()?.tls.clone())
        })
    };
    let tls = eventually("generated RouterConfig with backend TLS", WAIT, &backend_tls)
        .await
        .unwrap();
    assert_eq!(tls.hostname, "abc.example.com");
    assert_eq!(tls.ca_certificates.as_deref(), Some(ca.pem.as_str()));

    // An edit is observed at the new generation.
    policies
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"validation": {"hostname": "foo.example.com"}}})),
        )
        .await
        .unwrap();
    policy_at(&policies, "p", 2, ("True", "Accepted")).await;

    // The Gateway's backend client certificate (`spec.tls.backend.clientCertificateRef`):
    // ResolvedRefs on the Gateway, and the Secret named on the TLS backend through the CRD's
    // schema; one of another namespace without a ReferenceGrant is RefNotPermitted, and the
    // listener keeps serving the RouterConfig it had.
    let client_cert = cert_for("client.example.com");
    create(
        &Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "client", "namespace": ns},
               "stringData": {"tls.crt": client_cert.pem, "tls.key": client_cert.key}}),
    )
    .await;
    let gateways = Api::<Gateway>::namespaced(client.clone(), &ns);
    let present = |namespace: Option<&str>| {
        let mut reference = json!({"group": "", "kind": "Secret", "name": "client"});
        if let Some(namespace) = namespace {
            reference["namespace"] = json!(namespace);
        }
        json!({"spec": {"tls": {"backend": {"clientCertificateRef": reference}}}})
    };
    gateways
        .patch("gw", &PatchParams::default(), &Patch::Merge(present(None)))
        .await
        .unwrap();
    let gateway_resolved_refs = |want: (&'static str, &'static str)| {
        let gateways = gateways.clone();
        async move {
            eventually("the Gateway's ResolvedRefs", WAIT, || async {
                let gw = gateways.get("gw").await.ok()?;
                let generation = gw.metadata.generation;
                let conditions = gw.status?.conditions;
                let (status, reason, observed) = cond(&conditions, "ResolvedRefs")?;
                (observed == generation && (status.as_str(), reason.as_str()) == want).then_some(())
            })
            .await
            .unwrap()
        }
    };
    gateway_resolved_refs(("True", "ResolvedRefs")).await;
    let presented = eventually(
        "a TLS backend presenting the client certificate",
        WAIT,
        || async { backend_tls().await?.client_certificate_secret_name },
    )
    .await
    .unwrap();
    assert_eq!(presented, "client");
    gateways
        .patch(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(present(Some("elsewhere"))),
        )
        .await
        .unwrap();
    gateway_resolved_refs(("False", "RefNotPermitted")).await;

    // Without its ConfigMap the policy has no usable CA.
    cp.kubectl_ok(&["delete", "configmap", "ca", "-n", &ns]).unwrap();
    let (_, _, resolved) = policy_at(&policies, "p", 2, ("False", "NoValidCACertificate")).await;
    assert_eq!(
        resolved,
        ("False".to_owned(), "InvalidCACertificateRef".to_owned())
    );
}

/// ListenerSets against the real apiserver and the v1.6.3 CRDs: the operator writes each
/// ListenerSet's status (server-side applied, at its own generation), the Gateway's
/// `attachedListenerSets`, and the parent entry of a route naming a ListenerSet (its
/// `parentRef` as written, `lockstep.dev/Ready` from the barrier: no kubelet runs the
/// provisioned fleet, so never True here).
#[tokio::test]
async fn listener_sets_get_their_status_and_routes_attach_to_them() {
    let cp = ControlPlane::shared();
    let client: Client = cp.client().await.unwrap();
    install_gateway_api_crds(&client).await.unwrap();
    operator();
    let ns = cp.namespace(&client, "ls").await.unwrap();
    let other = cp.namespace(&client, "ls-other").await.unwrap();
    let class = lockstep_class(&client, "ls").await;
    let gateways = Api::<Gateway>::namespaced(client.clone(), &ns);
    let routes = Api::<HTTPRoute>::namespaced(client.clone(), &ns);
    let sets_here = Api::<ListenerSet>::namespaced(client.clone(), &ns);
    let sets_there = Api::<ListenerSet>::namespaced(client.clone(), &other);
    create(
        &Api::<Service>::namespaced(client.clone(), &ns),
        service("web", &ns),
    )
    .await;
    create(
        &gateways,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": ns},
               "spec": {"gatewayClassName": class, "allowedListeners": {"namespaces": {"from": "Same"}},
                        "listeners": [{"name": "web", "protocol": "HTTP", "port": 80, "hostname": "gw.example.com"}]}}),
    )
    .await;
    let set = |name: &str, namespace: &str, host: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
               "metadata": {"name": name, "namespace": namespace},
               "spec": {"parentRef": {"name": "gw", "namespace": ns},
                        "listeners": [{"name": "extra", "protocol": "HTTP", "port": 80, "hostname": host}]}})
    };
    create(&sets_here, set("mine", &ns, "mine.example.com")).await;
    create(&sets_there, set("foreign", &other, "foreign.example.com")).await;
    create(
        &routes,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "via-set", "namespace": ns},
               "spec": {"parentRefs": [{"kind": "ListenerSet", "group": "gateway.networking.k8s.io", "name": "mine"}],
                        "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}),
    )
    .await;

    let judged = |api: Api<ListenerSet>, name: &'static str| async move {
        eventually(&format!("ListenerSet {name} judged"), WAIT, || async {
            let s = api.get(name).await.ok()?;
            let generation = s.metadata.generation?;
            let status = s.status.clone()?;
            // The CRD's default conditions are Unknown Pending with no observedGeneration.
            all_at(&status.conditions, generation).then_some(status)
        })
        .await
        .unwrap()
    };
    // Judged once the route is attached too (the first status may come before the route).
    let mine = eventually("ListenerSet mine with its route", WAIT, || async {
        let status = judged(sets_here.clone(), "mine").await;
        (status.listeners.first()?.attached_routes == 1).then_some(status)
    })
    .await
    .unwrap();
    assert!(
        cond(&mine.conditions, "Accepted").map(|c| (c.0, c.1)) == Some(("True".into(), "Accepted".into())),
        "{mine:?}"
    );
    // Its listener carries a route, and no replica serves it (no kubelet runs the fleet).
    let programmed = cond(&mine.conditions, "Programmed");
    assert!(
        programmed
            .as_ref()
            .is_some_and(|c| c.0 == "False" && c.1 == "Pending"),
        "{programmed:?}"
    );
    let extra = &mine.listeners[0];
    assert!(extra.name == "extra" && extra.attached_routes == 1);
    assert!(cond(&extra.conditions, "Accepted").map(|c| c.0) == Some("True".into()));
    let foreign = judged(sets_there.clone(), "foreign").await;
    assert!(
        cond(&foreign.conditions, "Accepted").map(|c| (c.0, c.1))
            == Some(("False".into(), "NotAllowed".into()))
    );
    assert!(foreign.listeners.is_empty());

    eventually("attachedListenerSets 1", WAIT, || async {
        let gw = gateways.get("gw").await.ok()?;
        (gw.status?.attached_listener_sets == Some(1)).then_some(())
    })
    .await
    .unwrap();
    let entry = parent_at(&routes, "via-set", 1).await;
    assert!(entry.parent_ref.kind.as_deref() == Some("ListenerSet") && entry.parent_ref.name == "mine");
    assert!(cond(&entry.conditions, "Accepted").map(|c| c.0) == Some("True".into()));
    assert!(cond(&entry.conditions, "lockstep.dev/Ready").map(|c| c.0) == Some("False".into()));

    // Allowing every namespace attaches the other ListenerSet too.
    gateways
        .patch(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"allowedListeners": {"namespaces": {"from": "All"}}}})),
        )
        .await
        .unwrap();
    eventually("foreign accepted", WAIT, || async {
        let s = sets_there.get("foreign").await.ok()?.status?;
        (cond(&s.conditions, "Accepted").map(|c| c.0) == Some("True".into())).then_some(())
    })
    .await
    .unwrap();
    eventually("attachedListenerSets 2", WAIT, || async {
        let gw = gateways.get("gw").await.ok()?;
        (gw.status?.attached_listener_sets == Some(2)).then_some(())
    })
    .await
    .unwrap();
}

/// `examples/gateway.yaml` (the README's and the demo's Gateway and HTTPRoute) applies with
/// kubectl as it is, again without a new generation, and is judged by the operator:
/// the Gateway accepted, the route accepted on it with its backend resolved. (The demo serves
/// it through three real proxies; no fleet runs here.)
#[tokio::test]
async fn the_gateway_example_applies_and_is_accepted() {
    let cp = ControlPlane::shared();
    let client: Client = cp.client().await.unwrap();
    install_gateway_api_crds(&client).await.unwrap();
    operator();
    let file = lockstep_e2e::repo_root().join("examples/gateway.yaml");
    let file = file.to_str().unwrap();
    // Its backend, Service api port 8080, as the demo has it.
    cp.kubectl_apply("apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: default}\nspec:\n  ports: [{name: http, port: 8080}]\n")
        .unwrap();
    let out = cp.kubectl_ok(&["apply", "-f", file]).unwrap();
    assert!(out.contains("httproute.gateway.networking.k8s.io/web"), "{out}");
    // Applying again changes nothing the apiserver counts: no new generation (kubectl may say
    // "configured": it replaces atomic lists the apiserver filled defaults into).
    let generations = async || {
        let gw = Api::<Gateway>::namespaced(client.clone(), "default")
            .get("web")
            .await
            .unwrap();
        let route = Api::<HTTPRoute>::namespaced(client.clone(), "default")
            .get("web")
            .await
            .unwrap();
        (gw.metadata.generation, route.metadata.generation)
    };
    let before = generations().await;
    cp.kubectl_ok(&["apply", "-f", file]).unwrap();
    assert_eq!(generations().await, before);
    assert_eq!(before, (Some(1), Some(1)));
    let gateways = Api::<Gateway>::namespaced(client.clone(), "default");
    eventually("the example Gateway accepted", WAIT, || async {
        let gw = gateways.get("web").await.ok()?;
        let (status, _, observed) = cond(&gw.status?.conditions, "Accepted")?;
        (status == "True" && observed == gw.metadata.generation).then_some(())
    })
    .await
    .unwrap();
    let routes = Api::<HTTPRoute>::namespaced(client.clone(), "default");
    let parent = parent_at(&routes, "web", 1).await;
    assert_eq!(
        cond(&parent.conditions, "Accepted").map(|c| c.0),
        Some("True".to_owned())
    );
    assert_eq!(
        cond(&parent.conditions, "ResolvedRefs").map(|c| c.0),
        Some("True".to_owned())
    );
    cp.kubectl_ok(&["delete", "-f", file]).unwrap();
}
