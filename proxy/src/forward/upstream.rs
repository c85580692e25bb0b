//! Phase 4, upstream request: sends the request to the chosen peer over a pooled keep-alive
//! connection, with the connect and response timeouts (a route's `timeouts.backendRequest`
//! bounds each attempt), and retries:
//! - without a `retry` policy, a second endpoint is tried once when the first could not be
//!   connected to, nothing of the request was sent, and the method is idempotent;
//! - with one, up to `attempts` retries, after `backoff`, on connect failures and on the
//!   listed response statuses, but only for requests whose body is replayable (none, or
//!   small enough to have been read whole). A request whose method is not idempotent is
//!   retried after a status or a response timeout (the upstream may have acted on it) only
//!   when the policy says `nonIdempotent`. A retried response is dropped unread; a response
//!   that is returned has not been shown to the client before, so no retry ever happens
//!   after response bytes went out. Each retry chooses its backend by weight again.
//!
//! A backend's own request header changes (`backends[].requestHeaders`) are applied to the
//! copy of the request sent to it, after the route's: a retry to another backend starts
//! from the request without them.

use std::io;

use http::{Method, Request, Response, Uri, request::Parts, uri::PathAndQuery};
use lockstep_core::{BackendRef, Route, traffic::RetryPolicy};

use super::{
    Proxy,
    client::ClientConnection,
    error::ProxyError,
    peer::{Peer, PeerAuthority},
    pool::{SendError, UpstreamBody},
    request_body::BodySlot,
};

/// What the client side takes of an upstream's answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientTakes {
    /// The client sent `TE: trailers` (a gRPC client), which is passed on to HTTP/2
    /// upstreams only.
    pub trailers: bool,
    /// An HTTP/1 client whose response no filter changes: an HTTP/1 upstream's response
    /// fields are passed to it as the upstream sent them, never put in a map.
    pub fields_as_sent: bool,
}

/// What came back, and the peer it came from (its in-flight guard lives as long as the
/// response body).
pub(crate) struct Answer {
    pub response: Response<UpstreamBody>,
    pub peer: Peer,
}

/// Sends a prepared request to a backend of a route with a retry policy, retrying as it
/// says. `takes`: as for [`send`].
pub(crate) async fn send_with_retries(
    proxy: &Proxy,
    client: &ClientConnection,
    route: &Route,
    policy: &RetryPolicy,
    parts: Box<Parts>,
    body: BodySlot,
    takes: ClientTakes,
) -> Result<Answer, ProxyError> {
    let mut retries_left = policy.attempts;
    let (mut backend, mut headers) = route.pick().ok_or_else(|| ProxyError::NoBackends)?;
    let mut parts = parts;
    let mut failed: Option<PeerAuthority> = None;
    loop {
        let replayable = body.is_replayable();
        // Copied before the backend's own header changes: a retry may go to another one.
        let spare = (retries_left > 0 && replayable).then(|| Box::new(clone_head(&parts)));
        if let Some(ops) = headers {
            ops.apply(&mut parts.headers);
        }
        let parts_method = parts.method.clone();
        let peer = match proxy.balancer.select(&proxy.state, backend, failed.as_ref()) {
            Ok(peer) => peer,
            // The only endpoint just failed: try it again rather than give up.
            Err(_) if failed.is_some() => proxy.balancer.select(&proxy.state, backend, None)?,
            Err(e) => return Err(e),
        };
        let result = attempt(proxy, client, route, &peer, parts, &body, takes)
            .await
            .map_err(|failed| failed.error);
        // A status or a response timeout means the upstream may have acted on the request:
        // only a request it may see twice is sent again, unless the route says otherwise.
        let may_resend = policy.non_idempotent || is_idempotent(&parts_method);
        let retry = match &result {
            Ok(response) => may_resend && policy.codes.contains(&response.status().as_u16()),
            Err(err) => {
                is_connect_failure(err) || (may_resend && matches!(err, ProxyError::ResponseTimeout { .. }))
            }
        };
        match spare {
            Some(head) if retry => {
                match &result {
                    Ok(response) => {
                        tracing::debug!(peer = %peer.authority, status = response.status().as_u16(), "retrying")
                    }
                    Err(err) => {
                        tracing::debug!(peer = %peer.authority, error = %err, "retrying");
                        proxy
                            .metrics()
                            .upstream_error(err.upstream_kind().unwrap_or("connect"));
                    }
                }
                drop(result);
                failed = Some(peer.authority.clone());
                drop(peer);
                retries_left -= 1;
                if !policy.backoff.is_zero() {
                    tokio::time::sleep(policy.backoff).await;
                }
                parts = head;
                (backend, headers) = route.pick().ok_or_else(|| ProxyError::NoBackends)?;
            }
            _ => {
                return Ok(Answer {
                    response: result?,
                    peer,
                });
            }
        }
    }
}

/// Sends a prepared request to a backend of a route without a retry policy: one attempt,
/// and the one connect retry of an idempotent request. `takes`: what the client takes of
/// the answer, which shapes the request and how the response is read.
///
/// A function returning an `async move` block, as the other steps a request awaits through
/// (see `Proxy::handle`).
pub(crate) fn send(
    proxy: &Proxy,
    client: &ClientConnection,
    route: &Route,
    mut parts: Box<Parts>,
    body: BodySlot,
    takes: ClientTakes,
) -> impl Future<Output = Result<Answer, ProxyError>> + Send {
    let picked = route.pick().map(|(backend, headers)| {
        if let Some(ops) = headers {
            ops.apply(&mut parts.headers);
        }
        backend
    });
    async move {
        let backend = picked.ok_or_else(|| ProxyError::NoBackends)?;
        let peer = proxy.balancer.select(&proxy.state, backend, None)?;
        // Only requests a server may see twice are retried (RFC 9110 §9.2.2), and only for
        // Service backends, where another endpoint may exist. A connect failure hands the
        // request back unsent, so nothing is copied for it in advance.
        let may_retry = matches!(backend, BackendRef::Service { .. }) && is_idempotent(&parts.method);
        // The attempt's outcome is taken apart in statements of their own: awaited inside a
        // `match` on it, the whole `Result` (a response's room, 288 bytes) would be kept in
        // this future across the second attempt's await, on every request.
        let (err, parts) = match attempt(proxy, client, route, &peer, parts, &body, takes).await {
            Ok(response) => return Ok(Answer { response, peer }),
            Err(Failed {
                error,
                unsent: Some(parts),
            }) if may_retry && is_connect_failure(&error) && body.is_untouched() => (error, parts),
            Err(failed) => return Err(failed.error),
        };
        tracing::debug!(peer = %peer.authority, error = %err, "connect failed; trying another endpoint");
        proxy
            .metrics()
            .upstream_error(err.upstream_kind().unwrap_or("connect"));
        let second = match proxy
            .balancer
            .select(&proxy.state, backend, Some(&peer.authority))
        {
            Ok(second) => second,
            // No other endpoint: the first failure is the answer.
            Err(_) => return Err(err),
        };
        drop(peer);
        let response = Box::pin(attempt(proxy, client, route, &second, parts, &body, takes))
            .await
            .map_err(|failed| failed.error)?;
        Ok(Answer {
            response,
            peer: second,
        })
    }
}

/// An attempt that failed: why, and the request head when none of it reached the upstream
/// (a connect failure), for another endpoint.
struct Failed {
    error: ProxyError,
    unsent: Option<Box<Parts>>,
}

fn attempt<'a>(
    proxy: &'a Proxy,
    client: &'a ClientConnection,
    route: &'a Route,
    peer: &'a Peer,
    mut parts: Box<Parts>,
    body: &BodySlot,
    takes: ClientTakes,
) -> impl Future<Output = Result<Response<UpstreamBody>, Failed>> + Send + 'a {
    let request = address_head(peer, &mut parts, takes.trailers).map(|()| (parts, body.attempt()));
    let timeout = route
        .timeouts
        .backend_request
        .unwrap_or(proxy.options.response_timeout);
    async move {
        let (head, body) = request.map_err(|error| Failed { error, unsent: None })?;
        // Boxed: the exchange's future is the largest part of a request's, and unboxed every
        // step above it (the timeout, this attempt, `send`, `Proxy::forward`, `Proxy::handle`)
        // copied it again when it was awaited, and the boxed request future held it whole.
        // One allocation costs fewer instructions than those copies (instructions.sh).
        match client
            .within(
                timeout,
                Box::pin(proxy.pool.send(peer, head, body, takes.fields_as_sent)),
            )
            .await
        {
            Some(Ok(response)) => Ok(response),
            Some(Err(failure)) => Err(Failed {
                error: classify(&peer.authority, failure.error),
                unsent: failure.unsent.map(|(head, _body)| head),
            }),
            None => Err(Failed {
                error: ProxyError::ResponseTimeout {
                    peer: peer.authority.to_string(),
                },
                unsent: None,
            }),
        }
    }
}

/// Puts a request head in the form its peer is spoken to in: HTTP/2 with an absolute URI,
/// or HTTP/1 with the origin form.
pub(crate) fn address_head(peer: &Peer, parts: &mut Parts, trailers: bool) -> Result<(), ProxyError> {
    if peer.h2c {
        // HTTP/2 carries the authority in the request (:authority), so the URI is absolute.
        parts.uri = upstream_uri(&peer.authority, peer.tls.is_some(), parts.uri.path_and_query())?;
        parts.version = http::Version::HTTP_2;
        if trailers {
            // The one TE value HTTP/2 allows, which gRPC servers require.
            parts
                .headers
                .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        }
    } else if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        // HTTP/1 sends the origin form; most clients sent that already, and their URI is
        // forwarded as it is.
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path);
    }
    Ok(())
}

pub(crate) fn classify(peer: &PeerAuthority, error: SendError) -> ProxyError {
    let peer = peer.to_string();
    match error {
        SendError::Connect(source) if timed_out(&source) => ProxyError::ConnectTimeout { peer },
        SendError::Connect(source) => ProxyError::Connect { peer, source },
        SendError::Upstream(source) => ProxyError::Upstream { peer, source },
        SendError::Tls(message) => ProxyError::UpstreamTls { peer, message },
    }
}

fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
        {
            return true;
        }
        next = e.source();
    }
    false
}

fn is_connect_failure(err: &ProxyError) -> bool {
    matches!(
        err,
        ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. }
    )
}

fn is_idempotent(method: &Method) -> bool {
    method.is_idempotent()
}

/// A copy of a request head for a second attempt. Extensions are not copied: they carry
/// the client connection's upgrade handle, which must not reach the upstream client.
pub(crate) fn clone_head(parts: &Parts) -> Parts {
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .version(parts.version);
    if let Some(headers) = builder.headers_mut() {
        *headers = parts.headers.clone();
    }
    let (parts, ()) = builder
        .body(())
        .expect("a head copied from a valid request is valid")
        .into_parts();
    parts
}

fn upstream_uri(peer: &PeerAuthority, tls: bool, path: Option<&PathAndQuery>) -> Result<Uri, ProxyError> {
    let path = path.map_or("/", PathAndQuery::as_str);
    let scheme = if tls { "https" } else { "http" };
    let uri = match peer {
        PeerAuthority::Endpoint(addr) => format!("{scheme}://{addr}{path}"),
        PeerAuthority::Static(authority) => format!("{scheme}://{authority}{path}"),
    };
    Uri::try_from(uri).map_err(|_| ProxyError::BadBackend(peer.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uri_keeps_path_and_query() {
        let peer = PeerAuthority::Endpoint(([127, 0, 0, 1], 8080).into());
        let pq = PathAndQuery::from_static("/a/b?c=d");
        assert_eq!(
            upstream_uri(&peer, false, Some(&pq)).expect("uri"),
            "http://127.0.0.1:8080/a/b?c=d"
        );
        let peer = PeerAuthority::Static("backend.local:80".into());
        assert_eq!(
            upstream_uri(&peer, false, None).expect("uri"),
            "http://backend.local:80/"
        );
    }

    #[test]
    fn only_idempotent_methods_are_retried() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }

    #[test]
    fn timeouts_are_found_in_the_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("connect")]
        struct Wrapper(#[source] io::Error);
        assert!(timed_out(&Wrapper(io::Error::new(
            io::ErrorKind::TimedOut,
            "slow"
        ))));
        assert!(!timed_out(&Wrapper(io::ErrorKind::ConnectionRefused.into())));
    }
}
