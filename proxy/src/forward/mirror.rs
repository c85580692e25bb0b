//! Request mirroring (a path's `filters.mirrors`, Gateway API's RequestMirror): a copy of
//! the request as the upstream gets it (after the rewrite and the request header filter,
//! before a backend's own header changes) goes to each mirror drawn for it, fire and forget.
//! The client's answer comes from the route's backend alone: a copy's answer is read and
//! dropped, and its failure or slowness is only logged (debug level), never waited for.
//!
//! Bounds, so mirroring cannot grow a replica's memory without limit:
//! - the copy carries the body the request path read whole, the same bytes, shared: none, or
//!   a Content-Length of at most [`MAX_BUFFERED_BODY`] (64 KiB). A longer or streamed body
//!   is not read ahead for a mirror, and its request is not copied (the client's request
//!   is proxied as usual);
//! - at most [`MAX_MIRRORS_IN_FLIGHT`] copies are in flight in the replica (so at most
//!   16 MiB of bodies held for them); past it a copy is not sent;
//! - a copy is given the response timeout (`--response-timeout`) for its whole exchange.

use std::sync::Arc;

use http::request::Parts;
use http_body_util::BodyExt;
use lockstep_core::{Route, traffic::MirrorRule};
use tokio::sync::Semaphore;

use super::{Proxy, request_body::BodySlot, upstream};

#[cfg(doc)]
use super::request_body::MAX_BUFFERED_BODY;

/// Most copies in flight in one replica.
pub(crate) const MAX_MIRRORS_IN_FLIGHT: usize = 256;

/// The replica's allowance of copies in flight.
pub(crate) fn permits() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_MIRRORS_IN_FLIGHT))
}

/// The mirrors this request is copied to: each draws on its own, at random.
pub(crate) fn drawn(route: &Route) -> Vec<&MirrorRule> {
    route
        .filters
        .mirrors
        .iter()
        .filter(|m| m.numerator >= m.denominator || rand::random_range(0..m.denominator) < m.numerator)
        .collect()
}

/// Sends a copy of the request (`parts` and the body of `body`) to each of `mirrors`, each
/// in a task of its own.
pub(crate) fn send(proxy: &Proxy, mirrors: &[&MirrorRule], parts: &Parts, body: &BodySlot) {
    if mirrors.is_empty() {
        return;
    }
    if !body.is_replayable() {
        tracing::debug!("request not mirrored: its body is streamed or longer than 64 KiB");
        return;
    }
    for mirror in mirrors {
        let Ok(permit) = proxy.mirror_permits.clone().try_acquire_owned() else {
            tracing::debug!(mirror = %mirror.backend, "request not mirrored: too many copies in flight");
            return;
        };
        let peer = match proxy.balancer.select(&proxy.state, &mirror.backend, None) {
            Ok(peer) => peer,
            Err(error) => {
                tracing::debug!(mirror = %mirror.backend, %error, "request not mirrored");
                continue;
            }
        };
        let mut head = Box::new(upstream::clone_head(parts));
        if let Err(error) = upstream::address_head(&peer, &mut head, false) {
            tracing::debug!(mirror = %mirror.backend, %error, "request not mirrored");
            continue;
        }
        let body = body.attempt();
        let pool = proxy.pool.clone();
        let limit = proxy.options.response_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let exchange = async {
                let response = pool
                    .send(&peer, head, body, false)
                    .await
                    .map_err(|failure| upstream::classify(&peer.authority, failure.error).to_string())?;
                // Read to its end, so that the pooled connection serves again.
                let status = response.status();
                response.into_body().collect().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(status)
            };
            match tokio::time::timeout(limit, exchange).await {
                Ok(Ok(status)) => {
                    tracing::debug!(peer = %peer.authority, status = status.as_u16(), "mirrored")
                }
                Ok(Err(error)) => tracing::debug!(peer = %peer.authority, %error, "mirror failed"),
                Err(_) => tracing::debug!(peer = %peer.authority, "mirror timed out"),
            }
        });
    }
}
