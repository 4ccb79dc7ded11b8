//! `warden check [USER] ACTION [TOPIC]`: what the broker would decide for
//! this client, and why. The client is a stored user, an anonymous client
//! (`--anonymous`) or a certificate identity (`--cert-cn`, `--cert-san`),
//! built as the broker builds it at CONNECT; the verdict comes from
//! [`evaluate`], the same engine compile and decide the broker runs.

use anyhow::bail;
use clap::Args;
use warden_auth::AdminStore;
use warden_policy::RuleOutcome;

use super::acl::effect_str;
use super::evaluate::{
    evaluate, CertSpec, CheckAction, Identity, Query, Report, Settings, StoreSource,
};
use super::output::{print_json, print_text, Table};
use super::Outcome;
use crate::config::{Config, UsernameFrom};

/// Exit status: 0 when the check ran (whatever the verdict), 1 on an error,
/// and with --exit-code, 3 when the action is denied.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    warden check alice publish home/alice/lamp\n  \
    warden check --anonymous subscribe public/#\n  \
    warden check --cert-cn dev1 --cert-san dev1.example publish d/dev1/t\n\n\
    Exit status: 0 when the check ran, whatever the verdict; \
    1 on an error; with --exit-code, 3 when the action is denied.")]
pub struct CheckArgs {
    /// `[USER] ACTION [TOPIC]`. USER is a stored user (its roles and
    /// superuser flag are loaded); leave it out with --anonymous, or with a
    /// certificate to take the user from it as the listener would. ACTION is
    /// connect, publish, subscribe or receive. TOPIC is the topic (publish,
    /// receive) or filter (subscribe; a `$share/GROUP/` prefix is stripped
    /// as the broker does); not used for connect.
    #[arg(value_name = "[USER] ACTION [TOPIC]", num_args = 1..=3, required = true)]
    pub words: Vec<String>,
    /// A client without credentials (allowed in only with
    /// `auth.allow_anonymous`; it gets the `everyone` rules).
    #[arg(long, conflicts_with_all = ["cert_cn", "cert_san"])]
    pub anonymous: bool,
    /// The client presents a certificate with this CN.
    #[arg(long, value_name = "CN")]
    pub cert_cn: Option<String>,
    /// ... and this subject alternative name (repeatable; `a@b` is an
    /// e-mail SAN, `scheme://...` a URI, anything else a DNS name).
    #[arg(long, value_name = "SAN")]
    pub cert_san: Vec<String>,
    /// ... with this SHA-256 fingerprint (for users pinned to a certificate).
    #[arg(long, value_name = "SHA256")]
    pub cert_fingerprint: Option<String>,
    /// Which part of the certificate names the user: cn, subject, san_dns,
    /// san_email or san_uri (default: the first listener's `username_from`,
    /// else cn).
    #[arg(long, value_name = "FIELD", value_parser = parse_username_from)]
    pub username_from: Option<UsernameFrom>,
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

pub fn parse_username_from(text: &str) -> Result<UsernameFrom, String> {
    serde_yaml::from_str(text)
        .map_err(|_| format!("expected cn, subject, san_dns, san_email or san_uri, not {text:?}"))
}

fn parse_action(word: &str) -> Option<CheckAction> {
    clap::ValueEnum::from_str(word, false).ok()
}

impl CheckArgs {
    fn cert(&self) -> Option<CertSpec> {
        if self.cert_cn.is_none() && self.cert_san.is_empty() && self.cert_fingerprint.is_none() {
            return None;
        }
        Some(CertSpec {
            cn: self.cert_cn.clone(),
            san: self.cert_san.clone(),
            fingerprint: self.cert_fingerprint.clone(),
            ..CertSpec::default()
        })
    }

    /// Splits `[USER] ACTION [TOPIC]`: without a user only when the client
    /// is anonymous or has a certificate and the first word is an action.
    fn split(&self) -> anyhow::Result<(Option<String>, CheckAction, Option<String>)> {
        let userless = self.anonymous || self.cert().is_some();
        let words: Vec<&str> = self.words.iter().map(String::as_str).collect();
        let (user, rest) = match words.as_slice() {
            [first, rest @ ..] if userless && parse_action(first).is_some() && rest.len() <= 1 => {
                (None, words.as_slice())
            }
            [user, rest @ ..] if !rest.is_empty() => (Some((*user).to_owned()), rest),
            _ => bail!("expected USER ACTION [TOPIC] (or ACTION [TOPIC] with --anonymous or a certificate)"),
        };
        if self.anonymous && user.is_some() {
            bail!("--anonymous takes no USER");
        }
        let Some(action) = parse_action(rest[0]) else {
            bail!(
                "unknown action {:?}; expected connect, publish, subscribe or receive",
                rest[0]
            );
        };
        let topic = rest.get(1).map(|t| (*t).to_owned());
        if action != CheckAction::Connect && topic.is_none() {
            bail!("a topic is needed for {}", rest[0]);
        }
        Ok((user, action, topic))
    }
}

pub async fn run(
    args: CheckArgs,
    config: &Config,
    store: &dyn AdminStore,
    json: bool,
) -> anyhow::Result<Outcome> {
    let (user, action, topic) = args.split()?;
    let identity = Identity {
        user,
        client_id: args.client_id.clone(),
        cert: args.cert(),
    };
    let query = Query {
        action,
        topic,
        qos: args.qos,
        retain: args.retain,
    };
    let settings = Settings::from_config(config, args.username_from);
    let report = evaluate(&StoreSource(store), settings, &identity, &query).await?;
    // Naming a user who does not exist is a mistake in the command, not a verdict.
    if let (Some(name), Some("unknown user")) = (&identity.user, report.login_refused.as_deref()) {
        bail!("user {name:?} does not exist");
    }
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

fn render(report: &Report) -> String {
    let mut out = match &report.login_refused {
        None => format!("{}\n", report.decision),
        Some(why) => format!("deny: {why} (the rules alone: {})\n", report.decision),
    };
    let roles = if report.roles.is_empty() {
        "-".to_owned()
    } else {
        report.roles.join(",")
    };
    let who = match &report.user {
        Some(user) => format!("user {user}"),
        None => "anonymous client".to_owned(),
    };
    let cert = match &report.cert {
        Some(cert) => format!(
            ", certificate CN {}{}",
            cert.cn.as_deref().unwrap_or("-"),
            if cert.san.is_empty() {
                String::new()
            } else {
                format!(" SAN {}", cert.san.join(","))
            }
        ),
        None => String::new(),
    };
    out.push_str(&format!(
        "{who} (client id {}, roles {roles}{}{cert})\n",
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
