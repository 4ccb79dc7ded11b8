//! `warden config default|check`: print the embedded default config, or load
//! and validate the configured one (`--connect`: and reach its store).

use std::path::Path;

use anyhow::{bail, Context};
use clap::Subcommand;

use super::output::{print_json, print_text};
use super::{Command, Outcome};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the embedded default config (a starting point for your own file).
    Default,
    /// Load and validate the config (`-c FILE`, or the embedded default) and print "ok".
    Check {
        /// Also open the store and ask it one question; one line says
        /// whether it answered (exit status 1 when it did not).
        #[arg(long)]
        connect: bool,
    },
}

/// The commands that run without loading a config.
pub fn run_without_config(command: &Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Config(ConfigCommand::Default) => {
            print_text(Config::default_yaml())?;
            Ok(Outcome::Success)
        }
        _ => bail!("this command needs a config"),
    }
}

/// By the time this runs the config has been loaded and validated, so `check`
/// only has to report it.
pub async fn run(
    cmd: ConfigCommand,
    config: &Config,
    path: Option<&Path>,
    json: bool,
) -> anyhow::Result<Outcome> {
    match cmd {
        ConfigCommand::Default => {
            print_text(Config::default_yaml())?;
        }
        ConfigCommand::Check { connect } => {
            let source = path.map_or_else(
                || "embedded default".to_owned(),
                |p| p.display().to_string(),
            );
            let store = if connect {
                Some(reach_store(config).await?)
            } else {
                None
            };
            if json {
                let mut out = serde_json::json!({ "config": source, "result": "ok" });
                if let Some(note) = &store {
                    out["store"] = serde_json::json!({
                        "url": config.store.redacted(),
                        "result": "ok",
                        "note": note,
                    });
                }
                print_json(&out)?;
            } else if let Some(note) = store {
                print_text(&format!("ok: store {} {note}\n", config.store.redacted()))?;
            } else {
                print_text("ok\n")?;
            }
        }
    }
    Ok(Outcome::Success)
}

/// Open the configured store (without applying its schema) and ping it;
/// what to say about it when it answered. The error names the store (its
/// URL without the password) and the cause.
async fn reach_store(config: &Config) -> anyhow::Result<&'static str> {
    let url = config.store.redacted();
    if let warden_auth::StoreConfig::Sqlite { path, .. } = &config.store {
        // Nothing to reach yet: `serve` and `migrate` create it.
        if !path.exists() {
            return Ok("does not exist yet (created at first start)");
        }
    }
    let store = warden_auth::connect(&config.store)
        .await
        .with_context(|| format!("store {url} did not answer"))?;
    store
        .ping()
        .await
        .with_context(|| format!("store {url} did not answer"))?;
    Ok("answered")
}
