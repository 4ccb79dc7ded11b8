//! `warden acl add|remove|list`: topic ACL rules, validated by the policy
//! crate before they reach the store (the same validation the broker trusts).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use warden_auth::{AdminStore, RuleFilter};
use warden_policy::{ActionKind, ActionSet, Effect, QoS, Rule, RuleId, RuleSpec, Subject};

use super::output::{opt, print_json, print_text, Table};
use super::Outcome;

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Add a rule and print its id.
    ///
    /// Example: warden acl add --role sensors --allow publish 'sensors/${username}/#' --max-qos 1
    Add(AddArgs),
    /// Remove a rule by id.
    Remove {
        /// The rule id (from `warden acl list`).
        id: u64,
    },
    /// List rules: all of them, or those of one user or role.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub subject: SubjectArgs,
    #[command(flatten)]
    pub effect: EffectArgs,
    /// Topic filter (`+`, `#`, placeholders `${username}` `${clientid}`
    /// `${cert.cn}` `${cert.san}`); for connect rules a client-id pattern
    /// where `*` matches any run of characters.
    pub pattern: String,
    /// Highest QoS this allow rule permits.
    #[arg(long, value_name = "0|1|2", value_parser = clap::value_parser!(u8).range(0..=2))]
    pub max_qos: Option<u8>,
    /// On an allow rule, `false` refuses retained messages; on a deny rule,
    /// the deny applies only to messages with this retain flag.
    #[arg(long, value_name = "true|false", value_parser = clap::value_parser!(bool))]
    pub retain: Option<bool>,
}

/// Exactly one subject.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SubjectArgs {
    /// The rule applies to this user.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The rule applies to members of this role.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// The rule applies to every client, anonymous ones included.
    #[arg(long)]
    pub everyone: bool,
}

/// Exactly one of `--allow` / `--deny`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct EffectArgs {
    /// Allow these actions: a comma list of connect, publish, subscribe,
    /// receive; `all` means publish,subscribe,receive.
    #[arg(long, value_name = "ACTIONS", value_parser = parse_actions)]
    pub allow: Option<ActionSet>,
    /// Deny these actions (same list as --allow). Deny overrides allow.
    #[arg(long, value_name = "ACTIONS", value_parser = parse_actions)]
    pub deny: Option<ActionSet>,
}

#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct ListArgs {
    /// Only the rules whose subject is this user.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only the rules whose subject is this role.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
}

/// Parses `publish,subscribe` (and `all`) into an action set.
pub fn parse_actions(list: &str) -> Result<ActionSet, String> {
    let mut set = ActionSet::EMPTY;
    for word in list.split(',').map(str::trim) {
        set = match word {
            "connect" => set.with(ActionKind::Connect),
            "publish" => set.with(ActionKind::Publish),
            "subscribe" => set.with(ActionKind::Subscribe),
            "receive" => set.with(ActionKind::Receive),
            "all" => set
                .with(ActionKind::Publish)
                .with(ActionKind::Subscribe)
                .with(ActionKind::Receive),
            "" => return Err("empty action in the list".to_owned()),
            other => {
                return Err(format!(
                    "unknown action {other:?}; expected connect, publish, subscribe, receive or all"
                ))
            }
        };
    }
    Ok(set)
}

impl SubjectArgs {
    fn subject(&self) -> anyhow::Result<Subject> {
        match (&self.user, &self.role, self.everyone) {
            (Some(user), None, false) => Ok(Subject::User(user.clone())),
            (None, Some(role), false) => Ok(Subject::Role(role.clone())),
            (None, None, true) => Ok(Subject::Everyone),
            _ => bail!("give exactly one of --user, --role, --everyone"),
        }
    }
}

impl AddArgs {
    /// The rule this command asks for, validated.
    pub fn spec(&self) -> anyhow::Result<RuleSpec> {
        let (effect, actions) = match (self.effect.allow, self.effect.deny) {
            (Some(actions), None) => (Effect::Allow, actions),
            (None, Some(actions)) => (Effect::Deny, actions),
            _ => bail!("give exactly one of --allow, --deny"),
        };
        let spec = RuleSpec {
            effect,
            subject: self.subject.subject()?,
            actions,
            pattern: self.pattern.clone(),
            max_qos: self.max_qos.and_then(QoS::from_u8),
            retain: self.retain,
        };
        spec.validate().context("invalid rule")?;
        Ok(spec)
    }
}

pub async fn run(cmd: AclCommand, store: &dyn AdminStore, json: bool) -> anyhow::Result<Outcome> {
    match cmd {
        AclCommand::Add(args) => {
            let spec = args.spec()?;
            let id = store.add_rule(spec).await.context("cannot add rule")?;
            if json {
                print_json(&serde_json::json!({ "id": id.0 }))?;
            } else {
                print_text(&format!("{id}\n"))?;
            }
        }
        AclCommand::Remove { id } => {
            store
                .remove_rule(RuleId(id))
                .await
                .with_context(|| format!("cannot remove rule {id}"))?;
            if json {
                print_json(&serde_json::json!({ "removed": id }))?;
            } else {
                print_text(&format!("removed rule {id}\n"))?;
            }
        }
        AclCommand::List(args) => list(args, store, json).await?,
    }
    Ok(Outcome::Success)
}

async fn list(args: ListArgs, store: &dyn AdminStore, json: bool) -> anyhow::Result<()> {
    let filter = match (args.user, args.role) {
        (Some(user), _) => Some(Subject::User(user)),
        (None, Some(role)) => Some(Subject::Role(role)),
        (None, None) => None,
    };
    let rules = store
        .list_rules(RuleFilter { subject: filter })
        .await
        .context("cannot list rules")?;
    if json {
        return print_json(&rules);
    }
    rule_table(&rules).print()
}

/// The rules as a table: id, effect, subject, actions, pattern, max_qos, retain.
pub fn rule_table(rules: &[Rule]) -> Table {
    let mut table = Table::new(&[
        "id", "effect", "subject", "actions", "pattern", "max_qos", "retain",
    ]);
    for rule in rules {
        table.row(vec![
            rule.id.to_string(),
            effect_str(rule.effect).to_owned(),
            rule.subject.to_string(),
            actions_str(rule.actions),
            rule.pattern.clone(),
            opt(rule.max_qos),
            opt(rule.retain),
        ]);
    }
    table
}

pub fn effect_str(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    }
}

pub fn actions_str(actions: ActionSet) -> String {
    actions
        .iter()
        .map(ActionKind::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_means_the_three_topic_actions() {
        let set = parse_actions("all").unwrap();
        assert_eq!(
            set,
            ActionSet::of(&[
                ActionKind::Publish,
                ActionKind::Subscribe,
                ActionKind::Receive
            ])
        );
    }

    #[test]
    fn comma_list_is_parsed_and_unknown_words_refused() {
        assert_eq!(
            parse_actions("publish, receive").unwrap(),
            ActionSet::of(&[ActionKind::Publish, ActionKind::Receive])
        );
        assert!(parse_actions("publish,write")
            .unwrap_err()
            .contains("\"write\""));
        assert!(parse_actions("publish,").is_err());
    }
}
