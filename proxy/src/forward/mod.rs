//! The request path, in the order a request goes through it:
//!
//! 1. [`route`]: the path normalised (dot segments, encoded unreserved characters, merged
//!    slashes; see `lockstep_core::path`), then route lookup in the served table by host,
//!    that path and request matches (404, 400, the 308 of a redirectHttp route, or a
//!    `filters.redirect`);
//! 2. [`filter`]: request filter (hop-by-hop headers out, X-Forwarded-* in, upgrades noted),
//!    then the route's rewrite and request header filter; copies to the route's mirrors
//!    ([`mirror`]);
//! 3. [`peer`]: upstream peer selection (a backend chosen by weight, load balancing over its
//!    ready endpoints, 503 if none);
//! 4. [`upstream`]: the upstream request (pooled connection, timeouts, retries; 502 and 504),
//!    all within the route's `timeouts.request` (504 when it passes first);
//! 5. response: hop-by-hop headers out, the route's response header filter, protocol
//!    switches tunnelled ([`upgrade`]), the body streamed back ([`body`]), metrics and the
//!    access log. An HTTP/1 upstream's response to an HTTP/1 client whose route changes no
//!    response field never has a field map: the upstream client keeps its end-to-end fields
//!    as the upstream sent them and the HTTP/1 server copies them ([`upstream::ClientTakes`]).
//!
//! The served configuration is loaded once per request, so a request that started on one
//! table finishes on it whatever swaps happen meanwhile.

pub mod body;
pub(crate) mod client;
pub mod error;
mod filter;
mod mirror;
mod peer;
mod pool;
pub(crate) mod request_body;
mod route;
mod tls;
mod upgrade;
mod upstream;

use std::{sync::Arc, time::Instant};

use http::{HeaderValue, Response, StatusCode, header, request::Parts};
use lockstep_core::{Route, cors::CorsPolicy};
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::task::TaskTracker;

use self::{
    body::ProxyBody,
    client::{ClientConnection, Transport},
    error::ProxyError,
    peer::{Balancer, EndpointGuard, PeerAuthority},
    pool::Pool,
    request_body::{BodySlot, ClientBody},
    upstream::ClientTakes,
};
use crate::{
    http1::upgrade::OnUpgrade,
    metrics::Metrics,
    options::ProxyOptions,
    state::{ProxyState, ServedConfig},
};

/// Everything the request path needs, shared by the connections of a listener.
#[derive(Debug)]
pub struct Proxy {
    state: Arc<ProxyState>,
    options: ProxyOptions,
    pool: Arc<Pool>,
    balancer: Balancer,
    tunnels: TaskTracker,
    /// Mirrored copies in flight ([`mirror::MAX_MIRRORS_IN_FLIGHT`] at most).
    mirror_permits: Arc<tokio::sync::Semaphore>,
}

/// Ends a request's accounting when dropped, which happens when its response body is done.
pub(crate) struct RequestGuard {
    client: Arc<ClientConnection>,
    in_flight: Gauge,
    _endpoint: Option<EndpointGuard>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.in_flight.dec();
        self.client.activity.request_finished();
    }
}

/// What one request went through, for metrics and the access log.
struct Exchange {
    route: Option<usize>,
    peer: Option<PeerAuthority>,
    endpoint: Option<EndpointGuard>,
}

/// What phase 1 found out about a request's head that phase 2 uses, so that it is not looked
/// up twice.
struct HeadFacts {
    /// The host the upstream request is for.
    host: filter::RequestHost,
    /// Which hop-by-hop fields the head carries.
    hop_by_hop: filter::HopByHop,
}

/// A route's CORS policy and the request headers its response headers depend on: boxed,
/// since a request future holds room for it whether the route has a policy or not.
type Cors<'a> = (&'a CorsPolicy, Box<http::HeaderMap>);

/// What phase 1 decided.
enum Routed<'a> {
    /// Answered without an upstream.
    Answered(Response<ProxyBody>),
    /// Proxied on `route`: phases 2 to 5, within the route's request timeout; `cors` is the
    /// route's CORS policy with the request headers its response headers depend on.
    Forward {
        route: &'a Route,
        facts: HeadFacts,
        cors: Option<Cors<'a>>,
    },
}

impl Proxy {
    /// A request path serving `state`'s table with these options.
    pub fn new(state: Arc<ProxyState>, options: ProxyOptions) -> Arc<Self> {
        Arc::new(Self {
            pool: Pool::new(&options),
            balancer: Balancer::new(options.load_balancing),
            state,
            options,
            tunnels: TaskTracker::new(),
            mirror_permits: mirror::permits(),
        })
    }

    /// The state whose table is served.
    pub fn state(&self) -> &Arc<ProxyState> {
        &self.state
    }

    /// The options in force.
    pub fn options(&self) -> &ProxyOptions {
        &self.options
    }

    /// The upgraded connections being tunnelled (a drain waits for them).
    pub(crate) fn tunnels(&self) -> &TaskTracker {
        &self.tunnels
    }

    fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// Answers one client request.
    ///
    /// Written as a function returning an `async move` block, as are the other steps a
    /// request awaits through: an `async fn` keeps each argument twice in its future (the
    /// argument and the local it is moved into), and every await copies the whole future of
    /// the step it awaits into its caller's. The request's future is boxed once per request,
    /// so its size is copied and allocated on every request.
    #[expect(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
    pub(crate) fn handle(
        self: Arc<Self>,
        client: Arc<ClientConnection>,
        mut head: Box<Parts>,
        body: ClientBody,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        async move {
            let start = Instant::now();
            client.activity.request_started();
            let in_flight = self.metrics().in_flight().clone();
            in_flight.inc();
            let serving = self.state.served_with_metrics();
            let served = &serving.config;
            // Boxed: only an access log needs it, and the future holds room for it.
            let log_head = self.options.access_log.then(|| {
                Box::new((
                    head.method.clone(),
                    head.uri.clone(),
                    head.headers.get(header::HOST).cloned(),
                ))
            });
            // Whether an HTTP/1 client may still be sending a body when an error is answered
            // (HTTP/2 frames each stream's body on its own).
            let http1 = head.version < http::Version::HTTP_2;
            let has_body = !http_body::Body::is_end_stream(&body);
            // A gRPC client reads errors from grpc-status, not from the HTTP status.
            let grpc = head
                .headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            let grpc_timeout = if grpc {
                filter::grpc_timeout(&head.headers)
            } else {
                None
            };

            let mut exchange = Exchange {
                route: None,
                peer: None,
                endpoint: None,
            };
            // Phase 1 decides without waiting; phases 2 to 5 are awaited here, not in a step
            // of their own (see above). Phase 1's outcome is taken apart in a statement of its
            // own: awaited inside a `match` on it, its whole `Result` (440 bytes) would be kept
            // in this future across the await.
            let result = 'routed: {
                let (route, facts, cors) = match self.route(served, &client, &mut head, &mut exchange) {
                    Ok(Routed::Answered(response)) => break 'routed Ok(response),
                    Ok(Routed::Forward { route, facts, cors }) => (route, facts, cors),
                    Err(error) => break 'routed Err(error),
                };
                let mut result = match route.timeouts.request {
                    None => {
                        self.forward(route, &client, (head, body), facts, &mut exchange, None)
                            .await
                    }
                    Some(limit) => {
                        let deadline = tokio::time::Instant::now() + limit;
                        tokio::time::timeout_at(
                            deadline,
                            self.forward(route, &client, (head, body), facts, &mut exchange, Some(deadline)),
                        )
                        .await
                        .unwrap_or_else(|_| Err(ProxyError::RequestTimeout(limit)))
                    }
                };
                // In place: `Result::map` would move the response out and back.
                if let (Ok(response), Some((policy, headers))) = (&mut result, &cors) {
                    policy.decorate(headers, response.headers_mut());
                }
                result
            };
            let mut response = match result {
                Ok(response) => response,
                Err(error) => {
                    let mut response = if grpc {
                        // The client's own deadline (grpc-timeout) has passed: whatever failed
                        // upstream (a server resets a stream whose deadline expired), the call
                        // ended because of it.
                        let expired = grpc_timeout
                            .is_some_and(|t| start.elapsed() + std::time::Duration::from_millis(10) >= t);
                        self.grpc_error_response(&error, expired)
                    } else {
                        self.error_response(&error)
                    };
                    if http1 && (error.is_framing_error() || has_body) {
                        // An unread body, or one whose length cannot be trusted: close after
                        // the answer rather than risk reading the body as the next request.
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    response
                }
            };

            let elapsed = start.elapsed();
            let status = response.status();
            serving
                .routes
                .route(exchange.route)
                .observe(status, elapsed.as_secs_f64());
            if let Some((method, uri, host)) = log_head.map(|logged| *logged) {
                let route = exchange
                    .route
                    .and_then(|i| served.table.routes().get(i))
                    .map(Route::label);
                tracing::info!(
                    target: "access",
                    client = %client.remote,
                    %method,
                    host = host.as_ref().and_then(|h| h.to_str().ok()).or(uri.host()).unwrap_or(""),
                    uri = %uri.path_and_query().map_or("/", |pq| pq.as_str()),
                    status = status.as_u16(),
                    route = route.as_deref().unwrap_or(""),
                    upstream = %exchange.peer.as_ref().map(ToString::to_string).unwrap_or_default(),
                    micros = elapsed.as_micros() as u64,
                );
            }
            let guard = RequestGuard {
                client,
                in_flight,
                _endpoint: exchange.endpoint.take(),
            };
            response.body_mut().keep(guard);
            response
        }
    }

    /// Phase 1, and the answers that need no upstream: refused framing, route lookup, the
    /// 308 of a redirectHttp route, a CORS preflight, a `filters.redirect`.
    fn route<'a>(
        &self,
        served: &'a ServedConfig,
        client: &ClientConnection,
        req: &mut Parts,
        exchange: &mut Exchange,
    ) -> Result<Routed<'a>, ProxyError> {
        // Which hop-by-hop fields the request carries, read once: without Transfer-Encoding,
        // Upgrade or TE (nearly every request) none of them is looked up, and phase 2's strip
        // reuses it. Nothing before phase 2 changes the headers.
        let hop_by_hop = filter::HopByHop::of(&req.headers);
        // Framing the upstream could not be told about is refused before anything else.
        if hop_by_hop.transfer_encoding() {
            filter::check_transfer_encoding(req)?;
        }
        // The HTTP/1 server drops the Content-Length of a head that also has
        // Transfer-Encoding and marks the request (RFC 9112 §6.1: refuse, and close the
        // connection).
        if req
            .extensions
            .get::<lockstep_core::http1::head::BothLengths>()
            .is_some()
        {
            return Err(ProxyError::BothLengthAndEncoding);
        }

        // Route lookup, by the path the upstream will be sent. On a TLS connection, a host
        // of another listener than the SNI name chose is not looked up: its routes are not
        // this connection's (nor its certificate or client validation).
        route::normalize_request_path(req)?;
        if let Transport::Tls { server_name } = &client.transport
            && self
                .state
                .certs
                .misdirected(server_name.as_deref(), route::request_host(req)?)
        {
            return Err(ProxyError::Misdirected);
        }
        let (found, host) = route::lookup(&served.table, client.scheme == "https", req)?;
        let route = found.route;
        exchange.route = Some(found.id as usize);
        if route.redirect_http && client.scheme == "http" {
            return route::https_redirect(req).map(Routed::Answered);
        }
        // CORS: a preflight is answered here; other requests' responses get its headers.
        let cors = route
            .filters
            .cors
            .as_ref()
            .map(|policy| (policy, Box::new(req.headers.clone())));
        if let Some((policy, headers)) = &cors
            && CorsPolicy::is_preflight(&req.method, headers)
        {
            let mut response = Response::new(ProxyBody::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            *response.headers_mut() = policy.preflight(headers);
            return Ok(Routed::Answered(response));
        }
        if let Some(redirect) = &route.filters.redirect {
            let mut response = route::filter_redirect(route, redirect, req, client.scheme)?;
            if let Some((policy, headers)) = &cors {
                policy.decorate(headers, response.headers_mut());
            }
            return Ok(Routed::Answered(response));
        }
        Ok(Routed::Forward {
            route,
            facts: HeadFacts { host, hop_by_hop },
            cors,
        })
    }

    /// Phases 2 to 5 of a request that is proxied.
    #[expect(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
    fn forward(
        &self,
        route: &Route,
        client: &Arc<ClientConnection>,
        (mut parts, body): (Box<Parts>, ClientBody),
        facts: HeadFacts,
        exchange: &mut Exchange,
        deadline: Option<tokio::time::Instant>,
    ) -> impl Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send {
        async move {
            // 2. Request filter.
            let protocol = if facts.hop_by_hop.upgrade() {
                filter::upgrade_protocol(&parts, |p| route.allows_upgrade(p))
            } else {
                None
            };
            // A protocol switch is one connection's: it is never copied.
            let mirrors = if protocol.is_none() {
                mirror::drawn(route)
            } else {
                Vec::new()
            };
            let client_upgrade = protocol
                .is_some()
                .then(|| parts.extensions.remove::<OnUpgrade>())
                .flatten();
            let takes = ClientTakes {
                trailers: facts.hop_by_hop.te() && filter::wants_trailers(&parts),
                // The response's fields reach the client as the upstream sent them unless
                // something here changes them (a filter or CORS) or the client speaks
                // HTTP/2 (hyper writes its head from a map).
                fields_as_sent: parts.version < http::Version::HTTP_2
                    && route.filters.response_headers.is_none()
                    && route.filters.cors.is_none(),
            };
            filter::prepare_request(
                &mut parts,
                facts.host,
                &client.forwarded_for,
                client.scheme,
                protocol,
                facts.hop_by_hop,
            );
            if let Some(rewrite) = &route.filters.rewrite {
                filter::rewrite(&mut parts, route, rewrite)?;
            }
            if let Some(ops) = &route.filters.request_headers {
                ops.apply(&mut parts.headers);
            }

            // 3 and 4. Peer selection and the upstream request.
            // A retry or a copy sends the body again: a small one is read whole first.
            let body = if route.retry.is_some() || !mirrors.is_empty() {
                BodySlot::buffer_small(body, client)
                    .await
                    .map_err(|_| ProxyError::BadFraming)?
            } else {
                BodySlot::new(body, client)
            };
            mirror::send(self, &mirrors, &parts, &body);
            let mut answer = match route.retry.as_ref().filter(|p| p.attempts > 0) {
                None => upstream::send(self, client, route, parts, body, takes).await?,
                // Boxed, as the rarer path: inline, every request's future would carry room
                // for it.
                Some(policy) => {
                    Box::pin(upstream::send_with_retries(
                        self, client, route, policy, parts, body, takes,
                    ))
                    .await?
                }
            };
            exchange.peer = Some(answer.peer.authority.clone());
            exchange.endpoint = answer.peer.guard;

            // 5. Response.
            // In place: moved out of `answer`, the response would be copied once more.
            let response = &mut answer.response;
            let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
            filter::prepare_response(response.headers_mut(), switching);
            if let Some(ops) = &route.filters.response_headers {
                ops.apply(response.headers_mut());
            }
            if switching {
                let Some(client_upgrade) = client_upgrade else {
                    // A 101 nobody asked for would leave client and upstream disagreeing about
                    // the connection's protocol.
                    return Err(ProxyError::BadBackend(format!(
                        "{} switched protocols unasked",
                        answer.peer.authority
                    )));
                };
                let Some(upstream_upgrade) = response.body_mut().take_upgrade() else {
                    return Err(ProxyError::BadBackend(format!(
                        "{} switched protocols over HTTP/2",
                        answer.peer.authority
                    )));
                };
                upgrade::tunnel(
                    &self.tunnels,
                    client_upgrade,
                    upstream_upgrade,
                    self.options.tunnel_idle_timeout,
                    self.state.clone(),
                );
            }
            Ok(answer.response.map(|body| match deadline {
                Some(deadline) if !switching => ProxyBody::upstream_until(body, deadline),
                _ => ProxyBody::upstream(body),
            }))
        }
    }

    /// The error as gRPC says it: a "trailers-only" answer (HTTP 200, no body, grpc-status
    /// and grpc-message in the one header block), with the gRPC code of the HTTP status
    /// (504: DEADLINE_EXCEEDED, 404: UNIMPLEMENTED, 502/503: UNAVAILABLE).
    fn grpc_error_response(&self, error: &ProxyError, deadline_passed: bool) -> Response<ProxyBody> {
        let status = self.error_response(error).status();
        let code = match status.as_u16() {
            _ if deadline_passed => "4",
            504 => "4",
            404 => "12",
            502 | 503 => "14",
            400 | 405 | 501 => "13",
            _ => "2",
        };
        let mut response = Response::new(ProxyBody::empty());
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static(code));
        if let Ok(message) = HeaderValue::try_from(format!("lockstep-proxy: {}", status.as_u16())) {
            headers.insert("grpc-message", message);
        }
        response
    }

    fn error_response(&self, error: &ProxyError) -> Response<ProxyBody> {
        let status = error.status();
        if let Some(kind) = error.upstream_kind() {
            self.metrics().upstream_error(kind);
            tracing::warn!(%error, status = status.as_u16(), "upstream failure");
        } else {
            tracing::debug!(%error, status = status.as_u16(), "request refused");
        }
        let reason = status.canonical_reason().unwrap_or("error");
        let mut response = Response::new(ProxyBody::full(format!("{} {reason}\n", status.as_u16())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::body::Http1Body;

    /// A request's future is allocated and copied once per request (the HTTP/1 server boxes
    /// it), and every await copies the future of the step it awaits into its caller's: its
    /// size is paid on every request. Measured in a release build (`-Zprint-type-sizes`):
    /// 4,104 bytes while the request head moved down the request path unboxed, 3,032 since.
    /// The test build lays futures out differently: 4,128 and 3,056 bytes there, and 3,168
    /// since phase 1 hands the request's host and hop-by-hop fields on with it (the lookups
    /// saved cost more than the bigger copies: instructions.sh, 1.4% fewer per request).
    /// Since the upstream exchange's future is boxed (`upstream::attempt`): 2,568 bytes in a
    /// release build, 2,584 in the test build. Since phase 1's outcome is taken apart before
    /// the await (its 440-byte `Result` was kept across it): 2,128 and 2,144. Since the head
    /// is boxed where it is parsed and every step takes the box (a request moved by value
    /// was kept whole, 272 bytes, by each future it passed through, even once moved on) and
    /// the access log's and CORS's parts are boxed: 1,448 and 1,464. Since the first
    /// attempt's outcome is taken apart before a second attempt is awaited: 1,152 in both
    /// (1,168 in the test build since an HTTP/1 upstream body is boxed).
    #[tokio::test]
    async fn a_request_s_future_stays_small() {
        let proxy = Proxy::new(ProxyState::new("test"), ProxyOptions::default());
        let client = Arc::new(ClientConnection::plain_for_tests());
        let (head, ()) = http::Request::new(()).into_parts();
        let future = proxy.handle(client, Box::new(head), ClientBody::Http1(Http1Body::empty()));
        let size = size_of_val(&future);
        assert!(size <= 1200, "{size} bytes");
    }
}
