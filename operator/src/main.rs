//! lockstep-operator binary.
fn main() {}
