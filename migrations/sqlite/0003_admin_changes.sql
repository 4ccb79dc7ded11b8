-- Admin changes (issue 12): one row per CLI write, saying who made it (the
-- operating-system user and host the CLI ran as and on), when (Unix
-- milliseconds, the CLI's clock) and what. `warden audit list` reads them;
-- the broker logs the rows it has not seen yet. Never holds a password hash.

CREATE TABLE admin_changes (
    -- AUTOINCREMENT: ids only grow, so "newer than the last seen id" holds.
    id      INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    os_user TEXT    NOT NULL,
    host    TEXT    NOT NULL,
    what    TEXT    NOT NULL
);

CREATE INDEX admin_changes_by_time ON admin_changes (at_ms);
