//! PostgreSQL errors turned into `StoreError`s: classified by sqlx's error
//! kind first and then by SQLSTATE class, never by message text.

use crate::error::{StoreError, StoreErrorKind};

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
}
