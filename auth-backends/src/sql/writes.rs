//! The write transactions. [`WriteTx::begin`] opens one and bumps the
//! policy version first: on PostgreSQL and MySQL that takes the version
//! row's lock, so writers run one at a time and the read-then-write checks
//! below (a duplicate user, a role's member count) cannot race; SQLite gets
//! the same from `BEGIN IMMEDIATE`. On PostgreSQL the bump also queues the
//! NOTIFY, which the server sends only if the transaction commits.
//! [`WriteTx::finish`] commits, or rolls back on an error, bump included.

use sqlx::{ColumnIndex, Connection, Decode, Encode, Executor, IntoArguments, Row as _, Type};
use warden_policy::{RuleId, RuleSpec, Subject};

use crate::common::{actions_text, effect_text, subject_columns};
use crate::error::StoreError;
use crate::store::{
    normalize_fingerprint, validate_snapshot, NewAdminChange, NewUser, PolicySnapshot, UserPatch,
};

use super::dialect::{Args, Conn, Dialect, Row};
use super::queries::CLEAR_ALL;
use super::rows::rule_id;

/// Rows per INSERT in an import: 8 parameters a rule row, so 8,000 a
/// statement, under every dialect's limit (SQLite's is 32,766).
const IMPORT_ROWS: usize = 1000;

/// An open write transaction.
pub(super) struct WriteTx<'c, D: Dialect> {
    tx: sqlx::Transaction<'c, D::Db>,
}

impl<'c, D> WriteTx<'c, D>
where
    D: Dialect,
    for<'e> &'e mut Conn<D>: Executor<'e, Database = D::Db>,
    for<'q> Args<'q, D>: IntoArguments<'q, D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<&'q str>: Encode<'q, D::Db>,
    for<'q> Option<bool>: Encode<'q, D::Db>,
    for<'q> Option<i16>: Encode<'q, D::Db>,
    for<'q> bool: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> i16: Type<D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    pub(super) async fn begin(conn: &'c mut Conn<D>) -> Result<Self, StoreError> {
        let mut tx = match D::SQL.begin_write {
            Some(sql) => conn.begin_with(sql).await,
            None => conn.begin().await,
        }
        .map_err(D::db)?;
        sqlx::query(D::SQL.bump_version)
            .execute(&mut *tx)
            .await
            .map_err(D::db)?;
        Ok(WriteTx { tx })
    }

    /// Commit if the body succeeded; otherwise roll back now rather than
    /// when the pool next touches the connection, since until then the open
    /// transaction would hold the version row's lock.
    pub(super) async fn finish<T>(self, out: Result<T, StoreError>) -> Result<T, StoreError> {
        match out {
            Ok(out) => {
                self.tx.commit().await.map_err(D::db)?;
                Ok(out)
            }
            Err(err) => {
                // The body's error is the one to report.
                let _ = self.tx.rollback().await;
                Err(err)
            }
        }
    }

    fn conn(&mut self) -> &mut Conn<D> {
        &mut self.tx
    }

    async fn execute(&mut self, sql: &'static str, key: &str) -> Result<u64, StoreError> {
        let result = sqlx::query(sql)
            .bind(key)
            .execute(self.conn())
            .await
            .map_err(D::db)?;
        Ok(D::rows_affected(&result))
    }

    async fn exists(&mut self, sql: &'static str, key: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(sql)
            .bind(key)
            .fetch_optional(self.conn())
            .await
            .map_err(D::db)?;
        Ok(row.is_some())
    }

    async fn require_user(&mut self, username: &str) -> Result<(), StoreError> {
        if self.exists(D::SQL.user_exists, username).await? {
            Ok(())
        } else {
            Err(StoreError::not_found("user", username))
        }
    }

    async fn ensure_role(&mut self, role: &str) -> Result<(), StoreError> {
        D::check_name("role", role)?;
        self.execute(D::SQL.insert_role_if_missing, role).await?;
        Ok(())
    }

    async fn exists_membership(&mut self, role: &str, username: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(D::SQL.membership_exists)
            .bind(role)
            .bind(username)
            .fetch_optional(self.conn())
            .await
            .map_err(D::db)?;
        Ok(row.is_some())
    }

    async fn insert_membership(&mut self, role: &str, username: &str) -> Result<(), StoreError> {
        sqlx::query(D::SQL.insert_membership)
            .bind(role)
            .bind(username)
            .execute(self.conn())
            .await
            .map_err(D::db)?;
        Ok(())
    }

    async fn insert_user(
        &mut self,
        username: &str,
        password_hash: Option<&str>,
        enabled: bool,
        superuser: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(D::SQL.insert_user)
            .bind(username)
            .bind(password_hash)
            .bind(enabled)
            .bind(superuser)
            .execute(self.conn())
            .await
            .map_err(D::db)?;
        Ok(())
    }

    pub(super) async fn create_user(&mut self, user: &NewUser) -> Result<(), StoreError> {
        D::check_name("username", &user.username)?;
        if self.exists(D::SQL.user_exists, &user.username).await? {
            return Err(StoreError::exists("user", &user.username));
        }
        let hash = user.password_hash.as_deref();
        self.insert_user(&user.username, hash, user.enabled, user.superuser)
            .await?;
        if let Some(pin) = &user.cert_fingerprint {
            self.set_cert_fingerprint(&user.username, Some(pin)).await?;
        }
        for role in &user.roles {
            self.ensure_role(role).await?;
            if self.exists_membership(role, &user.username).await? {
                return Err(StoreError::invalid(
                    "roles",
                    format!("{role:?} listed twice"),
                ));
            }
            self.insert_membership(role, &user.username).await?;
        }
        Ok(())
    }

    pub(super) async fn update_user(
        &mut self,
        username: &str,
        patch: &UserPatch,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(D::SQL.update_user)
            .bind(patch.password_hash.is_some())
            .bind(patch.password_hash.as_ref().and_then(Option::as_deref))
            .bind(patch.enabled)
            .bind(patch.superuser)
            .bind(username)
            .execute(self.conn())
            .await
            .map_err(D::db)?;
        if D::rows_affected(&result) == 0 {
            return Err(StoreError::not_found("user", username));
        }
        if let Some(pin) = &patch.cert_fingerprint {
            self.set_cert_fingerprint(username, pin.as_deref()).await?;
        }
        Ok(())
    }

    async fn set_cert_fingerprint(
        &mut self,
        username: &str,
        fingerprint: Option<&str>,
    ) -> Result<(), StoreError> {
        let fingerprint = fingerprint.map(normalize_fingerprint).transpose()?;
        sqlx::query(D::SQL.set_cert_fingerprint)
            .bind(fingerprint.as_deref())
            .bind(username)
            .execute(self.conn())
            .await
            .map_err(D::db)?;
        Ok(())
    }

    pub(super) async fn delete_user(&mut self, username: &str) -> Result<(), StoreError> {
        if self.execute(D::SQL.delete_user, username).await? == 0 {
            return Err(StoreError::not_found("user", username));
        }
        self.execute(D::SQL.delete_user_rules, username).await?;
        Ok(())
    }

    pub(super) async fn create_role(&mut self, name: &str) -> Result<(), StoreError> {
        D::check_name("role", name)?;
        if self.exists(D::SQL.role_exists, name).await? {
            return Err(StoreError::exists("role", name));
        }
        self.execute(D::SQL.insert_role, name).await?;
        Ok(())
    }

    pub(super) async fn delete_role(&mut self, name: &str) -> Result<(), StoreError> {
        if !self.exists(D::SQL.role_exists, name).await? {
            return Err(StoreError::not_found("role", name));
        }
        let members: i64 = sqlx::query(D::SQL.count_role_members)
            .bind(name)
            .fetch_one(self.conn())
            .await
            .and_then(|row| row.try_get(0))
            .map_err(D::db)?;
        if members > 0 {
            return Err(StoreError::Conflict {
                what: "role",
                name: name.to_owned(),
                reason: "still has members; revoke them first",
            });
        }
        self.execute(D::SQL.delete_role_rules, name).await?;
        self.execute(D::SQL.delete_role, name).await?;
        Ok(())
    }

    pub(super) async fn grant(&mut self, role: &str, username: &str) -> Result<(), StoreError> {
        self.require_user(username).await?;
        self.ensure_role(role).await?;
        if self.exists_membership(role, username).await? {
            return Err(StoreError::exists(
                "membership",
                format!("{role}/{username}"),
            ));
        }
        self.insert_membership(role, username).await
    }

    pub(super) async fn revoke(&mut self, role: &str, username: &str) -> Result<(), StoreError> {
        let result = sqlx::query(D::SQL.delete_membership)
            .bind(role)
            .bind(username)
            .execute(self.conn())
            .await
            .map_err(D::db)?;
        if D::rows_affected(&result) == 0 {
            return Err(StoreError::not_found(
                "membership",
                format!("{role}/{username}"),
            ));
        }
        Ok(())
    }

    /// Insert a rule; `id` is given on import (which keeps ids) and chosen
    /// by the database otherwise.
    async fn insert_rule(
        &mut self,
        spec: &RuleSpec,
        id: Option<RuleId>,
    ) -> Result<i64, StoreError> {
        let (kind, name) = subject_columns(&spec.subject);
        let actions = actions_text(spec.actions);
        let id = id
            .map(|id| {
                i64::try_from(id.0).map_err(|_| StoreError::invalid("rule id", "out of range"))
            })
            .transpose()?;
        let sql = match id {
            Some(_) => D::SQL.insert_rule_with_id,
            None => D::SQL.insert_rule,
        };
        let query = sqlx::query(sql)
            .bind(effect_text(spec.effect))
            .bind(kind)
            .bind(name)
            .bind(actions.as_str())
            .bind(spec.pattern.as_str())
            .bind(spec.max_qos.map(|qos| i16::from(qos.as_u8())))
            .bind(spec.retain);
        // PostgreSQL and MySQL refuse a bind count that differs from the
        // placeholders, so the id is bound only where the statement has one.
        match id {
            Some(id) => {
                query.bind(id).execute(self.conn()).await.map_err(D::db)?;
                Ok(id)
            }
            None => D::insert_rule(self.conn(), query).await,
        }
    }

    pub(super) async fn add_rule(&mut self, spec: &RuleSpec) -> Result<RuleId, StoreError> {
        spec.validate()?;
        match &spec.subject {
            Subject::User(name) => self.require_user(name).await?,
            Subject::Role(name) if !self.exists(D::SQL.role_exists, name).await? => {
                return Err(StoreError::not_found("role", name))
            }
            _ => {}
        }
        rule_id(self.insert_rule(spec, None).await?)
    }

    pub(super) async fn remove_rule(&mut self, id: RuleId) -> Result<(), StoreError> {
        let key = i64::try_from(id.0).map_err(|_| StoreError::not_found("rule", id.to_string()))?;
        let result = sqlx::query(D::SQL.delete_rule)
            .bind(key)
            .execute(self.conn())
            .await
            .map_err(D::db)?;
        if D::rows_affected(&result) == 0 {
            return Err(StoreError::not_found("rule", id.to_string()));
        }
        Ok(())
    }

    pub(super) async fn record_admin_change(
        &mut self,
        change: &NewAdminChange,
    ) -> Result<(), StoreError> {
        sqlx::query(D::SQL.insert_admin_change)
            .bind(change.at_ms)
            .bind(change.user.as_str())
            .bind(change.host.as_str())
            .bind(change.what.as_str())
            .execute(self.conn())
            .await
            .map_err(D::db)?;
        Ok(())
    }

    pub(super) async fn import(&mut self, snapshot: &PolicySnapshot) -> Result<(), StoreError> {
        validate_snapshot(snapshot)?;
        // The dialect's own name limits, before anything is deleted.
        for user in &snapshot.users {
            D::check_name("users.username", &user.username)?;
        }
        for role in &snapshot.roles {
            D::check_name("roles", role)?;
        }
        for sql in CLEAR_ALL {
            sqlx::query(sql).execute(self.conn()).await.map_err(D::db)?;
        }
        // A fleet's import is 100,000 users: one statement per row would
        // spend it in round trips (a minute on PostgreSQL), so rows go in
        // multi-row INSERTs of IMPORT_ROWS each.
        let fingerprints = snapshot
            .users
            .iter()
            .map(|u| {
                u.cert_fingerprint
                    .as_deref()
                    .map(normalize_fingerprint)
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let users: Vec<_> = snapshot.users.iter().zip(&fingerprints).collect();
        for chunk in users.chunks(IMPORT_ROWS) {
            let sql = multi_row_insert::<D>(
                "users (username, password_hash, enabled, superuser, cert_fingerprint, created_at)",
                5,
                Some(D::SQL.now_seconds),
                chunk.len(),
            );
            let mut insert = sqlx::query(&sql);
            for (user, fingerprint) in chunk {
                insert = insert
                    .bind(user.username.as_str())
                    .bind(user.password_hash.as_deref())
                    .bind(user.enabled)
                    .bind(user.superuser)
                    .bind(fingerprint.as_deref());
            }
            insert.execute(self.conn()).await.map_err(D::db)?;
        }
        for chunk in snapshot.roles.chunks(IMPORT_ROWS) {
            let sql = multi_row_insert::<D>("roles (name)", 1, None, chunk.len());
            let mut insert = sqlx::query(&sql);
            for role in chunk {
                insert = insert.bind(role.as_str());
            }
            insert.execute(self.conn()).await.map_err(D::db)?;
        }
        for chunk in snapshot.memberships.chunks(IMPORT_ROWS) {
            let sql = multi_row_insert::<D>("memberships (role, username)", 2, None, chunk.len());
            let mut insert = sqlx::query(&sql);
            for m in chunk {
                insert = insert.bind(m.role.as_str()).bind(m.username.as_str());
            }
            insert.execute(self.conn()).await.map_err(D::db)?;
        }
        let rules = snapshot
            .rules
            .iter()
            .map(|rule| {
                let id = i64::try_from(rule.id.0)
                    .map_err(|_| StoreError::invalid("rule id", "out of range"))?;
                Ok((rule, actions_text(rule.actions), id))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        for chunk in rules.chunks(IMPORT_ROWS) {
            let sql = multi_row_insert::<D>(
                "rules (effect, subject_kind, subject_name, actions, pattern, max_qos, retain, id)",
                8,
                None,
                chunk.len(),
            );
            let mut insert = sqlx::query(&sql);
            for (rule, actions, id) in chunk {
                let (kind, name) = subject_columns(&rule.subject);
                insert = insert
                    .bind(effect_text(rule.effect))
                    .bind(kind)
                    .bind(name)
                    .bind(actions.as_str())
                    .bind(rule.pattern.as_str())
                    .bind(rule.max_qos.map(|qos| i16::from(qos.as_u8())))
                    .bind(rule.retain)
                    .bind(*id);
            }
            insert.execute(self.conn()).await.map_err(D::db)?;
        }
        if let Some(sql) = D::SQL.after_import {
            sqlx::query(sql).execute(self.conn()).await.map_err(D::db)?;
        }
        Ok(())
    }
}

/// `INSERT INTO {table_columns} VALUES (…), (…)` for `rows` rows of `params`
/// bound parameters each, plus `tail` (an SQL expression) as each row's last
/// value when given.
fn multi_row_insert<D: Dialect>(
    table_columns: &str,
    params: usize,
    tail: Option<&str>,
    rows: usize,
) -> String {
    use std::fmt::Write as _;
    let mut sql = format!("INSERT INTO {table_columns} VALUES ");
    let mut n = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for p in 0..params {
            if p > 0 {
                sql.push_str(", ");
            }
            n += 1;
            if D::SQL.numbered_params {
                let _ = write!(sql, "${n}");
            } else {
                sql.push('?');
            }
        }
        if let Some(tail) = tail {
            let _ = write!(sql, ", {tail}");
        }
        sql.push(')');
    }
    sql
}
