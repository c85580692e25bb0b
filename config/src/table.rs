//! The route table: an immutable index from (host, path) to a route, built once per
//! configuration change and shared by every request through an `ArcSwap`.
//!
//! Lookup cost depends on the length of the host and path, never on the number of routes:
//! exact hosts and wildcard suffixes are hash lookups, Exact paths a hash lookup, Prefix
//! paths a walk down a per-host trie of path segments.
//!
//! Matching, as Ingress and the DESIGN contract define it:
//! - The Host header is normalised ([`normalize_host`]): port and trailing dot dropped, lower
//!   case. An exact host beats a wildcard. A wildcard "*.example.com" matches exactly one
//!   further, non-empty label: "a.example.com", not "example.com" nor "a.b.example.com".
//! - The host is chosen first, then the path. When an exact host has routes, only its paths
//!   are considered: a request for it that matches none of them is not retried against a
//!   wildcard host (as nginx server blocks and Envoy virtual hosts behave; it gets 404).
//! - An Exact path must equal the request path (case-sensitive). It beats every Prefix path.
//! - A Prefix path matches whole path segments: "/foo" (or "/foo/") matches "/foo", "/foo/"
//!   and "/foo/bar", not "/foobar"; "/" matches everything. Empty segments are ignored, so
//!   "/a//b" is "/a/b". The longest matching Prefix (in segments) wins.

use std::{collections::HashMap, fmt, sync::Arc};

use lockstep_crds::{Backend, PathType, RouterConfigSpec};

use crate::ObjectKey;

/// Index of a route in its table.
pub type RouteId = u32;

/// One compiled host+path route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The RouterConfig that declared it.
    pub source: ObjectKey,
    /// The rule's host as written ("app.example.com" or "*.example.com").
    pub host: Arc<str>,
    /// The path as written.
    pub path: Arc<str>,
    /// Prefix or Exact.
    pub path_type: PathType,
    /// Where matching requests go.
    pub backend: BackendRef,
    /// Plain-HTTP requests get a redirect to https instead of being proxied.
    pub redirect_http: bool,
    /// The rule names a TLS Secret.
    pub tls_secret: Option<Arc<str>>,
}

impl Route {
    /// A short label for metrics: `namespace/name host path`.
    pub fn label(&self) -> String {
        format!(
            "{}/{} {}{}",
            self.source.namespace, self.source.name, self.host, self.path
        )
    }
}

/// A backend with its namespace resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendRef {
    /// A Service port, resolved through EndpointSlices.
    Service {
        /// Namespace of the Service (the RouterConfig's).
        namespace: Arc<str>,
        /// Service name.
        name: Arc<str>,
        /// Service port.
        port: u16,
    },
    /// A static upstream.
    Url {
        /// "http" or "https".
        scheme: Arc<str>,
        /// host:port as in the URL; the default port of the scheme when absent.
        authority: Arc<str>,
    },
}

impl fmt::Display for BackendRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendRef::Service {
                namespace,
                name,
                port,
            } => write!(f, "service {namespace}/{name}:{port}"),
            BackendRef::Url { scheme, authority } => write!(f, "{scheme}://{authority}"),
        }
    }
}

impl BackendRef {
    fn from_spec(namespace: &str, backend: &Backend) -> Option<Self> {
        match (&backend.service, &backend.url) {
            (Some(svc), None) => Some(BackendRef::Service {
                namespace: namespace.into(),
                name: svc.name.as_str().into(),
                port: u16::try_from(svc.port).ok()?,
            }),
            (None, Some(url)) => {
                let (scheme, rest) = url.split_once("://")?;
                let authority = rest.trim_end_matches('/');
                let authority = if has_port(authority) {
                    authority.to_owned()
                } else {
                    format!("{authority}:{}", if scheme == "https" { 443 } else { 80 })
                };
                Some(BackendRef::Url {
                    scheme: scheme.into(),
                    authority: authority.into(),
                })
            }
            _ => None,
        }
    }
}

fn has_port(authority: &str) -> bool {
    match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    }
}

#[derive(Default, Debug)]
struct PrefixNode {
    route: Option<RouteId>,
    children: HashMap<Box<str>, PrefixNode>,
}

#[derive(Default, Debug)]
struct HostRoutes {
    exact: HashMap<Box<str>, RouteId>,
    prefix: PrefixNode,
}

impl HostRoutes {
    fn lookup(&self, path: &str) -> Option<RouteId> {
        if let Some(id) = self.exact.get(path) {
            return Some(*id);
        }
        let mut node = &self.prefix;
        let mut best = node.route;
        for segment in segments(path) {
            match node.children.get(segment) {
                Some(child) => {
                    node = child;
                    if child.route.is_some() {
                        best = child.route;
                    }
                }
                None => break,
            }
        }
        best
    }

    /// Inserts unless the same match is taken; the first claim wins.
    fn insert(&mut self, path_type: PathType, path: &str, id: RouteId) -> bool {
        match path_type {
            PathType::Exact => match self.exact.entry(path.into()) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(id);
                    true
                }
            },
            PathType::Prefix => {
                let mut node = &mut self.prefix;
                for segment in segments(path) {
                    node = node.children.entry(segment.into()).or_default();
                }
                if node.route.is_some() {
                    return false;
                }
                node.route = Some(id);
                true
            }
        }
    }
}

/// Path elements split on "/", empty ones ignored, so "/a//b/" is ["a", "b"].
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// The key under which a Prefix or Exact path claims its match; two routes with the same key
/// conflict ("/foo" and "/foo/" are the same Prefix).
pub fn match_key(path_type: PathType, path: &str) -> String {
    match path_type {
        PathType::Exact => format!("Exact {path}"),
        PathType::Prefix => {
            let mut key = String::from("Prefix /");
            key.push_str(&segments(path).collect::<Vec<_>>().join("/"));
            key
        }
    }
}

/// Normalises a Host header: no port, no trailing dot, lower case. Borrowed when possible.
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: "[::1]:8080" -> "[::1]"
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
            _ => host,
        }
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

/// An immutable routing table compiled from the accepted RouterConfigs of a fleet.
#[derive(Default, Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    exact_hosts: HashMap<Box<str>, HostRoutes>,
    /// Keyed by the suffix after "*.": "*.example.com" is stored under "example.com".
    wildcard_hosts: HashMap<Box<str>, HostRoutes>,
}

impl RouteTable {
    /// Compiles specs in precedence order (oldest RouterConfig first). A host+path match that
    /// an earlier spec claimed is skipped: conflicts are reported by
    /// [`crate::resolve_fleet`], the table only has to be deterministic.
    pub fn compile<'a>(specs: impl IntoIterator<Item = (&'a ObjectKey, &'a RouterConfigSpec)>) -> Self {
        let mut table = RouteTable::default();
        for (key, spec) in specs {
            for rule in &spec.rules {
                let host = rule.host.to_ascii_lowercase();
                for path in &rule.paths {
                    let Some(backend) = BackendRef::from_spec(&key.namespace, &path.backend) else {
                        continue;
                    };
                    let id = RouteId::try_from(table.routes.len()).expect("fewer than 2^32 routes");
                    let host_routes = match host.strip_prefix("*.") {
                        Some(suffix) => table.wildcard_hosts.entry(suffix.into()).or_default(),
                        None => table.exact_hosts.entry(host.as_str().into()).or_default(),
                    };
                    if host_routes.insert(path.path_type, &path.path, id) {
                        table.routes.push(Route {
                            source: key.clone(),
                            host: host.as_str().into(),
                            path: path.path.as_str().into(),
                            path_type: path.path_type,
                            backend,
                            redirect_http: rule.tls.as_ref().is_some_and(|t| t.redirect_http),
                            tls_secret: rule.tls.as_ref().map(|t| t.secret_name.as_str().into()),
                        });
                    }
                }
            }
        }
        table
    }

    /// The route for a request, by its Host header (or :authority) and path (without query).
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Route> {
        let host = normalize_host(host);
        let host_routes = match self.exact_hosts.get(host.as_ref()) {
            Some(routes) => Some(routes),
            None => match host.split_once('.') {
                // A wildcard stands for one whole, non-empty label.
                Some((label, suffix)) if !label.is_empty() => self.wildcard_hosts.get(suffix),
                _ => None,
            },
        }?;
        host_routes.lookup(path).map(|id| &self.routes[id as usize])
    }

    /// Every route, in compile order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// No routes at all.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests;
