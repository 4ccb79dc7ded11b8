//! The PostgreSQL dialect's SQL, written out. Table layout:
//! migrations/postgres/.
//!
//! Parameters are always bound, never formatted in. Rule rows use the column
//! order of `RULE_COLUMNS` so that one decoder reads them all.

/// The LISTEN/NOTIFY channel; the payload is the new version in decimal.
pub const CHANNEL: &str = "warden_policy";

pub const SELECT_VERSION: &str = "SELECT version FROM policy_version WHERE id = 1";

/// The first statement of every write transaction: it takes the version
/// row's lock (so writers run one at a time and checks such as "the role has
/// no members" cannot race), bumps the version and queues the notification.
/// A rollback undoes both; PostgreSQL sends the notification only at commit.
pub const BUMP_AND_NOTIFY: &str = "WITH bumped AS ( \
       UPDATE policy_version SET version = version + 1 WHERE id = 1 RETURNING version \
     ) SELECT pg_notify('warden_policy', version::text) FROM bumped";

pub const PING: &str = "SELECT 1";

/// The login path's user lookup: the user and its sorted roles in one
/// round trip.
pub const SELECT_USER_WITH_ROLES: &str = "SELECT u.username, u.password_hash, u.enabled, \
     u.superuser, \
     COALESCE(array_agg(m.role ORDER BY m.role) FILTER (WHERE m.role IS NOT NULL), '{}') \
       AS roles \
     FROM users u LEFT JOIN memberships m ON m.username = u.username \
     WHERE u.username = $1 GROUP BY u.username";

pub const SELECT_USERS: &str =
    "SELECT username, password_hash, enabled, superuser FROM users ORDER BY username";

pub const SELECT_MEMBERSHIPS: &str =
    "SELECT role, username FROM memberships ORDER BY role, username";

pub const USER_EXISTS: &str = "SELECT 1 FROM users WHERE username = $1";

pub const INSERT_USER: &str = "INSERT INTO users \
     (username, password_hash, enabled, superuser, created_at) \
     VALUES ($1, $2, $3, $4, CAST(EXTRACT(EPOCH FROM now()) AS BIGINT))";

/// $1: whether to set the hash, $2: the new hash (may be NULL),
/// $3/$4: enabled/superuser or NULL to keep, $5: username.
pub const UPDATE_USER: &str = "UPDATE users SET \
     password_hash = CASE WHEN $1 THEN $2 ELSE password_hash END, \
     enabled = COALESCE($3, enabled), \
     superuser = COALESCE($4, superuser) \
     WHERE username = $5";

/// Memberships go with the user through ON DELETE CASCADE.
pub const DELETE_USER: &str = "DELETE FROM users WHERE username = $1";

pub const DELETE_USER_RULES: &str =
    "DELETE FROM rules WHERE subject_kind = 'user' AND subject_name = $1";

pub const SELECT_ROLES: &str = "SELECT name FROM roles ORDER BY name";

pub const ROLE_EXISTS: &str = "SELECT 1 FROM roles WHERE name = $1";

pub const INSERT_ROLE: &str = "INSERT INTO roles (name) VALUES ($1)";

pub const INSERT_ROLE_IF_MISSING: &str =
    "INSERT INTO roles (name) VALUES ($1) ON CONFLICT (name) DO NOTHING";

pub const COUNT_ROLE_MEMBERS: &str = "SELECT COUNT(*) FROM memberships WHERE role = $1";

pub const DELETE_ROLE: &str = "DELETE FROM roles WHERE name = $1";

pub const DELETE_ROLE_RULES: &str =
    "DELETE FROM rules WHERE subject_kind = 'role' AND subject_name = $1";

pub const MEMBERSHIP_EXISTS: &str = "SELECT 1 FROM memberships WHERE role = $1 AND username = $2";

pub const INSERT_MEMBERSHIP: &str = "INSERT INTO memberships (role, username) VALUES ($1, $2)";

pub const DELETE_MEMBERSHIP: &str = "DELETE FROM memberships WHERE role = $1 AND username = $2";

pub const INSERT_RULE: &str = "INSERT INTO rules \
     (effect, subject_kind, subject_name, actions, pattern, max_qos, retain) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";

/// Import keeps ids; `ADVANCE_RULE_IDS` then moves the sequence past them.
pub const INSERT_RULE_WITH_ID: &str = "INSERT INTO rules \
     (effect, subject_kind, subject_name, actions, pattern, max_qos, retain, id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id";

/// The next generated id is above both the largest id in the table and
/// every id handed out before, so ids are never reused (as with SQLite's
/// AUTOINCREMENT). Sequences ignore rollbacks, which only ever skips ids.
pub const ADVANCE_RULE_IDS: &str = "SELECT setval(pg_get_serial_sequence('rules', 'id'), \
       GREATEST( \
         (SELECT COALESCE(MAX(id), 0) FROM rules), \
         (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM rules_id_seq) \
       ) + 1, false)";

pub const DELETE_RULE: &str = "DELETE FROM rules WHERE id = $1";

pub const SELECT_RULES: &str = "SELECT id, effect, subject_kind, subject_name, actions, pattern, \
     max_qos, retain FROM rules ORDER BY id";

pub const SELECT_RULES_BY_SUBJECT: &str = "SELECT id, effect, subject_kind, subject_name, \
     actions, pattern, max_qos, retain FROM rules \
     WHERE subject_kind = $1 AND subject_name = $2 ORDER BY id";

/// $1: username or NULL (anonymous: `= NULL` matches nothing),
/// $2: the role names as a TEXT[].
pub const SELECT_RULES_FOR: &str = "SELECT id, effect, subject_kind, subject_name, actions, \
     pattern, max_qos, retain FROM rules \
     WHERE subject_kind = 'everyone' \
        OR (subject_kind = 'user' AND subject_name = $1) \
        OR (subject_kind = 'role' AND subject_name = ANY($2)) \
     ORDER BY id";

/// Import clears in child-to-parent order. DELETE rather than TRUNCATE:
/// TRUNCATE takes an exclusive lock that would block concurrent readers.
pub const CLEAR_ALL: [&str; 4] = [
    "DELETE FROM rules",
    "DELETE FROM memberships",
    "DELETE FROM roles",
    "DELETE FROM users",
];
