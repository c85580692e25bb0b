//! The operator's Gateway API status against a real apiserver with the v1.6.3 CRDs: a
//! GatewayClass of lockstep's controller accepted, a Gateway's conditions and listeners, each
//! HTTPRoute's parent entry (another controller's entry kept), ReferenceGrants taking effect,
//! observedGeneration following edits, and another controller's Gateway left alone. The
//! operator runs with the RBAC of `deploy/generated/rbac-operator.yaml`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams, PostParams},
};
use lockstep_crds::gateway::{
    CONTROLLER_NAME, Condition, Gateway, GatewayClass, HTTPRoute, ReferenceGrant, RouteParentStatus,
};
use lockstep_e2e::{
    ControlPlane, eventually,
    fixture::{least_privilege_operator, shared_operator},
    fleet::Operator,
    install_gateway_api_crds,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const FOREIGN_CONTROLLER: &str = "example.com/another-controller";

fn operator() -> &'static Operator {
    shared_operator(|cp| least_privilege_operator(cp, "lockstep-gateway-system", "gateway-operator"))
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

    // The class: Accepted at its generation, no feature claimed.
    let class = eventually("GatewayClass accepted", WAIT, || async {
        let c = classes.get(&ours).await.ok()?;
        let s = c.status.clone()?;
        (cond(&s.conditions, "Accepted")? == ("True".into(), "Accepted".into(), Some(1))).then_some(c)
    })
    .await
    .unwrap();
    assert!(class.status.unwrap().supported_features.is_empty());

    // The Gateway: Accepted; Programmed False Pending (no fleet yet); listeners.
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
/// controller off, and the RouterConfig controller still syncs (ready) and judges.
#[tokio::test]
async fn without_the_gateway_api_crds_the_operator_keeps_working() {
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
}
