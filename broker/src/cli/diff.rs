//! What differs between two policies: users (added, removed, changed
//! field by field, memberships included), roles, and rules. Rules are
//! compared by what they say, not by id: two stores that hold the same rule
//! under different ids hold the same policy. Password hashes are compared
//! but never shown.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use warden_auth::{PolicySnapshot, SnapshotUser};
use warden_policy::Rule;

use super::audited::describe_rule;

#[derive(Debug, Default, Serialize)]
pub struct PolicyDiff {
    pub users_added: Vec<String>,
    pub users_removed: Vec<String>,
    /// A user in both, with what changed (`superuser: false -> true`).
    pub users_changed: Vec<UserChange>,
    pub roles_added: Vec<String>,
    pub roles_removed: Vec<String>,
    pub rules_added: Vec<RuleLine>,
    pub rules_removed: Vec<RuleLine>,
}

#[derive(Debug, Serialize)]
pub struct UserChange {
    pub username: String,
    pub changes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RuleLine {
    pub id: u64,
    pub rule: String,
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        self.users_added.is_empty()
            && self.users_removed.is_empty()
            && self.users_changed.is_empty()
            && self.roles_added.is_empty()
            && self.roles_removed.is_empty()
            && self.rules_added.is_empty()
            && self.rules_removed.is_empty()
    }

    /// `+`/`-`/`~` lines under a heading per kind, for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !(self.users_added.is_empty()
            && self.users_removed.is_empty()
            && self.users_changed.is_empty())
        {
            out.push_str("users:\n");
            for name in &self.users_removed {
                out.push_str(&format!("  - {name}\n"));
            }
            for name in &self.users_added {
                out.push_str(&format!("  + {name}\n"));
            }
            for change in &self.users_changed {
                out.push_str(&format!(
                    "  ~ {}: {}\n",
                    change.username,
                    change.changes.join(", ")
                ));
            }
        }
        if !(self.roles_added.is_empty() && self.roles_removed.is_empty()) {
            out.push_str("roles:\n");
            for name in &self.roles_removed {
                out.push_str(&format!("  - {name}\n"));
            }
            for name in &self.roles_added {
                out.push_str(&format!("  + {name}\n"));
            }
        }
        if !(self.rules_added.is_empty() && self.rules_removed.is_empty()) {
            out.push_str("rules:\n");
            for line in &self.rules_removed {
                out.push_str(&format!("  - {}: {}\n", line.id, line.rule));
            }
            for line in &self.rules_added {
                out.push_str(&format!("  + {}: {}\n", line.id, line.rule));
            }
        }
        out
    }
}

fn roles_of(snapshot: &PolicySnapshot) -> BTreeMap<&str, Vec<&str>> {
    let mut roles: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in &snapshot.memberships {
        roles.entry(&m.username).or_default().push(&m.role);
    }
    for list in roles.values_mut() {
        list.sort_unstable();
    }
    roles
}

fn flag_change(out: &mut Vec<String>, field: &str, old: bool, new: bool) {
    if old != new {
        out.push(format!("{field}: {old} -> {new}"));
    }
}

fn user_changes(
    old: &SnapshotUser,
    new: &SnapshotUser,
    old_roles: &[&str],
    new_roles: &[&str],
) -> Vec<String> {
    let mut out = Vec::new();
    flag_change(&mut out, "enabled", old.enabled, new.enabled);
    flag_change(&mut out, "superuser", old.superuser, new.superuser);
    match (&old.password_hash, &new.password_hash) {
        (Some(a), Some(b)) if a != b => out.push("password changed".to_owned()),
        (None, Some(_)) => out.push("password set".to_owned()),
        (Some(_), None) => out.push("password removed".to_owned()),
        _ => {}
    }
    if old.cert_fingerprint != new.cert_fingerprint {
        out.push(format!(
            "pin: {} -> {}",
            old.cert_fingerprint.as_deref().unwrap_or("none"),
            new.cert_fingerprint.as_deref().unwrap_or("none")
        ));
    }
    if old_roles != new_roles {
        let show = |r: &[&str]| {
            if r.is_empty() {
                "-".to_owned()
            } else {
                r.join(",")
            }
        };
        out.push(format!("roles: {} -> {}", show(old_roles), show(new_roles)));
    }
    out
}

/// The rules of `from` that `to` does not hold (as many times).
fn rules_missing(from: &[Rule], to: &[Rule]) -> Vec<RuleLine> {
    let mut left: BTreeMap<String, usize> = BTreeMap::new();
    for rule in to {
        *left.entry(describe_rule(&Rule::spec(rule))).or_default() += 1;
    }
    let mut out = Vec::new();
    for rule in from {
        let text = describe_rule(&Rule::spec(rule));
        match left.get_mut(&text) {
            Some(n) if *n > 0 => *n -= 1,
            _ => out.push(RuleLine {
                id: rule.id.0,
                rule: text,
            }),
        }
    }
    out
}

pub fn diff(old: &PolicySnapshot, new: &PolicySnapshot) -> PolicyDiff {
    let old_users: BTreeMap<&str, &SnapshotUser> =
        old.users.iter().map(|u| (u.username.as_str(), u)).collect();
    let new_users: BTreeMap<&str, &SnapshotUser> =
        new.users.iter().map(|u| (u.username.as_str(), u)).collect();
    let (old_roles, new_roles) = (roles_of(old), roles_of(new));
    let mut d = PolicyDiff::default();
    for (name, user) in &old_users {
        match new_users.get(name) {
            None => d.users_removed.push((*name).to_owned()),
            Some(now) => {
                let none = Vec::new();
                let changes = user_changes(
                    user,
                    now,
                    old_roles.get(name).unwrap_or(&none),
                    new_roles.get(name).unwrap_or(&none),
                );
                if !changes.is_empty() {
                    d.users_changed.push(UserChange {
                        username: (*name).to_owned(),
                        changes,
                    });
                }
            }
        }
    }
    d.users_added = new_users
        .keys()
        .filter(|n| !old_users.contains_key(*n))
        .map(|n| (*n).to_owned())
        .collect();
    let old_role_set: BTreeSet<&str> = old.roles.iter().map(String::as_str).collect();
    let new_role_set: BTreeSet<&str> = new.roles.iter().map(String::as_str).collect();
    d.roles_removed = old_role_set
        .difference(&new_role_set)
        .map(|r| (*r).to_owned())
        .collect();
    d.roles_added = new_role_set
        .difference(&old_role_set)
        .map(|r| (*r).to_owned())
        .collect();
    d.rules_removed = rules_missing(&old.rules, &new.rules);
    d.rules_added = rules_missing(&new.rules, &old.rules);
    d
}

#[cfg(test)]
mod tests {
    use warden_auth::Membership;
    use warden_policy::{ActionKind, ActionSet, Effect, RuleId, RuleSpec, Subject};

    use super::*;

    fn user(name: &str, superuser: bool) -> SnapshotUser {
        SnapshotUser {
            username: name.into(),
            password_hash: Some(format!("hash-of-{name}")),
            enabled: true,
            superuser,
            cert_fingerprint: None,
        }
    }

    fn rule(id: u64, pattern: &str) -> Rule {
        RuleSpec {
            effect: Effect::Allow,
            subject: Subject::Everyone,
            actions: ActionSet::of(&[ActionKind::Publish]),
            pattern: pattern.into(),
            max_qos: None,
            retain: None,
        }
        .with_id(RuleId(id))
    }

    #[test]
    fn same_rules_under_other_ids_are_no_difference() {
        let a = PolicySnapshot {
            rules: vec![rule(1, "a/#"), rule(2, "b/#")],
            ..PolicySnapshot::default()
        };
        let b = PolicySnapshot {
            rules: vec![rule(7, "b/#"), rule(9, "a/#")],
            ..PolicySnapshot::default()
        };
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn users_roles_and_rules_are_listed_and_hashes_never_shown() {
        let a = PolicySnapshot {
            users: vec![user("alice", false), user("bob", false)],
            roles: vec!["ops".into()],
            memberships: vec![Membership {
                role: "ops".into(),
                username: "alice".into(),
            }],
            rules: vec![rule(1, "a/#")],
        };
        let mut alice = user("alice", true);
        alice.password_hash = Some("another".into());
        let b = PolicySnapshot {
            users: vec![alice, user("carol", false)],
            roles: vec!["sensors".into()],
            memberships: vec![],
            rules: vec![rule(2, "a/+")],
        };
        let d = diff(&a, &b);
        assert_eq!(d.users_removed, ["bob"]);
        assert_eq!(d.users_added, ["carol"]);
        assert_eq!(
            d.users_changed[0].changes,
            [
                "superuser: false -> true",
                "password changed",
                "roles: ops -> -"
            ]
        );
        assert_eq!((d.roles_removed.len(), d.roles_added.len()), (1, 1));
        assert_eq!(d.rules_removed[0].id, 1);
        assert_eq!(d.rules_added[0].id, 2);
        let text = d.render();
        assert!(
            !text.contains("hash-of") && !text.contains("another"),
            "{text}"
        );
        assert!(
            text.contains("  ~ alice: superuser: false -> true"),
            "{text}"
        );
    }
}
