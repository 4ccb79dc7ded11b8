//! The bodies of the MySQL write transactions. Each function runs inside a
//! transaction opened by `mod.rs`, which has already bumped the version and
//! commits afterwards; an error here rolls everything back, the bump too.
//! Names are checked against the column width first (`check_name`), so a
//! too-long name is `Invalid` rather than a server error.

use sqlx::{MySqlConnection, Row};
use warden_policy::{Rule, RuleId, RuleSpec, Subject};

use crate::error::StoreError;
use crate::store::{validate_snapshot, NewUser, PolicySnapshot, UserPatch};

use super::queries as q;
use super::rows::{check_name, db};
use crate::common::{actions_text, effect_text, subject_columns};

async fn exists(conn: &mut MySqlConnection, sql: &str, key: &str) -> Result<bool, StoreError> {
    let row = sqlx::query(sql)
        .bind(key)
        .fetch_optional(conn)
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

async fn require_user(conn: &mut MySqlConnection, username: &str) -> Result<(), StoreError> {
    if exists(conn, q::USER_EXISTS, username).await? {
        Ok(())
    } else {
        Err(StoreError::not_found("user", username))
    }
}

async fn ensure_role(conn: &mut MySqlConnection, role: &str) -> Result<(), StoreError> {
    check_name("role", role)?;
    sqlx::query(q::INSERT_ROLE_IF_MISSING)
        .bind(role)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

pub(super) async fn create_user(
    conn: &mut MySqlConnection,
    user: &NewUser,
) -> Result<(), StoreError> {
    check_name("username", &user.username)?;
    if exists(conn, q::USER_EXISTS, &user.username).await? {
        return Err(StoreError::exists("user", &user.username));
    }
    sqlx::query(q::INSERT_USER)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(user.enabled)
        .bind(user.superuser)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    for role in &user.roles {
        ensure_role(conn, role).await?;
        if exists_membership(conn, role, &user.username).await? {
            return Err(StoreError::invalid(
                "roles",
                format!("{role:?} listed twice"),
            ));
        }
        insert_membership(conn, role, &user.username).await?;
    }
    Ok(())
}

pub(super) async fn update_user(
    conn: &mut MySqlConnection,
    username: &str,
    patch: &UserPatch,
) -> Result<(), StoreError> {
    let result = sqlx::query(q::UPDATE_USER)
        .bind(patch.password_hash.is_some())
        .bind(patch.password_hash.clone().flatten())
        .bind(patch.enabled)
        .bind(patch.superuser)
        .bind(username)
        .execute(conn)
        .await
        .map_err(db)?;
    if result.rows_affected() == 0 {
        return Err(StoreError::not_found("user", username));
    }
    Ok(())
}

pub(super) async fn delete_user(
    conn: &mut MySqlConnection,
    username: &str,
) -> Result<(), StoreError> {
    let result = sqlx::query(q::DELETE_USER)
        .bind(username)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    if result.rows_affected() == 0 {
        return Err(StoreError::not_found("user", username));
    }
    sqlx::query(q::DELETE_USER_RULES)
        .bind(username)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

pub(super) async fn create_role(conn: &mut MySqlConnection, name: &str) -> Result<(), StoreError> {
    check_name("role", name)?;
    if exists(conn, q::ROLE_EXISTS, name).await? {
        return Err(StoreError::exists("role", name));
    }
    sqlx::query(q::INSERT_ROLE)
        .bind(name)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

pub(super) async fn delete_role(conn: &mut MySqlConnection, name: &str) -> Result<(), StoreError> {
    if !exists(conn, q::ROLE_EXISTS, name).await? {
        return Err(StoreError::not_found("role", name));
    }
    let members: i64 = sqlx::query(q::COUNT_ROLE_MEMBERS)
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(db)?;
    if members > 0 {
        return Err(StoreError::Conflict {
            what: "role",
            name: name.to_owned(),
            reason: "still has members; revoke them first",
        });
    }
    sqlx::query(q::DELETE_ROLE_RULES)
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    sqlx::query(q::DELETE_ROLE)
        .bind(name)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

async fn exists_membership(
    conn: &mut MySqlConnection,
    role: &str,
    username: &str,
) -> Result<bool, StoreError> {
    let row = sqlx::query(q::MEMBERSHIP_EXISTS)
        .bind(role)
        .bind(username)
        .fetch_optional(conn)
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

async fn insert_membership(
    conn: &mut MySqlConnection,
    role: &str,
    username: &str,
) -> Result<(), StoreError> {
    sqlx::query(q::INSERT_MEMBERSHIP)
        .bind(role)
        .bind(username)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

pub(super) async fn grant(
    conn: &mut MySqlConnection,
    role: &str,
    username: &str,
) -> Result<(), StoreError> {
    require_user(conn, username).await?;
    ensure_role(conn, role).await?;
    if exists_membership(conn, role, username).await? {
        return Err(StoreError::exists(
            "membership",
            format!("{role}/{username}"),
        ));
    }
    insert_membership(conn, role, username).await
}

pub(super) async fn revoke(
    conn: &mut MySqlConnection,
    role: &str,
    username: &str,
) -> Result<(), StoreError> {
    let result = sqlx::query(q::DELETE_MEMBERSHIP)
        .bind(role)
        .bind(username)
        .execute(conn)
        .await
        .map_err(db)?;
    if result.rows_affected() == 0 {
        return Err(StoreError::not_found(
            "membership",
            format!("{role}/{username}"),
        ));
    }
    Ok(())
}

async fn insert_rule(
    conn: &mut MySqlConnection,
    spec: &RuleSpec,
    id: Option<RuleId>,
) -> Result<i64, StoreError> {
    let (kind, name) = subject_columns(&spec.subject);
    let id = id
        .map(|id| i64::try_from(id.0).map_err(|_| StoreError::invalid("rule id", "out of range")))
        .transpose()?;
    // MySQL wants exactly one bind per `?`, so the id is bound only when
    // the statement has a place for it.
    let sql = if id.is_some() {
        q::INSERT_RULE_WITH_ID
    } else {
        q::INSERT_RULE
    };
    let mut query = sqlx::query(sql)
        .bind(effect_text(spec.effect))
        .bind(kind)
        .bind(name)
        .bind(actions_text(spec.actions))
        .bind(&spec.pattern)
        .bind(spec.max_qos.map(|qos| i64::from(qos.as_u8())))
        .bind(spec.retain);
    if let Some(id) = id {
        query = query.bind(id);
    }
    let result = query.execute(conn).await.map_err(db)?;
    if let Some(id) = id {
        return Ok(id);
    }
    i64::try_from(result.last_insert_id())
        .map_err(|_| StoreError::corrupt("rule", "id out of range"))
}

pub(super) async fn add_rule(
    conn: &mut MySqlConnection,
    spec: &RuleSpec,
) -> Result<RuleId, StoreError> {
    spec.validate()?;
    match &spec.subject {
        Subject::User(name) => require_user(conn, name).await?,
        Subject::Role(name) if !exists(conn, q::ROLE_EXISTS, name).await? => {
            return Err(StoreError::not_found("role", name))
        }
        _ => {}
    }
    let id = insert_rule(conn, spec, None).await?;
    u64::try_from(id)
        .map(RuleId)
        .map_err(|_| StoreError::corrupt("rule", "negative id"))
}

pub(super) async fn remove_rule(conn: &mut MySqlConnection, id: RuleId) -> Result<(), StoreError> {
    let key = i64::try_from(id.0).map_err(|_| StoreError::not_found("rule", id.to_string()))?;
    let result = sqlx::query(q::DELETE_RULE)
        .bind(key)
        .execute(conn)
        .await
        .map_err(db)?;
    if result.rows_affected() == 0 {
        return Err(StoreError::not_found("rule", id.to_string()));
    }
    Ok(())
}

pub(super) async fn import(
    conn: &mut MySqlConnection,
    snapshot: &PolicySnapshot,
) -> Result<(), StoreError> {
    validate_snapshot(snapshot)?;
    for user in &snapshot.users {
        check_name("users.username", &user.username)?;
    }
    for role in &snapshot.roles {
        check_name("roles", role)?;
    }
    for sql in q::CLEAR_ALL {
        sqlx::query(sql).execute(&mut *conn).await.map_err(db)?;
    }
    for user in &snapshot.users {
        sqlx::query(q::INSERT_USER)
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(user.enabled)
            .bind(user.superuser)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    for role in &snapshot.roles {
        sqlx::query(q::INSERT_ROLE)
            .bind(role)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    for m in &snapshot.memberships {
        insert_membership(conn, &m.role, &m.username).await?;
    }
    for rule in &snapshot.rules {
        insert_rule(conn, &Rule::spec(rule), Some(rule.id)).await?;
    }
    Ok(())
}
