//! The install manifests: `deploy/generated/` is what `deploy/generate.sh` renders from the
//! Helm chart, `kustomize build deploy/` gives the expected objects, and each passes a
//! server-side dry run under the "restricted" Pod Security Standard.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::{Command, Stdio},
};

use lockstep_e2e::{ControlPlane, repo_root};
use serde_json::{Value, json};

use crate::read;

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

const CLUSTER_SCOPED: [&str; 7] = [
    "Namespace",
    "GatewayClass",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// The names and contents of the `*.yaml` files of `dir`.
fn yaml_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn generated_install_is_current() {
    // The chart is the one source: deploy/generated/ is what deploy/generate.sh renders from
    // it. Regenerate into a temporary directory and compare, file by file.
    let out = tempfile::tempdir().unwrap();
    let script = repo_root().join("deploy/generate.sh");
    let helm = lockstep_e2e::built_tool("e2e/helm/build.sh").expect("build helm");
    let run = Command::new(&script)
        .arg(out.path())
        .env("HELM", helm)
        .stdin(Stdio::null())
        .output()
        .expect("run deploy/generate.sh");
    assert!(
        run.status.success(),
        "deploy/generate.sh: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let fresh = yaml_files(out.path());
    let checked_in = yaml_files(&repo_root().join("deploy/generated"));
    assert!(!fresh.is_empty(), "deploy/generate.sh wrote nothing");
    let names = |files: &BTreeMap<String, String>| files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&checked_in),
        names(&fresh),
        "deploy/generated/ lists other files than the chart renders; run `deploy/generate.sh`"
    );
    for (name, text) in &fresh {
        if checked_in[name] != *text {
            let line = checked_in[name]
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| "its length".to_owned(), |i| format!("line {}", i + 1));
            panic!(
                "deploy/generated/{name} is stale (first difference at {line}): the chart \
                 deploy/helm/lockstep is its source; run `deploy/generate.sh`"
            );
        }
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
        ("CustomResourceDefinition", "gatewayparameters.lockstep.dev"),
        (
            "CustomResourceDefinition",
            "gatewayclasses.gateway.networking.k8s.io",
        ),
        ("CustomResourceDefinition", "gateways.gateway.networking.k8s.io"),
        ("CustomResourceDefinition", "grpcroutes.gateway.networking.k8s.io"),
        ("CustomResourceDefinition", "httproutes.gateway.networking.k8s.io"),
        (
            "CustomResourceDefinition",
            "referencegrants.gateway.networking.k8s.io",
        ),
        (
            "CustomResourceDefinition",
            "backendtlspolicies.gateway.networking.k8s.io",
        ),
        (
            "CustomResourceDefinition",
            "listenersets.gateway.networking.k8s.io",
        ),
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
        ("ValidatingAdmissionPolicy", "lockstep-routerconfig"),
        ("ValidatingAdmissionPolicyBinding", "lockstep-routerconfig"),
        ("Deployment", "lockstep-operator"),
        ("Deployment", "lockstep-proxy"),
        ("Service", "lockstep-proxy"),
        ("PodDisruptionBudget", "lockstep-operator"),
        ("PodDisruptionBudget", "lockstep-proxy"),
        ("GatewayClass", "lockstep"),
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
    // The GatewayClass is lockstep's controller's, without parameters: its Gateways get the
    // default fleet (the chart's gatewayClass.parametersRef names none).
    let class = find(&objects, "GatewayClass", "lockstep");
    assert_eq!(
        class["spec"]["controllerName"],
        lockstep_crds::gateway::CONTROLLER_NAME
    );
    assert!(class["spec"]["parametersRef"].is_null(), "{class}");
    // The CRD in the build is the generated one, unchanged by kustomize.
    let crd: Value = serde_saphyr::from_str(&read("deploy/helm/lockstep/crds/routerconfig.yaml")).unwrap();
    let built = find(&objects, "CustomResourceDefinition", "routerconfigs.lockstep.dev");
    assert_eq!(numbers_as_floats(&built["spec"]), numbers_as_floats(&crd["spec"]));
    // The ClusterRoles are those of deploy/generated/rbac-*.yaml, which the e2e runs the
    // binaries with.
    for file in [
        "deploy/generated/rbac-proxy.yaml",
        "deploy/generated/rbac-operator.yaml",
    ] {
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
    let out = cp.kubectl_output(args, stdin).expect("run kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The namespace must exist for a dry run of the objects in it; create it for real (it is
/// also the one of the manifests, with its Pod Security labels). So must the Gateway API CRDs
/// for the GatewayClass: a dry run creates no CRD, and kubectl maps every object's kind
/// before applying any (a real install applies them first too, as README.md says).
fn ensure_namespace(cp: &ControlPlane) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let path = repo_root().join("deploy/generated/namespace.yaml");
        cp.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])
            .expect("create lockstep-system");
        lockstep_e2e::kubectl_install_gateway_api_crds(cp);
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
    // The fleets the operator provisions for Gateways run the chart's own proxy image.
    assert_eq!(
        flag(
            &operator["spec"]["template"]["spec"]["containers"][0],
            "--gateway-proxy-image"
        ),
        container["image"].as_str()
    );
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
