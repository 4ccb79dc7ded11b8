//! The MySQL/MariaDB dialect's SQL, written out. Table layout:
//! migrations/mysql/.
//!
//! Parameters are always bound, never formatted in: the only SQL built at run
//! time is the list of `?` placeholders in [`select_rules_for`]. Rule rows use
//! the column order of `RULE_COLUMNS` so that one decoder reads them all.

/// Per connection: refuse over-long or mis-encoded data instead of letting a
/// non-strict server truncate it with a warning.
pub const STRICT_MODE: &str =
    "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES')";

pub const SELECT_VERSION: &str = "SELECT version FROM policy_version WHERE id = 1";

/// The first statement of every write transaction: it takes the version
/// row's lock, so writers queue here and never deadlock on each other.
pub const BUMP_VERSION: &str = "UPDATE policy_version SET version = version + 1 WHERE id = 1";

pub const PING: &str = "SELECT 1";

/// Applies to the connection's next transaction only: exports read one
/// snapshot whatever the server's default isolation level.
pub const SNAPSHOT_ISOLATION: &str = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// The login path's user read in one round trip: one row per role (role
/// NULL when the user has none), roles in order.
pub const SELECT_USER_WITH_ROLES: &str = "SELECT u.username, u.password_hash, u.enabled, \
     u.superuser, m.role FROM users u LEFT JOIN memberships m ON m.username = u.username \
     WHERE u.username = ? ORDER BY m.role";

pub const SELECT_USERS: &str =
    "SELECT username, password_hash, enabled, superuser FROM users ORDER BY username";

pub const SELECT_MEMBERSHIPS: &str =
    "SELECT role, username FROM memberships ORDER BY role, username";

pub const USER_EXISTS: &str = "SELECT 1 FROM users WHERE username = ?";

pub const INSERT_USER: &str = "INSERT INTO users \
     (username, password_hash, enabled, superuser, created_at) \
     VALUES (?, ?, ?, ?, UNIX_TIMESTAMP())";

/// Binds: whether to set the hash, the new hash (may be NULL),
/// enabled/superuser or NULL to keep, username. sqlx connects with
/// CLIENT_FOUND_ROWS, so rows_affected counts matched rows, not changed ones.
pub const UPDATE_USER: &str = "UPDATE users SET \
     password_hash = CASE WHEN ? THEN ? ELSE password_hash END, \
     enabled = COALESCE(?, enabled), \
     superuser = COALESCE(?, superuser) \
     WHERE username = ?";

/// Memberships go with the user through ON DELETE CASCADE.
pub const DELETE_USER: &str = "DELETE FROM users WHERE username = ?";

pub const DELETE_USER_RULES: &str =
    "DELETE FROM rules WHERE subject_kind = 'user' AND subject_name = ?";

pub const SELECT_ROLES: &str = "SELECT name FROM roles ORDER BY name";

pub const ROLE_EXISTS: &str = "SELECT 1 FROM roles WHERE name = ?";

pub const INSERT_ROLE: &str = "INSERT INTO roles (name) VALUES (?)";

/// Not `INSERT IGNORE`, which would also turn real errors into warnings.
pub const INSERT_ROLE_IF_MISSING: &str =
    "INSERT INTO roles (name) VALUES (?) ON DUPLICATE KEY UPDATE name = name";

pub const COUNT_ROLE_MEMBERS: &str = "SELECT COUNT(*) FROM memberships WHERE role = ?";

pub const DELETE_ROLE: &str = "DELETE FROM roles WHERE name = ?";

pub const DELETE_ROLE_RULES: &str =
    "DELETE FROM rules WHERE subject_kind = 'role' AND subject_name = ?";

pub const MEMBERSHIP_EXISTS: &str = "SELECT 1 FROM memberships WHERE role = ? AND username = ?";

pub const INSERT_MEMBERSHIP: &str = "INSERT INTO memberships (role, username) VALUES (?, ?)";

pub const DELETE_MEMBERSHIP: &str = "DELETE FROM memberships WHERE role = ? AND username = ?";

pub const INSERT_RULE: &str = "INSERT INTO rules \
     (effect, subject_kind, subject_name, actions, pattern, max_qos, retain) \
     VALUES (?, ?, ?, ?, ?, ?, ?)";

/// Import keeps ids; InnoDB's AUTO_INCREMENT then continues above the
/// largest one (and never goes down, so deleted ids stay unused).
pub const INSERT_RULE_WITH_ID: &str = "INSERT INTO rules \
     (effect, subject_kind, subject_name, actions, pattern, max_qos, retain, id) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

pub const DELETE_RULE: &str = "DELETE FROM rules WHERE id = ?";

const RULE_COLUMNS: &str =
    "SELECT id, effect, subject_kind, subject_name, actions, pattern, max_qos, retain FROM rules";

pub const SELECT_RULES: &str = "SELECT id, effect, subject_kind, subject_name, actions, \
     pattern, max_qos, retain FROM rules ORDER BY id";

pub const SELECT_RULES_BY_SUBJECT: &str = "SELECT id, effect, subject_kind, subject_name, \
     actions, pattern, max_qos, retain FROM rules \
     WHERE subject_kind = ? AND subject_name = ? ORDER BY id";

/// The rules of a user (bind the username, or NULL for an anonymous client:
/// `= NULL` matches nothing), of `roles` roles (bind each name), and of
/// everyone. With no roles the role clause is left out, since `IN ()` is not
/// valid SQL.
pub fn select_rules_for(roles: usize) -> String {
    let mut sql = String::with_capacity(RULE_COLUMNS.len() + 160 + 3 * roles);
    sql.push_str(RULE_COLUMNS);
    sql.push_str(
        " WHERE subject_kind = 'everyone' OR (subject_kind = 'user' AND subject_name = ?)",
    );
    if roles > 0 {
        sql.push_str(" OR (subject_kind = 'role' AND subject_name IN (?");
        sql.push_str(&",?".repeat(roles - 1));
        sql.push_str("))");
    }
    sql.push_str(" ORDER BY id");
    sql
}

/// Import clears in child-to-parent order.
pub const CLEAR_ALL: [&str; 4] = [
    "DELETE FROM rules",
    "DELETE FROM memberships",
    "DELETE FROM roles",
    "DELETE FROM users",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_selects_share_the_column_list() {
        let columns = RULE_COLUMNS.trim_end_matches(" FROM rules");
        for sql in [SELECT_RULES, SELECT_RULES_BY_SUBJECT] {
            assert!(sql.starts_with(columns), "{sql}");
        }
    }

    #[test]
    fn rules_for_has_one_placeholder_per_role() {
        assert_eq!(select_rules_for(0).matches('?').count(), 1);
        assert!(!select_rules_for(0).contains("IN ("));
        let sql = select_rules_for(3);
        assert_eq!(sql.matches('?').count(), 4);
        assert!(sql.contains("IN (?,?,?))"), "{sql}");
    }
}
