//! Provisioning a fleet per Gateway: what the operator applies for a Gateway of a lockstep
//! class that names no existing fleet (no [`super::serve::FLEET_ANNOTATION`]), what its class's
//! parameters say, which address goes into `status.addresses`, and how the fleet's Deployment
//! tempers the Gateway's `Programmed`.
//!
//! | object (in the Gateway's namespace, all named [`fleet_name`], controller-owned by the Gateway) | from |
//! |---|---|
//! | ServiceAccount | fixed |
//! | Role: read RouterConfigs, EndpointSlices, Services; read only the Secrets the Gateway names (a copy's, for one of another namespace) | the listeners' `certificateRefs`, `spec.tls.backend.clientCertificateRef` |
//! | RoleBinding to that Role, and RoleBinding `<name>-member` to the ClusterRole [`MEMBER_CLUSTER_ROLE`] (its Lease and RouterReplica) | fixed |
//! | Deployment of the proxy | replicas from the class's parameters, image from the operator's flag, `--watch-namespaces` from the backends |
//! | Service | type from the class's parameters; one port per listener port, to the container's port for the listener's protocol |
//!
//! A generated RouterConfig may name a Service of another namespace (`service.namespace`: a
//! route's backend in the route's own namespace, or one a ReferenceGrant allows), and a
//! replica resolves only Services of the namespaces it watches. So the fleet watches the
//! Gateway's namespace and every namespace its RouterConfigs' Services are in
//! ([`watch_namespaces`], from what is actually lowered: a backend refused for want of a
//! ReferenceGrant is answered 500 and names no namespace), and in each of those other
//! namespaces gets read access:
//!
//! | object (in a backend namespace, named [`fleet_name`]) | what |
//! |---|---|
//! | Role | read RouterConfigs, EndpointSlices, Services: what a replica lists in every namespace it watches; no Secret |
//! | RoleBinding | that Role to the fleet's ServiceAccount |
//!
//! An ownerReference cannot cross namespaces, so these two carry the labels of every
//! provisioned object and [`OWNER_ANNOTATION`] naming their Gateway; the operator deletes them
//! when the fleet no longer watches their namespace or the Gateway is gone.
//!
//! The pod template depends only on the fleet name, the image and the watched namespaces: a
//! proxy always listens on [`HTTP_CONTAINER_PORT`] and [`HTTPS_CONTAINER_PORT`], so adding
//! or removing a listener changes the Service's ports (and the Role when its certificates
//! change), never the pods; a backend in a namespace not watched yet rolls the pods out with
//! the new `--watch-namespaces`. Without a backend of another namespace the flag is left out
//! (the proxy then watches `--namespace`), so such a fleet's pods are as before.
//!
//! Pure: the operator gathers the objects and applies what these functions render.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use lockstep_crds::gateway::{Gateway, GatewayClass, GatewayStatusAddress};
use lockstep_crds::{GatewayParameters, GatewayParametersSpec, GatewayServiceType, RouterConfigSpec};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::status::{self, condition, reason};

/// The container port of HTTP listeners (unprivileged, as the chart's proxies).
pub const HTTP_CONTAINER_PORT: i32 = 8080;
/// The container port of HTTPS listeners.
pub const HTTPS_CONTAINER_PORT: i32 = 8443;
/// The proxy's admin port (`/readyz`, `/healthz`, `/metrics`).
pub const ADMIN_CONTAINER_PORT: i32 = 9080;
/// The ClusterRole (installed by the chart) granting a proxy its Lease and RouterReplica; the
/// operator may bind it (RBAC verb `bind`) but holds none of its rights.
pub const MEMBER_CLUSTER_ROLE: &str = "lockstep-proxy-member";
/// Annotation on every provisioned object: the digest of what was applied, so an unchanged
/// object is not applied again.
pub const APPLIED_ANNOTATION: &str = "lockstep.dev/applied";
/// Annotation on a provisioned object outside the Gateway's namespace, which cannot carry an
/// ownerReference to it: `<namespace>/<name>/<uid>` of its Gateway ([`owner_annotation`],
/// [`parse_owner_annotation`]).
pub const OWNER_ANNOTATION: &str = "lockstep.dev/gateway";
/// The label Gateway API asks of every resource provisioned for a Gateway, its value the
/// Gateway's name (`gateway.networking.k8s.io/gateway-name`, Gateway API's
/// `GatewayNameLabelKey`); left out when the name is longer than a label value may be.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The group and kind a class's `parametersRef` must name.
pub const PARAMETERS_GROUP: &str = "lockstep.dev";
/// See [`PARAMETERS_GROUP`].
pub const PARAMETERS_KIND: &str = "GatewayParameters";

/// The name of a Gateway's fleet and of every object provisioned for it:
/// `<gateway>-<hash>`, the hash (8 hex digits of SHA-256 over namespace and name) keeping
/// apart Gateways of one name in two namespaces and names the mapping below joins alike. A
/// fleet name is a DNS label and a Service name must also start with a letter, so dots become
/// dashes, a name not starting with a letter gets `gw-` in front, and the name is cut to leave
/// room for the hash within 63 characters.
pub fn fleet_name(namespace: &str, gateway: &str) -> String {
    let hash = hex::encode(&Sha256::digest(format!("{namespace}\0{gateway}").as_bytes())[..4]);
    let mut base: String = gateway.chars().map(|c| if c == '.' { '-' } else { c }).collect();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base = format!("gw-{base}");
    }
    // 63 = base + '-' + 8.
    let base: String = base.chars().take(54).collect();
    format!("{}-{hash}", base.trim_end_matches('-'))
}

/// The ServiceAccount of a provisioned fleet: `lockstep-proxy-<fleet>`, so the chart's
/// admission policy, which keeps a proxy to its own Lease and RouterReplica, knows it as a proxy.
pub fn service_account_name(fleet: &str) -> String {
    format!("lockstep-proxy-{fleet}")
}

/// The parameters of a class: the defaults without `parametersRef`; the referenced
/// GatewayParameters' spec; or why the reference cannot be used (the message of
/// `Accepted=False InvalidParameters`, naming the reference).
pub fn class_parameters(
    class: &GatewayClass,
    parameters: &[GatewayParameters],
) -> Result<GatewayParametersSpec, String> {
    let Some(r) = &class.spec.parameters_ref else {
        return Ok(GatewayParametersSpec::default());
    };
    let named = format!("parametersRef {}/{} {}", r.group, r.kind, r.name);
    if r.group != PARAMETERS_GROUP || r.kind != PARAMETERS_KIND {
        return Err(format!(
            "{named}: lockstep reads only {PARAMETERS_GROUP}/{PARAMETERS_KIND}"
        ));
    }
    if let Some(ns) = &r.namespace {
        return Err(format!(
            "{named}: namespace {ns} is set, but {PARAMETERS_KIND} is cluster-scoped"
        ));
    }
    parameters
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(r.name.as_str()))
        .map(|p| p.spec.clone())
        .ok_or_else(|| format!("{named}: not found"))
}

/// One port of a provisioned Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortPlan {
    /// `http-<port>` or `https-<port>`.
    pub name: String,
    /// The listener's port.
    pub port: i32,
    /// The container port of the listener's protocol.
    pub target_port: i32,
}

/// What is provisioned for one Gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetPlan {
    /// The Gateway's namespace, where everything lives.
    pub namespace: String,
    /// The Gateway's name.
    pub gateway: String,
    /// The Gateway's uid (the ownerReference).
    pub gateway_uid: String,
    /// [`fleet_name`]: the fleet and the name of every object.
    pub name: String,
    /// Proxy replicas.
    pub replicas: i32,
    /// The Service's type.
    pub service_type: GatewayServiceType,
    /// Each proxy container's compute resources; None: [`default_resources`].
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// The Service's ports, by listener port.
    pub ports: Vec<ServicePortPlan>,
    /// The Secrets the fleet reads ([`gateway_secrets`]), sorted: the only Secrets the
    /// proxies may read.
    pub secrets: Vec<String>,
    /// The namespaces the proxies watch ([`watch_namespaces`]): sorted, the Gateway's own
    /// among them.
    pub watch_namespaces: Vec<String>,
    /// The proxy image.
    pub image: String,
    /// The Gateway's `spec.infrastructure.labels`: on every provisioned object and the pods,
    /// under lockstep's own labels (which win a clash: they are the selectors).
    pub infrastructure_labels: BTreeMap<String, String>,
    /// The Gateway's `spec.infrastructure.annotations`: on every provisioned object and the
    /// pods, under lockstep's own annotations.
    pub infrastructure_annotations: BTreeMap<String, String>,
    /// The static addresses the Service takes as its cluster IPs ([`static_addresses`]);
    /// empty: the apiserver picks one.
    pub cluster_ips: Vec<String>,
}

/// A Gateway's static addresses (`spec.addresses` entries of type `IPAddress` with a value)
/// as its provisioned Service can take them: as its cluster IPs (`spec.clusterIPs`), at most
/// one per IP family, the first of each family in spec order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StaticAddresses {
    /// The Service's cluster IPs: empty when no static address is asked for.
    pub cluster_ips: Vec<String>,
    /// Why a requested address cannot be assigned (a second one of a family, or not an IP
    /// address): the message of `Programmed=False AddressNotUsable`.
    pub not_usable: Option<String>,
}

/// See [`StaticAddresses`]. Entries without a value ask for any address (the apiserver's
/// pick); other types are refused at acceptance (`UnsupportedAddress`) and not read here.
pub fn static_addresses(gateway: &Gateway) -> StaticAddresses {
    let mut out = StaticAddresses::default();
    let mut families: Vec<bool> = Vec::new();
    let mut unusable: Vec<String> = Vec::new();
    for (i, a) in gateway.spec.addresses.iter().enumerate() {
        if a.value.is_empty() || a.address_type.as_deref().is_some_and(|t| t != "IPAddress") {
            continue;
        }
        match a.value.parse::<std::net::IpAddr>() {
            Err(_) => unusable.push(format!("spec.addresses[{i}] {} is not an IP address", a.value)),
            Ok(ip) if families.contains(&ip.is_ipv4()) => unusable.push(format!(
                "spec.addresses[{i}] {}: a Service has one cluster IP per IP family, and an earlier address takes it",
                a.value
            )),
            Ok(ip) => {
                families.push(ip.is_ipv4());
                out.cluster_ips.push(ip.to_string());
            }
        }
    }
    if !unusable.is_empty() {
        out.not_usable = Some(unusable.join("; "));
    }
    out
}

/// The Service ports of `gateway`'s listeners: one per distinct listener port, in spec order,
/// to [`HTTP_CONTAINER_PORT`] or [`HTTPS_CONTAINER_PORT`] by protocol. Listeners of other
/// protocols are not served (`UnsupportedProtocol`) and get no port; of two listeners with
/// one port and two protocols (`ProtocolConflict`) the first decides.
pub fn service_ports(gateway: &Gateway) -> Vec<ServicePortPlan> {
    let mut ports: Vec<ServicePortPlan> = Vec::new();
    for l in &gateway.spec.listeners {
        let (proto, target) = match l.protocol.as_str() {
            "HTTP" => ("http", HTTP_CONTAINER_PORT),
            "HTTPS" => ("https", HTTPS_CONTAINER_PORT),
            _ => continue,
        };
        if ports.iter().any(|p| p.port == l.port) {
            continue;
        }
        ports.push(ServicePortPlan {
            name: format!("{proto}-{}", l.port),
            port: l.port,
            target_port: target,
        });
    }
    ports
}

/// The Secrets a fleet of `gateway` reads, all in the Gateway's namespace, sorted and
/// deduplicated: each certificate its listeners name and the certificate it presents to
/// backends (`spec.tls.backend.clientCertificateRef`), core Secrets only. One of another
/// namespace is served from its copy ([`super::serve::CertificateCopy`], made only where a
/// ReferenceGrant allows it), so the copy's name is granted, never the source.
pub fn gateway_secrets(gateway: &Gateway) -> Vec<String> {
    let namespace = gateway.metadata.namespace.clone().unwrap_or_default();
    let name = gateway.metadata.name.clone().unwrap_or_default();
    let client = gateway.spec.backend_client_certificate_ref();
    let mut names: Vec<String> = gateway
        .spec
        .listeners
        .iter()
        .filter_map(|l| l.tls.as_ref())
        .flat_map(|tls| tls.certificate_refs.iter())
        .chain(client)
        .filter(|r| {
            r.group.as_deref().unwrap_or("").is_empty() && r.kind.as_deref().unwrap_or("Secret") == "Secret"
        })
        .map(|r| match r.namespace.as_deref() {
            Some(other) if other != namespace => super::serve::certificate_copy_name(&name, other, &r.name),
            _ => r.name.clone(),
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The namespaces a fleet serving `specs` (RouterConfigs of `namespace`) must watch to
/// resolve every Service they name: `namespace` and each `service.namespace`, sorted and
/// deduplicated. Only what was lowered counts: a backendRef to another namespace that no
/// ReferenceGrant allows is lowered to a 500 answer and names no namespace, so its namespace
/// is not read.
pub fn watch_namespaces<'a>(
    namespace: &str,
    specs: impl IntoIterator<Item = &'a RouterConfigSpec>,
) -> Vec<String> {
    let mut names: Vec<String> = vec![namespace.to_owned()];
    for spec in specs {
        for path in spec.rules.iter().flat_map(|r| r.paths.iter()) {
            names.extend(
                crate::validate::service_backends(path).filter_map(|(_, service)| service.namespace.clone()),
            );
        }
    }
    names.sort();
    names.dedup();
    names
}

/// What to provision for `gateway` with its class's `parameters` and the proxy `image`,
/// for a fleet serving `specs`: the generated RouterConfigs it is to serve (those about to be
/// applied and those kept as they are), which say the namespaces it watches.
pub fn plan<'a>(
    gateway: &Gateway,
    parameters: &GatewayParametersSpec,
    image: &str,
    specs: impl IntoIterator<Item = &'a RouterConfigSpec>,
) -> FleetPlan {
    let namespace = gateway.metadata.namespace.clone().unwrap_or_default();
    let name = gateway.metadata.name.clone().unwrap_or_default();
    let infrastructure = gateway.spec.infrastructure.clone().unwrap_or_default();
    FleetPlan {
        cluster_ips: static_addresses(gateway).cluster_ips,
        infrastructure_labels: infrastructure.labels,
        infrastructure_annotations: infrastructure.annotations,
        watch_namespaces: watch_namespaces(&namespace, specs),
        name: fleet_name(&namespace, &name),
        namespace,
        gateway: name,
        gateway_uid: gateway.metadata.uid.clone().unwrap_or_default(),
        replicas: parameters.replicas,
        service_type: parameters.service_type,
        resources: parameters.resources.clone(),
        ports: service_ports(gateway),
        secrets: gateway_secrets(gateway),
        image: image.to_owned(),
    }
}

/// A proxy container's compute resources when the class's parameters name none: a tenth of
/// a core and 64 MiB requested, one core and 256 MiB at most.
pub fn default_resources() -> Value {
    json!({
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    })
}

/// The labels of the pods of a fleet (the Deployment's and the Service's selector).
pub fn selector(fleet: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "lockstep".to_owned()),
        ("app.kubernetes.io/component".to_owned(), "proxy".to_owned()),
        (lockstep_crds::FLEET_LABEL.to_owned(), fleet.to_owned()),
    ])
}

impl FleetPlan {
    /// The labels of every provisioned object and pod: the Gateway's infrastructure labels,
    /// then [`GATEWAY_NAME_LABEL`] and `own` over them.
    fn labels(&self, own: BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut labels = self.infrastructure_labels.clone();
        // A label value is at most 63 characters; a Gateway name may be longer.
        if self.gateway.len() <= 63 {
            labels.insert(GATEWAY_NAME_LABEL.into(), self.gateway.clone());
        }
        labels.extend(own);
        labels
    }

    fn metadata(&self, name: &str) -> Value {
        let mut own = selector(&self.name);
        own.insert("app.kubernetes.io/part-of".into(), "lockstep".into());
        own.insert(
            super::serve::GENERATED_LABEL.into(),
            super::serve::GENERATED_BY_GATEWAY.into(),
        );
        let mut meta = json!({
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(own),
            "ownerReferences": [super::serve::gateway_owner_reference(&self.gateway, &self.gateway_uid)],
        });
        // Only when there are some, so the objects of a Gateway without them (and their
        // digests) stay as they were.
        if !self.infrastructure_annotations.is_empty() {
            meta["annotations"] = json!(self.infrastructure_annotations);
        }
        meta
    }

    /// Metadata of an object in `namespace`, another than the Gateway's: labelled like the
    /// others, and [`OWNER_ANNOTATION`] in place of the ownerReference, which cannot cross
    /// namespaces.
    fn remote_metadata(&self, namespace: &str) -> Value {
        let mut meta = self.metadata(&self.name);
        meta["namespace"] = json!(namespace);
        if let Some(m) = meta.as_object_mut() {
            m.remove("ownerReferences");
        }
        meta["annotations"][OWNER_ANNOTATION] = json!(owner_annotation(
            &self.namespace,
            &self.gateway,
            &self.gateway_uid
        ));
        meta
    }

    /// The watched namespaces other than the Gateway's: where [`FleetPlan::backend_role`] and
    /// [`FleetPlan::backend_role_binding`] go.
    pub fn backend_namespaces(&self) -> impl Iterator<Item = &str> {
        self.watch_namespaces
            .iter()
            .map(String::as_str)
            .filter(|ns| *ns != self.namespace)
    }

    /// What a replica reads in a backend namespace `namespace`: what it lists in every
    /// namespace it watches (RouterConfigs, EndpointSlices, Services; it waits for all three
    /// lists before it serves anything). No Secret: a generated RouterConfig lives in the
    /// Gateway's namespace and names Secrets only there.
    pub fn backend_role(&self, namespace: &str) -> Value {
        with_digest(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": self.remote_metadata(namespace),
            "rules": [
                {"apiGroups": ["lockstep.dev"], "resources": ["routerconfigs"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]},
            ],
        }))
    }

    /// Binds [`FleetPlan::backend_role`] in `namespace` to the ServiceAccount.
    pub fn backend_role_binding(&self, namespace: &str) -> Value {
        with_digest(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": self.remote_metadata(namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": self.name},
            "subjects": self.subjects(),
        }))
    }

    /// The ServiceAccount the proxies run as.
    pub fn service_account(&self) -> Value {
        with_digest(json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": self.metadata(&service_account_name(&self.name)),
            "automountServiceAccountToken": true,
        }))
    }

    /// What the proxies read: RouterConfigs (of their fleet), EndpointSlices and Services of
    /// the Gateway's namespace, and the listeners' Secrets by name. The operator holds each of
    /// these rights itself, as Kubernetes requires of whoever writes a Role.
    pub fn role(&self) -> Value {
        let mut rules = vec![
            json!({"apiGroups": ["lockstep.dev"], "resources": ["routerconfigs"], "verbs": ["get", "list", "watch"]}),
            json!({"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}),
            json!({"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}),
        ];
        if !self.secrets.is_empty() {
            // The proxy watches each Secret with a metadata.name field selector, which RBAC
            // authorises against resourceNames.
            rules.push(json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": self.secrets, "verbs": ["get", "list", "watch"]}));
        }
        with_digest(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": self.metadata(&self.name),
            "rules": rules,
        }))
    }

    fn subjects(&self) -> Value {
        json!([{"kind": "ServiceAccount", "name": service_account_name(&self.name), "namespace": self.namespace}])
    }

    /// Binds [`FleetPlan::role`] to the ServiceAccount.
    pub fn role_binding(&self) -> Value {
        with_digest(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": self.metadata(&self.name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": self.name},
            "subjects": self.subjects(),
        }))
    }

    /// The name of [`FleetPlan::member_binding`].
    pub fn member_binding_name(&self) -> String {
        format!("{}-member", self.name)
    }

    /// Binds [`MEMBER_CLUSTER_ROLE`] (write Leases and RouterReplicas) in the Gateway's
    /// namespace to the ServiceAccount.
    pub fn member_binding(&self) -> Value {
        with_digest(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": self.metadata(&self.member_binding_name()),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": MEMBER_CLUSTER_ROLE},
            "subjects": self.subjects(),
        }))
    }

    /// The proxy Deployment: the chart's proxy pod (restricted security context, readiness on
    /// `/readyz`, preStop sleep then drain), serving this fleet in the Gateway's namespace and
    /// watching its backend namespaces.
    pub fn deployment(&self) -> Value {
        let labels = selector(&self.name);
        let mut pod_annotations: BTreeMap<String, String> = self.infrastructure_annotations.clone();
        pod_annotations.extend([
            ("prometheus.io/scrape".to_owned(), "true".to_owned()),
            ("prometheus.io/port".to_owned(), ADMIN_CONTAINER_PORT.to_string()),
            ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
        ]);
        let mut args = vec![
            "--replica-name=$(POD_NAME)".to_owned(),
            "--namespace=$(POD_NAMESPACE)".to_owned(),
            format!("--fleet={}", self.name),
        ];
        // Only with a backend elsewhere: without the flag the proxy watches --namespace, and
        // a fleet without such a backend keeps the pod template it had.
        if self.backend_namespaces().next().is_some() {
            args.push(format!("--watch-namespaces={}", self.watch_namespaces.join(",")));
        }
        args.extend([
            format!("--listen=0.0.0.0:{HTTP_CONTAINER_PORT}"),
            format!("--tls-listen=0.0.0.0:{HTTPS_CONTAINER_PORT}"),
            format!("--admin=0.0.0.0:{ADMIN_CONTAINER_PORT}"),
            "--drain-timeout=30s".to_owned(),
        ]);
        with_digest(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.metadata(&self.name),
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": labels},
                // Full capacity during upgrades: a new replica must be ready (synced) before an old one goes.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {
                        "labels": self.labels(labels.clone()),
                        "annotations": pod_annotations,
                    },
                    "spec": {
                        "serviceAccountName": service_account_name(&self.name),
                        "enableServiceLinks": false,
                        "terminationGracePeriodSeconds": 45,
                        "securityContext": {
                            "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [{
                            "name": "proxy",
                            "image": self.image,
                            "imagePullPolicy": "IfNotPresent",
                            "args": args,
                            "env": [
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                            ],
                            "ports": [
                                {"name": "http", "containerPort": HTTP_CONTAINER_PORT, "protocol": "TCP"},
                                {"name": "https", "containerPort": HTTPS_CONTAINER_PORT, "protocol": "TCP"},
                                {"name": "admin", "containerPort": ADMIN_CONTAINER_PORT, "protocol": "TCP"},
                            ],
                            // Ready only while the replica serves its fleet's current generations.
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "admin"},
                                "periodSeconds": 2, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 1,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "admin"},
                                "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
                            },
                            "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                            "resources": self
                                .resources
                                .as_ref()
                                .map_or_else(default_resources, |r| serde_json::to_value(r).expect("resources serialise")),
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "runAsNonRoot": true,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }],
                    },
                },
            },
        }))
    }

    /// The Service: the class's type, a port per listener port.
    pub fn service(&self) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| json!({"name": p.name, "port": p.port, "targetPort": p.target_port, "protocol": "TCP"}))
            .collect();
        let mut spec = json!({
            "type": self.service_type.as_str(),
            "selector": selector(&self.name),
            "ports": ports,
        });
        // Static addresses: the cluster IPs are immutable, so the operator replaces a Service
        // whose cluster IPs differ (`operator/src/gateway.rs`, `provision_fleet`).
        if let Some(first) = self.cluster_ips.first() {
            spec["clusterIP"] = json!(first);
            spec["clusterIPs"] = json!(self.cluster_ips);
            if self.cluster_ips.len() > 1 {
                spec["ipFamilyPolicy"] = json!("RequireDualStack");
            }
        }
        with_digest(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.metadata(&self.name),
            "spec": spec,
        }))
    }
}

/// `object` with [`APPLIED_ANNOTATION`] set to the digest of everything else in it (its
/// other annotations kept: an object without any digests as it always did).
fn with_digest(mut object: Value) -> Value {
    let digest = hex::encode(Sha256::digest(object.to_string().as_bytes()));
    object["metadata"]["annotations"][APPLIED_ANNOTATION] = json!(digest);
    object
}

/// The value of [`OWNER_ANNOTATION`] for Gateway `namespace/name` of `uid`.
pub fn owner_annotation(namespace: &str, name: &str, uid: &str) -> String {
    format!("{namespace}/{name}/{uid}")
}

/// The Gateway an [`OWNER_ANNOTATION`] value names: (namespace, name, uid). None when it is
/// not of that form (neither a namespace nor a name holds a `/`).
pub fn parse_owner_annotation(value: &str) -> Option<(&str, &str, &str)> {
    let mut parts = value.splitn(3, '/');
    let (namespace, name, uid) = (parts.next()?, parts.next()?, parts.next()?);
    let filled = !namespace.is_empty() && !name.is_empty() && !uid.is_empty();
    (filled && !uid.contains('/')).then_some((namespace, name, uid))
}

/// The Gateway's `status.addresses` from its Service: the load-balancer ingress addresses
/// once a load-balancer controller has written them, otherwise the cluster IP (so a Gateway
/// on a cluster without load balancers is reachable inside it). Empty while the Service is
/// missing or has no address. With static addresses (`cluster_ips`, [`StaticAddresses`]):
/// those of them that are the Service's cluster IPs, which is where they are assigned.
pub fn addresses(service: Option<&Service>, cluster_ips: &[String]) -> Vec<GatewayStatusAddress> {
    let Some(service) = service else {
        return Vec::new();
    };
    if !cluster_ips.is_empty() {
        let assigned = service.spec.as_ref().and_then(|s| s.cluster_ips.as_ref());
        return cluster_ips
            .iter()
            .filter(|ip| assigned.is_some_and(|a| a.contains(ip)))
            .map(|ip| address("IPAddress", ip))
            .collect();
    }
    let ingress: Vec<GatewayStatusAddress> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| match (&i.ip, &i.hostname) {
            (Some(ip), _) if !ip.is_empty() => Some(address("IPAddress", ip)),
            (_, Some(host)) if !host.is_empty() => Some(address("Hostname", host)),
            _ => None,
        })
        .collect();
    if !ingress.is_empty() {
        return ingress;
    }
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(|ip| vec![address("IPAddress", ip)])
        .unwrap_or_default()
}

fn address(type_: &str, value: &str) -> GatewayStatusAddress {
    GatewayStatusAddress {
        address_type: Some(type_.into()),
        value: value.into(),
    }
}

/// The Deployment's replicas as the operator reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentReplicas {
    /// Pods ready (`status.readyReplicas`).
    pub ready: i32,
    /// Pods wanted (`spec.replicas`).
    pub desired: i32,
}

/// The Gateway's `Programmed` for a provisioned fleet: the barrier's verdict (`barrier`, as
/// [`super::serve::judge`] wrote it), made False when the fleet cannot take traffic:
/// `AddressNotAssigned` while the Service has no address, `Pending` while no proxy pod is
/// ready (the barrier alone would say True for a Gateway with nothing to serve, or "no live
/// replica"); the message says how many replicas the Deployment has ready. A False
/// `Invalid` (not accepted) stands.
pub fn programmed(
    barrier: &Condition,
    fleet: &str,
    deployment: Option<DeploymentReplicas>,
    has_address: bool,
    generation: i64,
    now: Timestamp,
) -> Condition {
    if barrier.reason == reason::INVALID {
        return barrier.clone();
    }
    let replicas = match deployment {
        Some(d) => format!("Deployment {fleet} has {}/{} replicas ready", d.ready, d.desired),
        None => format!("Deployment {fleet} is not there yet"),
    };
    if !has_address {
        return status::condition(
            condition::PROGRAMMED,
            false,
            reason::ADDRESS_NOT_ASSIGNED,
            format!("Service {fleet} has no address yet; {replicas}"),
            generation,
            now,
        );
    }
    let none_ready = deployment.is_none_or(|d| d.ready == 0);
    match (barrier.status.as_str(), none_ready) {
        ("True", false) => barrier.clone(),
        ("True", true) => status::condition(
            condition::PROGRAMMED,
            false,
            reason::PENDING,
            format!("no proxy replica is ready: {replicas}"),
            generation,
            now,
        ),
        _ => {
            let mut c = barrier.clone();
            c.message = if c.message.is_empty() {
                replicas
            } else {
                format!("{}; {replicas}", c.message)
            };
            c
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (namespace, gateway, what the name must look like)
    type NameRow<'a> = (&'a str, &'a str, &'a dyn Fn(&str) -> bool);
    /// (the class's parametersRef, replicas and Service type or the message)
    type ParametersRow = (&'static str, Result<(i32, GatewayServiceType), &'static str>);
    /// (listeners, (name, port, target port) of each Service port)
    type PortsRow = (&'static str, &'static [(&'static str, i32, i32)]);

    fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
        serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn now() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    fn gateway(listeners: &str) -> Gateway {
        yaml(&format!(
            "metadata: {{name: gw, namespace: infra, uid: u1, generation: 3}}\nspec:\n  gatewayClassName: lockstep\n  listeners: {listeners}"
        ))
    }

    #[test]
    fn fleet_names_are_deterministic_labels_apart_per_namespace() {
        let long = "a".repeat(253);
        // (namespace, gateway, what the name must look like)
        let rows: [NameRow; 5] = [
            ("infra", "gw", &|n: &str| n.starts_with("gw-") && n.len() == 11),
            ("infra", "edge.example", &|n: &str| n.starts_with("edge-example-")),
            // A Service name must start with a letter.
            ("infra", "1gw", &|n: &str| n.starts_with("gw-1gw-")),
            ("infra", &long, &|n: &str| n.len() == 63 && n.starts_with("aaaa")),
            ("infra", "gw-", &|n: &str| !n.contains("--")),
        ];
        for (ns, gw, check) in rows {
            let name = fleet_name(ns, gw);
            assert!(check(&name), "{ns}/{gw}: {name}");
            assert_eq!(name, fleet_name(ns, gw), "deterministic");
            assert!(
                lockstep_crds::patterns::DNS_LABEL_RE.is_match(&name),
                "{name} is a fleet name"
            );
            assert!(name.len() <= 63 && name.starts_with(|c: char| c.is_ascii_lowercase()));
        }
        // Collision-safe: a namespace apart, or names the mapping joins alike.
        assert_ne!(fleet_name("a", "gw"), fleet_name("b", "gw"));
        assert_ne!(fleet_name("infra", "a.b"), fleet_name("infra", "a-b"));
        assert_ne!(
            fleet_name("infra", &format!("{long}x")),
            fleet_name("infra", &format!("{long}y"))
        );
    }

    fn class(parameters_ref: &str) -> GatewayClass {
        yaml(&format!(
            "metadata: {{name: lockstep}}\nspec: {{controllerName: lockstep.dev/gateway-controller{parameters_ref}}}"
        ))
    }

    #[test]
    fn class_parameters_from_the_reference() {
        let stored: GatewayParameters = yaml(
            "apiVersion: lockstep.dev/v1alpha1\nkind: GatewayParameters\nmetadata: {name: big}\nspec: {replicas: 5, serviceType: ClusterIP}",
        );
        let params = [stored];
        let rows: [ParametersRow; 5] = [
            ("", Ok((2, GatewayServiceType::LoadBalancer))),
            (
                ", parametersRef: {group: lockstep.dev, kind: GatewayParameters, name: big}",
                Ok((5, GatewayServiceType::ClusterIP)),
            ),
            (
                ", parametersRef: {group: lockstep.dev, kind: GatewayParameters, name: small}",
                Err("parametersRef lockstep.dev/GatewayParameters small: not found"),
            ),
            (
                ", parametersRef: {group: \"\", kind: ConfigMap, name: big, namespace: infra}",
                Err("parametersRef /ConfigMap big: lockstep reads only lockstep.dev/GatewayParameters"),
            ),
            (
                ", parametersRef: {group: lockstep.dev, kind: GatewayParameters, name: big, namespace: infra}",
                Err(
                    "parametersRef lockstep.dev/GatewayParameters big: namespace infra is set, but GatewayParameters is cluster-scoped",
                ),
            ),
        ];
        for (reference, want) in rows {
            let got = class_parameters(&class(reference), &params).map(|p| (p.replicas, p.service_type));
            assert_eq!(got, want.map_err(str::to_owned), "{reference}");
        }
    }

    #[test]
    fn service_ports_follow_listener_ports_to_the_protocol_port() {
        // (listeners, (name, port, target port) of each Service port)
        let rows: [PortsRow; 5] = [
            ("[{name: a, port: 80, protocol: HTTP}]", &[("http-80", 80, 8080)]),
            (
                "[{name: a, port: 80, protocol: HTTP}, {name: b, port: 443, protocol: HTTPS}]",
                &[("http-80", 80, 8080), ("https-443", 443, 8443)],
            ),
            // Two listeners on one port (host names apart): one Service port.
            (
                "[{name: a, port: 80, protocol: HTTP, hostname: a.example}, {name: b, port: 80, protocol: HTTP, hostname: b.example}, {name: c, port: 8080, protocol: HTTP}]",
                &[("http-80", 80, 8080), ("http-8080", 8080, 8080)],
            ),
            // Not served (UnsupportedProtocol): no port.
            (
                "[{name: a, port: 80, protocol: HTTP}, {name: t, port: 9000, protocol: TCP}]",
                &[("http-80", 80, 8080)],
            ),
            // ProtocolConflict: the first listener of the port decides.
            (
                "[{name: a, port: 80, protocol: HTTPS}, {name: b, port: 80, protocol: HTTP}]",
                &[("https-80", 80, 8443)],
            ),
        ];
        for (listeners, want) in rows {
            let got = service_ports(&gateway(listeners));
            let got: Vec<(&str, i32, i32)> = got
                .iter()
                .map(|p| (p.name.as_str(), p.port, p.target_port))
                .collect();
            assert_eq!(got, want, "{listeners}");
        }
    }

    /// A certificate of another namespace is served from its copy in the Gateway's
    /// namespace ([`super::super::serve::CertificateCopy`]): the fleet reads the copy, never
    /// the source, so the copy's name is granted (a fleet without it could not present it).
    #[test]
    fn only_the_gateways_own_secrets_and_copies_are_granted() {
        let gw = gateway(
            "[{name: a, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: b-cert}, {name: a-cert, kind: Secret, group: \"\"}]}},
              {name: b, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: a-cert}, {name: other, namespace: elsewhere}, {name: same, namespace: infra}, {name: cm, kind: ConfigMap}]}},
              {name: c, port: 80, protocol: HTTP}]",
        );
        let copy = |ns: &str, name: &str| super::super::serve::certificate_copy_name("gw", ns, name);
        let mut want = vec![
            "a-cert".to_owned(),
            "b-cert".to_owned(),
            copy("elsewhere", "other"),
            "same".to_owned(),
        ];
        want.sort();
        assert_eq!(gateway_secrets(&gw), want);
        // The backend client certificate too, by name or by its copy's.
        let mut with_client = gw.clone();
        with_client.spec.tls = Some(
            serde_json::from_value(json!({"backend": {"clientCertificateRef": {"name": "client"}}})).unwrap(),
        );
        assert!(gateway_secrets(&with_client).contains(&"client".to_owned()));
        with_client.spec.tls = Some(
            serde_json::from_value(
                json!({"backend": {"clientCertificateRef": {"name": "client", "namespace": "pki"}}}),
            )
            .unwrap(),
        );
        assert!(gateway_secrets(&with_client).contains(&copy("pki", "client")));
        let plan = plan(&gw, &GatewayParametersSpec::default(), "img:1", []);
        let role = plan.role();
        let secrets = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resources"][0] == "secrets")
            .expect("a secrets rule");
        assert_eq!(secrets["resourceNames"], json!(want));
        // Without certificates, no Secret at all.
        let plain = super::plan(
            &gateway("[{name: c, port: 80, protocol: HTTP}]"),
            &Default::default(),
            "i",
            [],
        );
        assert!(!plain.role().to_string().contains("secrets"));
    }

    #[test]
    fn the_rendered_objects() {
        let gw = gateway("[{name: a, port: 80, protocol: HTTP}, {name: b, port: 443, protocol: HTTPS}]");
        let params = GatewayParametersSpec {
            replicas: 4,
            service_type: GatewayServiceType::NodePort,
            resources: None,
        };
        let p = plan(&gw, &params, "registry/proxy:7", []);
        let name = fleet_name("infra", "gw");
        assert_eq!(p.name, name);
        let d = p.deployment();
        assert_eq!(d["metadata"]["name"], json!(name));
        assert_eq!(d["metadata"]["namespace"], json!("infra"));
        assert_eq!(
            d["metadata"]["ownerReferences"],
            json!([{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "gw", "uid": "u1", "controller": true}])
        );
        assert_eq!(d["spec"]["replicas"], json!(4));
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], json!(service_account_name(&name)));
        let container = &pod["containers"][0];
        assert_eq!(container["image"], json!("registry/proxy:7"));
        assert_eq!(container["resources"], default_resources());
        // The class's resources replace the default as a whole.
        let small = GatewayParametersSpec {
            resources: Some(serde_json::from_value(json!({"requests": {"cpu": "10m"}})).unwrap()),
            ..params.clone()
        };
        let small = plan(&gw, &small, "registry/proxy:7", []).deployment();
        assert_eq!(
            small["spec"]["template"]["spec"]["containers"][0]["resources"],
            json!({"requests": {"cpu": "10m"}})
        );
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.contains(&format!("--fleet={name}").as_str()), "{args:?}");
        assert!(args.contains(&"--listen=0.0.0.0:8080"), "{args:?}");
        assert!(args.contains(&"--tls-listen=0.0.0.0:8443"), "{args:?}");
        assert_eq!(
            d["spec"]["selector"]["matchLabels"]["lockstep.dev/fleet"],
            json!(name)
        );
        let s = p.service();
        assert_eq!(s["spec"]["type"], json!("NodePort"));
        assert_eq!(
            s["spec"]["ports"],
            json!([
                {"name": "http-80", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "https-443", "port": 443, "targetPort": 8443, "protocol": "TCP"},
            ])
        );
        let pod_labels = d["spec"]["template"]["metadata"]["labels"].as_object().unwrap();
        for (k, v) in s["spec"]["selector"].as_object().unwrap() {
            assert_eq!(pod_labels.get(k), Some(v), "the Service selects the pods by {k}");
        }
        let member = p.member_binding();
        assert_eq!(member["roleRef"]["kind"], json!("ClusterRole"));
        assert_eq!(member["roleRef"]["name"], json!(MEMBER_CLUSTER_ROLE));
        assert_eq!(member["subjects"][0]["name"], json!(service_account_name(&name)));
        assert_eq!(p.role_binding()["roleRef"]["name"], json!(name));
    }

    /// Gateway API asks every resource provisioned for a Gateway to carry
    /// `gateway.networking.k8s.io/gateway-name` and the Gateway's `spec.infrastructure`
    /// labels and annotations (the conformance test `GatewayInfrastructureMetadata` reads the
    /// ServiceAccount, the pods and the Service); lockstep's own labels stay over them, so a
    /// user label cannot take the fleet's selector away.
    #[test]
    fn infrastructure_labels_and_annotations_reach_every_provisioned_object() {
        let mut gw = gateway("[{name: a, port: 80, protocol: HTTP}]");
        gw.spec.infrastructure = Some(yaml(
            "labels: {key2: value2, app.kubernetes.io/component: mine}\nannotations: {key1: value1, prometheus.io/scrape: \"false\"}",
        ));
        let p = plan(&gw, &GatewayParametersSpec::default(), "i", []);
        let d = p.deployment();
        let pod = &d["spec"]["template"]["metadata"];
        for (what, meta) in [
            ("ServiceAccount", &p.service_account()["metadata"]),
            ("Service", &p.service()["metadata"]),
            ("Deployment", &d["metadata"]),
            ("pod template", pod),
            ("Role", &p.role()["metadata"]),
            ("backend Role", &p.backend_role("apps")["metadata"]),
        ] {
            assert_eq!(meta["labels"]["key2"], json!("value2"), "{what}");
            assert_eq!(meta["labels"][GATEWAY_NAME_LABEL], json!("gw"), "{what}");
            assert_eq!(
                meta["labels"]["app.kubernetes.io/component"],
                json!("proxy"),
                "{what}: ours win"
            );
            assert_eq!(meta["annotations"]["key1"], json!("value1"), "{what}");
        }
        assert_eq!(
            pod["annotations"]["prometheus.io/scrape"],
            json!("true"),
            "ours win"
        );
        assert!(p.backend_role("apps")["metadata"]["annotations"][OWNER_ANNOTATION].is_string());
        assert_eq!(d["spec"]["selector"]["matchLabels"], json!(selector(&p.name)));

        // Without infrastructure: no annotations of the user's, and a Gateway whose name is
        // too long for a label value gets no name label (rather than an object the apiserver
        // refuses).
        let mut long = gateway("[{name: a, port: 80, protocol: HTTP}]");
        long.metadata.name = Some("g".repeat(64));
        let p = plan(&long, &GatewayParametersSpec::default(), "i", []);
        let sa = p.service_account();
        assert!(sa["metadata"]["labels"].get(GATEWAY_NAME_LABEL).is_none());
        let annotations = sa["metadata"]["annotations"].as_object().unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), [APPLIED_ANNOTATION]);
    }

    #[test]
    fn listener_changes_touch_the_service_not_the_pods() {
        let one = plan(
            &gateway("[{name: a, port: 80, protocol: HTTP}]"),
            &Default::default(),
            "i:1",
            [],
        );
        let two = plan(
            &gateway(
                "[{name: a, port: 80, protocol: HTTP}, {name: b, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: c}]}}]",
            ),
            &Default::default(),
            "i:1",
            [],
        );
        assert_eq!(
            one.deployment(),
            two.deployment(),
            "the pod template is unchanged"
        );
        assert_ne!(one.service(), two.service());
        assert_ne!(one.role(), two.role(), "the new certificate is granted");
        assert_eq!(one.role_binding(), two.role_binding());
        // Parameters and the image change the Deployment.
        let bigger = plan(
            &gateway("[{name: a, port: 80, protocol: HTTP}]"),
            &GatewayParametersSpec {
                replicas: 3,
                ..Default::default()
            },
            "i:1",
            [],
        );
        assert_ne!(
            one.deployment()["metadata"]["annotations"],
            bigger.deployment()["metadata"]["annotations"]
        );
    }

    /// The specs the generated RouterConfigs of a Gateway `gw` in `infra` (listener `web`,
    /// routes from every namespace) would hold, for `routes` (YAML HTTPRoutes) with
    /// `grants` (YAML ReferenceGrants): the translation, lowered as the operator lowers it.
    fn served_specs(routes: &[&str], grants: &[&str]) -> Vec<RouterConfigSpec> {
        let class: GatewayClass =
            yaml("metadata: {name: lockstep}\nspec: {controllerName: lockstep.dev/gateway-controller}");
        let gw = gateway("[{name: web, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]");
        let routes: Vec<lockstep_crds::gateway::HTTPRoute> = routes.iter().map(|r| yaml(r)).collect();
        let grants: Vec<lockstep_crds::gateway::ReferenceGrant> = grants.iter().map(|g| yaml(g)).collect();
        let services: Vec<Service> = [("infra", "web"), ("apps", "api"), ("data", "db")]
            .iter()
            .map(|(ns, name)| {
                yaml(&format!(
                    "metadata: {{name: {name}, namespace: {ns}}}\nspec: {{ports: [{{port: 80}}]}}"
                ))
            })
            .collect();
        let inputs = super::super::GatewayInputs {
            listener_sets: &[],
            class: &class,
            gateway: &gw,
            http_routes: &routes,
            grpc_routes: &[],
            services: &services,
            secrets: &[],
            config_maps: &[],
            grants: &grants,
            namespaces: &[],
            parameters: &[],
            backend_tls_policies: &[],
        };
        let translation = super::super::translate(inputs, now()).expect("of lockstep's class");
        let config = translation.config.expect("accepted");
        super::super::serve::plan(&config, &fleet_name("infra", "gw"))
            .into_iter()
            .filter_map(|p| match p.outcome {
                super::super::serve::Outcome::Publish(spec) => Some(spec),
                _ => None,
            })
            .collect()
    }

    /// An HTTPRoute `name` in `ns` attached to `infra/gw`, with these backendRefs.
    fn route_in(ns: &str, name: &str, backends: &str) -> String {
        format!(
            "metadata: {{name: {name}, namespace: {ns}, uid: uid-{name}, generation: 1, creationTimestamp: \"2026-01-01T00:00:00Z\"}}\n\
             spec: {{parentRefs: [{{name: gw, namespace: infra}}], rules: [{{backendRefs: {backends}}}]}}"
        )
    }

    fn args(deployment: &Value) -> Vec<String> {
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_route_of_another_namespace_has_its_backends_namespace_watched() {
        // HTTPRouteCrossNamespace of the conformance suite: a route of namespace apps, on a
        // Gateway of infra that allows it, to a Service of its own namespace.
        let specs = served_specs(&[&route_in("apps", "cross", "[{name: api, port: 80}]")], &[]);
        assert_eq!(specs.len(), 1, "{specs:?}");
        let p = plan(&gateway("[]"), &Default::default(), "i:1", &specs);
        assert_eq!(p.watch_namespaces, ["apps", "infra"]);
        assert_eq!(p.backend_namespaces().collect::<Vec<_>>(), ["apps"]);
        let name = fleet_name("infra", "gw");
        let args = args(&p.deployment());
        assert!(
            args.contains(&"--watch-namespaces=apps,infra".to_owned()),
            "{args:?}"
        );
        // The Lease and the RouterReplica stay in the Gateway's namespace.
        assert!(
            args.contains(&"--namespace=$(POD_NAMESPACE)".to_owned()),
            "{args:?}"
        );

        let role = p.backend_role("apps");
        assert_eq!(role["metadata"]["namespace"], json!("apps"));
        assert_eq!(role["metadata"]["name"], json!(name));
        // No ownerReference across namespaces: the labels and the annotation say whose it is.
        assert!(role["metadata"].get("ownerReferences").is_none(), "{role}");
        assert_eq!(
            role["metadata"]["labels"][super::super::serve::GENERATED_LABEL],
            json!("Gateway")
        );
        assert_eq!(
            role["metadata"]["labels"][lockstep_crds::FLEET_LABEL],
            json!(name)
        );
        let owner = role["metadata"]["annotations"][OWNER_ANNOTATION]
            .as_str()
            .unwrap();
        assert_eq!(parse_owner_annotation(owner), Some(("infra", "gw", "u1")));
        assert!(role["metadata"]["annotations"][APPLIED_ANNOTATION].is_string());
        let resources: Vec<&str> = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["resources"][0].as_str().unwrap())
            .collect();
        assert_eq!(
            resources,
            ["routerconfigs", "endpointslices", "services"],
            "never a Secret"
        );
        for rule in role["rules"].as_array().unwrap() {
            assert_eq!(rule["verbs"], json!(["get", "list", "watch"]), "{rule}");
        }
        let binding = p.backend_role_binding("apps");
        assert_eq!(binding["metadata"]["namespace"], json!("apps"));
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name})
        );
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": service_account_name(&name), "namespace": "infra"}])
        );
    }

    #[test]
    fn a_backend_refused_for_want_of_a_reference_grant_adds_no_namespace() {
        // The route of apps names a Service of data: without a ReferenceGrant in data that
        // share is answered 500, and data is not read.
        let routes = [&*route_in(
            "apps",
            "cross",
            "[{name: api, port: 80}, {name: db, namespace: data, port: 80}]",
        )];
        let refused = plan(
            &gateway("[]"),
            &Default::default(),
            "i:1",
            &served_specs(&routes, &[]),
        );
        assert_eq!(refused.watch_namespaces, ["apps", "infra"]);
        // With the grant, data is watched too.
        let grant = "metadata: {name: allow, namespace: data}\nspec: {from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: apps}], to: [{group: \"\", kind: Service}]}";
        let granted = plan(
            &gateway("[]"),
            &Default::default(),
            "i:1",
            &served_specs(&routes, &[grant]),
        );
        assert_eq!(granted.watch_namespaces, ["apps", "data", "infra"]);
        assert!(args(&granted.deployment()).contains(&"--watch-namespaces=apps,data,infra".to_owned()));
    }

    #[test]
    fn backends_of_the_gateways_namespace_only_leave_the_pods_as_they_were() {
        let specs = served_specs(&[&route_in("infra", "local", "[{name: web, port: 80}]")], &[]);
        assert_eq!(specs.len(), 1, "{specs:?}");
        let p = plan(&gateway("[]"), &Default::default(), "i:1", &specs);
        assert_eq!(p.watch_namespaces, ["infra"]);
        assert_eq!(p.backend_namespaces().count(), 0);
        assert_eq!(
            p.deployment(),
            plan(&gateway("[]"), &Default::default(), "i:1", []).deployment(),
            "no --watch-namespaces: the proxy watches --namespace"
        );
        assert!(
            !args(&p.deployment())
                .iter()
                .any(|a| a.starts_with("--watch-namespaces"))
        );
        // Served elsewhere too: each namespace once, sorted.
        let more = served_specs(
            &[
                &route_in("infra", "local", "[{name: web, port: 80}]"),
                &route_in("apps", "a", "[{name: api, port: 80}]"),
                &route_in("apps", "b", "[{name: api, port: 80}]"),
            ],
            &[],
        );
        assert_eq!(watch_namespaces("infra", &more), ["apps", "infra"]);
    }

    #[test]
    fn owner_annotations_read_back() {
        let value = owner_annotation("infra", "gw", "0b7a-11");
        assert_eq!(parse_owner_annotation(&value), Some(("infra", "gw", "0b7a-11")));
        for bad in [
            "",
            "infra",
            "infra/gw",
            "infra/gw/",
            "/gw/u",
            "infra//u",
            "a/b/c/d",
        ] {
            assert_eq!(parse_owner_annotation(bad), None, "{bad}");
        }
    }

    fn service(yaml_text: &str) -> Service {
        yaml(yaml_text)
    }

    #[test]
    fn addresses_prefer_the_load_balancer() {
        let rows: [(&str, &[(&str, &str)]); 5] = [
            (
                "spec: {type: LoadBalancer, clusterIP: 10.0.0.7}",
                &[("IPAddress", "10.0.0.7")],
            ),
            (
                "spec: {type: LoadBalancer, clusterIP: 10.0.0.7}\nstatus: {loadBalancer: {ingress: [{ip: 203.0.113.9}, {hostname: lb.example.com}]}}",
                &[("IPAddress", "203.0.113.9"), ("Hostname", "lb.example.com")],
            ),
            (
                "spec: {type: ClusterIP, clusterIP: 10.0.0.8}",
                &[("IPAddress", "10.0.0.8")],
            ),
            ("spec: {type: ClusterIP, clusterIP: None}", &[]),
            ("spec: {type: ClusterIP}", &[]),
        ];
        for (text, want) in rows {
            let got: Vec<(String, String)> = addresses(Some(&service(text)), &[])
                .into_iter()
                .map(|a| (a.address_type.unwrap_or_default(), a.value))
                .collect();
            let want: Vec<(String, String)> = want.iter().map(|(t, v)| ((*t).into(), (*v).into())).collect();
            assert_eq!(got, want, "{text}");
        }
        assert!(addresses(None, &[]).is_empty());
    }

    /// `GatewayStaticAddresses`: a requested `IPAddress` becomes the Service's cluster IP,
    /// one per family; the rest are not usable (`Programmed=False AddressNotUsable`, the
    /// message naming each entry), and `status.addresses` lists a static address only once it
    /// is the Service's.
    #[test]
    fn static_addresses_become_the_services_cluster_ips() {
        let with = |addresses: &str| {
            let mut gw = gateway("[{name: a, port: 80, protocol: HTTP}]");
            gw.spec.addresses = yaml(addresses);
            gw
        };
        let cases: [(&str, &[&str], Option<&str>); 6] = [
            ("[]", &[], None),
            ("[{type: IPAddress}]", &[], None),
            ("[{value: 10.0.0.14}]", &["10.0.0.14"], None),
            (
                "[{value: 192.0.2.1}, {type: IPAddress, value: 10.0.0.14}]",
                &["192.0.2.1"],
                Some("spec.addresses[1] 10.0.0.14: a Service has one cluster IP per IP family"),
            ),
            (
                "[{value: 10.0.0.14}, {value: \"fd00::14\"}]",
                &["10.0.0.14", "fd00::14"],
                None,
            ),
            (
                "[{value: not-an-ip}]",
                &[],
                Some("spec.addresses[0] not-an-ip is not an IP address"),
            ),
        ];
        for (spec, ips, not_usable) in cases {
            let got = static_addresses(&with(spec));
            assert_eq!(got.cluster_ips, ips, "{spec}");
            match not_usable {
                None => assert_eq!(got.not_usable, None, "{spec}"),
                Some(start) => assert!(
                    got.not_usable.as_deref().is_some_and(|m| m.starts_with(start)),
                    "{spec}: {:?}",
                    got.not_usable
                ),
            }
        }

        let p = plan(
            &with("[{value: 10.0.0.14}]"),
            &GatewayParametersSpec::default(),
            "i",
            [],
        );
        let svc = p.service();
        assert_eq!(svc["spec"]["clusterIP"], json!("10.0.0.14"));
        assert_eq!(svc["spec"]["clusterIPs"], json!(["10.0.0.14"]));
        assert!(svc["spec"].get("ipFamilyPolicy").is_none());
        let dual = plan(
            &with("[{value: 10.0.0.14}, {value: \"fd00::14\"}]"),
            &GatewayParametersSpec::default(),
            "i",
            [],
        );
        assert_eq!(
            dual.service()["spec"]["ipFamilyPolicy"],
            json!("RequireDualStack")
        );
        let dynamic = plan(
            &with("[{type: IPAddress}]"),
            &GatewayParametersSpec::default(),
            "i",
            [],
        );
        assert!(
            dynamic.service()["spec"].get("clusterIP").is_none(),
            "the apiserver picks"
        );

        // status.addresses: the static address once the Service has it, and nothing of a
        // Service still holding another (it is being replaced).
        let statics = ["10.0.0.14".to_owned()];
        let assigned = service("spec: {type: ClusterIP, clusterIP: 10.0.0.14, clusterIPs: [10.0.0.14]}");
        let got = addresses(Some(&assigned), &statics);
        assert_eq!((got.len(), got[0].value.as_str()), (1, "10.0.0.14"));
        assert_eq!(got[0].address_type.as_deref(), Some("IPAddress"));
        let old = service("spec: {type: ClusterIP, clusterIP: 10.0.0.99, clusterIPs: [10.0.0.99]}");
        assert!(addresses(Some(&old), &statics).is_empty());
    }

    #[test]
    fn programmed_waits_for_an_address_and_a_ready_replica() {
        let t = now();
        let barrier_true = status::condition(
            condition::PROGRAMMED,
            true,
            reason::PROGRAMMED,
            "2/2 replicas serve generation 3",
            3,
            t,
        );
        let empty_true = status::condition(
            condition::PROGRAMMED,
            true,
            reason::PROGRAMMED,
            "no route attached: nothing to serve",
            3,
            t,
        );
        let no_replicas = status::condition(
            condition::PROGRAMMED,
            false,
            reason::PENDING,
            "no live replica in the fleet",
            3,
            t,
        );
        let invalid = status::condition(
            condition::PROGRAMMED,
            false,
            reason::INVALID,
            "the Gateway is not accepted",
            3,
            t,
        );
        let ready = |r, d| Some(DeploymentReplicas { ready: r, desired: d });
        // (barrier, deployment, has address, status, reason, message contains)
        let rows = [
            (
                &barrier_true,
                ready(2, 2),
                true,
                "True",
                reason::PROGRAMMED,
                "2/2 replicas serve",
            ),
            (
                &empty_true,
                ready(0, 2),
                true,
                "False",
                reason::PENDING,
                "no proxy replica is ready: Deployment f has 0/2 replicas ready",
            ),
            (
                &empty_true,
                None,
                true,
                "False",
                reason::PENDING,
                "Deployment f is not there yet",
            ),
            (
                &no_replicas,
                ready(0, 2),
                true,
                "False",
                reason::PENDING,
                "no live replica in the fleet; Deployment f has 0/2 replicas ready",
            ),
            (
                &barrier_true,
                ready(2, 2),
                false,
                "False",
                reason::ADDRESS_NOT_ASSIGNED,
                "Service f has no address yet",
            ),
            (
                &invalid,
                ready(0, 2),
                false,
                "False",
                reason::INVALID,
                "not accepted",
            ),
        ];
        for (barrier, deployment, has_address, status, why, message) in rows {
            let c = programmed(barrier, "f", deployment, has_address, 3, t);
            assert_eq!((c.status.as_str(), c.reason.as_str()), (status, why), "{c:?}");
            assert!(c.message.contains(message), "{c:?}");
            assert_eq!(c.observed_generation, Some(3));
        }
    }
}
