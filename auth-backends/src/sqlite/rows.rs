//! Turning SQLite rows into store records and rules into column values.
//!
//! A row that does not decode is `Corrupt` (kind Internal): the CHECK
//! constraints should make that impossible unless the file was edited by hand.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use warden_policy::{ActionKind, ActionSet, Effect, QoS, Rule, RuleId, Subject};

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

fn parse_effect(text: &str) -> Result<Effect, StoreError> {
    match text {
        "allow" => Ok(Effect::Allow),
        "deny" => Ok(Effect::Deny),
        other => Err(StoreError::corrupt("rule", format!("effect {other:?}"))),
    }
}

pub(super) fn effect_text(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

fn parse_subject(kind: &str, name: String) -> Result<Subject, StoreError> {
    match kind {
        "user" => Ok(Subject::User(name)),
        "role" => Ok(Subject::Role(name)),
        "everyone" => Ok(Subject::Everyone),
        other => Err(StoreError::corrupt(
            "rule",
            format!("subject kind {other:?}"),
        )),
    }
}

/// (subject_kind, subject_name) as stored; everyone's name is ''.
pub(super) fn subject_columns(subject: &Subject) -> (&'static str, &str) {
    match subject {
        Subject::User(name) => ("user", name),
        Subject::Role(name) => ("role", name),
        Subject::Everyone => ("everyone", ""),
    }
}

fn parse_actions(text: &str) -> Result<ActionSet, StoreError> {
    text.split(',')
        .map(|word| {
            ActionKind::ALL
                .into_iter()
                .find(|kind| kind.as_str() == word)
                .ok_or_else(|| StoreError::corrupt("rule", format!("action {word:?}")))
        })
        .collect()
}

pub(super) fn actions_text(actions: ActionSet) -> String {
    actions
        .iter()
        .map(ActionKind::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_qos(value: i64) -> Result<QoS, StoreError> {
    u8::try_from(value)
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| StoreError::corrupt("rule", format!("max_qos {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip() {
        let set = ActionSet::of(&[ActionKind::Publish, ActionKind::Receive]);
        let text = actions_text(set);
        assert_eq!(text, "publish,receive");
        assert_eq!(parse_actions(&text).unwrap(), set);
        assert!(parse_actions("publish,fly").is_err());
        assert!(parse_actions("").is_err());
    }

    #[test]
    fn bad_columns_are_corrupt() {
        assert!(parse_effect("maybe").is_err());
        assert!(parse_subject("group", "x".into()).is_err());
        assert!(parse_qos(3).is_err());
        assert_eq!(parse_qos(1).unwrap(), QoS::AtLeastOnce);
    }
}
