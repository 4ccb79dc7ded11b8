//! Decoding the scripts' replies into our records (the Redis counterpart of
//! the SQL backends' `rows.rs`), and classifying Redis errors.
//!
//! A reply of the wrong shape, or a field that does not decode, is
//! `Corrupt` (kind Internal): only hand-edited keys can cause it.

use std::time::Duration;

use redis::{ErrorKind, RedisError, Value};
use warden_policy::{Rule, RuleId, RuleSpec};

use crate::common::{parse_actions, parse_effect, parse_qos, parse_subject};
use crate::error::{StoreError, StoreErrorKind};
use crate::store::{Membership, PolicySnapshot, SnapshotUser, UserRecord};

use super::BACKEND;

/// Classify by the client's error kind and I/O flags, never by message.
pub(super) fn classify(err: RedisError, timeout: Duration) -> StoreError {
    if err.is_timeout() {
        return StoreError::Timeout {
            backend: BACKEND,
            after: timeout,
        };
    }
    let kind = if err.is_io_error()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || err.is_unrecoverable_error()
    {
        StoreErrorKind::Unavailable
    } else {
        match err.kind() {
            ErrorKind::IoError
            | ErrorKind::BusyLoadingError
            | ErrorKind::TryAgain
            | ErrorKind::ClusterDown
            | ErrorKind::MasterDown
            | ErrorKind::ReadOnly
            | ErrorKind::AuthenticationFailed
            | ErrorKind::ClusterConnectionNotFound => StoreErrorKind::Unavailable,
            ErrorKind::InvalidClientConfig => StoreErrorKind::Invalid,
            _ => StoreErrorKind::Internal,
        }
    };
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

fn shape(what: &'static str, expected: &str) -> StoreError {
    StoreError::corrupt(what, format!("reply is not {expected}"))
}

/// The elements of an array reply; nil is empty.
pub(super) fn items(value: Value) -> Result<Vec<Value>, StoreError> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        _ => Err(shape("reply", "an array")),
    }
}

/// A string-like reply; nil (Lua false, a missing hash field) is None.
pub(super) fn text(value: Value) -> Result<Option<String>, StoreError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| StoreError::corrupt("reply", "not UTF-8")),
        Value::SimpleString(s) => Ok(Some(s)),
        Value::Okay => Ok(Some("OK".to_owned())),
        Value::Int(n) => Ok(Some(n.to_string())),
        _ => Err(shape("reply", "a string")),
    }
}

fn required(what: &'static str, field: &str, value: Value) -> Result<String, StoreError> {
    text(value)?.ok_or_else(|| StoreError::corrupt(what, format!("{field} missing")))
}

fn parse_flag(what: &'static str, field: &str, text: &str) -> Result<bool, StoreError> {
    match text {
        "1" => Ok(true),
        "0" => Ok(false),
        other => Err(StoreError::corrupt(what, format!("{field} {other:?}"))),
    }
}

fn flag(what: &'static str, field: &str, value: Value) -> Result<bool, StoreError> {
    parse_flag(what, field, &required(what, field, value)?)
}

fn fixed<const N: usize>(what: &'static str, value: Value) -> Result<[Value; N], StoreError> {
    <[Value; N]>::try_from(items(value)?).map_err(|_| shape(what, "of the expected length"))
}

/// What a write script answered: `Ok(detail)` on success, else the error
/// naming what `name(what)` gives for the user, role, membership or rule.
pub(super) fn status(
    value: Value,
    name: impl Fn(&'static str) -> String,
) -> Result<String, StoreError> {
    let [code, detail] = fixed::<2>("reply", value)?;
    let code = required("reply", "status", code)?;
    let detail = required("reply", "detail", detail)?;
    let what = match detail.as_str() {
        "user" => "user",
        "role" => "role",
        "membership" => "membership",
        "rule" => "rule",
        _ if code == "ok" => return Ok(detail),
        other => return Err(StoreError::corrupt("reply", format!("detail {other:?}"))),
    };
    match code.as_str() {
        "exists" => Err(StoreError::exists(what, name(what))),
        "not_found" => Err(StoreError::not_found(what, name(what))),
        "has_members" => Err(StoreError::Conflict {
            what,
            name: name(what),
            reason: "still has members; revoke them first",
        }),
        other => Err(StoreError::corrupt("reply", format!("status {other:?}"))),
    }
}

pub(super) fn number(what: &'static str, text: &str) -> Result<u64, StoreError> {
    text.parse()
        .map_err(|_| StoreError::corrupt(what, format!("{text:?} is not a number")))
}

/// One `fetch_rule` row: id, effect, kind, name, actions, pattern,
/// max_qos, retain.
fn rule(value: Value) -> Result<Rule, StoreError> {
    let [id, effect, kind, name, actions, pattern, max_qos, retain] = fixed::<8>("rule", value)?;
    let id = RuleId(number("rule", &required("rule", "id", id)?)?);
    let max_qos = text(max_qos)?
        .map(|q| {
            q.parse()
                .map_err(|_| StoreError::corrupt("rule", format!("max_qos {q:?}")))
                .and_then(parse_qos)
        })
        .transpose()?;
    let retain = text(retain)?
        .map(|r| parse_flag("rule", "retain", &r))
        .transpose()?;
    let spec = RuleSpec {
        effect: parse_effect(&required("rule", "effect", effect)?)?,
        subject: parse_subject(
            &required("rule", "kind", kind)?,
            required("rule", "name", name)?,
        )?,
        actions: parse_actions(&required("rule", "actions", actions)?)?,
        pattern: required("rule", "pattern", pattern)?,
        max_qos,
        retain,
    };
    Ok(spec.with_id(id))
}

/// A list of rule rows, ordered by id.
pub(super) fn rules(value: Value) -> Result<Vec<Rule>, StoreError> {
    let mut rules = items(value)?
        .into_iter()
        .map(rule)
        .collect::<Result<Vec<_>, _>>()?;
    rules.sort_by_key(|r| r.id);
    Ok(rules)
}

fn strings(value: Value) -> Result<Vec<String>, StoreError> {
    items(value)?
        .into_iter()
        .map(|v| required("reply", "element", v))
        .collect()
}

/// The USER script's answer: `{}` or
/// `{hash, enabled, superuser, {roles}, fingerprint}`.
pub(super) fn user(value: Value, username: &str) -> Result<Option<UserRecord>, StoreError> {
    let fields = items(value)?;
    if fields.is_empty() {
        return Ok(None);
    }
    let [hash, enabled, superuser, roles, pin] =
        <[Value; 5]>::try_from(fields).map_err(|_| shape("user", "of length 5"))?;
    let mut roles = strings(roles)?;
    roles.sort();
    Ok(Some(UserRecord {
        username: username.to_owned(),
        password_hash: text(hash)?,
        enabled: flag("user", "enabled", enabled)?,
        superuser: flag("user", "superuser", superuser)?,
        roles,
        cert_fingerprint: text(pin)?,
    }))
}

fn snapshot_user(value: Value) -> Result<SnapshotUser, StoreError> {
    let [name, hash, enabled, superuser, pin] = fixed::<5>("user", value)?;
    Ok(SnapshotUser {
        username: required("user", "name", name)?,
        password_hash: text(hash)?,
        enabled: flag("user", "enabled", enabled)?,
        superuser: flag("user", "superuser", superuser)?,
        cert_fingerprint: text(pin)?,
    })
}

fn membership(value: Value) -> Result<Membership, StoreError> {
    let [role, username] = fixed::<2>("membership", value)?;
    Ok(Membership {
        role: required("membership", "role", role)?,
        username: required("membership", "user", username)?,
    })
}

/// The EXPORT script's answer, with every list sorted as
/// [`PolicySnapshot`] requires.
pub(super) fn snapshot(value: Value) -> Result<PolicySnapshot, StoreError> {
    let [users, roles, memberships, rule_rows] = fixed::<4>("snapshot", value)?;
    let mut users = items(users)?
        .into_iter()
        .map(snapshot_user)
        .collect::<Result<Vec<_>, _>>()?;
    users.sort_by(|a, b| a.username.cmp(&b.username));
    let mut roles = strings(roles)?;
    roles.sort();
    let mut memberships = items(memberships)?
        .into_iter()
        .map(membership)
        .collect::<Result<Vec<_>, _>>()?;
    memberships.sort();
    Ok(PolicySnapshot {
        users,
        roles,
        memberships,
        rules: rules(rule_rows)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn statuses_map_to_kinds() {
        let reply = |code: &str, detail: &str| Value::Array(vec![bulk(code), bulk(detail)]);
        let x = |_: &'static str| "x".to_owned();
        assert_eq!(status(reply("ok", "12"), x).unwrap(), "12");
        let kind = |v| status(v, x).unwrap_err().kind();
        assert_eq!(kind(reply("exists", "user")), StoreErrorKind::Conflict);
        assert_eq!(kind(reply("not_found", "rule")), StoreErrorKind::NotFound);
        assert_eq!(kind(reply("has_members", "role")), StoreErrorKind::Conflict);
        assert_eq!(kind(reply("boom", "role")), StoreErrorKind::Internal);
        assert_eq!(kind(Value::Int(1)), StoreErrorKind::Internal);
    }

    #[test]
    fn rule_rows_decode_and_sort() {
        let row = |id: &str, qos: Value, retain: Value| {
            Value::Array(vec![
                bulk(id),
                bulk("deny"),
                bulk("role"),
                bulk("ops"),
                bulk("publish,subscribe"),
                bulk("a/#"),
                qos,
                retain,
            ])
        };
        let list = Value::Array(vec![
            row("10", Value::Nil, Value::Nil),
            row("9", bulk("1"), bulk("0")),
        ]);
        let rules = rules(list).unwrap();
        assert_eq!(rules[0].id, RuleId(9));
        assert_eq!(rules[0].retain, Some(false));
        assert_eq!(rules[1].id, RuleId(10));
        assert_eq!(rules[1].max_qos, None);
        let bad = Value::Array(vec![row("x", Value::Nil, Value::Nil)]);
        assert_eq!(
            super::rules(bad).unwrap_err().kind(),
            StoreErrorKind::Internal
        );
    }

    #[test]
    fn io_errors_are_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = classify(RedisError::from(io), Duration::from_secs(1));
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
        let typed = RedisError::from((ErrorKind::TypeError, "wrong type"));
        assert_eq!(
            classify(typed, Duration::from_secs(1)).kind(),
            StoreErrorKind::Internal
        );
    }
}
