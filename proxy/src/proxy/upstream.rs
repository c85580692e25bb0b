//! Phase 4, upstream request: sends the request to the chosen peer over a pooled keep-alive
//! connection, with the connect and response timeouts, and tries a second endpoint once
//! when the first could not be connected to and nothing of the request was sent.

use std::io;

use http::{Method, Request, Response, Uri, request::Parts, uri::PathAndQuery};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use lockstep_config::BackendRef;

use super::{
    Proxy,
    body::{BodySlot, RequestBody},
    error::ProxyError,
    peer::{Peer, PeerAuthority},
};
use crate::options::ProxyOptions;

/// The pooled upstream client.
pub(crate) type UpstreamClient = Client<HttpConnector, RequestBody>;

/// A client that keeps idle connections per upstream address for reuse.
pub(crate) fn client(options: &ProxyOptions) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(options.connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(options.upstream_idle_timeout)
        // A burst of concurrent requests opens as many upstream connections; keeping all of
        // them idle afterwards costs memory per connection for nothing (nginx keeps 128).
        .pool_max_idle_per_host(128)
        .build(connector)
}

/// What came back, and the peer it came from (its in-flight guard lives as long as the
/// response body).
pub(crate) struct Answer {
    pub response: Response<Incoming>,
    pub peer: Peer,
}

/// Sends a prepared request to the backend.
pub(crate) async fn send(
    proxy: &Proxy,
    backend: &BackendRef,
    parts: Parts,
    body: BodySlot,
) -> Result<Answer, ProxyError> {
    let peer = proxy.balancer.select(&proxy.state, backend, None)?;
    // Only requests a server may see twice are retried (RFC 9110 §9.2.2), and only for
    // Service backends, where another endpoint may exist.
    let may_retry = matches!(backend, BackendRef::Service { .. }) && is_idempotent(&parts.method);
    let spare = may_retry.then(|| clone_head(&parts));
    let first = attempt(proxy, &peer, parts, &body).await;
    match (first, spare) {
        (Err(err), Some(parts)) if is_connect_failure(&err) && body.is_untouched() => {
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
            let response = attempt(proxy, &second, parts, &body).await?;
            Ok(Answer {
                response,
                peer: second,
            })
        }
        (result, _) => Ok(Answer {
            response: result?,
            peer,
        }),
    }
}

async fn attempt(
    proxy: &Proxy,
    peer: &Peer,
    mut parts: Parts,
    body: &BodySlot,
) -> Result<Response<Incoming>, ProxyError> {
    parts.uri = upstream_uri(&peer.authority, parts.uri.path_and_query())?;
    let request = Request::from_parts(parts, body.attempt());
    let timeout = proxy.options.response_timeout;
    match tokio::time::timeout(timeout, proxy.client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(source)) => Err(classify(&peer.authority, source)),
        Err(_) => Err(ProxyError::ResponseTimeout {
            peer: peer.authority.to_string(),
        }),
    }
}

fn classify(peer: &PeerAuthority, source: hyper_util::client::legacy::Error) -> ProxyError {
    let peer = peer.to_string();
    if !source.is_connect() {
        return ProxyError::Upstream { peer, source };
    }
    if timed_out(&source) {
        ProxyError::ConnectTimeout { peer }
    } else {
        ProxyError::Connect { peer, source }
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
fn clone_head(parts: &Parts) -> Parts {
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

fn upstream_uri(peer: &PeerAuthority, path: Option<&PathAndQuery>) -> Result<Uri, ProxyError> {
    let path = path.map_or("/", PathAndQuery::as_str);
    let uri = match peer {
        PeerAuthority::Endpoint(addr) => format!("http://{addr}{path}"),
        PeerAuthority::Static(authority) => format!("http://{authority}{path}"),
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
            upstream_uri(&peer, Some(&pq)).expect("uri"),
            "http://127.0.0.1:8080/a/b?c=d"
        );
        let peer = PeerAuthority::Static("backend.local:80".into());
        assert_eq!(
            upstream_uri(&peer, None).expect("uri"),
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
