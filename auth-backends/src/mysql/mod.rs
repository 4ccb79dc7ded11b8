//! The MySQL/MariaDB store: a sqlx pool on one database (InnoDB), shared by
//! any number of brokers (reads) and CLIs (writes).
//!
//! Schema (migrations/mysql/): `users`, `roles`, `memberships` (foreign keys
//! to both, ON DELETE CASCADE), `rules` (AUTO_INCREMENT id, subject as kind +
//! name) and the one-row `policy_version`. Names are VARBINARY(1020): compared
//! byte for byte like the other stores, and at most [`MAX_NAME_BYTES`] long
//! (longer names are refused as `Invalid`).
//!
//! Atomicity: every write is one InnoDB transaction whose first statement
//! bumps `policy_version`. That row lock serialises writers (so check-then-
//! insert races and lock-order deadlocks between writers cannot happen), and
//! the reads that follow see every earlier commit. An error or a timeout
//! rolls back the whole write, bump included, so the version moves exactly
//! when something was committed. MySQL DDL is not transactional: migrations
//! are not atomic, which is why there is one table per statement and sqlx
//! records a failed migration as dirty.
//!
//! Change feed: [`ChangeFeed::Poll`] every [`POLL_INTERVAL`] (MySQL has no
//! notifications). Every call is bounded by the configured timeout; pool
//! acquisition uses the same limit. TLS follows the URL (`?ssl-mode=required`).

mod queries;
mod rows;
mod watch;
mod writes;

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{ConnectOptions, Executor, MySql, MySqlConnection, Transaction};
use warden_policy::{PolicyVersion, Rule, RuleId, RuleSet, RuleSpec};

use crate::error::StoreError;
use crate::store::{
    AdminStore, ChangeFeed, Membership, NewUser, PolicySnapshot, PrincipalKey, RoleRecord,
    RuleFilter, SnapshotUser, Store, UserPatch, UserRecord,
};
use queries as q;
use rows::{db, text};

pub use rows::MAX_NAME_BYTES;
pub use watch::POLL_INTERVAL;

const BACKEND: &str = "mysql";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/mysql");

/// A policy store in a MySQL or MariaDB database.
#[derive(Debug, Clone)]
pub struct MysqlStore {
    pool: MySqlPool,
    timeout: Duration,
}

impl MysqlStore {
    /// Connect (`url`: `mysql://user:pass@host:3306/db`), apply migrations.
    /// The database must exist. `pool` caps the connections; `timeout`
    /// bounds the opening and every later call.
    pub async fn open(url: &str, pool: u32, timeout: Duration) -> Result<MysqlStore, StoreError> {
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|e| StoreError::invalid("store.url", e.to_string()))?
            .disable_statement_logging();
        let pool = MySqlPoolOptions::new()
            .max_connections(pool.max(1))
            .acquire_timeout(timeout)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(q::STRICT_MODE).await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        let store = MysqlStore { pool, timeout };
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

    /// Begin a write: the bump comes first (see the module docs).
    async fn begin(&self) -> Result<Transaction<'static, MySql>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(q::BUMP_VERSION)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        Ok(tx)
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

    async fn fetch_users_on(conn: &mut MySqlConnection) -> Result<Vec<UserRecord>, StoreError> {
        sqlx::query(q::SELECT_USERS)
            .fetch_all(conn)
            .await
            .map_err(db)?
            .iter()
            .map(rows::user)
            .collect()
    }

    async fn fetch_role_names_on(conn: &mut MySqlConnection) -> Result<Vec<String>, StoreError> {
        sqlx::query(q::SELECT_ROLES)
            .fetch_all(conn)
            .await
            .map_err(db)?
            .iter()
            .map(|row| text(row, "name"))
            .collect()
    }

    async fn fetch_memberships_on(
        conn: &mut MySqlConnection,
    ) -> Result<Vec<Membership>, StoreError> {
        let rows = sqlx::query(q::SELECT_MEMBERSHIPS)
            .fetch_all(conn)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| {
                Ok(Membership {
                    role: text(row, "role")?,
                    username: text(row, "username")?,
                })
            })
            .collect()
    }

    async fn fetch_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut users = Self::fetch_users_on(&mut conn).await?;
        for m in Self::fetch_memberships_on(&mut conn).await? {
            if let Ok(i) = users.binary_search_by(|u| u.username.as_str().cmp(&m.username)) {
                users[i].roles.push(m.role);
            }
        }
        Ok(users)
    }

    async fn fetch_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut roles: Vec<RoleRecord> = Self::fetch_role_names_on(&mut conn)
            .await?
            .into_iter()
            .map(|name| RoleRecord {
                name,
                members: Vec::new(),
            })
            .collect();
        for m in Self::fetch_memberships_on(&mut conn).await? {
            if let Ok(i) = roles.binary_search_by(|r| r.name.as_str().cmp(&m.role)) {
                roles[i].members.push(m.username);
            }
        }
        Ok(roles)
    }

    /// Users, roles, memberships and rules read in one REPEATABLE READ,
    /// read-only transaction, so the snapshot is consistent while others
    /// write, whatever the server's default isolation level.
    async fn snapshot(&self) -> Result<PolicySnapshot, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        sqlx::query(q::SNAPSHOT_ISOLATION)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db)?;
        let users = Self::fetch_users_on(&mut tx).await?;
        let roles = Self::fetch_role_names_on(&mut tx).await?;
        let memberships = Self::fetch_memberships_on(&mut tx).await?;
        let rules = sqlx::query(q::SELECT_RULES)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        tx.rollback().await.map_err(db)?;
        Ok(PolicySnapshot {
            users: users
                .into_iter()
                .map(|u| SnapshotUser {
                    username: u.username,
                    password_hash: u.password_hash,
                    enabled: u.enabled,
                    superuser: u.superuser,
                })
                .collect(),
            roles,
            memberships,
            rules: rules.iter().map(rows::rule).collect::<Result<_, _>>()?,
        })
    }
}

#[async_trait]
impl Store for MysqlStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.timed(async {
            let rows = sqlx::query(q::SELECT_USER_WITH_ROLES)
                .bind(username)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let mut user = rows::user(first)?;
            user.roles = rows
                .iter()
                .filter_map(|row| rows::opt_text(row, "role").transpose())
                .collect::<Result<_, _>>()?;
            Ok(Some(user))
        })
        .await
    }

    async fn rules_for(&self, key: &PrincipalKey) -> Result<RuleSet, StoreError> {
        let sql = q::select_rules_for(key.roles.len());
        self.timed(async {
            let mut query = sqlx::query(&sql).bind(key.username.as_deref());
            for role in &key.roles {
                query = query.bind(role.as_str());
            }
            let rows = query.fetch_all(&self.pool).await.map_err(db)?;
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

/// One write transaction: begin (bumping the version), run `$body` on the
/// connection, commit.
macro_rules! write_tx {
    ($self:ident, |$conn:ident| $body:expr) => {
        $self
            .timed(async {
                let mut tx = $self.begin().await?;
                let $conn: &mut MySqlConnection = &mut tx;
                match $body.await {
                    Ok(out) => {
                        tx.commit().await.map_err(db)?;
                        Ok(out)
                    }
                    Err(e) => {
                        // Roll back now rather than when the pool next
                        // touches the connection: until then the open
                        // transaction would hold its row and table locks.
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            })
            .await
    };
}

#[async_trait]
impl AdminStore for MysqlStore {
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
