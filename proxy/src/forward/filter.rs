//! Phase 2, request filter: turns the client's request into the upstream's. Hop-by-hop
//! headers describe one connection and must not cross the proxy (RFC 9110 §7.6.1); the
//! X-Forwarded-* headers tell the upstream what the client's connection looked like. A
//! route's rewrite then changes Host and path.

use http::{
    HeaderMap, HeaderName, HeaderValue, Uri, Version,
    header::{CONNECTION, Entry, HOST, TE, TRANSFER_ENCODING, UPGRADE},
    request::Parts,
    uri::PathAndQuery,
};
use lockstep_core::{Route, http1::HOP_BY_HOP, traffic::RewriteRule};

use super::error::ProxyError;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The protocol a client asked to switch to, for requests that may be tunnelled: only
/// HTTP/1.1 has Upgrade, it counts only when Connection names it, and every protocol it
/// lists must be one the route `allows` (WebSocket unless the route lists others). Any
/// other Upgrade is dropped with the other hop-by-hop headers, so the upstream answers the
/// request itself: `h2c` above all is never tunnelled (`lockstep_crds::allows_upgrade`
/// refuses it whatever a route says), since an upstream that accepts it would then speak
/// HTTP/2 straight to the client, past routing, filters and timeouts (the h2c smuggling
/// technique).
pub(crate) fn upgrade_protocol(req: &Parts, allows: impl Fn(&str) -> bool) -> Option<HeaderValue> {
    if req.version != Version::HTTP_11 {
        return None;
    }
    let upgrade = req.headers.get(UPGRADE)?;
    let allowed = upgrade
        .to_str()
        .is_ok_and(|v| v.split(',').all(|p| allows(p.trim())));
    (allowed && connection_tokens(&req.headers).any(|t| t.eq_ignore_ascii_case("upgrade")))
        .then(|| upgrade.clone())
}

/// Checks a request's Transfer-Encoding before it is stripped as hop-by-hop: the only
/// coding the proxy decodes is a single `chunked` (the HTTP/1 server has already refused
/// codings that do not end in chunked). Anything else would reach the upstream as content it cannot
/// tell apart from the real body: `gzip, chunked` forwarded without its Transfer-Encoding
/// hands over gzip bytes, `chunked, chunked` hands over a body decoded once of two.
pub(crate) fn check_transfer_encoding(req: &Parts) -> Result<(), ProxyError> {
    let mut codings = 0usize;
    let mut chunked = 0usize;
    for value in req.headers.get_all(TRANSFER_ENCODING) {
        let value = value.to_str().map_err(|_| ProxyError::BadFraming)?;
        for coding in value.split(',') {
            let coding = coding.trim_matches([' ', '\t']);
            if coding.is_empty() {
                return Err(ProxyError::BadFraming);
            }
            codings += 1;
            if coding.eq_ignore_ascii_case("chunked") {
                chunked += 1;
            }
        }
    }
    match (codings, chunked) {
        (0, _) | (1, 1) => Ok(()),
        (_, 0) | (_, 2..) => Err(ProxyError::BadFraming),
        _ => Err(ProxyError::UnsupportedTransferCoding),
    }
}

/// Rewrites a request's headers for the upstream, in place. `host` is the request's host as
/// routed, which becomes the Host header when the client sent an authority (HTTP/2, absolute
/// form); `client` is the client's address as a header value, made once per connection.
pub(crate) fn prepare_request(
    req: &mut Parts,
    host: RequestHost,
    client: &HeaderValue,
    scheme: &'static str,
    upgrade: Option<HeaderValue>,
    hop_by_hop: HopByHop,
) {
    let headers = &mut req.headers;
    strip_present(headers, hop_by_hop);
    strip_client_claims(headers);
    if let Some(protocol) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol);
    }
    append_forwarded_for(headers, client);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    match host {
        // The request's one Host header stays where it is: inserting its own value again
        // was a hashed lookup and a replacement on nearly every request.
        RequestHost::Header(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
        RequestHost::Authority(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
            headers.insert(HOST, host);
        }
    }
    // Upstreams are spoken to in HTTP/1.1 whatever the client used.
    req.version = Version::HTTP_11;
}

/// The host a proxied request is for, and where it came from.
#[derive(Debug, Clone)]
pub(crate) enum RequestHost {
    /// The request's single Host header (HTTP/1 origin form), which the upstream gets as it is.
    Header(HeaderValue),
    /// The URI's authority (HTTP/2 `:authority`, HTTP/1 absolute form), which becomes the
    /// upstream request's Host header.
    Authority(HeaderValue),
}

/// Headers a client may send to claim what only a proxy should say, which backends trust:
/// `Forwarded` and `X-Real-IP` name the original client (nginx's `realip`, Spring, Rails
/// read them), `X-Original-URL` and `X-Rewrite-URL` override the path a backend serves
/// (IIS, Symfony), past this proxy's routing. They are removed rather than overwritten: the
/// proxy says the same in X-Forwarded-For/-Proto/-Host, where it appends to or replaces
/// what the client sent, and a chain of proxies that wants `Forwarded` sets it at the
/// edge. (Envoy likewise strips its own `x-envoy-*` headers from untrusted clients; nginx
/// passes them on unless told to clear them, which is how the X-Original-URL bypass works.)
static CLIENT_CLAIMS: [HeaderName; 4] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];

fn strip_client_claims(headers: &mut HeaderMap) {
    // Most requests carry none: one pass over the names before any removal.
    if headers.keys().any(|name| CLIENT_CLAIMS.contains(name)) {
        for name in &CLIENT_CLAIMS {
            headers.remove(name);
        }
    }
}

/// Whether the client asked for trailers (`TE: trailers`, as every gRPC client does). TE is
/// hop-by-hop, so it is stripped and this one value put back for the upstream.
pub(crate) fn wants_trailers(req: &Parts) -> bool {
    req.headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// The deadline a gRPC client sent (`grpc-timeout`: up to 8 digits and a unit H, M, S, m,
/// u or n).
pub(crate) fn grpc_timeout(headers: &HeaderMap) -> Option<std::time::Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => std::time::Duration::from_secs(n * 3600),
        "M" => std::time::Duration::from_secs(n * 60),
        "S" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_millis(n),
        "u" => std::time::Duration::from_micros(n),
        "n" => std::time::Duration::from_nanos(n),
        _ => return None,
    })
}

/// Applies a route's rewrite: the Host the upstream sees and the path (the query is kept).
/// X-Forwarded-Host, already set, keeps saying what the client sent.
pub(crate) fn rewrite(req: &mut Parts, route: &Route, rewrite: &RewriteRule) -> Result<(), ProxyError> {
    if let Some(hostname) = &rewrite.hostname {
        req.headers.insert(HOST, hostname.clone());
    }
    if let Some(path) = &rewrite.path {
        let mut target = path.apply(&route.path, req.uri.path());
        if let Some(query) = req.uri.query() {
            target.push('?');
            target.push_str(query);
        }
        let path_and_query = PathAndQuery::try_from(target).map_err(|_| ProxyError::NoRoute)?;
        let mut parts = req.uri.clone().into_parts();
        parts.path_and_query = Some(path_and_query);
        req.uri = Uri::from_parts(parts).map_err(|_| ProxyError::NoRoute)?;
    }
    Ok(())
}

/// Rewrites an upstream response's headers for the client. A 101 keeps Connection and
/// Upgrade: they are the switch the client asked for.
pub(crate) fn prepare_response(headers: &mut HeaderMap, switching_protocols: bool) {
    if switching_protocols {
        let connection = headers.remove(CONNECTION);
        let upgrade = headers.remove(UPGRADE);
        strip_hop_by_hop(headers);
        if let (Some(c), Some(u)) = (connection, upgrade) {
            headers.insert(CONNECTION, c);
            headers.insert(UPGRADE, u);
        }
    } else {
        strip_hop_by_hop(headers);
    }
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes Connection, every header it names, and the headers that are hop-by-hop by
/// definition.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_present(headers, HopByHop::of(headers));
}

/// Which hop-by-hop fields a head carries, and whether any name starts with `proxy-`, from
/// one pass over its names (compared as http's known names, not hashed). The request path
/// reads it before its filters run, so that a request without Upgrade or TE (nearly every
/// one) is not looked up for them, and the strip reuses it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HopByHop {
    present: [bool; HOP_BY_HOP.len()],
    proxy_named: bool,
}

impl HopByHop {
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut found = Self {
            present: [false; HOP_BY_HOP.len()],
            proxy_named: false,
        };
        for name in headers.keys() {
            let text = name.as_str();
            // A name of none of the hop-by-hop lengths is none of them: nearly every name
            // is ruled out by one bit test instead of six comparisons.
            if HOP_BY_HOP_LENGTHS & (1 << text.len().min(31)) != 0
                && let Some(i) = HOP_BY_HOP.iter().position(|h| *h == name)
            {
                found.present[i] = true;
            } else if text.starts_with("proxy-") {
                found.proxy_named = true;
            }
        }
        found
    }

    /// The head has an Upgrade field.
    pub(crate) fn upgrade(&self) -> bool {
        self.present[UPGRADE_AT]
    }

    /// The head has a TE field.
    pub(crate) fn te(&self) -> bool {
        self.present[TE_AT]
    }

    /// The head has a Transfer-Encoding field.
    pub(crate) fn transfer_encoding(&self) -> bool {
        self.present[TRANSFER_ENCODING_AT]
    }
}

/// Removes what `found` says `headers` carries (see `strip_hop_by_hop`).
fn strip_present(headers: &mut HeaderMap, found: HopByHop) {
    // Only the names found are removed: most messages carry none, and a removal is a hashed
    // lookup even when the name is absent.
    let HopByHop { present, proxy_named } = found;
    // `close` names no field, and `keep-alive` and `upgrade` name fields removed below
    // anyway: the usual Connection values cost no allocation.
    let names_a_field = |t: &&str| {
        !t.eq_ignore_ascii_case("close")
            && !t.eq_ignore_ascii_case("keep-alive")
            && !t.eq_ignore_ascii_case("upgrade")
    };
    if present[0] && connection_tokens(headers).any(|t| names_a_field(&t)) {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter(names_a_field)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(*name);
        }
    }
    // Proxy-Connection, Proxy-Authorization and friends are for this hop only.
    if proxy_named {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

/// The lengths of the names in `HOP_BY_HOP`, one bit each: te 2, trailer and upgrade 7,
/// connection and keep-alive 10, transfer-encoding 17.
const HOP_BY_HOP_LENGTHS: u32 = 1 << 2 | 1 << 7 | 1 << 10 | 1 << 17;

/// Where TE, Transfer-Encoding and Upgrade are in `HOP_BY_HOP`.
const TE_AT: usize = 2;
const TRANSFER_ENCODING_AT: usize = 4;
const UPGRADE_AT: usize = 5;

/// Appends the client's address to X-Forwarded-For, folding repeated headers into one. The
/// common case, no X-Forwarded-For from the client, shares the connection's value.
fn append_forwarded_for(headers: &mut HeaderMap, client: &HeaderValue) {
    // One hashed lookup, through the entry, for both the check and the insert.
    let mut prior = match headers.entry(X_FORWARDED_FOR.clone()) {
        Entry::Vacant(vacant) => {
            vacant.insert(client.clone());
            return;
        }
        Entry::Occupied(prior) => prior,
    };
    let mut value = Vec::with_capacity(128);
    for prior in prior.iter() {
        if prior.to_str().is_ok() {
            value.extend_from_slice(prior.as_bytes());
            value.extend_from_slice(b", ");
        }
    }
    value.extend_from_slice(client.as_bytes());
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        // Replaces every prior value.
        prior.insert(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().uri("/x");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).expect("request").into_parts().0
    }

    /// `HopByHop` reads TE and Upgrade at their places in `HOP_BY_HOP`.
    #[test]
    fn te_and_upgrade_are_found_where_they_are() {
        assert_eq!(*HOP_BY_HOP[TE_AT], TE);
        assert_eq!(*HOP_BY_HOP[TRANSFER_ENCODING_AT], TRANSFER_ENCODING);
        assert_eq!(*HOP_BY_HOP[UPGRADE_AT], UPGRADE);
        let req = request(&[("te", "trailers"), ("x-other", "1")]);
        let found = HopByHop::of(&req.headers);
        assert!(found.te() && !found.upgrade());
        let req = request(&[("upgrade", "websocket"), ("connection", "upgrade")]);
        let found = HopByHop::of(&req.headers);
        assert!(found.upgrade() && !found.te());
    }

    /// `strip_hop_by_hop` looks at a name only when its length is one of theirs.
    #[test]
    fn every_hop_by_hop_name_has_its_length_in_the_mask() {
        for name in HOP_BY_HOP {
            assert_ne!(HOP_BY_HOP_LENGTHS & (1 << name.as_str().len()), 0, "{name}");
        }
        let mut headers = HeaderMap::new();
        for name in HOP_BY_HOP {
            headers.insert(name.clone(), HeaderValue::from_static("x"));
        }
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.keys().collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn strips_connection_and_the_headers_it_names() {
        let mut req = request(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("X-Original-URL", "/admin"),
            ("x-rewrite-url", "/admin"),
        ]);
        prepare_with_host(
            &mut req,
            RequestHost::Authority(HeaderValue::from_static("a.test")),
        );
        let h = &req.headers;
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "te",
            "trailer",
            "proxy-authorization",
            "proxy-connection",
            "forwarded",
            "x-real-ip",
            "x-original-url",
            "x-rewrite-url",
        ] {
            assert!(!h.contains_key(gone), "{gone} must be stripped");
        }
        assert_eq!(h["x-kept"], "yes");
        assert_eq!(h["host"], "a.test");
        assert_eq!(h["x-forwarded-host"], "a.test");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
    }

    /// Phase 2's request filter for a plain-HTTP request from 10.0.0.1 going to `host`.
    fn prepare_with_host(req: &mut Parts, host: RequestHost) {
        let found = HopByHop::of(&req.headers);
        prepare_request(
            req,
            host,
            &HeaderValue::from_static("10.0.0.1"),
            "http",
            None,
            found,
        );
    }

    /// A Host header the request came with stays the only one, in its place; an authority
    /// becomes the Host header, replacing whatever the client sent beside it.
    #[test]
    fn the_host_is_kept_from_the_header_and_set_from_an_authority() {
        let mut req = request(&[
            ("host", "a.test"),
            ("x-forwarded-host", "evil.test"),
            ("x-kept", "1"),
        ]);
        let host = RequestHost::Header(req.headers[HOST].clone());
        prepare_with_host(&mut req, host);
        let h = &req.headers;
        assert_eq!(h.get_all(HOST).iter().collect::<Vec<_>>(), ["a.test"]);
        assert_eq!(
            h.keys().next(),
            Some(&HOST),
            "Host moved from where the client put it"
        );
        assert_eq!(
            h.get_all("x-forwarded-host").iter().collect::<Vec<_>>(),
            ["a.test"]
        );

        let mut req = request(&[("host", "other.test")]);
        prepare_with_host(
            &mut req,
            RequestHost::Authority(HeaderValue::from_static("a.test:8443")),
        );
        let h = &req.headers;
        assert_eq!(h.get_all(HOST).iter().collect::<Vec<_>>(), ["a.test:8443"]);
        assert_eq!(h["x-forwarded-host"], "a.test:8443");
    }

    #[test]
    fn forwarded_for_appends_to_all_prior_values() {
        let mut req = request(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
        ]);
        let found = HopByHop::of(&req.headers);
        prepare_request(
            &mut req,
            RequestHost::Authority(HeaderValue::from_static("a")),
            &HeaderValue::from_static("127.0.0.1"),
            "https",
            None,
            found,
        );
        assert_eq!(
            req.headers["x-forwarded-for"],
            "1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"
        );
        assert_eq!(req.headers["x-forwarded-proto"], "https");
    }

    fn websocket_only(protocol: &str) -> bool {
        lockstep_crds::allows_upgrade(None, protocol)
    }

    #[test]
    fn upgrade_survives_only_when_connection_names_it() {
        let req = request(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")]);
        let protocol = upgrade_protocol(&req, websocket_only);
        assert_eq!(
            protocol.as_ref().map(|p| p.to_str().ok()),
            Some(Some("websocket"))
        );
        let mut req = req;
        let found = HopByHop::of(&req.headers);
        prepare_request(
            &mut req,
            RequestHost::Authority(HeaderValue::from_static("a")),
            &HeaderValue::from_static("127.0.0.1"),
            "http",
            protocol,
            found,
        );
        assert_eq!(req.headers["connection"], "upgrade");
        assert_eq!(req.headers["upgrade"], "websocket");

        let plain = request(&[("upgrade", "websocket")]);
        assert!(upgrade_protocol(&plain, websocket_only).is_none());

        for other in [
            "h2c",
            "websocket, h2c",
            "h2c, websocket",
            "HTTP/2.0",
            "",
            "TLS/1.2",
        ] {
            let req = request(&[("connection", "Upgrade, HTTP2-Settings"), ("upgrade", other)]);
            assert!(
                upgrade_protocol(&req, websocket_only).is_none(),
                "{other:?} must not be passed on"
            );
        }
        let req = request(&[("connection", "upgrade"), ("upgrade", "WebSocket")]);
        assert!(upgrade_protocol(&req, websocket_only).is_some());
    }

    #[test]
    fn a_route_decides_which_protocols_pass_but_never_h2c() {
        let listed = ["x-tunnel".to_owned(), "websocket".to_owned()];
        let allows = |p: &str| lockstep_crds::allows_upgrade(Some(&listed), p);
        let none: [String; 0] = [];
        let allows_none = |p: &str| lockstep_crds::allows_upgrade(Some(&none), p);
        let h2c_listed = ["h2c".to_owned()];
        let stored_h2c = |p: &str| lockstep_crds::allows_upgrade(Some(&h2c_listed), p);
        for (value, passes) in [
            ("x-tunnel", true),
            ("X-Tunnel/2", true),
            ("websocket, x-tunnel", true),
            ("x-tunnel, h2c", false),
            ("other", false),
        ] {
            let req = request(&[("connection", "upgrade"), ("upgrade", value)]);
            assert_eq!(upgrade_protocol(&req, allows).is_some(), passes, "{value}");
        }
        let ws = request(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        assert!(upgrade_protocol(&ws, allows_none).is_none());
        let h2c = request(&[("connection", "upgrade"), ("upgrade", "h2c")]);
        assert!(upgrade_protocol(&h2c, stored_h2c).is_none());
    }

    #[test]
    fn only_a_single_chunked_coding_passes() {
        for ok in [&[][..], &["chunked"], &["Chunked "]] {
            let headers: Vec<(&str, &str)> = ok.iter().map(|v| ("transfer-encoding", *v)).collect();
            assert!(check_transfer_encoding(&request(&headers)).is_ok(), "{ok:?}");
        }
        for (values, status) in [
            (&["gzip, chunked"][..], 501),
            (&["gzip", "chunked"], 501),
            (&["chunked, chunked"], 400),
            (&["chunked", "chunked"], 400),
            (&[", chunked"], 400),
            (&["gzip"], 400),
        ] {
            let headers: Vec<(&str, &str)> = values.iter().map(|v| ("transfer-encoding", *v)).collect();
            let err = check_transfer_encoding(&request(&headers)).expect_err("refused");
            assert_eq!(err.status().as_u16(), status, "{values:?}");
            assert!(err.is_framing_error());
        }
    }

    #[test]
    fn grpc_timeouts_parse() {
        let t = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", HeaderValue::from_str(v).expect("value"));
            grpc_timeout(&h)
        };
        assert_eq!(t("300m"), Some(std::time::Duration::from_millis(300)));
        assert_eq!(t("2S"), Some(std::time::Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(std::time::Duration::from_secs(3600)));
        assert_eq!(t("m"), None);
        assert_eq!(t("123456789m"), None);
        assert_eq!(t("10x"), None);
    }

    #[test]
    fn response_keeps_upgrade_only_on_101() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let mut switched = h.clone();
        prepare_response(&mut switched, true);
        assert_eq!(switched["upgrade"], "websocket");
        assert!(!switched.contains_key(TRANSFER_ENCODING));
        prepare_response(&mut h, false);
        assert!(h.is_empty());
    }
}
