//! The install manifests and the GitOps health check, against the real apiserver:
//! `kubectl apply --dry-run=server -k deploy/` accepts every object under the "restricted" Pod
//! Security Standard and the Deployments, Services and budgets fit together; the CRD copy in
//! `deploy/` is the generated one; and the Argo CD health check (`deploy/argocd/health.lua`,
//! run in Lua 5.1 as Argo CD's gopher-lua runs it) judges RouterConfigs whose status was
//! written by server-side apply as the operator writes it.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Stdio,
};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use lockstep_config::conditions::{NewCondition, set_condition};
use lockstep_crds::{OPERATOR_FIELD_MANAGER, RouterConfig, condition, reason};
use lockstep_e2e::{ControlPlane, repo_root};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Manifests

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn kind_name(object: &Value) -> (String, String) {
    (
        object["kind"].as_str().unwrap_or_default().to_owned(),
        object["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
    )
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind_name(o) == (kind.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("{kind}/{name} missing"))
}

/// kustomize prints `65535.0` as `65535`: compare numbers by value.
fn numbers_as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_floats).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

const CLUSTER_SCOPED: [&str; 6] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

#[test]
fn deploy_crd_is_the_generated_crd() {
    // kustomize refuses files outside deploy/, so deploy/ holds a copy of the CRD; the source
    // of truth is crds/routerconfig.yaml (which crds/tests/crd_current.rs keeps generated).
    for file in ["routerconfig.yaml", "routerreplica.yaml"] {
        assert!(
            read(&format!("deploy/crd/{file}")) == read(&format!("crds/{file}")),
            "deploy/crd/{file} differs from crds/{file}; run `cp crds/*.yaml deploy/crd/`"
        );
    }
}

#[test]
fn kustomize_builds_the_expected_objects() {
    let objects = lockstep_e2e::kustomize_deploy();
    let got: BTreeSet<(String, String)> = objects.iter().map(kind_name).collect();
    let want: BTreeSet<(String, String)> = [
        ("Namespace", "lockstep-system"),
        ("CustomResourceDefinition", "routerconfigs.lockstep.dev"),
        ("CustomResourceDefinition", "routerreplicas.lockstep.dev"),
        ("ServiceAccount", "lockstep-operator"),
        ("ServiceAccount", "lockstep-proxy"),
        ("ClusterRole", "lockstep-operator"),
        ("ClusterRole", "lockstep-operator-leader"),
        ("ClusterRole", "lockstep-proxy-read"),
        ("ClusterRole", "lockstep-proxy-member"),
        ("ClusterRoleBinding", "lockstep-operator"),
        ("RoleBinding", "lockstep-operator-leader"),
        ("RoleBinding", "lockstep-proxy-read"),
        ("RoleBinding", "lockstep-proxy-member"),
        ("ValidatingAdmissionPolicy", "lockstep-proxy-own-objects"),
        ("ValidatingAdmissionPolicyBinding", "lockstep-proxy-own-objects"),
        ("Deployment", "lockstep-operator"),
        ("Deployment", "lockstep-proxy"),
        ("Service", "lockstep-proxy"),
        ("PodDisruptionBudget", "lockstep-operator"),
        ("PodDisruptionBudget", "lockstep-proxy"),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n.to_owned()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(objects.len(), want.len(), "no object appears twice");

    for object in &objects {
        let (kind, name) = kind_name(object);
        let namespace = object["metadata"]["namespace"].as_str();
        if CLUSTER_SCOPED.contains(&kind.as_str()) {
            assert_eq!(namespace, None, "{kind}/{name} is cluster-scoped");
        } else if (kind.as_str(), name.as_str()) == ("RoleBinding", "lockstep-proxy-read") {
            // Read access where the proxies serve (--watch-namespaces), not where they live.
            assert_eq!(namespace, Some("default"), "{kind}/{name}");
        } else {
            assert_eq!(namespace, Some("lockstep-system"), "{kind}/{name}");
        }
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/part-of"], "lockstep",
            "{kind}/{name}"
        );
    }
    // The images carry the kustomization's tag.
    for (name, image) in [
        ("lockstep-operator", "ghcr.io/lockstep-dev/lockstep-operator:"),
        ("lockstep-proxy", "ghcr.io/lockstep-dev/lockstep-proxy:"),
    ] {
        let deployment = find(&objects, "Deployment", name);
        let got = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap();
        let tag = got
            .strip_prefix(image)
            .unwrap_or_else(|| panic!("{name} image {got}"));
        assert_eq!(
            tag,
            env!("CARGO_PKG_VERSION"),
            "{name}: image tag is the workspace version"
        );
    }
    // The CRD in the build is the generated one, unchanged by kustomize.
    let crd: Value = serde_saphyr::from_str(&read("crds/routerconfig.yaml")).unwrap();
    let built = find(&objects, "CustomResourceDefinition", "routerconfigs.lockstep.dev");
    assert_eq!(numbers_as_floats(&built["spec"]), numbers_as_floats(&crd["spec"]));
    // The ClusterRoles are those of deploy/rbac, which the e2e runs the binaries with.
    for file in ["deploy/rbac/proxy.yaml", "deploy/rbac/operator.yaml"] {
        for doc in serde_saphyr::from_multiple::<Value>(&read(file)).unwrap() {
            if doc["kind"] == "ClusterRole" {
                let built = find(&objects, "ClusterRole", doc["metadata"]["name"].as_str().unwrap());
                assert_eq!(built["rules"], doc["rules"], "{file}");
            }
        }
    }
}

/// Runs kubectl with `args` and `stdin`; returns (success, stdout, stderr).
fn kubectl(cp: &ControlPlane, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = cp
        .kubectl()
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The namespace must exist for a dry run of the objects in it; create it for real (it is
/// also the one of the manifests, with its Pod Security labels).
fn ensure_namespace(cp: &ControlPlane) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let path = repo_root().join("deploy/namespace.yaml");
        cp.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])
            .expect("create lockstep-system");
    });
}

/// The value of `--flag=value` in a container's args.
fn flag<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}=");
    container["args"]
        .as_array()?
        .iter()
        .find_map(|a| a.as_str()?.strip_prefix(prefix.as_str()))
}

fn seconds(duration: &str) -> i64 {
    duration
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("duration {duration}"))
}

/// The containerPort a probe or Service targets, by name or number.
fn port(container: &Value, target: &Value) -> i64 {
    if let Some(number) = target.as_i64() {
        return number;
    }
    let name = target.as_str().unwrap();
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no port named {name}"))
}

fn assert_hardened(what: &str, pod: &Value) {
    let pod_sc = &pod["securityContext"];
    assert_eq!(pod_sc["runAsNonRoot"], true, "{what}");
    assert_eq!(pod_sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
    assert!(
        pod_sc["runAsUser"].as_i64().unwrap_or(0) > 0,
        "{what}: a numeric non-root user"
    );
    for container in pod["containers"].as_array().unwrap() {
        let sc = &container["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
        assert_eq!(sc["runAsNonRoot"], true, "{what}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
        assert!(sc["capabilities"]["add"].is_null(), "{what}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"]["requests"][resource].is_string(),
                "{what}: {resource} request"
            );
            assert!(
                container["resources"]["limits"][resource].is_string(),
                "{what}: {resource} limit"
            );
        }
        assert!(
            container["image"].as_str().unwrap().contains(':'),
            "{what}: a pinned tag"
        );
    }
}

fn http_probe(container: &Value, probe: &str) -> (String, i64) {
    let get = &container[probe]["httpGet"];
    (
        get["path"]
            .as_str()
            .unwrap_or_else(|| panic!("{probe}"))
            .to_owned(),
        port(container, &get["port"]),
    )
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let wanted = selector.as_object().unwrap();
    !wanted.is_empty() && wanted.iter().all(|(k, v)| &labels[k] == v)
}

#[test]
fn every_manifest_passes_server_side_dry_run() {
    let cp = ControlPlane::shared();
    ensure_namespace(cp);
    let dir = repo_root().join("deploy");
    let (ok, stdout, stderr) = kubectl(
        cp,
        &[
            "apply",
            "--dry-run=server",
            "-k",
            dir.to_str().unwrap(),
            "-o",
            "json",
        ],
        None,
    );
    assert!(ok, "kubectl apply --dry-run=server -k deploy/:\n{stderr}");
    // The namespace warns on (and enforces) the restricted Pod Security Standard: a Deployment
    // whose pods would violate it draws a warning here. The one expected warning: the harness
    // installed the CRD by server-side apply, so kubectl's last-applied annotation is missing.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Warning") && !l.contains("last-applied-configuration"))
        .collect();
    assert!(warnings.is_empty(), "warnings from the apiserver:\n{stderr}");
    let list: Value = serde_json::from_str(&stdout).expect("dry-run output is JSON");
    // The server's answer: every object, with the apiserver's defaults filled in.
    let objects = list["items"].as_array().expect("a List").clone();
    assert_eq!(objects.len(), lockstep_e2e::kustomize_deploy().len());
    for object in &objects {
        assert!(
            object["metadata"]["uid"].is_string(),
            "{:?} went through the apiserver",
            kind_name(object)
        );
    }
    let service_accounts: BTreeSet<String> = objects
        .iter()
        .filter(|o| o["kind"] == "ServiceAccount")
        .map(|o| kind_name(o).1)
        .collect();

    // Operator: two leader-elected copies, probes on the admin port.
    let operator = find(&objects, "Deployment", "lockstep-operator");
    assert_eq!(operator["spec"]["replicas"], 2);
    let pod = &operator["spec"]["template"]["spec"];
    assert_hardened("operator", pod);
    let container = &pod["containers"][0];
    let admin = flag(container, "--admin").expect("--admin");
    let admin_port: i64 = admin.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        admin.starts_with("0.0.0.0:"),
        "the kubelet probes from outside the pod: {admin}"
    );
    assert_eq!(
        http_probe(container, "livenessProbe"),
        ("/healthz".to_owned(), admin_port)
    );
    assert_eq!(
        http_probe(container, "readinessProbe"),
        ("/readyz".to_owned(), admin_port)
    );
    let env_field = |container: &Value, name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| {
                e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
    };
    // The leader-election Lease lives in the pod's namespace, where the RoleBinding grants it.
    assert!(flag(container, "--lease-namespace").is_none_or(|ns| ns == "lockstep-system"));
    assert_eq!(
        env_field(container, "POD_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    assert!(service_accounts.contains(pod["serviceAccountName"].as_str().unwrap()));

    // Proxy: three replicas, ready only when synced, a shutdown that drains.
    let proxy = find(&objects, "Deployment", "lockstep-proxy");
    assert_eq!(proxy["spec"]["replicas"], 3);
    assert_eq!(proxy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &proxy["spec"]["template"]["spec"];
    let pod_labels = &proxy["spec"]["template"]["metadata"]["labels"];
    assert_hardened("proxy", pod);
    let container = &pod["containers"][0];
    assert_eq!(flag(container, "--replica-name"), Some("$(POD_NAME)"));
    assert_eq!(env_field(container, "POD_NAME").as_deref(), Some("metadata.name"));
    assert_eq!(flag(container, "--namespace"), Some("$(POD_NAMESPACE)"));
    assert_eq!(
        env_field(container, "POD_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    // The proxies serve the namespaces their read RoleBindings cover: no cluster-wide read.
    assert_eq!(flag(container, "--watch-namespaces"), Some("default"));
    let read_binding = find(&objects, "RoleBinding", "lockstep-proxy-read");
    assert_eq!(read_binding["metadata"]["namespace"], "default");
    // Its RouterReplica is owned by its Pod: the downward API gives it the Pod's uid.
    assert_eq!(env_field(container, "POD_UID").as_deref(), Some("metadata.uid"));
    let admin_port: i64 = flag(container, "--admin")
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        http_probe(container, "readinessProbe"),
        ("/readyz".to_owned(), admin_port)
    );
    assert_eq!(
        http_probe(container, "livenessProbe"),
        ("/healthz".to_owned(), admin_port)
    );
    // preStop (endpoints leave while the replica still serves) + the drain + time to leave the
    // fleet must fit in the grace period, or the kubelet SIGKILLs in-flight requests.
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .expect("preStop sleep");
    let drain = seconds(flag(container, "--drain-timeout").expect("--drain-timeout"));
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(pre_stop >= 1 && drain >= 1, "{pre_stop} {drain}");
    assert!(
        grace >= pre_stop + drain + 5,
        "grace {grace}s < preStop {pre_stop}s + drain {drain}s + 5s"
    );
    assert!(!pod["topologySpreadConstraints"].as_array().unwrap().is_empty());
    for constraint in pod["topologySpreadConstraints"].as_array().unwrap() {
        assert!(labels_match(
            &constraint["labelSelector"]["matchLabels"],
            pod_labels
        ));
    }
    let anti = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert!(labels_match(
        &anti["podAffinityTerm"]["labelSelector"]["matchLabels"],
        pod_labels
    ));
    assert!(service_accounts.contains(pod["serviceAccountName"].as_str().unwrap()));
    let listen = |flag_name: &str| -> i64 {
        flag(container, flag_name)
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };

    // The Service reaches the proxies: 80 -> --listen, 443 -> --tls-listen.
    let service = find(&objects, "Service", "lockstep-proxy");
    assert!(labels_match(&service["spec"]["selector"], pod_labels));
    let ports: BTreeMap<i64, i64> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["port"].as_i64().unwrap(), port(container, &p["targetPort"])))
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([(80, listen("--listen")), (443, listen("--tls-listen"))])
    );
    assert_eq!((listen("--listen"), listen("--tls-listen")), (8080, 8443));

    // Each Deployment has a budget selecting exactly its pods, and the selector matches.
    for deployment in [operator, proxy] {
        let (_, name) = kind_name(deployment);
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert!(labels_match(
            &deployment["spec"]["selector"]["matchLabels"],
            labels
        ));
        let budget = find(&objects, "PodDisruptionBudget", &name);
        assert!(
            labels_match(&budget["spec"]["selector"]["matchLabels"], labels),
            "{name}"
        );
        let other = if name == "lockstep-proxy" { operator } else { proxy };
        assert!(
            !labels_match(
                &budget["spec"]["selector"]["matchLabels"],
                &other["spec"]["template"]["metadata"]["labels"]
            ),
            "{name}'s budget must not select the other Deployment's pods"
        );
    }
    let operator_budget = find(&objects, "PodDisruptionBudget", "lockstep-operator");
    assert_eq!(operator_budget["spec"]["minAvailable"], 1);
    let proxy_budget = find(&objects, "PodDisruptionBudget", "lockstep-proxy");
    assert_eq!(proxy_budget["spec"]["maxUnavailable"], 1);

    // Every binding names a ServiceAccount of the manifests, in their namespace.
    for binding in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
    {
        for subject in binding["subjects"].as_array().unwrap() {
            assert_eq!(subject["kind"], "ServiceAccount");
            assert_eq!(subject["namespace"], "lockstep-system");
            assert!(
                service_accounts.contains(subject["name"].as_str().unwrap()),
                "{binding}"
            );
        }
    }
}

#[test]
fn restricted_pod_security_rejects_a_weakened_proxy() {
    // The dry-run test's "no warnings" is only worth something if a violation would warn:
    // drop one hardening setting and the apiserver must object.
    let cp = ControlPlane::shared();
    ensure_namespace(cp);
    let objects = lockstep_e2e::kustomize_deploy();
    let mut proxy = find(&objects, "Deployment", "lockstep-proxy").clone();
    proxy["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("allowPrivilegeEscalation");
    let (ok, _, stderr) = kubectl(
        cp,
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&proxy.to_string()),
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("would violate PodSecurity") && stderr.contains("allowPrivilegeEscalation"),
        "expected a PodSecurity warning, got:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Argo CD health check

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

/// Runs the health check on `object` as Argo CD does: the object in the global `obj`, only
/// the base, table, string and math libraries; returns (status, message).
fn argo_health(object: &Value) -> (String, String) {
    let script = read("deploy/argocd/health.lua");
    let lua = mlua::Lua::new_with(
        mlua::StdLib::TABLE | mlua::StdLib::STRING | mlua::StdLib::MATH,
        mlua::LuaOptions::default(),
    )
    .unwrap();
    lua.globals().set("obj", to_lua(&lua, object).unwrap()).unwrap();
    let hs: mlua::Table = lua
        .load(script.as_str())
        .set_name("health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("health.lua on {object}: {e}"));
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
        let cp = ControlPlane::shared();
        let client = cp.client().await.unwrap();
        let ns = cp.namespace(&client, prefix).await.unwrap();
        let api = Api::namespaced(client, &ns);
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
                status: lockstep_config::conditions::status_str(*status),
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

// ---------------------------------------------------------------------------------------------
// Grafana dashboard

/// Operator metrics the dashboard must chart.
const OPERATOR_METRICS: [&str; 4] = [
    "lockstep_operator_rollout_duration_seconds",
    "lockstep_operator_routerconfig_ready",
    "lockstep_operator_routerconfig_synced_replicas",
    "lockstep_operator_routerconfig_replicas",
];

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literal arguments of `call` (e.g. `register(`) in `text`.
fn literal_args<'a>(text: &'a str, call: &str) -> Vec<&'a str> {
    text.match_indices(call)
        .filter_map(|(i, _)| {
            let rest = text[i + call.len()..].trim_start().strip_prefix('"')?;
            Some(&rest[..rest.find('"')?])
        })
        .collect()
}

/// Full metric names a crate registers with prometheus-client: each registry prefix joined
/// to each name given to `register(..)` or to a collector's `encode_descriptor(..)`.
fn registered_metrics(crate_dir: &str) -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&repo_root().join(crate_dir).join("src"), &mut files);
    let (mut prefixes, mut names) = (BTreeSet::new(), BTreeSet::new());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        prefixes.extend(literal_args(&text, "with_prefix(").into_iter().map(str::to_owned));
        for call in ["register(", "register_with_unit(", "encode_descriptor("] {
            names.extend(literal_args(&text, call).into_iter().map(str::to_owned));
        }
    }
    prefixes
        .iter()
        .flat_map(|p| names.iter().map(move |n| format!("{p}_{n}")))
        .collect()
}

/// Every `lockstep_*` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.match_indices("lockstep_")
        .map(|(i, _)| {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .map_or(text.len(), |n| i + n);
            text[i..end].to_owned()
        })
        .collect()
}

#[test]
fn grafana_dashboard_charts_registered_metrics() {
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/lockstep.json")).expect("valid JSON");
    assert_eq!(dashboard["uid"], "lockstep");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let mut queries = String::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_i64().unwrap()), "{title}: duplicate id");
        let grid = &panel["gridPos"];
        let (x, y, w, h) = (
            grid["x"].as_i64().unwrap(),
            grid["y"].as_i64().unwrap(),
            grid["w"].as_i64().unwrap(),
            grid["h"].as_i64().unwrap(),
        );
        assert!(x >= 0 && w > 0 && h > 0 && x + w <= 24, "{title}: {grid}");
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            assert!(cells.insert(cell), "{title} overlaps another panel at {cell:?}");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}");
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: a PromQL expr"));
            assert!(expr.contains("lockstep_"), "{title}: {expr}");
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{title}: {expr}"
            );
            queries.push_str(expr);
            queries.push('\n');
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        queries.push_str(variable["definition"].as_str().unwrap_or_default());
        queries.push('\n');
    }

    let mut registered = registered_metrics("proxy");
    assert!(
        registered.contains("lockstep_proxy_requests"),
        "the scan finds the proxy's metrics: {registered:?}"
    );
    registered.extend(registered_metrics("operator"));
    let used = metric_names(&queries);
    for name in &used {
        // Exposition suffixes: counters end in _total, histograms in _bucket, _sum, _count.
        let base = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| registered.contains(*b)))
            .unwrap_or(name);
        assert!(
            registered.contains(base),
            "the dashboard queries {name}, which no binary registers (registered: {registered:?})"
        );
    }
    for name in OPERATOR_METRICS {
        assert!(registered.contains(name), "the operator registers {name}");
        assert!(
            used.iter().any(|u| u.starts_with(name)),
            "{name} is not on the dashboard"
        );
    }
    // Every proxy metric is on the dashboard.
    for name in registered.iter().filter(|n| n.starts_with("lockstep_proxy_")) {
        assert!(
            used.iter().any(|u| u.starts_with(name.as_str())),
            "{name} is not on the dashboard"
        );
    }
}
