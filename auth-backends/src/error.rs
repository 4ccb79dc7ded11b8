//! Store errors, classified by kind so that callers branch on
//! [`StoreErrorKind`] and never on a driver's message text.
//!
//! No message built here carries a password hash: store errors name tables,
//! usernames, role names and rule ids only.

use std::time::Duration;

/// What went wrong, in the terms a caller acts on.
///
/// The broker fails closed on `Unavailable` (new logins are refused); the CLI
/// maps `NotFound`, `Conflict` and `Invalid` to messages for the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The store cannot be reached or did not answer in time: connection
    /// refused, pool timeout, I/O error, database locked, call timeout.
    Unavailable,
    /// The named user, role, membership or rule does not exist.
    NotFound,
    /// The named user, role or membership already exists, or a delete is
    /// refused because something still refers to it.
    Conflict,
    /// The request or the configuration is malformed (bad rule, bad name).
    Invalid,
    /// Anything else: corrupt rows, a failed migration, a driver bug.
    Internal,
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a [`crate::Store`] or [`crate::AdminStore`] call.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused to work.
    #[error("{backend} store unavailable: {message}")]
    Unavailable {
        backend: &'static str,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A store call did not finish within the configured timeout.
    #[error("{backend} store call timed out after {after:?}")]
    Timeout {
        backend: &'static str,
        after: Duration,
    },
    /// `what` is "user", "role", "membership" or "rule".
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    /// `what` is "user", "role" or "membership".
    #[error("{what} {name:?} {reason}")]
    Conflict {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    /// A malformed request or configuration; `field` names the offending part.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// A rule spec that the policy crate refuses.
    #[error("invalid rule: {0}")]
    InvalidRule(#[from] warden_policy::PolicyError),
    /// A row that cannot be turned back into our types.
    #[error("corrupt {what} in store: {message}")]
    Corrupt { what: &'static str, message: String },
    /// Any other backend error, already classified.
    #[error("{backend} store error: {message}")]
    Backend {
        backend: &'static str,
        kind: StoreErrorKind,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A write succeeded, but recording it as an admin change failed.
    #[error("the change was made, but recording it as an admin change failed ({0}); run `warden migrate`?")]
    Unrecorded(Box<StoreError>),
}

// Without a backend feature the constructors below have no caller.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code)
)]
/// `work`, bounded by the store's call timeout: expiry is
/// [`StoreError::Timeout`], which callers treat as unavailable.
pub(crate) async fn within<T>(
    backend: &'static str,
    after: Duration,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(after, work)
        .await
        .unwrap_or(Err(StoreError::Timeout { backend, after }))
}

impl StoreError {
    /// The class of this error.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Unavailable { .. } | StoreError::Timeout { .. } => {
                StoreErrorKind::Unavailable
            }
            StoreError::NotFound { .. } => StoreErrorKind::NotFound,
            StoreError::Conflict { .. } => StoreErrorKind::Conflict,
            StoreError::Invalid { .. } | StoreError::InvalidRule(_) => StoreErrorKind::Invalid,
            StoreError::Corrupt { .. } => StoreErrorKind::Internal,
            StoreError::Backend { kind, .. } => *kind,
            StoreError::Unrecorded(inner) => inner.kind(),
        }
    }

    pub(crate) fn not_found(what: &'static str, name: impl Into<String>) -> Self {
        StoreError::NotFound {
            what,
            name: name.into(),
        }
    }

    pub(crate) fn exists(what: &'static str, name: impl Into<String>) -> Self {
        StoreError::Conflict {
            what,
            name: name.into(),
            reason: "already exists",
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(what: &'static str, message: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what,
            message: message.into(),
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sqlx_errors {
    use super::{StoreError, StoreErrorKind};
    use sqlx::error::ErrorKind as DbKind;

    /// Classify a sqlx error by its variant and, for database errors, by the
    /// driver's constraint kind or numeric code.
    pub(crate) fn classify(backend: &'static str, err: sqlx::Error) -> StoreError {
        let kind = kind_of(backend, &err);
        let message = match &err {
            // Database messages name tables and constraints, never values.
            sqlx::Error::Database(db) => db.message().to_owned(),
            other => other.to_string(),
        };
        if kind == StoreErrorKind::Unavailable {
            return StoreError::Unavailable {
                backend,
                message,
                source: Some(Box::new(err)),
            };
        }
        StoreError::Backend {
            backend,
            kind,
            message,
            source: Some(Box::new(err)),
        }
    }

    fn kind_of(backend: &'static str, err: &sqlx::Error) -> StoreErrorKind {
        match err {
            sqlx::Error::Database(db) => match db.kind() {
                DbKind::UniqueViolation => StoreErrorKind::Conflict,
                // Deletes cascade, so only an insert naming a missing parent
                // row can break a foreign key.
                DbKind::ForeignKeyViolation => StoreErrorKind::NotFound,
                DbKind::NotNullViolation | DbKind::CheckViolation => StoreErrorKind::Invalid,
                _ => db
                    .code()
                    .and_then(|code| code_kind(backend, &code))
                    .unwrap_or(StoreErrorKind::Internal),
            },
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreErrorKind::Unavailable,
            sqlx::Error::RowNotFound => StoreErrorKind::NotFound,
            sqlx::Error::Configuration(_) => StoreErrorKind::Invalid,
            sqlx::Error::Migrate(m) => match m.as_ref() {
                sqlx::migrate::MigrateError::Execute(inner) => kind_of(backend, inner),
                _ => StoreErrorKind::Internal,
            },
            _ => StoreErrorKind::Internal,
        }
    }

    /// SQLite reports extended result codes; the low byte is the primary code.
    fn code_kind(backend: &'static str, code: &str) -> Option<StoreErrorKind> {
        if backend != "sqlite" {
            return None;
        }
        let primary = code.parse::<i64>().ok()? & 0xff;
        Some(match primary {
            // BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL, PERM
            5 | 6 | 8 | 10 | 13 | 14 | 15 | 3 => StoreErrorKind::Unavailable,
            // TOOBIG, MISMATCH, RANGE
            18 | 20 | 25 => StoreErrorKind::Invalid,
            _ => StoreErrorKind::Internal,
        })
    }

    impl StoreError {
        pub(crate) fn from_sqlx(backend: &'static str, err: sqlx::Error) -> Self {
            classify(backend, err)
        }

        pub(crate) fn from_migrate(
            backend: &'static str,
            err: sqlx::migrate::MigrateError,
        ) -> Self {
            match err {
                sqlx::migrate::MigrateError::Execute(inner) => classify(backend, inner),
                other => StoreError::Backend {
                    backend,
                    kind: StoreErrorKind::Internal,
                    message: format!("migration failed: {other}"),
                    source: Some(Box::new(other)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_variants() {
        assert_eq!(
            StoreError::not_found("user", "a").kind(),
            StoreErrorKind::NotFound
        );
        assert_eq!(
            StoreError::exists("role", "r").kind(),
            StoreErrorKind::Conflict
        );
        assert_eq!(
            StoreError::Timeout {
                backend: "sqlite",
                after: Duration::from_secs(1)
            }
            .kind(),
            StoreErrorKind::Unavailable
        );
        assert_eq!(
            StoreError::corrupt("rule", "bad effect").kind(),
            StoreErrorKind::Internal
        );
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlx_pool_errors_are_unavailable() {
        let err = StoreError::from_sqlx("sqlite", sqlx::Error::PoolTimedOut);
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
        let err = StoreError::from_sqlx("sqlite", sqlx::Error::RowNotFound);
        assert_eq!(err.kind(), StoreErrorKind::NotFound);
    }
}
