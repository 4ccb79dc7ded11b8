//! The Redis store: users, roles and rules as Redis sets and hashes under
//! one key prefix (layout: [`keys`]), written by Lua scripts and watched
//! through pub/sub.
//!
//! Atomicity: every write is ONE Lua script (`queries.rs`). Redis runs a
//! script alone, so its precondition checks (exists / missing / has
//! members), the change itself, the `INCR` of `P version` and the `PUBLISH`
//! of the new version on `P changes` form one atomic step; no reader sees a
//! half-applied write or a change without its version bump. The scripts
//! check everything before their first write, so a refused write changes
//! nothing. Reads that touch several keys (a user with its roles, the rules
//! for a principal, an export) are scripts too, so they see one state.
//! `import` is one script that deletes everything the indexes reach and
//! writes the snapshot.
//!
//! Connections: one `ConnectionManager` (a multiplexed connection that
//! reconnects after a failure) for calls, and a dedicated pub/sub
//! connection per change feed (`watch.rs`). The manager's connect and
//! response timeouts and an outer `tokio::time::timeout` bound every call by
//! the configured timeout. TLS when the URL is `rediss://`.
//!
//! Keys are computed inside the scripts, so the store needs one Redis
//! server (or a primary with replicas), not Redis Cluster.

pub mod keys;
mod queries;
mod reply;
mod watch;
mod writes;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script, Value};
use warden_policy::{PolicyVersion, Rule, RuleId, RuleSet, RuleSpec, Subject};

use crate::error::StoreError;
use crate::store::{
    validate_name, AdminChange, AdminStore, ChangeFeed, ChangeQuery, Migrated, NewAdminChange,
    NewUser, PolicySnapshot, PrincipalKey, RoleRecord, RuleFilter, Store, UserPatch, UserRecord,
};
use queries as q;
use reply::classify;

pub use watch::{FALLBACK_POLL, HEALTH_EVERY};

const BACKEND: &str = "redis";

/// Retries of one (re)connect inside the manager; the outer timeout and the
/// next call's retry do the rest.
const RECONNECT_RETRIES: usize = 1;
/// Longest pause between those retries, in milliseconds.
const RECONNECT_MAX_DELAY_MS: u64 = 500;

/// A policy store in Redis, under one key prefix.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

// The client holds the URL's password: Debug shows neither.
impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connect to `url` (`redis://` or `rediss://`), check the key schema
    /// under `prefix`, and hand back the store. `timeout` bounds every
    /// later call; an unreachable server is `Unavailable`.
    pub async fn open(
        url: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<RedisStore, StoreError> {
        let store = Self::connect(url, prefix, timeout).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// As [`Self::open`], without applying the schema: for `warden migrate`,
    /// which applies it itself to report what it did.
    pub async fn connect(
        url: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<RedisStore, StoreError> {
        if prefix.is_empty() {
            return Err(StoreError::invalid("store.prefix", "must not be empty"));
        }
        let client = Client::open(url).map_err(|e| match classify(e, timeout) {
            StoreError::Backend { message, .. } => StoreError::invalid("store.url", message),
            other => other,
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_factor(2)
            .set_max_delay(RECONNECT_MAX_DELAY_MS);
        let conn = tokio::time::timeout(
            timeout,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| StoreError::Timeout {
            backend: BACKEND,
            after: timeout,
        })?
        .map_err(|e| classify(e, timeout))?;
        Ok(RedisStore {
            client,
            conn,
            prefix: prefix.to_owned(),
            timeout,
        })
    }

    /// The key prefix this store writes under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn timed<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        crate::error::within(BACKEND, self.timeout, work).await
    }

    /// Run `script` with the prefix and `args` as ARGV.
    async fn eval<S: AsRef<str>>(&self, script: &Script, args: &[S]) -> Result<Value, StoreError> {
        let mut invocation = script.prepare_invoke();
        invocation.arg(&self.prefix);
        for arg in args {
            invocation.arg(arg.as_ref());
        }
        let mut conn = self.conn.clone();
        self.timed(async {
            invocation
                .invoke_async::<Value>(&mut conn)
                .await
                .map_err(|e| classify(e, self.timeout))
        })
        .await
    }

    /// Run a write script; `name` names what an error is about.
    async fn write<S: AsRef<str>>(
        &self,
        script: &Script,
        args: &[S],
        name: impl Fn(&'static str) -> String,
    ) -> Result<String, StoreError> {
        reply::status(self.eval(script, args).await?, name)
    }

    async fn get(&self, key: String) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        self.timed(async {
            redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(e, self.timeout))
        })
        .await
    }

    async fn fetch_rules(&self, mode: &str, name: &str) -> Result<Vec<Rule>, StoreError> {
        reply::rules(self.eval(&q::LIST_RULES, &[mode, name]).await?)
    }
}

fn same(name: &str) -> impl Fn(&'static str) -> String + '_ {
    move |_| name.to_owned()
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        reply::user(self.eval(&q::USER, &[username]).await?, username)
    }

    async fn rules_for(&self, key: &PrincipalKey) -> Result<RuleSet, StoreError> {
        let mut args: Vec<&str> = match key.username.as_deref() {
            Some(name) => vec!["1", name],
            None => vec!["0", ""],
        };
        args.extend(key.roles.iter().map(String::as_str));
        reply::rules(self.eval(&q::RULES_FOR, &args).await?).map(RuleSet)
    }

    async fn policy_version(&self) -> Result<PolicyVersion, StoreError> {
        match self.get(keys::version(&self.prefix)).await? {
            Some(text) => reply::number("policy_version", &text).map(PolicyVersion),
            None => Ok(PolicyVersion(0)),
        }
    }

    fn changes(&self) -> ChangeFeed {
        watch::feed(watch::Watcher {
            client: self.client.clone(),
            conn: self.conn.clone(),
            prefix: self.prefix.clone(),
            timeout: self.timeout,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.timed(async {
            redis::cmd("PING")
                .query_async::<Value>(&mut conn)
                .await
                .map(drop)
                .map_err(|e| classify(e, self.timeout))
        })
        .await
    }

    async fn admin_changes(&self, query: ChangeQuery) -> Result<Vec<AdminChange>, StoreError> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = self
            .timed(async {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(keys::audit(&self.prefix))
                    .arg(format!("({}", query.after))
                    .arg("+inf")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| classify(e, self.timeout))
            })
            .await?;
        let mut changes = Vec::with_capacity(members.len());
        for member in members {
            let change = writes::parse_change(&member)?;
            if change.at_ms >= query.since_ms {
                changes.push(change);
            }
        }
        Ok(changes)
    }

    async fn replace_password_hash(
        &self,
        username: &str,
        expected: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        match self
            .eval(&q::REPLACE_PASSWORD_HASH, &[username, expected, new_hash])
            .await?
        {
            Value::Int(n) => Ok(n == 1),
            _ => Err(StoreError::corrupt(
                "password_hash",
                "unexpected reply to the rehash script",
            )),
        }
    }
}

#[async_trait]
impl AdminStore for RedisStore {
    /// Records the key schema version on first use; refuses a store whose
    /// keys were written by a newer layout. Does not bump the version.
    async fn migrate(&self) -> Result<Migrated, StoreError> {
        let had = self.get(keys::schema(&self.prefix)).await?;
        let schema = keys::SCHEMA.to_string();
        let stored = reply::text(self.eval(&q::MIGRATE, &[schema]).await?)?
            .ok_or_else(|| StoreError::corrupt("schema", "missing"))?;
        let stored = reply::number("schema", &stored)?;
        if stored > u64::from(keys::SCHEMA) {
            return Err(StoreError::corrupt(
                "schema",
                format!(
                    "key schema {stored} is newer than this build's ({})",
                    keys::SCHEMA
                ),
            ));
        }
        Ok(Migrated {
            applied: match had {
                None => vec![format!("key schema {stored} recorded")],
                Some(_) => Vec::new(),
            },
            version: Some(stored),
        })
    }

    async fn create_user(&self, user: NewUser) -> Result<(), StoreError> {
        let args = writes::create_user(&user)?;
        self.write(&q::CREATE_USER, &args, same(&user.username))
            .await
            .map(drop)
    }

    async fn update_user(&self, username: &str, patch: UserPatch) -> Result<(), StoreError> {
        let args = writes::update_user(username, &patch)?;
        self.write(&q::UPDATE_USER, &args, same(username))
            .await
            .map(drop)
    }

    async fn delete_user(&self, username: &str) -> Result<(), StoreError> {
        self.write(&q::DELETE_USER, &[username], same(username))
            .await
            .map(drop)
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let snapshot = self.export().await?;
        let mut users: Vec<UserRecord> = snapshot
            .users
            .into_iter()
            .map(|u| UserRecord {
                username: u.username,
                password_hash: u.password_hash,
                enabled: u.enabled,
                superuser: u.superuser,
                roles: Vec::new(),
                cert_fingerprint: u.cert_fingerprint,
            })
            .collect();
        // Memberships come sorted by (role, user), so roles stay sorted.
        for m in snapshot.memberships {
            if let Ok(i) = users.binary_search_by(|u| u.username.cmp(&m.username)) {
                users[i].roles.push(m.role);
            }
        }
        Ok(users)
    }

    async fn create_role(&self, name: &str) -> Result<(), StoreError> {
        validate_name("role", name)?;
        self.write(&q::CREATE_ROLE, &[name], same(name))
            .await
            .map(drop)
    }

    async fn delete_role(&self, name: &str) -> Result<(), StoreError> {
        self.write(&q::DELETE_ROLE, &[name], same(name))
            .await
            .map(drop)
    }

    async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        let snapshot = self.export().await?;
        let mut roles: Vec<RoleRecord> = snapshot
            .roles
            .into_iter()
            .map(|name| RoleRecord {
                name,
                members: Vec::new(),
            })
            .collect();
        for m in snapshot.memberships {
            if let Ok(i) = roles.binary_search_by(|r| r.name.cmp(&m.role)) {
                roles[i].members.push(m.username);
            }
        }
        Ok(roles)
    }

    async fn grant(&self, role: &str, username: &str) -> Result<(), StoreError> {
        validate_name("role", role)?;
        let name = |what: &'static str| match what {
            "user" => username.to_owned(),
            _ => format!("{role}/{username}"),
        };
        self.write(&q::GRANT, &[role, username], name)
            .await
            .map(drop)
    }

    async fn revoke(&self, role: &str, username: &str) -> Result<(), StoreError> {
        self.write(&q::REVOKE, &[role, username], |_| {
            format!("{role}/{username}")
        })
        .await
        .map(drop)
    }

    async fn add_rule(&self, spec: RuleSpec) -> Result<RuleId, StoreError> {
        let args = writes::add_rule(&spec)?;
        let subject = match &spec.subject {
            Subject::User(name) | Subject::Role(name) => name.as_str(),
            Subject::Everyone => "everyone",
        };
        let id = self.write(&q::ADD_RULE, &args, same(subject)).await?;
        reply::number("rule", &id).map(RuleId)
    }

    async fn remove_rule(&self, id: RuleId) -> Result<(), StoreError> {
        let text = id.0.to_string();
        self.write(&q::REMOVE_RULE, &[text.as_str()], same(&text))
            .await
            .map(drop)
    }

    async fn list_rules(&self, filter: RuleFilter) -> Result<Vec<Rule>, StoreError> {
        match &filter.subject {
            None => self.fetch_rules("all", "").await,
            Some(Subject::User(name)) => self.fetch_rules("user", name).await,
            Some(Subject::Role(name)) => self.fetch_rules("role", name).await,
            Some(Subject::Everyone) => self.fetch_rules("everyone", "").await,
        }
    }

    async fn export(&self) -> Result<PolicySnapshot, StoreError> {
        reply::snapshot(self.eval(&q::EXPORT, &[] as &[&str]).await?)
    }

    async fn import(&self, snapshot: PolicySnapshot) -> Result<(), StoreError> {
        let args = writes::import(&snapshot)?;
        self.write(&q::IMPORT, &args, |_| "import".to_owned())
            .await
            .map(drop)
    }

    async fn record_admin_change(&self, change: NewAdminChange) -> Result<(), StoreError> {
        let body = writes::change_json(&change)?;
        self.write(&q::RECORD_CHANGE, &[body], |_| "admin change".to_owned())
            .await
            .map(drop)
    }
}
