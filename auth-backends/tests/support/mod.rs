//! Helpers shared by the backend test files (not the suite itself).
#![allow(dead_code)]

pub use warden_e2e::proxy;

/// A name unique to this test run, for databases, key prefixes and the like:
/// tests run in parallel against the same servers and must not collide.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos:x}", std::process::id())
}
