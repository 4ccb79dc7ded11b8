//! SQLite's change feed: SQLite has no notifications across processes (the
//! CLI writes from another process), so the broker polls `policy_version`.

use std::time::Duration;

use crate::store::ChangeFeed;

/// Half the 1 s within which a running broker must notice a change.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub(super) fn feed() -> ChangeFeed {
    ChangeFeed::Poll(POLL_INTERVAL)
}
