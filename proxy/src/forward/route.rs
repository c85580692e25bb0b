//! Phase 1, route lookup: which route of the served table a request belongs to, by host,
//! path and the routes' request matches; redirects are answered here.

use std::borrow::Cow;

use http::{
    HeaderValue, Method, Response, StatusCode, Uri, header,
    request::Parts,
    uri::{Authority, PathAndQuery},
};
use lockstep_core::{Route, RouteTable, normalize_host, normalize_path, table::Found, traffic::RedirectRule};

use super::{body::ProxyBody, error::ProxyError, filter::RequestHost};

/// The host a request is for: the URI's authority when the request carries one (HTTP/2
/// `:authority`, HTTP/1 absolute form, which RFC 9112 says overrides Host), else the single
/// Host header.
pub(crate) fn request_host(req: &Parts) -> Result<&str, ProxyError> {
    request_host_field(req).map(|(host, _)| host)
}

/// [`request_host`], and the Host header it was read from (None: the URI's authority).
fn request_host_field(req: &Parts) -> Result<(&str, Option<&HeaderValue>), ProxyError> {
    if let Some(scheme) = req.uri.scheme_str()
        && !scheme.eq_ignore_ascii_case("http")
        && !scheme.eq_ignore_ascii_case("https")
    {
        // An absolute-form target for another protocol (ftp://…) is not an HTTP request
        // for one of our hosts.
        return Err(ProxyError::BadHost);
    }
    if let Some(authority) = req.uri.authority() {
        // userinfo ("app.test@elsewhere") makes a target read as one host by some parsers
        // and another by others; RFC 9110 §4.2.4 says to treat it as an error.
        if !valid_authority(authority) {
            return Err(ProxyError::BadHost);
        }
        return Ok((authority.as_str(), None));
    }
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let host = hosts.next().ok_or_else(|| ProxyError::BadHost)?;
    if hosts.next().is_some() {
        // Two Host headers let two hops disagree about the target (request smuggling).
        return Err(ProxyError::BadHost);
    }
    match host.to_str() {
        // The common Host (a name of letters, digits, dots and dashes, and maybe a port) is
        // valid as it stands: checked without parsing it into an Authority (a copy).
        Ok(h) if is_plain_host(h) => Ok((h, Some(host))),
        // RFC 9112 §3.2: a Host that is not a valid uri-host [":" port] is answered 400, not
        // looked up (and a 404 would tell a scanner which half of "a.test/evil" matched).
        Ok(h) if h.parse::<Authority>().is_ok_and(|a| valid_authority(&a)) => Ok((h, Some(host))),
        _ => Err(ProxyError::BadHost),
    }
}

/// A host and optional port, nothing else: no userinfo, no empty host, a numeric port.
/// A reg-name of unreserved characters and an optional port that fits in 16 bits: a
/// subset of what [`valid_authority`] accepts.
fn is_plain_host(host: &str) -> bool {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~'))
        && port.is_none_or(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
        })
}

fn valid_authority(authority: &Authority) -> bool {
    let host = authority.host();
    let port_ok = match authority.as_str().strip_prefix(host) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()),
        None => false,
    };
    !authority.as_str().contains('@') && !host.is_empty() && port_ok
}

/// Puts the request's path in its normal form ([`normalize_path`]) before it is matched and
/// forwarded, so that routing and the backend see the same path. A path that is already
/// normal (nearly all) is left as it is, without allocating.
pub(crate) fn normalize_request_path(req: &mut Parts) -> Result<(), ProxyError> {
    let normal = match normalize_path(req.uri.path()) {
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(normal)) => normal,
        Err(_) => return Err(ProxyError::BadPath),
    };
    let target = match req.uri.query() {
        Some(query) => format!("{normal}?{query}"),
        None => normal,
    };
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(target).map_err(|_| ProxyError::BadPath)?);
    req.uri = Uri::from_parts(parts).map_err(|_| ProxyError::BadPath)?;
    Ok(())
}

/// The route for a request (with its id, which per-route metrics are found by) and the host
/// the upstream request is for, or the error that answers it. `tls`: the request arrived over
/// TLS (the rules of a Gateway's HTTP and HTTPS listeners answer only their own,
/// `lockstep_core::table::Reach`).
pub(crate) fn lookup<'t>(
    table: &'t RouteTable,
    tls: bool,
    req: &Parts,
) -> Result<(Found<'t>, RequestHost), ProxyError> {
    if req.method == Method::CONNECT {
        // A reverse proxy has no tunnels to offer; forwarding CONNECT would let a client
        // reach any address a backend can.
        return Err(ProxyError::MethodNotAllowed);
    }
    let (host, field) = request_host_field(req)?;
    let path = req.uri.path();
    if !path.starts_with('/') {
        // Asterisk form (OPTIONS *) and CONNECT's authority form name no resource a route
        // could serve.
        return Err(ProxyError::NoRoute);
    }
    let found = table
        .lookup_request(tls, host, path, &req.method, &req.headers, req.uri.query())
        .ok_or_else(|| ProxyError::NoRoute)?;
    // The upstream request's host, taken here where the Host header is already at hand.
    let host = match field {
        Some(field) => RequestHost::Header(field.clone()),
        None => RequestHost::Authority(HeaderValue::from_str(host).map_err(|_| ProxyError::BadHost)?),
    };
    Ok((found, host))
}

/// The answer of a route whose `filters.redirect` is set, with Location built from the
/// request as Gateway API specifies.
pub(crate) fn filter_redirect(
    route: &Route,
    redirect: &RedirectRule,
    req: &Parts,
    scheme: &'static str,
) -> Result<Response<ProxyBody>, ProxyError> {
    let raw = request_host(req)?;
    let host = normalize_host(raw);
    // The port the client addressed: from Host (or :authority), else the scheme's default.
    let port = raw
        .parse::<Authority>()
        .ok()
        .and_then(|a| a.port_u16())
        .or(Some(if scheme == "https" { 443 } else { 80 }));
    let location = redirect.location(&route.path, scheme, &host, port, req.uri.path(), req.uri.query());
    let location = HeaderValue::try_from(location).map_err(|_| ProxyError::BadHost)?;
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::FOUND);
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// The 308 a `redirectHTTP` route answers plain-HTTP requests with. 308 rather than 301 keeps
/// the method and body, so a POST is not silently turned into a GET.
pub(crate) fn https_redirect(req: &Parts) -> Result<Response<ProxyBody>, ProxyError> {
    let host = normalize_host(request_host(req)?);
    let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = HeaderValue::try_from(format!("https://{host}{path}")).map_err(|_| ProxyError::BadHost)?;
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path accepts nothing the full check refuses, and the common hosts.
    #[test]
    fn a_plain_host_is_one_the_full_check_accepts() {
        let full = |h: &str| h.parse::<Authority>().is_ok_and(|a| valid_authority(&a));
        for h in [
            "app.test",
            "app.test:8080",
            "a",
            "a:0",
            "a:65535",
            "xn--bcher-kva.example",
            "a_b~c",
            "a:65536",
            "a:",
            ":80",
            "",
            "a:8x",
            "a b",
            "a@b",
            "a:80:80",
            "[::1]:80",
            "a/b",
            "a?b",
            "a%20b",
            "a:+80",
            "a:0080",
            "a:99999999999999999999",
        ] {
            if is_plain_host(h) {
                assert!(full(h), "{h:?} passed the fast path but not the full check");
            }
        }
        for h in ["app.test", "app.test:8080", "a-b.c_d~e:443"] {
            assert!(is_plain_host(h), "{h:?}");
        }
    }
}
