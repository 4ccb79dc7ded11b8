-- Admin changes (issue 12): one row per CLI write, saying who made it (the
-- operating-system user and host the CLI ran as and on), when (Unix
-- milliseconds, the CLI's clock) and what. `warden audit list` reads them;
-- the broker logs the rows it has not seen yet. Never holds a password hash.

CREATE TABLE admin_changes (
    id      BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at_ms   BIGINT NOT NULL,
    os_user TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    host    TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    what    TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    INDEX admin_changes_by_time (at_ms)
) ENGINE = InnoDB ROW_FORMAT = DYNAMIC DEFAULT CHARSET = utf8mb4;
