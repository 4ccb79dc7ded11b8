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
//! (`sslmode=require`, via rustls). The transactions, listings and exports
//! are `crate::sql`'s; this module holds what is PostgreSQL's own.

mod errors;
mod queries;
mod watch;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgQueryResult};
use sqlx::query::Query;
use sqlx::{ConnectOptions, PgConnection, Postgres, Row};
use warden_policy::Rule;

use crate::error::StoreError;
use crate::sql::{self, Dialect, Sql, SqlStore};
use crate::store::{AdminStore, ChangeFeed, PrincipalKey, UserRecord};
use errors::db;
use queries as q;

pub use watch::FALLBACK_POLL;

const BACKEND: &str = "postgres";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// A policy store in one PostgreSQL database.
pub type PostgresStore = SqlStore<PostgresDialect>;

impl PostgresStore {
    /// Connect (at most `pool` connections, each wait bounded by `timeout`)
    /// and migrate. A malformed URL is `Invalid`; a server that cannot be
    /// reached within `timeout` is `Unavailable`.
    pub async fn open(
        url: &str,
        pool: u32,
        timeout: Duration,
    ) -> Result<PostgresStore, StoreError> {
        let store = Self::connect(url, pool, timeout).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// As [`Self::open`], without applying the schema: for `warden migrate`,
    /// which applies it itself to report what it did.
    pub async fn connect(
        url: &str,
        pool: u32,
        timeout: Duration,
    ) -> Result<PostgresStore, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(db)?
            .application_name("warden")
            .disable_statement_logging();
        let addr = sql::reach::address(
            options.get_host(),
            options.get_port(),
            options.get_socket().map(|p| p.as_path()),
        );
        sql::reach::reach(BACKEND, &addr, timeout, options.connect(), db).await?;
        let pool = PgPoolOptions::new()
            .max_connections(pool.max(1))
            .acquire_timeout(timeout)
            .connect_lazy_with(options.clone());
        Ok(SqlStore::new(pool, timeout, PostgresDialect { options }))
    }
}

/// What the PostgreSQL store does its own way.
#[derive(Debug, Clone)]
pub struct PostgresDialect {
    /// Kept for the change feed's own connection.
    options: PgConnectOptions,
}

impl Dialect for PostgresDialect {
    type Db = Postgres;
    const BACKEND: &'static str = BACKEND;
    const SQL: Sql = q::SQL;

    fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    fn db(err: sqlx::Error) -> StoreError {
        db(err)
    }

    fn acquire_error(err: sqlx::Error) -> StoreError {
        errors::acquire_error(err)
    }

    // Migrations run on a connection taken like any other, so that a
    // server that cannot be reached is classified the same way.
    fn migrate_acquire_error(err: sqlx::Error) -> StoreError {
        errors::acquire_error(err)
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn insert_rule<'q>(
        conn: &mut PgConnection,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Result<i64, StoreError> {
        // The statement ends in RETURNING id.
        let row = query.fetch_one(conn).await.map_err(db)?;
        row.try_get(0).map_err(db)
    }

    async fn user(
        conn: &mut PgConnection,
        username: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let Some(row) = sqlx::query(q::SELECT_USER_WITH_ROLES)
            .bind(username)
            .fetch_optional(conn)
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let mut user = sql::user::<Self>(&row)?;
        user.roles = row.try_get("roles").map_err(db)?;
        Ok(Some(user))
    }

    async fn rules_for(
        conn: &mut PgConnection,
        key: &PrincipalKey,
    ) -> Result<Vec<Rule>, StoreError> {
        sqlx::query(q::SELECT_RULES_FOR)
            .bind(key.username.as_deref())
            .bind(&key.roles)
            .fetch_all(conn)
            .await
            .map_err(db)?
            .iter()
            .map(sql::rule::<Self>)
            .collect()
    }

    fn changes(&self, timeout: Duration) -> ChangeFeed {
        watch::feed(self.options.clone(), timeout)
    }
}
