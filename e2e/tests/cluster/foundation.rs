//! The three API features the barrier depends on, proven against the real apiserver: a CRD
//! with a status subresource, server-side apply of a status list-map entry by two field
//! managers keeping both entries, and a Lease that can be created and renewed.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use lockstep_crds::RouterConfig;
use lockstep_e2e::ControlPlane;
use serde_json::json;

fn router_config(name: &str) -> RouterConfig {
    serde_json::from_value(json!({
        "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
        "metadata": {"name": name},
        "spec": {"rules": [{"host": "app.example.com", "paths": [
            {"path": "/", "backend": {"url": "http://127.0.0.1:9000"}}]}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn apiserver_serves_version_and_namespaces_through_kubectl() {
    let cp = ControlPlane::shared();
    let version = cp.kubectl_ok(&["version", "-o", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.37.2");
    let ns = cp.kubectl_ok(&["get", "ns", "-o", "name"]).unwrap();
    assert!(ns.contains("namespace/default"), "{ns}");
}

#[tokio::test]
async fn status_subresource_ignores_status_on_main_resource_and_spec_on_status() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "status").await.unwrap();
    let api: Api<RouterConfig> = Api::namespaced(client, &ns);
    let mut rc = router_config("web");
    rc.status = Some(lockstep_crds::RouterConfigStatus {
        observed_generation: Some(42),
        ..Default::default()
    });
    let created = api.create(&PostParams::default(), &rc).await.unwrap();
    assert_eq!(
        created.status, None,
        "status is dropped on create: it has its own subresource"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let patched = api
        .patch_status(
            "web",
            &PatchParams::apply("test-status"),
            &Patch::Apply(
                json!({"apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
                "status": {"observedGeneration": 1}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().observed_generation, Some(1));
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "a status write does not bump generation"
    );
}

#[tokio::test]
async fn a_router_replica_reports_per_namespace_and_name_and_prints_its_columns() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "rrep").await.unwrap();
    let api: Api<lockstep_crds::RouterReplica> = Api::namespaced(client, &ns);
    let params = PatchParams::apply(lockstep_crds::PROXY_FIELD_MANAGER).force();
    api.patch(
        "proxy-0",
        &params,
        &Patch::Apply(
            json!({"apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterReplica",
            "metadata": {"name": "proxy-0", "labels": {"lockstep.dev/fleet": "blue"}},
            "spec": {"fleet": "blue", "namespaces": ["a", "b"]}}),
        ),
    )
    .await
    .unwrap();
    let served = |entries: serde_json::Value| {
        json!({"apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterReplica",
            "status": {"served": entries, "synced": "1/2",
                "conditions": [{"type": "Ready", "status": "False", "reason": "Joining", "message": "m",
                                "lastTransitionTime": "2026-11-28T00:00:00Z"}]}})
    };
    // The same name in two namespaces is two entries: the list is keyed by both.
    api.patch_status(
        "proxy-0",
        &params,
        &Patch::Apply(served(json!([
            {"namespace": "a", "name": "web", "observedGeneration": 3, "configDigest": "sha256:x"},
            {"namespace": "b", "name": "web", "observedGeneration": 1, "configDigest": "sha256:y"}
        ]))),
    )
    .await
    .unwrap();
    let status = api.get_status("proxy-0").await.unwrap().status.unwrap();
    let entries: Vec<(String, i64)> = status
        .served
        .iter()
        .map(|e| (format!("{}/{}", e.namespace, e.name), e.observed_generation))
        .collect();
    assert_eq!(entries, [("a/web".to_owned(), 3), ("b/web".to_owned(), 1)]);

    // Two entries with the same key are refused by the apiserver (a list-map), not merged.
    let err = api
        .patch_status(
            "proxy-0",
            &params,
            &Patch::Apply(served(json!([
                {"namespace": "a", "name": "web", "observedGeneration": 3},
                {"namespace": "a", "name": "web", "observedGeneration": 4}
            ]))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422 || s.code == 500),
        "{err:?}"
    );

    let table = cp.kubectl_ok(&["get", "rrep", "-n", &ns]).unwrap();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "FLEET", "SERVED", "READY", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["proxy-0", "blue", "1/2", "False"]);
    let wide = cp
        .kubectl_ok(&["get", "routerreplicas", "-n", &ns, "-o", "wide"])
        .unwrap();
    assert!(wide.contains("Joining"), "{wide}");
}

#[tokio::test]
async fn lease_can_be_created_and_renewed_with_optimistic_concurrency() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "lease").await.unwrap();
    let api: Api<Lease> = Api::namespaced(client, &ns);
    let now = k8s_openapi::jiff::Timestamp::now();
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "lockstep-proxy-proxy-0", "labels": {"lockstep.dev/fleet": "default"}},
        "spec": {"holderIdentity": "proxy-0", "leaseDurationSeconds": 10,
                 "acquireTime": now.to_string(), "renewTime": now.to_string()}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &lease).await.unwrap();

    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut renewed = created.clone();
    let later = k8s_openapi::jiff::Timestamp::now();
    renewed.spec.as_mut().unwrap().renew_time =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(later));
    let after = api
        .replace("lockstep-proxy-proxy-0", &PostParams::default(), &renewed)
        .await
        .unwrap();
    assert!(after.spec.unwrap().renew_time.unwrap().0 > created.spec.clone().unwrap().renew_time.unwrap().0);

    // A writer holding the old resourceVersion loses: renewals cannot silently overwrite.
    let stale = api
        .replace("lockstep-proxy-proxy-0", &PostParams::default(), &renewed)
        .await
        .unwrap_err();
    assert!(
        matches!(stale, kube::Error::Api(ref s) if s.code == 409),
        "{stale:?}"
    );

    let listed = api
        .list(&kube::api::ListParams::default().labels("lockstep.dev/fleet=default"))
        .await
        .unwrap();
    assert_eq!(
        listed.items.iter().map(|l| l.name_any()).collect::<Vec<_>>(),
        vec!["lockstep-proxy-proxy-0"]
    );
}
