//! `warden export`: the whole policy of the configured store (users with
//! their password hashes, roles, memberships, rules with their ids) as YAML
//! on stdout, in the format `warden import` reads. Moving between stores is
//! `warden -c old.yaml export > policy.yaml` then
//! `warden -c new.yaml import policy.yaml`.

use anyhow::Context;
use clap::Args;
use warden_auth::{AdminStore, PolicySnapshot};

use super::output::{print_json, print_text};
use super::Outcome;

#[derive(Debug, Args)]
pub struct ExportArgs {}

pub async fn run(_args: ExportArgs, store: &dyn AdminStore, json: bool) -> anyhow::Result<Outcome> {
    let snapshot = store.export().await.context("cannot export the policy")?;
    if json {
        print_json(&snapshot)?;
    } else {
        print_text(&to_yaml(&snapshot, store.backend())?)?;
    }
    Ok(Outcome::Success)
}

/// The snapshot as YAML, after a comment naming where it came from and
/// warning that it holds password hashes.
pub fn to_yaml(snapshot: &PolicySnapshot, backend: &str) -> anyhow::Result<String> {
    let body = serde_yaml::to_string(snapshot).context("cannot encode the policy as YAML")?;
    Ok(format!(
        "# Warden policy exported from the {backend} store: {} users, {} roles, {} rules.\n\
         # It contains password hashes: keep this file secret.\n{body}",
        snapshot.users.len(),
        snapshot.roles.len(),
        snapshot.rules.len(),
    ))
}
