//! The compiled traffic features of a route: request matchers, weighted backend choice,
//! header filters, redirects, rewrites, timeouts and retries. Compiled once per table; the
//! per-request work allocates nothing except the strings a redirect or rewrite must build.
//!
//! (Over 600 lines: one compiled type per HTTPRoute feature, each short; they share the
//! value matchers and the path rewriting, and their tests sit with them.)

use std::{sync::Mutex, time::Duration};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use lockstep_crds::{HeaderModifier, MatchType, PathModifier, RequestMatch, ValueMatch, parse_duration};

/// Compares a header or query value.
#[derive(Debug, Clone)]
pub enum ValueMatcher {
    /// Equal, case-sensitively.
    Exact(Box<str>),
    /// Matches the (unanchored) regular expression.
    Regex(regex::Regex),
}

impl PartialEq for ValueMatcher {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ValueMatcher::Exact(a), ValueMatcher::Exact(b)) => a == b,
            (ValueMatcher::Regex(a), ValueMatcher::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}
impl Eq for ValueMatcher {}

impl ValueMatcher {
    fn compile(m: &ValueMatch) -> Option<Self> {
        Some(match m.match_type {
            MatchType::Exact => ValueMatcher::Exact(m.value.as_str().into()),
            MatchType::RegularExpression => ValueMatcher::Regex(
                regex::RegexBuilder::new(&m.value)
                    .size_limit(1 << 20)
                    .build()
                    .ok()?,
            ),
        })
    }

    /// Whether `value` matches.
    pub fn is_match(&self, value: &[u8]) -> bool {
        match self {
            ValueMatcher::Exact(v) => v.as_bytes() == value,
            ValueMatcher::Regex(re) => std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)),
        }
    }
}

/// The conditions of a route beyond host and path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    /// The method, when one is required.
    pub method: Option<Method>,
    /// Headers that must be present with a matching value.
    pub headers: Vec<(HeaderName, ValueMatcher)>,
    /// Query parameters that must be present with a matching value.
    pub query: Vec<(Box<str>, ValueMatcher)>,
}

impl RouteMatch {
    /// Compiles a spec's match; None when something in it cannot be compiled (validation
    /// reports it).
    pub fn compile(m: Option<&RequestMatch>) -> Option<Self> {
        let Some(m) = m else {
            return Some(Self::default());
        };
        Some(Self {
            method: m
                .method
                .map(|x| Method::from_bytes(x.as_str().as_bytes()).expect("a known method")),
            headers: m
                .headers
                .iter()
                .map(|h| {
                    Some((
                        HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                        ValueMatcher::compile(h)?,
                    ))
                })
                .collect::<Option<_>>()?,
            query: m
                .query_params
                .iter()
                .map(|q| Some((q.name.as_str().into(), ValueMatcher::compile(q)?)))
                .collect::<Option<_>>()?,
        })
    }

    /// No conditions at all.
    pub fn is_empty(&self) -> bool {
        self.method.is_none() && self.headers.is_empty() && self.query.is_empty()
    }

    /// Whether a request meets every condition.
    pub fn is_match(&self, method: &Method, headers: &HeaderMap, query: Option<&str>) -> bool {
        if let Some(m) = &self.method
            && m != method
        {
            return false;
        }
        for (name, matcher) in &self.headers {
            if !headers
                .get_all(name)
                .iter()
                .any(|v| matcher.is_match(v.as_bytes()))
            {
                return false;
            }
        }
        for (name, matcher) in &self.query {
            match query.and_then(|q| query_value(q, name)) {
                Some(value) if matcher.is_match(value.as_bytes()) => {}
                _ => return false,
            }
        }
        true
    }

    /// Precedence among routes of one path: a method match, then more header matches, then
    /// more query matches (greater is more specific).
    pub fn specificity(&self) -> (bool, usize, usize) {
        (self.method.is_some(), self.headers.len(), self.query.len())
    }
}

/// The first value of a query parameter, as sent (not percent-decoded).
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// A canonical text of a spec's match, so two entries with the same conditions written in
/// another order are recognised as the same (a duplicate or a conflict).
pub fn request_match_key(m: Option<&RequestMatch>) -> String {
    let Some(m) = m else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(method) = m.method {
        parts.push(format!("method={}", method.as_str()));
    }
    let mut headers: Vec<String> = m
        .headers
        .iter()
        .map(|h| {
            format!(
                "header {}{}{}",
                h.name.to_ascii_lowercase(),
                op(h.match_type),
                h.value
            )
        })
        .collect();
    headers.sort();
    let mut query: Vec<String> = m
        .query_params
        .iter()
        .map(|q| format!("query {}{}{}", q.name, op(q.match_type), q.value))
        .collect();
    query.sort();
    parts.extend(headers);
    parts.extend(query);
    parts.join(", ")
}

fn op(t: MatchType) -> &'static str {
    match t {
        MatchType::Exact => "=",
        MatchType::RegularExpression => "~",
    }
}

/// Smooth weighted round robin (as nginx's): every pick adds each weight to its backend's
/// running score, takes the highest, and subtracts the total from it. Over any `total`
/// consecutive picks each backend is chosen exactly `weight` times, interleaved as evenly as
/// the weights allow, and a pick allocates nothing.
#[derive(Debug)]
pub struct WeightedPicker {
    weights: Box<[i64]>,
    total: i64,
    scores: Mutex<Box<[i64]>>,
}

impl WeightedPicker {
    /// A picker over these weights.
    pub fn new(weights: &[u32]) -> Self {
        Self {
            weights: weights.iter().map(|w| i64::from(*w)).collect(),
            total: weights.iter().map(|w| i64::from(*w)).sum(),
            scores: Mutex::new(vec![0; weights.len()].into_boxed_slice()),
        }
    }

    /// The index of the next backend, or None when every weight is 0.
    pub fn pick(&self) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        if self.weights.len() == 1 {
            return Some(0);
        }
        let mut scores = self.scores.lock().unwrap_or_else(|p| p.into_inner());
        let mut best = 0;
        for (i, w) in self.weights.iter().enumerate() {
            scores[i] += w;
            if scores[i] > scores[best] {
                best = i;
            }
        }
        scores[best] -= self.total;
        Some(best)
    }
}

impl Clone for WeightedPicker {
    fn clone(&self) -> Self {
        let weights: Vec<u32> = self.weights.iter().map(|w| *w as u32).collect();
        Self::new(&weights)
    }
}

impl PartialEq for WeightedPicker {
    fn eq(&self, other: &Self) -> bool {
        self.weights == other.weights
    }
}
impl Eq for WeightedPicker {}

/// Header changes: remove, then set, then add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps {
    /// Names removed with every value.
    pub remove: Vec<HeaderName>,
    /// Names whose values are replaced by one.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Values appended as further field lines.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    /// Compiles a spec's header changes; None when a name or value cannot be compiled
    /// (validation reports it).
    pub fn compile(m: &HeaderModifier) -> Option<Self> {
        let pair = |h: &lockstep_crds::HeaderValue| {
            Some((
                HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                HeaderValue::from_str(&h.value).ok()?,
            ))
        };
        Some(Self {
            remove: m
                .remove
                .iter()
                .map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect::<Option<_>>()?,
            set: m.set.iter().map(pair).collect::<Option<_>>()?,
            add: m.add.iter().map(pair).collect::<Option<_>>()?,
        })
    }

    /// Applies the changes to a header map.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// How a redirect or rewrite changes the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// The whole path becomes this.
    Full(Box<str>),
    /// The part of the path the route's Prefix matched becomes this.
    Prefix(Box<str>),
}

impl PathRewrite {
    fn compile(p: &PathModifier) -> Option<Self> {
        match (&p.replace_full_path, &p.replace_prefix_match) {
            (Some(full), None) => Some(PathRewrite::Full(full.as_str().into())),
            (None, Some(prefix)) => Some(PathRewrite::Prefix(prefix.as_str().into())),
            _ => None,
        }
    }

    /// The new path for `path`, which the Prefix `matched` (as written in the route) matched.
    /// Prefixes match whole segments, so the rest of the path after the matched segments is
    /// kept: "/api" with "/v2" turns "/api/x" into "/v2/x", with "/" into "/x".
    pub fn apply(&self, matched: &str, path: &str) -> String {
        match self {
            PathRewrite::Full(full) => full.to_string(),
            PathRewrite::Prefix(replacement) => {
                let rest = rest_after_prefix(matched, path);
                let base = replacement.trim_end_matches('/');
                if rest.is_empty() || rest == "/" {
                    if rest == "/" || replacement.ends_with('/') {
                        format!("{base}/")
                    } else if base.is_empty() {
                        "/".to_owned()
                    } else {
                        base.to_owned()
                    }
                } else {
                    format!("{base}{rest}")
                }
            }
        }
    }
}

/// The part of `path` after the segments of `prefix`, starting with "/" (or empty).
fn rest_after_prefix<'p>(prefix: &str, path: &'p str) -> &'p str {
    let mut rest = path;
    for segment in prefix.split('/').filter(|s| !s.is_empty()) {
        let trimmed = rest.trim_start_matches('/');
        match trimmed.strip_prefix(segment) {
            Some(after) => rest = after,
            None => return rest,
        }
    }
    rest
}

/// A compiled redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRule {
    /// "http" or "https", or the request's.
    pub scheme: Option<&'static str>,
    /// Host of the Location, or the request's.
    pub hostname: Option<Box<str>>,
    /// Port of the Location.
    pub port: Option<u16>,
    /// New path, or the request's.
    pub path: Option<PathRewrite>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

impl RedirectRule {
    /// The Location for a request, as Gateway API builds it: scheme, host and path as
    /// configured or as requested; the configured port, else the well-known port of a
    /// configured scheme, else the request's port; the default port of the scheme is left
    /// out; the query is kept. `request_port` is the port the client addressed (from Host,
    /// else the scheme's default).
    pub fn location(
        &self,
        route_path: &str,
        request_scheme: &str,
        request_host: &str,
        request_port: Option<u16>,
        path: &str,
        query: Option<&str>,
    ) -> String {
        let scheme = self.scheme.unwrap_or(request_scheme);
        let host = self.hostname.as_deref().unwrap_or(request_host);
        let port = match (self.port, self.scheme) {
            (Some(p), _) => Some(p),
            (None, Some(_)) => None,
            (None, None) => request_port,
        };
        let port = port.filter(|p| !matches!((scheme, *p), ("http", 80) | ("https", 443)));
        let new_path = match &self.path {
            Some(rewrite) => rewrite.apply(route_path, path),
            None => path.to_owned(),
        };
        let mut out = format!("{scheme}://{host}");
        if let Some(p) = port {
            out.push(':');
            out.push_str(&p.to_string());
        }
        out.push_str(&new_path);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// A compiled rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteRule {
    /// New Host.
    pub hostname: Option<HeaderValue>,
    /// New path.
    pub path: Option<PathRewrite>,
}

/// The filters of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteFilters {
    /// Request header changes.
    pub request_headers: Option<HeaderOps>,
    /// Response header changes.
    pub response_headers: Option<HeaderOps>,
    /// Answer with a redirect.
    pub redirect: Option<RedirectRule>,
    /// Rewrite Host and path.
    pub rewrite: Option<RewriteRule>,
    /// Copies of the request sent elsewhere (compiled with the route: a Service's namespace
    /// defaults to its RouterConfig's).
    pub mirrors: Vec<MirrorRule>,
    /// Cross-origin requests allowed.
    pub cors: Option<crate::cors::CorsPolicy>,
}

/// A compiled mirror: where copies go, and the share of requests copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorRule {
    /// The Service copies go to.
    pub backend: crate::BackendRef,
    /// A request is copied when a draw in 0..denominator falls below this.
    pub numerator: u32,
    /// At least 1.
    pub denominator: u32,
}

impl RouteFilters {
    /// Compiles a spec's filters; None when something cannot be compiled.
    pub fn compile(f: Option<&lockstep_crds::Filters>) -> Option<Self> {
        let Some(f) = f else {
            return Some(Self::default());
        };
        Some(Self {
            request_headers: lift(f.request_headers.as_ref(), HeaderOps::compile)?,
            response_headers: lift(f.response_headers.as_ref(), HeaderOps::compile)?,
            redirect: lift(f.redirect.as_ref(), |r| {
                Some(RedirectRule {
                    scheme: r.scheme.map(|s| s.as_str()),
                    hostname: r.hostname.as_deref().map(Into::into),
                    port: r.port.map(u16::try_from).transpose().ok()?,
                    path: lift(r.path.as_ref(), PathRewrite::compile)?,
                    status: u16::try_from(r.status_code).ok()?,
                })
            })?,
            rewrite: lift(f.rewrite.as_ref(), |r| {
                Some(RewriteRule {
                    hostname: r
                        .hostname
                        .as_deref()
                        .map(HeaderValue::from_str)
                        .transpose()
                        .ok()?,
                    path: lift(r.path.as_ref(), PathRewrite::compile)?,
                })
            })?,
            mirrors: Vec::new(),
            cors: lift(f.cors.as_ref(), crate::cors::CorsPolicy::compile)?,
        })
    }
}

/// Compiles an optional part: Some(None) when absent, None when present but not compilable.
fn lift<T, U>(value: Option<&T>, compile: impl Fn(&T) -> Option<U>) -> Option<Option<U>> {
    match value {
        None => Some(None),
        Some(v) => compile(v).map(Some),
    }
}

/// Time limits of a route; None is no limit of the route's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    /// The whole exchange.
    pub request: Option<Duration>,
    /// Each upstream attempt until its response head.
    pub backend_request: Option<Duration>,
}

impl RouteTimeouts {
    /// Compiles a spec's timeouts ("0s" is no limit).
    pub fn compile(t: Option<&lockstep_crds::Timeouts>) -> Self {
        let parse = |v: &Option<String>| v.as_deref().and_then(parse_duration).filter(|d| !d.is_zero());
        match t {
            None => Self::default(),
            Some(t) => Self {
                request: parse(&t.request),
                backend_request: parse(&t.backend_request),
            },
        }
    }
}

/// A compiled retry policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most retries after the first attempt.
    pub attempts: u32,
    /// Statuses that are retried.
    pub codes: Vec<u16>,
    /// Wait before each retry.
    pub backoff: Duration,
    /// Requests with a non-idempotent method are retried after the upstream may have seen
    /// them (a response timeout, a listed status); otherwise only when it cannot have.
    pub non_idempotent: bool,
}

impl RetryPolicy {
    /// Compiles a spec's retry.
    pub fn compile(r: Option<&lockstep_crds::Retry>) -> Option<Self> {
        let r = r?;
        Some(Self {
            attempts: u32::try_from(r.attempts).unwrap_or(0),
            codes: r.codes.iter().filter_map(|c| u16::try_from(*c).ok()).collect(),
            backoff: r.backoff.as_deref().and_then(parse_duration).unwrap_or_default(),
            non_idempotent: r.non_idempotent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_weighted_choice_is_exact_and_interleaved() {
        let p = WeightedPicker::new(&[5, 1, 1]);
        let seq: Vec<usize> = (0..7).map(|_| p.pick().unwrap()).collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
        let p = WeightedPicker::new(&[90, 10]);
        let mut counts = [0; 2];
        for _ in 0..1000 {
            counts[p.pick().unwrap()] += 1;
        }
        assert_eq!(counts, [900, 100]);
        let drained = WeightedPicker::new(&[0, 3]);
        assert!((0..10).all(|_| drained.pick() == Some(1)));
        assert_eq!(WeightedPicker::new(&[0, 0]).pick(), None);
    }

    #[test]
    fn prefix_rewrites_follow_gateway_api() {
        let r = |to: &str, matched: &str, path: &str| PathRewrite::Prefix(to.into()).apply(matched, path);
        assert_eq!(r("/v2", "/api", "/api/x"), "/v2/x");
        assert_eq!(r("/", "/api", "/api/x/y"), "/x/y");
        assert_eq!(r("/v2", "/api", "/api"), "/v2");
        assert_eq!(r("/", "/api", "/api"), "/");
        assert_eq!(r("/v2", "/api", "/api/"), "/v2/");
        assert_eq!(r("/v2/", "/api/", "/api/x"), "/v2/x");
        assert_eq!(r("/v2", "/", "/x"), "/v2/x");
        assert_eq!(r("/v2", "/a/b", "/a//b/c"), "/v2/c");
        assert_eq!(PathRewrite::Full("/new".into()).apply("/api", "/api/x"), "/new");
    }

    #[test]
    fn redirect_locations() {
        let rule = |scheme, hostname: Option<&str>, port, path| RedirectRule {
            scheme,
            hostname: hostname.map(Into::into),
            port,
            path,
            status: 302,
        };
        let loc = |r: &RedirectRule, port| r.location("/api", "http", "a.test", port, "/api/x", Some("q=1"));
        assert_eq!(
            loc(&rule(Some("https"), None, None, None), Some(8080)),
            "https://a.test/api/x?q=1"
        );
        assert_eq!(
            loc(&rule(None, Some("b.test"), None, None), Some(8080)),
            "http://b.test:8080/api/x?q=1"
        );
        assert_eq!(
            loc(&rule(None, None, Some(8443), None), None),
            "http://a.test:8443/api/x?q=1"
        );
        assert_eq!(
            loc(&rule(Some("https"), None, Some(443), None), None),
            "https://a.test/api/x?q=1"
        );
        assert_eq!(
            loc(&rule(None, None, Some(80), None), Some(8080)),
            "http://a.test/api/x?q=1"
        );
        assert_eq!(
            loc(
                &rule(None, None, None, Some(PathRewrite::Prefix("/v2".into()))),
                None
            ),
            "http://a.test/v2/x?q=1"
        );
    }

    #[test]
    fn header_ops_on_repeated_headers() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.append("x-b", HeaderValue::from_static("1"));
        h.append("x-b", HeaderValue::from_static("2"));
        h.append("x-c", HeaderValue::from_static("1"));
        h.append("x-c", HeaderValue::from_static("2"));
        let ops = HeaderOps {
            remove: vec![HeaderName::from_static("x-c")],
            set: vec![(HeaderName::from_static("x-a"), HeaderValue::from_static("s"))],
            add: vec![(HeaderName::from_static("x-b"), HeaderValue::from_static("3"))],
        };
        ops.apply(&mut h);
        let all = |n: &str| {
            h.get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(all("x-a"), ["s"]);
        assert_eq!(all("x-b"), ["1", "2", "3"]);
        assert!(all("x-c").is_empty());
    }

    #[test]
    fn matching() {
        let spec: RequestMatch = serde_json::from_str(
            r#"{"method":"GET","headers":[{"name":"X-Canary","value":"true"},{"name":"x-v","type":"RegularExpression","value":"^v[0-9]+$"}],"queryParams":[{"name":"debug","value":"1"}]}"#,
        )
        .unwrap();
        let m = RouteMatch::compile(Some(&spec)).unwrap();
        let mut h = HeaderMap::new();
        h.append("x-canary", HeaderValue::from_static("false"));
        h.append("x-canary", HeaderValue::from_static("true"));
        h.append("x-v", HeaderValue::from_static("v12"));
        assert!(m.is_match(&Method::GET, &h, Some("a=b&debug=1")));
        assert!(!m.is_match(&Method::POST, &h, Some("debug=1")));
        assert!(!m.is_match(&Method::GET, &h, Some("debug=2&debug=1")));
        assert!(!m.is_match(&Method::GET, &h, None));
        h.insert("x-v", HeaderValue::from_static("w1"));
        assert!(!m.is_match(&Method::GET, &h, Some("debug=1")));
        assert_eq!(m.specificity(), (true, 2, 1));
        assert_eq!(
            request_match_key(Some(&spec)),
            "method=GET, header x-canary=true, header x-v~^v[0-9]+$, query debug=1"
        );
    }
}
