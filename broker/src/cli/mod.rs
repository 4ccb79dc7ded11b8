//! The `warden` command line: `serve` and the admin CLI, one file per noun.
//!
//! Every subcommand reads the same config (`-c FILE`, or the embedded
//! default) and so reaches the same store as the broker. The admin commands
//! write through `AdminStore`; a running broker picks the change up through
//! the policy version. Nothing here reaches into `session/` or `router/`.
//! `anyhow` is used here (and in `main.rs`) only, to print one-line errors.

pub mod acl;
pub mod audit;
pub mod audited;
pub mod cert;
pub mod check;
pub mod clients;
pub mod config_cmd;
pub mod diff;
pub mod evaluate;
pub mod export;
pub mod import;
pub mod migrate;
pub mod mosquitto;
pub mod output;
pub mod policy;
pub mod policy_tests;
pub mod role;
pub mod serve;
pub mod user;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use warden_auth::AdminStore;

use crate::config::Config;

/// `warden --version`: the crate version, the git commit and the build date
/// (`build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WARDEN_GIT_COMMIT"),
    ", built ",
    env!("WARDEN_BUILD_DATE"),
    ")"
);

/// Warden: a TLS-first MQTT broker where every decision goes through one policy engine.
#[derive(Debug, Parser)]
#[command(name = "warden", version = VERSION, propagate_version = true)]
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
    /// Ask the policy engine what it would decide, and why (for a user, an
    /// anonymous client or a certificate identity).
    Check(check::CheckArgs),
    /// Policy as code: check a file of expectations, compare two policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The admin changes recorded in the store (who, when, what).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
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
    /// Print a shell completion script: `warden completions bash >
    /// ~/.local/share/bash-completion/completions/warden`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How a command that succeeded wants the process to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Success,
    /// `warden check --exit-code` found the action denied: exit status 3.
    Denied,
    /// `warden policy test` found an expectation that does not hold, or
    /// `warden policy diff` found a difference: exit status 3.
    Mismatch,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Denied | Outcome::Mismatch => 3,
        }
    }
}

impl Cli {
    /// True when the command needs no config at all (so a broken config file
    /// does not stop `warden config default` from printing a good one).
    pub fn needs_config(&self) -> bool {
        !matches!(
            self.command,
            Command::Config(config_cmd::ConfigCommand::Default) | Command::Completions { .. }
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
    if let Command::Completions { shell } = cli.command {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "warden", &mut out);
        output::print_text(&String::from_utf8_lossy(&out))?;
        return Ok(Outcome::Success);
    }
    let Some(config) = config else {
        return config_cmd::run_without_config(&cli.command);
    };
    match cli.command {
        Command::Serve => serve::run(config).await.map(|()| Outcome::Success),
        Command::User(cmd) => user::run(cmd, &*audited_store(&config).await?, json).await,
        Command::Role(cmd) => role::run(cmd, &*audited_store(&config).await?, json).await,
        Command::Acl(cmd) => acl::run(cmd, &*audited_store(&config).await?, json).await,
        Command::Check(args) => check::run(args, &config, &*open_store(&config).await?, json).await,
        Command::Policy(cmd) => policy::run(cmd, &config, &*open_store(&config).await?, json).await,
        Command::Audit(cmd) => audit::run(cmd, &*open_store(&config).await?, json).await,
        Command::Migrate => migrate::run(&config, json).await,
        Command::Export(args) => export::run(args, &*open_store(&config).await?, json).await,
        Command::Import(args) => {
            // One record for the whole import, made here: the import may
            // write in many batches, and each would otherwise be its own.
            let store = open_store(&bulk(&config)).await?;
            let outcome = import::run(args, &*store, json).await?;
            let what = std::env::args()
                .skip_while(|a| a != "import")
                .collect::<Vec<_>>()
                .join(" ");
            audited::record(&*store, &audited::Actor::current(), what)
                .await
                .context("the import was made, but recording it as an admin change failed")?;
            Ok(outcome)
        }
        Command::Completions { .. } => Ok(Outcome::Success),
        Command::Cert(cmd) => cert::run(cmd, &config, json).await,
        Command::Config(cmd) => config_cmd::run(cmd, &config, cli.config.as_deref(), json).await,
        Command::Clients(cmd) => clients::run(cmd, &config, json).await,
    }
}

/// The configured store, with every write recorded as an admin change.
pub async fn audited_store(config: &Config) -> anyhow::Result<Arc<dyn AdminStore>> {
    let store = open_store(config).await?;
    Ok(Arc::new(audited::AuditedStore::new(
        store,
        audited::Actor::current(),
    )))
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
/// Opening a store applies its pending migrations (every backend does, as
/// the broker does at start), so a newcomer can add the first user before
/// the first `warden serve`.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn AdminStore>> {
    migrate::open_configured(config).await
}
