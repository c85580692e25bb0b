//! One route rule in lockstep's internal form: its matches become path entries
//! (`PathType`, [`RequestMatch`]), its filters lockstep's [`Filters`], its backendRefs
//! weighted [`ServedBackend`]s.
//!
//! | in the rule | becomes | or, when lockstep cannot serve it |
//! |---|---|---|
//! | no matches | one Prefix "/" entry | |
//! | path Exact / PathPrefix | Exact / Prefix (both whole segments, as lockstep's) | RegularExpression: rule dropped, `UnsupportedValue` |
//! | method, headers, queryParams (Exact, RegularExpression) | `match` | CONNECT: rule dropped, `UnsupportedValue` |
//! | GRPC service + method | Exact `/service/method` | method without service: rule dropped, `UnsupportedValue` |
//! | GRPC service only | Prefix `/service` | RegularExpression: rule dropped, `UnsupportedValue` |
//! | RequestHeaderModifier, ResponseHeaderModifier | `filters.requestHeaders`, `responseHeaders` | |
//! | RequestRedirect | `filters.redirect` (backends ignored: the proxy answers) | a scheme other than http/https: `UnsupportedValue` |
//! | URLRewrite | `filters.rewrite` | |
//! | RequestMirror (HTTPRoute) | `filters.mirrors[]`: the Service, `percent` as n/100, `fraction` as is | a backendRef that does not resolve: no copy, `ResolvedRefs=False` with its reason; on a GRPCRoute: rule dropped, `UnsupportedValue` |
//! | RequestHeaderModifier on an HTTPRoute backendRef | that backend's `requestHeaders`: only the requests sent to it are changed | |
//! | CORS (HTTPRoute) | `filters.cors` (the proxy answers preflights) | an origin, method or header lockstep's schema refuses: rule dropped, `UnsupportedValue` |
//! | ExternalAuth, unknown types, other filters on a backendRef, any on a GRPCRoute backendRef | | rule dropped, `UnsupportedValue` |
//! | ExtensionRef | every request of the rule answered 500, `ResolvedRefs=False InvalidKind` ("the filter MUST NOT be skipped") | |
//! | backendRef that resolves | a Service backend with its weight (a GRPCRoute's is reached over h2c: gRPC needs HTTP/2, and TLS to backends, BackendTLSPolicy, is not supported) | |
//! | backendRef that does not | a 500 backend **with its weight kept** and `ResolvedRefs=False` with its reason | |
//! | no backendRefs, no redirect | one 500 backend | |
//! | timeouts | `timeouts` (same syntax and meaning) | |

use k8s_openapi::api::core::v1::Service;
use lockstep_crds::gateway::{
    GrpcRouteRule, HttpHeaderFilter, HttpHeaderMatch, HttpPathModifier, HttpRouteRule, ReferenceGrant,
};
use lockstep_crds::{
    Filters, HeaderModifier, HeaderValue, HttpMethod, MatchType, Mirror, MirrorFraction, PathModifier,
    PathType, Redirect, RequestMatch, Rewrite, Scheme, ServiceBackend, Timeouts, ValueMatch, check_regex,
    parse_duration,
};

use super::{
    references::{Referrer, ResolvedService, Unresolved, resolve_backend},
    status::reason,
};

/// Where a request of an entry goes.
#[derive(Debug, Clone, PartialEq)]
pub enum ServedBackend {
    /// A Service port, with its share.
    Service {
        /// The Service port.
        service: ResolvedService,
        /// Its weight.
        weight: u32,
        /// The backendRef's own RequestHeaderModifier: changes to the requests sent to it.
        request_headers: Option<HeaderModifier>,
    },
    /// The proxy answers this status itself (500 for a reference that cannot be resolved),
    /// for this share of the requests.
    Status {
        /// The HTTP status answered.
        status: u16,
        /// Its weight.
        weight: u32,
    },
}

/// One match of a rule, ready to be placed under a host.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleEntry {
    /// Path (for gRPC: `/service/method` or `/service`).
    pub path: String,
    /// Exact or Prefix.
    pub path_type: PathType,
    /// Method, headers and query parameters.
    pub matches: RequestMatch,
    /// Index of the match within the rule (list order breaks ties inside a route).
    pub match_index: usize,
    /// Header changes, redirect, rewrite.
    pub filters: Option<Filters>,
    /// Time limits.
    pub timeouts: Option<Timeouts>,
    /// Weighted backends; empty for a redirect.
    pub backends: Vec<ServedBackend>,
}

/// A rule in lockstep's form, or why it is dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslatedRule {
    /// The rule's entries (one per match).
    pub entries: Vec<RuleEntry>,
    /// References that did not resolve (their requests get 500): the first gives the
    /// route's `ResolvedRefs=False` reason.
    pub unresolved: Vec<Unresolved>,
}

/// A rule lockstep cannot serve: `UnsupportedValue` with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedRule(pub String);

/// The status answered for a reference that cannot be resolved.
pub const UNRESOLVED_STATUS: u16 = 500;

fn header_modifier(f: &HttpHeaderFilter) -> HeaderModifier {
    let values = |list: &[lockstep_crds::gateway::HttpHeader]| {
        list.iter()
            .map(|h| HeaderValue {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect()
    };
    HeaderModifier {
        set: values(&f.set),
        add: values(&f.add),
        remove: f.remove.clone(),
    }
}

fn path_modifier(p: &HttpPathModifier) -> Result<PathModifier, DroppedRule> {
    match p.modifier_type.as_str() {
        "ReplaceFullPath" => Ok(PathModifier {
            replace_full_path: Some(p.replace_full_path.clone().unwrap_or_else(|| "/".into())),
            replace_prefix_match: None,
        }),
        "ReplacePrefixMatch" => Ok(PathModifier {
            replace_full_path: None,
            replace_prefix_match: Some(p.replace_prefix_match.clone().unwrap_or_else(|| "/".into())),
        }),
        other => Err(DroppedRule(format!(
            "path modifier type {other} is not supported"
        ))),
    }
}

fn value_match(m: &HttpHeaderMatch, what: &str) -> Result<ValueMatch, DroppedRule> {
    let match_type = match m.match_type.as_deref().unwrap_or("Exact") {
        "Exact" => MatchType::Exact,
        "RegularExpression" => {
            check_regex(&m.value).map_err(|e| DroppedRule(format!("{what} {}: {e}", m.name)))?;
            MatchType::RegularExpression
        }
        other => return Err(DroppedRule(format!("{what} match type {other} is not supported"))),
    };
    Ok(ValueMatch {
        match_type,
        name: m.name.clone(),
        value: m.value.clone(),
    })
}

fn method(name: &str) -> Result<HttpMethod, DroppedRule> {
    Ok(match name {
        "GET" => HttpMethod::Get,
        "HEAD" => HttpMethod::Head,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "OPTIONS" => HttpMethod::Options,
        "TRACE" => HttpMethod::Trace,
        "PATCH" => HttpMethod::Patch,
        other => return Err(DroppedRule(format!("method {other} is not supported"))),
    })
}

fn timeouts(rule: &HttpRouteRule) -> Result<Option<Timeouts>, DroppedRule> {
    let Some(t) = &rule.timeouts else { return Ok(None) };
    for d in [&t.request, &t.backend_request].into_iter().flatten() {
        if parse_duration(d).is_none() {
            return Err(DroppedRule(format!("timeout {d} is not a Gateway API duration")));
        }
    }
    Ok(Some(Timeouts {
        request: t.request.clone(),
        backend_request: t.backend_request.clone(),
    }))
}

/// One backendRef: where, its weight, its own request header changes.
type BackendRefParts<'b> = (
    &'b lockstep_crds::gateway::BackendObjectReference,
    Option<i32>,
    Option<HeaderModifier>,
);

/// Resolves weighted backendRefs: each one a Service or a 500 share with its weight kept.
fn backends<'b>(
    refs: impl Iterator<Item = BackendRefParts<'b>>,
    from: Referrer<'_>,
    services: &[Service],
    grants: &[ReferenceGrant],
    unresolved: &mut Vec<Unresolved>,
) -> Vec<ServedBackend> {
    let mut out = Vec::new();
    for (backend, weight, request_headers) in refs {
        let weight = u32::try_from(weight.unwrap_or(1)).unwrap_or(0);
        match resolve_backend(backend, from, services, grants) {
            Ok(service) => out.push(ServedBackend::Service {
                service,
                weight,
                request_headers,
            }),
            Err(e) => {
                unresolved.push(e);
                out.push(ServedBackend::Status {
                    status: UNRESOLVED_STATUS,
                    weight,
                });
            }
        }
    }
    if out.is_empty() {
        // HTTPRouteRule backendRefs: with no backend and no filter that answers, every
        // request of the rule gets 500, as when every backend is invalid.
        out.push(ServedBackend::Status {
            status: UNRESOLVED_STATUS,
            weight: 1,
        });
    }
    out
}

/// Filters shared by HTTPRoute and GRPCRoute, and what they mean for the rule.
#[derive(Default)]
struct FilterOutcome {
    filters: Filters,
    any: bool,
    /// An ExtensionRef: every request of the rule gets 500.
    extension_ref: Option<Unresolved>,
    /// RequestMirror backendRefs that do not resolve.
    mirror_unresolved: Vec<Unresolved>,
}

/// A RequestMirror to a resolved Service. The namespace is always written here; lowering
/// leaves it out where it is the RouterConfig's own.
fn mirror(service: ResolvedService, m: &lockstep_crds::gateway::HttpRequestMirrorFilter) -> Mirror {
    let fraction = match (m.percent, &m.fraction) {
        (Some(percent), _) => Some(MirrorFraction {
            numerator: percent,
            denominator: 100,
        }),
        (None, Some(f)) => Some(MirrorFraction {
            numerator: f.numerator,
            denominator: f.denominator.unwrap_or(100),
        }),
        (None, None) => None,
    };
    Mirror {
        service: ServiceBackend {
            name: service.name,
            namespace: Some(service.namespace),
            port: service.port,
            app_protocol: None,
            // Set by `backend_tls::apply` when a BackendTLSPolicy targets the Service.
            tls: None,
        },
        fraction,
    }
}

fn common_filter(
    kind: &str,
    request: Option<&HttpHeaderFilter>,
    response: Option<&HttpHeaderFilter>,
    extension: Option<&lockstep_crds::gateway::LocalObjectReference>,
    out: &mut FilterOutcome,
) -> Result<bool, DroppedRule> {
    match kind {
        "RequestHeaderModifier" => out.filters.request_headers = request.map(header_modifier),
        "ResponseHeaderModifier" => out.filters.response_headers = response.map(header_modifier),
        "ExtensionRef" => {
            let name = extension
                .map(|e| format!("{}/{} {}", e.group, e.kind, e.name))
                .unwrap_or_default();
            out.extension_ref.get_or_insert(Unresolved {
                reason: reason::INVALID_KIND,
                message: format!("ExtensionRef filter {name}: lockstep has no extension filters"),
            });
        }
        _ => return Ok(false),
    }
    out.any = true;
    Ok(true)
}

/// Translates one HTTPRoute rule.
pub fn http_rule(
    rule: &HttpRouteRule,
    from: Referrer<'_>,
    services: &[Service],
    grants: &[ReferenceGrant],
) -> Result<TranslatedRule, DroppedRule> {
    let mut outcome = FilterOutcome::default();
    for f in &rule.filters {
        let t = f.filter_type.as_str();
        if common_filter(
            t,
            f.request_header_modifier.as_ref(),
            f.response_header_modifier.as_ref(),
            f.extension_ref.as_ref(),
            &mut outcome,
        )? {
            continue;
        }
        match t {
            "RequestRedirect" => {
                let r = f.request_redirect.clone().unwrap_or_default();
                let scheme = match r.scheme.as_deref() {
                    None => None,
                    Some("http") => Some(Scheme::Http),
                    Some("https") => Some(Scheme::Https),
                    Some(other) => {
                        return Err(DroppedRule(format!("redirect scheme {other} is not supported")));
                    }
                };
                outcome.filters.redirect = Some(Redirect {
                    scheme,
                    hostname: r.hostname,
                    port: r.port,
                    path: r.path.as_ref().map(path_modifier).transpose()?,
                    status_code: r.status_code.unwrap_or(302),
                });
            }
            "CORS" => outcome.filters.cors = Some(cors(f.cors.as_ref())?),
            "RequestMirror" => {
                let m = f.request_mirror.clone().unwrap_or_default();
                match resolve_backend(&m.backend_ref, from, services, grants) {
                    Ok(service) => outcome.filters.mirrors.push(mirror(service, &m)),
                    // No copy is sent; the route says why.
                    Err(e) => outcome.mirror_unresolved.push(e),
                }
            }
            "URLRewrite" => {
                let r = f.url_rewrite.clone().unwrap_or_default();
                outcome.filters.rewrite = Some(Rewrite {
                    hostname: r.hostname,
                    path: r.path.as_ref().map(path_modifier).transpose()?,
                });
            }
            other => return Err(DroppedRule(format!("filter {other} is not supported"))),
        }
        outcome.any = true;
    }
    let backend_headers = rule
        .backend_refs
        .iter()
        .map(|b| backend_request_headers(&b.filters))
        .collect::<Result<Vec<_>, _>>()?;
    let timeouts = timeouts(rule)?;
    let mut unresolved = Vec::new();
    let served = if outcome.filters.redirect.is_some() {
        Vec::new()
    } else {
        backends(
            rule.backend_refs
                .iter()
                .zip(backend_headers)
                .map(|(b, headers)| (&b.backend, b.weight, headers)),
            from,
            services,
            grants,
            &mut unresolved,
        )
    };
    unresolved.append(&mut outcome.mirror_unresolved);
    let served = finish(&mut outcome, served, &mut unresolved);
    let default_match = [lockstep_crds::gateway::HttpRouteMatch::default()];
    let matches = if rule.matches.is_empty() {
        &default_match[..]
    } else {
        &rule.matches[..]
    };
    let mut entries = Vec::new();
    for (match_index, m) in matches.iter().enumerate() {
        let path = m.path.clone().unwrap_or_default();
        let path_type = match path.match_type.as_deref().unwrap_or("PathPrefix") {
            "PathPrefix" => PathType::Prefix,
            "Exact" => PathType::Exact,
            other => return Err(DroppedRule(format!("path match type {other} is not supported"))),
        };
        let matches = RequestMatch {
            method: m.method.as_deref().map(method).transpose()?,
            headers: m
                .headers
                .iter()
                .map(|h| value_match(h, "header"))
                .collect::<Result<_, _>>()?,
            query_params: m
                .query_params
                .iter()
                .map(|q| value_match(q, "query parameter"))
                .collect::<Result<_, _>>()?,
        };
        entries.push(RuleEntry {
            path: path.value.unwrap_or_else(|| "/".into()),
            path_type,
            matches,
            match_index,
            filters: outcome.any.then(|| outcome.filters.clone()),
            timeouts: timeouts.clone(),
            backends: served.clone(),
        });
    }
    Ok(TranslatedRule { entries, unresolved })
}

/// A CORS filter in lockstep's form, checked as a RouterConfig's is: a value lockstep
/// cannot put in a header (or a host pattern it does not match) drops the rule.
fn cors(f: Option<&lockstep_crds::gateway::HttpCorsFilter>) -> Result<lockstep_crds::Cors, DroppedRule> {
    let f = f.cloned().unwrap_or_default();
    let c = lockstep_crds::Cors {
        allow_origins: f.allow_origins,
        allow_credentials: f.allow_credentials.unwrap_or(false),
        allow_methods: f.allow_methods,
        allow_headers: f.allow_headers,
        expose_headers: f.expose_headers,
        max_age: f.max_age,
    };
    garde::Validate::validate(&c).map_err(|e| DroppedRule(format!("CORS filter: {e}")))?;
    Ok(c)
}

/// The filters of one HTTPRoute backendRef: RequestHeaderModifier alone is served (the
/// `HTTPRouteBackendRequestHeaderModification` feature), several merged in order as the
/// route's own are; anything else drops the rule.
fn backend_request_headers(
    filters: &[lockstep_crds::gateway::HttpRouteFilter],
) -> Result<Option<HeaderModifier>, DroppedRule> {
    let mut out: Option<HeaderModifier> = None;
    for f in filters {
        match (f.filter_type.as_str(), &f.request_header_modifier) {
            ("RequestHeaderModifier", Some(m)) => {
                let m = header_modifier(m);
                let merged = out.get_or_insert_with(HeaderModifier::default);
                merged.set.extend(m.set);
                merged.add.extend(m.add);
                merged.remove.extend(m.remove);
            }
            (other, _) => {
                return Err(DroppedRule(format!(
                    "filter {other} on a backendRef is not supported"
                )));
            }
        }
    }
    Ok(out)
}

/// An ExtensionRef replaces every backend by a 500 answer, after the backends' own problems.
fn finish(
    outcome: &mut FilterOutcome,
    served: Vec<ServedBackend>,
    unresolved: &mut Vec<Unresolved>,
) -> Vec<ServedBackend> {
    match outcome.extension_ref.take() {
        Some(e) => {
            unresolved.push(e);
            outcome.filters.redirect = None;
            vec![ServedBackend::Status {
                status: UNRESOLVED_STATUS,
                weight: 1,
            }]
        }
        None => served,
    }
}

/// Translates one GRPCRoute rule.
pub fn grpc_rule(
    rule: &GrpcRouteRule,
    from: Referrer<'_>,
    services: &[Service],
    grants: &[ReferenceGrant],
) -> Result<TranslatedRule, DroppedRule> {
    let mut outcome = FilterOutcome::default();
    for f in &rule.filters {
        if !common_filter(
            &f.filter_type,
            f.request_header_modifier.as_ref(),
            f.response_header_modifier.as_ref(),
            f.extension_ref.as_ref(),
            &mut outcome,
        )? {
            return Err(DroppedRule(format!("filter {} is not supported", f.filter_type)));
        }
    }
    if rule.backend_refs.iter().any(|b| !b.filters.is_empty()) {
        return Err(DroppedRule("filters on a backendRef are not supported".into()));
    }
    let mut unresolved = Vec::new();
    let served = backends(
        rule.backend_refs.iter().map(|b| (&b.backend, b.weight, None)),
        from,
        services,
        grants,
        &mut unresolved,
    );
    let served = finish(&mut outcome, served, &mut unresolved);
    let default_match = [lockstep_crds::gateway::GrpcRouteMatch::default()];
    let matches = if rule.matches.is_empty() {
        &default_match[..]
    } else {
        &rule.matches[..]
    };
    let mut entries = Vec::new();
    for (match_index, m) in matches.iter().enumerate() {
        let (path, path_type) = match &m.method {
            None => ("/".to_owned(), PathType::Prefix),
            Some(mm) => {
                if mm.match_type.as_deref().unwrap_or("Exact") != "Exact" {
                    return Err(DroppedRule(
                        "gRPC RegularExpression method matches are not supported".into(),
                    ));
                }
                match (mm.service.as_deref(), mm.method.as_deref()) {
                    (Some(s), Some(me)) => (format!("/{s}/{me}"), PathType::Exact),
                    (Some(s), None) => (format!("/{s}"), PathType::Prefix),
                    (None, Some(_)) => {
                        return Err(DroppedRule(
                            "a gRPC method match without a service needs a path pattern lockstep cannot express yet".into(),
                        ));
                    }
                    (None, None) => ("/".to_owned(), PathType::Prefix),
                }
            }
        };
        entries.push(RuleEntry {
            path,
            path_type,
            matches: RequestMatch {
                method: None,
                headers: m
                    .headers
                    .iter()
                    .map(|h| value_match(h, "header"))
                    .collect::<Result<_, _>>()?,
                query_params: Vec::new(),
            },
            match_index,
            filters: outcome.any.then(|| outcome.filters.clone()),
            timeouts: None,
            backends: served.clone(),
        });
    }
    Ok(TranslatedRule { entries, unresolved })
}
