//! The PostgreSQL store: a sqlx pool shared by the broker's reads and the
//! CLI's writes, with LISTEN/NOTIFY as the change feed.
//!
//! Schema (migrations/postgres/, applied by `open` and `migrate`): `users`,
//! `roles`, `memberships` (cascading from both), `rules` (an identity id that
//! is never reused) and the one-row `policy_version`. Names are
//! `COLLATE "C"` so that listings sort by bytes as in every other backend.
//!
//! Atomicity: every write is one transaction whose FIRST statement bumps
//! `policy_version` and calls `pg_notify('warden_policy', <new version>)`.
//! The bump takes the version row's lock, so writers run one at a time and
//! read-then-write checks (a role's member count, a duplicate user) cannot
//! race; PostgreSQL sends the notification only if the transaction commits,
//! and a rollback undoes the bump. Exports read in one REPEATABLE READ
//! transaction. Every call is bounded by the configured timeout, and the
//! pool's acquire timeout is the same value. TLS follows the URL
//! (`sslmode=require`, via rustls).

mod queries;
mod rows;
mod watch;
mod writes;

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, Postgres, Row, Transaction};
use warden_policy::{PolicyVersion, Rule, RuleId, RuleSet, RuleSpec};

use crate::error::StoreError;
use crate::store::{
    AdminStore, ChangeFeed, Membership, NewUser, PolicySnapshot, PrincipalKey, RoleRecord,
    RuleFilter, SnapshotUser, Store, UserPatch, UserRecord,
};
use queries as q;
use rows::db;

pub use watch::FALLBACK_POLL;

const BACKEND: &str = "postgres";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// A policy store in one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Kept for the change feed's own connection.
    options: PgConnectOptions,
    timeout: Duration,
}

impl PostgresStore {
    /// Connect (at most `pool` connections, each wait bounded by `timeout`)
    /// and migrate. A malformed URL is `Invalid`; a server that cannot be
    /// reached within `timeout` is `Unavailable`.
    pub async fn open(
        url: &str,
        pool: u32,
        timeout: Duration,
    ) -> Result<PostgresStore, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(db)?
            .application_name("warden")
            .disable_statement_logging();
        let store = PostgresStore {
            pool: PgPoolOptions::new()
                .max_connections(pool.max(1))
                .acquire_timeout(timeout)
                .connect_lazy_with(options.clone()),
            options,
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

    /// A pooled connection; failures to get one are classified by
    /// [`rows::acquire_error`].
    async fn conn(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        self.pool.acquire().await.map_err(rows::acquire_error)
    }

    /// Begin a write: the version bump comes first, see the module docs.
    async fn begin(conn: &mut PgConnection) -> Result<Transaction<'_, Postgres>, StoreError> {
        let mut tx = conn.begin().await.map_err(db)?;
        sqlx::query(q::BUMP_AND_NOTIFY)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        Ok(tx)
    }

    async fn fetch_rules(&self, filter: &RuleFilter) -> Result<Vec<Rule>, StoreError> {
        let mut conn = self.conn().await?;
        let rows = match &filter.subject {
            None => sqlx::query(q::SELECT_RULES).fetch_all(&mut *conn).await,
            Some(subject) => {
                let (kind, name) = crate::common::subject_columns(subject);
                sqlx::query(q::SELECT_RULES_BY_SUBJECT)
                    .bind(kind)
                    .bind(name)
                    .fetch_all(&mut *conn)
                    .await
            }
        }
        .map_err(db)?;
        rows.iter().map(rows::rule).collect()
    }

    async fn fetch_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = Self::read_tx(&mut conn).await?;
        let mut users = sqlx::query(q::SELECT_USERS)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            .iter()
            .map(rows::user)
            .collect::<Result<Vec<_>, _>>()?;
        for m in fetch_memberships_on(&mut tx).await? {
            if let Ok(i) = users.binary_search_by(|u| u.username.as_str().cmp(&m.username)) {
                users[i].roles.push(m.role);
            }
        }
        Ok(users)
    }

    async fn fetch_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = Self::read_tx(&mut conn).await?;
        let mut roles = sqlx::query(q::SELECT_ROLES)
            .fetch_all(&mut *tx)
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
        for m in fetch_memberships_on(&mut tx).await? {
            if let Ok(i) = roles.binary_search_by(|r| r.name.as_str().cmp(&m.role)) {
                roles[i].members.push(m.username);
            }
        }
        Ok(roles)
    }

    /// A read-only transaction that sees one snapshot for all its
    /// statements, so multi-table reads are consistent under writes.
    async fn read_tx(conn: &mut PgConnection) -> Result<Transaction<'_, Postgres>, StoreError> {
        conn.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(db)
    }

    async fn snapshot(&self) -> Result<PolicySnapshot, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = Self::read_tx(&mut conn).await?;
        let users = sqlx::query(q::SELECT_USERS)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let roles = sqlx::query(q::SELECT_ROLES)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let memberships = fetch_memberships_on(&mut tx).await?;
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

async fn fetch_memberships_on(conn: &mut PgConnection) -> Result<Vec<Membership>, StoreError> {
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

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.timed(async {
            let Some(row) = sqlx::query(q::SELECT_USER_WITH_ROLES)
                .bind(username)
                .fetch_optional(&mut *self.conn().await?)
                .await
                .map_err(db)?
            else {
                return Ok(None);
            };
            let mut user = rows::user(&row)?;
            user.roles = row.try_get("roles").map_err(db)?;
            Ok(Some(user))
        })
        .await
    }

    async fn rules_for(&self, key: &PrincipalKey) -> Result<RuleSet, StoreError> {
        self.timed(async {
            let rows = sqlx::query(q::SELECT_RULES_FOR)
                .bind(key.username.as_deref())
                .bind(&key.roles)
                .fetch_all(&mut *self.conn().await?)
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
                .fetch_one(&mut *self.conn().await?)
                .await
                .map_err(db)?;
            u64::try_from(version)
                .map(PolicyVersion)
                .map_err(|_| StoreError::corrupt("policy_version", "negative"))
        })
        .await
    }

    fn changes(&self) -> ChangeFeed {
        watch::feed(self.options.clone(), self.timeout)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(async {
            let mut conn = self.conn().await?;
            sqlx::query(q::PING).execute(&mut *conn).await.map_err(db)?;
            Ok(())
        })
        .await
    }
}

/// One write transaction: begin (bumping the version), run `$body`, commit.
macro_rules! write_tx {
    ($self:ident, |$conn:ident| $body:expr) => {
        $self
            .timed(async {
                let mut conn = $self.conn().await?;
                let mut tx = Self::begin(&mut conn).await?;
                let $conn: &mut PgConnection = &mut tx;
                let out = $body.await?;
                tx.commit().await.map_err(db)?;
                Ok(out)
            })
            .await
    };
}

#[async_trait]
impl AdminStore for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.timed(async {
            let mut conn = self.conn().await?;
            MIGRATOR
                .run_direct(&mut *conn)
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
