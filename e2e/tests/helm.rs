//! The Helm chart (`deploy/helm/lockstep`) with a real `helm` (v4, built from the Go module
//! proxy by `e2e/helm/build.sh`): `helm lint --strict` passes; `values.schema.json` types and
//! bounds every value of `values.yaml` and refuses values that cannot work; the release notes
//! say what was installed and how to apply and wait on a RouterConfig; `helm template` with the
//! default values renders the same objects as `kubectl kustomize deploy/` (whose
//! `deploy/generated/` is rendered from the chart by `deploy/generate.sh`: this checks the
//! kustomization lists every file and the chart's CRDs, everything but the labels Helm adds);
//! values change what they name; and the rendered chart passes a server-side dry run against
//! the real apiserver.

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

use lockstep_e2e::{ControlPlane, repo_root};
use serde_json::{Value, json};

/// The helm binary, built once and cached outside the repo.
fn helm() -> PathBuf {
    lockstep_e2e::built_tool("e2e/helm/build.sh").expect("build helm")
}

fn chart() -> PathBuf {
    repo_root().join("deploy/helm/lockstep")
}

/// Runs helm with `args`; returns (success, stdout, stderr).
fn run_helm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(helm())
        .args(args)
        // No user-level repositories or plugins: only the chart under test.
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("lockstep-helm-config"),
        )
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("lockstep-helm-cache"),
        )
        .stdin(Stdio::null())
        .output()
        .expect("run helm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `helm template` of the chart into lockstep-system with extra `--set`s; the YAML text.
fn template_text(sets: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        "lockstep",
        chart.to_str().unwrap(),
        "--namespace",
        "lockstep-system",
        "--include-crds",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let (ok, stdout, stderr) = run_helm(&args);
    assert!(ok, "helm template {sets:?}: {stderr}");
    stdout
}

fn template(sets: &[&str]) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&template_text(sets))
        .expect("helm output is YAML")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

type Key = (String, String, String);

fn key(object: &Value) -> Key {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        s(&object["kind"]),
        s(&object["metadata"]["namespace"]),
        s(&object["metadata"]["name"]),
    )
}

/// What must be equal between the two installs: the object without its metadata labels,
/// numbers compared by value and strings by their words (a folded YAML scalar and its
/// re-serialised form differ only in line breaks).
fn normalise(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::String(s) => json!(s.split_whitespace().collect::<Vec<_>>().join(" ")),
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        Value::Object(fields) => {
            Value::Object(fields.iter().map(|(k, v)| (k.clone(), normalise(v))).collect())
        }
        other => other.clone(),
    }
}

fn without_labels(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.remove("labels");
    }
    normalise(&object)
}

fn by_key(objects: &[Value]) -> BTreeMap<Key, Value> {
    let map: BTreeMap<Key, Value> = objects.iter().map(|o| (key(o), o.clone())).collect();
    assert_eq!(map.len(), objects.len(), "no object appears twice");
    map
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} missing"))
}

#[test]
fn helm_lint_passes_strict() {
    let chart = chart();
    let (ok, stdout, stderr) = run_helm(&["lint", "--strict", chart.to_str().unwrap()]);
    assert!(ok, "helm lint --strict:\n{stdout}\n{stderr}");
    assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
}

#[test]
fn chart_versions_and_crds_are_the_workspace_ones() {
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap()).unwrap();
    assert_eq!(chart["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    // The lockstep CRDs are generated into the chart's crds/ (crds/tests/crd_current.rs keeps
    // them current); the Gateway API CRDs are those of deploy/gateway-api/standard/, all of them.
    let standard = repo_root().join("deploy/gateway-api/standard");
    let mut names: Vec<String> = std::fs::read_dir(&standard)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 7, "{names:?}");
    for file in &names {
        let copy = std::fs::read_to_string(self::chart().join("crds").join(file)).unwrap_or_default();
        let source = std::fs::read_to_string(standard.join(file)).unwrap();
        assert!(
            copy == source,
            "deploy/helm/lockstep/crds/{file} differs from deploy/gateway-api/standard/{file}; run `cp deploy/gateway-api/standard/*.yaml deploy/helm/lockstep/crds/`"
        );
    }
}

#[test]
fn default_values_render_the_kustomize_install() {
    let helm = template(&["namespace.create=true"]);
    let kustomize = lockstep_e2e::kustomize_deploy();
    let (helm_map, kustomize_map) = (by_key(&helm), by_key(&kustomize));
    let helm_keys: Vec<&Key> = helm_map.keys().collect();
    let kustomize_keys: Vec<&Key> = kustomize_map.keys().collect();
    assert_eq!(helm_keys, kustomize_keys, "the same objects");
    for (key, built) in &kustomize_map {
        let rendered = &helm_map[key];
        assert_eq!(
            without_labels(rendered),
            without_labels(built),
            "{key:?}: helm template differs from kubectl kustomize (labels aside)"
        );
        // Helm installs crds/ as they are, untemplated: the generated CRDs carry no labels.
        if key.0 == "CustomResourceDefinition" {
            continue;
        }
        // Every label of the kustomize install is there too; Helm adds its own.
        let labels = &rendered["metadata"]["labels"];
        for (name, value) in built["metadata"]["labels"].as_object().unwrap() {
            assert_eq!(&labels[name], value, "{key:?} label {name}");
        }
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{key:?}");
        assert_eq!(labels["app.kubernetes.io/instance"], "lockstep", "{key:?}");
    }
    // Without namespace.create the Namespace is left to `helm install --create-namespace`.
    let plain = template(&[]);
    assert_eq!(plain.len(), helm.len() - 1);
    assert!(plain.iter().all(|o| o["kind"] != "Namespace"));
}

#[test]
fn values_change_what_they_name() {
    let objects = template(&[
        "operator.replicas=3",
        "proxy.replicas=5",
        "proxy.fleet=edge",
        "proxy.watchNamespaces={team-a,team-b}",
        "image.tag=9.9.9",
        "image.pullPolicy=Never",
        "image.proxy.repository=registry.local/proxy",
        "proxy.service.type=NodePort",
        "proxy.service.httpNodePort=30080",
        "proxy.resources.limits.memory=512Mi",
        "metrics.proxyPort=9100",
        "metrics.annotations=false",
        "operator.leaderElection.leaseDuration=20s",
        "operator.pdb.enabled=false",
        "proxy.pdb.maxUnavailable=2",
        "gatewayClass.name=edge",
        "gatewayClass.parametersRef.name=small",
    ]);
    let class = find(&objects, "GatewayClass", "edge");
    assert_eq!(
        class["spec"]["controllerName"],
        lockstep_crds::gateway::CONTROLLER_NAME
    );
    assert_eq!(
        class["spec"]["parametersRef"],
        json!({"group": "lockstep.dev", "kind": "GatewayParameters", "name": "small"})
    );
    let operator = find(&objects, "Deployment", "lockstep-operator");
    assert_eq!(operator["spec"]["replicas"], 3);
    let container = &operator["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/lockstep-dev/lockstep-operator:9.9.9");
    assert_eq!(container["imagePullPolicy"], "Never");
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--lease-duration=20s"))
    );
    assert!(operator["spec"]["template"]["metadata"]["annotations"].is_null());
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "PodDisruptionBudget" && o["metadata"]["name"] == "lockstep-operator")
    );

    let proxy = find(&objects, "Deployment", "lockstep-proxy");
    assert_eq!(proxy["spec"]["replicas"], 5);
    assert_eq!(
        proxy["spec"]["selector"]["matchLabels"]["lockstep.dev/fleet"],
        "edge"
    );
    let container = &proxy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.local/proxy:9.9.9");
    assert_eq!(container["resources"]["limits"]["memory"], "512Mi");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for want in [
        "--fleet=edge",
        "--watch-namespaces=team-a,team-b",
        "--admin=0.0.0.0:9100",
    ] {
        assert!(args.contains(&want), "{want} in {args:?}");
    }
    let admin = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap();
    assert_eq!(admin["containerPort"], 9100);
    // One read RoleBinding per watched namespace, none in `default`.
    let mut read: Vec<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" && o["metadata"]["name"] == "lockstep-proxy-read")
        .map(|o| o["metadata"]["namespace"].as_str().unwrap())
        .collect();
    read.sort();
    assert_eq!(read, ["team-a", "team-b"]);
    let service = find(&objects, "Service", "lockstep-proxy");
    assert_eq!(service["spec"]["type"], "NodePort");
    assert_eq!(service["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(service["spec"]["selector"]["lockstep.dev/fleet"], "edge");
    let pdb = find(&objects, "PodDisruptionBudget", "lockstep-proxy");
    assert_eq!(pdb["spec"]["maxUnavailable"], 2);

    // No GatewayClass: one of the cluster's own names lockstep's controller.
    let objects = template(&["gatewayClass.create=false"]);
    assert!(objects.iter().all(|o| o["kind"] != "GatewayClass"));

    // Every namespace: a ClusterRoleBinding instead of RoleBindings.
    let objects = template(&["proxy.allNamespaces=true"]);
    let proxy = find(&objects, "Deployment", "lockstep-proxy");
    let args = &proxy["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_array().unwrap().contains(&json!("--all-namespaces")));
    find(&objects, "ClusterRoleBinding", "lockstep-proxy-read");
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "RoleBinding" && o["metadata"]["name"] == "lockstep-proxy-read")
    );
}

#[test]
fn values_that_cannot_work_are_refused() {
    let chart = chart();
    // The template's own checks (what the schema cannot say), then values.schema.json: the
    // message names the value.
    for (flag, set, message) in [
        (
            "--set",
            "proxy.terminationGracePeriodSeconds=20",
            "must cover proxy.preStopSleepSeconds + proxy.drainTimeout",
        ),
        (
            "--set",
            "proxy.watchNamespaces=null",
            "at '/proxy': missing property 'watchNamespaces'",
        ),
        (
            "--set-json",
            "proxy.watchNamespaces=[]",
            "at '/proxy/watchNamespaces': minItems",
        ),
        (
            "--set",
            "proxy.drainTimeout=1m",
            "at '/proxy/drainTimeout': '1m' does not match pattern",
        ),
        ("--set", "proxy.replicas=0", "at '/proxy/replicas': minimum"),
        (
            "--set",
            "proxy.ports.https=70000",
            "at '/proxy/ports/https': maximum",
        ),
        (
            "--set",
            "image.pullPolicy=Sometimes",
            "at '/image/pullPolicy': value must be one of",
        ),
        (
            "--set",
            "proxy.service.type=Ingress",
            "at '/proxy/service/type': value must be one of",
        ),
        ("--set", "proxy.fleet=Edge_1", "at '/proxy/fleet'"),
        // Not an object name the apiserver would take for the GatewayClass.
        ("--set", "gatewayClass.name=Bad_Name", "at '/gatewayClass/name'"),
        // A misspelt value is refused, not ignored.
        (
            "--set",
            "proxy.replica=5",
            "additional properties 'replica' not allowed",
        ),
        (
            "--set",
            "operator.leaderElection.leaseDuration=soon",
            "at '/operator/leaderElection/leaseDuration'",
        ),
    ] {
        let (ok, _, stderr) = run_helm(&["template", "lockstep", chart.to_str().unwrap(), flag, set]);
        assert!(!ok, "{set} renders");
        assert!(stderr.contains(message), "{set}: {stderr}");
    }
    // Serving every namespace needs no watched namespace.
    let (ok, _, stderr) = run_helm(&[
        "template",
        "lockstep",
        chart.to_str().unwrap(),
        "--set-json",
        r#"proxy.allNamespaces=true"#,
        "--set-json",
        "proxy.watchNamespaces=[]",
    ]);
    assert!(ok, "allNamespaces without watchNamespaces: {stderr}");
}

/// The dotted paths of every leaf of `value` (an empty map or list is a leaf).
fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value.as_object() {
        Some(fields) if !fields.is_empty() => {
            for (k, v) in fields {
                leaves(&format!("{prefix}/{k}"), v, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn values_schema_covers_every_value() {
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap()).unwrap();
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap())
            .expect("values.schema.json is JSON");
    let mut paths = Vec::new();
    leaves("", &values, &mut paths);
    assert!(paths.len() > 40, "{paths:?}");
    for path in &paths {
        // Walk the schema along the path: every object on the way closes its properties and
        // requires what values.yaml sets (a null value is dropped by Helm, so not required).
        let mut node = &schema;
        let mut value = &values;
        for key in path.trim_start_matches('/').split('/') {
            assert_eq!(node["type"], "object", "{path}: {key}'s parent is an object");
            assert_eq!(node["additionalProperties"], false, "{path}: closed at {key}");
            let required = node["required"].as_array().cloned().unwrap_or_default();
            value = &value[key];
            assert!(
                value.is_null() || required.contains(&json!(key)),
                "{path}: {key} is required"
            );
            node = &node["properties"][key];
            assert!(node.is_object(), "{path}: values.schema.json has no {key}");
        }
        let described = node["description"].is_string();
        let typed = node["type"].is_string() || node["oneOf"].is_array() || node["$ref"].is_string();
        assert!(described && typed, "{path}: a type and a description: {node}");
    }
}

#[test]
fn notes_say_what_was_installed_and_how_to_wait() {
    let chart = chart();
    let (ok, stdout, stderr) = run_helm(&[
        "install",
        "lockstep",
        chart.to_str().unwrap(),
        "--namespace",
        "lockstep-system",
        "--dry-run=client",
        "--set",
        "proxy.fleet=edge",
        "--set",
        "proxy.watchNamespaces={team-a,team-b}",
    ]);
    assert!(ok, "helm install --dry-run=client: {stderr}");
    let notes = stdout.split_once("NOTES:").expect("release notes").1;
    for want in [
        "release lockstep in namespace lockstep-system",
        "the proxy fleet \"edge\": 3 replicas",
        "the namespaces team-a, team-b",
        "metadata: {name: web, namespace: team-a}",
        "fleet: edge",
        "kubectl apply -f web.yaml",
        "kubectl wait --for=condition=Ready -f web.yaml",
        "the GatewayClass lockstep (controllerName lockstep.dev/gateway-controller)",
    ] {
        assert!(notes.contains(want), "{want:?} in the notes:\n{notes}");
    }
}

#[test]
fn rendered_chart_passes_server_side_dry_run() {
    let cp = ControlPlane::shared();
    let namespace = repo_root().join("deploy/generated/namespace.yaml");
    cp.kubectl_ok(&["apply", "-f", namespace.to_str().unwrap()])
        .expect("create lockstep-system");
    // A dry run creates no CRD, and kubectl maps every object's kind before applying any: the
    // GatewayClass needs its CRD installed, as `helm install` installs crds/ first.
    lockstep_e2e::kubectl_install_gateway_api_crds(cp);
    let text = template_text(&[]);
    let mut child = cp
        .kubectl()
        .args(["apply", "--dry-run=server", "-f", "-", "-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl apply --dry-run=server:\n{stderr}");
    // As for deploy/: the "restricted" Pod Security Standard draws no warning; the CRDs the
    // harness installed by server-side apply lack kubectl's last-applied annotation.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Warning") && !l.contains("last-applied-configuration"))
        .collect();
    assert!(warnings.is_empty(), "warnings from the apiserver:\n{stderr}");
    let list: Value = serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let items = list["items"].as_array().expect("a List");
    assert_eq!(items.len(), template(&[]).len());
    assert!(items.iter().all(|o| o["metadata"]["uid"].is_string()));
}
