//! The route table: an immutable index from (host, path) to a route, built once per
//! configuration change and shared by every request through an `ArcSwap`.
//!
//! Lookup cost depends on the length of the host and path, never on the number of routes:
//! exact hosts and wildcard suffixes are hash lookups, Exact paths a hash lookup, Prefix
//! paths a walk down a per-host trie of path segments.
//!
//! Matching, as Ingress and docs/design.md define it:
//! - The Host header is normalised ([`normalize_host`]): port and trailing dot dropped, lower
//!   case. An exact host beats a wildcard. A wildcard "*.example.com" matches exactly one
//!   further, non-empty label: "a.example.com", not "example.com" nor "a.b.example.com";
//!   with `wildcardMatch: Suffix` (Gateway API's wildcards) one or more: "a.b.example.com"
//!   too. The most specific wildcard wins: the one with the longest suffix that covers the
//!   host ("*.b.example.com" before "*.example.com" for "a.b.example.com"). A rule for host
//!   "*" (generated RouterConfigs only) takes any host no exact host or wildcard covers.
//! - The host is chosen first, then the path. When an exact host has routes, only its paths
//!   are considered: a request for it that matches none of them is not retried against a
//!   wildcard host (as nginx server blocks and Envoy virtual hosts behave; it gets 404).
//! - An Exact path must equal the request path (case-sensitive). It beats every Prefix path.
//! - A Prefix path matches whole path segments: "/foo" (or "/foo/") matches "/foo", "/foo/"
//!   and "/foo/bar", not "/foobar"; "/" matches everything. Empty segments are ignored, so
//!   "/a//b" is "/a/b". The longest matching Prefix (in segments) wins.
//! - Several routes may share a host and path with different request matches (method,
//!   headers, query parameters). Among the routes of the most specific path whose matches
//!   hold, a method match wins, then more header matches, then more query matches, then the
//!   older RouterConfig, then list order (Gateway API's precedence). When no route of a path
//!   matches the request, the next shorter Prefix is tried.

use std::{fmt, sync::Arc};

use crate::FastMap;

use http::{HeaderMap, Method};
use lockstep_crds::{Backend, HttpPath, PathType, RouterConfigSpec};

use crate::{
    ObjectKey,
    traffic::{
        HeaderOps, RetryPolicy, RouteFilters, RouteMatch, RouteTimeouts, WeightedPicker, request_match_key,
    },
};

/// Index of a route in its table.
pub type RouteId = u32;

/// One compiled host+path route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The RouterConfig that declared it.
    pub source: ObjectKey,
    /// The rule's host as written ("app.example.com" or "*.example.com").
    pub host: Arc<str>,
    /// A wildcard host covering one or more labels (`wildcardMatch: Suffix`).
    pub wildcard_suffix: bool,
    /// The path as written.
    pub path: Arc<str>,
    /// Prefix or Exact.
    pub path_type: PathType,
    /// Conditions beyond host and path.
    pub matches: RouteMatch,
    /// Canonical text of the match, "" when there is none.
    pub match_key: Arc<str>,
    /// Where matching requests go, with weights (empty for a redirect).
    pub backends: Vec<(BackendRef, u32)>,
    /// Request header changes of each backend of `backends` (same index): applied only to
    /// the requests sent to it.
    pub backend_request_headers: Vec<Option<HeaderOps>>,
    /// Chooses among `backends` per request.
    pub picker: WeightedPicker,
    /// Header changes, redirect, rewrite.
    pub filters: RouteFilters,
    /// Time limits.
    pub timeouts: RouteTimeouts,
    /// Retries.
    pub retry: Option<RetryPolicy>,
    /// Plain-HTTP requests get a redirect to https instead of being proxied.
    pub redirect_http: bool,
    /// The rule names a TLS Secret.
    pub tls_secret: Option<Arc<str>>,
    /// The Upgrade protocols the path allows (None: WebSocket only).
    pub upgrades: Option<Arc<[String]>>,
}

impl Route {
    /// A short label for metrics: `namespace/name host path`.
    pub fn label(&self) -> String {
        format!(
            "{}/{} {}{}",
            self.source.namespace, self.source.name, self.host, self.path
        )
    }

    /// The backend of the next request, by weight; None when every weight is 0 (or the
    /// route redirects).
    pub fn pick_backend(&self) -> Option<&BackendRef> {
        self.pick().map(|(backend, _)| backend)
    }

    /// The backend of the next request with its own request header changes, by weight;
    /// None as for [`Route::pick_backend`].
    pub fn pick(&self) -> Option<(&BackendRef, Option<&HeaderOps>)> {
        self.picker.pick().map(|i| {
            (
                &self.backends[i].0,
                self.backend_request_headers.get(i).and_then(Option::as_ref),
            )
        })
    }

    /// Whether a client may switch to `protocol` with Upgrade on this route.
    pub fn allows_upgrade(&self, protocol: &str) -> bool {
        lockstep_crds::allows_upgrade(self.upgrades.as_deref(), protocol)
    }

    /// Whether a request meets the route's match conditions.
    pub fn is_match(&self, method: &Method, headers: &HeaderMap, query: Option<&str>) -> bool {
        self.matches.is_match(method, headers, query)
    }

    fn compile(key: &ObjectKey, host: &str, rule: &lockstep_crds::HostRule, path: &HttpPath) -> Option<Self> {
        let tls = rule.tls.as_ref();
        let backends = path
            .weighted_backends()
            .iter()
            .map(|(b, w)| Some((BackendRef::from_spec(&key.namespace, b)?, *w)))
            .collect::<Option<Vec<_>>>()?;
        let backend_request_headers = path
            .backends
            .iter()
            .map(|b| match &b.request_headers {
                None => Some(None),
                Some(m) => HeaderOps::compile(m).map(Some),
            })
            .collect::<Option<Vec<_>>>()?;
        let mut filters = RouteFilters::compile(path.filters.as_ref())?;
        for m in path.filters.iter().flat_map(|f| &f.mirrors) {
            let service = Backend {
                service: Some(m.service.clone()),
                url: None,
                status: None,
            };
            let (numerator, denominator) = m
                .fraction
                .as_ref()
                .map_or((1, 1), |f| (f.numerator, f.denominator));
            filters.mirrors.push(crate::traffic::MirrorRule {
                backend: BackendRef::from_spec(&key.namespace, &service)?,
                numerator: u32::try_from(numerator).ok()?,
                denominator: u32::try_from(denominator).ok()?.max(1),
            });
        }
        if backends.is_empty() && filters.redirect.is_none() {
            return None;
        }
        let weights: Vec<u32> = backends.iter().map(|(_, w)| *w).collect();
        Some(Route {
            source: key.clone(),
            host: host.into(),
            wildcard_suffix: rule.wildcard_suffix(),
            path: path.path.as_str().into(),
            path_type: path.path_type,
            matches: RouteMatch::compile(path.matches.as_ref())?,
            match_key: request_match_key(path.matches.as_ref()).into(),
            picker: WeightedPicker::new(&weights),
            backends,
            backend_request_headers,
            filters,
            timeouts: RouteTimeouts::compile(path.timeouts.as_ref()),
            retry: RetryPolicy::compile(path.retry.as_ref()),
            redirect_http: tls.is_some_and(|t| t.redirect_http),
            tls_secret: tls.map(|t| t.secret_name.as_str().into()),
            upgrades: path.upgrades.as_deref().map(Arc::from),
        })
    }
}

/// A backend with its namespace resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendRef {
    /// A Service port, resolved through EndpointSlices.
    Service {
        /// Namespace of the Service: `service.namespace`, else the RouterConfig's.
        namespace: Arc<str>,
        /// Service name.
        name: Arc<str>,
        /// Service port.
        port: u16,
        /// Spoken to in HTTP/2 over cleartext whatever the Service says
        /// (`service.appProtocol: kubernetes.io/h2c`); otherwise the Service port decides.
        h2c: bool,
        /// Reached over TLS verified as this says (`service.tls`); cleartext without it.
        tls: Option<Arc<lockstep_crds::BackendTls>>,
        /// The Secret whose certificate is presented over that TLS
        /// (`tls.clientCertificateSecretName`, in the RouterConfig's namespace).
        client_certificate: Option<Arc<ObjectKey>>,
    },
    /// A static upstream.
    Url {
        /// "http", "https" or "h2c".
        scheme: Arc<str>,
        /// host:port as in the URL; the default port of the scheme when absent.
        authority: Arc<str>,
    },
    /// No upstream: the proxy answers with this status (`backend.status`).
    Status(u16),
}

impl fmt::Display for BackendRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendRef::Service {
                namespace,
                name,
                port,
                ..
            } => write!(f, "service {namespace}/{name}:{port}"),
            BackendRef::Url { scheme, authority } => write!(f, "{scheme}://{authority}"),
            BackendRef::Status(status) => write!(f, "status {status}"),
        }
    }
}

impl BackendRef {
    fn from_spec(namespace: &str, backend: &Backend) -> Option<Self> {
        match (&backend.service, &backend.url) {
            (None, None) => backend.status.map(BackendRef::Status),
            _ if backend.status.is_some() => None,
            (Some(svc), None) => Some(BackendRef::Service {
                namespace: svc.namespace.as_deref().unwrap_or(namespace).into(),
                name: svc.name.as_str().into(),
                port: u16::try_from(svc.port).ok()?,
                h2c: svc.app_protocol == Some(lockstep_crds::AppProtocol::H2c),
                tls: svc.tls.clone().map(Arc::new),
                client_certificate: svc
                    .tls
                    .as_ref()
                    .and_then(|t| t.client_certificate_secret_name.as_ref())
                    .map(|name| Arc::new(ObjectKey::new(namespace.to_owned(), name.clone()))),
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

/// The routes of one path, most specific match first.
type Group = Vec<RouteId>;

#[derive(Default, Debug)]
struct PrefixNode {
    routes: Group,
    children: FastMap<Box<str>, PrefixNode>,
}

#[derive(Default, Debug)]
struct HostRoutes {
    exact: FastMap<Box<str>, Group>,
    prefix: PrefixNode,
    /// Some route is a wildcard covering more than one label.
    suffix: bool,
}

/// The first route of a group whose match holds.
fn first_match(group: &Group, routes: &[Route], accept: &impl Fn(&Route) -> bool) -> Option<RouteId> {
    group.iter().copied().find(|id| accept(&routes[*id as usize]))
}

impl HostRoutes {
    fn lookup(&self, path: &str, routes: &[Route], accept: &impl Fn(&Route) -> bool) -> Option<RouteId> {
        if let Some(group) = self.exact.get(path)
            && let Some(id) = first_match(group, routes, accept)
        {
            return Some(id);
        }
        let mut node = &self.prefix;
        let mut best = first_match(&node.routes, routes, accept);
        for segment in segments(path) {
            match node.children.get(segment) {
                Some(child) => {
                    node = child;
                    if let Some(id) = first_match(&child.routes, routes, accept) {
                        best = Some(id);
                    }
                }
                None => break,
            }
        }
        best
    }

    /// Inserts unless a route with the same path and match is there; the first claim wins.
    /// Keeps each group in precedence order: more specific matches first, then older.
    fn insert(&mut self, route: &Route, id: RouteId, routes: &[Route]) -> bool {
        let group = match route.path_type {
            PathType::Exact => self.exact.entry(route.path.as_ref().into()).or_default(),
            PathType::Prefix => {
                let mut node = &mut self.prefix;
                for segment in segments(&route.path) {
                    node = node.children.entry(segment.into()).or_default();
                }
                &mut node.routes
            }
        };
        let at = |i: RouteId| if i == id { route } else { &routes[i as usize] };
        if group.iter().any(|i| at(*i).match_key == route.match_key) {
            return false;
        }
        let spec = |r: &Route| std::cmp::Reverse(r.matches.specificity());
        let pos = group.partition_point(|i| (spec(at(*i)), *i) < (spec(route), id));
        group.insert(pos, id);
        true
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

/// The key under which a path entry claims its match, request conditions included: entries
/// with the same path and different matches coexist; with the same match they conflict.
pub fn entry_key(path: &HttpPath) -> String {
    let mut key = match_key(path.path_type, &path.path);
    let m = request_match_key(path.matches.as_ref());
    if !m.is_empty() {
        key.push_str(" match ");
        key.push_str(&m);
    }
    key
}

/// Normalises a Host header: no port, no trailing dot, lower case. Borrowed when possible.
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        // IPv6 literal: "[::1]:8080" -> "[::1]"
        match host.find(']') {
            Some(end) => &host[..end + 1],
            None => host,
        }
    } else {
        // The port is the digits after the last colon ("a:" loses the colon alone): counted
        // from the end, so a name without a port (nearly every Host) costs a byte's look,
        // not a search for a colon it does not have.
        let bytes = host.as_bytes();
        let digits = bytes.iter().rev().take_while(|b| b.is_ascii_digit()).count();
        match bytes.len().checked_sub(digits + 1) {
            Some(colon) if bytes[colon] == b':' => &host[..colon],
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

/// A route found for a request, with its id (its index in [`RouteTable::routes`]), by which
/// state kept beside the table per route, such as metric handles, is found.
#[derive(Debug, Clone, Copy)]
pub struct Found<'t> {
    /// The route's index in [`RouteTable::routes`].
    pub id: RouteId,
    /// The route.
    pub route: &'t Route,
}

/// Which connections a rule's routes answer. A RouterConfig's own rules answer both: a TLS
/// host is also reachable over plain HTTP (unless it redirects). A RouterConfig generated
/// from a Gateway lowers one listener, and Gateway API keeps listeners apart: the rules of
/// an HTTPS listener (those with tls) answer TLS connections only, those of an HTTP listener
/// plain ones only, so an HTTP and an HTTPS listener may name the same host names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reach {
    /// Plain HTTP and TLS connections.
    Both,
    /// Plain HTTP connections only.
    Plain,
    /// TLS connections only.
    Tls,
}

impl Reach {
    /// The reach of `rule` of a RouterConfig (`generated`: from a Gateway).
    pub fn of(rule: &lockstep_crds::HostRule, generated: bool) -> Self {
        match (generated, rule.tls.is_some()) {
            (false, _) => Reach::Both,
            (true, true) => Reach::Tls,
            (true, false) => Reach::Plain,
        }
    }

    /// Answers plain HTTP connections.
    pub fn plain(self) -> bool {
        self != Reach::Tls
    }

    /// Answers TLS connections.
    pub fn tls(self) -> bool {
        self != Reach::Plain
    }
}

/// The hosts of a table, for one kind of connection.
#[derive(Default, Debug)]
struct HostIndex {
    exact_hosts: FastMap<Box<str>, HostRoutes>,
    /// Keyed by the suffix after "*.": "*.example.com" is stored under "example.com".
    wildcard_hosts: FastMap<Box<str>, HostRoutes>,
    /// Rules for host "*": any host the others do not cover.
    any_host: Option<HostRoutes>,
}

impl HostIndex {
    fn host_mut(&mut self, host: &str) -> &mut HostRoutes {
        match host.strip_prefix("*.") {
            _ if host == lockstep_crds::ANY_HOST => self.any_host.get_or_insert_default(),
            Some(suffix) => self.wildcard_hosts.entry(suffix.into()).or_default(),
            None => self.exact_hosts.entry(host.into()).or_default(),
        }
    }

    /// Inserts `route` (id `id`) under `host`; false when an earlier route holds its match.
    fn insert(&mut self, host: &str, route: &Route, id: RouteId, routes: &[Route]) -> bool {
        let host_routes = self.host_mut(host);
        let inserted = host_routes.insert(route, id, routes);
        if inserted {
            host_routes.suffix |= route.wildcard_suffix;
        }
        inserted
    }
}

/// An immutable routing table compiled from the accepted RouterConfigs of a fleet: one
/// list of routes, indexed by host for plain HTTP connections and, where some rule answers
/// only one kind ([`Reach`]), separately for TLS connections.
#[derive(Default, Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    plain: HostIndex,
    /// None: the same as `plain` (every rule answers both).
    tls: Option<HostIndex>,
}

impl RouteTable {
    /// Compiles specs in precedence order (oldest RouterConfig first), every rule answering
    /// both kinds of connection. A host+path match that an earlier spec claimed is skipped:
    /// conflicts are reported by [`crate::resolve_fleet`], the table only has to be
    /// deterministic.
    pub fn compile<'a>(specs: impl IntoIterator<Item = (&'a ObjectKey, &'a RouterConfigSpec)>) -> Self {
        Self::compile_served(specs.into_iter().map(|(key, spec)| (key, spec, false)))
    }

    /// As [`RouteTable::compile`], with whether each spec was generated from a Gateway, which
    /// decides the [`Reach`] of its rules.
    pub fn compile_served<'a>(
        specs: impl IntoIterator<Item = (&'a ObjectKey, &'a RouterConfigSpec, bool)>,
    ) -> Self {
        let specs: Vec<_> = specs.into_iter().collect();
        let split = specs
            .iter()
            .any(|(_, spec, generated)| spec.rules.iter().any(|r| Reach::of(r, *generated) != Reach::Both));
        let mut table = RouteTable {
            tls: split.then(HostIndex::default),
            ..RouteTable::default()
        };
        for (key, spec, generated) in specs {
            for rule in &spec.rules {
                let host = rule.host.to_ascii_lowercase();
                let reach = Reach::of(rule, generated);
                for path in &rule.paths {
                    let Some(route) = Route::compile(key, &host, rule, path) else {
                        continue;
                    };
                    let id = RouteId::try_from(table.routes.len()).expect("fewer than 2^32 routes");
                    let mut inserted = false;
                    if reach.plain() {
                        inserted |= table.plain.insert(&host, &route, id, &table.routes);
                    }
                    if let Some(tls) = &mut table.tls
                        && reach.tls()
                    {
                        inserted |= tls.insert(&host, &route, id, &table.routes);
                    }
                    if inserted {
                        table.routes.push(route);
                    }
                }
            }
        }
        table
    }

    /// The route for a plain HTTP request, by its Host header (or :authority) and path
    /// (without query), ignoring request matches (every route's conditions are taken to hold).
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Route> {
        self.lookup_with(false, host, path, |_| true)
            .map(|found| found.route)
    }

    /// The route for a request (`tls`: it arrived over TLS): host, path, and the request's
    /// method, headers and query for the routes' match conditions.
    pub fn lookup_request(
        &self,
        tls: bool,
        host: &str,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Option<Found<'_>> {
        self.lookup_with(tls, host, path, |r| r.is_match(method, headers, query))
    }

    /// The route for a host and path among the routes `accept` takes, for a request that
    /// arrived over TLS (`tls`) or not.
    pub fn lookup_with(
        &self,
        tls: bool,
        host: &str,
        path: &str,
        accept: impl Fn(&Route) -> bool,
    ) -> Option<Found<'_>> {
        let index = match &self.tls {
            Some(index) if tls => index,
            _ => &self.plain,
        };
        let host = normalize_host(host);
        let (host_routes, suffix_only) = index.host_routes(&host)?;
        let accept = |r: &Route| (!suffix_only || r.wildcard_suffix) && accept(r);
        host_routes.lookup(path, &self.routes, &accept).map(|id| Found {
            id,
            route: &self.routes[id as usize],
        })
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

impl HostIndex {
    /// The routes of the most specific host that covers `host` (normalised): its exact host,
    /// else the wildcard with the longest suffix that covers it, else host "*". `true` when
    /// that wildcard covers it through more than one label, so only its Suffix routes apply.
    fn host_routes(&self, host: &str) -> Option<(&HostRoutes, bool)> {
        if let Some(routes) = self.exact_hosts.get(host) {
            return Some((routes, false));
        }
        let mut rest = host;
        let mut depth = 0;
        // A wildcard stands for whole, non-empty labels.
        while let Some((label, suffix)) = rest.split_once('.') {
            if label.is_empty() {
                break;
            }
            depth += 1;
            if let Some(routes) = self.wildcard_hosts.get(suffix)
                && (depth == 1 || routes.suffix)
            {
                return Some((routes, depth > 1));
            }
            rest = suffix;
        }
        self.any_host.as_ref().map(|routes| (routes, false))
    }
}

#[cfg(test)]
mod tests;
