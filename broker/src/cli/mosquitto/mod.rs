//! `warden import mosquitto` and `warden import mosquitto-dynsec`: bring a
//! Mosquitto setup over: users with their password hashes as they are
//! (they verify, and are rehashed to argon2id at each user's next login),
//! roles, and rules.
//!
//! Each importer turns its files into a [`Plan`]: the users, roles and
//! rules to add, the Mosquitto lines it refused (where Warden's
//! deny-overrides would not give Mosquitto's answer), and notes. A plan
//! with refusals is not written unless `--skip-refused` says to leave those
//! lines out; `--dry-run` prints the plan and writes nothing.
//!
//! Writing merges the plan into the store's policy and imports the result
//! in one store transaction (the batch: 100,000 users in one write, not
//! 100,000 writes). Users that already exist are an error, so nothing is
//! overwritten by accident.

pub mod aclfile;
pub mod dynsec;
pub mod overlap;
pub mod passwd;

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use warden_auth::{
    foreign_hash, validate_snapshot, AdminStore, Membership, PolicySnapshot, SnapshotUser,
};
use warden_policy::{Rule, RuleId, RuleSpec};

use super::output::{print_json, print_text};
use super::Outcome;

/// A file that cannot be read as Mosquitto would read it.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {message}")]
    Parse { line: usize, message: String },
}

/// Options every Mosquitto import takes.
#[derive(Debug, Args)]
pub struct ImportOptions {
    /// Print what would be added (and what is refused) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the plan without the refused lines instead of refusing it
    /// whole. Without them some clients get less (or, for a refused deny,
    /// other) access than Mosquitto gave; read the list first.
    #[arg(long)]
    pub skip_refused: bool,
}

#[derive(Debug, Args)]
pub struct MosquittoArgs {
    /// The password file (`password_file`, made by `mosquitto_passwd`).
    #[arg(long, value_name = "FILE")]
    pub passwd: PathBuf,
    /// The ACL file (`acl_file`). Without one, Mosquitto allows every
    /// topic, and so will the import.
    #[arg(long, value_name = "FILE")]
    pub acl: Option<PathBuf>,
    #[command(flatten)]
    pub options: ImportOptions,
}

#[derive(Debug, Args)]
pub struct DynsecArgs {
    /// The dynamic-security plugin's JSON file (`plugin_opt_config_file`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub options: ImportOptions,
}

/// A user to add.
#[derive(Clone, PartialEq, Eq)]
pub struct PlanUser {
    pub password_hash: Option<String>,
    pub enabled: bool,
    pub roles: BTreeSet<String>,
}

impl Default for PlanUser {
    fn default() -> Self {
        PlanUser {
            password_hash: None,
            enabled: true,
            roles: BTreeSet::new(),
        }
    }
}

// The hash stays out of debug output.
impl std::fmt::Debug for PlanUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanUser")
            .field("enabled", &self.enabled)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// A rule to add, and the Mosquitto line or ACL it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRule {
    pub spec: RuleSpec,
    pub origin: String,
}

/// Something that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub origin: String,
    pub reason: String,
}

/// What an import would add.
#[derive(Debug, Default)]
pub struct Plan {
    pub users: BTreeMap<String, PlanUser>,
    /// Roles to create besides those of the users (roles with rules only).
    pub role_names: BTreeSet<String>,
    pub rules: Vec<PlanRule>,
    /// Indexes into `rules` that were refused after they were planned.
    refused_rules: BTreeSet<usize>,
    pub refused: Vec<Refused>,
    pub notes: Vec<String>,
}

impl Plan {
    pub fn refuse(&mut self, origin: impl Into<String>, reason: impl Into<String>) {
        self.refused.push(Refused {
            origin: origin.into(),
            reason: reason.into(),
        });
    }

    /// Refuse a planned rule (once, with the first reason found).
    pub fn refuse_rule(&mut self, index: usize, reason: String) {
        if self.refused_rules.insert(index) {
            let origin = self.rules[index].origin.clone();
            self.refuse(origin, reason);
        }
    }

    /// Drop the refused rules from `rules`.
    fn settle(&mut self) {
        let refused = std::mem::take(&mut self.refused_rules);
        let rules = std::mem::take(&mut self.rules);
        self.rules = rules
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !refused.contains(i))
            .map(|(_, r)| r)
            .collect();
    }

    fn roles(&self) -> BTreeSet<String> {
        let mut roles = self.role_names.clone();
        for user in self.users.values() {
            roles.extend(user.roles.iter().cloned());
        }
        for rule in &self.rules {
            if let warden_policy::Subject::Role(name) = &rule.spec.subject {
                roles.insert(name.clone());
            }
        }
        roles
    }

    fn memberships(&self) -> usize {
        self.users.values().map(|u| u.roles.len()).sum()
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// A bar on stderr while stdout is a terminal (a person watching); hidden
/// when the output goes to a file or a pipe.
fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = if std::io::stdout().is_terminal() {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    let style = ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({eta})")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

fn spinner(what: &str) -> ProgressBar {
    let bar = if std::io::stdout().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub async fn run_mosquitto(
    args: MosquittoArgs,
    store: &dyn AdminStore,
    json: bool,
) -> anyhow::Result<Outcome> {
    let text = read(&args.passwd)?;
    let entries = passwd::parse(&text).with_context(|| format!("{}", args.passwd.display()))?;
    let mut plan = Plan::default();
    let bar = progress(entries.len() as u64, "password hashes");
    for entry in entries {
        bar.inc(1);
        match foreign_hash::check_format(&entry.hash) {
            Ok(_) => {
                plan.users.insert(
                    entry.username,
                    PlanUser {
                        password_hash: Some(entry.hash),
                        ..PlanUser::default()
                    },
                );
            }
            // Mosquitto drops such a line at start, so the user cannot log
            // in there either; skipping it keeps that.
            Err(err) => plan.notes.push(format!(
                "password file line {}: user {} skipped: {err} (Mosquitto skips it too)",
                entry.line, entry.username
            )),
        }
    }
    bar.finish_and_clear();
    match &args.acl {
        Some(path) => {
            let entries =
                aclfile::parse(&read(path)?).with_context(|| format!("{}", path.display()))?;
            aclfile::map(&entries, &mut plan);
        }
        None => aclfile::allow_all(&mut plan),
    }
    finish(plan, &args.options, store, json, "mosquitto").await
}

pub async fn run_dynsec(
    args: DynsecArgs,
    store: &dyn AdminStore,
    json: bool,
) -> anyhow::Result<Outcome> {
    let file =
        dynsec::parse(&read(&args.file)?).with_context(|| format!("{}", args.file.display()))?;
    let mut plan = Plan::default();
    dynsec::map(&file, &mut plan);
    finish(plan, &args.options, store, json, "mosquitto-dynsec").await
}

/// Check the plan against the store, print it, and write it unless this is
/// a dry run or something was refused.
async fn finish(
    mut plan: Plan,
    options: &ImportOptions,
    store: &dyn AdminStore,
    json: bool,
    source: &'static str,
) -> anyhow::Result<Outcome> {
    plan.settle();
    let current = store.export().await.context("cannot read the store")?;
    let existing: Vec<&str> = current
        .users
        .iter()
        .filter(|u| plan.users.contains_key(&u.username))
        .map(|u| u.username.as_str())
        .collect();
    if !existing.is_empty() {
        bail!(
            "{} of the users to import already exist in the {} store (first: {}); \
             remove them first, nothing was written",
            existing.len(),
            store.backend(),
            existing[..existing.len().min(5)].join(", ")
        );
    }
    let merged = merge(current, &plan);
    validate_snapshot(&merged).context("the imported policy is not valid")?;
    let blocked = !plan.refused.is_empty() && !options.skip_refused;
    let write = !options.dry_run && !blocked;
    if write {
        let bar = spinner(&format!(
            "writing {} users and {} rules to {}",
            plan.users.len(),
            plan.rules.len(),
            store.backend()
        ));
        let result = store.import(merged).await;
        bar.finish_and_clear();
        result.context("cannot write the import")?;
    }
    report(&plan, store.backend(), source, options, write, json)?;
    if blocked {
        bail!(
            "{} Mosquitto line(s) cannot be expressed exactly in Warden (listed above); \
             nothing was written. Fix them in the source, or pass --skip-refused to import \
             the rest without them",
            plan.refused.len()
        );
    }
    Ok(Outcome::Success)
}

/// The store's policy plus the plan: new rules get ids after the highest.
fn merge(mut snapshot: PolicySnapshot, plan: &Plan) -> PolicySnapshot {
    for (name, user) in &plan.users {
        snapshot.users.push(SnapshotUser {
            username: name.clone(),
            password_hash: user.password_hash.clone(),
            enabled: user.enabled,
            superuser: false,
            cert_fingerprint: None,
        });
        for role in &user.roles {
            snapshot.memberships.push(Membership {
                role: role.clone(),
                username: name.clone(),
            });
        }
    }
    let mut roles: BTreeSet<String> = snapshot.roles.iter().cloned().collect();
    roles.extend(plan.roles());
    snapshot.roles = roles.into_iter().collect();
    let mut next = snapshot.rules.iter().map(|r| r.id.0).max().unwrap_or(0);
    for rule in &plan.rules {
        next += 1;
        let spec = rule.spec.clone();
        snapshot.rules.push(Rule {
            id: RuleId(next),
            effect: spec.effect,
            subject: spec.subject,
            actions: spec.actions,
            pattern: spec.pattern,
            max_qos: spec.max_qos,
            retain: spec.retain,
        });
    }
    snapshot.users.sort_by(|a, b| a.username.cmp(&b.username));
    snapshot.memberships.sort();
    snapshot
}

#[derive(Serialize)]
struct JsonRule<'a> {
    rule: &'a RuleSpec,
    from: &'a str,
}

/// Users listed by name in the text report; beyond, a count.
const LISTED_USERS: usize = 50;

fn report(
    plan: &Plan,
    backend: &str,
    source: &str,
    options: &ImportOptions,
    written: bool,
    json: bool,
) -> anyhow::Result<()> {
    let result = if written {
        "imported"
    } else if options.dry_run {
        "dry-run"
    } else {
        "refused"
    };
    if json {
        let users: Vec<serde_json::Value> = plan
            .users
            .iter()
            .map(|(name, u)| {
                serde_json::json!({
                    "username": name,
                    "hash": u.password_hash.as_deref().and_then(foreign_hash::scheme_of).map(|s| s.name()),
                    "enabled": u.enabled,
                    "roles": u.roles,
                })
            })
            .collect();
        let rules: Vec<JsonRule<'_>> = plan
            .rules
            .iter()
            .map(|r| JsonRule {
                rule: &r.spec,
                from: &r.origin,
            })
            .collect();
        return print_json(&serde_json::json!({
            "backend": backend,
            "source": source,
            "result": result,
            "users": users,
            "roles": plan.roles(),
            "memberships": plan.memberships(),
            "rules": rules,
            "refused": plan.refused,
            "notes": plan.notes,
        }));
    }
    let mut out = String::new();
    let verb = if written { "imported" } else { "would import" };
    out.push_str(&format!(
        "{backend}: {verb} {} users, {} roles, {} memberships, {} rules from {source}\n",
        plan.users.len(),
        plan.roles().len(),
        plan.memberships(),
        plan.rules.len()
    ));
    if !plan.users.is_empty() {
        out.push_str("users:\n");
        for (name, user) in plan.users.iter().take(LISTED_USERS) {
            let scheme = user
                .password_hash
                .as_deref()
                .and_then(foreign_hash::scheme_of)
                .map_or("no password", |s| s.name());
            let roles: Vec<&str> = user.roles.iter().map(String::as_str).collect();
            out.push_str(&format!(
                "  {name}  [{scheme}]{}{}\n",
                if roles.is_empty() {
                    String::new()
                } else {
                    format!("  roles: {}", roles.join(","))
                },
                if user.enabled { "" } else { "  (disabled)" }
            ));
        }
        if plan.users.len() > LISTED_USERS {
            out.push_str(&format!(
                "  ... and {} more\n",
                plan.users.len() - LISTED_USERS
            ));
        }
    }
    if !plan.rules.is_empty() {
        out.push_str("rules:\n");
        for rule in &plan.rules {
            let s = &rule.spec;
            let actions: Vec<&str> = s.actions.iter().map(|a| a.as_str()).collect();
            out.push_str(&format!(
                "  {} {} {} {}    <- {}\n",
                match s.effect {
                    warden_policy::Effect::Allow => "allow",
                    warden_policy::Effect::Deny => "deny ",
                },
                s.subject,
                actions.join(","),
                s.pattern,
                rule.origin
            ));
        }
    }
    if !plan.refused.is_empty() {
        out.push_str(if options.skip_refused {
            "refused (left out):\n"
        } else {
            "refused:\n"
        });
        for r in &plan.refused {
            out.push_str(&format!("  {}: {}\n", r.origin, r.reason));
        }
    }
    for note in &plan.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    print_text(&out)
}
