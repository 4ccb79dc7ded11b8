//! The linger after a DISCONNECT with an error reason (0x93 receive maximum
//! exceeded, 0x95 packet too large, 0x82 protocol error …).
//!
//! A client that broke a rule is often still writing (the rest of a large
//! packet, more publishes). Closing a socket with unread input makes the
//! kernel answer with a reset, and the client's next write then fails with
//! "broken pipe" or "connection reset"; many clients report that and never
//! read the DISCONNECT that says why. So after the DISCONNECT (and the
//! half-close that follows it) the broker keeps reading and dropping the
//! client's input for a short while before it closes.
//!
//! Bounded three ways, so a flood of misbehaving clients cannot hold the
//! broker: at most [`LINGER`] per connection, at most [`LINGER_BYTES`] read,
//! and at most [`MAX_LINGERING`] connections lingering at once (beyond it,
//! a connection closes at once, as it did before). Input is read into a
//! stack buffer and dropped: a lingering connection holds no buffer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a connection lingers at most.
pub(crate) const LINGER: Duration = Duration::from_millis(1500);

/// Input read and dropped at most while lingering.
pub(crate) const LINGER_BYTES: usize = 256 * 1024;

/// Connections lingering at once, process-wide.
const MAX_LINGERING: usize = 1024;

/// Counted process-wide: the bound is on the process's sockets and tasks.
static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// A turn to linger; gives it back when dropped.
#[derive(Debug)]
pub(crate) struct Permit(());

impl Drop for Permit {
    fn drop(&mut self) {
        LINGERING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A turn to linger, or None when [`MAX_LINGERING`] connections already are.
pub(crate) fn permit() -> Option<Permit> {
    LINGERING
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < MAX_LINGERING).then_some(n + 1)
        })
        .ok()
        .map(|_| Permit(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_bounded_and_given_back() {
        // Other tests in this process do not linger (no sockets here).
        let held: Vec<Permit> = std::iter::from_fn(permit).take(MAX_LINGERING + 5).collect();
        assert!(held.len() <= MAX_LINGERING && held.len() > MAX_LINGERING / 2);
        assert!(permit().is_none());
        drop(held);
        assert!(permit().is_some());
    }
}
