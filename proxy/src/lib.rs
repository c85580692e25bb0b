//! lockstep's reverse proxy: serves a route table swapped atomically on configuration change,
//! from RouterConfigs in Kubernetes (fleet mode) or a file (standalone mode).

pub mod endpoints;
pub mod fleet;
pub mod state;
