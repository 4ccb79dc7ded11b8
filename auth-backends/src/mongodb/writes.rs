//! The bodies of the MongoDB writes. Each runs on a [`Writer`] opened by
//! `mod.rs`, which bumps the version and commits (or aborts) afterwards.
//!
//! Every check that can fail is made before the first change, so that on a
//! server without transactions a refused write changes nothing.

use std::collections::BTreeSet;

use mongodb::bson::{doc, Document};
use warden_policy::{RuleId, RuleSpec, Subject};

use crate::error::StoreError;
use crate::store::{
    normalize_fingerprint, validate_name, validate_snapshot, NewAdminChange, NewUser,
    PolicySnapshot, UserPatch,
};

use super::docs::{rule_doc, user_fields};
use super::queries as q;
use super::writer::{opt_string, Writer};

async fn require_user(w: &mut Writer<'_>, username: &str) -> Result<(), StoreError> {
    if w.exists(q::USERS, q::user(username)).await? {
        Ok(())
    } else {
        Err(StoreError::not_found("user", username))
    }
}

async fn ensure_role(w: &mut Writer<'_>, role: &str) -> Result<(), StoreError> {
    w.insert_if_missing(q::ROLES, q::role(role), doc! { "name": role })
        .await?;
    Ok(())
}

async fn insert_membership(
    w: &mut Writer<'_>,
    role: &str,
    username: &str,
) -> Result<bool, StoreError> {
    w.insert_if_missing(
        q::MEMBERSHIPS,
        q::membership(role, username),
        q::membership(role, username),
    )
    .await
}

pub(super) async fn create_user(w: &mut Writer<'_>, user: &NewUser) -> Result<(), StoreError> {
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
    let pin = user
        .cert_fingerprint
        .as_deref()
        .map(normalize_fingerprint)
        .transpose()?;
    let fields = user_fields(
        &user.username,
        user.password_hash.as_deref(),
        user.enabled,
        user.superuser,
        pin.as_deref(),
    );
    if !w
        .insert_if_missing(q::USERS, q::user(&user.username), fields)
        .await?
    {
        return Err(StoreError::exists("user", &user.username));
    }
    for role in &user.roles {
        ensure_role(w, role).await?;
        // A membership left behind by a half-finished delete elsewhere is
        // harmless: the pair is what the user asked for.
        insert_membership(w, role, &user.username).await?;
    }
    Ok(())
}

pub(super) async fn update_user(
    w: &mut Writer<'_>,
    username: &str,
    patch: &UserPatch,
) -> Result<(), StoreError> {
    let mut fields = Document::new();
    if let Some(hash) = &patch.password_hash {
        fields.insert("password_hash", opt_string(hash.as_deref()));
    }
    if let Some(enabled) = patch.enabled {
        fields.insert("enabled", enabled);
    }
    if let Some(superuser) = patch.superuser {
        fields.insert("superuser", superuser);
    }
    if let Some(pin) = &patch.cert_fingerprint {
        let pin = pin.as_deref().map(normalize_fingerprint).transpose()?;
        fields.insert("cert_fingerprint", opt_string(pin.as_deref()));
    }
    // An empty `$set` is an error in MongoDB; an empty patch only checks.
    let matched = if fields.is_empty() {
        u64::from(w.exists(q::USERS, q::user(username)).await?)
    } else {
        w.update_one(q::USERS, q::user(username), q::set(fields))
            .await?
    };
    if matched == 0 {
        return Err(StoreError::not_found("user", username));
    }
    Ok(())
}

pub(super) async fn delete_user(w: &mut Writer<'_>, username: &str) -> Result<(), StoreError> {
    if w.delete_one(q::USERS, q::user(username)).await? == 0 {
        return Err(StoreError::not_found("user", username));
    }
    w.delete_many(q::MEMBERSHIPS, q::memberships_of_user(username))
        .await?;
    w.delete_many(q::RULES, q::rules_of(&Subject::User(username.to_owned())))
        .await?;
    Ok(())
}

pub(super) async fn create_role(w: &mut Writer<'_>, name: &str) -> Result<(), StoreError> {
    validate_name("role", name)?;
    if !w
        .insert_if_missing(q::ROLES, q::role(name), doc! { "name": name })
        .await?
    {
        return Err(StoreError::exists("role", name));
    }
    Ok(())
}

pub(super) async fn delete_role(w: &mut Writer<'_>, name: &str) -> Result<(), StoreError> {
    if !w.exists(q::ROLES, q::role(name)).await? {
        return Err(StoreError::not_found("role", name));
    }
    if w.count(q::MEMBERSHIPS, q::members_of_role(name)).await? > 0 {
        return Err(StoreError::Conflict {
            what: "role",
            name: name.to_owned(),
            reason: "still has members; revoke them first",
        });
    }
    w.delete_many(q::RULES, q::rules_of(&Subject::Role(name.to_owned())))
        .await?;
    w.delete_one(q::ROLES, q::role(name)).await?;
    Ok(())
}

pub(super) async fn grant(
    w: &mut Writer<'_>,
    role: &str,
    username: &str,
) -> Result<(), StoreError> {
    validate_name("role", role)?;
    require_user(w, username).await?;
    if w.exists(q::MEMBERSHIPS, q::membership(role, username))
        .await?
    {
        return Err(StoreError::exists(
            "membership",
            format!("{role}/{username}"),
        ));
    }
    ensure_role(w, role).await?;
    if !insert_membership(w, role, username).await? {
        // Another writer granted the same pair between the check and here.
        return Err(StoreError::exists(
            "membership",
            format!("{role}/{username}"),
        ));
    }
    Ok(())
}

pub(super) async fn revoke(
    w: &mut Writer<'_>,
    role: &str,
    username: &str,
) -> Result<(), StoreError> {
    if w.delete_one(q::MEMBERSHIPS, q::membership(role, username))
        .await?
        == 0
    {
        return Err(StoreError::not_found(
            "membership",
            format!("{role}/{username}"),
        ));
    }
    Ok(())
}

pub(super) async fn add_rule(w: &mut Writer<'_>, spec: &RuleSpec) -> Result<RuleId, StoreError> {
    spec.validate()?;
    match &spec.subject {
        Subject::User(name) => require_user(w, name).await?,
        Subject::Role(name) if !w.exists(q::ROLES, q::role(name)).await? => {
            return Err(StoreError::not_found("role", name))
        }
        _ => {}
    }
    let id = w.increment(q::RULE_COUNTER_ID).await?;
    let id = u64::try_from(id)
        .map(RuleId)
        .map_err(|_| StoreError::corrupt("counter", "negative rule id"))?;
    w.insert_one(q::RULES, rule_doc(&spec.clone().with_id(id))?)
        .await?;
    Ok(id)
}

pub(super) async fn remove_rule(w: &mut Writer<'_>, id: RuleId) -> Result<(), StoreError> {
    let key = i64::try_from(id.0).map_err(|_| StoreError::not_found("rule", id.to_string()))?;
    if w.delete_one(q::RULES, q::rule(key)).await? == 0 {
        return Err(StoreError::not_found("rule", id.to_string()));
    }
    Ok(())
}

pub(super) async fn import(
    w: &mut Writer<'_>,
    snapshot: &PolicySnapshot,
) -> Result<(), StoreError> {
    validate_snapshot(snapshot)?;
    let rules = snapshot
        .rules
        .iter()
        .map(rule_doc)
        .collect::<Result<Vec<_>, _>>()?;
    for collection in q::CLEAR_ORDER {
        w.delete_many(collection, q::all()).await?;
    }
    let users = snapshot
        .users
        .iter()
        .map(|u| {
            user_fields(
                &u.username,
                u.password_hash.as_deref(),
                u.enabled,
                u.superuser,
                u.cert_fingerprint.as_deref(),
            )
        })
        .collect();
    w.insert_many(q::USERS, users).await?;
    let roles = snapshot.roles.iter().map(|r| doc! { "name": r }).collect();
    w.insert_many(q::ROLES, roles).await?;
    let memberships = snapshot
        .memberships
        .iter()
        .map(|m| q::membership(&m.role, &m.username))
        .collect();
    w.insert_many(q::MEMBERSHIPS, memberships).await?;
    w.insert_many(q::RULES, rules).await?;
    if let Some(max) = snapshot.rules.iter().map(|r| r.id.0).max() {
        let max =
            i64::try_from(max).map_err(|_| StoreError::invalid("rules", "id out of range"))?;
        w.raise_counter(q::RULE_COUNTER_ID, max).await?;
    }
    Ok(())
}

pub(super) async fn record_admin_change(
    w: &mut Writer<'_>,
    change: &NewAdminChange,
) -> Result<(), StoreError> {
    let id = w.increment(q::AUDIT_COUNTER_ID).await?;
    w.insert_one(
        q::ADMIN_CHANGES,
        doc! {
            "id": id,
            "at_ms": change.at_ms,
            "user": change.user.as_str(),
            "host": change.host.as_str(),
            "what": change.what.as_str(),
        },
    )
    .await
}
