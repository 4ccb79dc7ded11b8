//! What a login needs from the store, kept per policy version: the user
//! record, the principal's rules, and the compiled policy.
//!
//! Every write to the store moves its policy version, so an entry keyed by
//! version `v` is exactly what the store answers while it is at `v`: a
//! login that finds the version unchanged can skip the store and the
//! compiler. The version itself is read from the store for every login,
//! after the login arrived (`gate.rs`; logins arriving together share one
//! read), so a login always sees every write that finished before it, and
//! logins still fail closed when the store is down. A login that raced a
//! policy refresh re-checks itself after attaching (see `session::connect`).
//!
//! Compiled policies are shared: principals that agree on everything their
//! rules depend on (`warden_policy::principal_dependencies`: the client id
//! only when a connect rule or `${clientid}` applies, the certificate only
//! for `${cert.*}`) get the same `Arc`, which saves a compile per reconnect
//! and the policy's memory per connection.

pub mod gate;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use moka::sync::Cache;
use warden_auth::{PrincipalKey, Store, StoreError, UserRecord};
use warden_policy::{
    principal_dependencies, CompiledPolicy, PolicyEngine, PolicyError, PolicyVersion, Principal,
    RuleSet,
};

pub use gate::GateError;
use gate::VersionGate;

/// Entries per cache. A reconnect storm of this many distinct users is
/// served from memory; beyond it the least useful entries are evicted.
const CAPACITY: u64 = 65_536;

/// Everything a compiled policy can depend on.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct PolicyKey {
    version: u64,
    username: Option<String>,
    roles: Vec<String>,
    superuser: bool,
    /// Only when the rules depend on it.
    client_id: Option<String>,
    /// Only when the rules depend on it (any `${cert.*}`): the whole
    /// certificate's facts, `None` inside without a certificate.
    cert: Option<Option<Arc<warden_policy::CertInfo>>>,
}

/// See the module docs.
pub struct LoginCache {
    gate: VersionGate,
    users: Cache<(u64, String), Arc<UserRecord>>,
    rules: Cache<(u64, Option<String>, Vec<String>), Arc<RuleSet>>,
    policies: Cache<PolicyKey, Arc<dyn CompiledPolicy>>,
    /// The version the caches hold entries for.
    holds: AtomicU64,
}

impl std::fmt::Debug for LoginCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCache")
            .field("holds", &self.holds)
            .field("users", &self.users.entry_count())
            .field("rules", &self.rules.entry_count())
            .field("policies", &self.policies.entry_count())
            .finish()
    }
}

impl Default for LoginCache {
    fn default() -> Self {
        LoginCache {
            gate: VersionGate::default(),
            users: Cache::new(CAPACITY),
            rules: Cache::new(CAPACITY),
            policies: Cache::new(CAPACITY),
            holds: AtomicU64::new(0),
        }
    }
}

impl LoginCache {
    /// The store's current policy version, confirmed recently (fail closed).
    pub async fn version(&self, store: &dyn Store) -> Result<PolicyVersion, GateError> {
        let v = self.gate.current(store).await?;
        self.moved_to(v);
        Ok(v)
    }

    /// A version the policy registry read from the store.
    pub fn confirm(&self, version: PolicyVersion, asked_at: Instant) {
        self.gate.confirm(version, asked_at);
        self.moved_to(version);
    }

    /// The registry's poll failed: no login is admitted until the store
    /// answers again.
    pub fn fail(&self, at: Instant) {
        self.gate.fail(at);
    }

    /// Entries of other versions can never be hit again: free them.
    fn moved_to(&self, version: PolicyVersion) {
        if self.holds.swap(version.0, Ordering::AcqRel) != version.0 {
            self.users.invalidate_all();
            self.rules.invalidate_all();
            self.policies.invalidate_all();
        }
    }

    /// The user as the store holds it at `version`.
    pub async fn user(
        &self,
        store: &dyn Store,
        name: &str,
        version: PolicyVersion,
    ) -> Result<Option<UserRecord>, StoreError> {
        let key = (version.0, name.to_owned());
        if let Some(user) = self.users.get(&key) {
            return Ok(Some((*user).clone()));
        }
        let user = store.user(name).await?;
        // Unknown users are not remembered: they are refused after a dummy
        // argon2 verify anyway, and must not fill the cache.
        if let Some(user) = &user {
            self.users.insert(key, Arc::new(user.clone()));
        }
        Ok(user)
    }

    /// Drop the cached record of `name`: its password hash was replaced
    /// without a policy change (a login rehash), so the cached record is
    /// stale in its hash alone.
    pub fn forget_user(&self, name: &str) {
        let version = self.holds.load(Ordering::Acquire);
        self.users.invalidate(&(version, name.to_owned()));
    }

    /// The rules of `key` at `version`.
    pub async fn rules(
        &self,
        store: &dyn Store,
        key: &PrincipalKey,
        version: PolicyVersion,
    ) -> Result<Arc<RuleSet>, StoreError> {
        let cache_key = (version.0, key.username.clone(), key.roles.clone());
        if let Some(rules) = self.rules.get(&cache_key) {
            return Ok(rules);
        }
        let rules = Arc::new(store.rules_for(key).await?);
        self.rules.insert(cache_key, Arc::clone(&rules));
        Ok(rules)
    }

    /// The compiled policy of `principal` from `rules` (its rules at
    /// `version`), shared with every principal that compiles the same.
    pub fn compile(
        &self,
        engine: &dyn PolicyEngine,
        principal: &Principal,
        rules: &RuleSet,
        version: PolicyVersion,
    ) -> Result<Arc<dyn CompiledPolicy>, PolicyError> {
        let deps = principal_dependencies(principal, rules);
        let key = PolicyKey {
            version: version.0,
            username: principal.username.as_deref().map(str::to_owned),
            roles: principal.roles.clone(),
            superuser: principal.superuser,
            client_id: deps.client_id.then(|| principal.client_id.to_string()),
            cert: deps.cert.then(|| principal.cert.clone()),
        };
        if let Some(policy) = self.policies.get(&key) {
            return Ok(policy);
        }
        let policy = engine.compile(principal, rules, version)?;
        self.policies.insert(key, Arc::clone(&policy));
        Ok(policy)
    }
}
