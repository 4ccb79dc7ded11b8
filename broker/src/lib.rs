//! Warden: a TLS-first MQTT broker in which every connect, subscribe, publish
//! and delivery decision is made by one policy engine (`warden-policy`).
//!
//! # Layout
//!
//! - [`config`]: YAML config → validated, typed [`config::Config`].
//! - [`listener`]: TCP and TLS listeners; the peer's identity comes out of the
//!   TLS session here and nowhere else.
//! - [`certs`]: the development CA and certificates for a first run.
//! - [`server`]: the accept loop, one task per connection, shutdown.
//! - [`lifecycle`]: signals, the config reload (SIGHUP), the live log filter.
//! - [`session`]: the per-connection MQTT state machine.
//! - [`router`]: the subscription trie, shared subscriptions, retained messages.
//! - [`ocsp`]: OCSP checking of client certificates at login.
//! - [`auth`]: authentication at CONNECT (password or client certificate).
//! - [`login_cache`]: store answers and compiled policies per policy version.
//! - [`broker`]: the shared state and the publish path.
//! - [`authorize`]: the only place a policy `Decision` becomes wire behaviour.
//! - [`policy_registry`]: the compiled policy of every session, kept fresh.
//! - [`persist`]: persistent sessions and retained messages on disk.
//! - [`cluster`]: nodes sharing the policy store, messages over NATS.
//! - [`observe`]: metrics, `$SYS`, the audit log, the admin API and page.
//! - [`defence`]: bans after failed logins and connection limits.
//! - [`wake`]: a connection's wake-up (deliveries, durable acks, kicks, shutdown).
//! - [`cli`]: the `warden` subcommands (serve and the admin CLI).
//!
//! The MQTT codec is its own crate, re-exported as [`codec`].

pub use warden_codec as codec;

pub mod auth;
pub mod authorize;
pub mod broker;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod defence;
pub mod lifecycle;
pub mod listener;
pub mod login_cache;
pub mod observe;
pub mod ocsp;
pub mod persist;
pub mod policy_registry;
pub mod revocation;
pub mod router;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod wake;
