//! The SQLite store: one database file shared by the broker (reads) and the
//! CLI (writes), possibly at the same time from two processes.
//!
//! WAL mode lets readers go on while a writer commits; `busy_timeout` makes
//! a second writer wait instead of failing; write transactions start with
//! `BEGIN IMMEDIATE` so that two writers never deadlock upgrading a read
//! lock. Every call is bounded by the configured timeout. The transactions,
//! listings and exports are `crate::sql`'s; this module holds what is
//! SQLite's own.

mod queries;
mod watch;

use std::path::Path;
use std::time::Duration;

use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Sqlite, SqliteConnection};
use warden_policy::Rule;

use crate::error::StoreError;
use crate::sql::{self, Dialect, Sql, SqlStore};
use crate::store::{AdminStore, ChangeFeed, PrincipalKey, UserRecord};
use queries as q;

pub use watch::POLL_INTERVAL;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// A policy store in one SQLite file.
pub type SqliteStore = SqlStore<SqliteDialect>;

impl SqliteStore {
    /// Open (creating the file if missing) and migrate. The parent
    /// directory must exist. `timeout` bounds every later call.
    pub async fn open(path: &Path, timeout: Duration) -> Result<SqliteStore, StoreError> {
        let store = Self::connect(path, timeout).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// As [`Self::open`], without applying the schema: for `warden migrate`,
    /// which applies it itself to report what it did.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(timeout)
            .foreign_keys(true)
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(timeout)
            .connect_lazy_with(options);
        Ok(SqlStore::new(pool, timeout, SqliteDialect))
    }
}

/// What the SQLite store does its own way.
#[derive(Debug, Clone, Copy)]
pub struct SqliteDialect;

impl Dialect for SqliteDialect {
    type Db = Sqlite;
    const BACKEND: &'static str = "sqlite";
    const SQL: Sql = q::SQL;

    fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn insert_rule<'q>(
        conn: &mut SqliteConnection,
        query: Query<'q, Sqlite, SqliteArguments<'q>>,
    ) -> Result<i64, StoreError> {
        let result = query.execute(conn).await.map_err(Self::db)?;
        Ok(result.last_insert_rowid())
    }

    async fn user(
        conn: &mut SqliteConnection,
        username: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let Some(row) = sqlx::query(q::SELECT_USER)
            .bind(username)
            .fetch_optional(&mut *conn)
            .await
            .map_err(Self::db)?
        else {
            return Ok(None);
        };
        let mut user = sql::user::<Self>(&row)?;
        user.roles = sqlx::query_scalar(q::SELECT_USER_ROLES)
            .bind(username)
            .fetch_all(conn)
            .await
            .map_err(Self::db)?;
        Ok(Some(user))
    }

    async fn rules_for(
        conn: &mut SqliteConnection,
        key: &PrincipalKey,
    ) -> Result<Vec<Rule>, StoreError> {
        let roles = serde_json::to_string(&key.roles)
            .map_err(|e| StoreError::invalid("roles", e.to_string()))?;
        sqlx::query(q::SELECT_RULES_FOR)
            .bind(key.username.as_deref())
            .bind(roles)
            .fetch_all(conn)
            .await
            .map_err(Self::db)?
            .iter()
            .map(sql::rule::<Self>)
            .collect()
    }

    fn changes(&self, _timeout: Duration) -> ChangeFeed {
        watch::feed()
    }
}
