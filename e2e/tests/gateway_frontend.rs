//! A Gateway's client certificate validation (`spec.tls.frontend`) against a real apiserver
//! with the v1.6.3 CRDs, the operator running with the RBAC of
//! `deploy/generated/rbac-operator.yaml`: the CA references' listener conditions, the
//! ConfigMaps watched (a CA bundle appearing changes the status), the Gateway's
//! `InsecureFrontendValidationMode`, and a listener whose validation resolves not served.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client, Resource,
    api::{ListParams, PostParams},
};
use lockstep_crds::{
    RouterConfig,
    gateway::{CONTROLLER_NAME, Condition, Gateway, GatewayClass, HTTPRoute, ListenerStatus},
};
use lockstep_e2e::{
    ControlPlane, eventually,
    fixture::{least_privilege_operator, shared_operator},
    fleet::Operator,
    install_gateway_api_crds,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn operator() -> &'static Operator {
    shared_operator(|cp| least_privilege_operator(cp, "lockstep-system", "gateway-frontend-operator"))
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

/// (status, reason) of the condition of `type_`.
fn cond(conditions: &[Condition], type_: &str) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn listener<'g>(gw: &'g Gateway, name: &str) -> Option<&'g ListenerStatus> {
    gw.status.as_ref()?.listeners.iter().find(|l| l.name == name)
}

fn pair(status: &str, reason: &str) -> Option<(String, String)> {
    Some((status.to_owned(), reason.to_owned()))
}

fn ca_config_map(name: &str, ns: &str, pem: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
           "data": {"ca.crt": pem}})
}

#[tokio::test]
async fn frontend_validation_references_are_judged_and_a_resolved_one_is_not_served_without_it() {
    let cp = ControlPlane::shared();
    let client: Client = cp.client().await.unwrap();
    install_gateway_api_crds(&client).await.unwrap();
    operator();
    let ns = cp.namespace(&client, "gw-frontend").await.unwrap();
    let class = format!("lockstep-frontend-{:08x}", rand::random::<u32>());
    create(
        &Api::<GatewayClass>::all(client.clone()),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": class}, "spec": {"controllerName": CONTROLLER_NAME}}),
    )
    .await;

    let params = rcgen::CertificateParams::new(vec!["secure.example.com".to_owned()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    create(
        &Api::<Secret>::namespaced(client.clone(), &ns),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "cert", "namespace": ns},
               "stringData": {"tls.crt": cert.pem(), "tls.key": key.serialize_pem()}}),
    )
    .await;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    create(&config_maps, ca_config_map("ca", &ns, &cert.pem())).await;

    // `default` resolves; port 8443's names a ConfigMap not there yet, in fallback mode.
    let gateways = Api::<Gateway>::namespaced(client.clone(), &ns);
    let https = |name: &str, port: u16| {
        json!({"name": name, "protocol": "HTTPS", "port": port, "hostname": format!("{name}.example.com"),
               "tls": {"certificateRefs": [{"name": "cert"}]}})
    };
    create(
        &gateways,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": ns, "annotations": {"lockstep.dev/fleet": "edge"}},
               "spec": {"gatewayClassName": class,
                        "tls": {"frontend": {
                            "default": {"validation": {"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}]}},
                            "perPort": [{"port": 8443, "tls": {"validation": {
                                "mode": "AllowInsecureFallback",
                                "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "later"}]}}}]}},
                        "listeners": [
                            https("secure", 443),
                            https("later", 8443),
                            {"name": "web", "protocol": "HTTP", "port": 80}]}}),
    )
    .await;

    // A route on every listener: a listener with nothing attached publishes nothing anyway.
    create(
        &Api::<HTTPRoute>::namespaced(client.clone(), &ns),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "web", "namespace": ns},
               "spec": {"parentRefs": [{"name": "gw"}],
                        "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}),
    )
    .await;

    let gw = eventually("the later listener refused for its CA", WAIT, || async {
        let gw = gateways.get("gw").await.ok()?;
        let later = listener(&gw, "later")?;
        (cond(&later.conditions, "Accepted") == pair("False", "NoValidCACertificate")).then_some(gw)
    })
    .await
    .unwrap();
    let later = listener(&gw, "later").unwrap();
    assert_eq!(
        cond(&later.conditions, "ResolvedRefs"),
        pair("False", "InvalidCACertificateRef")
    );
    let message = &later
        .conditions
        .iter()
        .find(|c| c.type_ == "ResolvedRefs")
        .unwrap()
        .message;
    assert!(message.contains(&format!("{ns}/later")), "{message}");
    let gateway_conditions = &gw.status.as_ref().unwrap().conditions;
    assert_eq!(
        cond(gateway_conditions, "InsecureFrontendValidationMode"),
        pair("True", "ConfigurationChanged")
    );

    // The listener whose CA resolves is accepted, but not served without the validation.
    let gw = eventually("the secure listener judged", WAIT, || async {
        let gw = gateways.get("gw").await.ok()?;
        let secure = listener(&gw, "secure")?;
        (cond(&secure.conditions, "Programmed") == pair("False", "Invalid")).then_some(gw)
    })
    .await
    .unwrap();
    let secure = listener(&gw, "secure").unwrap();
    assert_eq!(cond(&secure.conditions, "Accepted"), pair("True", "Accepted"));
    assert_eq!(
        cond(&secure.conditions, "ResolvedRefs"),
        pair("True", "ResolvedRefs")
    );
    let programmed = secure
        .conditions
        .iter()
        .find(|c| c.type_ == "Programmed")
        .unwrap();
    assert!(
        programmed.message.contains("client certificate validation"),
        "{}",
        programmed.message
    );
    let web = listener(&gw, "web").unwrap();
    assert_eq!(cond(&web.conditions, "Accepted"), pair("True", "Accepted"));
    assert_eq!(
        cond(&web.conditions, "ResolvedRefs"),
        pair("True", "ResolvedRefs")
    );
    let generated = Api::<RouterConfig>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        generated
            .items
            .iter()
            .all(|rc| rc.spec.rules.iter().all(|r| r.tls.is_none())),
        "no RouterConfig serves an HTTPS listener: {:?}",
        generated
            .items
            .iter()
            .map(|rc| &rc.metadata.name)
            .collect::<Vec<_>>()
    );

    // The ConfigMap appearing (the operator watches ConfigMaps) resolves the other listener,
    // which is then held back the same way.
    create(&config_maps, ca_config_map("later", &ns, &cert.pem())).await;
    let gw = eventually("the later listener accepted", WAIT, || async {
        let gw = gateways.get("gw").await.ok()?;
        let later = listener(&gw, "later")?;
        (cond(&later.conditions, "Accepted") == pair("True", "Accepted")).then_some(gw)
    })
    .await
    .unwrap();
    let later = listener(&gw, "later").unwrap();
    assert_eq!(
        cond(&later.conditions, "ResolvedRefs"),
        pair("True", "ResolvedRefs")
    );
    assert_eq!(cond(&later.conditions, "Programmed"), pair("False", "Invalid"));
}
