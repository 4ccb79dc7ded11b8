//! End-to-end test harness: starts the real `warden` binary (`broker`), makes
//! certificates (`certs`), runs the admin CLI (`cli`), and drives the broker
//! with real clients (`clients`) and a raw MQTT client for exact reason-code
//! assertions (`raw`, with the spec-based packet code in `wire`). The tests
//! themselves live in `tests/`, one area per file. `nats` starts a
//! nats-server of the test's own for the cluster tests.

pub mod auth_service;
pub mod broker;
pub mod certs;
pub mod cli;
pub mod clients;
pub mod durable;
pub mod http;
pub mod lifecycle;
pub mod nats;
pub mod ocsp;
pub mod proxy;
pub mod raw;
pub mod sessions;
pub mod stores;
pub mod wire;
pub mod wire_decode;
pub mod ws;

pub use broker::{BrokerOptions, TestBroker};
pub use raw::{RawClient, RawError};
pub use wire::{Connect, Incoming, Prop, Props, Publish, Sub, Version, Will};

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(700);

/// A client id unique to this process and call site, so tests never collide.
pub fn client_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
