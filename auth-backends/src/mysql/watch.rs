//! MySQL's change feed. MySQL and MariaDB have no notifications a client can
//! subscribe to (short of reading the binlog as a replica), so the broker
//! polls `policy_version`, which every write transaction bumps in InnoDB
//! before it commits. One primary-key read per interval is cheap.

use std::time::Duration;

use crate::store::ChangeFeed;

/// Half the 1 s within which a running broker must notice a change.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub(super) fn feed() -> ChangeFeed {
    ChangeFeed::Poll(POLL_INTERVAL)
}
