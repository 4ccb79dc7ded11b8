//! [`SqlStore`]: the store type of the three sqlx backends, with their
//! `Store` and `AdminStore` impls.
//!
//! Every call is bounded by the configured timeout (expiry is `Timeout`,
//! kind Unavailable), and the pool's acquire timeout is the same value.
//! Each write is one transaction (see `writes`); listings of users and
//! roles, and exports, read in one read transaction (see `reads`).

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrate;
use sqlx::pool::PoolConnection;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Type};
use warden_policy::{PolicyVersion, Rule, RuleId, RuleSet, RuleSpec};

use crate::error::StoreError;
use crate::store::{
    AdminChange, AdminStore, ChangeFeed, ChangeQuery, Migrated, NewAdminChange, NewUser,
    PolicySnapshot, PrincipalKey, RoleRecord, RuleFilter, Store, UserPatch, UserRecord,
};

use super::dialect::{Args, Conn, Dialect, Row};
use super::queries as q;
use super::rows;
use super::writes::WriteTx;

/// A policy store in an SQL database; `D` says which one.
#[derive(Debug, Clone)]
pub struct SqlStore<D: Dialect> {
    pool: Pool<D::Db>,
    timeout: Duration,
    dialect: D,
}

impl<D: Dialect> SqlStore<D> {
    /// A store on `pool`, which should wait at most `timeout` for a
    /// connection. Nothing is migrated yet.
    pub(crate) fn new(pool: Pool<D::Db>, timeout: Duration, dialect: D) -> SqlStore<D> {
        SqlStore {
            pool,
            timeout,
            dialect,
        }
    }

    async fn timed<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        crate::error::within(D::BACKEND, self.timeout, work).await
    }

    pub(super) async fn conn(&self) -> Result<PoolConnection<D::Db>, StoreError> {
        self.pool.acquire().await.map_err(D::acquire_error)
    }
}

#[async_trait]
impl<D> Store for SqlStore<D>
where
    D: Dialect,
    for<'e> &'e mut Conn<D>: Executor<'e, Database = D::Db>,
    for<'q> Args<'q, D>: IntoArguments<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> String: Decode<'q, D::Db> + Type<D::Db>,
    for<'q> &'q str: ColumnIndex<Row<D>> + Encode<'q, D::Db> + Type<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    fn backend(&self) -> &'static str {
        D::BACKEND
    }

    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.timed(async { D::user(&mut *self.conn().await?, username).await })
            .await
    }

    async fn rules_for(&self, key: &PrincipalKey) -> Result<RuleSet, StoreError> {
        self.timed(async {
            D::rules_for(&mut *self.conn().await?, key)
                .await
                .map(RuleSet)
        })
        .await
    }

    async fn policy_version(&self) -> Result<PolicyVersion, StoreError> {
        self.timed(async {
            let version: i64 = sqlx::query_scalar(q::SELECT_VERSION)
                .fetch_one(&mut *self.conn().await?)
                .await
                .map_err(D::db)?;
            u64::try_from(version)
                .map(PolicyVersion)
                .map_err(|_| StoreError::corrupt("policy_version", "negative"))
        })
        .await
    }

    fn changes(&self) -> ChangeFeed {
        self.dialect.changes(self.timeout)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(async {
            sqlx::query(q::PING)
                .execute(&mut *self.conn().await?)
                .await
                .map_err(D::db)?;
            Ok(())
        })
        .await
    }

    async fn admin_changes(&self, query: ChangeQuery) -> Result<Vec<AdminChange>, StoreError> {
        // Ids are BIGINT: a cursor beyond i64 matches nothing anyway.
        let after = i64::try_from(query.after).unwrap_or(i64::MAX);
        self.timed(async {
            sqlx::query(D::SQL.select_admin_changes)
                .bind(after)
                .bind(query.since_ms)
                .fetch_all(&mut *self.conn().await?)
                .await
                .map_err(D::db)?
                .iter()
                .map(rows::admin_change::<D>)
                .collect()
        })
        .await
    }

    async fn replace_password_hash(
        &self,
        username: &str,
        expected: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        self.timed(async {
            let result = sqlx::query(D::SQL.replace_password_hash)
                .bind(new_hash)
                .bind(username)
                .bind(expected)
                .execute(&mut *self.conn().await?)
                .await
                .map_err(D::db)?;
            Ok(D::rows_affected(&result) == 1)
        })
        .await
    }
}

/// One write transaction, within the timeout: begin (bumping the version),
/// run `$body` on the open transaction `$tx`, commit or roll back. A macro
/// rather than a function taking a closure: the closure's future would
/// borrow both the transaction and the caller's arguments, which a closure
/// type cannot say while keeping the future `Send`.
macro_rules! write_tx {
    ($self:ident, |$tx:ident| $body:expr) => {
        $self
            .timed(async {
                let mut conn = $self.conn().await?;
                let mut $tx = WriteTx::<D>::begin(&mut *conn).await?;
                let out = $body.await;
                $tx.finish(out).await
            })
            .await
    };
}

#[async_trait]
impl<D> AdminStore for SqlStore<D>
where
    D: Dialect,
    Conn<D>: Migrate,
    for<'e> &'e mut Conn<D>: Executor<'e, Database = D::Db>,
    for<'q> Args<'q, D>: IntoArguments<'q, D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db> + ColumnIndex<Row<D>>,
    for<'q> Option<&'q str>: Encode<'q, D::Db>,
    for<'q> Option<bool>: Encode<'q, D::Db>,
    for<'q> Option<i16>: Encode<'q, D::Db>,
    for<'q> bool: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> i16: Decode<'q, D::Db> + Type<D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> String: Decode<'q, D::Db> + Type<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    /// Reports as applied the migrations that were missing before the run
    /// (another process migrating at the same moment may have applied some).
    async fn migrate(&self) -> Result<Migrated, StoreError> {
        self.timed(async {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(D::migrate_acquire_error)?;
            let failed = |e| StoreError::from_migrate(D::BACKEND, e);
            conn.ensure_migrations_table().await.map_err(failed)?;
            let before: Vec<i64> = conn
                .list_applied_migrations()
                .await
                .map_err(failed)?
                .iter()
                .map(|m| m.version)
                .collect();
            let migrator = D::migrator();
            migrator.run_direct(&mut *conn).await.map_err(failed)?;
            let ups = || {
                migrator
                    .iter()
                    .filter(|m| m.migration_type.is_up_migration())
            };
            Ok(Migrated {
                applied: ups()
                    .filter(|m| !before.contains(&m.version))
                    .map(|m| format!("{:04} {}", m.version, m.description))
                    .collect(),
                version: ups().filter_map(|m| u64::try_from(m.version).ok()).max(),
            })
        })
        .await
    }

    async fn create_user(&self, user: NewUser) -> Result<(), StoreError> {
        write_tx!(self, |tx| tx.create_user(&user))
    }

    async fn update_user(&self, username: &str, patch: UserPatch) -> Result<(), StoreError> {
        write_tx!(self, |tx| tx.update_user(username, &patch))
    }

    async fn delete_user(&self, username: &str) -> Result<(), StoreError> {
        write_tx!(self, |tx| tx.delete_user(username))
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.timed(self.fetch_users()).await
    }

    async fn create_role(&self, name: &str) -> Result<(), StoreError> {
        write_tx!(self, |tx| tx.create_role(name))
    }

    async fn delete_role(&self, name: &str) -> Result<(), StoreError> {
        write_tx!(self, |tx| tx.delete_role(name))
    }

    async fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        self.timed(self.fetch_roles()).await
    }

    async fn grant(&self, role: &str, username: &str) -> Result<(), StoreError> {
        write_tx!(self, |tx| tx.grant(role, username))
    }

    async fn revoke(&self, role: &str, username: &str) -> Result<(), StoreError> {
        write_tx!(self, |tx| tx.revoke(role, username))
    }

    async fn add_rule(&self, spec: RuleSpec) -> Result<RuleId, StoreError> {
        write_tx!(self, |tx| tx.add_rule(&spec))
    }

    async fn remove_rule(&self, id: RuleId) -> Result<(), StoreError> {
        write_tx!(self, |tx| tx.remove_rule(id))
    }

    async fn list_rules(&self, filter: RuleFilter) -> Result<Vec<Rule>, StoreError> {
        self.timed(self.fetch_rules(&filter)).await
    }

    async fn export(&self) -> Result<PolicySnapshot, StoreError> {
        self.timed(self.snapshot()).await
    }

    async fn import(&self, snapshot: PolicySnapshot) -> Result<(), StoreError> {
        write_tx!(self, |tx| tx.import(&snapshot))
    }

    async fn record_admin_change(&self, change: NewAdminChange) -> Result<(), StoreError> {
        write_tx!(self, |tx| tx.record_admin_change(&change))
    }
}
