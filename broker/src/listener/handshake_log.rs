//! Failed handshakes (TLS, or the WebSocket upgrade) are logged at INFO
//! with the peer and the reason, so an operator can see why a device does
//! not get in; at most [`BURST`] lines per listener in [`WINDOW`], so a
//! scanner or a broken fleet cannot flood the log. What was left out is
//! counted and the count goes with the next line that is written.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::ListenerError;

const WINDOW: Duration = Duration::from_secs(10);
const BURST: u32 = 10;

#[derive(Debug, Default)]
pub(super) struct FailureLog {
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    logged: u32,
    /// Failures not logged since the last line that was.
    suppressed: u64,
}

impl Window {
    /// `Some(n)`: write a line now, mentioning `n` left out before it.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        let expired = match self.start {
            Some(s) => now.duration_since(s) >= WINDOW,
            None => true,
        };
        if expired {
            self.start = Some(now);
            self.logged = 0;
        }
        if self.logged >= BURST {
            self.suppressed += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl FailureLog {
    pub(super) fn record(&self, listener: &str, peer: SocketAddr, err: &ListenerError) {
        let Some(suppressed) = self.state.lock().admit(Instant::now()) else {
            return;
        };
        let reason = err.reason();
        if suppressed > 0 {
            tracing::info!(%listener, %peer, suppressed, "handshake failed: {reason} ({suppressed} earlier failures not logged)");
        } else {
            tracing::info!(%listener, %peer, "handshake failed: {reason}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_logged_then_counted() {
        let mut w = Window::default();
        let t0 = Instant::now();
        for _ in 0..BURST {
            assert_eq!(w.admit(t0), Some(0));
        }
        assert_eq!(w.admit(t0), None);
        assert_eq!(w.admit(t0 + Duration::from_secs(1)), None);
        assert_eq!(w.admit(t0 + WINDOW), Some(2));
        assert_eq!(w.admit(t0 + WINDOW), Some(0));
    }
}
