//! Helpers for the session-ownership tests (issue 9): persistent CONNECTs,
//! CONNACKs that may be refusals, draining deliveries until quiet, the
//! expected refusal codes, and the broker's resident memory from /proc.

use std::time::Duration;

use crate::broker::TestBroker;
use crate::raw::{RawClient, RawError};
use crate::wire::{Connect, Incoming, Prop, Publish, Version, SESSION_EXPIRY};

/// CONNACK code for "client identifier not valid / rejected":
/// v5 0x85 (§3.2.2.2), v3.1.1 0x02 (§3.2.2.3).
pub fn id_refused(version: Version) -> u8 {
    match version {
        Version::V5 => 0x85,
        Version::V311 => 0x02,
    }
}

/// CONNACK code for "not authorized": v5 0x87, v3.1.1 0x05.
pub fn not_authorized(version: Version) -> u8 {
    match version {
        Version::V5 => 0x87,
        Version::V311 => 0x05,
    }
}

/// alice (password `pw`) publishes each payload to `a/x` at QoS 1 from a
/// connection of her own, each acknowledged with 0.
pub async fn publish_as_alice(broker: &TestBroker, payloads: &[&str]) {
    let mut p = broker
        .login(Version::V5, &crate::client_id("apub"), "alice", "pw")
        .await;
    for m in payloads {
        let code = p.publish_acked(Publish::new("a/x", m.as_bytes(), 1)).await;
        assert_eq!(code, 0, "alice publishes {m}");
    }
    p.disconnect().await;
}

/// A CONNECT as `user` (None: anonymous) that keeps its session: clean
/// session/start as given, and on v5 a session expiry of 300 s.
pub fn persistent(version: Version, id: &str, user: Option<&str>, clean: bool) -> Connect {
    let mut c = Connect::new(version, id);
    if let Some(u) = user {
        c = c.login(u, "pw");
    }
    c.clean = clean;
    if version == Version::V5 {
        c.props.0.push(Prop::U32(SESSION_EXPIRY, 300));
    }
    c
}

/// Sends `c` on a fresh TLS connection; the client, session present and code.
pub async fn try_connect(broker: &TestBroker, c: &Connect) -> (RawClient, bool, u8) {
    let mut raw = broker.raw().await;
    let (present, code, _) = raw
        .connect(c)
        .await
        .unwrap_or_else(|e| panic!("CONNECT {}: {e:?}", c.client_id));
    (raw, present, code)
}

/// Every PUBLISH until none arrives for `quiet` (acknowledged per `auto_ack`),
/// stopping early if the broker closes the connection.
pub async fn drain(c: &mut RawClient, quiet: Duration) -> Vec<Publish> {
    let mut got = Vec::new();
    loop {
        match c
            .wait_for(quiet, |p| matches!(p, Incoming::Publish(_)))
            .await
        {
            Ok(Incoming::Publish(p)) => {
                if c.auto_ack {
                    c.ack(&p).await;
                }
                got.push(p);
            }
            Ok(_) | Err(RawError::Timeout) | Err(RawError::Closed) => return got,
            Err(e) => panic!("reading PUBLISH: {e:?}"),
        }
    }
}

/// Payloads as text, for readable assertions.
pub fn payloads(msgs: &[Publish]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

/// Asserts that a refused connection is closed by the broker without a
/// single PUBLISH having been sent on it.
pub async fn assert_closed_without_publish(c: &mut RawClient, why: &str) {
    let end = c.ending(Duration::from_secs(5)).await;
    let published: Vec<_> = end
        .packets
        .iter()
        .filter(|p| matches!(p, Incoming::Publish(_)))
        .collect();
    assert!(published.is_empty(), "{why}: got {published:?}");
}

/// The resident set size of process `pid` in KiB (`VmRSS` in /proc).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}
