//! Phase 1, route lookup: which route of the served table a request belongs to.

use http::{HeaderValue, Request, Response, StatusCode, header};
use lockstep_config::{Route, RouteTable, normalize_host};

use super::{body::ProxyBody, error::ProxyError};

/// The host a request is for: the URI's authority when the request carries one (HTTP/2
/// `:authority`, HTTP/1 absolute form, which RFC 9112 says overrides Host), else the single
/// Host header.
pub(crate) fn request_host<B>(req: &Request<B>) -> Result<&str, ProxyError> {
    if let Some(authority) = req.uri().authority() {
        return Ok(authority.as_str());
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next().ok_or(ProxyError::BadHost)?;
    if hosts.next().is_some() {
        // Two Host headers let two hops disagree about the target (request smuggling).
        return Err(ProxyError::BadHost);
    }
    match host.to_str() {
        Ok(h) if !h.is_empty() => Ok(h),
        _ => Err(ProxyError::BadHost),
    }
}

/// The route for a request, or the error that answers it.
pub(crate) fn lookup<'t, B>(table: &'t RouteTable, req: &Request<B>) -> Result<&'t Route, ProxyError> {
    let host = request_host(req)?;
    table.lookup(host, req.uri().path()).ok_or(ProxyError::NoRoute)
}

/// The 308 a `redirectHTTP` route answers plain-HTTP requests with. 308 rather than 301 keeps
/// the method and body, so a POST is not silently turned into a GET.
pub(crate) fn https_redirect<B>(req: &Request<B>) -> Result<Response<ProxyBody>, ProxyError> {
    let host = normalize_host(request_host(req)?);
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = HeaderValue::try_from(format!("https://{host}{path}")).map_err(|_| ProxyError::BadHost)?;
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}
