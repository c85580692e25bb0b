//! lockstep-proxy binary.
fn main() {}
