//! The `warden` binary (being written).
fn main() {}
