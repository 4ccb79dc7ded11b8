//! `$SYS/broker/...`: the broker's own numbers as MQTT messages, in
//! Mosquitto's common layout, published every `sys_interval`.
//!
//! They go through the ordinary publish path, so every delivery meets the
//! subscriber's `receive` rules: a client reads `$SYS` only where its rules
//! allow. No client can write there (`authorize::is_broker_topic`). They are
//! published with QoS 0 and not retained: a new subscriber sees them at the
//! next interval, and nothing about them reaches the session store.
//!
//! The same loop writes the audit log's suppressed count once a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use warden_codec::Properties;
use warden_policy::QoS;

use super::stats::Flow;
use super::Snapshot;
use crate::broker::Broker;
use crate::session::message::Message;
use crate::shutdown::Shutdown;

const TICK: Duration = Duration::from_secs(1);

/// The origin of the broker's own messages, for No Local: no client's.
const ORIGIN: &str = "$SYS";

/// The topics and values, in publishing order.
pub fn topics(broker: &Broker) -> Vec<(&'static str, String)> {
    let snap = Snapshot::take(broker);
    let stats = &broker.stats;
    let flow = &stats.flow;
    vec![
        (
            "$SYS/broker/version",
            format!("warden {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", stats.started.elapsed().as_secs()),
        ),
        (
            "$SYS/broker/clients/connected",
            snap.sessions_online.to_string(),
        ),
        (
            "$SYS/broker/clients/disconnected",
            snap.sessions_offline.to_string(),
        ),
        (
            "$SYS/broker/clients/total",
            (snap.sessions_online + snap.sessions_offline).to_string(),
        ),
        (
            "$SYS/broker/messages/received",
            flow.total(Flow::MessagesIn).to_string(),
        ),
        (
            "$SYS/broker/messages/sent",
            flow.total(Flow::MessagesOut).to_string(),
        ),
        (
            "$SYS/broker/bytes/received",
            flow.total(Flow::BytesIn).to_string(),
        ),
        (
            "$SYS/broker/bytes/sent",
            flow.total(Flow::BytesOut).to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count",
            snap.subscriptions.to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            snap.retained.to_string(),
        ),
    ]
}

/// Publish every `$SYS` topic once.
pub fn publish_all(broker: &Broker) {
    let mut congested = Vec::new();
    for (topic, value) in topics(broker) {
        let msg = Message {
            topic: Arc::from(topic),
            payload: Bytes::from(value),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
            expires_at: None,
            origin: Arc::from(ORIGIN),
            ack_gate: None,
        };
        // `$SYS` stays on this node: never held for the cluster's outbox.
        let _ = broker.publish(Arc::new(msg), None, &mut congested);
        // The broker does not wait for slow subscribers of its own numbers.
        congested.clear();
    }
}

pub async fn run(broker: Arc<Broker>, mut shutdown: Shutdown) {
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.recv() => return,
        }
        broker.audit.flush_suppressed();
        // Read every tick: a reload may change it.
        let every = broker.config().sys_interval;
        if !every.is_zero() && last.elapsed() >= every {
            last = Instant::now();
            publish_all(&broker);
        }
    }
}
