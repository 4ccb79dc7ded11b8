//! The SQLite store: one database file shared by the broker (reads) and the
//! CLI (writes), possibly at the same time from two processes.
//!
//! WAL mode lets readers go on while a writer commits; `busy_timeout` makes
//! a second writer wait instead of failing; write transactions start with
//! `BEGIN IMMEDIATE` so that two writers never deadlock upgrading a read
//! lock. Every call is bounded by the configured timeout.

mod queries;
mod rows;
mod watch;
mod writes;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, Sqlite, Transaction};
use warden_policy::{PolicyVersion, Rule, RuleId, RuleSet, RuleSpec};

use crate::error::StoreError;
use crate::store::{
    AdminStore, ChangeFeed, Membership, NewUser, PolicySnapshot, PrincipalKey, RoleRecord,
    RuleFilter, SnapshotUser, Store, UserPatch, UserRecord,
};
use queries as q;
use rows::db;

pub use watch::POLL_INTERVAL;

const BACKEND: &str = "sqlite";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// A policy store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    timeout: Duration,
}

impl SqliteStore {
    /// Open (creating the file if missing) and migrate. The parent
    /// directory must exist. `timeout` bounds every later call.
    pub async fn open(path: &Path, timeout: Duration) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(timeout)
            .foreign_keys(true)
            .disable_statement_logging();
        let store = SqliteStore {
            pool: SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(timeout)
                .connect_lazy_with(options),
            timeout,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn timed<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(StoreError::Timeout {
                backend: BACKEND,
                after: self.timeout,
            }))
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }

    /// Bump the version and commit: the last step of every write.
    async fn commit(mut tx: Transaction<'static, Sqlite>) -> Result<(), StoreError> {
        sqlx::query(q::BUMP_VERSION)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn fetch_rules(&self, filter: &RuleFilter) -> Result<Vec<Rule>, StoreError> {
        let rows = match &filter.subject {
            None => sqlx::query(q::SELECT_RULES).fetch_all(&self.pool).await,
            Some(subject) => {
                let (kind, name) = crate::common::subject_columns(subject);
                sqlx::query(q::SELECT_RULES_BY_SUBJECT)
                    .bind(kind)
                    .bind(name)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db)?;
        rows.iter().map(rows::rule).collect()
    }

    async fn fetch_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut users = sqlx::query(q::SELECT_USERS)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?
            .iter()
            .map(rows::user)
            .collect::<Result<Vec<_>, _>>()?;
        for m in self.fetch_memberships_on(&mut conn).await? {
            if let Ok(i) = users.binary_search_by(|u| u.username.as_str().cmp(&m.username)) {
                users[i].roles.push(m.role);
            }
        }
        Ok(users)
    }

    async fn fetch_memberships_on(
        &self,
        conn: &mut sqlx::SqliteConnection,
    ) -> Result<Vec<Membership>, StoreError> {
        let rows = sqlx::query(q::SELECT_MEMBERSHIPS)
            .fetch_all(conn)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| {
                Ok(Membership {
                    role: row.try_get("role").map_err(db)?,
                    username: row.try_get("username").map_err(db)?,
                })
            })
            .collect()
    }

    async fn fetch_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut roles = sqlx::query(q::SELECT_ROLES)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?
            .iter()
            .map(|row| {
                Ok(RoleRecord {
                    name: row.try_get("name").map_err(db)?,
                    members: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        for m in self.fetch_memberships_on(&mut conn).await? {
            if let Ok(i) = roles.binary_search_by(|r| r.name.as_str().cmp(&m.role)) {
                roles[i].members.push(m.username);
            }
        }
        Ok(roles)
    }

    /// Users, roles, memberships and rules read in one transaction, so the
    /// snapshot is consistent even while another process writes.
    async fn snapshot(&self) -> Result<PolicySnapshot, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let users = sqlx::query(q::SELECT_USERS)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let roles = sqlx::query(q::SELECT_ROLES)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let memberships = self.fetch_memberships_on(&mut tx).await?;
        let rules = sqlx::query(q::SELECT_RULES)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        tx.rollback().await.map_err(db)?;
        Ok(PolicySnapshot {
            users: users
                .iter()
                .map(|row| {
                    rows::user(row).map(|u| SnapshotUser {
                        username: u.username,
                        password_hash: u.password_hash,
                        enabled: u.enabled,
                        superuser: u.superuser,
                    })
                })
                .collect::<Result<_, _>>()?,
            roles: roles
                .iter()
                .map(|row| row.try_get("name").map_err(db))
                .collect::<Result<_, _>>()?,
            memberships,
            rules: rules.iter().map(rows::rule).collect::<Result<_, _>>()?,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.timed(async {
            let mut conn = self.pool.acquire().await.map_err(db)?;
            let Some(row) = sqlx::query(q::SELECT_USER)
                .bind(username)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?
            else {
                return Ok(None);
            };
            let mut user = rows::user(&row)?;
            user.roles = sqlx::query_scalar(q::SELECT_USER_ROLES)
                .bind(username)
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
            Ok(Some(user))
        })
        .await
    }

    async fn rules_for(&self, key: &PrincipalKey) -> Result<RuleSet, StoreError> {
        let roles = serde_json::to_string(&key.roles)
            .map_err(|e| StoreError::invalid("roles", e.to_string()))?;
        self.timed(async {
            let rows = sqlx::query(q::SELECT_RULES_FOR)
                .bind(key.username.as_deref())
                .bind(roles)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            rows.iter()
                .map(rows::rule)
                .collect::<Result<_, _>>()
                .map(RuleSet)
        })
        .await
    }

    async fn policy_version(&self) -> Result<PolicyVersion, StoreError> {
        self.timed(async {
            let version: i64 = sqlx::query_scalar(q::SELECT_VERSION)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            u64::try_from(version)
                .map(PolicyVersion)
                .map_err(|_| StoreError::corrupt("policy_version", "negative"))
        })
        .await
    }

    fn changes(&self) -> ChangeFeed {
        watch::feed()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(async {
            sqlx::query(q::PING).execute(&self.pool).await.map_err(db)?;
            Ok(())
        })
        .await
    }
}

/// One write transaction: begin, run `$body` on the connection, bump, commit.
macro_rules! write_tx {
    ($self:ident, |$conn:ident| $body:expr) => {
        $self
            .timed(async {
                let mut tx = $self.begin().await?;
                let $conn: &mut sqlx::SqliteConnection = &mut tx;
                let out = $body.await?;
                Self::commit(tx).await?;
                Ok(out)
            })
            .await
    };
}

#[async_trait]
impl AdminStore for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.timed(async {
            MIGRATOR
                .run(&self.pool)
                .await
                .map_err(|e| StoreError::from_migrate(BACKEND, e))
        })
        .await
    }

    async fn create_user(&self, user: NewUser) -> Result<(), StoreError> {
        write_tx!(self, |conn| writes::create_user(conn, &user))
    }

    async fn update_user(&self, username: &str, patch: UserPatch) -> Result<(), StoreError> {
        write_tx!(self, |conn| writes::update_user(conn, username, &patch))
    }

    async fn delete_user(&self, username: &str) -> Result<(), StoreError> {
        write_tx!(self, |conn| writes::delete_user(conn, username))
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.timed(self.fetch_users()).await
    }

    async fn create_role(&self, name: &str) -> Result<(), StoreError> {
        write_tx!(self, |conn| writes::create_role(conn, name))
    }

    async fn delete_role(&self, name: &str) -> Result<(), StoreError> {
        write_tx!(self, |conn| writes::delete_role(conn, name))
    }

    async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        self.timed(self.fetch_roles()).await
    }

    async fn grant(&self, role: &str, username: &str) -> Result<(), StoreError> {
        write_tx!(self, |conn| writes::grant(conn, role, username))
    }

    async fn revoke(&self, role: &str, username: &str) -> Result<(), StoreError> {
        write_tx!(self, |conn| writes::revoke(conn, role, username))
    }

    async fn add_rule(&self, spec: RuleSpec) -> Result<RuleId, StoreError> {
        write_tx!(self, |conn| writes::add_rule(conn, &spec))
    }

    async fn remove_rule(&self, id: RuleId) -> Result<(), StoreError> {
        write_tx!(self, |conn| writes::remove_rule(conn, id))
    }

    async fn list_rules(&self, filter: RuleFilter) -> Result<Vec<Rule>, StoreError> {
        self.timed(self.fetch_rules(&filter)).await
    }

    async fn export(&self) -> Result<PolicySnapshot, StoreError> {
        self.timed(self.snapshot()).await
    }

    async fn import(&self, snapshot: PolicySnapshot) -> Result<(), StoreError> {
        write_tx!(self, |conn| writes::import(conn, &snapshot))
    }
}
