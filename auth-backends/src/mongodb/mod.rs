//! The MongoDB store (official `mongodb` driver, MongoDB 6+).
//!
//! # Layout
//! The database is the URL's path (default `warden`). Collections, created
//! on start with their indexes by `indexes.rs` (this stands in for
//! migrations):
//! - `users`: `{username, password_hash: string|null, enabled, superuser}`,
//!   unique on `username`;
//! - `roles`: `{name}`, unique on `name`;
//! - `memberships`: `{role, username}`, unique on the pair, indexed on
//!   `username`;
//! - `rules`: `{id: int64, effect: "allow"|"deny", subject: "user:NAME" |
//!   "role:NAME" | "everyone", actions: [string], pattern, max_qos:
//!   int|null, retain: bool|null}`, unique on `id`, indexed on
//!   `(subject, id)`; `rules_for` is one `$in` over the subjects;
//! - `meta`: two counters, unique on `name`: `{name: "policy_version",
//!   value}` (bumped with `$inc` by every write) and `{name: "rule_id",
//!   value}` (the last rule id, `$inc` with `find_one_and_update` returning
//!   the new value; import raises it with `$max`, so ids are never reused),
//!   and `{name: "audit_id", value}` (the last admin change id);
//! - `admin_changes`: `{id: int64, at_ms: int64, user, host, what}`, unique
//!   on `id`: one document per CLI write (`record_admin_change`).
//!
//! # Atomicity
//! At open, `hello` tells whether the server is a replica set (`setName`)
//! or a sharded cluster (`msg: "isdbgrid"`). If so, every write and its
//! version bump run in one multi-document transaction (retried up to three
//! times on `TransientTransactionError`), and the change feed is a change
//! stream. On a standalone server there are no transactions: each write
//! runs its checks first, then its changes, then the version bump (data
//! first, so a poller that sees a new version reads the new data). A write
//! that fails half-way still bumps the version; a crash between the data and
//! the bump delays the version until the next write. `import` on a
//! standalone server is not atomic either: it validates the snapshot first,
//! so only an outage can leave it half done.
//!
//! Duplicates are found by upserts keyed on the unique field with
//! `$setOnInsert` (no `upserted_id`: it existed), which works on servers
//! that do not enforce unique indexes; the unique indexes still settle
//! races on real MongoDB, where the duplicate-key error (11000) is
//! `Conflict`.
//!
//! # Tests
//! The tests run against CongoDB (see `scripts/mongo-test-server`), a
//! standalone wire-compatible server: they take the no-transaction path and
//! the polling feed. The transaction and change-stream paths need a replica
//! set.

mod docs;
mod indexes;
mod queries;
mod watch;
mod writer;
mod writes;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::Document;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use warden_policy::{PolicyVersion, Rule, RuleId, RuleSet, RuleSpec};

use crate::error::StoreError;
use crate::store::{
    AdminChange, AdminStore, ChangeFeed, ChangeQuery, Membership, Migrated, NewAdminChange,
    NewUser, PolicySnapshot, PrincipalKey, RoleRecord, RuleFilter, Store, UserPatch, UserRecord,
};
use docs::db;
use queries as q;
use writer::Writer;

pub use watch::POLL_INTERVAL;

const BACKEND: &str = "mongodb";
const DEFAULT_DATABASE: &str = "warden";
/// Attempts of a write whose transaction the server asks to retry.
const TRANSACTION_ATTEMPTS: u32 = 3;

/// A policy store in one MongoDB database.
#[derive(Debug, Clone)]
pub struct MongoStore {
    database: Database,
    timeout: Duration,
    /// Replica set or sharded cluster: transactions and change streams.
    replicated: bool,
}

impl MongoStore {
    /// Connect, detect the deployment, create collections and indexes.
    /// `timeout` bounds server selection, connecting and every later call.
    pub async fn open(url: &str, timeout: Duration) -> Result<MongoStore, StoreError> {
        let store = Self::connect(url, timeout).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// As [`Self::open`], without applying the schema: for `warden migrate`,
    /// which applies it itself to report what it did.
    pub async fn connect(url: &str, timeout: Duration) -> Result<MongoStore, StoreError> {
        let too_slow = StoreError::Timeout {
            backend: BACKEND,
            after: timeout,
        };
        // Parsing a `mongodb+srv://` URL queries DNS, hence the bound.
        let (options, name) = tokio::time::timeout(timeout, client_options(url, timeout))
            .await
            .map_err(|_| too_slow)??;
        let client = Client::with_options(options).map_err(db)?;
        let mut store = MongoStore {
            database: client.database(&name),
            timeout,
            replicated: false,
        };
        store.replicated = store.timed(store.detect_replication()).await?;
        Ok(store)
    }

    /// Whether writes run in transactions and the feed is a change stream.
    pub fn uses_transactions(&self) -> bool {
        self.replicated
    }

    async fn detect_replication(&self) -> Result<bool, StoreError> {
        let hello = self.database.run_command(q::hello()).await.map_err(db)?;
        let replica_set = hello.get_str("setName").is_ok();
        let mongos = hello.get_str("msg") == Ok("isdbgrid");
        Ok(replica_set || mongos)
    }

    async fn timed<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        crate::error::within(BACKEND, self.timeout, work).await
    }

    fn coll(&self, name: &str) -> mongodb::Collection<Document> {
        self.database.collection(name)
    }

    async fn find_all(
        &self,
        collection: &str,
        filter: Document,
    ) -> Result<Vec<Document>, StoreError> {
        let cursor = self.coll(collection).find(filter).await.map_err(db)?;
        cursor.try_collect().await.map_err(db)
    }

    async fn fetch_rules(&self, filter: Document) -> Result<Vec<Rule>, StoreError> {
        let mut rules = self
            .find_all(q::RULES, filter)
            .await?
            .iter()
            .map(docs::rule)
            .collect::<Result<Vec<_>, _>>()?;
        rules.sort_by_key(|r| r.id);
        Ok(rules)
    }

    /// All memberships, sorted by (role, username).
    async fn fetch_memberships(&self) -> Result<Vec<Membership>, StoreError> {
        let mut all = self
            .find_all(q::MEMBERSHIPS, q::all())
            .await?
            .iter()
            .map(|d| docs::membership(d).map(|(role, username)| Membership { role, username }))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort();
        Ok(all)
    }

    async fn fetch_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut users = self
            .find_all(q::USERS, q::all())
            .await?
            .iter()
            .map(docs::user)
            .collect::<Result<Vec<_>, _>>()?;
        users.sort_by(|a, b| a.username.cmp(&b.username));
        for m in self.fetch_memberships().await? {
            if let Ok(i) = users.binary_search_by(|u| u.username.as_str().cmp(&m.username)) {
                if let Some(user) = users.get_mut(i) {
                    user.roles.push(m.role);
                }
            }
        }
        Ok(users)
    }

    async fn fetch_role_names(&self) -> Result<Vec<String>, StoreError> {
        let mut names = self
            .find_all(q::ROLES, q::all())
            .await?
            .iter()
            .map(|d| docs::text(d, "role", "name"))
            .collect::<Result<Vec<_>, _>>()?;
        names.sort();
        Ok(names)
    }

    async fn fetch_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        let mut roles: Vec<RoleRecord> = self
            .fetch_role_names()
            .await?
            .into_iter()
            .map(|name| RoleRecord {
                name,
                members: Vec::new(),
            })
            .collect();
        for m in self.fetch_memberships().await? {
            if let Ok(i) = roles.binary_search_by(|r| r.name.as_str().cmp(&m.role)) {
                if let Some(role) = roles.get_mut(i) {
                    role.members.push(m.username);
                }
            }
        }
        Ok(roles)
    }

    /// The four collections read one after another. The version is read
    /// before and after, and the read is repeated if a write came between,
    /// so the snapshot is consistent unless writes never stop.
    async fn snapshot(&self) -> Result<PolicySnapshot, StoreError> {
        let mut attempts = 0;
        loop {
            let before = self.read_version().await?;
            let snapshot = PolicySnapshot {
                users: self
                    .find_all(q::USERS, q::all())
                    .await?
                    .iter()
                    .map(docs::snapshot_user)
                    .collect::<Result<Vec<_>, _>>()?,
                roles: self.fetch_role_names().await?,
                memberships: self.fetch_memberships().await?,
                rules: self.fetch_rules(q::all()).await?,
            };
            attempts += 1;
            if self.read_version().await? == before || attempts >= 5 {
                let mut snapshot = snapshot;
                snapshot.users.sort_by(|a, b| a.username.cmp(&b.username));
                return Ok(snapshot);
            }
        }
    }

    async fn read_version(&self) -> Result<PolicyVersion, StoreError> {
        let doc = self
            .coll(q::META)
            .find_one(q::counter(q::VERSION_ID))
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::corrupt("policy_version", "document missing"))?;
        let value = docs::int(&doc, "policy_version", "value")?;
        u64::try_from(value)
            .map(PolicyVersion)
            .map_err(|_| StoreError::corrupt("policy_version", "negative"))
    }
}

/// The driver's options for `url` (TLS, credentials and hosts as the URL
/// says) with every wait bounded by `timeout`, and the database name.
async fn client_options(
    url: &str,
    timeout: Duration,
) -> Result<(ClientOptions, String), StoreError> {
    // The driver's message may quote the URL, credentials included, so the
    // error names only the kind of problem.
    let mut options = ClientOptions::parse(url)
        .await
        .map_err(|e| match db(e).kind() {
            crate::StoreErrorKind::Unavailable => StoreError::Unavailable {
                backend: BACKEND,
                message: "cannot resolve the hosts of the MongoDB URL".to_owned(),
                source: None,
            },
            _ => StoreError::invalid("store.url", "not a usable MongoDB URL"),
        })?;
    options.server_selection_timeout = Some(timeout);
    options.connect_timeout = Some(timeout);
    options.app_name.get_or_insert_with(|| "warden".to_owned());
    let name = options
        .default_database
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    Ok((options, name))
}

#[async_trait]
impl Store for MongoStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.timed(async {
            let found = self
                .coll(q::USERS)
                .find_one(q::user(username))
                .await
                .map_err(db)?;
            let Some(found) = found else {
                return Ok(None);
            };
            let mut user = docs::user(&found)?;
            user.roles = self
                .find_all(q::MEMBERSHIPS, q::memberships_of_user(username))
                .await?
                .iter()
                .map(|d| docs::text(d, "membership", "role"))
                .collect::<Result<Vec<_>, _>>()?;
            user.roles.sort();
            Ok(Some(user))
        })
        .await
    }

    async fn rules_for(&self, key: &PrincipalKey) -> Result<RuleSet, StoreError> {
        let filter = q::rules_for(key.username.as_deref(), &key.roles);
        self.timed(async { self.fetch_rules(filter).await.map(RuleSet) })
            .await
    }

    async fn policy_version(&self) -> Result<PolicyVersion, StoreError> {
        self.timed(self.read_version()).await
    }

    fn changes(&self) -> ChangeFeed {
        watch::feed(&self.database, self.replicated)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(async {
            self.database.run_command(q::ping()).await.map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn admin_changes(&self, query: ChangeQuery) -> Result<Vec<AdminChange>, StoreError> {
        let after = i64::try_from(query.after).unwrap_or(i64::MAX);
        self.timed(async {
            let mut changes = self
                .find_all(q::ADMIN_CHANGES, q::admin_changes(after))
                .await?
                .iter()
                .map(docs::admin_change)
                .filter(|c| c.as_ref().map_or(true, |c| c.at_ms >= query.since_ms))
                .collect::<Result<Vec<_>, _>>()?;
            changes.sort_by_key(|c| c.id);
            Ok(changes)
        })
        .await
    }

    /// One `update_one` with the old hash in its filter: MongoDB applies a
    /// single-document update atomically, so of two logins racing here
    /// only one matches. No transaction and no version bump (see the trait).
    async fn replace_password_hash(
        &self,
        username: &str,
        expected: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        self.timed(async {
            let done = self
                .coll(q::USERS)
                .update_one(
                    q::user_with_hash(username, expected),
                    q::set_password_hash(new_hash),
                )
                .await
                .map_err(db)?;
            Ok(done.modified_count == 1)
        })
        .await
    }
}

/// One write: open a writer (a transaction when the server has them), run
/// `$body`, then bump the version and commit; retry when the server says
/// the transaction hit a transient error.
macro_rules! write_op {
    ($self:ident, |$w:ident| $body:expr) => {
        $self
            .timed(async {
                let mut attempt = 1;
                loop {
                    let mut $w = Writer::begin(&$self.database, $self.replicated).await?;
                    let outcome = $body.await;
                    let transient = $w.transient;
                    let result = match outcome {
                        Ok(out) => $w.finish().await.map(|()| out),
                        Err(err) => {
                            $w.fail().await;
                            Err(err)
                        }
                    };
                    match result {
                        Err(_) if transient && attempt < TRANSACTION_ATTEMPTS => attempt += 1,
                        other => break other,
                    }
                }
            })
            .await
    };
}

#[async_trait]
impl AdminStore for MongoStore {
    async fn migrate(&self) -> Result<Migrated, StoreError> {
        let created = self.timed(indexes::ensure(&self.database)).await?;
        Ok(Migrated {
            applied: created
                .into_iter()
                .map(|name| format!("collection {name} created"))
                .collect(),
            version: None,
        })
    }

    async fn create_user(&self, user: NewUser) -> Result<(), StoreError> {
        write_op!(self, |w| writes::create_user(&mut w, &user))
    }

    async fn update_user(&self, username: &str, patch: UserPatch) -> Result<(), StoreError> {
        write_op!(self, |w| writes::update_user(&mut w, username, &patch))
    }

    async fn delete_user(&self, username: &str) -> Result<(), StoreError> {
        write_op!(self, |w| writes::delete_user(&mut w, username))
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.timed(self.fetch_users()).await
    }

    async fn create_role(&self, name: &str) -> Result<(), StoreError> {
        write_op!(self, |w| writes::create_role(&mut w, name))
    }

    async fn delete_role(&self, name: &str) -> Result<(), StoreError> {
        write_op!(self, |w| writes::delete_role(&mut w, name))
    }

    async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        self.timed(self.fetch_roles()).await
    }

    async fn grant(&self, role: &str, username: &str) -> Result<(), StoreError> {
        write_op!(self, |w| writes::grant(&mut w, role, username))
    }

    async fn revoke(&self, role: &str, username: &str) -> Result<(), StoreError> {
        write_op!(self, |w| writes::revoke(&mut w, role, username))
    }

    async fn add_rule(&self, spec: RuleSpec) -> Result<RuleId, StoreError> {
        write_op!(self, |w| writes::add_rule(&mut w, &spec))
    }

    async fn remove_rule(&self, id: RuleId) -> Result<(), StoreError> {
        write_op!(self, |w| writes::remove_rule(&mut w, id))
    }

    async fn list_rules(&self, filter: RuleFilter) -> Result<Vec<Rule>, StoreError> {
        let filter = match &filter.subject {
            Some(subject) => q::rules_of(subject),
            None => q::all(),
        };
        self.timed(self.fetch_rules(filter)).await
    }

    async fn export(&self) -> Result<PolicySnapshot, StoreError> {
        self.timed(self.snapshot()).await
    }

    async fn import(&self, snapshot: PolicySnapshot) -> Result<(), StoreError> {
        write_op!(self, |w| writes::import(&mut w, &snapshot))
    }

    async fn record_admin_change(&self, change: NewAdminChange) -> Result<(), StoreError> {
        write_op!(self, |w| writes::record_admin_change(&mut w, &change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreErrorKind;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn options_follow_the_url() {
        let (options, name) = client_options(
            "mongodb://u:secret@db.example:27017/policy?tls=true",
            SECOND,
        )
        .await
        .unwrap();
        assert_eq!(name, "policy");
        assert!(matches!(
            options.tls,
            Some(mongodb::options::Tls::Enabled(_))
        ));
        let credential = options.credential.as_ref().expect("credential");
        assert_eq!(credential.username.as_deref(), Some("u"));
        assert!(!format!("{options:?}").contains("secret"));
        assert_eq!(options.server_selection_timeout, Some(SECOND));
        assert_eq!(options.connect_timeout, Some(SECOND));

        let (options, name) = client_options("mongodb://127.0.0.1:27018/", SECOND)
            .await
            .unwrap();
        assert_eq!(name, DEFAULT_DATABASE);
        assert!(options.tls.is_none());
    }

    #[tokio::test]
    async fn a_bad_url_is_invalid_and_keeps_its_secret() {
        let err = client_options("mongodb://u:secret@/x?tls=maybe", SECOND)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
