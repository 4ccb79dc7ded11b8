//! The SQL that reads the same in every dialect, and [`Sql`], the statements
//! each dialect spells its own way (placeholders, upserts, how transactions
//! begin). Each backend's `queries.rs` fills in one `Sql`.
//!
//! Parameters are always bound, never formatted in. Rule rows are selected
//! with the columns of [`SELECT_RULES`], which `rows::rule` decodes.

pub const SELECT_VERSION: &str = "SELECT version FROM policy_version WHERE id = 1";

pub const PING: &str = "SELECT 1";

pub const SELECT_USERS: &str =
    "SELECT username, password_hash, enabled, superuser, cert_fingerprint FROM users \
     ORDER BY username";

pub const SELECT_ROLES: &str = "SELECT name FROM roles ORDER BY name";

pub const SELECT_MEMBERSHIPS: &str =
    "SELECT role, username FROM memberships ORDER BY role, username";

pub const SELECT_RULES: &str = "SELECT id, effect, subject_kind, subject_name, actions, pattern, \
     max_qos, retain FROM rules ORDER BY id";

/// Import clears in child-to-parent order. DELETE rather than TRUNCATE:
/// TRUNCATE takes an exclusive lock that would block concurrent readers.
pub const CLEAR_ALL: [&str; 4] = [
    "DELETE FROM rules",
    "DELETE FROM memberships",
    "DELETE FROM roles",
    "DELETE FROM users",
];

/// One dialect's statements. The parameters are listed in binding order.
#[derive(Debug)]
pub struct Sql {
    /// Opens a write transaction; `None` is the driver's plain BEGIN.
    pub begin_write: Option<&'static str>,
    /// The first statement of every write transaction: bumps the policy
    /// version, so that a failed write (rolled back) leaves it unchanged.
    pub bump_version: &'static str,
    /// Run on the connection before the read transaction of listings and
    /// exports begins.
    pub before_read: Option<&'static str>,
    /// Opens that read transaction; `None` is the driver's plain BEGIN.
    pub begin_read: Option<&'static str>,

    /// username
    pub user_exists: &'static str,
    /// username, password_hash, enabled, superuser; created_at is the
    /// server's clock.
    pub insert_user: &'static str,
    /// The server's clock in Unix seconds, as `insert_user` writes it into
    /// `created_at`; the import's multi-row inserts use it too.
    pub now_seconds: &'static str,
    /// Parameters are written `$1, $2, …` (PostgreSQL), not `?`: for the
    /// statements built at run time, the import's multi-row inserts.
    pub numbered_params: bool,
    /// whether to set the hash, the new hash (may be NULL), enabled and
    /// superuser (NULL keeps each), username.
    pub update_user: &'static str,
    /// cert_fingerprint (may be NULL), username.
    pub set_cert_fingerprint: &'static str,
    /// new hash, username, expected hash: the login rehash's
    /// compare-and-set, outside any write transaction (no version bump).
    pub replace_password_hash: &'static str,
    /// username. Memberships go with the user through ON DELETE CASCADE.
    pub delete_user: &'static str,
    /// username
    pub delete_user_rules: &'static str,

    /// name
    pub role_exists: &'static str,
    /// name
    pub insert_role: &'static str,
    /// name; a role that exists is left alone.
    pub insert_role_if_missing: &'static str,
    /// name
    pub count_role_members: &'static str,
    /// name
    pub delete_role: &'static str,
    /// name
    pub delete_role_rules: &'static str,

    /// role, username
    pub membership_exists: &'static str,
    /// role, username
    pub insert_membership: &'static str,
    /// role, username
    pub delete_membership: &'static str,

    /// effect, subject_kind, subject_name, actions, pattern, max_qos, retain;
    /// run by [`super::Dialect::insert_rule`], which returns the new id.
    pub insert_rule: &'static str,
    /// The same plus the id, for import, which keeps ids.
    pub insert_rule_with_id: &'static str,
    /// id
    pub delete_rule: &'static str,
    /// subject_kind, subject_name
    pub select_rules_by_subject: &'static str,
    /// Run at the end of an import, after the rules went in with their ids.
    pub after_import: Option<&'static str>,

    /// at_ms, os_user, host, what
    pub insert_admin_change: &'static str,
    /// after (id), since (at_ms); the columns of an admin change, by id.
    pub select_admin_changes: &'static str,
}
