//! The `warden` command line: `serve` and the admin CLI, one file per noun.
//!
//! Every subcommand reads the same config (`-c FILE`, or the embedded
//! default) and so reaches the same store as the broker. The admin commands
//! write through `AdminStore`; a running broker picks the change up through
//! the policy version. Nothing here reaches into `session/` or `router/`.
//! `anyhow` is used here (and in `main.rs`) only, to print one-line errors.

pub mod acl;
pub mod cert;
pub mod check;
pub mod clients;
pub mod config_cmd;
pub mod export;
pub mod import;
pub mod migrate;
pub mod mosquitto;
pub mod output;
pub mod role;
pub mod serve;
pub mod user;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use warden_auth::AdminStore;

use crate::config::Config;

/// Warden: a TLS-first MQTT broker where every decision goes through one policy engine.
#[derive(Debug, Parser)]
#[command(name = "warden", version, propagate_version = true)]
pub struct Cli {
    /// Config file (YAML). Without it the embedded default is used
    /// (`warden config default` prints it).
    #[arg(short, long, global = true, env = "WARDEN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print JSON instead of tables and text (for scripts).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve,
    /// Manage users (passwords, flags, roles).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage roles and role membership.
    #[command(subcommand)]
    Role(role::RoleCommand),
    /// Manage topic ACL rules.
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Ask the policy engine what it would decide, and why.
    Check(check::CheckArgs),
    /// Apply the schema for the configured store (safe to repeat).
    Migrate,
    /// Print the whole policy as YAML, for `warden import` (users, roles,
    /// rules). The output includes password hashes: keep it secret.
    Export(export::ExportArgs),
    /// Replace the store's policy with a file from `warden export`
    /// (refused when the store is not empty unless --replace is given), or
    /// add a Mosquitto setup: `import mosquitto --passwd FILE [--acl FILE]`,
    /// `import mosquitto-dynsec FILE.json`.
    Import(import::ImportArgs),
    /// Make development certificates (CA, server, client).
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Print or check the configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// List, show or disconnect connected clients (through the running
    /// broker's admin API: metrics.bind and metrics.token_file).
    Clients(clients::ClientsArgs),
}

/// How a command that succeeded wants the process to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Success,
    /// `warden check --exit-code` found the action denied: exit status 3.
    Denied,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Denied => 3,
        }
    }
}

impl Cli {
    /// True when the command needs no config at all (so a broken config file
    /// does not stop `warden config default` from printing a good one).
    pub fn needs_config(&self) -> bool {
        !matches!(
            self.command,
            Command::Config(config_cmd::ConfigCommand::Default)
        )
    }

    /// The config this invocation runs with: the file from `-c`/`WARDEN_CONFIG`,
    /// else the embedded default.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        match &self.config {
            // Config errors already name the file, the field and the line.
            Some(path) => Ok(Config::load(path)?),
            None => Ok(Config::embedded_default()),
        }
    }
}

/// Runs one subcommand. `config` is `None` only when [`Cli::needs_config`] is false.
pub async fn dispatch(cli: Cli, config: Option<Config>) -> anyhow::Result<Outcome> {
    let json = cli.json;
    let Some(config) = config else {
        return config_cmd::run_without_config(&cli.command);
    };
    match cli.command {
        Command::Serve => serve::run(config).await.map(|()| Outcome::Success),
        Command::User(cmd) => user::run(cmd, &*open_store(&config).await?, json).await,
        Command::Role(cmd) => role::run(cmd, &*open_store(&config).await?, json).await,
        Command::Acl(cmd) => acl::run(cmd, &*open_store(&config).await?, json).await,
        Command::Check(args) => check::run(args, &config, &*open_store(&config).await?, json).await,
        Command::Migrate => migrate::run(&config, json).await,
        Command::Export(args) => export::run(args, &*open_store(&config).await?, json).await,
        Command::Import(args) => import::run(args, &*open_store(&bulk(&config)).await?, json).await,
        Command::Cert(cmd) => cert::run(cmd, &config, json).await,
        Command::Config(cmd) => config_cmd::run(cmd, &config, cli.config.as_deref(), json),
        Command::Clients(cmd) => clients::run(cmd, &config, json).await,
    }
}

/// The config with the longest store-call timeout allowed: an import
/// writes a whole policy (100,000 users) in one transaction, which takes
/// longer than the timeout meant for logins.
fn bulk(config: &Config) -> Config {
    let mut config = config.clone();
    config.store = config.store.with_timeout(warden_auth::config::MAX_TIMEOUT);
    config
}

/// Opens the configured store for an admin command.
///
/// The embedded SQLite store is a file in the data dir that nobody else
/// manages, so its schema is applied here: a newcomer can add the first user
/// before the first `warden serve`. Server databases (PostgreSQL, ...) are
/// migrated only by `warden migrate`, so an operator controls when that happens.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn AdminStore>> {
    let store = migrate::open_configured(config).await?;
    if store.backend() == "sqlite" {
        store
            .migrate()
            .await
            .context("cannot apply the SQLite schema")?;
    }
    Ok(store)
}
