//! Route table benchmarks.
fn main() {}
