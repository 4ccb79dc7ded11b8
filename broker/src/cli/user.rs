//! `warden user ...`: accounts in the store. Passwords come from the terminal
//! or stdin, never from argv (argv is visible in `ps` and shell history), and
//! are hashed with argon2id off the async threads.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::Serialize;
use warden_auth::{AdminStore, NewUser, UserPatch, UserRecord};

use super::output::{print_json, print_text, Table};
use super::Outcome;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. Prompts for the password twice unless --password-stdin
    /// or --no-password is given.
    Add(AddArgs),
    /// Set a user's password.
    Passwd {
        name: String,
        #[command(flatten)]
        source: PasswordSource,
        /// Replace the password with a new generated device secret (printed
        /// once), as `user add --generate-secret` does.
        #[arg(long, conflicts_with = "password_stdin")]
        generate_secret: bool,
    },
    /// Refuse logins by this user (connected sessions are dropped by a running broker).
    Disable { name: String },
    /// Allow logins by this user again.
    Enable { name: String },
    /// Delete a user, its role memberships and its own rules.
    Remove { name: String },
    /// List users.
    List,
    /// Show one user (never the password hash).
    Show { name: String },
    /// Pin a user to one client certificate (SHA-256 fingerprint of its
    /// DER, as `openssl x509 -noout -fingerprint -sha256` prints it), or
    /// remove the pin with --clear.
    Pin {
        name: String,
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        fingerprint: Option<String>,
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    pub name: String,
    #[command(flatten)]
    pub source: PasswordSource,
    /// Create the user without a password: it can only log in with a client
    /// certificate whose identity maps to this name.
    #[arg(long, conflicts_with_all = ["password_stdin", "generate_secret"])]
    pub no_password: bool,
    /// Generate a random 256-bit device secret, print it once, and store it
    /// under a fast keyed hash (for devices and services; a human-chosen
    /// password stays argon2id). The secret is the MQTT password.
    #[arg(long, conflicts_with = "password_stdin")]
    pub generate_secret: bool,
    /// Make the user a member of this role (repeatable; a missing role is created).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// Rules do not apply to a superuser (when policy.superuser_bypass is on).
    #[arg(long)]
    pub superuser: bool,
    /// Accept only the client certificate with this SHA-256 fingerprint
    /// for this user (hex, colons allowed).
    #[arg(long, value_name = "SHA256")]
    pub cert_fingerprint: Option<String>,
}

#[derive(Debug, Args)]
pub struct PasswordSource {
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

/// A user as `list`/`show` print it: everything but the hash.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub username: String,
    pub enabled: bool,
    pub superuser: bool,
    pub has_password: bool,
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_fingerprint: Option<String>,
}

impl From<UserRecord> for UserView {
    fn from(user: UserRecord) -> UserView {
        UserView {
            has_password: user.password_hash.is_some(),
            username: user.username,
            enabled: user.enabled,
            superuser: user.superuser,
            roles: user.roles,
            cert_fingerprint: user.cert_fingerprint,
        }
    }
}

pub async fn run(cmd: UserCommand, store: &dyn AdminStore, json: bool) -> anyhow::Result<Outcome> {
    match cmd {
        UserCommand::Add(args) => add(args, store, json).await?,
        UserCommand::Passwd {
            name,
            source,
            generate_secret,
        } => {
            if generate_secret {
                let secret = warden_auth::device_secret::generate_secret();
                let patch = UserPatch {
                    password_hash: Some(Some(warden_auth::device_secret::hash_secret(
                        secret.as_bytes(),
                    ))),
                    ..UserPatch::default()
                };
                store
                    .update_user(&name, patch)
                    .await
                    .with_context(|| format!("cannot update user {name:?}"))?;
                print_secret(&name, "secret generated", &secret, json)?;
                return Ok(Outcome::Success);
            }
            let hash = hash(read_password(&source)?).await?;
            let patch = UserPatch {
                password_hash: Some(Some(hash)),
                ..UserPatch::default()
            };
            update(store, &name, patch, "password changed", json).await?;
        }
        UserCommand::Disable { name } => {
            let patch = UserPatch {
                enabled: Some(false),
                ..UserPatch::default()
            };
            update(store, &name, patch, "disabled", json).await?;
        }
        UserCommand::Enable { name } => {
            let patch = UserPatch {
                enabled: Some(true),
                ..UserPatch::default()
            };
            update(store, &name, patch, "enabled", json).await?;
        }
        UserCommand::Remove { name } => {
            store
                .delete_user(&name)
                .await
                .with_context(|| format!("cannot remove user {name:?}"))?;
            done(&name, "removed", json)?;
        }
        UserCommand::List => list(store, json).await?,
        UserCommand::Show { name } => show(store, &name, json).await?,
        UserCommand::Pin {
            name, fingerprint, ..
        } => {
            let what = if fingerprint.is_some() {
                "pinned"
            } else {
                "unpinned"
            };
            let patch = UserPatch {
                cert_fingerprint: Some(fingerprint),
                ..UserPatch::default()
            };
            update(store, &name, patch, what, json).await?;
        }
    }
    Ok(Outcome::Success)
}

async fn add(args: AddArgs, store: &dyn AdminStore, json: bool) -> anyhow::Result<()> {
    let mut secret = None;
    let password_hash = if args.no_password {
        None
    } else if args.generate_secret {
        let s = warden_auth::device_secret::generate_secret();
        let hash = warden_auth::device_secret::hash_secret(s.as_bytes());
        secret = Some(s);
        Some(hash)
    } else {
        Some(hash(read_password(&args.source)?).await?)
    };
    let user = NewUser {
        username: args.name.clone(),
        password_hash,
        superuser: args.superuser,
        enabled: true,
        roles: args.roles,
        cert_fingerprint: args.cert_fingerprint,
    };
    store
        .create_user(user)
        .await
        .with_context(|| format!("cannot add user {:?}", args.name))?;
    match secret {
        Some(secret) => print_secret(&args.name, "added", &secret, json),
        None => done(&args.name, "added", json),
    }
}

/// The generated secret, shown this once: only its keyed hash is stored.
fn print_secret(name: &str, what: &str, secret: &str, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&serde_json::json!({ "user": name, "result": what, "secret": secret }))
    } else {
        print_text(&format!(
            "user {name}: {what}\nsecret: {secret}\n(shown once: store it now; only its hash is kept)\n"
        ))
    }
}

async fn update(
    store: &dyn AdminStore,
    name: &str,
    patch: UserPatch,
    what: &str,
    json: bool,
) -> anyhow::Result<()> {
    store
        .update_user(name, patch)
        .await
        .with_context(|| format!("cannot update user {name:?}"))?;
    done(name, what, json)
}

fn done(name: &str, what: &str, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&serde_json::json!({ "user": name, "result": what }))
    } else {
        print_text(&format!("user {name}: {what}\n"))
    }
}

async fn list(store: &dyn AdminStore, json: bool) -> anyhow::Result<()> {
    let users: Vec<UserView> = store
        .list_users()
        .await
        .context("cannot list users")?
        .into_iter()
        .map(UserView::from)
        .collect();
    if json {
        return print_json(&users);
    }
    let mut table = Table::new(&["username", "enabled", "superuser", "password", "roles"]);
    for user in &users {
        table.row(vec![
            user.username.clone(),
            yes_no(user.enabled),
            yes_no(user.superuser),
            yes_no(user.has_password),
            user.roles.join(","),
        ]);
    }
    table.print()
}

async fn show(store: &dyn AdminStore, name: &str, json: bool) -> anyhow::Result<()> {
    let Some(user) = store
        .user(name)
        .await
        .with_context(|| format!("cannot read user {name:?}"))?
    else {
        bail!("user {name:?} does not exist");
    };
    let user = UserView::from(user);
    if json {
        return print_json(&user);
    }
    print_text(&format!(
        "username:  {}\nenabled:   {}\nsuperuser: {}\npassword:  {}\nroles:     {}\n",
        user.username,
        yes_no(user.enabled),
        yes_no(user.superuser),
        if user.has_password {
            "set"
        } else {
            "none (certificate only)"
        },
        user.roles.join(","),
    ))?;
    match &user.cert_fingerprint {
        Some(pin) => print_text(&format!("pinned:    {pin}\n")),
        None => Ok(()),
    }
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

async fn hash(password: String) -> anyhow::Result<String> {
    warden_auth::password::hash_password_blocking(password)
        .await
        .context("cannot hash the password")
}

/// The new password, from stdin or from two prompts on the terminal.
fn read_password(source: &PasswordSource) -> anyhow::Result<String> {
    let password = if source.password_stdin {
        read_stdin_line()?
    } else {
        prompt_twice()?
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

fn read_stdin_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    // Only the line ending goes: spaces may be part of a password.
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}

fn prompt_twice() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to prompt for a password; use --password-stdin or --no-password");
    }
    let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
    let second =
        rpassword::prompt_password("Password (again): ").context("cannot read the password")?;
    if first != second {
        bail!("the passwords do not match");
    }
    Ok(first)
}
