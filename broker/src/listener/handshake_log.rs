//! Failed TLS handshakes are logged at INFO with the peer and the reason
//! (no client certificate, an unknown CA, a revoked or expired certificate,
//! a client that is not speaking TLS), but at most [`PER_SECOND`] lines a
//! second for the whole process: a port scan or a fleet with an expired CA
//! must not flood the log. What was left out is counted in the next line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::ListenerError;

/// Lines per second, at most.
pub const PER_SECOND: u32 = 10;

struct Window {
    second: u64,
    used: u32,
}

static WINDOW: Mutex<Window> = Mutex::new(Window { second: 0, used: 0 });
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Whether a line may be written now.
fn admit(now_secs: u64) -> bool {
    let mut w = WINDOW.lock();
    if w.second != now_secs {
        w.second = now_secs;
        w.used = 0;
    }
    if w.used < PER_SECOND {
        w.used += 1;
        true
    } else {
        false
    }
}

/// Log one failed handshake (rate-limited, see the module docs).
pub fn handshake_failed(listener: &str, peer: SocketAddr, err: &ListenerError) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if !admit(now) {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let reason = match err {
        ListenerError::Handshake { source, .. } => source.to_string(),
        other => other.to_string(),
    };
    let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
    if suppressed > 0 {
        tracing::info!(listener, %peer, %reason, suppressed, "TLS handshake failed (and {suppressed} more not logged)");
    } else {
        tracing::info!(listener, %peer, %reason, "TLS handshake failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_per_second_lines_a_second() {
        // A second no other test uses.
        let second = 7;
        let allowed = (0..PER_SECOND * 3).filter(|_| admit(second)).count();
        assert_eq!(allowed, PER_SECOND as usize);
        assert!(admit(second + 1), "the next second starts afresh");
    }
}
