//! Turning MongoDB documents into store records and back, and classifying
//! driver errors by kind.
//!
//! Integers are read as Int32, Int64 or integral Double: servers and tools
//! that pass documents through JavaScript (mongosh, the test server) may
//! store a small Int64 back as Int32.

use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{Error as DriverError, ErrorKind, WriteFailure};
use warden_policy::{ActionKind, ActionSet, Effect, QoS, Rule, RuleId, Subject};

use crate::error::{StoreError, StoreErrorKind};
use crate::store::{AdminChange, SnapshotUser, UserRecord};

use super::BACKEND;

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// Server codes that mean "not now" rather than "never": shutdown, stepdown,
/// no primary, network, interrupted, exceeded time limit.
const UNAVAILABLE_CODES: [i32; 14] = [
    6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 46841,
];

pub(super) fn db(err: DriverError) -> StoreError {
    let kind = kind_of(&err);
    let message = err.to_string();
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

/// Whether the server asks for the whole transaction to be run again. An
/// unknown commit result is not retried (the write may have landed); it
/// reaches the caller as Unavailable.
pub(super) fn is_transient(err: &DriverError) -> bool {
    err.contains_label("TransientTransactionError")
}

fn kind_of(err: &DriverError) -> StoreErrorKind {
    match err.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown
        | ErrorKind::Authentication { .. } => StoreErrorKind::Unavailable,
        ErrorKind::InvalidArgument { .. } | ErrorKind::InvalidTlsConfig { .. } => {
            StoreErrorKind::Invalid
        }
        ErrorKind::Command(c) => code_kind(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => code_kind(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => code_kind(w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .iter()
            .flatten()
            .map(|w| code_kind(w.code))
            .next()
            .unwrap_or(StoreErrorKind::Internal),
        _ if err.contains_label("RetryableWriteError")
            || err.contains_label("UnknownTransactionCommitResult")
            || is_transient(err) =>
        {
            StoreErrorKind::Unavailable
        }
        _ => StoreErrorKind::Internal,
    }
}

fn code_kind(code: i32) -> StoreErrorKind {
    if code == DUPLICATE_KEY {
        StoreErrorKind::Conflict
    } else if UNAVAILABLE_CODES.contains(&code) {
        StoreErrorKind::Unavailable
    } else {
        StoreErrorKind::Internal
    }
}

pub(super) fn int(doc: &Document, what: &'static str, key: &str) -> Result<i64, StoreError> {
    match doc.get(key) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        Some(Bson::Double(v)) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(*v as i64),
        other => Err(StoreError::corrupt(what, format!("{key}: {other:?}"))),
    }
}

pub(super) fn text(doc: &Document, what: &'static str, key: &str) -> Result<String, StoreError> {
    doc.get_str(key)
        .map(str::to_owned)
        .map_err(|_| StoreError::corrupt(what, format!("{key} is not a string")))
}

fn flag(doc: &Document, what: &'static str, key: &str) -> Result<bool, StoreError> {
    doc.get_bool(key)
        .map_err(|_| StoreError::corrupt(what, format!("{key} is not a bool")))
}

/// A value that may be absent or null.
fn optional<'a>(doc: &'a Document, key: &str) -> Option<&'a Bson> {
    doc.get(key).filter(|v| !matches!(v, Bson::Null))
}

/// A user document without its roles.
pub(super) fn user(doc: &Document) -> Result<UserRecord, StoreError> {
    let password_hash = match optional(doc, "password_hash") {
        None => None,
        Some(Bson::String(hash)) => Some(hash.clone()),
        Some(_) => return Err(StoreError::corrupt("user", "password_hash")),
    };
    // Absent in documents written before pinning existed.
    let cert_fingerprint = match optional(doc, "cert_fingerprint") {
        None => None,
        Some(Bson::String(pin)) => Some(pin.clone()),
        Some(_) => return Err(StoreError::corrupt("user", "cert_fingerprint")),
    };
    Ok(UserRecord {
        username: text(doc, "user", "username")?,
        password_hash,
        enabled: flag(doc, "user", "enabled")?,
        superuser: flag(doc, "user", "superuser")?,
        roles: Vec::new(),
        cert_fingerprint,
    })
}

/// The fields of a user document, as inserted.
pub(super) fn user_fields(
    username: &str,
    password_hash: Option<&str>,
    enabled: bool,
    superuser: bool,
    cert_fingerprint: Option<&str>,
) -> Document {
    doc! {
        "username": username,
        "password_hash": password_hash.map_or(Bson::Null, |h| Bson::String(h.to_owned())),
        "enabled": enabled,
        "superuser": superuser,
        "cert_fingerprint": cert_fingerprint.map_or(Bson::Null, |h| Bson::String(h.to_owned())),
    }
}

pub(super) fn snapshot_user(doc: &Document) -> Result<SnapshotUser, StoreError> {
    let u = user(doc)?;
    Ok(SnapshotUser {
        username: u.username,
        password_hash: u.password_hash,
        enabled: u.enabled,
        superuser: u.superuser,
        cert_fingerprint: u.cert_fingerprint,
    })
}

pub(super) fn rule(doc: &Document) -> Result<Rule, StoreError> {
    let id = int(doc, "rule", "id")?;
    let effect = match doc.get_str("effect") {
        Ok("allow") => Effect::Allow,
        Ok("deny") => Effect::Deny,
        _ => return Err(StoreError::corrupt("rule", "effect")),
    };
    let subject: Subject = text(doc, "rule", "subject")?
        .parse()
        .map_err(|_| StoreError::corrupt("rule", "subject"))?;
    let actions = doc
        .get_array("actions")
        .map_err(|_| StoreError::corrupt("rule", "actions is not an array"))?
        .iter()
        .map(|word| {
            ActionKind::ALL
                .into_iter()
                .find(|kind| word.as_str() == Some(kind.as_str()))
                .ok_or_else(|| StoreError::corrupt("rule", format!("action {word}")))
        })
        .collect::<Result<ActionSet, _>>()?;
    let max_qos = match optional(doc, "max_qos") {
        None => None,
        Some(_) => {
            let value = int(doc, "rule", "max_qos")?;
            let qos = u8::try_from(value).ok().and_then(QoS::from_u8);
            Some(qos.ok_or_else(|| StoreError::corrupt("rule", format!("max_qos {value}")))?)
        }
    };
    let retain = match optional(doc, "retain") {
        None => None,
        Some(Bson::Boolean(b)) => Some(*b),
        Some(_) => return Err(StoreError::corrupt("rule", "retain")),
    };
    Ok(Rule {
        id: RuleId(u64::try_from(id).map_err(|_| StoreError::corrupt("rule", "negative id"))?),
        effect,
        subject,
        actions,
        pattern: text(doc, "rule", "pattern")?,
        max_qos,
        retain,
    })
}

pub(super) fn rule_doc(rule: &Rule) -> Result<Document, StoreError> {
    let id =
        i64::try_from(rule.id.0).map_err(|_| StoreError::invalid("rule id", "out of range"))?;
    let effect = match rule.effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    };
    let actions: Vec<&str> = rule.actions.iter().map(ActionKind::as_str).collect();
    Ok(doc! {
        "id": id,
        "effect": effect,
        "subject": rule.subject.to_string(),
        "actions": actions,
        "pattern": &rule.pattern,
        "max_qos": rule.max_qos.map_or(Bson::Null, |q| Bson::Int32(i32::from(q.as_u8()))),
        "retain": rule.retain.map_or(Bson::Null, Bson::Boolean),
    })
}

/// (role, username) of a membership document.
pub(super) fn admin_change(doc: &Document) -> Result<AdminChange, StoreError> {
    let id = int(doc, "admin_change", "id")?;
    Ok(AdminChange {
        id: u64::try_from(id).map_err(|_| StoreError::corrupt("admin_change", "negative id"))?,
        at_ms: int(doc, "admin_change", "at_ms")?,
        user: text(doc, "admin_change", "user")?,
        host: text(doc, "admin_change", "host")?,
        what: text(doc, "admin_change", "what")?,
    })
}

pub(super) fn membership(doc: &Document) -> Result<(String, String), StoreError> {
    Ok((
        text(doc, "membership", "role")?,
        text(doc, "membership", "username")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rule {
        Rule {
            id: RuleId(7),
            effect: Effect::Deny,
            subject: Subject::Role("ops:eu".into()),
            actions: ActionSet::of(&[ActionKind::Subscribe, ActionKind::Receive]),
            pattern: "a/+".into(),
            max_qos: None,
            retain: Some(true),
        }
    }

    #[test]
    fn rules_round_trip() {
        let rule = sample();
        assert_eq!(super::rule(&rule_doc(&rule).unwrap()).unwrap(), rule);
        let mut allow = sample();
        allow.effect = Effect::Allow;
        allow.max_qos = Some(QoS::AtLeastOnce);
        allow.retain = None;
        assert_eq!(super::rule(&rule_doc(&allow).unwrap()).unwrap(), allow);
    }

    #[test]
    fn integers_of_any_width_are_read() {
        let d = doc! { "a": 3_i32, "b": 4_i64, "c": 5.0_f64, "d": 5.5_f64, "e": "x" };
        assert_eq!(int(&d, "meta", "a").unwrap(), 3);
        assert_eq!(int(&d, "meta", "b").unwrap(), 4);
        assert_eq!(int(&d, "meta", "c").unwrap(), 5);
        assert!(int(&d, "meta", "d").is_err());
        assert!(int(&d, "meta", "e").is_err());
        assert!(int(&d, "meta", "missing").is_err());
    }

    #[test]
    fn bad_documents_are_corrupt() {
        let mut d = rule_doc(&sample()).unwrap();
        d.insert("actions", vec!["publish", "fly"]);
        assert_eq!(rule(&d).unwrap_err().kind(), StoreErrorKind::Internal);
        let mut d = rule_doc(&sample()).unwrap();
        d.insert("max_qos", 3_i32);
        assert!(rule(&d).is_err());
        let u =
            doc! { "username": "a", "password_hash": 1_i32, "enabled": true, "superuser": false };
        assert!(user(&u).is_err());
    }

    #[test]
    fn codes_are_classified() {
        assert_eq!(code_kind(11000), StoreErrorKind::Conflict);
        assert_eq!(code_kind(91), StoreErrorKind::Unavailable);
        assert_eq!(code_kind(2), StoreErrorKind::Internal);
    }
}
