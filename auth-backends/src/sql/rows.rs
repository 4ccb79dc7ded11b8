//! User and rule rows decoded into records. The column encodings live in
//! `crate::common`; text columns go through [`Dialect::text`], since MySQL
//! reads its binary-collated columns as bytes.
//!
//! A value that does not decode is `Corrupt` (kind Internal): the schemas'
//! CHECK constraints should make that impossible unless someone edited rows
//! by hand.

use sqlx::{ColumnIndex, Decode, Row as _, Type};
use warden_policy::{Rule, RuleId};

use crate::common::{parse_actions, parse_effect, parse_qos, parse_subject};
use crate::error::StoreError;
use crate::store::{AdminChange, UserRecord};

use super::dialect::{Dialect, Row};

/// A user row without its roles.
pub(crate) fn user<D>(row: &Row<D>) -> Result<UserRecord, StoreError>
where
    D: Dialect,
    &'static str: ColumnIndex<Row<D>>,
    for<'r> String: Decode<'r, D::Db> + Type<D::Db>,
    for<'r> bool: Decode<'r, D::Db> + Type<D::Db>,
{
    Ok(UserRecord {
        username: D::text(row, "username")?,
        password_hash: D::opt_text(row, "password_hash")?,
        enabled: row.try_get("enabled").map_err(D::db)?,
        superuser: row.try_get("superuser").map_err(D::db)?,
        roles: Vec::new(),
        cert_fingerprint: D::opt_text(row, "cert_fingerprint")?,
    })
}

/// A row of `Sql::select_admin_changes`.
pub(crate) fn admin_change<D>(row: &Row<D>) -> Result<AdminChange, StoreError>
where
    D: Dialect,
    &'static str: ColumnIndex<Row<D>>,
    for<'r> String: Decode<'r, D::Db> + Type<D::Db>,
    for<'r> i64: Decode<'r, D::Db> + Type<D::Db>,
{
    let id: i64 = row.try_get("id").map_err(D::db)?;
    Ok(AdminChange {
        id: u64::try_from(id).map_err(|_| StoreError::corrupt("admin_changes.id", "negative"))?,
        at_ms: row.try_get("at_ms").map_err(D::db)?,
        user: D::text(row, "os_user")?,
        host: D::text(row, "host")?,
        what: D::text(row, "what")?,
    })
}

/// A row with the columns of `queries::SELECT_RULES`.
pub(crate) fn rule<D>(row: &Row<D>) -> Result<Rule, StoreError>
where
    D: Dialect,
    &'static str: ColumnIndex<Row<D>>,
    for<'r> String: Decode<'r, D::Db> + Type<D::Db>,
    for<'r> bool: Decode<'r, D::Db> + Type<D::Db>,
    for<'r> i16: Decode<'r, D::Db> + Type<D::Db>,
    for<'r> i64: Decode<'r, D::Db> + Type<D::Db>,
{
    let id: i64 = row.try_get("id").map_err(D::db)?;
    // SMALLINT on PostgreSQL, which decodes only into i16; the other
    // dialects' integer columns decode into any integer type that fits.
    let max_qos: Option<i16> = row.try_get("max_qos").map_err(D::db)?;
    Ok(Rule {
        id: rule_id(id)?,
        effect: parse_effect(&D::text(row, "effect")?)?,
        subject: parse_subject(
            &D::text(row, "subject_kind")?,
            D::text(row, "subject_name")?,
        )?,
        actions: parse_actions(&D::text(row, "actions")?)?,
        pattern: D::text(row, "pattern")?,
        max_qos: max_qos.map(|q| parse_qos(i64::from(q))).transpose()?,
        retain: row.try_get("retain").map_err(D::db)?,
    })
}

/// A rule id as the database returned it.
pub(super) fn rule_id(id: i64) -> Result<RuleId, StoreError> {
    u64::try_from(id)
        .map(RuleId)
        .map_err(|_| StoreError::corrupt("rule", "negative id"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreErrorKind;

    #[test]
    fn negative_ids_are_corrupt() {
        assert_eq!(rule_id(7).unwrap(), RuleId(7));
        assert_eq!(rule_id(-1).unwrap_err().kind(), StoreErrorKind::Internal);
    }
}
