//! Turning SQLite rows into store records and rules into column values.
//!
//! A row that does not decode is `Corrupt` (kind Internal): the CHECK
//! constraints should make that impossible unless the file was edited by hand.
//! The column encodings themselves live in `crate::common`, shared with the
//! other SQL backends.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use warden_policy::{Rule, RuleId};

use crate::common::{parse_actions, parse_effect, parse_qos, parse_subject};
use crate::error::StoreError;
use crate::store::UserRecord;

use super::BACKEND;

pub(super) fn db(err: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(BACKEND, err)
}

/// A user row without its roles.
pub(super) fn user(row: &SqliteRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        username: row.try_get("username").map_err(db)?,
        password_hash: row.try_get("password_hash").map_err(db)?,
        enabled: row.try_get("enabled").map_err(db)?,
        superuser: row.try_get("superuser").map_err(db)?,
        roles: Vec::new(),
    })
}

pub(super) fn rule(row: &SqliteRow) -> Result<Rule, StoreError> {
    let id: i64 = row.try_get("id").map_err(db)?;
    let effect: String = row.try_get("effect").map_err(db)?;
    let kind: String = row.try_get("subject_kind").map_err(db)?;
    let name: String = row.try_get("subject_name").map_err(db)?;
    let actions: String = row.try_get("actions").map_err(db)?;
    let max_qos: Option<i64> = row.try_get("max_qos").map_err(db)?;
    Ok(Rule {
        id: RuleId(u64::try_from(id).map_err(|_| StoreError::corrupt("rule", "negative id"))?),
        effect: parse_effect(&effect)?,
        subject: parse_subject(&kind, name)?,
        actions: parse_actions(&actions)?,
        pattern: row.try_get("pattern").map_err(db)?,
        max_qos: max_qos.map(parse_qos).transpose()?,
        retain: row.try_get("retain").map_err(db)?,
    })
}
