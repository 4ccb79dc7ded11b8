//! What an operator sees of a running broker: the counters ([`stats`]), the
//! Prometheus text ([`metrics`]), the audit log ([`audit`]), `$SYS` topics
//! ([`sys`]), and the HTTP listener ([`http`]) that serves `/metrics`,
//! `/health`, `/ready`, the admin API ([`api`]) and the status page.
//!
//! Counters kept on the message path are in [`stats`]; everything that can
//! be read from the live state (sessions, queues, subscriptions, retained
//! messages) is read at scrape time by [`Snapshot::take`] instead of being
//! counted as it changes.

pub mod api;
pub mod audit;
pub mod http;
pub mod metrics;
pub mod stats;
pub mod sys;
pub mod timed_store;

use std::collections::HashMap;
use std::sync::Arc;

use warden_codec::ProtocolVersion;

use crate::broker::Broker;

pub use audit::Audit;
pub use stats::Stats;

/// The label for a protocol version.
pub fn protocol_label(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V31 => "3.1",
        ProtocolVersion::V311 => "3.1.1",
        ProtocolVersion::V5 => "5",
    }
}

/// The live state, counted once per scrape.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub sessions_online: u64,
    pub sessions_offline: u64,
    /// Messages waiting in session queues (not yet in flight).
    pub queued: u64,
    /// Messages sent and not yet acknowledged.
    pub inflight: u64,
    /// Online connections by (listener, protocol).
    pub connected: HashMap<(String, &'static str), u64>,
    pub subscriptions: u64,
    pub retained: u64,
}

impl Snapshot {
    /// Walk the sessions (each locked briefly, one at a time).
    pub fn take(broker: &Broker) -> Snapshot {
        let sessions: Vec<_> = broker.sessions.lock().values().cloned().collect();
        let mut snap = Snapshot {
            subscriptions: broker.router.read().len() as u64,
            retained: broker.retained.read().len() as u64,
            ..Snapshot::default()
        };
        for s in sessions {
            let st = s.state.lock();
            snap.queued += st.queue.len() as u64;
            snap.inflight += st.inflight.len() as u64;
            match &st.attached {
                Some(a) => {
                    snap.sessions_online += 1;
                    *snap
                        .connected
                        .entry((
                            st.principal.listener.to_string(),
                            protocol_label(a.protocol),
                        ))
                        .or_insert(0) += 1;
                }
                None => snap.sessions_offline += 1,
            }
        }
        snap
    }
}

/// Whether anything reads the message counters: the metrics listener or
/// `$SYS`. Without either they are not kept.
pub fn counting_wanted(config: &crate::config::Config) -> bool {
    config.metrics.bind.is_some() || !config.sys_interval.is_zero()
}

/// Keep `$SYS` and the audit log's suppressed count going until shutdown.
pub fn spawn_background(broker: &Arc<Broker>, shutdown: crate::shutdown::Shutdown) {
    tokio::spawn(sys::run(Arc::clone(broker), shutdown));
}
