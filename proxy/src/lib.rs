//! lockstep's reverse proxy: serves a route table swapped atomically on configuration change,
//! from RouterConfigs in Kubernetes (fleet mode) or a file (standalone mode).
//!
//! The pieces, from the outside in: [`server`] accepts client connections and enforces
//! connection-level limits; [`proxy`] runs each request through route lookup, request
//! filter, peer selection, the upstream request and the response; [`state`] holds the served
//! table that [`fleet`] or [`standalone`] swap; [`admin`] and [`metrics`] show it all.

pub mod admin;
pub mod certs;
mod clock;
pub mod endpoints;
pub mod fleet;
pub mod forward;
pub mod http1;
pub mod metrics;
pub mod options;
pub mod server;
pub mod standalone;
pub mod state;

pub use forward::Proxy;
pub use options::{LoadBalancing, ProxyOptions};
pub use server::{Drained, Server, serve, serve_proxy, serve_tls, tls_acceptor};
