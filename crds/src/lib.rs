//! The `RouterConfig` custom resource (`lockstep.dev/v1alpha1`): which hosts and paths of a
//! proxy fleet go to which backends, and the status through which every replica reports the
//! generation it serves.
//!
//! Admission rules live in the schema itself (OpenAPI constraints and CEL
//! `x-kubernetes-validations`), so a malformed object never reaches etcd. The same limits are
//! repeated as `garde` rules because standalone proxies read RouterConfigs from files that no
//! apiserver has seen.

use garde::Validate;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

mod cors;
pub use cors::*;
pub mod duration;
pub mod gateway;
mod names;
mod parameters;
pub mod patterns;
mod replica;
pub use names::*;
pub use parameters::*;
pub use replica::*;
mod traffic;
pub use traffic::*;

/// Most rules one RouterConfig may hold; keeps one object from blowing up every replica.
pub const MAX_RULES: usize = 256;
/// Most paths one rule may hold.
pub const MAX_PATHS: usize = 128;
/// Longest host name (RFC 1123).
pub const MAX_HOST_LEN: usize = 253;
/// Longest path.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest static upstream URL.
pub const MAX_URL_LEN: usize = 2048;

/// Routes of one proxy fleet: which hosts and paths go to which backends.
///
/// Every replica of the fleet applies the spec and reports the generation it serves in
/// `status.replicaStatus`; the operator sets `Ready=True` only when every live replica
/// serves `metadata.generation`, so `kubectl wait --for=condition=Ready` is a rollout barrier.
// Several printer columns share `type_ = "string"`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[kube(
    group = "lockstep.dev",
    version = "v1alpha1",
    kind = "RouterConfig",
    plural = "routerconfigs",
    namespaced,
    status = "RouterConfigStatus",
    shortname = "rcfg",
    category = "lockstep",
    derive = "PartialEq",
    doc = "RouterConfig routes hosts and paths of a lockstep proxy fleet to backends; its Ready condition is True only when every live proxy replica serves the current generation.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "True when every live replica serves the current generation",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Synced",
        type_ = "string",
        description = "replicas serving the current generation / live replicas",
        json_path = ".status.synced"
    ),
    printcolumn(
        name = "Generation",
        type_ = "integer",
        description = "metadata.generation of the spec",
        json_path = ".metadata.generation"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = "1",
        description = "reason of the Ready condition",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RouterConfigSpec {
    /// Name of the proxy fleet that serves these routes. Proxies started with
    /// `--fleet NAME` apply only the RouterConfigs of their fleet. Defaults to "default".
    #[serde(default = "default_fleet")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = crate::patterns::DNS_LABEL)
    )]
    #[garde(length(min = 1, max = 63), pattern(crate::patterns::DNS_LABEL_RE))]
    pub fleet: String,

    /// Host rules. A request is matched by its Host header (or :authority) first, then by
    /// path. An exact host beats a wildcard host. Between 1 and 256 rules.
    #[schemars(length(min = 1, max = 256))]
    #[garde(length(min = 1, max = MAX_RULES), dive)]
    pub rules: Vec<HostRule>,
}

/// Host syntax (RFC 1123 labels, lower case, optional leading "*." label), as a regex.
pub const HOST_PATTERN: &str =
    r"^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$";

const HOST_LOWER_CASE_CEL: &str = "self == self.lowerAscii()";
const HOST_LOWER_CASE_MSG: &str = "host must be lower case (hosts are matched case-insensitively)";
const HOST_WILDCARD_CEL: &str =
    "self == '*' || !self.contains('*') || (self.startsWith('*.') && self.lastIndexOf('*') == 0)";
const HOST_WILDCARD_MSG: &str = "a wildcard is allowed only as the whole first label of a host, as in \"*.example.com\" (or \"*\" alone, any host, in a RouterConfig generated from a Gateway)";
/// Reported only when the two rules above hold, so one mistake gives one message.
const HOST_SYNTAX_CEL: &str = concat!(
    "self == '*' || self != self.lowerAscii() || ",
    "(self.contains('*') && !(self.startsWith('*.') && self.lastIndexOf('*') == 0)) || ",
    r"self.matches(r'^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$')"
);
const HOST_SYNTAX_MSG: &str = "host must be a DNS name (RFC 1123): dot-separated labels of 1-63 lower-case letters, digits and '-', each starting and ending with a letter or digit, optionally after a leading \"*.\" (e.g. app.example.com, *.example.com)";

fn valid_host(host: &str, _: &()) -> garde::Result {
    static HOST_RE: std::sync::LazyLock<garde::rules::pattern::regex::Regex> =
        std::sync::LazyLock::new(|| {
            garde::rules::pattern::regex::Regex::new(HOST_PATTERN).expect("host regex")
        });
    if host == ANY_HOST {
        return Ok(());
    }
    if host != host.to_ascii_lowercase() {
        return Err(garde::Error::new(HOST_LOWER_CASE_MSG));
    }
    if host.contains('*') && !(host.starts_with("*.") && host.rfind('*') == Some(0)) {
        return Err(garde::Error::new(HOST_WILDCARD_MSG));
    }
    if !HOST_RE.is_match(host) {
        return Err(garde::Error::new(HOST_SYNTAX_MSG));
    }
    Ok(())
}

fn default_fleet() -> String {
    DEFAULT_FLEET.to_owned()
}

const WILDCARD_MATCH_CEL: &str = "!has(self.wildcardMatch) || self.host.startsWith('*.')";
const WILDCARD_MATCH_MSG: &str = "wildcardMatch applies to a wildcard host (\"*.example.com\") only";

/// Routes for one host.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new(WILDCARD_MATCH_CEL).message(WILDCARD_MATCH_MSG).field_path(".wildcardMatch")
)]
#[garde(custom(host_rule_rules))]
pub struct HostRule {
    /// Host to match, case-insensitively and without port: an exact DNS name such as
    /// "app.example.com", or a wildcard with a single leading label "*.example.com", which
    /// matches exactly one further label ("a.example.com", not "a.b.example.com").
    ///
    /// When an exact host has rules, a request for it is matched against its paths only; it
    /// does not fall back to a wildcard host that would also cover it.
    ///
    /// "*" alone matches any host that no exact or wildcard rule of the fleet covers (Gateway
    /// API's listener or route without host name). Only RouterConfigs generated from a
    /// Gateway may use it (label lockstep.dev/generated-from, written by the operator). With
    /// tls, its certificate is presented for any SNI name no other host's certificate covers,
    /// and to clients that send none (Gateway API's HTTPS listener without host name).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(
        validation = kube::core::Rule::new(HOST_LOWER_CASE_CEL).message(HOST_LOWER_CASE_MSG),
        validation = kube::core::Rule::new(HOST_WILDCARD_CEL).message(HOST_WILDCARD_MSG),
        validation = kube::core::Rule::new(HOST_SYNTAX_CEL).message(HOST_SYNTAX_MSG)
    )]
    #[garde(length(min = 1, max = MAX_HOST_LEN), custom(valid_host))]
    pub host: String,

    /// TLS for this host: the certificate comes from a kubernetes.io/tls Secret in the
    /// RouterConfig's namespace and is served on the proxies' TLS listener by SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub tls: Option<HostTls>,

    /// How a wildcard host matches: SingleLabel (default, one label) or Suffix (one or
    /// more, as Gateway API's); see [`WildcardMatch`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub wildcard_match: Option<WildcardMatch>,

    /// Paths of this host. Exact paths beat Prefix paths; among Prefix paths the longest
    /// wins. A request that matches none gets 404. Between 1 and 128 paths.
    #[schemars(length(min = 1, max = 128))]
    #[garde(length(min = 1, max = MAX_PATHS), dive)]
    pub paths: Vec<HttpPath>,
}

/// How a wildcard host matches: SingleLabel (the default) covers exactly one further
/// label ("a.example.com", not "a.b.example.com"); Suffix covers one or more
/// ("a.example.com" and "a.b.example.com", not "example.com"), as Gateway API host names
/// do, which RouterConfigs generated from a Gateway ask for. Only on a wildcard host. A more
/// specific host still wins: for "a.b.example.com", "*.b.example.com" beats a Suffix
/// "*.example.com", and a request is matched against the paths of that one host only. Over
/// TLS, a certificate is found for a one-label name only.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WildcardMatch {
    /// "*.example.com" covers exactly one further label: "a.example.com".
    #[default]
    SingleLabel,
    /// "*.example.com" covers one or more further labels: "a.example.com",
    /// "a.b.example.com" (Gateway API's hostnames).
    Suffix,
}

fn host_rule_rules(rule: &HostRule, _: &()) -> garde::Result {
    if rule.wildcard_match.is_some() && !rule.host.starts_with("*.") {
        return Err(garde::Error::new(format!("wildcardMatch: {WILDCARD_MATCH_MSG}")));
    }
    Ok(())
}

impl HostRule {
    /// Whether the rule's wildcard host covers more than one label.
    pub fn wildcard_suffix(&self) -> bool {
        self.wildcard_match == Some(WildcardMatch::Suffix)
    }
}

/// TLS settings of a host rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[serde(rename_all = "camelCase")]
pub struct HostTls {
    /// Name of a kubernetes.io/tls Secret (keys tls.crt and tls.key) in the RouterConfig's
    /// namespace. Its certificate must cover the rule's host (except in a RouterConfig
    /// generated from a Gateway: a listener's certificate is presented as it is).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = crate::patterns::DNS_SUBDOMAIN)
    )]
    #[garde(length(min = 1, max = 253), pattern(crate::patterns::DNS_SUBDOMAIN_RE))]
    pub secret_name: String,

    /// When true, plain-HTTP requests for this host are answered with a 308 redirect to
    /// https instead of being proxied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[garde(skip)]
    pub redirect_http: bool,
}

/// How a path is compared with the request path.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PathType {
    /// Matches the request path element by element, split on "/": "/foo" matches "/foo" and
    /// "/foo/bar" but not "/foobar". A trailing slash is ignored.
    #[default]
    Prefix,
    /// Matches the request path exactly, case-sensitively.
    Exact,
}

/// One path of a host and the backend it goes to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default, Validate)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new(BACKEND_AND_BACKENDS_CEL).message(BACKEND_AND_BACKENDS_MSG).field_path(".backends"),
    validation = kube::core::Rule::new(REDIRECT_AND_BACKENDS_CEL).message(REDIRECT_AND_BACKENDS_MSG).field_path(".filters.redirect"),
    validation = kube::core::Rule::new(NO_BACKEND_CEL).message(NO_BACKEND_MSG),
    validation = kube::core::Rule::new(PREFIX_ON_EXACT_CEL).message(PREFIX_ON_EXACT_MSG).field_path(".filters")
)]
#[garde(custom(path_rules))]
pub struct HttpPath {
    /// Absolute path, starting with "/", without query or fragment.
    #[schemars(length(min = 1, max = 1024), regex(pattern = crate::patterns::PATH))]
    #[garde(length(min = 1, max = MAX_PATH_LEN), pattern(crate::patterns::PATH_RE))]
    pub path: String,

    /// Prefix (whole path elements, as Ingress) or Exact. Defaults to Prefix.
    #[serde(default)]
    #[garde(skip)]
    pub path_type: PathType,

    /// Further conditions on the request (method, headers, query parameters); every listed
    /// condition must hold. Several entries may share a path with different matches. Among
    /// the entries that match a request the most specific wins: an Exact path, then the
    /// longest Prefix, then a method match, then the most header matches, then the most
    /// query parameter matches, then the older RouterConfig, then list order. When no entry
    /// of a path matches, the next shorter Prefix is tried.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub matches: Option<RequestMatch>,

    /// Where matching requests go: one backend. Exactly one of backend and backends is set,
    /// unless filters.redirect answers the request, which takes neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub backend: Option<Backend>,

    /// Where matching requests go: a weighted split over 1 to 16 backends, chosen per
    /// request in proportion to their weights (smoothly interleaved). Weight 0 drains a
    /// backend; when every weight is 0 requests get 503.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 16))]
    #[garde(length(max = MAX_BACKENDS), dive)]
    pub backends: Vec<WeightedBackend>,

    /// Header changes, redirect and rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub filters: Option<Filters>,

    /// Time limits of the request and of each upstream attempt (504 when exceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub timeouts: Option<Timeouts>,

    /// Retries on connect failures and listed upstream statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub retry: Option<Retry>,

    /// Protocols a client may switch this path's connection to with `Upgrade` (HTTP/1.1,
    /// RFC 9110 §7.8), by name: any case, a `/version` ignored, every protocol the client
    /// lists must be allowed. Defaults to `[websocket]`; `[]` allows none, and a request
    /// whose Upgrade is not allowed is answered by the backend without it. `h2c` is
    /// refused: tunnelled, it lets the backend speak HTTP/2 straight to the client, past
    /// routing, filters and timeouts. At most 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 8),
        inner(
            length(min = 1, max = 64),
            regex(pattern = crate::patterns::UPGRADE)
        )
    )]
    #[garde(inner(length(max = MAX_UPGRADES), inner(custom(upgrade_protocol))))]
    pub upgrades: Option<Vec<String>>,
}

const BACKEND_AND_BACKENDS_CEL: &str = "!(has(self.backend) && has(self.backends))";
const BACKEND_AND_BACKENDS_MSG: &str = "backend and backends are exclusive: set one";
const REDIRECT_AND_BACKENDS_CEL: &str =
    "!(has(self.filters) && has(self.filters.redirect)) || (!has(self.backends) && !has(self.backend))";
const REDIRECT_AND_BACKENDS_MSG: &str = "filters.redirect and backends are exclusive: a redirect answers the request itself (and takes no backend either)";
const NO_BACKEND_CEL: &str = concat!(
    "has(self.backend) || has(self.backends) || ",
    "(has(self.filters) && has(self.filters.redirect))"
);
const NO_BACKEND_MSG: &str = "one of backend or backends must be set (or filters.redirect)";
const PREFIX_ON_EXACT_CEL: &str = concat!(
    "!has(self.pathType) || self.pathType != 'Exact' || !has(self.filters) || (",
    "(!has(self.filters.redirect) || !has(self.filters.redirect.path) || !has(self.filters.redirect.path.replacePrefixMatch)) && ",
    "(!has(self.filters.rewrite) || !has(self.filters.rewrite.path) || !has(self.filters.rewrite.path.replacePrefixMatch)))"
);
const PREFIX_ON_EXACT_MSG: &str =
    "replacePrefixMatch needs a Prefix path; an Exact path takes replaceFullPath";

fn path_rules(path: &HttpPath, _: &()) -> garde::Result {
    let redirect = path.filters.as_ref().and_then(|f| f.redirect.as_ref());
    if path.backend.is_some() && !path.backends.is_empty() {
        return Err(garde::Error::new(format!("backends: {BACKEND_AND_BACKENDS_MSG}")));
    }
    if redirect.is_some() && (path.backend.is_some() || !path.backends.is_empty()) {
        return Err(garde::Error::new(format!(
            "filters.redirect: {REDIRECT_AND_BACKENDS_MSG}"
        )));
    }
    if redirect.is_none() && path.backend.is_none() && path.backends.is_empty() {
        return Err(garde::Error::new(format!("backend: {NO_BACKEND_MSG}")));
    }
    if path.path_type == PathType::Exact
        && let Some(filters) = &path.filters
    {
        let prefix = |m: Option<&PathModifier>| m.is_some_and(|m| m.replace_prefix_match.is_some());
        if prefix(filters.redirect.as_ref().and_then(|r| r.path.as_ref())) {
            return Err(garde::Error::new(format!(
                "filters.redirect.path.replacePrefixMatch: {PREFIX_ON_EXACT_MSG}"
            )));
        }
        if prefix(filters.rewrite.as_ref().and_then(|r| r.path.as_ref())) {
            return Err(garde::Error::new(format!(
                "filters.rewrite.path.replacePrefixMatch: {PREFIX_ON_EXACT_MSG}"
            )));
        }
    }
    Ok(())
}

impl HttpPath {
    /// The backends of this path with their weights: `backend` as one backend of weight 1,
    /// or `backends`.
    pub fn weighted_backends(&self) -> Vec<(Backend, u32)> {
        match &self.backend {
            Some(backend) => vec![(backend.clone(), 1)],
            None => self
                .backends
                .iter()
                .map(|b| (b.backend(), u32::try_from(b.weight).unwrap_or(0)))
                .collect(),
        }
    }
}

/// Exactly one of `service`, `url` and `status` is set, as a CEL rule.
pub(crate) const ONE_BACKEND_CEL: &str =
    "(has(self.service) ? 1 : 0) + (has(self.url) ? 1 : 0) + (has(self.status) ? 1 : 0) == 1";

/// Where requests go: exactly one of a Service, a static URL or a status the proxy answers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(ONE_BACKEND_CEL).message("exactly one of backend.service, backend.url or backend.status must be set").reason(kube::core::Reason::FieldValueInvalid))]
#[garde(custom(exactly_one_backend))]
pub struct Backend {
    /// A Service (in the RouterConfig's namespace unless `service.namespace` says
    /// otherwise); requests are balanced over its ready endpoints, read from EndpointSlices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub service: Option<ServiceBackend>,

    /// A static upstream, "http://host:port", "https://host:port" or "h2c://host:port"
    /// (HTTP/2 without TLS, for gRPC). The request path is forwarded unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 2048),
        regex(
            pattern = crate::patterns::URL
        )
    )]
    #[garde(inner(length(min = 1, max = MAX_URL_LEN), pattern(crate::patterns::URL_RE)))]
    pub url: Option<String>,

    /// No upstream: the proxy answers matching requests itself with this status, 400 to
    /// 599, and a short text body (gRPC requests get the gRPC status of it). In `backends`,
    /// only that share of the requests gets it: a generated RouterConfig answers the share of
    /// a Gateway API backendRef that cannot be resolved with 500, as Gateway API requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 400, max = 599))]
    #[garde(inner(range(min = 400, max = 599)))]
    pub status: Option<u16>,
}

fn exactly_one_backend(backend: &Backend, _: &()) -> garde::Result {
    one_backend(
        backend.service.is_some(),
        backend.url.is_some(),
        backend.status.is_some(),
        "exactly one of backend.service, backend.url or backend.status must be set",
    )
}

pub(crate) fn one_backend(service: bool, url: bool, status: bool, message: &'static str) -> garde::Result {
    if u8::from(service) + u8::from(url) + u8::from(status) == 1 {
        Ok(())
    } else {
        Err(garde::Error::new(message))
    }
}

/// A Service port, in the RouterConfig's namespace unless `namespace` says otherwise.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Validate)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBackend {
    /// Service name (DNS-1035 label).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = crate::patterns::DNS_1035_LABEL)
    )]
    #[garde(length(min = 1, max = 63), pattern(crate::patterns::DNS_1035_LABEL_RE))]
    pub name: String,

    /// The Service's namespace when it is not the RouterConfig's. Only RouterConfigs
    /// generated from a Gateway may set it (label lockstep.dev/generated-from, written by the
    /// operator, which sets it only where a ReferenceGrant allows the reference). Every
    /// replica of the fleet must watch that namespace (--watch-namespaces): a replica that
    /// does not cannot resolve the Service and reports the generation rejected, naming this
    /// field, instead of serving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = crate::patterns::DNS_LABEL))]
    #[garde(inner(length(min = 1, max = 63), pattern(crate::patterns::DNS_LABEL_RE)))]
    pub namespace: Option<String>,

    /// Service port number, 1-65535. Endpoints are taken from the EndpointSlice port with
    /// the same number, or the only port when the slice has one.
    #[schemars(range(min = 1, max = 65535))]
    #[garde(range(min = 1, max = 65535))]
    pub port: i32,

    /// How the proxy speaks to the endpoints, whatever the Service port's own `appProtocol`
    /// says: `kubernetes.io/h2c` is HTTP/2 over cleartext (prior knowledge), as a gRPC
    /// backend without TLS expects. Without it the Service port decides (h2c for
    /// `appProtocol: kubernetes.io/h2c`, HTTP/1.1 otherwise). RouterConfigs generated from a
    /// GRPCRoute set it on every backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub app_protocol: Option<AppProtocol>,

    /// Reach the endpoints over TLS, verified as this says (a generated RouterConfig's
    /// translation of a Gateway API BackendTLSPolicy). Without it, cleartext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub tls: Option<BackendTls>,
}

/// TLS to a Service's endpoints: the name sent as SNI and how the endpoint's certificate is
/// verified. A connection whose certificate fails the verification is not used: the request
/// is answered 502.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Validate,
)]
#[serde(rename_all = "camelCase")]
pub struct BackendTls {
    /// The SNI sent, and the DNS name the certificate must be valid for unless
    /// `subjectAltNames` is set.
    #[schemars(length(min = 1, max = 253))]
    #[garde(length(min = 1, max = 253))]
    pub hostname: String,

    /// PEM CA certificates the endpoint's chain must lead to. Absent: the web PKI roots
    /// built into the proxy (Gateway API's `wellKnownCACertificates: System`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 262144))]
    #[garde(inner(length(min = 1, max = 262144)))]
    pub ca_certificates: Option<String>,

    /// Names of which the certificate must carry at least one, instead of `hostname`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[garde(length(max = 16), dive)]
    pub subject_alt_names: Vec<BackendSubjectAltName>,

    /// Name of a kubernetes.io/tls Secret (keys tls.crt and tls.key) in the RouterConfig's
    /// namespace whose certificate the proxy presents when the endpoint asks for one (a
    /// generated RouterConfig's translation of a Gateway's
    /// `spec.tls.backend.clientCertificateRef`). Without it, none is presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = crate::patterns::DNS_SUBDOMAIN)
    )]
    #[garde(inner(length(min = 1, max = 253), pattern(crate::patterns::DNS_SUBDOMAIN_RE)))]
    pub client_certificate_secret_name: Option<String>,
}

/// A name a backend certificate may carry: exactly one of `hostname` (a DNS SAN) or `uri`
/// (a URI SAN, such as a SPIFFE ID). Checked by the RouterConfig validation, not by a CEL
/// rule: nested this deep in lists, one would exceed the apiserver's cost budget.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Validate,
)]
#[serde(rename_all = "camelCase")]
#[garde(custom(exactly_one_name))]
pub struct BackendSubjectAltName {
    /// A DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[garde(inner(length(min = 1, max = 253)))]
    pub hostname: Option<String>,

    /// A URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[garde(inner(length(min = 1, max = 2048)))]
    pub uri: Option<String>,
}

fn exactly_one_name(san: &BackendSubjectAltName, _: &()) -> garde::Result {
    match (&san.hostname, &san.uri) {
        (Some(_), None) | (None, Some(_)) => Ok(()),
        _ => Err(garde::Error::new("exactly one of hostname and uri")),
    }
}

/// A protocol the proxy speaks to a Service's endpoints (`service.appProtocol`).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppProtocol {
    /// HTTP/2 over cleartext with prior knowledge (Kubernetes' `kubernetes.io/h2c`).
    #[serde(rename = "kubernetes.io/h2c")]
    H2c,
}

/// Observed state: what the operator concluded and what each replica serves.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouterConfigStatus {
    /// The metadata.generation the operator last processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Accepted, Ready, Reconciling and Stalled. Each carries the observedGeneration it was
    /// computed for; written only by the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Live replicas serving the current generation with the expected digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_replicas: Option<i32>,

    /// Live replicas of the fleet (replicas holding a fresh Lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// "synced/replicas", for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<String>,

    /// The reports of the live replicas that serve this RouterConfig, copied by the operator
    /// from their RouterReplicas: at most 100, laggards and rejecters first. `replicas` and
    /// `syncedReplicas` always count all of them; `kubectl get rrep` lists every replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub replica_status: Vec<ReplicaStatus>,

    /// The newest generation the operator accepted, with its spec. While a newer generation
    /// is rejected, every replica serves this one, a restarted replica included, and its
    /// matches stay claimed: one team's typo neither drops its routes nor hands them to a
    /// newer RouterConfig. Written only by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_accepted: Option<AcceptedGeneration>,
}

/// A generation the operator accepted, kept in status so that what it served outlives
/// newer, rejected generations.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedGeneration {
    /// metadata.uid of the object it was accepted for: a status written for an earlier
    /// object of the same name never stands for a re-created one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// metadata.generation of the accepted spec.
    pub generation: i64,
    /// The accepted spec. Its schema is not repeated here: it was validated at admission
    /// and by the operator, and repeating the CEL rules would double the CRD's rule cost.
    #[schemars(schema_with = "opaque_object")]
    pub spec: RouterConfigSpec,
}

/// An object the apiserver stores as is.
fn opaque_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// What one proxy replica serves, as the operator copied it from the replica's RouterReplica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// The replica, "<namespace>/<name>" of its RouterReplica: replica identity is namespaced.
    pub name: String,

    /// Generation of the spec this replica serves.
    #[serde(default)]
    pub observed_generation: i64,

    /// Digest of what the replica serves, "sha256:<hex>", over the normalised spec and the
    /// resolved TLS material (certificate hashes, never keys).
    #[serde(default)]
    pub config_digest: String,

    /// When the replica swapped to this generation (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,

    /// Present while the newest generation failed to apply on this replica; the replica keeps
    /// serving observedGeneration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Rejection>,
}

/// A generation a replica could not apply.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// The generation that failed.
    pub generation: i64,
    /// Why, naming the field.
    pub message: String,
}

/// The generation of a RouterConfig that has none (one read from a file, which no
/// apiserver has numbered): its first. The operator, the proxies and the CLI all use this one
/// default, so they never disagree on which generation an object is at.
pub const DEFAULT_GENERATION: i64 = 1;

impl RouterConfig {
    /// The fleet of this RouterConfig.
    pub fn fleet(&self) -> &str {
        &self.spec.fleet
    }

    /// `metadata.generation`, or [`DEFAULT_GENERATION`] when it has none.
    pub fn generation(&self) -> i64 {
        self.metadata.generation.unwrap_or(DEFAULT_GENERATION)
    }

    /// `status.lastAccepted`: the newest generation the operator accepted for this very
    /// object, if any. One recorded for another object of the same name (another uid) is
    /// ignored: a RouterConfig deleted and re-created starts from nothing.
    pub fn last_accepted(&self) -> Option<&AcceptedGeneration> {
        let accepted = self.status.as_ref()?.last_accepted.as_ref()?;
        (accepted.uid == self.uid()).then_some(accepted)
    }

    /// metadata.uid, or "" for an object no apiserver stored (one read from a file).
    pub fn uid(&self) -> &str {
        self.metadata.uid.as_deref().unwrap_or_default()
    }

    /// Carries [`GENERATED_FROM_LABEL`]: generated from a Gateway by the operator (the
    /// admission policy lets only the operator write such an object), so it may say what only
    /// a Gateway's listener may.
    pub fn generated(&self) -> bool {
        self.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(GENERATED_FROM_LABEL))
    }
}

/// The RouterConfig CRD as YAML, as `crdgen` prints it and
/// `deploy/helm/lockstep/crds/routerconfig.yaml` holds it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    to_yaml(RouterConfig::crd(), "routerconfig")
}

/// The RouterReplica CRD as YAML, as `crdgen routerreplica` prints it and
/// `deploy/helm/lockstep/crds/routerreplica.yaml` holds it.
pub fn replica_crd_yaml() -> String {
    use kube::CustomResourceExt;
    to_yaml(RouterReplica::crd(), "routerreplica")
}

fn to_yaml(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    which: &str,
) -> String {
    let mut crd = serde_json::to_value(crd).expect("a CRD serialises to JSON");
    unwrap_descriptions(&mut crd);
    let mut out = format!(
        "# Generated by `cargo run -p lockstep-crds --features crdgen --bin crdgen {which}`; do not edit.\n",
    );
    out.push_str(&serde_saphyr::to_string(&crd).expect("a CRD serialises to YAML"));
    out
}

/// Doc comments are wrapped at source width; `kubectl explain` re-wraps text itself, so a
/// description keeps only its paragraph breaks.
fn unwrap_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    serde_json::Value::String(text) if key == "description" => {
                        *text = text
                            .split("\n\n")
                            .map(|para| para.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    _ => unwrap_descriptions(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}
