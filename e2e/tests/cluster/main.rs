//! Everything that needs a real kube-apiserver but not a node, in one test binary: one
//! control plane (`ControlPlane::shared`) and one operator for all of it, started as deployed
//! (its own ServiceAccount and RBAC, least privilege). Tests stay apart by namespace and
//! fleet. Each topic is a module:
//! - [`foundation`]: the API features the barrier depends on;
//! - [`api`]: the RouterConfig API through real kubectl (admission, printer columns,
//!   `kubectl explain`);
//! - [`barrier`]: rollouts through real proxies, `kubectl wait` as the barrier;
//! - [`membership`]: joins, leaves, freezes, re-creates and dead sync loops;
//! - [`tls`]: TLS termination from Secrets, rotations covered by Ready;
//! - [`secrets`]: TLS material never leaks into logs, metrics or status;
//! - [`limits`]: a RouterConfig at the schema's size limits;
//! - [`h2spec`]: HTTP/2 conformance of the proxy, judged by h2spec.
//!
//! Kept apart, each with its own control plane: `restart` (restarts the control plane),
//! `gateway` (one test runs without the Gateway API CRDs), `deploy` and `helm` (installs),
//! `node` (a kubelet).

mod api;
mod barrier;
mod foundation;
mod h2spec;
mod limits;
mod membership;
mod secrets;
mod tls;

use lockstep_e2e::{
    fixture::{least_privilege_operator, shared_operator},
    fleet::Operator,
};

/// The one operator of this binary.
fn operator() -> &'static Operator {
    shared_operator(|cp| least_privilege_operator(cp, "lockstep-system", "operator"))
}
