//! The listening socket's one option beyond what tokio sets: `TCP_DEFER_ACCEPT`, so that a
//! connection reaches the accept loop with its first request already in it.
//!
//! Without it, a client's connection is handed over on the handshake's last ACK and its
//! request follows a moment later: the proxy wakes for the connection, registers it, goes
//! back to epoll and wakes again for the request. Deferred, the kernel holds the connection
//! until its first bytes arrive and one wake-up serves both. With nginx configured alike
//! (`listen ... deferred`), it cut nginx's sleeps per new-connection request from 0.9 to 0.16
//! and lockstep's from 0.8 to 0.16 (e2e/bench/cputime.sh; e2e/bench/RESULTS.md, "Data plane,
//! 2026-12-06 afternoon"). Every protocol served here (HTTP/1, HTTP/2 with prior knowledge,
//! TLS) has the client speak first, so nothing waits on the proxy to speak. The `setsockopt`
//! itself is in the `lockstep-sockopt` crate, which keeps the `unsafe` it needs out of this
//! one.

use std::{io, os::fd::AsFd};

/// How long, in seconds, the kernel holds a connection whose client has not spoken before
/// handing it over anyway (on the client's ACK of a SYN-ACK the kernel sends again then):
/// a silent client reaches the proxy about a second late, and from then on the head timeout
/// bounds it as before. HAProxy's `defer-accept` uses the same second; nginx's `deferred`
/// uses its header timeout, which would hold a silent connection twice as long in all.
const DEFER_ACCEPT_SECONDS: u32 = 1;

/// Defers accepting on `listener` until a client sends (see the module doc); a no-op where
/// the option does not exist.
pub(super) fn defer_accept(listener: &impl AsFd) -> io::Result<()> {
    lockstep_sockopt::defer_accept(listener, DEFER_ACCEPT_SECONDS)
}
