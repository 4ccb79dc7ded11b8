//! The order of two connections of one client id on two nodes: a hybrid
//! logical clock. A stamp is the wall clock in milliseconds, but never less
//! than one more than any stamp this node made or saw in another node's
//! claim. A connection made after its node heard of another one's claim is
//! therefore newer than it whatever the nodes' clocks say; two that did
//! not hear of each other (simultaneous) are ordered by their stamps, then
//! by node id, the same way on both nodes. The newer one keeps the client
//! id, as on a single node.

use std::sync::atomic::{AtomicU64, Ordering};

/// This node's clock.
#[derive(Debug, Default)]
pub struct ClaimClock {
    last: AtomicU64,
}

impl ClaimClock {
    /// A stamp for a connection made now (`now_ms`: the wall clock).
    pub fn stamp(&self, now_ms: u64) -> u64 {
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = now_ms.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Another node's claim carried `stamp`.
    pub fn observe(&self, stamp: u64) {
        self.last.fetch_max(stamp, Ordering::Relaxed);
    }
}

/// Connection `a` (stamp, node) is newer than `b`.
pub fn newer(a: (u64, &str), b: (u64, &str)) -> bool {
    a > b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_grow_and_follow_what_was_seen() {
        let c = ClaimClock::default();
        assert_eq!(c.stamp(100), 100);
        // The wall clock went back, or two in one millisecond: still more.
        assert_eq!(c.stamp(100), 101);
        assert_eq!(c.stamp(50), 102);
        // Another node's clock is ahead: what this node makes next is newer
        // than what it saw.
        c.observe(5_000);
        assert_eq!(c.stamp(200), 5_001);
        c.observe(10);
        assert_eq!(c.stamp(6_000), 6_000);
    }

    #[test]
    fn simultaneous_claims_are_ordered_alike_on_both_nodes() {
        // The same stamp on two nodes: the node id decides, and each node
        // comes to the opposite answer about the other's connection.
        assert!(newer((7, "n2"), (7, "n1")));
        assert!(!newer((7, "n1"), (7, "n2")));
        assert!(newer((8, "n1"), (7, "n2")));
        assert!(!newer((7, "n1"), (7, "n1")));
    }
}
