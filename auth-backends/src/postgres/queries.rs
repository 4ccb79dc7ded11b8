//! The PostgreSQL dialect's SQL, written out. Table layout:
//! migrations/postgres/. The statements every dialect spells alike are in
//! `crate::sql`.
//!
//! Parameters are always bound, never formatted in.

use crate::sql::Sql;

/// The LISTEN/NOTIFY channel; the payload is the new version in decimal.
pub const CHANNEL: &str = "warden_policy";

pub(super) const SQL: Sql = Sql {
    begin_write: None,
    // It takes the version row's lock (so writers run one at a time and
    // checks such as "the role has no members" cannot race), bumps the
    // version and queues the notification on `CHANNEL`. A rollback undoes
    // both; PostgreSQL sends the notification only at commit.
    bump_version: "WITH bumped AS ( \
           UPDATE policy_version SET version = version + 1 WHERE id = 1 RETURNING version \
         ) SELECT pg_notify('warden_policy', version::text) FROM bumped",
    before_read: None,
    // One snapshot for every statement of a listing or an export.
    begin_read: Some("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"),

    user_exists: "SELECT 1 FROM users WHERE username = $1",
    insert_user: "INSERT INTO users \
         (username, password_hash, enabled, superuser, created_at) \
         VALUES ($1, $2, $3, $4, CAST(EXTRACT(EPOCH FROM now()) AS BIGINT))",
    now_seconds: "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)",
    numbered_params: true,
    update_user: "UPDATE users SET \
         password_hash = CASE WHEN $1 THEN $2 ELSE password_hash END, \
         enabled = COALESCE($3, enabled), \
         superuser = COALESCE($4, superuser) \
         WHERE username = $5",
    set_cert_fingerprint: "UPDATE users SET cert_fingerprint = $1 WHERE username = $2",
    replace_password_hash:
        "UPDATE users SET password_hash = $1 WHERE username = $2 AND password_hash = $3",
    delete_user: "DELETE FROM users WHERE username = $1",
    delete_user_rules: "DELETE FROM rules WHERE subject_kind = 'user' AND subject_name = $1",

    role_exists: "SELECT 1 FROM roles WHERE name = $1",
    insert_role: "INSERT INTO roles (name) VALUES ($1)",
    insert_role_if_missing: "INSERT INTO roles (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
    count_role_members: "SELECT COUNT(*) FROM memberships WHERE role = $1",
    delete_role: "DELETE FROM roles WHERE name = $1",
    delete_role_rules: "DELETE FROM rules WHERE subject_kind = 'role' AND subject_name = $1",

    membership_exists: "SELECT 1 FROM memberships WHERE role = $1 AND username = $2",
    insert_membership: "INSERT INTO memberships (role, username) VALUES ($1, $2)",
    delete_membership: "DELETE FROM memberships WHERE role = $1 AND username = $2",

    insert_rule: "INSERT INTO rules \
         (effect, subject_kind, subject_name, actions, pattern, max_qos, retain) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    // `after_import` then moves the id sequence past the imported ids.
    insert_rule_with_id: "INSERT INTO rules \
         (effect, subject_kind, subject_name, actions, pattern, max_qos, retain, id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    delete_rule: "DELETE FROM rules WHERE id = $1",
    select_rules_by_subject: "SELECT id, effect, subject_kind, subject_name, \
         actions, pattern, max_qos, retain FROM rules \
         WHERE subject_kind = $1 AND subject_name = $2 ORDER BY id",
    // The next generated id is above both the largest id in the table and
    // every id handed out before, so ids are never reused (as with SQLite's
    // AUTOINCREMENT). Sequences ignore rollbacks, which only ever skips ids.
    after_import: Some(
        "SELECT setval(pg_get_serial_sequence('rules', 'id'), \
           GREATEST( \
             (SELECT COALESCE(MAX(id), 0) FROM rules), \
             (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END \
              FROM rules_id_seq) \
           ) + 1, false)",
    ),
    insert_admin_change: "INSERT INTO admin_changes (at_ms, os_user, host, what) \
         VALUES ($1, $2, $3, $4)",
    select_admin_changes: "SELECT id, at_ms, os_user, host, what FROM admin_changes \
         WHERE id > $1 AND at_ms >= $2 ORDER BY id",
};

/// The login path's user lookup: the user and its sorted roles in one
/// round trip.
pub const SELECT_USER_WITH_ROLES: &str = "SELECT u.username, u.password_hash, u.enabled, \
     u.superuser, u.cert_fingerprint, \
     COALESCE(array_agg(m.role ORDER BY m.role) FILTER (WHERE m.role IS NOT NULL), '{}') \
       AS roles \
     FROM users u LEFT JOIN memberships m ON m.username = u.username \
     WHERE u.username = $1 GROUP BY u.username";

/// $1: username or NULL (anonymous: `= NULL` matches nothing),
/// $2: the role names as a TEXT[].
pub const SELECT_RULES_FOR: &str = "SELECT id, effect, subject_kind, subject_name, actions, \
     pattern, max_qos, retain FROM rules \
     WHERE subject_kind = 'everyone' \
        OR (subject_kind = 'user' AND subject_name = $1) \
        OR (subject_kind = 'role' AND subject_name = ANY($2)) \
     ORDER BY id";
