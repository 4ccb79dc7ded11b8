//! Verified-credential cache: a reconnect storm of known clients must not
//! cost one argon2 verification each.
//!
//! After a successful argon2 verification the broker remembers an HMAC-SHA256
//! tag of (username, password, stored PHC hash) under a key drawn at random
//! when the process starts, with a short TTL. A later login with the same
//! username, password and stored hash finds its tag and skips argon2. What is
//! kept cannot be reversed into a password (the key never leaves memory and
//! dies with the process), nothing is written to disk, and a password change
//! or a re-hash changes the PHC string and so misses the cache. The store is
//! still asked for the user on every login, so a disabled or removed user is
//! refused at once.
//!
//! Verifications that do run go through `verify.rs` (one per set of
//! credentials at a time, in a bounded queue).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

/// How long a verified login is remembered.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// At most this many remembered logins (each entry is ~50 bytes).
pub const DEFAULT_CAPACITY: usize = 200_000;

/// The HMAC tag of one login's credentials.
pub type Tag = [u8; 32];

pub struct CredentialCache {
    key: [u8; 32],
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<Tag, Instant>>,
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("ttl", &self.ttl)
            .field("entries", &self.entries.lock().len())
            .finish_non_exhaustive()
    }
}

impl Default for CredentialCache {
    fn default() -> Self {
        Self::new(DEFAULT_TTL, DEFAULT_CAPACITY)
    }
}

impl CredentialCache {
    pub fn new(ttl: Duration, capacity: usize) -> CredentialCache {
        CredentialCache {
            key: rand::random(),
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The tag of these credentials (also the key of a shared verification).
    pub fn tag(&self, username: &str, password: &[u8], phc: &str) -> Tag {
        // An HMAC key of any length is accepted, so this cannot fail; the
        // fallback keeps the function total without a panic path.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return [0; 32];
        };
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        for part in [username.as_bytes(), password, phc.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether this exact login was verified within the TTL.
    pub fn contains(&self, username: &str, password: &[u8], phc: &str) -> bool {
        let tag = self.tag(username, password, phc);
        let now = Instant::now();
        self.entries
            .lock()
            .get(&tag)
            .is_some_and(|&until| until > now)
    }

    /// Remember a login argon2 has just verified.
    pub fn insert(&self, username: &str, password: &[u8], phc: &str) {
        let tag = self.tag(username, password, phc);
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, until| *until > now);
            if entries.len() >= self.capacity {
                // Still full of live entries: start over rather than grow.
                entries.clear();
            }
        }
        entries.insert(tag, now + self.ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_exactly_the_verified_login() {
        let cache = CredentialCache::default();
        cache.insert("alice", b"pw", "$argon2id$a");
        assert!(cache.contains("alice", b"pw", "$argon2id$a"));
        assert!(
            !cache.contains("alice", b"pw2", "$argon2id$a"),
            "other password"
        );
        assert!(
            !cache.contains("alice", b"pw", "$argon2id$b"),
            "password changed"
        );
        assert!(!cache.contains("bob", b"pw", "$argon2id$a"), "other user");
        assert!(
            !cache.contains("alicep", b"w", "$argon2id$a"),
            "boundaries kept"
        );
    }

    #[test]
    fn entries_expire() {
        let cache = CredentialCache::new(Duration::ZERO, 10);
        cache.insert("alice", b"pw", "h");
        assert!(!cache.contains("alice", b"pw", "h"));
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = CredentialCache::new(DEFAULT_TTL, 3);
        for i in 0..10 {
            cache.insert(&format!("u{i}"), b"pw", "h");
        }
        assert!(cache.entries.lock().len() <= 3);
        assert!(cache.contains("u9", b"pw", "h"), "the newest is kept");
    }

    #[test]
    fn two_processes_do_not_share_tags() {
        let a = CredentialCache::default();
        let b = CredentialCache::default();
        assert_ne!(a.tag("alice", b"pw", "h"), b.tag("alice", b"pw", "h"));
    }
}
