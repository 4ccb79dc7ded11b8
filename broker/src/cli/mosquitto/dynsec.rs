//! The dynamic-security plugin's JSON file, mapped onto Warden.
//!
//! Mosquitto's order (`plugins/dynamic-security/acl.c`): for one check it
//! walks the client's roles (priority high to low, then by name), then its
//! groups (the same order) and each group's roles; inside a role the ACLs
//! of that type by priority (for subscribe, the `subscribeLiteral` entry
//! equal to the filter first). The first ACL that matches decides; none
//! matching falls to `defaultACLAccess`. `subscribePattern` matches a
//! filter it covers, `subscribeLiteral` only the identical string.
//!
//! The mapping: dynsec roles are Warden roles; a client's roles are its
//! own plus those of its groups (groups flatten); `publishClientSend` →
//! publish, `publishClientReceive` → receive, `subscribeLiteral` and
//! `subscribePattern` → subscribe; a default of `true` becomes an
//! `everyone` allow. Deny-overrides agrees with the first match except
//! where an allow comes before a deny that overlaps it, or beside one at
//! the same priority; for every client such an allow is refused, naming
//! the deny. Unsubscribe checks, `subscribeLiteral` with wildcards and the
//! anonymous group have no Warden equivalent and are refused.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use warden_auth::foreign_hash;
use warden_policy::{ActionKind, ActionSet, Effect, RuleSpec, Subject};

use super::overlap::{has_wildcard, overlaps};
use super::{ImportError, Plan, PlanRule, PlanUser};

fn minus_one() -> i64 {
    -1
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub struct DynsecFile {
    #[serde(default)]
    clients: Vec<Client>,
    #[serde(default)]
    groups: Vec<Group>,
    #[serde(default)]
    roles: Vec<Role>,
    #[serde(rename = "defaultACLAccess", default)]
    default_access: DefaultAccess,
    #[serde(rename = "anonymousGroup")]
    anonymous_group: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Client {
    username: String,
    password: Option<String>,
    salt: Option<String>,
    iterations: Option<u32>,
    #[serde(default)]
    roles: Vec<RoleRef>,
    clientid: Option<String>,
    #[serde(default)]
    disabled: bool,
}

#[derive(Debug, Deserialize)]
struct RoleRef {
    rolename: String,
    #[serde(default = "minus_one")]
    priority: i64,
}

#[derive(Debug, Deserialize)]
struct Group {
    groupname: String,
    #[serde(default)]
    roles: Vec<RoleRef>,
    #[serde(default)]
    clients: Vec<ClientRef>,
}

#[derive(Debug, Deserialize)]
struct ClientRef {
    username: String,
    #[serde(default = "minus_one")]
    priority: i64,
}

#[derive(Debug, Deserialize)]
struct Role {
    rolename: String,
    #[serde(default)]
    acls: Vec<Acl>,
}

#[derive(Debug, Deserialize)]
struct Acl {
    acltype: String,
    topic: String,
    #[serde(default)]
    priority: i64,
    #[serde(default)]
    allow: bool,
}

/// The plugin's defaults when the file does not say.
#[derive(Debug, Deserialize)]
struct DefaultAccess {
    #[serde(rename = "publishClientSend", default)]
    publish_send: bool,
    #[serde(rename = "publishClientReceive", default = "yes")]
    publish_receive: bool,
    #[serde(default)]
    subscribe: bool,
    #[serde(default = "yes")]
    unsubscribe: bool,
}

impl Default for DefaultAccess {
    fn default() -> Self {
        DefaultAccess {
            publish_send: false,
            publish_receive: true,
            subscribe: false,
            unsubscribe: true,
        }
    }
}

pub fn parse(text: &str) -> Result<DynsecFile, ImportError> {
    serde_json::from_str(text).map_err(|e| ImportError::Parse {
        line: e.line(),
        message: e.to_string(),
    })
}

/// One ACL that became a Warden rule, with what the order check needs.
struct Mapped {
    rule: usize,
    action: ActionKind,
    allow: bool,
    filter: String,
    /// Checked before the other subscribe ACLs of its role.
    literal: bool,
    priority: i64,
}

pub fn map(file: &DynsecFile, plan: &mut Plan) {
    map_defaults(&file.default_access, plan);
    let mut by_role: BTreeMap<&str, Vec<Mapped>> = BTreeMap::new();
    for role in &file.roles {
        let mapped = map_role(role, plan);
        by_role.insert(role.rolename.as_str(), mapped);
    }
    if let Some(group) = &file.anonymous_group {
        plan.refuse(
            format!("anonymousGroup {group}"),
            "its roles apply to anonymous clients only; Warden has no subject for anonymous \
             clients alone (an `everyone` rule would also apply to every user)",
        );
    }

    // Each client's groups, with the priority of its membership.
    let mut groups_of: BTreeMap<&str, Vec<(i64, &Group)>> = BTreeMap::new();
    for group in &file.groups {
        for member in &group.clients {
            groups_of
                .entry(member.username.as_str())
                .or_default()
                .push((member.priority, group));
        }
    }
    // Clients with the same roles and groups are checked once.
    let mut checked: BTreeSet<Vec<String>> = BTreeSet::new();
    for client in &file.clients {
        let mut groups = groups_of
            .remove(client.username.as_str())
            .unwrap_or_default();
        groups.sort_by(|(pa, a), (pb, b)| pb.cmp(pa).then(a.groupname.cmp(&b.groupname)));
        let order = client_order(&client.roles, &groups);
        let signature: Vec<String> = order
            .iter()
            .map(|(key, role)| format!("{key:?}{role}"))
            .collect();
        let roles: BTreeSet<String> = order.iter().map(|(_, r)| r.to_string()).collect();
        if checked.insert(signature) {
            check_order(&client.username, &order, &by_role, plan);
        }
        add_client(client, roles, plan);
    }
}

/// The client's roles in Mosquitto's order, each with its position key
/// (tier, group index, role index).
fn client_order<'a>(own: &'a [RoleRef], groups: &[(i64, &'a Group)]) -> Vec<([i64; 3], &'a str)> {
    let sorted = |refs: &'a [RoleRef]| {
        let mut refs: Vec<&RoleRef> = refs.iter().collect();
        refs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.rolename.cmp(&b.rolename))
        });
        refs
    };
    let mut out = Vec::new();
    for (i, r) in sorted(own).into_iter().enumerate() {
        out.push(([0, 0, i as i64], r.rolename.as_str()));
    }
    for (g, (_, group)) in groups.iter().enumerate() {
        for (i, r) in sorted(&group.roles).into_iter().enumerate() {
            out.push(([1, g as i64, i as i64], r.rolename.as_str()));
        }
    }
    out
}

/// Refuse every allow that Mosquitto would check before (or beside) an
/// overlapping deny of the same action for this client.
fn check_order(
    client: &str,
    order: &[([i64; 3], &str)],
    by_role: &BTreeMap<&str, Vec<Mapped>>,
    plan: &mut Plan,
) {
    // (position, ACL) for every ACL the client reaches; a role reached
    // twice (its own and through a group) counts where it is reached first.
    let mut seen: Vec<([i64; 5], &Mapped, &str)> = Vec::new();
    let mut reached = BTreeSet::new();
    for (key, role) in order {
        for acl in by_role.get(role).map(Vec::as_slice).unwrap_or_default() {
            if !reached.insert(acl.rule) {
                continue;
            }
            let position = [
                key[0],
                key[1],
                key[2],
                i64::from(!acl.literal),
                -acl.priority,
            ];
            seen.push((position, acl, role));
        }
    }
    for (pa, allow, role_a) in seen.iter().filter(|(_, m, _)| m.allow) {
        let blocking = seen.iter().find(|(pd, deny, _)| {
            !deny.allow
                && deny.action == allow.action
                && pd >= pa
                && overlaps(&allow.filter, &deny.filter)
        });
        if let Some((pd, deny, role_d)) = blocking {
            let when = if pd == pa {
                "at the same priority as"
            } else {
                "before"
            };
            let reason = format!(
                "for client {client}, Mosquitto checks this allow (role {role_a}) {when} the \
                 overlapping deny {} of role {role_d}, so the allow decides there; in Warden \
                 the deny always wins",
                deny.filter
            );
            plan.refuse_rule(allow.rule, reason);
        }
    }
}

fn map_role(role: &Role, plan: &mut Plan) -> Vec<Mapped> {
    let mut out = Vec::new();
    for acl in &role.acls {
        let origin = format!(
            "role {} {} {} {} (priority {})",
            role.rolename,
            acl.acltype,
            if acl.allow { "allow" } else { "deny" },
            acl.topic,
            acl.priority
        );
        let (action, literal) = match acl.acltype.as_str() {
            "publishClientSend" => (ActionKind::Publish, false),
            "publishClientReceive" => (ActionKind::Receive, false),
            "subscribeLiteral" => (ActionKind::Subscribe, true),
            "subscribePattern" => (ActionKind::Subscribe, false),
            "unsubscribeLiteral" | "unsubscribePattern" => {
                if acl.allow {
                    plan.notes.push(format!(
                        "{origin}: Warden lets every client unsubscribe; nothing to import"
                    ));
                } else {
                    plan.refuse(
                        origin,
                        "Warden does not check UNSUBSCRIBE (every client may unsubscribe)",
                    );
                }
                continue;
            }
            other => {
                plan.refuse(origin, format!("unknown acltype {other:?}"));
                continue;
            }
        };
        if literal && has_wildcard(&acl.topic) {
            plan.refuse(
                origin,
                "a subscribeLiteral with a wildcard matches only that exact filter string; a \
                 Warden rule would also cover every filter inside it",
            );
            continue;
        }
        if acl.topic.contains("${") {
            plan.refuse(
                origin,
                "the topic contains `${`, which Warden reads as a placeholder",
            );
            continue;
        }
        let effect = if acl.allow {
            Effect::Allow
        } else {
            Effect::Deny
        };
        let mut patterns = vec![acl.topic.clone()];
        // dynsec's subscribePattern `#` also admits `$` filters; Warden's
        // `#` never reaches `$` topics, so `$SYS` is named.
        if action == ActionKind::Subscribe && acl.topic == "#" && acl.allow {
            patterns.push("$SYS/#".to_owned());
        }
        for pattern in patterns {
            let spec = RuleSpec {
                effect,
                subject: Subject::Role(role.rolename.clone()),
                actions: ActionSet::of(&[action]),
                pattern: pattern.clone(),
                max_qos: None,
                retain: None,
            };
            if let Err(err) = spec.validate() {
                plan.refuse(origin.clone(), format!("not a valid Warden rule: {err}"));
                continue;
            }
            let rule = plan.rules.len();
            plan.rules.push(PlanRule {
                spec,
                origin: origin.clone(),
            });
            out.push(Mapped {
                rule,
                action,
                allow: acl.allow,
                filter: pattern,
                literal,
                priority: acl.priority,
            });
        }
    }
    plan.role_names.insert(role.rolename.clone());
    out
}

fn map_defaults(defaults: &DefaultAccess, plan: &mut Plan) {
    use ActionKind::{Publish, Receive, Subscribe};
    for (on, action, name, patterns) in [
        (
            defaults.publish_send,
            Publish,
            "publishClientSend",
            &["#"][..],
        ),
        (
            defaults.publish_receive,
            Receive,
            "publishClientReceive",
            &["#", "$SYS/#"][..],
        ),
        (
            defaults.subscribe,
            Subscribe,
            "subscribe",
            &["#", "$SYS/#"][..],
        ),
    ] {
        if !on {
            continue;
        }
        for pattern in patterns {
            plan.rules.push(PlanRule {
                spec: RuleSpec {
                    effect: Effect::Allow,
                    subject: Subject::Everyone,
                    actions: ActionSet::of(&[action]),
                    pattern: (*pattern).to_owned(),
                    max_qos: None,
                    retain: None,
                },
                origin: format!("defaultACLAccess {name} true"),
            });
        }
    }
    if !defaults.unsubscribe {
        plan.refuse(
            "defaultACLAccess unsubscribe false".to_owned(),
            "Warden does not check UNSUBSCRIBE (every client may unsubscribe)",
        );
    }
}

fn add_client(client: &Client, roles: BTreeSet<String>, plan: &mut Plan) {
    let origin = format!("client {}", client.username);
    let password_hash = match (&client.password, &client.salt, client.iterations) {
        (Some(password), Some(salt), Some(iterations)) => {
            let hash = format!("$7${iterations}${salt}${password}");
            if foreign_hash::check_format(&hash).is_err() {
                plan.refuse(
                    origin,
                    "its password hash is not PBKDF2-SHA512 as the plugin writes it",
                );
                return;
            }
            Some(hash)
        }
        (None, None, None) => None,
        _ => {
            plan.refuse(origin, "password, salt and iterations must come together");
            return;
        }
    };
    if let Some(id) = &client.clientid {
        if id.contains('*') || id.contains("${") {
            plan.refuse(
                origin,
                format!(
                    "its fixed client id {id:?} holds `*` or `${{`, which a Warden connect \
                     pattern reads as a wildcard or placeholder"
                ),
            );
            return;
        }
        plan.rules.push(PlanRule {
            spec: RuleSpec {
                effect: Effect::Allow,
                subject: Subject::User(client.username.clone()),
                actions: ActionSet::of(&[ActionKind::Connect]),
                pattern: id.clone(),
                max_qos: None,
                retain: None,
            },
            origin: format!("{origin} clientid {id}"),
        });
    }
    plan.role_names.extend(roles.iter().cloned());
    plan.users.insert(
        client.username.clone(),
        PlanUser {
            password_hash,
            enabled: !client.disabled,
            roles,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(json: &str) -> Plan {
        let mut plan = Plan::default();
        map(&parse(json).unwrap(), &mut plan);
        plan
    }

    const HASH: &str = r#""password": "Ezi9oFvNZN5qv0Kg/+Qy19HDVKTJQMB79kFA0Rp5AtMfX+SZ3jDY7qiUBsjisIJsrb7m35FwW60VNiTCivAZKA==", "salt": "sn1Gzy0C8vnfAhfT", "iterations": 101"#;

    #[test]
    fn deny_before_allow_maps_exactly() {
        let plan = plan_of(&format!(
            r#"{{ "clients": [{{ "username": "alice", {HASH}, "roles": [{{"rolename": "s"}}] }}],
               "roles": [{{ "rolename": "s", "acls": [
                 {{"acltype": "publishClientSend", "topic": "s/#", "priority": 1, "allow": true}},
                 {{"acltype": "publishClientSend", "topic": "s/secret", "priority": 5, "allow": false}} ] }}] }}"#
        ));
        assert!(plan.refused.is_empty(), "{:?}", plan.refused);
        assert_eq!(plan.users["alice"].roles, BTreeSet::from(["s".to_owned()]));
        assert!(plan.users["alice"]
            .password_hash
            .as_deref()
            .unwrap()
            .starts_with("$7$101$"));
        // The two ACLs plus the default receive (# and $SYS/#).
        assert_eq!(plan.rules.len(), 4);
    }

    #[test]
    fn allow_before_overlapping_deny_is_refused() {
        let plan = plan_of(
            r##"{ "clients": [{ "username": "bob", "roles": [{"rolename": "hi", "priority": 9}],
                 "clientid": "bob-1" }],
               "groups": [{ "groupname": "g", "roles": [{"rolename": "lo"}],
                 "clients": [{"username": "bob"}] }],
               "roles": [
                 { "rolename": "hi", "acls": [{"acltype": "subscribePattern", "topic": "a/#", "allow": true}] },
                 { "rolename": "lo", "acls": [{"acltype": "subscribePattern", "topic": "a/b", "allow": false},
                                               {"acltype": "subscribeLiteral", "topic": "x/+", "allow": true},
                                               {"acltype": "unsubscribePattern", "topic": "#", "allow": false}] } ],
               "defaultACLAccess": {"publishClientReceive": false} }"##,
        );
        let refused: Vec<&str> = plan.refused.iter().map(|r| r.origin.as_str()).collect();
        assert_eq!(
            refused,
            vec![
                "role lo subscribeLiteral allow x/+ (priority 0)",
                "role lo unsubscribePattern deny # (priority 0)",
                "role hi subscribePattern allow a/# (priority 0)",
            ],
            "{:?}",
            plan.refused
        );
        assert_eq!(
            plan.users["bob"].roles,
            BTreeSet::from(["hi".to_owned(), "lo".to_owned()])
        );
        assert!(plan.users["bob"].password_hash.is_none());
        assert!(plan
            .rules
            .iter()
            .any(|r| r.spec.actions.contains(ActionKind::Connect) && r.spec.pattern == "bob-1"));
    }

    #[test]
    fn anonymous_group_and_bad_json_are_refused() {
        let plan = plan_of(r#"{ "anonymousGroup": "anon", "groups": [{"groupname": "anon"}] }"#);
        assert_eq!(plan.refused.len(), 1);
        assert!(matches!(
            parse("{ \"clients\": [ }"),
            Err(ImportError::Parse { line: 1, .. })
        ));
    }
}
