//! The install manifests and the GitOps integrations, against the real apiserver (one
//! control plane for the binary; each topic is a module):
//! - [`manifests`]: `deploy/generated/` is current with the Helm chart it is rendered from;
//!   `kubectl apply --dry-run=server -k deploy/` accepts every object under the "restricted"
//!   Pod Security Standard and the Deployments, Services and budgets fit together;
//! - [`argocd`]: the Argo CD health check (`deploy/argocd/health.lua`, run in Lua 5.1 as Argo
//!   CD's gopher-lua runs it) judges RouterConfigs whose status was written by server-side
//!   apply as the operator writes it;
//! - [`grafana`]: the dashboard charts metrics the binaries register.

mod argocd;
mod grafana;
mod manifests;

use lockstep_e2e::repo_root;

/// A file of the repository as text.
fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}
