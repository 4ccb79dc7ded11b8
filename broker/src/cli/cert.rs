//! `warden cert init|server|client`: development certificates in
//! `<data_dir>/certs`, so a first TLS and mTLS setup needs no openssl.
//! Production certificates come from the operator's own CA.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use super::output::{print_json, print_text};
use super::Outcome;
use crate::certs;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Make the development CA and a localhost server certificate (kept if
    /// present) and print their paths.
    Init,
    /// Issue a server certificate signed by the development CA.
    Server {
        /// Common name; the files are <data_dir>/certs/NAME.pem and NAME.key.
        name: String,
        /// Subject alternative name: a DNS name or an IP address (repeatable).
        #[arg(long = "san", value_name = "S")]
        sans: Vec<String>,
    },
    /// Issue a client certificate (CN = NAME) for mutual TLS; with
    /// `username_from: cn` the client logs in as the user NAME.
    Client {
        /// Common name, and the user name the broker maps it to.
        name: String,
    },
}

pub async fn run(cmd: CertCommand, config: &Config, json: bool) -> anyhow::Result<Outcome> {
    let dir = config.data_dir.join("certs");
    // The CA is needed to issue anything, so every subcommand makes it first.
    let dev = certs::ensure_dev_certs(&dir)
        .with_context(|| format!("cannot make development certificates in {}", dir.display()))?;
    match cmd {
        CertCommand::Init => {
            let created = if dev.created {
                "created"
            } else {
                "already present"
            };
            if json {
                print_json(&serde_json::json!({
                    "ca_cert": dev.ca_cert,
                    "server_cert": dev.server_cert,
                    "server_key": dev.server_key,
                    "created": dev.created,
                }))?;
            } else {
                print_text(&format!(
                    "development certificates {created} in {}\n\
                     ca:          {}\nserver cert: {}\nserver key:  {}\n",
                    dir.display(),
                    dev.ca_cert.display(),
                    dev.server_cert.display(),
                    dev.server_key.display(),
                ))?;
            }
        }
        CertCommand::Server { name, sans } => {
            let sans = if sans.is_empty() {
                vec![name.clone()]
            } else {
                sans
            };
            let (cert, key) = certs::issue_server_cert(&dir, &name, &sans)
                .with_context(|| format!("cannot issue a server certificate for {name:?}"))?;
            issued(&dev.ca_cert, &cert, &key, json)?;
        }
        CertCommand::Client { name } => {
            let (cert, key) = certs::issue_client_cert(&dir, &name)
                .with_context(|| format!("cannot issue a client certificate for {name:?}"))?;
            issued(&dev.ca_cert, &cert, &key, json)?;
        }
    }
    Ok(Outcome::Success)
}

fn issued(ca: &Path, cert: &PathBuf, key: &PathBuf, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&serde_json::json!({ "ca_cert": ca, "cert": cert, "key": key }))
    } else {
        print_text(&format!(
            "ca:   {}\ncert: {}\nkey:  {}\n",
            ca.display(),
            cert.display(),
            key.display()
        ))
    }
}
