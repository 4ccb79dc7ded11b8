//! The arguments of the write scripts, built from our records after they
//! are validated (the scripts trust their input). The order of each list is
//! the `ARGV` layout documented above the script in `queries.rs`, minus the
//! prefix, which `mod.rs` puts first.

use std::collections::BTreeSet;

use warden_policy::{Rule, RuleSpec};

use crate::common::{actions_text, effect_text, subject_columns};
use crate::error::StoreError;
use crate::store::{
    normalize_fingerprint, validate_name, validate_snapshot, AdminChange, NewAdminChange, NewUser,
    PolicySnapshot, UserPatch,
};

/// The stored form of an admin change, after its `{id}:` prefix.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChangeBody {
    at_ms: i64,
    user: String,
    host: String,
    what: String,
}

/// RECORD_CHANGE: the change as JSON.
pub(super) fn change_json(change: &NewAdminChange) -> Result<String, StoreError> {
    serde_json::to_string(&ChangeBody {
        at_ms: change.at_ms,
        user: change.user.clone(),
        host: change.host.clone(),
        what: change.what.clone(),
    })
    .map_err(|e| StoreError::invalid("admin change", e.to_string()))
}

/// A member of `P audit`: `{id}:{JSON}`.
pub(super) fn parse_change(member: &str) -> Result<AdminChange, StoreError> {
    let corrupt = || StoreError::corrupt("audit", "malformed admin change");
    let (id, json) = member.split_once(':').ok_or_else(corrupt)?;
    let body: ChangeBody = serde_json::from_str(json).map_err(|_| corrupt())?;
    Ok(AdminChange {
        id: id.parse().map_err(|_| corrupt())?,
        at_ms: body.at_ms,
        user: body.user,
        host: body.host,
        what: body.what,
    })
}

fn bit(value: bool) -> String {
    if value { "1" } else { "0" }.to_owned()
}

fn optional_bit(value: Option<bool>) -> String {
    value.map(bit).unwrap_or_default()
}

/// CREATE_USER: name, has_hash, hash, enabled, superuser, fingerprint, roles...
pub(super) fn create_user(user: &NewUser) -> Result<Vec<String>, StoreError> {
    validate_name("username", &user.username)?;
    let mut seen = BTreeSet::new();
    for role in &user.roles {
        validate_name("role", role)?;
        if !seen.insert(role.as_str()) {
            return Err(StoreError::invalid(
                "roles",
                format!("{role:?} listed twice"),
            ));
        }
    }
    let mut args = vec![
        user.username.clone(),
        bit(user.password_hash.is_some()),
        user.password_hash.clone().unwrap_or_default(),
        bit(user.enabled),
        bit(user.superuser),
        user.cert_fingerprint
            .as_deref()
            .map(normalize_fingerprint)
            .transpose()?
            .unwrap_or_default(),
    ];
    args.extend(user.roles.iter().cloned());
    Ok(args)
}

/// UPDATE_USER: name, keep|set|clear, hash, enabled, superuser,
/// keep|set|clear, fingerprint.
pub(super) fn update_user(username: &str, patch: &UserPatch) -> Result<Vec<String>, StoreError> {
    let (op, hash) = match &patch.password_hash {
        None => ("keep", String::new()),
        Some(None) => ("clear", String::new()),
        Some(Some(hash)) => ("set", hash.clone()),
    };
    let (pin_op, pin) = match &patch.cert_fingerprint {
        None => ("keep", String::new()),
        Some(None) => ("clear", String::new()),
        Some(Some(pin)) => ("set", normalize_fingerprint(pin)?),
    };
    Ok(vec![
        username.to_owned(),
        op.to_owned(),
        hash,
        optional_bit(patch.enabled),
        optional_bit(patch.superuser),
        pin_op.to_owned(),
        pin,
    ])
}

/// kind, name, effect, actions, pattern, max_qos, retain ("" = none).
fn rule_fields(spec: &RuleSpec) -> [String; 7] {
    let (kind, name) = subject_columns(&spec.subject);
    [
        kind.to_owned(),
        name.to_owned(),
        effect_text(spec.effect).to_owned(),
        actions_text(spec.actions),
        spec.pattern.clone(),
        spec.max_qos
            .map(|q| q.as_u8().to_string())
            .unwrap_or_default(),
        optional_bit(spec.retain),
    ]
}

/// ADD_RULE: the rule's fields, after the spec is validated.
pub(super) fn add_rule(spec: &RuleSpec) -> Result<Vec<String>, StoreError> {
    spec.validate()?;
    Ok(rule_fields(spec).into())
}

/// IMPORT: the largest rule id, then the counted groups.
pub(super) fn import(snapshot: &PolicySnapshot) -> Result<Vec<String>, StoreError> {
    validate_snapshot(snapshot)?;
    let top = snapshot.rules.iter().map(|r| r.id.0).max().unwrap_or(0);
    let mut args = vec![top.to_string(), snapshot.users.len().to_string()];
    for user in &snapshot.users {
        args.extend([
            user.username.clone(),
            bit(user.password_hash.is_some()),
            user.password_hash.clone().unwrap_or_default(),
            bit(user.enabled),
            bit(user.superuser),
            user.cert_fingerprint.clone().unwrap_or_default(),
        ]);
    }
    args.push(snapshot.roles.len().to_string());
    args.extend(snapshot.roles.iter().cloned());
    args.push(snapshot.memberships.len().to_string());
    for m in &snapshot.memberships {
        args.extend([m.role.clone(), m.username.clone()]);
    }
    args.push(snapshot.rules.len().to_string());
    for rule in &snapshot.rules {
        args.push(rule.id.0.to_string());
        args.extend(rule_fields(&Rule::spec(rule)));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use warden_policy::{ActionKind, ActionSet, Effect, QoS, RuleId, Subject};

    use super::*;
    use crate::store::SnapshotUser;

    #[test]
    fn an_admin_change_reads_back_as_written() {
        let change = NewAdminChange {
            at_ms: 1_700_000_000_123,
            user: "ops".into(),
            host: "h:1".into(),
            what: "user add a:b".into(),
        };
        let member = format!("7:{}", change_json(&change).unwrap());
        let back = parse_change(&member).unwrap();
        assert_eq!(back.id, 7);
        assert_eq!(back.at_ms, change.at_ms);
        assert_eq!((back.user.as_str(), back.host.as_str()), ("ops", "h:1"));
        assert_eq!(back.what, "user add a:b");
        assert!(parse_change("x:{}").is_err());
    }

    #[test]
    fn duplicate_roles_are_invalid() {
        let user = NewUser {
            username: "a".into(),
            password_hash: None,
            superuser: false,
            enabled: true,
            roles: vec!["r".into(), "r".into()],
            cert_fingerprint: None,
        };
        assert_eq!(
            create_user(&user).unwrap_err().kind(),
            crate::StoreErrorKind::Invalid
        );
    }

    #[test]
    fn patch_keeps_what_it_does_not_name() {
        let args = update_user(
            "a",
            &UserPatch {
                password_hash: Some(None),
                enabled: Some(false),
                superuser: None,
                cert_fingerprint: None,
            },
        )
        .unwrap();
        assert_eq!(args, ["a", "clear", "", "0", "", "keep", ""]);
    }

    #[test]
    fn import_args_are_counted_groups() {
        let rule = RuleSpec {
            effect: Effect::Allow,
            subject: Subject::Everyone,
            actions: ActionSet::of(&[ActionKind::Publish]),
            pattern: "x/#".into(),
            max_qos: Some(QoS::AtLeastOnce),
            retain: Some(true),
        }
        .with_id(RuleId(12));
        let snapshot = PolicySnapshot {
            users: vec![SnapshotUser {
                username: "u".into(),
                password_hash: Some("h".into()),
                enabled: true,
                superuser: false,
                cert_fingerprint: None,
            }],
            roles: vec![],
            memberships: vec![],
            rules: vec![rule],
        };
        let args = import(&snapshot).unwrap();
        assert_eq!(
            args,
            [
                "12", "1", "u", "1", "h", "1", "0", "", "0", "0", "1", "12", "everyone", "",
                "allow", "publish", "x/#", "1", "1"
            ]
        );
    }
}
