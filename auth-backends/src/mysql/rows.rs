//! What MySQL needs of its own to read rows and errors: text columns read
//! as bytes, names checked against the column width, and MySQL errors
//! turned into [`StoreError`]s.
//!
//! Names are VARBINARY and the other text columns use a `_bin` collation, so
//! the server flags them binary and sqlx will not decode them as `String`:
//! they are read as bytes and checked as UTF-8 here.

use sqlx::mysql::{MySqlDatabaseError, MySqlRow};
use sqlx::Row;

use crate::error::{StoreError, StoreErrorKind};
use crate::store::validate_name;

use super::BACKEND;

/// Longest user or role name in bytes: the VARBINARY width, itself bounded by
/// InnoDB's 3072-byte key limit over the two-name membership key.
pub const MAX_NAME_BYTES: usize = 1020;

/// [`validate_name`] plus this store's column width.
pub(super) fn check_name(field: &'static str, name: &str) -> Result<(), StoreError> {
    validate_name(field, name)?;
    if name.len() > MAX_NAME_BYTES {
        return Err(StoreError::invalid(
            field,
            format!("longer than {MAX_NAME_BYTES} bytes (the MySQL store's limit)"),
        ));
    }
    Ok(())
}

/// Classify by MySQL's error number where the generic kinds do not cover it,
/// else by sqlx's kind (duplicate key: Conflict, foreign key: NotFound).
pub(super) fn db(err: sqlx::Error) -> StoreError {
    let number = match &err {
        sqlx::Error::Database(e) => e
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(|e| e.number()),
        _ => None,
    };
    let Some(kind) = number.and_then(code_kind) else {
        return StoreError::from_sqlx(BACKEND, err);
    };
    let message = match &err {
        // Server messages name tables and keys; values stay out of them
        // except for duplicate keys, which are classified before this.
        sqlx::Error::Database(e) => e.message().to_owned(),
        other => other.to_string(),
    };
    if kind == StoreErrorKind::Unavailable {
        return StoreError::Unavailable {
            backend: BACKEND,
            message,
            source: Some(Box::new(err)),
        };
    }
    StoreError::Backend {
        backend: BACKEND,
        kind,
        message,
        source: Some(Box::new(err)),
    }
}

fn code_kind(number: u16) -> Option<StoreErrorKind> {
    Some(match number {
        // access denied, unknown database, too many connections, shutdown,
        // lock wait timeout, deadlock, query interrupted, read-only server,
        // connection killed (MariaDB), statement time limit (MySQL, MariaDB)
        1044 | 1045 | 1049 | 1040 | 1053 | 1205 | 1213 | 1317 | 1290 | 1792 | 1836 | 1927
        | 3024 | 1969 => StoreErrorKind::Unavailable,
        // data too long, bad string value, out of range
        1406 | 1366 | 1264 => StoreErrorKind::Invalid,
        _ => return None,
    })
}

/// A text column, read as bytes (see the module docs).
pub(super) fn text(row: &MySqlRow, column: &'static str) -> Result<String, StoreError> {
    let bytes: Vec<u8> = row.try_get(column).map_err(db)?;
    utf8(column, bytes)
}

pub(super) fn opt_text(row: &MySqlRow, column: &'static str) -> Result<Option<String>, StoreError> {
    let bytes: Option<Vec<u8>> = row.try_get(column).map_err(db)?;
    bytes.map(|b| utf8(column, b)).transpose()
}

pub(super) fn utf8(column: &'static str, bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes)
        .map_err(|_| StoreError::corrupt("row", format!("{column} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_is_corrupt() {
        assert_eq!(
            utf8("username", vec![0xff, 0xfe]).unwrap_err().kind(),
            StoreErrorKind::Internal
        );
        assert_eq!(utf8("username", b"kim".to_vec()).unwrap(), "kim");
    }

    #[test]
    fn names_are_bounded_by_the_column() {
        assert!(check_name("username", &"a".repeat(MAX_NAME_BYTES)).is_ok());
        let long = check_name("username", &"é".repeat(MAX_NAME_BYTES / 2 + 1));
        assert_eq!(long.unwrap_err().kind(), StoreErrorKind::Invalid);
        assert_eq!(
            check_name("role", "").unwrap_err().kind(),
            StoreErrorKind::Invalid
        );
    }

    #[test]
    fn server_codes_are_classified() {
        assert_eq!(code_kind(1205), Some(StoreErrorKind::Unavailable));
        assert_eq!(code_kind(1213), Some(StoreErrorKind::Unavailable));
        assert_eq!(code_kind(1406), Some(StoreErrorKind::Invalid));
        assert_eq!(code_kind(1062), None, "duplicates go through sqlx's kind");
    }
}
