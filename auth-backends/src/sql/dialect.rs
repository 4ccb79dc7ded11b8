//! [`Dialect`]: what one sqlx backend brings to [`super::SqlStore`].

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Row as _, Type};
use warden_policy::Rule;

use crate::error::StoreError;
use crate::store::{validate_name, ChangeFeed, PrincipalKey, UserRecord};

use super::queries::Sql;

/// The driver's connection type, which every statement runs on.
pub type Conn<D> = <<D as Dialect>::Db as Database>::Connection;
/// The driver's row type.
pub type Row<D> = <<D as Dialect>::Db as Database>::Row;
/// The driver's bound parameters.
pub type Args<'q, D> = <<D as Dialect>::Db as Database>::Arguments<'q>;
/// What the driver reports after a statement.
pub type QueryResult<D> = <<D as Dialect>::Db as Database>::QueryResult;

/// One SQL backend: its sqlx driver, its SQL text and the few behaviours in
/// which the stores really differ. The defaults are the SQLite store's.
///
/// A value of this type travels inside the store, so a dialect can keep
/// what only it needs (PostgreSQL keeps its connect options for the change
/// feed's own connection).
pub trait Dialect: Clone + Debug + Send + Sync + 'static {
    type Db: Database;

    /// "sqlite", "postgres", "mysql": for errors, logs and `Store::backend`.
    const BACKEND: &'static str;

    /// The dialect's statements.
    const SQL: Sql;

    /// The embedded migrations, applied by `AdminStore::migrate`.
    fn migrator() -> &'static Migrator;

    /// Classify a driver error. The default is sqlx's shared
    /// classification; a dialect adds its own server codes.
    fn db(err: sqlx::Error) -> StoreError {
        StoreError::from_sqlx(Self::BACKEND, err)
    }

    /// Classify a failure to get a pooled connection.
    fn acquire_error(err: sqlx::Error) -> StoreError {
        Self::db(err)
    }

    /// Classify a failure to get the connection that migrations run on.
    /// The default is how sqlx's `Migrator::run` reports it.
    fn migrate_acquire_error(err: sqlx::Error) -> StoreError {
        StoreError::from_sqlx(Self::BACKEND, err)
    }

    /// Check a user or role name before it is written; a dialect whose
    /// columns are narrower than [`validate_name`] allows adds its limit.
    fn check_name(field: &'static str, name: &str) -> Result<(), StoreError> {
        validate_name(field, name)
    }

    /// A text column as a `String`.
    fn text(row: &Row<Self>, column: &'static str) -> Result<String, StoreError>
    where
        for<'r> String: Decode<'r, Self::Db> + Type<Self::Db>,
        &'static str: ColumnIndex<Row<Self>>,
    {
        row.try_get(column).map_err(Self::db)
    }

    /// A nullable text column.
    fn opt_text(row: &Row<Self>, column: &'static str) -> Result<Option<String>, StoreError>
    where
        for<'r> String: Decode<'r, Self::Db> + Type<Self::Db>,
        &'static str: ColumnIndex<Row<Self>>,
    {
        row.try_get(column).map_err(Self::db)
    }

    /// Rows an UPDATE matched or a DELETE removed.
    fn rows_affected(result: &QueryResult<Self>) -> u64;

    /// Run `query`, the dialect's `insert_rule` with its parameters bound,
    /// and return the id the database gave the new rule.
    fn insert_rule<'q>(
        conn: &mut Conn<Self>,
        query: Query<'q, Self::Db, Args<'q, Self>>,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// The login path's lookup: the user with its sorted roles.
    fn user<'a>(
        conn: &'a mut Conn<Self>,
        username: &'a str,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send + 'a;

    /// The rules of the user, of any of the roles, and of everyone, by id.
    fn rules_for<'a>(
        conn: &'a mut Conn<Self>,
        key: &'a PrincipalKey,
    ) -> impl Future<Output = Result<Vec<Rule>, StoreError>> + Send + 'a;

    /// How the broker learns that the policy changed; `timeout` bounds
    /// each call a push feed makes.
    fn changes(&self, timeout: Duration) -> ChangeFeed;
}
