//! Denied publishes in the log, per connection, without a line per message:
//! the first denial is logged whole (client, topic, verdict); after it at
//! most one line per [`EVERY`] with the count since, and a last one with
//! what is left when the connection ends. A client publishing where it may
//! not in a loop writes a line every few seconds, not one per PUBLISH.
//!
//! Every denial still goes to the audit log and the counters; only the
//! process log is thinned. The state lives in the connection's own handler
//! (no lock), made at the first denial: an allowed publish never sees it.

use std::fmt::Display;
use std::time::{Duration, Instant};

use super::Who;

/// At most one summary line per connection in this time.
pub const EVERY: Duration = Duration::from_secs(10);

/// One connection's denied publishes since its last log line.
#[derive(Debug)]
pub struct DeniedLog {
    /// When a line was last written.
    last_line: Instant,
    /// Denials not logged since.
    since: u64,
}

impl DeniedLog {
    /// The first denial of a connection: log it whole.
    pub fn first(who: Who<'_>, action: &'static str, topic: &str, verdict: &dyn Display) -> Self {
        tracing::info!(
            target: "warden::audit",
            client_id = who.client_id,
            username = who.username,
            action,
            topic,
            verdict = %verdict,
            "publish denied (further denials of this client are counted, one line per {}s)",
            EVERY.as_secs()
        );
        DeniedLog {
            last_line: Instant::now(),
            since: 0,
        }
    }

    /// A later denial: counted, and logged with the count when
    /// [`EVERY`] has passed since the last line.
    pub fn note(&mut self, who: Who<'_>, topic: &str) {
        self.since += 1;
        let now = Instant::now();
        if now.duration_since(self.last_line) >= EVERY {
            Self::summary(who.client_id, who.username, self.since, Some(topic));
            self.since = 0;
            self.last_line = now;
        }
    }

    /// The connection ended: log the denials not logged yet.
    pub fn finish(&mut self, client_id: &str, username: Option<&str>) {
        if self.since > 0 {
            Self::summary(client_id, username, self.since, None);
            self.since = 0;
        }
    }

    fn summary(client_id: &str, username: Option<&str>, count: u64, last_topic: Option<&str>) {
        tracing::info!(
            target: "warden::audit",
            client_id,
            username,
            count,
            last_topic,
            "publishes denied since the last line"
        );
    }
}
