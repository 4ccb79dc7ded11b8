//! The MySQL/MariaDB dialect's SQL, written out. Table layout:
//! migrations/mysql/. The statements every dialect spells alike are in
//! `crate::sql`.
//!
//! Parameters are always bound, never formatted in: the only SQL built at run
//! time is the list of `?` placeholders in [`select_rules_for`].

use crate::sql::Sql;

/// Per connection: refuse over-long or mis-encoded data instead of letting a
/// non-strict server truncate it with a warning.
pub const STRICT_MODE: &str =
    "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES')";

pub(super) const SQL: Sql = Sql {
    begin_write: None,
    // It takes the version row's lock, so writers queue here and never
    // deadlock on each other.
    bump_version: "UPDATE policy_version SET version = version + 1 WHERE id = 1",
    // Applies to the connection's next transaction only: listings and
    // exports read one snapshot whatever the server's default isolation
    // level.
    before_read: Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
    begin_read: None,

    user_exists: "SELECT 1 FROM users WHERE username = ?",
    insert_user: "INSERT INTO users \
         (username, password_hash, enabled, superuser, created_at) \
         VALUES (?, ?, ?, ?, UNIX_TIMESTAMP())",
    now_seconds: "UNIX_TIMESTAMP()",
    numbered_params: false,
    // sqlx connects with CLIENT_FOUND_ROWS, so rows_affected counts matched
    // rows, not changed ones.
    update_user: "UPDATE users SET \
         password_hash = CASE WHEN ? THEN ? ELSE password_hash END, \
         enabled = COALESCE(?, enabled), \
         superuser = COALESCE(?, superuser) \
         WHERE username = ?",
    set_cert_fingerprint: "UPDATE users SET cert_fingerprint = ? WHERE username = ?",
    replace_password_hash:
        "UPDATE users SET password_hash = ? WHERE username = ? AND password_hash = ?",
    delete_user: "DELETE FROM users WHERE username = ?",
    delete_user_rules: "DELETE FROM rules WHERE subject_kind = 'user' AND subject_name = ?",

    role_exists: "SELECT 1 FROM roles WHERE name = ?",
    insert_role: "INSERT INTO roles (name) VALUES (?)",
    // Not `INSERT IGNORE`, which would also turn real errors into warnings.
    insert_role_if_missing: "INSERT INTO roles (name) VALUES (?) \
         ON DUPLICATE KEY UPDATE name = name",
    count_role_members: "SELECT COUNT(*) FROM memberships WHERE role = ?",
    delete_role: "DELETE FROM roles WHERE name = ?",
    delete_role_rules: "DELETE FROM rules WHERE subject_kind = 'role' AND subject_name = ?",

    membership_exists: "SELECT 1 FROM memberships WHERE role = ? AND username = ?",
    insert_membership: "INSERT INTO memberships (role, username) VALUES (?, ?)",
    delete_membership: "DELETE FROM memberships WHERE role = ? AND username = ?",

    insert_rule: "INSERT INTO rules \
         (effect, subject_kind, subject_name, actions, pattern, max_qos, retain) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    // InnoDB's AUTO_INCREMENT then continues above the largest id imported
    // (and never goes down, so deleted ids stay unused).
    insert_rule_with_id: "INSERT INTO rules \
         (effect, subject_kind, subject_name, actions, pattern, max_qos, retain, id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    delete_rule: "DELETE FROM rules WHERE id = ?",
    select_rules_by_subject: "SELECT id, effect, subject_kind, subject_name, \
         actions, pattern, max_qos, retain FROM rules \
         WHERE subject_kind = ? AND subject_name = ? ORDER BY id",
    after_import: None,
    insert_admin_change: "INSERT INTO admin_changes (at_ms, os_user, host, what) \
         VALUES (?, ?, ?, ?)",
    select_admin_changes: "SELECT id, at_ms, os_user, host, what FROM admin_changes \
         WHERE id > ? AND at_ms >= ? ORDER BY id",
};

/// The login path's user read in one round trip: one row per role (role
/// NULL when the user has none), roles in order.
pub const SELECT_USER_WITH_ROLES: &str = "SELECT u.username, u.password_hash, u.enabled, \
     u.superuser, u.cert_fingerprint, m.role FROM users u LEFT JOIN memberships m ON m.username = u.username \
     WHERE u.username = ? ORDER BY m.role";

const RULE_COLUMNS: &str =
    "SELECT id, effect, subject_kind, subject_name, actions, pattern, max_qos, retain FROM rules";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::queries::SELECT_RULES;

    #[test]
    fn rule_selects_share_the_column_list() {
        let columns = RULE_COLUMNS.trim_end_matches(" FROM rules");
        for sql in [SELECT_RULES, SQL.select_rules_by_subject] {
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
