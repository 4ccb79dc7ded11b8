//! The reads of listings and exports. Users, roles and memberships (and,
//! for an export, rules) are read in one read transaction, so that they agree
//! with each other while another process writes: REPEATABLE READ on
//! PostgreSQL and MySQL, a deferred transaction (one WAL snapshot) on SQLite.

use sqlx::{ColumnIndex, Connection, Decode, Encode, Executor, IntoArguments, Transaction, Type};
use warden_policy::Rule;

use crate::error::StoreError;
use crate::store::{Membership, PolicySnapshot, RoleRecord, RuleFilter, SnapshotUser, UserRecord};

use super::dialect::{Args, Conn, Dialect, Row};
use super::queries as q;
use super::rows;
use super::SqlStore;

impl<D> SqlStore<D>
where
    D: Dialect,
    for<'e> &'e mut Conn<D>: Executor<'e, Database = D::Db>,
    for<'q> Args<'q, D>: IntoArguments<'q, D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db> + ColumnIndex<Row<D>>,
    for<'r> bool: Decode<'r, D::Db> + Type<D::Db>,
    for<'r> i16: Decode<'r, D::Db> + Type<D::Db>,
    for<'r> i64: Decode<'r, D::Db> + Type<D::Db>,
    for<'r> String: Decode<'r, D::Db> + Type<D::Db>,
{
    /// The read transaction of listings and exports.
    async fn read_tx(conn: &mut Conn<D>) -> Result<Transaction<'_, D::Db>, StoreError> {
        if let Some(sql) = D::SQL.before_read {
            sqlx::query(sql).execute(&mut *conn).await.map_err(D::db)?;
        }
        match D::SQL.begin_read {
            Some(sql) => conn.begin_with(sql).await,
            None => conn.begin().await,
        }
        .map_err(D::db)
    }

    async fn users_on(conn: &mut Conn<D>) -> Result<Vec<UserRecord>, StoreError> {
        sqlx::query(q::SELECT_USERS)
            .fetch_all(conn)
            .await
            .map_err(D::db)?
            .iter()
            .map(rows::user::<D>)
            .collect()
    }

    async fn role_names_on(conn: &mut Conn<D>) -> Result<Vec<String>, StoreError> {
        sqlx::query(q::SELECT_ROLES)
            .fetch_all(conn)
            .await
            .map_err(D::db)?
            .iter()
            .map(|row| D::text(row, "name"))
            .collect()
    }

    async fn memberships_on(conn: &mut Conn<D>) -> Result<Vec<Membership>, StoreError> {
        sqlx::query(q::SELECT_MEMBERSHIPS)
            .fetch_all(conn)
            .await
            .map_err(D::db)?
            .iter()
            .map(|row| {
                Ok(Membership {
                    role: D::text(row, "role")?,
                    username: D::text(row, "username")?,
                })
            })
            .collect()
    }

    async fn rules_on(conn: &mut Conn<D>) -> Result<Vec<Rule>, StoreError> {
        sqlx::query(q::SELECT_RULES)
            .fetch_all(conn)
            .await
            .map_err(D::db)?
            .iter()
            .map(rows::rule::<D>)
            .collect()
    }

    pub(super) async fn fetch_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = Self::read_tx(&mut conn).await?;
        let mut users = Self::users_on(&mut tx).await?;
        for m in Self::memberships_on(&mut tx).await? {
            if let Ok(i) = users.binary_search_by(|u| u.username.as_str().cmp(&m.username)) {
                users[i].roles.push(m.role);
            }
        }
        tx.rollback().await.map_err(D::db)?;
        Ok(users)
    }

    pub(super) async fn fetch_roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = Self::read_tx(&mut conn).await?;
        let mut roles: Vec<RoleRecord> = Self::role_names_on(&mut tx)
            .await?
            .into_iter()
            .map(|name| RoleRecord {
                name,
                members: Vec::new(),
            })
            .collect();
        for m in Self::memberships_on(&mut tx).await? {
            if let Ok(i) = roles.binary_search_by(|r| r.name.as_str().cmp(&m.role)) {
                roles[i].members.push(m.username);
            }
        }
        tx.rollback().await.map_err(D::db)?;
        Ok(roles)
    }

    pub(super) async fn fetch_rules(&self, filter: &RuleFilter) -> Result<Vec<Rule>, StoreError> {
        let mut conn = self.conn().await?;
        let Some(subject) = &filter.subject else {
            return Self::rules_on(&mut conn).await;
        };
        let (kind, name) = crate::common::subject_columns(subject);
        sqlx::query(D::SQL.select_rules_by_subject)
            .bind(kind)
            .bind(name)
            .fetch_all(&mut *conn)
            .await
            .map_err(D::db)?
            .iter()
            .map(rows::rule::<D>)
            .collect()
    }

    pub(super) async fn snapshot(&self) -> Result<PolicySnapshot, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = Self::read_tx(&mut conn).await?;
        let users = Self::users_on(&mut tx).await?;
        let roles = Self::role_names_on(&mut tx).await?;
        let memberships = Self::memberships_on(&mut tx).await?;
        let rules = Self::rules_on(&mut tx).await?;
        tx.rollback().await.map_err(D::db)?;
        Ok(PolicySnapshot {
            users: users
                .into_iter()
                .map(|u| SnapshotUser {
                    username: u.username,
                    password_hash: u.password_hash,
                    enabled: u.enabled,
                    superuser: u.superuser,
                    cert_fingerprint: u.cert_fingerprint,
                })
                .collect(),
            roles,
            memberships,
            rules,
        })
    }
}
