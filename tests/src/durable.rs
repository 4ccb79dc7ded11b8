//! Helpers for the restart and durability tests (issue 10): a broker with a
//! given `persistence.mode`, stopping it by SIGTERM or SIGKILL, persistent
//! CONNECTs, resuming a session and draining the messages it gets.

use std::time::Duration;

use crate::wire::{self, Connect, Incoming, Prop, Publish, Version, SESSION_EXPIRY};
use crate::{BrokerOptions, RawClient, TestBroker};

/// How long a SIGTERM'd broker may take to exit: `shutdown_grace` (10 s by
/// default) plus room for a loaded machine.
pub const TERM_WAIT: Duration = Duration::from_secs(15);

/// Broker options with `persistence: { mode: MODE }` (`none`, `periodic`,
/// `sync`); `periodic` keeps the default fsync interval.
pub fn with_mode(mode: &str) -> BrokerOptions {
    BrokerOptions {
        extra_yaml: format!("persistence: {{ mode: {mode} }}\n"),
        ..BrokerOptions::default()
    }
}

/// How a test stops the broker before restarting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: a graceful stop that must flush the store and exit 0.
    Term,
    /// SIGKILL: nothing is flushed; only what was written before an ack counts.
    Kill,
}

/// Stops the broker and waits for the process to be gone; a SIGTERM must end
/// with exit status 0 within the grace period.
pub fn stop(broker: &mut TestBroker, how: Stop) {
    match how {
        Stop::Term => {
            broker.signal("TERM");
            let status = broker.wait_exit(TERM_WAIT);
            let log = broker.log();
            let status = status.unwrap_or_else(|| {
                panic!("still running {TERM_WAIT:?} after SIGTERM; log:\n{log}")
            });
            assert!(
                status.success(),
                "SIGTERM must end with exit status 0, got {status}; log:\n{log}"
            );
        }
        Stop::Kill => {
            broker.signal("KILL");
            assert!(
                broker.wait_exit(Duration::from_secs(5)).is_some(),
                "broker still running after SIGKILL"
            );
        }
    }
}

/// Stops the broker as `how` says and starts it again on the same data dir.
pub fn stop_and_restart(broker: &mut TestBroker, how: Stop) {
    stop(broker, how);
    broker.restart();
}

/// A CONNECT that keeps the session: clean start/session 0, and for v5 the
/// given session expiry interval in seconds.
pub fn persistent(version: Version, id: &str, user: &str, password: &str, expiry: u32) -> Connect {
    let mut c = Connect::new(version, id).login(user, password);
    c.clean = false;
    if version == Version::V5 {
        c.props.0.push(Prop::U32(SESSION_EXPIRY, expiry));
    }
    c
}

/// Connects with `connect`; asserts CONNACK success and returns the client
/// with the session present flag.
pub async fn resume(broker: &TestBroker, connect: &Connect) -> (RawClient, bool) {
    broker.connect_ok(connect).await
}

/// Resumes a session that must have survived the restart.
pub async fn resume_present(broker: &TestBroker, connect: &Connect) -> RawClient {
    let (c, present) = resume(broker, connect).await;
    assert!(
        present,
        "{:?} {}: CONNACK session present must be 1 after the restart (the session was lost)",
        connect.version, connect.client_id
    );
    c
}

/// Reads PUBLISHes (acknowledged as the client's auto_ack says) until `n`
/// arrived or `wait` passed with none; returns what came.
pub async fn take(client: &mut RawClient, n: usize, wait: Duration) -> Vec<Publish> {
    let mut got = Vec::new();
    while got.len() < n {
        match client.next_publish(wait).await {
            Some(p) => got.push(p),
            None => break,
        }
    }
    got
}

/// The payloads as text, for readable assertions.
pub fn texts(messages: &[Publish]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

/// Reads packets for up to `wait` until `done` says enough were seen; returns
/// every packet read (the broker ending the connection ends the read).
pub async fn gather(
    client: &mut RawClient,
    wait: Duration,
    done: impl Fn(&[Incoming]) -> bool,
) -> Vec<Incoming> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut seen = Vec::new();
    while !done(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.recv(left).await {
            Ok(p) => seen.push(p),
            Err(_) => break,
        }
    }
    seen
}

/// Sends PUBACK, PUBREC, PUBREL or PUBCOMP (by first byte) for `packet_id`.
pub async fn send_ack(client: &mut RawClient, first_byte: u8, packet_id: u16) {
    client
        .send(&wire::encode_ack(first_byte, packet_id))
        .await
        .expect("send acknowledgement");
}
