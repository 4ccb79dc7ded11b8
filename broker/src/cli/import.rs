//! `warden import FILE`: replace the configured store's policy with a
//! snapshot that `warden export` wrote (YAML; JSON is YAML too). The import
//! is one transaction in the store, keeps rule ids, and is checked as a whole
//! before anything is written. A store that already holds a policy is only
//! overwritten with `--replace`.
//!
//! `warden import mosquitto ...` and `warden import mosquitto-dynsec ...`
//! add a Mosquitto setup to the store instead (`super::mosquitto`).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use warden_auth::{validate_snapshot, AdminStore, PolicySnapshot};

use super::output::{print_json, print_text};
use super::Outcome;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ImportArgs {
    /// The file `warden export` wrote, or `-` for stdin.
    #[arg(value_name = "FILE", required = true)]
    pub file: Option<PathBuf>,
    /// Overwrite a store that is not empty: everything in it is deleted
    /// and replaced by the file's contents.
    #[arg(long)]
    pub replace: bool,
    #[command(subcommand)]
    pub source: Option<ImportSource>,
}

/// Other brokers' files, added to the store (not replacing it).
#[derive(Debug, Subcommand)]
pub enum ImportSource {
    /// Users from a Mosquitto password file and rules from its ACL file.
    Mosquitto(super::mosquitto::MosquittoArgs),
    /// Clients, groups, roles and ACLs from the dynamic-security plugin's
    /// JSON file.
    #[command(name = "mosquitto-dynsec")]
    MosquittoDynsec(super::mosquitto::DynsecArgs),
}

pub async fn run(args: ImportArgs, store: &dyn AdminStore, json: bool) -> anyhow::Result<Outcome> {
    let file = match args.source {
        Some(ImportSource::Mosquitto(a)) => {
            return super::mosquitto::run_mosquitto(a, store, json).await
        }
        Some(ImportSource::MosquittoDynsec(a)) => {
            return super::mosquitto::run_dynsec(a, store, json).await
        }
        None => args.file.context("FILE is required")?,
    };
    let snapshot = read_snapshot(&file)?;
    validate_snapshot(&snapshot)
        .with_context(|| format!("{} is not a valid policy", shown(&file)))?;
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
