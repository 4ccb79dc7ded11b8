//! `warden import FILE`: replace the configured store's policy with a
//! snapshot that `warden export` wrote (YAML; JSON is YAML too). The import
//! is one transaction in the store, keeps rule ids, and is checked as a whole
//! before anything is written. A store that already holds a policy is only
//! overwritten with `--replace`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use warden_auth::{validate_snapshot, AdminStore, PolicySnapshot};

use super::output::{print_json, print_text};
use super::Outcome;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file `warden export` wrote, or `-` for stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Overwrite a store that is not empty: everything in it is deleted
    /// and replaced by the file's contents.
    #[arg(long)]
    pub replace: bool,
}

pub async fn run(args: ImportArgs, store: &dyn AdminStore, json: bool) -> anyhow::Result<Outcome> {
    let snapshot = read_snapshot(&args.file)?;
    validate_snapshot(&snapshot)
        .with_context(|| format!("{} is not a valid policy", shown(&args.file)))?;
    if !args.replace {
        let current = store.export().await.context("cannot read the store")?;
        if !is_empty(&current) {
            bail!(
                "the {} store is not empty ({} users, {} roles, {} rules); \
                 pass --replace to overwrite it",
                store.backend(),
                current.users.len(),
                current.roles.len(),
                current.rules.len()
            );
        }
    }
    let counts = (
        snapshot.users.len(),
        snapshot.roles.len(),
        snapshot.memberships.len(),
        snapshot.rules.len(),
    );
    store
        .import(snapshot)
        .await
        .context("cannot import the policy")?;
    let (users, roles, memberships, rules) = counts;
    if json {
        print_json(&serde_json::json!({
            "backend": store.backend(),
            "users": users,
            "roles": roles,
            "memberships": memberships,
            "rules": rules,
            "result": "imported",
        }))?;
    } else {
        print_text(&format!(
            "{}: imported {users} users, {roles} roles, {memberships} memberships, {rules} rules\n",
            store.backend()
        ))?;
    }
    Ok(Outcome::Success)
}

fn is_empty(snapshot: &PolicySnapshot) -> bool {
    snapshot.users.is_empty() && snapshot.roles.is_empty() && snapshot.rules.is_empty()
}

fn shown(path: &Path) -> String {
    if path == Path::new("-") {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Reads and parses the snapshot; the parse error names the line.
fn read_snapshot(path: &Path) -> anyhow::Result<PolicySnapshot> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    serde_yaml::from_str(&text).with_context(|| format!("cannot parse {}", shown(path)))
}
