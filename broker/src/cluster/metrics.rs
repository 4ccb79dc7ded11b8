//! The cluster's part of `/metrics` (docs/cluster.md, "Metrics"): the link's
//! counters, the NATS connection's state and, with `durable_qos`, the
//! JetStream path's counters. Registered by `observe::metrics::render` only
//! on a cluster node, so a single node's exposition does not change.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Cluster;

type Labels = Vec<(&'static str, String)>;

fn counter(r: &mut Registry, name: &str, help: &str, value: &AtomicU64) {
    let c = Counter::<u64>::default();
    c.inc_by(value.load(Ordering::Relaxed));
    r.register(name, help, c);
}

fn gauge(r: &mut Registry, name: &str, help: &str, labels: Labels, value: i64) {
    let family = Family::<Labels, Gauge>::default();
    family.get_or_create(&labels).set(value);
    r.register(name, help, family);
}

/// Register the cluster's metrics, all named `warden_cluster_…`.
pub fn register(r: &mut Registry, cluster: &Cluster) {
    let s = &cluster.stats;
    gauge(
        r,
        "cluster_node",
        "1, labelled with this node's cluster name and node id",
        vec![
            ("cluster", cluster.subjects.cluster().to_owned()),
            ("node", cluster.node_id.to_string()),
        ],
        1,
    );
    let connected = Gauge::<i64>::default();
    connected.set(i64::from(cluster.interest.is_connected()));
    r.register(
        "cluster_nats_connected",
        "1 while this node's NATS connection is up",
        connected,
    );
    counter(
        r,
        "cluster_forwarded",
        "Local publishes handed to core NATS for the other nodes",
        &s.forwarded,
    );
    counter(
        r,
        "cluster_received",
        "Messages from other nodes routed on this node (core NATS)",
        &s.received,
    );
    counter(
        r,
        "cluster_duplicates",
        "Second copies dropped (a message matched several of this node's filters)",
        &s.duplicates,
    );
    counter(
        r,
        "cluster_not_forwarded",
        "Local publishes that stayed on this node: outbox full, refused by NATS, subject too long",
        &s.not_forwarded,
    );
    counter(
        r,
        "cluster_outbox_waits",
        "Local publishes that found the outbox to NATS full and paused their publisher until it had room",
        &cluster.pacing.waits,
    );
    counter(
        r,
        "cluster_outbox_stalls",
        "Times the full outbox took nothing for 2 s (NATS not reading): publishes stayed local until it moved",
        &cluster.pacing.stalls,
    );
    counter(
        r,
        "cluster_slow_consumer",
        "Times NATS reported this node too slow for a subscription (messages were dropped)",
        &s.slow,
    );
    counter(
        r,
        "cluster_flow_waits",
        "Times this node stopped sending because another node was more than the flow window behind",
        &s.flow_waits,
    );
    counter(
        r,
        "cluster_flow_timeouts",
        "Times another node behind by more than the flow window reported no progress for 1 s and was no longer waited for",
        &s.flow_timeouts,
    );
    counter(
        r,
        "cluster_session_records_deleted",
        "Session ownership records this node deleted because their session ended here",
        &cluster.sessions.deleted,
    );
    if let Some(d) = &cluster.durable {
        let d = &d.stats;
        counter(
            r,
            "cluster_durable_stored",
            "QoS 1/2 publishes JetStream acknowledged (durable_qos)",
            &d.stored,
        );
        let family = Family::<Labels, Counter>::default();
        for (why, c) in [
            ("unavailable", &d.unavailable),
            ("timeout", &d.timeout),
            ("error", &d.error),
        ] {
            family
                .get_or_create(&vec![("reason", why.to_owned())])
                .inc_by(c.load(Ordering::Relaxed));
        }
        r.register(
            "cluster_durable_failed",
            "QoS 1/2 publishes JetStream did not acknowledge, by reason (v5 publishers got 0x80)",
            family,
        );
        counter(
            r,
            "cluster_durable_received",
            "Messages read from the stream and routed on this node",
            &d.received,
        );
        counter(
            r,
            "cluster_durable_redelivered",
            "Stream messages JetStream delivered to this node more than once",
            &d.redelivered,
        );
        counter(
            r,
            "cluster_durable_skipped",
            "Stream messages skipped: published by this node, already routed, or expired",
            &d.skipped,
        );
    }
}
