//! Column codecs shared by the SQL backends (SQLite, PostgreSQL, MySQL): how
//! a rule's effect, subject, actions and QoS are written as column values and
//! read back. The dialects differ in SQL, not in these encodings, so an
//! export from one store imports into another unchanged.
//!
//! A value that does not decode is `Corrupt` (kind Internal): the schema's
//! CHECK constraints should make that impossible unless someone edited rows
//! by hand.

use warden_policy::{ActionKind, ActionSet, Effect, QoS, Subject};

use crate::error::StoreError;

pub(crate) fn parse_effect(text: &str) -> Result<Effect, StoreError> {
    match text {
        "allow" => Ok(Effect::Allow),
        "deny" => Ok(Effect::Deny),
        other => Err(StoreError::corrupt("rule", format!("effect {other:?}"))),
    }
}

pub(crate) fn effect_text(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

pub(crate) fn parse_subject(kind: &str, name: String) -> Result<Subject, StoreError> {
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
pub(crate) fn subject_columns(subject: &Subject) -> (&'static str, &str) {
    match subject {
        Subject::User(name) => ("user", name),
        Subject::Role(name) => ("role", name),
        Subject::Everyone => ("everyone", ""),
    }
}

pub(crate) fn parse_actions(text: &str) -> Result<ActionSet, StoreError> {
    text.split(',')
        .map(|word| {
            ActionKind::ALL
                .into_iter()
                .find(|kind| kind.as_str() == word)
                .ok_or_else(|| StoreError::corrupt("rule", format!("action {word:?}")))
        })
        .collect()
}

/// Comma-separated action names: connect,publish,subscribe,receive.
pub(crate) fn actions_text(actions: ActionSet) -> String {
    actions
        .iter()
        .map(ActionKind::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn parse_qos(value: i64) -> Result<QoS, StoreError> {
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
