//! `warden policy test FILE` and `warden policy diff A [B]`: policy as code.
//!
//! `test` runs every expectation of a file against the configured store
//! with the broker's own engine (`evaluate`, as `warden check` does) and
//! fails when one does not hold. `diff` compares two exports (or one and the
//! live store): users, roles and rules, and with `--tests` the expectations
//! whose verdict would change.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::Serialize;
use warden_auth::{AdminStore, PolicySnapshot};

use super::diff::{diff, PolicyDiff};
use super::evaluate::{Settings, Source, StoreSource};
use super::output::{print_json, print_text};
use super::policy_tests::{deciding_rule, got, load, Expectation, Verdict};
use super::Outcome;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a file of expectations against the configured store.
    ///
    /// Each expectation names a client (user, certificate or anonymous), an
    /// action and topic, and `expect: allow|deny`; see
    /// docs/policy-tests.example.yaml. Exit status 0 when every expectation
    /// holds, 3 when one does not, 1 on an error.
    Test {
        /// The expectations file (YAML).
        file: PathBuf,
    },
    /// Compare two policy exports, or an export and the live store.
    Diff(DiffArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 when the policies are the same, 3 when they differ, 1 on an error."
)]
pub struct DiffArgs {
    /// The old policy: a file from `warden export`.
    pub old: PathBuf,
    /// The new policy: another export. Without it (or with --live), the
    /// configured store.
    pub new: Option<PathBuf>,
    /// Compare OLD with the configured store.
    #[arg(long, conflicts_with = "new")]
    pub live: bool,
    /// An expectations file (as for `policy test`): list the expectations
    /// whose verdict differs between the two policies.
    #[arg(long, value_name = "FILE")]
    pub tests: Option<PathBuf>,
}

pub async fn run(
    cmd: PolicyCommand,
    config: &Config,
    store: &dyn AdminStore,
    json: bool,
) -> anyhow::Result<Outcome> {
    let settings = Settings::from_config(config, None);
    match cmd {
        PolicyCommand::Test { file } => test(&file, &StoreSource(store), settings, json).await,
        PolicyCommand::Diff(args) => run_diff(args, store, settings, json).await,
    }
}

/// One expectation's result, as `--json` prints it.
#[derive(Debug, Serialize)]
struct TestResult<'a> {
    index: usize,
    name: String,
    test: &'a Expectation,
    expected: Verdict,
    got: Verdict,
    ok: bool,
    /// The verdict with its reason, as `warden check` prints it.
    decision: String,
    rule: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    login_refused: Option<String>,
}

#[derive(Debug, Serialize)]
struct TestSummary<'a> {
    passed: usize,
    failed: usize,
    results: Vec<TestResult<'a>>,
}

async fn test(
    file: &Path,
    source: &dyn Source,
    settings: Settings,
    json: bool,
) -> anyhow::Result<Outcome> {
    let tests = load(file)?;
    let mut results = Vec::with_capacity(tests.len());
    let mut text = String::new();
    for (i, test) in tests.iter().enumerate() {
        let report = test
            .run(source, settings)
            .await
            .with_context(|| format!("test {} ({})", i + 1, test.title()))?;
        let verdict = Verdict::of(report.allowed);
        let ok = verdict == test.expect;
        if ok {
            text.push_str(&format!(
                "ok    {:>3}  {}: {}\n",
                i + 1,
                test.title(),
                verdict.as_str()
            ));
        } else {
            text.push_str(&format!("FAIL  {:>3}  {}\n", i + 1, test.title()));
            // A named test also says what it checks; an unnamed one's title is that.
            if test.name.is_some() {
                text.push_str(&format!("            {}\n", test.describe()));
            }
            text.push_str(&format!(
                "            expected: {}\n            got:      {}\n            deciding rule: {}\n",
                test.expect.as_str(),
                got(&report),
                deciding_rule(&report),
            ));
        }
        results.push(TestResult {
            index: i + 1,
            name: test.title(),
            test,
            expected: test.expect,
            got: verdict,
            ok,
            decision: got(&report),
            rule: report.decision.rule().map(|r| r.0),
            login_refused: report.login_refused.clone(),
        });
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    let summary = TestSummary {
        passed: results.len() - failed,
        failed,
        results,
    };
    if json {
        print_json(&summary)?;
    } else {
        text.push_str(&format!(
            "{} of {} expectations hold{}\n",
            summary.passed,
            summary.passed + summary.failed,
            if failed > 0 {
                format!("; {failed} do not")
            } else {
                String::new()
            }
        ));
        print_text(&text)?;
    }
    Ok(if failed > 0 {
        Outcome::Mismatch
    } else {
        Outcome::Success
    })
}

/// A policy file from `warden export` (YAML, or the JSON of `--json`).
pub fn read_export(path: &Path) -> anyhow::Result<PolicySnapshot> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a policy export", path.display()))
}

/// An expectation whose verdict differs between the two policies.
#[derive(Debug, Serialize)]
struct Changed {
    index: usize,
    name: String,
    old: Verdict,
    new: Verdict,
    /// The verdict the file expects.
    expected: Verdict,
    old_decision: String,
    new_decision: String,
}

#[derive(Debug, Serialize)]
struct DiffReport<'a> {
    old: String,
    new: String,
    same: bool,
    #[serde(flatten)]
    diff: &'a PolicyDiff,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed_verdicts: Option<Vec<Changed>>,
}

async fn run_diff(
    args: DiffArgs,
    store: &dyn AdminStore,
    settings: Settings,
    json: bool,
) -> anyhow::Result<Outcome> {
    let old = read_export(&args.old)?;
    let (new, new_name) = match &args.new {
        Some(path) if !args.live => (read_export(path)?, path.display().to_string()),
        Some(_) => bail!("give a second file or --live, not both"),
        None => (
            store
                .export()
                .await
                .context("cannot export the live policy")?,
            format!("the live {} store", store.backend()),
        ),
    };
    let policy_diff = diff(&old, &new);
    let mut changed = None;
    if let Some(file) = &args.tests {
        let mut list = Vec::new();
        for (i, test) in load(file)?.iter().enumerate() {
            let before = test.run(&old, settings).await?;
            let after = test.run(&new, settings).await?;
            if before.allowed != after.allowed {
                list.push(Changed {
                    index: i + 1,
                    name: test.title(),
                    old: Verdict::of(before.allowed),
                    new: Verdict::of(after.allowed),
                    expected: test.expect,
                    old_decision: got(&before),
                    new_decision: format!("{} [rule {}]", got(&after), deciding_rule(&after)),
                });
            }
        }
        changed = Some(list);
    }
    let same = policy_diff.is_empty() && changed.as_ref().is_none_or(Vec::is_empty);
    let report = DiffReport {
        old: args.old.display().to_string(),
        new: new_name,
        same,
        diff: &policy_diff,
        changed_verdicts: changed,
    };
    if json {
        print_json(&report)?;
    } else {
        print_text(&render_diff(&report))?;
    }
    Ok(if same {
        Outcome::Success
    } else {
        Outcome::Mismatch
    })
}

fn render_diff(report: &DiffReport<'_>) -> String {
    let mut out = format!("--- {}\n+++ {}\n", report.old, report.new);
    if report.diff.is_empty() {
        out.push_str("users, roles and rules are the same\n");
    } else {
        out.push_str(&report.diff.render());
    }
    if let Some(changed) = &report.changed_verdicts {
        if changed.is_empty() {
            out.push_str("no expectation changes its verdict\n");
        } else {
            out.push_str("expectations that change verdict:\n");
            for c in changed {
                out.push_str(&format!(
                    "  {:>3}  {}: {} -> {}{}\n       new: {}\n",
                    c.index,
                    c.name,
                    c.old.as_str(),
                    c.new.as_str(),
                    if c.new == c.expected {
                        " (as expected)"
                    } else {
                        " (the file expects otherwise)"
                    },
                    c.new_decision
                ));
            }
        }
    }
    out
}
