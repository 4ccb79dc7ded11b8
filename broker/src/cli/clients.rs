//! `warden clients list|show|kick`: the connected clients, through the
//! running broker's admin API (`metrics.bind`, bearer token from
//! `metrics.token_file`). The store knows nothing about connections, so
//! unlike the other admin commands this one talks to the broker itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::output::{opt, print_json, print_text, Table};
use super::Outcome;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct ClientsArgs {
    /// The admin API's address (default: metrics.bind from the config).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,
    #[command(subcommand)]
    pub command: ClientsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Every session: connected clients and persistent sessions waiting offline.
    List,
    /// One client: its login, subscriptions and queue.
    Show { client_id: String },
    /// Disconnect a client (MQTT 5 clients get DISCONNECT 0x98). Its
    /// session stays; its will is published as after any lost connection.
    Kick { client_id: String },
}

/// Where the API is and the token to show it.
struct Api {
    addr: SocketAddr,
    token: String,
}

impl Api {
    fn from_config(config: &Config, addr: Option<SocketAddr>) -> anyhow::Result<Api> {
        let Some(mut addr) = addr.or(config.metrics.bind) else {
            bail!("metrics.bind is not set in the config: the broker serves no admin API");
        };
        // A wildcard bind is reached on loopback.
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let token = match std::env::var("WARDEN_ADMIN_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                let Some(path) = &config.metrics.token_file else {
                    bail!(
                        "metrics.token_file is not set in the config (or set WARDEN_ADMIN_TOKEN)"
                    );
                };
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?
                    .trim()
                    .to_owned()
            }
        };
        Ok(Api { addr, token })
    }

    /// One request; the status and the body.
    async fn call(&self, method: Method, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("cannot reach the broker's admin API at {}", self.addr))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .context("admin API: HTTP handshake failed")?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::new()))
            .context("admin API: bad request")?;
        let res = sender
            .send_request(req)
            .await
            .context("admin API: no answer")?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .context("admin API: answer cut short")?
            .to_bytes();
        Ok((status, body))
    }

    /// A call that must answer 2xx; its JSON (Null for an empty body).
    async fn ok(&self, method: Method, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.call(method, path).await?;
        if !status.is_success() {
            let why = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
            if status == StatusCode::UNAUTHORIZED {
                bail!("admin API refused the token (401): {why}");
            }
            bail!("admin API: {status}: {why}");
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).context("admin API: the answer is not JSON")
    }
}

/// A client id as one path segment.
fn encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn since(v: &Value) -> String {
    opt(v.as_u64().map(|ms| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        humantime::format_rfc3339_seconds(t)
    }))
}

pub async fn run(args: ClientsArgs, config: &Config, json: bool) -> anyhow::Result<Outcome> {
    let api = Api::from_config(config, args.addr)?;
    match args.command {
        ClientsCommand::List => {
            let list = api.ok(Method::GET, "/api/clients").await?;
            if json {
                print_json(&list)?;
            } else {
                let mut t = Table::new(&[
                    "client id",
                    "user",
                    "connected",
                    "listener",
                    "peer",
                    "protocol",
                    "since",
                    "subs",
                    "queued",
                ]);
                for c in list.as_array().into_iter().flatten() {
                    t.row(vec![
                        cell(&c["client_id"]),
                        cell(&c["username"]),
                        cell(&c["connected"]),
                        cell(&c["listener"]),
                        cell(&c["peer"]),
                        cell(&c["protocol"]),
                        since(&c["connected_since"]),
                        c["subscriptions"]
                            .as_array()
                            .map_or(0, Vec::len)
                            .to_string(),
                        cell(&c["queued"]),
                    ]);
                }
                t.print()?;
            }
        }
        ClientsCommand::Show { client_id } => {
            let c = api
                .ok(Method::GET, &format!("/api/clients/{}", encode(&client_id)))
                .await?;
            if json {
                print_json(&c)?;
            } else {
                let mut text = String::new();
                for key in [
                    "client_id",
                    "username",
                    "connected",
                    "listener",
                    "peer",
                    "protocol",
                ] {
                    text.push_str(&format!("{key}: {}\n", cell(&c[key])));
                }
                text.push_str(&format!(
                    "connected_since: {}\n",
                    since(&c["connected_since"])
                ));
                text.push_str(&format!(
                    "queued: {}\ninflight: {}\nsubscriptions:\n",
                    cell(&c["queued"]),
                    cell(&c["inflight"])
                ));
                for s in c["subscriptions"].as_array().into_iter().flatten() {
                    text.push_str(&format!("  {}\n", cell(s)));
                }
                print_text(&text)?;
            }
        }
        ClientsCommand::Kick { client_id } => {
            api.ok(
                Method::DELETE,
                &format!("/api/clients/{}", encode(&client_id)),
            )
            .await?;
            if json {
                print_json(&serde_json::json!({ "client_id": client_id, "kicked": true }))?;
            } else {
                print_text(&format!("client {client_id} disconnected\n"))?;
            }
        }
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_become_one_path_segment() {
        assert_eq!(encode("dev-1.a_b~"), "dev-1.a_b~");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
