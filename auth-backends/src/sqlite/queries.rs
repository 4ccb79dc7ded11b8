//! The SQLite dialect's SQL, written out. Table layout: migrations/sqlite/.
//! The statements every dialect spells alike are in `crate::sql`.
//!
//! Parameters are always bound, never formatted in.

use crate::sql::Sql;

pub(super) const SQL: Sql = Sql {
    // Take the write lock up front: a deferred transaction that reads first
    // and then writes can deadlock with another such writer.
    begin_write: Some("BEGIN IMMEDIATE"),
    bump_version: "UPDATE policy_version SET version = version + 1 WHERE id = 1",
    before_read: None,
    begin_read: None,

    user_exists: "SELECT 1 FROM users WHERE username = ?1",
    insert_user: "INSERT INTO users \
         (username, password_hash, enabled, superuser, created_at) \
         VALUES (?1, ?2, ?3, ?4, CAST(strftime('%s', 'now') AS INTEGER))",
    now_seconds: "CAST(strftime('%s', 'now') AS INTEGER)",
    numbered_params: false,
    update_user: "UPDATE users SET \
         password_hash = CASE WHEN ?1 THEN ?2 ELSE password_hash END, \
         enabled = COALESCE(?3, enabled), \
         superuser = COALESCE(?4, superuser) \
         WHERE username = ?5",
    set_cert_fingerprint: "UPDATE users SET cert_fingerprint = ?1 WHERE username = ?2",
    replace_password_hash:
        "UPDATE users SET password_hash = ? WHERE username = ? AND password_hash = ?",
    delete_user: "DELETE FROM users WHERE username = ?1",
    delete_user_rules: "DELETE FROM rules WHERE subject_kind = 'user' AND subject_name = ?1",

    role_exists: "SELECT 1 FROM roles WHERE name = ?1",
    insert_role: "INSERT INTO roles (name) VALUES (?1)",
    insert_role_if_missing: "INSERT INTO roles (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
    count_role_members: "SELECT COUNT(*) FROM memberships WHERE role = ?1",
    delete_role: "DELETE FROM roles WHERE name = ?1",
    delete_role_rules: "DELETE FROM rules WHERE subject_kind = 'role' AND subject_name = ?1",

    membership_exists: "SELECT 1 FROM memberships WHERE role = ?1 AND username = ?2",
    insert_membership: "INSERT INTO memberships (role, username) VALUES (?1, ?2)",
    delete_membership: "DELETE FROM memberships WHERE role = ?1 AND username = ?2",

    insert_rule: "INSERT INTO rules \
         (effect, subject_kind, subject_name, actions, pattern, max_qos, retain) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    // AUTOINCREMENT then continues above the largest id imported.
    insert_rule_with_id: "INSERT INTO rules \
         (effect, subject_kind, subject_name, actions, pattern, max_qos, retain, id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    delete_rule: "DELETE FROM rules WHERE id = ?1",
    select_rules_by_subject: "SELECT id, effect, subject_kind, subject_name, \
         actions, pattern, max_qos, retain FROM rules \
         WHERE subject_kind = ?1 AND subject_name = ?2 ORDER BY id",
    after_import: None,
    insert_admin_change: "INSERT INTO admin_changes (at_ms, os_user, host, what) \
         VALUES (?1, ?2, ?3, ?4)",
    select_admin_changes: "SELECT id, at_ms, os_user, host, what FROM admin_changes \
         WHERE id > ?1 AND at_ms >= ?2 ORDER BY id",
};

pub const SELECT_USER: &str =
    "SELECT username, password_hash, enabled, superuser, cert_fingerprint FROM users \
     WHERE username = ?1";

pub const SELECT_USER_ROLES: &str =
    "SELECT role FROM memberships WHERE username = ?1 ORDER BY role";

/// ?1: username or NULL (anonymous: `= NULL` matches nothing),
/// ?2: the role names as a JSON array, expanded by json_each.
pub const SELECT_RULES_FOR: &str = "SELECT id, effect, subject_kind, subject_name, actions, \
     pattern, max_qos, retain FROM rules \
     WHERE subject_kind = 'everyone' \
        OR (subject_kind = 'user' AND subject_name = ?1) \
        OR (subject_kind = 'role' AND subject_name IN (SELECT value FROM json_each(?2))) \
     ORDER BY id";
