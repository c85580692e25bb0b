//! The Argo CD health check (`deploy/argocd/health.lua`), run in Lua 5.1 as Argo CD's
//! gopher-lua runs it, on RouterConfigs whose status was written by server-side apply as the
//! operator writes it; and the `argocd-cm` example carries the script verbatim.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use lockstep_core::conditions::{NewCondition, set_condition};
use lockstep_crds::{OPERATOR_FIELD_MANAGER, RouterConfig, condition, reason};
use lockstep_e2e::{ControlPlane, fixture::Fixture};
use serde_json::{Value, json};

use crate::read;

/// Converts JSON to a Lua value as Argo CD does (objects and arrays to tables, numbers to
/// floats, null to nil).
fn to_lua(lua: &mlua::Lua, value: &Value) -> mlua::Result<mlua::Value> {
    Ok(match value {
        Value::Null => mlua::Value::Nil,
        Value::Bool(b) => mlua::Value::Boolean(*b),
        Value::Number(n) => mlua::Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => mlua::Value::String(lua.create_string(s)?),
        Value::Array(items) => {
            let table = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                table.set(i + 1, to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
        Value::Object(fields) => {
            let table = lua.create_table()?;
            for (k, v) in fields {
                table.set(k.as_str(), to_lua(lua, v)?)?;
            }
            mlua::Value::Table(table)
        }
    })
}

/// Runs the RouterConfig health check on `object` as Argo CD does.
fn argo_health(object: &Value) -> (String, String) {
    run_health("deploy/argocd/health.lua", object)
}

/// Runs the health check at `path` on `object` as Argo CD does: the object in the global
/// `obj`, only the base, table, string and math libraries; returns (status, message).
fn run_health(path: &str, object: &Value) -> (String, String) {
    let script = read(path);
    let lua = mlua::Lua::new_with(
        mlua::StdLib::TABLE | mlua::StdLib::STRING | mlua::StdLib::MATH,
        mlua::LuaOptions::default(),
    )
    .unwrap();
    lua.globals().set("obj", to_lua(&lua, object).unwrap()).unwrap();
    let hs: mlua::Table = lua
        .load(script.as_str())
        .set_name(path)
        .eval()
        .unwrap_or_else(|e| panic!("{path} on {object}: {e}"));
    let status: String = hs.get("status").expect("hs.status is a string");
    let message: Option<String> = hs.get("message").expect("hs.message is a string or nil");
    assert!(
        [
            "Healthy",
            "Progressing",
            "Degraded",
            "Suspended",
            "Missing",
            "Unknown"
        ]
        .contains(&status.as_str()),
        "{status} is not an Argo CD health status"
    );
    (status, message.unwrap_or_default())
}

#[test]
fn argocd_cm_example_carries_health_lua_verbatim() {
    let cm: Value = serde_saphyr::from_str(&read("deploy/argocd/argocd-cm.yaml")).unwrap();
    assert_eq!(
        (cm["kind"].as_str(), cm["metadata"]["name"].as_str()),
        (Some("ConfigMap"), Some("argocd-cm"))
    );
    let script = cm["data"]["resource.customizations.health.lockstep.dev_RouterConfig"]
        .as_str()
        .expect("the health key for group lockstep.dev, kind RouterConfig");
    assert!(
        script == read("deploy/argocd/health.lua"),
        "argocd-cm.yaml's script differs from health.lua"
    );
}

/// A RouterConfig in a fresh namespace of the shared control plane, and the operator's
/// view of its conditions.
struct Subject {
    cp: &'static ControlPlane,
    ns: String,
    api: Api<RouterConfig>,
    conditions: Vec<Condition>,
    now: Timestamp,
}

impl Subject {
    async fn new(prefix: &str) -> Self {
        let Fixture { cp, ns, api, .. } = Fixture::new(prefix).await;
        Self {
            cp,
            ns,
            api,
            conditions: Vec::new(),
            now: Timestamp::now(),
        }
    }

    /// `kubectl apply` of the RouterConfig "web" routing to `upstream` (a new upstream is a
    /// new generation).
    fn apply_spec(&self, upstream: &str) {
        self.cp
            .kubectl_apply(&format!(
                "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: web, namespace: {}}}\n\
                 spec:\n  rules:\n  - host: app.example.com\n    paths:\n    - path: /\n      \
                 backend: {{url: \"{upstream}\"}}\n",
                self.ns
            ))
            .expect("kubectl apply");
    }

    async fn generation(&self) -> i64 {
        self.api.get("web").await.unwrap().metadata.generation.unwrap()
    }

    /// Server-side applies the status as the operator does: its field manager, every
    /// condition with the generation it was computed for.
    async fn operator_writes(
        &mut self,
        observed: i64,
        conditions: &[(&'static str, bool, &'static str, &str)],
        synced: (i32, i32),
    ) {
        self.now += jiff::SignedDuration::from_secs(1);
        for (type_, status, reason, message) in conditions {
            let new = NewCondition {
                type_,
                status: lockstep_core::conditions::status_str(*status),
                reason,
                message: (*message).to_owned(),
                observed_generation: observed,
            };
            set_condition(&mut self.conditions, new, self.now);
        }
        let status = json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
            "status": {
                "observedGeneration": observed,
                "conditions": self.conditions,
                "syncedReplicas": synced.0, "replicas": synced.1,
                "synced": format!("{}/{}", synced.0, synced.1),
            }
        });
        self.api
            .patch_status(
                "web",
                &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
                &Patch::Apply(status),
            )
            .await
            .expect("status apply");
    }

    /// A replica's report as the operator copies it into the status (written by the test,
    /// not by an operator: this checks the health check's reading of such objects).
    async fn replica_reports(&self, replica: &str, generation: i64) {
        let entry = json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
            "status": {"replicaStatus": [{"name": format!("lockstep-system/{replica}"), "observedGeneration": generation,
                "configDigest": format!("sha256:{generation:064x}"), "appliedAt": self.now.to_string()}]}
        });
        self.api
            .patch_status(
                "web",
                &PatchParams::apply(&format!("test-replica-{replica}")).force(),
                &Patch::Apply(entry),
            )
            .await
            .expect("replica status apply");
    }

    /// The object as `kubectl get -o json` prints it, judged by the health check.
    fn health(&self) -> (String, String, Value) {
        let text = self
            .cp
            .kubectl_ok(&["get", "routerconfig", "web", "-n", &self.ns, "-o", "json"])
            .unwrap();
        let object: Value = serde_json::from_str(&text).unwrap();
        let (status, message) = argo_health(&object);
        (status, message, object)
    }
}

const ACCEPTED: (&str, bool, &str, &str) = (condition::ACCEPTED, true, reason::VALID, "");
const NOT_STALLED: (&str, bool, &str, &str) = (condition::STALLED, false, reason::IDLE, "");

#[tokio::test]
async fn argo_health_follows_a_rollout() {
    let mut rc = Subject::new("argo-rollout").await;
    rc.apply_spec("http://127.0.0.1:9001");

    // Fresh object, no status yet.
    let (status, message, object) = rc.health();
    assert!(object.get("status").is_none(), "{object}");
    assert_eq!(
        (status.as_str(), message.as_str()),
        (
            "Progressing",
            "Waiting for the lockstep operator to report status"
        )
    );

    // First reconcile: accepted, one of three replicas synced.
    rc.replica_reports("proxy-0", 1).await;
    assert_eq!(rc.health().0, "Progressing", "replica entries alone say nothing");
    rc.operator_writes(
        1,
        &[
            ACCEPTED,
            (
                condition::READY,
                false,
                reason::ROLLOUT_IN_PROGRESS,
                "1/3 replicas serve generation 1",
            ),
            (
                condition::RECONCILING,
                true,
                reason::ROLLOUT_IN_PROGRESS,
                "waiting for proxy-1, proxy-2",
            ),
            NOT_STALLED,
        ],
        (1, 3),
    )
    .await;
    let (status, message, _) = rc.health();
    assert_eq!(status, "Progressing");
    assert!(message.contains("1/3 replicas serve generation 1"), "{message}");

    // Every replica serves generation 1: Healthy.
    for replica in ["proxy-1", "proxy-2"] {
        rc.replica_reports(replica, 1).await;
    }
    rc.operator_writes(
        1,
        &[
            (
                condition::READY,
                true,
                reason::ALL_REPLICAS_SYNCED,
                "3/3 replicas serve generation 1",
            ),
            (condition::RECONCILING, false, reason::IDLE, ""),
        ],
        (3, 3),
    )
    .await;
    let (status, message, object) = rc.health();
    assert_eq!(status, "Healthy", "{object}");
    assert_eq!(
        message,
        "Ready=True (AllReplicasSynced): 3/3 replicas serve generation 1"
    );
    assert_eq!(object["status"]["replicaStatus"].as_array().unwrap().len(), 3);

    // A new spec: generation 2, and every condition still says generation 1. Ready=True is
    // stale and must not count.
    rc.apply_spec("http://127.0.0.1:9002");
    assert_eq!(rc.generation().await, 2);
    let (status, message, object) = rc.health();
    assert_eq!(object["status"]["conditions"][1]["type"], "Ready");
    assert_eq!(
        object["status"]["conditions"][1]["status"], "True",
        "the stale condition is still there"
    );
    assert_eq!(
        (status.as_str(), message.as_str()),
        (
            "Progressing",
            "Waiting for the lockstep operator to observe generation 2"
        )
    );

    // The operator observes generation 2 and the rollout completes.
    rc.operator_writes(
        2,
        &[
            ACCEPTED,
            (
                condition::READY,
                false,
                reason::ROLLOUT_IN_PROGRESS,
                "0/3 replicas serve generation 2",
            ),
            (
                condition::RECONCILING,
                true,
                reason::ROLLOUT_IN_PROGRESS,
                "waiting for proxy-0, proxy-1, proxy-2",
            ),
            NOT_STALLED,
        ],
        (0, 3),
    )
    .await;
    assert_eq!(rc.health().0, "Progressing");
    for replica in ["proxy-0", "proxy-1", "proxy-2"] {
        rc.replica_reports(replica, 2).await;
    }
    rc.operator_writes(
        2,
        &[
            (
                condition::READY,
                true,
                reason::ALL_REPLICAS_SYNCED,
                "3/3 replicas serve generation 2",
            ),
            (condition::RECONCILING, false, reason::IDLE, ""),
        ],
        (3, 3),
    )
    .await;
    assert_eq!(rc.health().0, "Healthy");

    // The fleet disappears: Ready=False NoReplicas is waiting, not failure.
    rc.operator_writes(
        2,
        &[(
            condition::READY,
            false,
            reason::NO_REPLICAS,
            "no live replica in fleet default",
        )],
        (0, 0),
    )
    .await;
    let (status, message, _) = rc.health();
    assert_eq!(status, "Progressing");
    assert!(message.contains("NoReplicas"), "{message}");
}

#[tokio::test]
async fn argo_health_degraded_on_stall_and_rejection() {
    let mut rc = Subject::new("argo-degraded").await;
    rc.apply_spec("http://127.0.0.1:9001");
    rc.operator_writes(
        1,
        &[
            ACCEPTED,
            (
                condition::READY,
                false,
                reason::ROLLOUT_IN_PROGRESS,
                "2/3 replicas serve generation 1",
            ),
            (
                condition::RECONCILING,
                true,
                reason::ROLLOUT_IN_PROGRESS,
                "waiting for proxy-2",
            ),
            NOT_STALLED,
        ],
        (2, 3),
    )
    .await;
    assert_eq!(rc.health().0, "Progressing");

    // The rollout lags past the stall timeout.
    rc.operator_writes(
        1,
        &[(
            condition::STALLED,
            true,
            reason::ROLLOUT_STALLED,
            "proxy-2 has not served generation 1 for 60s",
        )],
        (2, 3),
    )
    .await;
    let (status, message, _) = rc.health();
    assert_eq!(status, "Degraded");
    assert_eq!(
        message,
        "Stalled=True (RolloutStalled): proxy-2 has not served generation 1 for 60s"
    );

    // A fix is pushed: the stall was about generation 1, so generation 2 is in progress.
    rc.apply_spec("http://127.0.0.1:9002");
    assert_eq!(
        rc.health().0,
        "Progressing",
        "a Stalled=True of an older generation is stale"
    );

    // Generation 2 loses a host+path to an older RouterConfig: rejected.
    rc.operator_writes(
        2,
        &[
            (
                condition::ACCEPTED,
                false,
                reason::CONFLICT,
                "app.example.com/ is claimed by RouterConfig default/older",
            ),
            (
                condition::READY,
                false,
                reason::NOT_ACCEPTED,
                "the spec is not accepted",
            ),
            (condition::RECONCILING, false, reason::IDLE, ""),
            NOT_STALLED,
        ],
        (0, 3),
    )
    .await;
    let (status, message, _) = rc.health();
    assert_eq!(status, "Degraded");
    assert_eq!(
        message,
        "Accepted=False (Conflict): app.example.com/ is claimed by RouterConfig default/older"
    );

    // Rejection wins over a Ready=True that a buggy writer might leave: Degraded, not Healthy.
    rc.operator_writes(
        2,
        &[(condition::READY, true, reason::ALL_REPLICAS_SYNCED, "3/3")],
        (3, 3),
    )
    .await;
    assert_eq!(rc.health().0, "Degraded");

    // Generation 3 is valid and rolls out.
    rc.apply_spec("http://127.0.0.1:9003");
    assert_eq!(rc.generation().await, 3);
    assert_eq!(rc.health().0, "Progressing");
    rc.operator_writes(
        3,
        &[
            ACCEPTED,
            (
                condition::READY,
                true,
                reason::ALL_REPLICAS_SYNCED,
                "3/3 replicas serve generation 3",
            ),
            NOT_STALLED,
        ],
        (3, 3),
    )
    .await;
    assert_eq!(rc.health().0, "Healthy");
}

#[test]
fn argo_health_edge_cases() {
    // Shapes the apiserver may hand over that the operator does not write: conditions
    // without observedGeneration fall back to status.observedGeneration; unknown or missing
    // fields never make the script fail.
    let base = |status: Value| {
        json!({"apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
        "metadata": {"name": "web", "namespace": "default", "generation": 4}, "status": status})
    };
    let ready = |extra: Value| {
        let mut c =
            json!({"type": "Ready", "status": "True", "reason": "AllReplicasSynced", "message": "3/3"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let cases = [
        (
            base(json!({"observedGeneration": 4, "conditions": [ready(json!({}))]})),
            "Healthy",
        ),
        (
            base(json!({"observedGeneration": 3, "conditions": [ready(json!({}))]})),
            "Progressing",
        ),
        (base(json!({"conditions": [ready(json!({}))]})), "Progressing"),
        (
            base(json!({"conditions": [ready(json!({"observedGeneration": 4}))]})),
            "Healthy",
        ),
        (
            base(json!({"observedGeneration": 4, "conditions": [ready(json!({"observedGeneration": 3}))]})),
            "Progressing",
        ),
        (
            base(json!({"observedGeneration": 4, "conditions": []})),
            "Progressing",
        ),
        (base(json!({"observedGeneration": 4})), "Progressing"),
        (base(json!({})), "Progressing"),
        (base(Value::Null), "Progressing"),
        (
            base(json!({"conditions": [{"type": "Ready"}, {"status": "True"}]})),
            "Progressing",
        ),
        (
            base(json!({"conditions": [ready(json!({"observedGeneration": 4})),
                {"type": "Stalled", "status": "True", "observedGeneration": 4}]})),
            "Degraded",
        ),
        (
            base(json!({"conditions": [{"type": "Accepted", "status": "Unknown", "observedGeneration": 4}]})),
            "Progressing",
        ),
    ];
    for (object, want) in cases {
        assert_eq!(argo_health(&object).0, want, "{object}");
    }
    let no_generation = json!({"metadata": {"name": "web"}, "status": {"conditions": [ready(json!({}))]}});
    assert_eq!(argo_health(&no_generation).0, "Progressing");
}

/// Runs `deploy/argocd/httproute-health.lua` on `object` as Argo CD does.
fn route_health(object: &Value) -> (String, String) {
    run_health("deploy/argocd/httproute-health.lua", object)
}

#[test]
fn argocd_cm_example_carries_the_route_health_check_verbatim() {
    let cm: Value = serde_saphyr::from_str(&read("deploy/argocd/argocd-cm.yaml")).unwrap();
    for kind in ["HTTPRoute", "GRPCRoute"] {
        let key = format!("resource.customizations.health.gateway.networking.k8s.io_{kind}");
        let script = cm["data"][key.as_str()]
            .as_str()
            .expect("a health key per route kind");
        assert!(
            script == read("deploy/argocd/httproute-health.lua"),
            "argocd-cm.yaml's {kind} script differs from httproute-health.lua"
        );
    }
}

/// An HTTPRoute at generation 4 whose parents say `parents` (as the operator writes route
/// parent entries: one per parentRef, each condition with the route generation it is for).
fn route(parents: Value) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": "web", "namespace": "shop", "generation": 4},
           "status": {"parents": parents}})
}

fn parent(controller: &str, section: &str, conditions: &[(&str, &str, i64, &str)]) -> Value {
    json!({"controllerName": controller,
           "parentRef": {"name": "gw", "sectionName": section},
           "conditions": conditions.iter().map(|(t, s, g, reason)| json!({
               "type": t, "status": s, "observedGeneration": g, "reason": reason,
               "message": format!("{t} {s}"), "lastTransitionTime": "2026-12-04T00:00:00Z"})).collect::<Vec<_>>()})
}

/// Each row: what the lockstep parents say, and the health Argo CD shows. Another
/// controller's parent never counts; a condition of an older generation is stale.
#[test]
fn a_route_is_healthy_only_when_lockstep_ready_holds_for_its_generation_on_every_parent() {
    const LOCKSTEP: &str = "lockstep.dev/gateway-controller";
    let accepted = ("Accepted", "True", 4, "Accepted");
    let resolved = ("ResolvedRefs", "True", 4, "ResolvedRefs");
    let ready = ("lockstep.dev/Ready", "True", 4, "Ready");
    let rows: Vec<(&str, Value, &str)> = vec![
        (
            "no status yet",
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"generation": 4}}),
            "Progressing",
        ),
        (
            "only another controller's parent",
            route(json!([parent(
                "example.com/other",
                "web",
                &[accepted, resolved, ready]
            )])),
            "Progressing",
        ),
        (
            "ready at this generation",
            route(json!([parent(LOCKSTEP, "web", &[accepted, resolved, ready])])),
            "Healthy",
        ),
        (
            "ready at the previous generation",
            route(json!([parent(
                LOCKSTEP,
                "web",
                &[accepted, resolved, ("lockstep.dev/Ready", "True", 3, "Ready")]
            )])),
            "Progressing",
        ),
        (
            "ready on one parent of two",
            route(json!([
                parent(LOCKSTEP, "web", &[accepted, resolved, ready]),
                parent(
                    LOCKSTEP,
                    "api",
                    &[accepted, resolved, ("lockstep.dev/Ready", "False", 4, "Pending")]
                )
            ])),
            "Progressing",
        ),
        (
            "not accepted",
            route(json!([parent(
                LOCKSTEP,
                "web",
                &[("Accepted", "False", 4, "NotAllowedByListeners"), resolved]
            )])),
            "Degraded",
        ),
        (
            "a backend not found",
            route(json!([parent(
                LOCKSTEP,
                "web",
                &[accepted, ("ResolvedRefs", "False", 4, "BackendNotFound"), ready]
            )])),
            "Degraded",
        ),
        (
            "not accepted at an older generation only",
            route(json!([parent(
                LOCKSTEP,
                "web",
                &[
                    ("Accepted", "False", 3, "NotAllowedByListeners"),
                    accepted,
                    resolved,
                    ready
                ]
            )])),
            "Healthy",
        ),
        (
            "another controller ready, lockstep not",
            route(json!([
                parent("example.com/other", "web", &[accepted, resolved, ready]),
                parent(LOCKSTEP, "web", &[accepted, resolved])
            ])),
            "Progressing",
        ),
    ];
    for (what, object, want) in rows {
        let (status, message) = route_health(&object);
        assert_eq!(status, want, "{what}: {message}");
        assert!(!message.is_empty(), "{what}: a message says why");
    }
}
