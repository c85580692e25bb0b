//! Traffic features of a path, named after Gateway API's HTTPRoute: request matching,
//! weighted backends, header filters, redirects, rewrites, timeouts and retries.
//!
//! Every rule is enforced twice: in the schema (OpenAPI constraints and CEL, so the apiserver
//! rejects bad objects naming the field) and with `garde` (for standalone files no apiserver
//! has seen). What CEL cannot check (RE2 syntax of a regular expression) the garde rules
//! check, so a bad expression is reported as `Accepted=False` naming the field; so are
//! filters that name proxy-managed headers, whose CEL rule would exceed the cost budget.
//!
//! (Over 600 lines: the types are mostly schema and validation attributes and their field
//! docs, which `kubectl explain` shows; one file keeps the API of a path readable top to
//! bottom.)

use garde::Validate;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::{Backend, ServiceBackend};

/// Most header or query parameter matches of one path.
pub const MAX_MATCHES: usize = 16;
/// Most weighted backends of one path.
pub const MAX_BACKENDS: usize = 16;
/// Most headers one filter sets, adds or removes.
pub const MAX_HEADER_MODS: usize = 16;
/// Largest backend weight.
pub const MAX_WEIGHT: i32 = 1_000_000;
/// Longest regular expression.
pub const MAX_REGEX_LEN: usize = 1024;
/// Longest header or query value.
pub const MAX_VALUE_LEN: usize = 4096;
/// Longest header or query parameter name.
pub const MAX_NAME_LEN: usize = 256;
/// Most retries of one request.
pub const MAX_RETRY_ATTEMPTS: i32 = 10;

const DURATION_MSG: &str =
    "must be a duration: up to four number+unit pairs with units h, m, s or ms, e.g. 10s, 1m30s, 500ms";

/// Conditions a request must meet, in addition to its path, for a path entry to apply. Every
/// listed condition must hold. Among entries that match one request the most specific wins:
/// an Exact path, then the longest Prefix, then a method match, then the most header
/// matches, then the most query parameter matches, then the older RouterConfig, then list
/// order.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default, Validate)]
#[serde(rename_all = "camelCase")]
pub struct RequestMatch {
    /// The request method must be this one (GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE,
    /// PATCH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub method: Option<HttpMethod>,

    /// Headers the request must carry, matched by name case-insensitively. A request header
    /// that appears several times matches when any of its values does. At most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    #[garde(length(max = MAX_MATCHES), dive, custom(unique_header_matches))]
    pub headers: Vec<ValueMatch>,

    /// Query parameters the request must carry, matched by exact name. A parameter that
    /// appears several times matches when its first value does. At most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    #[garde(length(max = MAX_MATCHES), dive, custom(unique_query_matches))]
    pub query_params: Vec<ValueMatch>,
}

fn unique_header_matches(list: &[ValueMatch], _: &()) -> garde::Result {
    unique(
        list.iter().map(|m| m.name.to_ascii_lowercase()),
        "header names must be unique (case-insensitively)",
    )
}

fn unique_query_matches(list: &[ValueMatch], _: &()) -> garde::Result {
    unique(
        list.iter().map(|m| m.name.clone()),
        "query parameter names must be unique",
    )
}

fn unique(names: impl Iterator<Item = String>, message: &'static str) -> garde::Result {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(garde::Error::new(message));
        }
    }
    Ok(())
}

/// An HTTP method a request may be matched on.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Patch,
}

impl HttpMethod {
    /// The method as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Options => "OPTIONS",
            HttpMethod::Trace => "TRACE",
            HttpMethod::Patch => "PATCH",
        }
    }
}

/// How a header or query parameter value is compared.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MatchType {
    /// The value must equal `value`, case-sensitively.
    #[default]
    Exact,
    /// The value must match `value`, an RE2 regular expression (unanchored: anchor it with
    /// ^ and $ to match the whole value). At most 1024 characters.
    RegularExpression,
}

const REGEX_LEN_CEL: &str = "self.type != 'RegularExpression' || size(self.value) <= 1024";
const REGEX_LEN_MSG: &str = "value: a regular expression is at most 1024 characters";
// CEL has no "is this a regular expression" function; `''.matches(self.value)` would compile
// it, but its estimated cost under 256 rules x 128 paths x 16 matches is far over the CRD's
// budget. The RE2 syntax is checked by the garde rule instead (Accepted=False naming the field).

/// One header or query parameter condition.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(REGEX_LEN_CEL).message(REGEX_LEN_MSG).field_path(".value"))]
#[garde(custom(valid_value_match))]
pub struct ValueMatch {
    /// Exact (default) or RegularExpression.
    #[serde(default, rename = "type")]
    #[garde(skip)]
    pub match_type: MatchType,

    /// Header name (a token, compared case-insensitively) or query parameter name (compared
    /// exactly). At most 256 characters.
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = crate::patterns::TOKEN)
    )]
    #[garde(length(min = 1, max = MAX_NAME_LEN), pattern(crate::patterns::TOKEN_RE))]
    pub name: String,

    /// The value, or the regular expression when type is RegularExpression. At most 4096
    /// characters.
    #[schemars(length(max = 4096))]
    #[garde(length(max = MAX_VALUE_LEN))]
    pub value: String,
}

fn valid_value_match(m: &ValueMatch, _: &()) -> garde::Result {
    if m.match_type == MatchType::RegularExpression {
        check_regex(&m.value).map_err(|e| garde::Error::new(format!("value: {e}")))?;
    }
    Ok(())
}

/// Checks a regular expression: bounded length, RE2 syntax (the `regex` crate's, which is
/// RE2's), bounded compiled size.
pub fn check_regex(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err("a regular expression is at most 1024 characters".into());
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map(|_| ())
        .map_err(|e| {
            let text = e.to_string();
            let last = text
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned();
            format!("invalid regular expression (RE2 syntax): {last}")
        })
}

/// A backend of a weighted split: exactly one of a Service, a static URL or a status the
/// proxy answers, and a weight.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(crate::ONE_BACKEND_CEL).message("exactly one of service, url or status must be set").reason(kube::core::Reason::FieldValueInvalid))]
#[garde(custom(exactly_one_weighted))]
pub struct WeightedBackend {
    /// A Service, as in `backend.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub service: Option<ServiceBackend>,

    /// A static upstream, as in `backend.url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 2048),
        regex(
            pattern = crate::patterns::URL
        )
    )]
    #[garde(inner(length(min = 1, max = crate::MAX_URL_LEN), pattern(crate::patterns::URL_RE)))]
    pub url: Option<String>,

    /// The proxy answers this share of the requests itself with this status (400 to 599),
    /// as in `backend.status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 400, max = 599))]
    #[garde(inner(range(min = 400, max = 599)))]
    pub status: Option<u16>,

    /// Share of the requests this backend gets: weight / sum of weights, 0 to 1,000,000.
    /// Defaults to 1. 0 drains the backend; when every weight is 0 requests get 503.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 1_000_000))]
    #[garde(range(min = 0, max = MAX_WEIGHT))]
    pub weight: i32,

    /// Headers changed on the requests sent to this backend only, after the path's
    /// `filters.requestHeaders` (Gateway API's RequestHeaderModifier on a backendRef). A
    /// retry that picks another backend gets that backend's changes, not these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub request_headers: Option<HeaderModifier>,
}

fn default_weight() -> i32 {
    1
}

fn exactly_one_weighted(backend: &WeightedBackend, _: &()) -> garde::Result {
    crate::one_backend(
        backend.service.is_some(),
        backend.url.is_some(),
        backend.status.is_some(),
        "exactly one of service, url or status must be set",
    )
}

impl WeightedBackend {
    /// The backend without its weight.
    pub fn backend(&self) -> Backend {
        Backend {
            service: self.service.clone(),
            url: self.url.clone(),
            status: self.status,
        }
    }
}

/// What happens to a matching request besides being proxied.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default, Validate)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!(has(self.redirect) && has(self.rewrite))").message("redirect and rewrite are exclusive").field_path(".rewrite"))]
#[garde(custom(redirect_xor_rewrite))]
pub struct Filters {
    /// Headers changed on the request before the upstream sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub request_headers: Option<HeaderModifier>,

    /// Headers changed on the upstream's response before the client sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub response_headers: Option<HeaderModifier>,

    /// Answer with a redirect instead of proxying. Exclusive with backends and rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub redirect: Option<Redirect>,

    /// Change Host and path before the upstream sees the request. X-Forwarded-Host still
    /// says what the client sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub rewrite: Option<Rewrite>,

    /// Copies of the request (after `rewrite` and `requestHeaders`) sent to other Services,
    /// fire and forget: their answers are dropped, their failures and slowness never reach
    /// the client. The copy carries the body when it has none or a Content-Length of at most
    /// 64 KiB (read whole before the request is sent); a longer or streamed body, an
    /// Upgrade, or more than 256 copies in flight in the replica: no copy is sent. At
    /// most 8.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[garde(length(max = MAX_MIRRORS), dive)]
    pub mirrors: Vec<Mirror>,

    /// Cross-origin requests allowed: preflights answered by the proxy, the response
    /// headers of the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub cors: Option<crate::Cors>,
}

/// Most mirrors of one path.
pub const MAX_MIRRORS: usize = 8;

/// Where copies of a path's requests go, and which share of them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    /// The Service, as in `backend.service`.
    #[garde(dive)]
    pub service: ServiceBackend,

    /// The share of the requests copied, each request drawn at random; every request
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub fraction: Option<MirrorFraction>,
}

/// numerator / denominator of the requests.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.numerator <= self.denominator").message("numerator must not be greater than denominator"))]
#[garde(custom(fraction_at_most_one))]
pub struct MirrorFraction {
    /// 0 or more.
    #[schemars(range(min = 0, max = 1_000_000))]
    #[garde(range(min = 0, max = 1_000_000))]
    pub numerator: i32,

    /// 1 or more; defaults to 100 (numerator is then a percentage).
    #[serde(default = "default_denominator")]
    #[schemars(range(min = 1, max = 1_000_000))]
    #[garde(range(min = 1, max = 1_000_000))]
    pub denominator: i32,
}

fn default_denominator() -> i32 {
    100
}

fn fraction_at_most_one(f: &MirrorFraction, _: &()) -> garde::Result {
    if f.numerator > f.denominator {
        return Err(garde::Error::new(
            "numerator must not be greater than denominator",
        ));
    }
    Ok(())
}

fn redirect_xor_rewrite(f: &Filters, _: &()) -> garde::Result {
    if f.redirect.is_some() && f.rewrite.is_some() {
        return Err(garde::Error::new("redirect and rewrite are exclusive"));
    }
    Ok(())
}

/// Header names a filter may not name: the proxy alone decides them. Framing
/// (Content-Length, Transfer-Encoding: a response whose Content-Length disagrees with its
/// body leaves bytes on a pooled client connection, which is response splitting), the
/// connection's own hop-by-hop headers (Connection, Keep-Alive, TE, Trailer, Upgrade,
/// Proxy-Connection, HTTP2-Settings: setting Upgrade would smuggle a protocol switch), and
/// Host (a route's `rewrite.hostname` sets it, and X-Forwarded-Host keeps the client's).
/// Compared without regard to case.
pub const PROXY_MANAGED_HEADERS: [&str; 10] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "http2-settings",
    "host",
];

// Not a CEL rule on the CRD: `lowerAscii() in [...]` on a 256-character name, multiplied
// by the schema's list bounds (256 rules x 128 paths x 2 filters x 3 lists x 16), exceeds
// the apiserver's estimated cost budget (6.6-fold). The admission policy
// (`deploy/helm/lockstep/templates/routerconfig-admission.yaml`, charged for what it
// evaluates) refuses these names at admission; the garde rule below refuses them for
// standalone files and the operator (Accepted=False naming the field), for objects stored
// before the policy was installed.
const MANAGED_MSG: &str = "framing, hop-by-hop and Host headers (content-length, transfer-encoding, connection, keep-alive, te, trailer, upgrade, proxy-connection, http2-settings, host) are the proxy's own; a filter may not name them";

fn not_proxy_managed(name: &str, _: &()) -> garde::Result {
    if PROXY_MANAGED_HEADERS
        .iter()
        .any(|managed| managed.eq_ignore_ascii_case(name))
    {
        return Err(garde::Error::new(format!("{name}: {MANAGED_MSG}")));
    }
    Ok(())
}

/// Most protocols one path may allow in `upgrades`.
pub const MAX_UPGRADES: usize = 8;

/// The protocol a path allows when it lists no `upgrades`.
pub const DEFAULT_UPGRADE: &str = "websocket";

/// The protocol no path may allow: an upstream that accepts `Upgrade: h2c` speaks HTTP/2
/// straight to the client through the tunnel, past routing, filters and timeouts (the h2c
/// smuggling technique). The admission policy
/// (`deploy/helm/lockstep/templates/routerconfig-admission.yaml`) refuses it too.
pub const NEVER_UPGRADE: &str = "h2c";

/// The name of an Upgrade protocol, without its `/version` (RFC 9110 §7.8).
pub fn protocol_name(protocol: &str) -> &str {
    protocol.split_once('/').map_or(protocol, |(name, _)| name)
}

/// Whether a path with these `upgrades` lets a client switch to `protocol` (`name` or
/// `name/version`, any case): one of the list, or WebSocket when there is no list. h2c
/// never, whatever the list says (a stored object may predate the admission rules).
pub fn allows_upgrade(upgrades: Option<&[String]>, protocol: &str) -> bool {
    let name = protocol_name(protocol.trim());
    if name.eq_ignore_ascii_case(NEVER_UPGRADE) {
        return false;
    }
    match upgrades {
        None => name.eq_ignore_ascii_case(DEFAULT_UPGRADE),
        Some(allowed) => allowed
            .iter()
            .any(|a| protocol_name(a).eq_ignore_ascii_case(name)),
    }
}

const UPGRADE_MSG: &str =
    "an upgrade protocol is a token, optionally /version (RFC 9110 §7.8), such as websocket";

pub(crate) fn upgrade_protocol(protocol: &str, _: &()) -> garde::Result {
    // The schema's rule (length 1-64, `patterns::UPGRADE`), judged here with a message that
    // says what an upgrade protocol is.
    if protocol.len() > 64 || !crate::patterns::UPGRADE_RE.is_match(protocol) {
        return Err(garde::Error::new(format!("{protocol:?}: {UPGRADE_MSG}")));
    }
    let name = protocol.split_once('/').map_or(protocol, |(name, _)| name);
    if name.eq_ignore_ascii_case(NEVER_UPGRADE) {
        return Err(garde::Error::new(format!(
            "{protocol}: h2c may not be tunnelled: the backend would speak HTTP/2 straight to the client, past routing, filters and timeouts"
        )));
    }
    Ok(())
}

/// Header changes, applied in the order remove, set, add.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default, Validate)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifier {
    /// Headers replaced: every existing value of the name is dropped and this one set. At
    /// most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[garde(length(max = MAX_HEADER_MODS), dive)]
    pub set: Vec<HeaderValue>,

    /// Headers appended: existing values of the name are kept and this one added as a
    /// further field line. At most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[garde(length(max = MAX_HEADER_MODS), dive)]
    pub add: Vec<HeaderValue>,

    /// Header names removed with all their values. At most 16. Not one of the framing,
    /// hop-by-hop or Host headers, which the proxy sets itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(
            length(min = 1, max = 256),
            regex(pattern = crate::patterns::TOKEN)
        )
    )]
    #[garde(length(max = MAX_HEADER_MODS), inner(length(min = 1, max = MAX_NAME_LEN), pattern(crate::patterns::TOKEN_RE), custom(not_proxy_managed)))]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[serde(rename_all = "camelCase")]
pub struct HeaderValue {
    /// Header name (an RFC 9110 token). At most 256 characters. Not one of the framing,
    /// hop-by-hop or Host headers, which the proxy sets itself.
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = crate::patterns::TOKEN)
    )]
    #[garde(length(min = 1, max = MAX_NAME_LEN), pattern(crate::patterns::TOKEN_RE), custom(not_proxy_managed))]
    pub name: String,

    /// Header value, without line breaks. At most 4096 characters.
    #[schemars(length(max = 4096), regex(pattern = crate::patterns::HEADER_VALUE))]
    #[garde(length(max = MAX_VALUE_LEN), pattern(crate::patterns::HEADER_VALUE_RE))]
    pub value: String,
}

/// URL scheme of a redirect.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// "http" or "https".
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A redirect answered by the proxy. Location is built from the request, with the parts given
/// here replaced: the scheme, hostname and path as configured, else as requested. The port
/// is the configured one; without one, the well-known port of a configured scheme, else the
/// port the client used; port 80 for http and 443 for https are left out. The query is kept.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    /// http or https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub scheme: Option<Scheme>,

    /// Host name of the Location (a DNS name, no wildcard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = crate::patterns::DNS_NAME)
    )]
    #[garde(inner(length(min = 1, max = crate::MAX_HOST_LEN), pattern(crate::patterns::DNS_NAME_RE)))]
    pub hostname: Option<String>,

    /// Port of the Location, 1-65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    #[garde(inner(range(min = 1, max = 65535)))]
    pub port: Option<i32>,

    /// Path of the Location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub path: Option<PathModifier>,

    /// 301, 302 (the default), 303, 307 or 308.
    #[serde(default = "default_redirect_status")]
    #[x_kube(validation = kube::core::Rule::new("self in [301, 302, 303, 307, 308]").message("statusCode must be one of 301, 302, 303, 307, 308"))]
    #[garde(custom(valid_redirect_status))]
    pub status_code: i32,
}

fn default_redirect_status() -> i32 {
    302
}

fn valid_redirect_status(code: &i32, _: &()) -> garde::Result {
    if [301, 302, 303, 307, 308].contains(code) {
        Ok(())
    } else {
        Err(garde::Error::new(
            "statusCode must be one of 301, 302, 303, 307, 308",
        ))
    }
}

/// A rewrite of the request before it is proxied.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[serde(rename_all = "camelCase")]
pub struct Rewrite {
    /// The Host header (HTTP/1) or :authority the upstream sees (a DNS name, no wildcard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = crate::patterns::DNS_NAME)
    )]
    #[garde(inner(length(min = 1, max = crate::MAX_HOST_LEN), pattern(crate::patterns::DNS_NAME_RE)))]
    pub hostname: Option<String>,

    /// The path the upstream sees; the query is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub path: Option<PathModifier>,
}

/// A new path: exactly one of replaceFullPath or replacePrefixMatch.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.replaceFullPath) != has(self.replacePrefixMatch)").message("exactly one of replaceFullPath or replacePrefixMatch must be set"))]
#[garde(custom(exactly_one_path_modifier))]
pub struct PathModifier {
    /// The whole path is replaced by this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = crate::patterns::PATH))]
    #[garde(inner(length(min = 1, max = crate::MAX_PATH_LEN), pattern(crate::patterns::PATH_RE)))]
    pub replace_full_path: Option<String>,

    /// The part of the path the Prefix matched is replaced by this one ("/api" with "/v2":
    /// "/api/x" becomes "/v2/x"; with "/": "/x"). Only on Prefix paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = crate::patterns::PATH))]
    #[garde(inner(length(min = 1, max = crate::MAX_PATH_LEN), pattern(crate::patterns::PATH_RE)))]
    pub replace_prefix_match: Option<String>,
}

fn exactly_one_path_modifier(p: &PathModifier, _: &()) -> garde::Result {
    if p.replace_full_path.is_some() == p.replace_prefix_match.is_some() {
        return Err(garde::Error::new(
            "exactly one of replaceFullPath or replacePrefixMatch must be set",
        ));
    }
    Ok(())
}

const TIMEOUTS_ORDER_CEL: &str = "!has(self.request) || !has(self.backendRequest) || duration(self.request) == duration('0s') || duration(self.backendRequest) <= duration(self.request)";
const TIMEOUTS_ORDER_MSG: &str = "backendRequest must not be longer than request";

/// Time limits; a request that exceeds one is answered 504 (or, when the response has
/// started, its body is cut). Gateway API duration syntax ("10s", "1m30s", "500ms"); "0s"
/// means no limit.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default, Validate)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(TIMEOUTS_ORDER_CEL).message(TIMEOUTS_ORDER_MSG).field_path(".backendRequest"))]
#[garde(custom(timeouts_in_order))]
pub struct Timeouts {
    /// The whole exchange, from the request's arrival through every retry to the end of the
    /// response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = crate::patterns::DURATION))]
    #[garde(inner(custom(valid_duration)))]
    pub request: Option<String>,

    /// Each attempt to an upstream, until its response head arrives. At most `request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = crate::patterns::DURATION))]
    #[garde(inner(custom(valid_duration)))]
    pub backend_request: Option<String>,
}

fn valid_duration(value: &str, _: &()) -> garde::Result {
    parse_duration(value)
        .map(|_| ())
        .ok_or_else(|| garde::Error::new(DURATION_MSG))
}

fn timeouts_in_order(t: &Timeouts, _: &()) -> garde::Result {
    if let (Some(request), Some(backend)) = (
        t.request.as_deref().and_then(parse_duration),
        t.backend_request.as_deref().and_then(parse_duration),
    ) && !request.is_zero()
        && backend > request
    {
        return Err(garde::Error::new(format!("backendRequest: {TIMEOUTS_ORDER_MSG}")));
    }
    Ok(())
}

/// Parses a duration field (Gateway API's syntax: up to four number-unit pairs of h, m, s or
/// ms, [`crate::patterns::DURATION`], as admission checks it); None when it does not match. The value is
/// read by the one duration parser, [`crate::duration::parse`].
pub fn parse_duration(value: &str) -> Option<std::time::Duration> {
    if !crate::patterns::DURATION_RE.is_match(value) {
        return None;
    }
    crate::duration::parse(value).ok()
}

/// Retries of a request whose attempt failed. Only requests without a body, or whose body
/// was small enough (64 KiB, with a Content-Length) to be kept, are retried; a request whose
/// response has started reaching the client never is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Validate)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Most retries after the first attempt, 0 to 10.
    #[schemars(range(min = 0, max = 10))]
    #[garde(range(min = 0, max = MAX_RETRY_ATTEMPTS))]
    pub attempts: i32,

    /// Upstream response statuses (500-599) that are retried; connect failures always are.
    /// At most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(range(min = 500, max = 599)))]
    #[garde(length(max = 16), inner(range(min = 500, max = 599)))]
    pub codes: Vec<i32>,

    /// Wait before each retry (Gateway API duration syntax). Defaults to none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = crate::patterns::DURATION))]
    #[garde(inner(custom(valid_duration)))]
    pub backoff: Option<String>,

    /// Also retry requests whose method is not idempotent (POST, PATCH, ...) after the
    /// upstream may have seen them: on a response timeout or a listed status. Off by
    /// default, as nginx's `proxy_next_upstream non_idempotent` is: the backend may already
    /// have acted on the first attempt. Connect failures are retried either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[garde(skip)]
    pub non_idempotent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_lists_every_proxy_managed_header() {
        for name in PROXY_MANAGED_HEADERS {
            assert!(MANAGED_MSG.contains(name), "{name}");
        }
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m1s1ms"), Some(Duration::from_millis(61_001)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "1d",
            "123456s",
            "1s1s1s1s1s",
            "-1s",
            "10 s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
            assert!(
                regex_matches(crate::patterns::DURATION, bad) == parse_duration(bad).is_some(),
                "{bad}"
            );
        }
    }

    fn regex_matches(pattern: &str, value: &str) -> bool {
        garde::rules::pattern::regex::Regex::new(pattern)
            .unwrap()
            .is_match(value)
    }

    #[test]
    fn regexes() {
        assert!(check_regex("^/v[0-9]+$").is_ok());
        let err = check_regex("a(b").unwrap_err();
        assert!(err.starts_with("invalid regular expression"), "{err}");
        assert!(check_regex(&"a".repeat(1025)).is_err());
        // Backreferences are not RE2.
        assert!(check_regex(r"(a)\1").is_err());
    }

    #[test]
    fn header_name_pattern() {
        for good in ["x-canary", "X_Y", "a!#$%&'*+-.^_`|~"] {
            assert!(regex_matches(crate::patterns::TOKEN, good), "{good}");
        }
        for bad in ["", "x canary", "x:y", "x\u{e9}", "a(b)"] {
            assert!(!regex_matches(crate::patterns::TOKEN, bad), "{bad}");
        }
    }

    /// Admission (the schema: length and `patterns::UPGRADE`) and `garde` refuse the same
    /// upgrade protocols, h2c aside (refused by `garde` and the admission policy).
    #[test]
    fn upgrade_protocols_are_judged_alike_by_the_schema_and_garde() {
        let long = format!("{}/{}", "a".repeat(40), "b".repeat(40));
        for value in [
            "websocket",
            "WebSocket/13",
            "x-tunnel",
            "a/b",
            "",
            "/1",
            "web socket",
            "a/b/c",
            "websocket/",
            "caf\u{e9}",
            long.as_str(),
        ] {
            let schema = value.len() <= 64 && regex_matches(crate::patterns::UPGRADE, value);
            assert_eq!(upgrade_protocol(value, &()).is_ok(), schema, "{value:?}");
        }
        assert!(regex_matches(crate::patterns::UPGRADE, "h2c"));
        assert!(upgrade_protocol("H2C", &()).is_err());
    }
}
