//! The SQLite dialect's SQL, written out. Table layout: migrations/sqlite/.
//!
//! Parameters are always bound, never formatted in. Rule rows use the column
//! order of `RULE_COLUMNS` so that one decoder reads them all.

pub const SELECT_VERSION: &str = "SELECT version FROM policy_version WHERE id = 1";

pub const BUMP_VERSION: &str = "UPDATE policy_version SET version = version + 1 WHERE id = 1";

pub const PING: &str = "SELECT 1";

pub const SELECT_USER: &str =
    "SELECT username, password_hash, enabled, superuser FROM users WHERE username = ?1";

pub const SELECT_USERS: &str =
    "SELECT username, password_hash, enabled, superuser FROM users ORDER BY username";

pub const SELECT_USER_ROLES: &str =
    "SELECT role FROM memberships WHERE username = ?1 ORDER BY role";

pub const SELECT_MEMBERSHIPS: &str =
    "SELECT role, username FROM memberships ORDER BY role, username";

pub const USER_EXISTS: &str = "SELECT 1 FROM users WHERE username = ?1";

pub const INSERT_USER: &str = "INSERT INTO users \
     (username, password_hash, enabled, superuser, created_at) \
     VALUES (?1, ?2, ?3, ?4, CAST(strftime('%s', 'now') AS INTEGER))";

/// ?1: whether to set the hash, ?2: the new hash (may be NULL),
/// ?3/?4: enabled/superuser or NULL to keep, ?5: username.
pub const UPDATE_USER: &str = "UPDATE users SET \
     password_hash = CASE WHEN ?1 THEN ?2 ELSE password_hash END, \
     enabled = COALESCE(?3, enabled), \
     superuser = COALESCE(?4, superuser) \
     WHERE username = ?5";

/// Memberships go with the user through ON DELETE CASCADE.
pub const DELETE_USER: &str = "DELETE FROM users WHERE username = ?1";

pub const DELETE_USER_RULES: &str =
    "DELETE FROM rules WHERE subject_kind = 'user' AND subject_name = ?1";

pub const SELECT_ROLES: &str = "SELECT name FROM roles ORDER BY name";

pub const ROLE_EXISTS: &str = "SELECT 1 FROM roles WHERE name = ?1";

pub const INSERT_ROLE: &str = "INSERT INTO roles (name) VALUES (?1)";

pub const INSERT_ROLE_IF_MISSING: &str =
    "INSERT INTO roles (name) VALUES (?1) ON CONFLICT (name) DO NOTHING";

pub const COUNT_ROLE_MEMBERS: &str = "SELECT COUNT(*) FROM memberships WHERE role = ?1";

pub const DELETE_ROLE: &str = "DELETE FROM roles WHERE name = ?1";

pub const DELETE_ROLE_RULES: &str =
    "DELETE FROM rules WHERE subject_kind = 'role' AND subject_name = ?1";

pub const MEMBERSHIP_EXISTS: &str = "SELECT 1 FROM memberships WHERE role = ?1 AND username = ?2";

pub const INSERT_MEMBERSHIP: &str = "INSERT INTO memberships (role, username) VALUES (?1, ?2)";

pub const DELETE_MEMBERSHIP: &str = "DELETE FROM memberships WHERE role = ?1 AND username = ?2";

pub const INSERT_RULE: &str = "INSERT INTO rules \
     (effect, subject_kind, subject_name, actions, pattern, max_qos, retain) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Import keeps ids; AUTOINCREMENT then continues above the largest one.
pub const INSERT_RULE_WITH_ID: &str = "INSERT INTO rules \
     (effect, subject_kind, subject_name, actions, pattern, max_qos, retain, id) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

pub const DELETE_RULE: &str = "DELETE FROM rules WHERE id = ?1";

pub const SELECT_RULES: &str = "SELECT id, effect, subject_kind, subject_name, actions, pattern, \
     max_qos, retain FROM rules ORDER BY id";

pub const SELECT_RULES_BY_SUBJECT: &str = "SELECT id, effect, subject_kind, subject_name, \
     actions, pattern, max_qos, retain FROM rules \
     WHERE subject_kind = ?1 AND subject_name = ?2 ORDER BY id";

/// ?1: username or NULL (anonymous: `= NULL` matches nothing),
/// ?2: the role names as a JSON array, expanded by json_each.
pub const SELECT_RULES_FOR: &str = "SELECT id, effect, subject_kind, subject_name, actions, \
     pattern, max_qos, retain FROM rules \
     WHERE subject_kind = 'everyone' \
        OR (subject_kind = 'user' AND subject_name = ?1) \
        OR (subject_kind = 'role' AND subject_name IN (SELECT value FROM json_each(?2))) \
     ORDER BY id";

/// Import clears in child-to-parent order.
pub const CLEAR_ALL: [&str; 4] = [
    "DELETE FROM rules",
    "DELETE FROM memberships",
    "DELETE FROM roles",
    "DELETE FROM users",
];
