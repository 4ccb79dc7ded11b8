//! Turning PostgreSQL rows into store records, and PostgreSQL errors into
//! `StoreError`s.
//!
//! A row that does not decode is `Corrupt` (kind Internal). Errors are
//! classified by sqlx's error kind first and then by SQLSTATE class, never
//! by message text.

use sqlx::postgres::PgRow;
use sqlx::Row;
use warden_policy::{Rule, RuleId};

use crate::common::{parse_actions, parse_effect, parse_qos, parse_subject};
use crate::error::{StoreError, StoreErrorKind};
use crate::store::UserRecord;

use super::BACKEND;

pub(super) fn db(err: sqlx::Error) -> StoreError {
    let Some(kind) = sqlstate_kind(&err) else {
        return StoreError::from_sqlx(BACKEND, err);
    };
    let message = match &err {
        sqlx::Error::Database(e) => e.message().to_owned(),
        other => other.to_string(),
    };
    match kind {
        StoreErrorKind::Unavailable => StoreError::Unavailable {
            backend: BACKEND,
            message,
            source: Some(Box::new(err)),
        },
        kind => StoreError::Backend {
            backend: BACKEND,
            kind,
            message,
            source: Some(Box::new(err)),
        },
    }
}

/// An error while getting a connection from the pool. A server that answers
/// with a database error (no such database, bad credentials, starting up)
/// and a malformed URL keep their classification; anything else (refused,
/// reset, a peer that does not speak the protocol, pool timeout, TLS) means
/// the store cannot be reached.
pub(super) fn acquire_error(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Database(_) | sqlx::Error::Configuration(_) => db(err),
        other => StoreError::Unavailable {
            backend: BACKEND,
            message: other.to_string(),
            source: Some(Box::new(other)),
        },
    }
}

/// The SQLSTATEs that sqlx's generic error kinds do not cover. Only
/// database errors whose sqlx kind is `Other` are looked at, so unique and
/// foreign-key violations keep the shared classification.
fn sqlstate_kind(err: &sqlx::Error) -> Option<StoreErrorKind> {
    let sqlx::Error::Database(e) = err else {
        return None;
    };
    if !matches!(e.kind(), sqlx::error::ErrorKind::Other) {
        return None;
    }
    Some(code_kind(e.code()?.as_ref()))
}

fn code_kind(code: &str) -> StoreErrorKind {
    match code {
        // Serialization failure, deadlock, lock not available, query
        // cancelled (statement_timeout), shutting down, starting up: the
        // same call may well work a moment later.
        "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" => {
            StoreErrorKind::Unavailable
        }
        // No such database, or the server refused our credentials: the
        // configuration is wrong.
        "3D000" | "28000" | "28P01" => StoreErrorKind::Invalid,
        _ => match code.get(..2) {
            // Connection exceptions, insufficient resources, system errors.
            Some("08" | "53" | "58") => StoreErrorKind::Unavailable,
            // Data exceptions (e.g. a value out of range).
            Some("22") => StoreErrorKind::Invalid,
            _ => StoreErrorKind::Internal,
        },
    }
}

/// A user row without its roles.
pub(super) fn user(row: &PgRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        username: row.try_get("username").map_err(db)?,
        password_hash: row.try_get("password_hash").map_err(db)?,
        enabled: row.try_get("enabled").map_err(db)?,
        superuser: row.try_get("superuser").map_err(db)?,
        roles: Vec::new(),
    })
}

pub(super) fn rule(row: &PgRow) -> Result<Rule, StoreError> {
    let id: i64 = row.try_get("id").map_err(db)?;
    let effect: &str = row.try_get("effect").map_err(db)?;
    let kind: &str = row.try_get("subject_kind").map_err(db)?;
    let name: String = row.try_get("subject_name").map_err(db)?;
    let actions: &str = row.try_get("actions").map_err(db)?;
    let max_qos: Option<i16> = row.try_get("max_qos").map_err(db)?;
    Ok(Rule {
        id: rule_id(id)?,
        effect: parse_effect(effect)?,
        subject: parse_subject(kind, name)?,
        actions: parse_actions(actions)?,
        pattern: row.try_get("pattern").map_err(db)?,
        max_qos: max_qos.map(|q| parse_qos(i64::from(q))).transpose()?,
        retain: row.try_get("retain").map_err(db)?,
    })
}

pub(super) fn rule_id(id: i64) -> Result<RuleId, StoreError> {
    u64::try_from(id)
        .map(RuleId)
        .map_err(|_| StoreError::corrupt("rule", "negative id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        assert_eq!(code_kind("08006"), StoreErrorKind::Unavailable);
        assert_eq!(code_kind("57P01"), StoreErrorKind::Unavailable);
        assert_eq!(code_kind("53300"), StoreErrorKind::Unavailable);
        assert_eq!(code_kind("40001"), StoreErrorKind::Unavailable);
        assert_eq!(code_kind("3D000"), StoreErrorKind::Invalid);
        assert_eq!(code_kind("22003"), StoreErrorKind::Invalid);
        assert_eq!(code_kind("42P01"), StoreErrorKind::Internal);
        assert_eq!(code_kind(""), StoreErrorKind::Internal);
    }

    #[test]
    fn connect_failures_are_unavailable() {
        assert_eq!(
            db(sqlx::Error::PoolTimedOut).kind(),
            StoreErrorKind::Unavailable
        );
        let garbled = sqlx::Error::Protocol("unexpected response".into());
        assert_eq!(acquire_error(garbled).kind(), StoreErrorKind::Unavailable);
        let bad_url = sqlx::Error::Configuration("bad sslmode".into());
        assert_eq!(acquire_error(bad_url).kind(), StoreErrorKind::Invalid);
    }

    #[test]
    fn negative_ids_are_corrupt() {
        assert_eq!(rule_id(7).unwrap(), RuleId(7));
        assert_eq!(rule_id(-1).unwrap_err().kind(), StoreErrorKind::Internal);
    }
}
