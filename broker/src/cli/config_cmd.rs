//! `warden config default|check`: print the embedded default config, or load
//! and validate the configured one.

use std::path::Path;

use anyhow::bail;
use clap::Subcommand;

use super::output::{print_json, print_text};
use super::{Command, Outcome};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the embedded default config (a starting point for your own file).
    Default,
    /// Load and validate the config (`-c FILE`, or the embedded default) and print "ok".
    Check,
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
pub fn run(
    cmd: ConfigCommand,
    _config: &Config,
    path: Option<&Path>,
    json: bool,
) -> anyhow::Result<Outcome> {
    match cmd {
        ConfigCommand::Default => {
            print_text(Config::default_yaml())?;
        }
        ConfigCommand::Check => {
            let source = path.map_or_else(
                || "embedded default".to_owned(),
                |p| p.display().to_string(),
            );
            if json {
                print_json(&serde_json::json!({ "config": source, "result": "ok" }))?;
            } else {
                print_text("ok\n")?;
            }
        }
    }
    Ok(Outcome::Success)
}
