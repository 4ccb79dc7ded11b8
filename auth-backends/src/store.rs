//! The two store traits and the records they exchange.
//!
//! `Store` is the read side the broker uses; `AdminStore` adds the writes the
//! CLI makes. Both are object-safe (`Arc<dyn AdminStore>`) and domain-level:
//! no SQL rows leak through them, so every backend writes its own dialect.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use warden_policy::{PolicyVersion, Rule, RuleId, RuleSet, RuleSpec, Subject};

use crate::error::StoreError;

/// A user as the store holds it. `password_hash` is a PHC string; a user
/// without one can only log in with a client certificate.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    pub enabled: bool,
    pub superuser: bool,
    /// Role names, sorted.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The one client certificate this user may log in with: lower-case
    /// hex SHA-256 of its DER. `None`: any certificate (or none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_fingerprint: Option<String>,
}

// The hash never goes to a log line, not even through `{:?}`.
impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("password_hash", &redacted(&self.password_hash))
            .field("enabled", &self.enabled)
            .field("superuser", &self.superuser)
            .field("roles", &self.roles)
            .field("cert_fingerprint", &self.cert_fingerprint)
            .finish()
    }
}

fn redacted(hash: &Option<String>) -> &'static str {
    match hash {
        Some(_) => "<redacted>",
        None => "<none>",
    }
}

/// Whom to fetch rules for: the user (None for an anonymous client) and the
/// roles the caller has already looked up for that user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrincipalKey {
    pub username: Option<String>,
    pub roles: Vec<String>,
}

/// A user to create. Roles that do not exist yet are created with it.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub password_hash: Option<String>,
    pub superuser: bool,
    pub enabled: bool,
    pub roles: Vec<String>,
    /// See [`UserRecord::cert_fingerprint`].
    pub cert_fingerprint: Option<String>,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password_hash", &redacted(&self.password_hash))
            .field("superuser", &self.superuser)
            .field("enabled", &self.enabled)
            .field("roles", &self.roles)
            .field("cert_fingerprint", &self.cert_fingerprint)
            .finish()
    }
}

/// Changes to a user; `None` leaves a field as it is.
/// `password_hash: Some(None)` removes the password (certificate-only user).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub password_hash: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub superuser: Option<bool>,
    /// `Some(None)` removes the pin.
    pub cert_fingerprint: Option<Option<String>>,
}

impl UserPatch {
    pub fn is_empty(&self) -> bool {
        self.password_hash.is_none()
            && self.enabled.is_none()
            && self.superuser.is_none()
            && self.cert_fingerprint.is_none()
    }
}

impl std::fmt::Debug for UserPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPatch")
            .field("password_hash", &self.password_hash.as_ref().map(redacted))
            .field("enabled", &self.enabled)
            .field("superuser", &self.superuser)
            .field("cert_fingerprint", &self.cert_fingerprint)
            .finish()
    }
}

/// A role and its members (sorted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub name: String,
    pub members: Vec<String>,
}

/// Which rules `list_rules` returns; the default is all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleFilter {
    /// Only rules with exactly this subject.
    pub subject: Option<Subject>,
}

/// A user inside a [`PolicySnapshot`]; roles travel as `memberships`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotUser {
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    pub enabled: bool,
    pub superuser: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_fingerprint: Option<String>,
}

impl std::fmt::Debug for SnapshotUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotUser")
            .field("username", &self.username)
            .field("password_hash", &redacted(&self.password_hash))
            .field("enabled", &self.enabled)
            .field("superuser", &self.superuser)
            .field("cert_fingerprint", &self.cert_fingerprint)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub role: String,
    pub username: String,
}

/// The whole policy, for `export`/`import` (and YAML files). Every list is
/// sorted: users and roles by name, memberships by (role, user), rules by id,
/// so that two exports of the same policy are equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySnapshot {
    #[serde(default)]
    pub users: Vec<SnapshotUser>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub memberships: Vec<Membership>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One admin change made with the CLI: who made it (the operating-system
/// user and host the CLI ran as and on), when, and what. Recorded for every
/// CLI write; `warden audit list` shows them and the broker logs each one
/// it picks up. `what` never holds a password or a hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminChange {
    /// Increasing in the order the changes were recorded.
    pub id: u64,
    /// Unix time in milliseconds, by the clock of the machine the CLI ran on.
    pub at_ms: i64,
    pub user: String,
    pub host: String,
    pub what: String,
}

/// An admin change to record; the store gives it its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAdminChange {
    pub at_ms: i64,
    pub user: String,
    pub host: String,
    pub what: String,
}

/// Which admin changes to read: those with an id above `after` and a time
/// at or after `since_ms`, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeQuery {
    pub after: u64,
    pub since_ms: i64,
}

impl ChangeQuery {
    /// Every recorded change.
    pub const ALL: ChangeQuery = ChangeQuery {
        after: 0,
        since_ms: i64::MIN,
    };
}

/// What [`AdminStore::migrate`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Migrated {
    /// The steps applied now, in order (`0003 admin changes`).
    pub applied: Vec<String>,
    /// The schema version after it, for stores that number their schema.
    pub version: Option<u64>,
}

/// How a store tells the broker that the policy changed.
#[derive(Debug)]
pub enum ChangeFeed {
    /// Call [`Store::policy_version`] this often and compare.
    Poll(Duration),
    /// The store sends each new version as it is written.
    Push(mpsc::Receiver<PolicyVersion>),
}

/// The read side, used by the broker. Implementations keep no caches: every
/// call reads the store, and the broker decides what to cache.
#[async_trait]
pub trait Store: Send + Sync {
    /// "sqlite", "postgres", ...: for logs and metrics.
    fn backend(&self) -> &'static str;
    /// The user with its roles, or None if there is no such user.
    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    /// The rules whose subject is `key.username`, any of `key.roles`, or
    /// everyone, ordered by id. Rules of other users are never included.
    async fn rules_for(&self, key: &PrincipalKey) -> Result<RuleSet, StoreError>;
    /// The current policy version; it changes on every write.
    async fn policy_version(&self) -> Result<PolicyVersion, StoreError>;
    fn changes(&self) -> ChangeFeed;
    /// Health check: one round trip.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The recorded admin changes `query` selects, by id.
    async fn admin_changes(&self, query: ChangeQuery) -> Result<Vec<AdminChange>, StoreError>;

    /// Replace `username`'s password hash by `new_hash` only if the store
    /// still holds `expected` (compare-and-set, one statement or script):
    /// the broker's rehash of a foreign or weak hash after a successful
    /// login. `Ok(true)` when replaced; `Ok(false)` when the user is gone or
    /// its hash is no longer `expected` (another login rehashed it first, or
    /// an admin set a new password), which is not an error.
    ///
    /// Unlike the admin writes this does not move the policy version: the
    /// same passwords verify before and after, so no decision changes, and
    /// a fleet logging in after a migration must not make every broker
    /// recompile every client once per device.
    async fn replace_password_hash(
        &self,
        username: &str,
        expected: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError>;
}

/// The write side, used by the CLI. Every write runs in one transaction that
/// also bumps the policy version; a failed write changes nothing.
///
/// Semantics shared by all backends (the conformance suite checks them):
/// - a duplicate user, role or membership is `Conflict`; a missing one is
///   `NotFound`;
/// - `delete_user` also deletes the user's memberships and the rules whose
///   subject is `user:NAME`;
/// - `delete_role` is `Conflict` while the role has members (revoke them
///   first, so that no one loses a role's deny rules by accident); it
///   deletes the rules whose subject is `role:NAME`;
/// - `grant` and `create_user` create roles that do not exist yet;
/// - `add_rule` validates the spec (`Invalid`) and requires the user or role
///   it names to exist (`NotFound`); rule ids are never reused;
/// - `import` replaces everything, keeps rule ids, and bumps the version;
///   it leaves the recorded admin changes alone.
#[async_trait]
pub trait AdminStore: Store {
    /// Apply pending schema migrations; a no-op when up to date.
    async fn migrate(&self) -> Result<Migrated, StoreError>;
    async fn create_user(&self, user: NewUser) -> Result<(), StoreError>;
    async fn update_user(&self, username: &str, patch: UserPatch) -> Result<(), StoreError>;
    async fn delete_user(&self, username: &str) -> Result<(), StoreError>;
    /// All users, sorted by name.
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    async fn create_role(&self, name: &str) -> Result<(), StoreError>;
    async fn delete_role(&self, name: &str) -> Result<(), StoreError>;
    /// All roles with their members, sorted by name.
    async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError>;
    async fn grant(&self, role: &str, username: &str) -> Result<(), StoreError>;
    async fn revoke(&self, role: &str, username: &str) -> Result<(), StoreError>;
    async fn add_rule(&self, spec: RuleSpec) -> Result<RuleId, StoreError>;
    async fn remove_rule(&self, id: RuleId) -> Result<(), StoreError>;
    /// Rules matching the filter, ordered by id.
    async fn list_rules(&self, filter: RuleFilter) -> Result<Vec<Rule>, StoreError>;
    async fn export(&self) -> Result<PolicySnapshot, StoreError>;
    async fn import(&self, snapshot: PolicySnapshot) -> Result<(), StoreError>;
    /// Record an admin change. Like every write it bumps the policy version,
    /// so a broker that sees the version move reads the record too.
    async fn record_admin_change(&self, change: NewAdminChange) -> Result<(), StoreError>;
}

/// Longest accepted user or role name, in bytes (MQTT's string limit).
pub const MAX_NAME_LEN: usize = 65_535;

/// A user or role name: non-empty, at most [`MAX_NAME_LEN`] bytes, no
/// control characters. Stores call this before every write.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StoreError::invalid(field, "longer than 65535 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::invalid(field, "contains a control character"));
    }
    Ok(())
}

/// A certificate fingerprint as people write it (`AB:CD:…`, upper or lower
/// case, as `openssl x509 -fingerprint -sha256` prints it) in the stored
/// form: 64 lower-case hex digits. Stores call this before every write.
pub fn normalize_fingerprint(text: &str) -> Result<String, StoreError> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::invalid(
            "cert_fingerprint",
            "expected a SHA-256 fingerprint: 64 hex digits, colons allowed",
        ));
    }
    Ok(hex)
}

/// Check a snapshot before any of it is written: names valid and unique,
/// memberships and rule subjects naming existing users and roles, rules valid
/// and ids unique.
pub fn validate_snapshot(snapshot: &PolicySnapshot) -> Result<(), StoreError> {
    use std::collections::BTreeSet;
    let mut users = BTreeSet::new();
    for user in &snapshot.users {
        validate_name("users.username", &user.username)?;
        if let Some(pin) = &user.cert_fingerprint {
            if normalize_fingerprint(pin)? != *pin {
                return Err(StoreError::invalid(
                    "users.cert_fingerprint",
                    "must be 64 lower-case hex digits",
                ));
            }
        }
        if !users.insert(user.username.as_str()) {
            return Err(StoreError::invalid(
                "users",
                format!("{:?} appears twice", user.username),
            ));
        }
    }
    let mut roles = BTreeSet::new();
    for role in &snapshot.roles {
        validate_name("roles", role)?;
        if !roles.insert(role.as_str()) {
            return Err(StoreError::invalid(
                "roles",
                format!("{role:?} appears twice"),
            ));
        }
    }
    let mut members = BTreeSet::new();
    for m in &snapshot.memberships {
        if !roles.contains(m.role.as_str()) || !users.contains(m.username.as_str()) {
            return Err(StoreError::invalid(
                "memberships",
                format!("{}/{} names a missing user or role", m.role, m.username),
            ));
        }
        if !members.insert(m) {
            return Err(StoreError::invalid(
                "memberships",
                format!("{}/{} appears twice", m.role, m.username),
            ));
        }
    }
    let mut ids = BTreeSet::new();
    for rule in &snapshot.rules {
        rule.validate()?;
        if rule.id.0 == 0 || rule.id.0 > i64::MAX as u64 {
            return Err(StoreError::invalid(
                "rules",
                format!("id {} out of range", rule.id),
            ));
        }
        if !ids.insert(rule.id) {
            return Err(StoreError::invalid(
                "rules",
                format!("id {} appears twice", rule.id),
            ));
        }
        let known = match &rule.subject {
            Subject::User(name) => users.contains(name.as_str()),
            Subject::Role(name) => roles.contains(name.as_str()),
            Subject::Everyone => true,
        };
        if !known {
            return Err(StoreError::invalid(
                "rules",
                format!("rule {} names missing {}", rule.id, rule.subject),
            ));
        }
    }
    Ok(())
}
