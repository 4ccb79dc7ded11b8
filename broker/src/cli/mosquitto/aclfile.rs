//! Mosquitto's ACL file (`acl_file`), read as Mosquitto 2.0 reads it
//! (`aclfile__parse`), and mapped onto Warden rules.
//!
//! Mosquitto's semantics (`mosquitto_acl_check_default`):
//! - `topic` lines before any `user` line belong to anonymous clients only;
//!   after `user NAME` they belong to NAME. `pattern` lines apply to every
//!   client wherever they stand, with `%u`/`%c` substituted.
//! - A client's own `topic` lines are checked first: a matching `deny`
//!   denies, a matching line with the access allows. Only when none of
//!   them decides are the patterns checked, the same way. Nothing: denied.
//! - `read` is checked at delivery; every SUBSCRIBE is accepted.
//!
//! The mapping: `read` → allow subscribe+receive, `write` → allow publish,
//! `readwrite` → all three, `deny` → deny all three; `topic` lines of a user
//! → `user:NAME` rules; `pattern` lines → `everyone` rules with
//! `${username}`/`${clientid}`. Deny-overrides gives the same answers as
//! Mosquitto's order except where a user's own allow overlaps a pattern
//! deny (Mosquitto: the allow wins; Warden: the deny): such an allow is
//! refused with the reason. So are anonymous-only lines, which Warden
//! cannot give to anonymous clients without giving them to every user.

use std::collections::BTreeSet;

use warden_policy::{ActionKind, ActionSet, Effect, RuleSpec, Subject};

use super::overlap::{overlaps, widen};
use super::{ImportError, Plan, PlanRule};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn word(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "readwrite",
            Access::Deny => "deny",
        }
    }

    fn actions(self) -> ActionSet {
        use ActionKind::{Publish, Receive, Subscribe};
        match self {
            Access::Read => ActionSet::of(&[Subscribe, Receive]),
            Access::Write => ActionSet::of(&[Publish]),
            Access::ReadWrite | Access::Deny => ActionSet::of(&[Publish, Subscribe, Receive]),
        }
    }
}

/// One `topic` or `pattern` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclEntry {
    pub line: usize,
    pub pattern: bool,
    /// The `user` section it stands in (None: before any `user` line).
    pub user: Option<String>,
    pub access: Access,
    pub topic: String,
}

impl AclEntry {
    fn origin(&self) -> String {
        let kind = if self.pattern { "pattern" } else { "topic" };
        format!(
            "acl line {}: {kind} {} {}",
            self.line,
            self.access.word(),
            self.topic
        )
    }
}

/// Split off the first space-delimited token (Mosquitto uses strtok with
/// " " only: a tab is part of a token).
fn token(text: &str) -> Option<(&str, Option<&str>)> {
    let text = text.trim_start_matches(' ');
    if text.is_empty() {
        return None;
    }
    Some(match text.split_once(' ') {
        Some((tok, rest)) => (tok, Some(rest).filter(|r| !r.is_empty())),
        None => (text, None),
    })
}

pub fn parse(text: &str) -> Result<Vec<AclEntry>, ImportError> {
    let mut user: Option<String> = None;
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| ImportError::Parse { line, message };
        let trimmed = raw.trim_end();
        if trimmed.starts_with('#') {
            continue;
        }
        let Some((first, rest)) = token(trimmed) else {
            continue;
        };
        match first {
            "topic" | "pattern" => {
                let (access_word, topic_text) = rest
                    .and_then(token)
                    .ok_or_else(|| err("empty topic".into()))?;
                let (access, topic) = match topic_text {
                    Some(topic) => {
                        let access = match access_word {
                            "read" => Access::Read,
                            "write" => Access::Write,
                            "readwrite" => Access::ReadWrite,
                            "deny" => Access::Deny,
                            other => return Err(err(format!("invalid access type {other:?}"))),
                        };
                        (access, topic.trim_matches([' ', '\t']).to_owned())
                    }
                    // `topic foo`: read and write.
                    None => (Access::ReadWrite, access_word.to_owned()),
                };
                entries.push(AclEntry {
                    line,
                    pattern: first == "pattern",
                    user: user.clone(),
                    access,
                    topic,
                });
            }
            "user" => {
                let name = rest
                    .map(|r| r.trim_matches([' ', '\t']))
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| err("missing username".into()))?;
                user = Some(name.to_owned());
            }
            other => return Err(err(format!("invalid line (starts with {other:?})"))),
        }
    }
    Ok(entries)
}

/// Warden's filter template for a Mosquitto topic; `None` when the text
/// would mean something else to Warden (a literal `${`).
fn template(entry: &AclEntry) -> Result<String, String> {
    if entry.topic.contains("${") {
        return Err("the topic contains `${`, which Warden reads as a placeholder".into());
    }
    Ok(if entry.pattern {
        entry
            .topic
            .replace("%u", "${username}")
            .replace("%c", "${clientid}")
    } else {
        entry.topic.clone()
    })
}

/// Add the rules of `entries` to `plan`. `known_users` are the users the
/// plan already has (from the password file); a user named only in the ACL
/// file is added without a password (certificate login only).
pub fn map(entries: &[AclEntry], plan: &mut Plan) {
    let pattern_denies: Vec<&AclEntry> = entries
        .iter()
        .filter(|e| e.pattern && e.access == Access::Deny)
        .collect();
    let mut acl_only_users = BTreeSet::new();
    for entry in entries {
        let origin = entry.origin();
        let pattern = match template(entry) {
            Ok(p) => p,
            Err(reason) => {
                plan.refuse(origin, reason);
                continue;
            }
        };
        let subject = if entry.pattern {
            Subject::Everyone
        } else {
            match &entry.user {
                Some(name) => Subject::User(name.clone()),
                None => {
                    plan.refuse(
                        origin,
                        "a `topic` line before any `user` line applies to anonymous clients \
                         only; Warden has no subject for anonymous clients alone (an \
                         `everyone` rule would also apply to every user)",
                    );
                    continue;
                }
            }
        };
        if let (Some(user), false) = (&entry.user, entry.pattern) {
            if entry.access != Access::Deny {
                if let Some(deny) = pattern_denies
                    .iter()
                    .find(|d| overlaps(&entry.topic, &deny_for_user(d, user)))
                {
                    plan.refuse(
                        origin,
                        format!(
                            "the `pattern deny {}` (line {}) also matches these topics for \
                             {user}; Mosquitto checks a user's own lines first, so this allow \
                             wins there, while in Warden a deny always wins",
                            deny.topic, deny.line
                        ),
                    );
                    continue;
                }
            }
            if !plan.users.contains_key(user) {
                acl_only_users.insert(user.clone());
            }
        }
        let spec = RuleSpec {
            effect: if entry.access == Access::Deny {
                Effect::Deny
            } else {
                Effect::Allow
            },
            subject,
            actions: entry.access.actions(),
            pattern,
            max_qos: None,
            retain: None,
        };
        if let Err(err) = spec.validate() {
            plan.refuse(origin, format!("not a valid Warden rule: {err}"));
            continue;
        }
        plan.rules.push(PlanRule { spec, origin });
    }
    for user in acl_only_users {
        plan.notes.push(format!(
            "user {user} is in the ACL file but not in the password file: added without a \
             password (it can log in only with a client certificate)"
        ));
        plan.users.insert(user, super::PlanUser::default());
    }
}

/// A pattern deny as it reads for `user`: `%u` substituted, a level with
/// `%c` standing for any level.
fn deny_for_user(deny: &AclEntry, user: &str) -> String {
    widen(&deny.topic.replace("%u", user), "%c")
}

/// Without an ACL file Mosquitto lets every authenticated client use every
/// topic; the same in Warden's terms.
pub fn allow_all(plan: &mut Plan) {
    use ActionKind::{Publish, Receive, Subscribe};
    for (pattern, actions) in [
        ("#", ActionSet::of(&[Publish, Subscribe, Receive])),
        ("$SYS/#", ActionSet::of(&[Subscribe, Receive])),
    ] {
        plan.rules.push(PlanRule {
            spec: RuleSpec {
                effect: Effect::Allow,
                subject: Subject::Everyone,
                actions,
                pattern: pattern.to_owned(),
                max_qos: None,
                retain: None,
            },
            origin: "no ACL file: Mosquitto allows every topic".to_owned(),
        });
    }
    plan.notes.push(
        "no --acl file: Mosquitto allows every topic to every client, so `everyone` may \
         publish, subscribe and receive `#` (and read `$SYS/#`); tighten with `warden acl`"
            .to_owned(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<AclEntry> {
        parse(text).unwrap()
    }

    #[test]
    fn parse_like_mosquitto() {
        let got = entries(
            "# c\ntopic read $SYS/#\n\nuser alice\ntopic write a/b c\ntopic x/y\n\
             pattern readwrite d/%u/%c\nuser  bob  \ntopic deny s/#\n",
        );
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].user, None);
        assert_eq!(got[0].access, Access::Read);
        assert_eq!(got[1].topic, "a/b c");
        assert_eq!(got[1].user.as_deref(), Some("alice"));
        assert_eq!(
            (got[2].access, got[2].topic.as_str()),
            (Access::ReadWrite, "x/y")
        );
        assert!(got[3].pattern);
        assert_eq!(got[4].user.as_deref(), Some("bob"));
        assert_eq!(got[4].access, Access::Deny);
    }

    #[test]
    fn parse_errors_name_the_line() {
        for (text, line) in [
            ("topic\n", 1),
            ("\ntopic bogus a/b\n", 2),
            ("user\n", 1),
            ("  # indented comment\n", 1),
            ("topic\tread a\n", 1),
        ] {
            match parse(text) {
                Err(ImportError::Parse { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn mapping_and_refusals() {
        let mut plan = Plan::default();
        plan.users
            .insert("alice".into(), super::super::PlanUser::default());
        let list = entries(
            "topic read anon/#\nuser alice\ntopic read a/#\ntopic deny a/secret\n\
             topic write own/${x}\ntopic readwrite p/alice/x\nuser carol\ntopic read c/1\n\
             pattern write p/%u/#\npattern deny p/%u/x\n",
        );
        map(&list, &mut plan);
        let origins: Vec<&str> = plan.refused.iter().map(|r| r.origin.as_str()).collect();
        assert_eq!(
            origins,
            vec![
                "acl line 1: topic read anon/#",
                "acl line 5: topic write own/${x}",
                "acl line 6: topic readwrite p/alice/x",
            ]
        );
        let rules: Vec<String> = plan
            .rules
            .iter()
            .map(|r| format!("{:?} {} {}", r.spec.effect, r.spec.subject, r.spec.pattern))
            .collect();
        assert_eq!(
            rules,
            vec![
                "Allow user:alice a/#",
                "Deny user:alice a/secret",
                "Allow user:carol c/1",
                "Allow everyone p/${username}/#",
                "Deny everyone p/${username}/x",
            ]
        );
        assert!(plan.users.contains_key("carol"), "ACL-only user added");
        assert!(plan.users["carol"].password_hash.is_none());
    }
}
