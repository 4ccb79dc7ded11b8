//! `warden check USER ACTION TOPIC`: what the broker would decide for this
//! user, and why. It loads the same user and rules from the same store and
//! runs the same `AclEngine` compile and explain the broker runs, so there is
//! no second rulebook to drift.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde::Serialize;
use warden_auth::{AdminStore, PrincipalKey, UserRecord};
use warden_policy::{
    AclEngine, Action, Decision, EngineOptions, Explanation, PolicyEngine, Principal, QoS,
    RuleOutcome, SubscriptionFilter,
};

use super::acl::effect_str;
use super::output::{print_json, print_text, Table};
use super::Outcome;
use crate::config::Config;

/// Exit status: 0 when the check ran (whatever the verdict), 1 on an error,
/// and with --exit-code, 3 when the action is denied.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 when the check ran, whatever the verdict; \
    1 on an error; with --exit-code, 3 when the action is denied."
)]
pub struct CheckArgs {
    /// The user (as stored; its roles and superuser flag are loaded).
    pub user: String,
    /// What the client would do.
    #[arg(value_enum)]
    pub action: CheckAction,
    /// Topic (publish, receive) or filter (subscribe; a `$share/GROUP/`
    /// prefix is stripped as the broker does). Not used for connect.
    #[arg(required_if_eq_any = [("action", "publish"), ("action", "subscribe"), ("action", "receive")])]
    pub topic: Option<String>,
    /// Client id of the imagined connection (default: the user name).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// Requested QoS.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// The message is retained (publish, receive).
    #[arg(long)]
    pub retain: bool,
    /// Exit with status 3 when the action is denied (for scripts).
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckAction {
    Connect,
    Publish,
    Subscribe,
    Receive,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub user: String,
    pub client_id: String,
    pub roles: Vec<String>,
    pub superuser: bool,
    pub enabled: bool,
    pub allowed: bool,
    /// The policy's verdict (`allow` or `deny`, with qos or reason and rule).
    pub decision: Decision,
    /// Every rule of this user that applies to the action, matched or not, and why.
    pub explanation: Explanation,
}

pub async fn run(
    args: CheckArgs,
    config: &Config,
    store: &dyn AdminStore,
    json: bool,
) -> anyhow::Result<Outcome> {
    let user = load_user(store, &args.user).await?;
    let principal = Principal {
        username: Some(user.username.clone()),
        client_id: args
            .client_id
            .clone()
            .unwrap_or_else(|| user.username.clone()),
        peer: None,
        listener: "check".to_owned(),
        cert: None,
        roles: user.roles.clone(),
        superuser: user.superuser,
    };
    let key = PrincipalKey {
        username: principal.username.clone(),
        roles: principal.roles.clone(),
    };
    let rules = store.rules_for(&key).await.context("cannot load rules")?;
    let version = store
        .policy_version()
        .await
        .context("cannot read the policy version")?;
    let engine = AclEngine::new(EngineOptions {
        superuser_bypass: config.policy.superuser_bypass,
    });
    let policy = engine
        .compile(&principal, &rules, version)
        .context("cannot compile the policy")?;

    let qos = QoS::from_u8(args.qos).unwrap_or(QoS::AtMostOnce);
    let filter;
    let action = match (args.action, args.topic.as_deref()) {
        (CheckAction::Connect, _) => Action::Connect,
        (CheckAction::Publish, Some(topic)) => Action::Publish {
            topic,
            qos,
            retain: args.retain,
        },
        (CheckAction::Receive, Some(topic)) => Action::Receive {
            topic,
            qos,
            retain: args.retain,
        },
        (CheckAction::Subscribe, Some(raw)) => {
            filter = plain_filter(raw);
            Action::Subscribe {
                filter: &filter,
                qos,
            }
        }
        (_, None) => bail!("a topic is needed for {:?}", args.action),
    };
    let decision = policy.decide(&action);

    let report = Report {
        user: user.username.clone(),
        client_id: principal.client_id.clone(),
        roles: user.roles.clone(),
        superuser: user.superuser,
        enabled: user.enabled,
        // A disabled user never gets past CONNECT, whatever the rules say.
        allowed: decision.is_allow() && user.enabled,
        decision,
        explanation: policy.explain(&action),
    };
    if json {
        print_json(&report)?;
    } else {
        print_text(&render(&report))?;
    }
    Ok(if args.exit_code && !report.allowed {
        Outcome::Denied
    } else {
        Outcome::Success
    })
}

async fn load_user(store: &dyn AdminStore, name: &str) -> anyhow::Result<UserRecord> {
    match store
        .user(name)
        .await
        .with_context(|| format!("cannot read user {name:?}"))?
    {
        Some(user) => Ok(user),
        None => bail!("user {name:?} does not exist"),
    }
}

/// The filter without a `$share/GROUP/` prefix; an invalid one is passed on
/// unchanged so the policy reports it as an invalid topic.
fn plain_filter(raw: &str) -> String {
    match SubscriptionFilter::parse(raw) {
        Ok(sub) => sub.filter.as_str().to_owned(),
        Err(_) => raw.to_owned(),
    }
}

fn render(report: &Report) -> String {
    let mut out = if report.enabled {
        format!("{}\n", report.decision)
    } else {
        format!(
            "deny: user is disabled (the rules alone: {})\n",
            report.decision
        )
    };
    let roles = if report.roles.is_empty() {
        "-".to_owned()
    } else {
        report.roles.join(",")
    };
    out.push_str(&format!(
        "user {} (client id {}, roles {roles}{})\n",
        report.user,
        report.client_id,
        if report.superuser { ", superuser" } else { "" }
    ));
    let rule = report
        .decision
        .rule()
        .map_or_else(|| "none".to_owned(), |r| r.to_string());
    out.push_str(&format!("deciding rule: {rule}\n"));
    let explanation = &report.explanation;
    if explanation.superuser_bypass {
        out.push_str("superuser: rules bypassed\n");
    }
    if explanation.rules.is_empty() {
        out.push_str("no rule of this user, its roles or everyone applies\n");
    } else {
        let mut table = Table::new(&["", "rule", "effect", "pattern", "outcome"]);
        for trace in &explanation.rules {
            table.row(vec![
                if trace.decided { "*" } else { "" }.to_owned(),
                trace.rule.to_string(),
                effect_str(trace.effect).to_owned(),
                trace.pattern.clone(),
                outcome_str(&trace.outcome),
            ]);
        }
        out.push_str(&table.render());
    }
    for warning in &explanation.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}

fn outcome_str(outcome: &RuleOutcome) -> String {
    match outcome {
        RuleOutcome::Matched => "matched".to_owned(),
        RuleOutcome::OtherAction => "not for this action".to_owned(),
        RuleOutcome::NoMatch => "pattern does not match".to_owned(),
        RuleOutcome::OnlyOverlaps => "overlaps the filter without covering it".to_owned(),
        RuleOutcome::QosAboveMax => "qos above its max_qos".to_owned(),
        RuleOutcome::RetainNotAllowed => "retained messages not allowed".to_owned(),
        RuleOutcome::RetainConditionNotMet => "retain flag differs from its condition".to_owned(),
        RuleOutcome::Disabled(warning) => format!("disabled: {warning}"),
        other => format!("{other:?}"),
    }
}
