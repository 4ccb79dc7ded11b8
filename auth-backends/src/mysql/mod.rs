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
//! The transactions, listings and exports are `crate::sql`'s; this module
//! holds what is MySQL's own.

mod queries;
mod rows;
mod watch;

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{
    MySqlArguments, MySqlConnectOptions, MySqlPoolOptions, MySqlQueryResult, MySqlRow,
};
use sqlx::query::Query;
use sqlx::{ConnectOptions, Executor, MySql, MySqlConnection};
use warden_policy::Rule;

use crate::error::StoreError;
use crate::sql::{self, Dialect, Sql, SqlStore};
use crate::store::{AdminStore, ChangeFeed, PrincipalKey, UserRecord};
use queries as q;
use rows::db;

pub use rows::MAX_NAME_BYTES;
pub use watch::POLL_INTERVAL;

const BACKEND: &str = "mysql";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/mysql");

/// A policy store in a MySQL or MariaDB database.
pub type MysqlStore = SqlStore<MysqlDialect>;

impl MysqlStore {
    /// Connect (`url`: `mysql://user:pass@host:3306/db`), apply migrations.
    /// The database must exist. `pool` caps the connections; `timeout`
    /// bounds the opening and every later call.
    pub async fn open(url: &str, pool: u32, timeout: Duration) -> Result<MysqlStore, StoreError> {
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
    ) -> Result<MysqlStore, StoreError> {
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|e| StoreError::invalid("store.url", e.to_string()))?
            .disable_statement_logging();
        let addr = sql::reach::address(
            options.get_host(),
            options.get_port(),
            options.get_socket().map(|p| p.as_path()),
        );
        sql::reach::reach(BACKEND, &addr, timeout, options.connect(), db).await?;
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
        Ok(SqlStore::new(pool, timeout, MysqlDialect))
    }
}

/// What the MySQL store does its own way.
#[derive(Debug, Clone, Copy)]
pub struct MysqlDialect;

impl Dialect for MysqlDialect {
    type Db = MySql;
    const BACKEND: &'static str = BACKEND;
    const SQL: Sql = q::SQL;

    fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    fn db(err: sqlx::Error) -> StoreError {
        db(err)
    }

    fn check_name(field: &'static str, name: &str) -> Result<(), StoreError> {
        rows::check_name(field, name)
    }

    fn text(row: &MySqlRow, column: &'static str) -> Result<String, StoreError> {
        rows::text(row, column)
    }

    fn opt_text(row: &MySqlRow, column: &'static str) -> Result<Option<String>, StoreError> {
        rows::opt_text(row, column)
    }

    fn rows_affected(result: &MySqlQueryResult) -> u64 {
        result.rows_affected()
    }

    async fn insert_rule<'q>(
        conn: &mut MySqlConnection,
        query: Query<'q, MySql, MySqlArguments>,
    ) -> Result<i64, StoreError> {
        let result = query.execute(conn).await.map_err(db)?;
        i64::try_from(result.last_insert_id())
            .map_err(|_| StoreError::corrupt("rule", "id out of range"))
    }

    async fn user(
        conn: &mut MySqlConnection,
        username: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let rows = sqlx::query(q::SELECT_USER_WITH_ROLES)
            .bind(username)
            .fetch_all(conn)
            .await
            .map_err(db)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut user = sql::user::<Self>(first)?;
        user.roles = rows
            .iter()
            .filter_map(|row| rows::opt_text(row, "role").transpose())
            .collect::<Result<_, _>>()?;
        Ok(Some(user))
    }

    async fn rules_for(
        conn: &mut MySqlConnection,
        key: &PrincipalKey,
    ) -> Result<Vec<Rule>, StoreError> {
        let sql = q::select_rules_for(key.roles.len());
        let mut query = sqlx::query(&sql).bind(key.username.as_deref());
        for role in &key.roles {
            query = query.bind(role.as_str());
        }
        query
            .fetch_all(conn)
            .await
            .map_err(db)?
            .iter()
            .map(sql::rule::<Self>)
            .collect()
    }

    fn changes(&self, _timeout: Duration) -> ChangeFeed {
        watch::feed()
    }
}
