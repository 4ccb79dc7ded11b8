//! Every CLI write leaves a record of who made it: [`AuditedStore`] wraps
//! the store the admin commands write through, and after each write that
//! succeeded records one [`NewAdminChange`] (the operating-system user and
//! host of this process, the time, and what changed). The store bumps the
//! policy version with it, so a running broker picks the record up and logs
//! it. The description never holds a password or a hash.
//!
//! The record is a second transaction after the change: if it cannot be
//! written (an old schema: `warden migrate`), the command fails and says the
//! change itself was made.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use warden_auth::{
    AdminChange, AdminStore, ChangeFeed, ChangeQuery, Migrated, NewAdminChange, NewUser,
    PolicySnapshot, PrincipalKey, RoleRecord, RuleFilter, Store, StoreError, UserPatch, UserRecord,
};
use warden_policy::{PolicyVersion, Rule, RuleId, RuleSet, RuleSpec};

use super::acl::{actions_str, effect_str};

/// Who is running this CLI: the operating-system user (and the one behind
/// `sudo`, when there is one) and the host name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub user: String,
    pub host: String,
}

impl Actor {
    pub fn current() -> Actor {
        let mut user = whoami::username();
        if let Ok(sudo) = std::env::var("SUDO_USER") {
            if !sudo.is_empty() && sudo != user {
                user = format!("{user} (sudo by {sudo})");
            }
        }
        let host = whoami::fallible::hostname().unwrap_or_else(|_| "unknown".to_owned());
        Actor { user, host }
    }

    /// The record of `what`, made now.
    pub fn change(&self, what: String) -> NewAdminChange {
        NewAdminChange {
            at_ms: now_ms(),
            user: self.user.clone(),
            host: self.host.clone(),
            what,
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Records what was changed after a write; the error says the change stands.
pub async fn record(store: &dyn AdminStore, actor: &Actor, what: String) -> Result<(), StoreError> {
    store.record_admin_change(actor.change(what)).await
}

/// A store whose writes are recorded as admin changes.
pub struct AuditedStore {
    inner: Arc<dyn AdminStore>,
    actor: Actor,
}

impl AuditedStore {
    pub fn new(inner: Arc<dyn AdminStore>, actor: Actor) -> AuditedStore {
        AuditedStore { inner, actor }
    }

    /// Passes the write's result on, after recording `what` if it succeeded.
    async fn after<T>(
        &self,
        result: Result<T, StoreError>,
        what: impl FnOnce(&T) -> String,
    ) -> Result<T, StoreError> {
        let out = result?;
        record(&*self.inner, &self.actor, what(&out))
            .await
            .map_err(|err| StoreError::Unrecorded(Box::new(err)))?;
        Ok(out)
    }
}

/// A rule as one line: `allow publish,subscribe user:alice "a/#" max_qos=1`.
pub fn describe_rule(spec: &RuleSpec) -> String {
    let mut text = format!(
        "{} {} {} {:?}",
        effect_str(spec.effect),
        actions_str(spec.actions),
        spec.subject,
        spec.pattern
    );
    if let Some(qos) = spec.max_qos {
        text.push_str(&format!(" max_qos={qos}"));
    }
    if let Some(retain) = spec.retain {
        text.push_str(&format!(" retain={retain}"));
    }
    text
}

fn describe_new_user(user: &NewUser) -> String {
    let mut text = format!("user add {}", user.username);
    if !user.roles.is_empty() {
        text.push_str(&format!(" roles={}", user.roles.join(",")));
    }
    if user.password_hash.is_none() {
        text.push_str(" no-password");
    }
    if user.superuser {
        text.push_str(" superuser");
    }
    if !user.enabled {
        text.push_str(" disabled");
    }
    if user.cert_fingerprint.is_some() {
        text.push_str(" pinned");
    }
    text
}

fn describe_patch(username: &str, patch: &UserPatch) -> String {
    let mut parts = Vec::new();
    match &patch.password_hash {
        Some(Some(_)) => parts.push("password set".to_owned()),
        Some(None) => parts.push("password removed".to_owned()),
        None => {}
    }
    if let Some(enabled) = patch.enabled {
        parts.push(if enabled { "enabled" } else { "disabled" }.to_owned());
    }
    if let Some(superuser) = patch.superuser {
        parts.push(format!("superuser={superuser}"));
    }
    match &patch.cert_fingerprint {
        Some(Some(pin)) => parts.push(format!("pinned to {pin}")),
        Some(None) => parts.push("pin removed".to_owned()),
        None => {}
    }
    if parts.is_empty() {
        parts.push("nothing".to_owned());
    }
    format!("user update {username}: {}", parts.join(", "))
}

#[async_trait]
impl Store for AuditedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.inner.user(username).await
    }
    async fn rules_for(&self, key: &PrincipalKey) -> Result<RuleSet, StoreError> {
        self.inner.rules_for(key).await
    }
    async fn policy_version(&self) -> Result<PolicyVersion, StoreError> {
        self.inner.policy_version().await
    }
    fn changes(&self) -> ChangeFeed {
        self.inner.changes()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn admin_changes(&self, query: ChangeQuery) -> Result<Vec<AdminChange>, StoreError> {
        self.inner.admin_changes(query).await
    }
    async fn replace_password_hash(
        &self,
        username: &str,
        expected: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .replace_password_hash(username, expected, new_hash)
            .await
    }
}

#[async_trait]
impl AdminStore for AuditedStore {
    async fn migrate(&self) -> Result<Migrated, StoreError> {
        self.inner.migrate().await
    }
    async fn create_user(&self, user: NewUser) -> Result<(), StoreError> {
        let what = describe_new_user(&user);
        self.after(self.inner.create_user(user).await, |_| what)
            .await
    }
    async fn update_user(&self, username: &str, patch: UserPatch) -> Result<(), StoreError> {
        let what = describe_patch(username, &patch);
        self.after(self.inner.update_user(username, patch).await, |_| what)
            .await
    }
    async fn delete_user(&self, username: &str) -> Result<(), StoreError> {
        self.after(self.inner.delete_user(username).await, |_| {
            format!("user remove {username}")
        })
        .await
    }
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.inner.list_users().await
    }
    async fn create_role(&self, name: &str) -> Result<(), StoreError> {
        self.after(self.inner.create_role(name).await, |_| {
            format!("role add {name}")
        })
        .await
    }
    async fn delete_role(&self, name: &str) -> Result<(), StoreError> {
        self.after(self.inner.delete_role(name).await, |_| {
            format!("role remove {name}")
        })
        .await
    }
    async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        self.inner.list_roles().await
    }
    async fn grant(&self, role: &str, username: &str) -> Result<(), StoreError> {
        self.after(self.inner.grant(role, username).await, |_| {
            format!("role grant {role} {username}")
        })
        .await
    }
    async fn revoke(&self, role: &str, username: &str) -> Result<(), StoreError> {
        self.after(self.inner.revoke(role, username).await, |_| {
            format!("role revoke {role} {username}")
        })
        .await
    }
    async fn add_rule(&self, spec: RuleSpec) -> Result<RuleId, StoreError> {
        let rule = describe_rule(&spec);
        self.after(self.inner.add_rule(spec).await, |id| {
            format!("acl add {id}: {rule}")
        })
        .await
    }
    async fn remove_rule(&self, id: RuleId) -> Result<(), StoreError> {
        // Read first, so that the record says what the removed rule allowed.
        let before = self
            .inner
            .list_rules(RuleFilter::default())
            .await
            .ok()
            .and_then(|rules| rules.into_iter().find(|r| r.id == id));
        self.after(self.inner.remove_rule(id).await, |()| match before {
            Some(rule) => format!("acl remove {id}: {}", describe_rule(&Rule::spec(&rule))),
            None => format!("acl remove {id}"),
        })
        .await
    }
    async fn list_rules(&self, filter: RuleFilter) -> Result<Vec<Rule>, StoreError> {
        self.inner.list_rules(filter).await
    }
    async fn export(&self) -> Result<PolicySnapshot, StoreError> {
        self.inner.export().await
    }
    async fn import(&self, snapshot: PolicySnapshot) -> Result<(), StoreError> {
        let what = format!(
            "import: {} users, {} roles, {} rules (replacing the policy)",
            snapshot.users.len(),
            snapshot.roles.len(),
            snapshot.rules.len()
        );
        self.after(self.inner.import(snapshot).await, |()| what)
            .await
    }
    async fn record_admin_change(&self, change: NewAdminChange) -> Result<(), StoreError> {
        self.inner.record_admin_change(change).await
    }
}

#[cfg(test)]
mod tests {
    use warden_policy::{ActionKind, ActionSet, Effect, QoS, Subject};

    use super::*;

    #[test]
    fn a_password_change_never_shows_the_hash() {
        let patch = UserPatch {
            password_hash: Some(Some("$argon2id$v=19$secret".into())),
            enabled: Some(false),
            ..UserPatch::default()
        };
        let text = describe_patch("alice", &patch);
        assert_eq!(text, "user update alice: password set, disabled");
        let user = NewUser {
            username: "bob".into(),
            password_hash: Some("$argon2id$v=19$secret".into()),
            superuser: true,
            enabled: true,
            roles: vec!["ops".into()],
            cert_fingerprint: None,
        };
        assert_eq!(describe_new_user(&user), "user add bob roles=ops superuser");
    }

    #[test]
    fn rules_read_as_one_line() {
        let spec = RuleSpec {
            effect: Effect::Allow,
            subject: Subject::Role("sensors".into()),
            actions: ActionSet::of(&[ActionKind::Publish, ActionKind::Subscribe]),
            pattern: "s/${username}/#".into(),
            max_qos: Some(QoS::AtLeastOnce),
            retain: Some(false),
        };
        assert_eq!(
            describe_rule(&spec),
            "allow publish,subscribe role:sensors \"s/${username}/#\" max_qos=1 retain=false"
        );
    }
}
