//! The broker's own counters: what `/metrics`, `$SYS` and the status page
//! read. Nothing here is read on the message path.
//!
//! Per-message counts (messages and payload bytes in and out, by QoS) are
//! [`Sharded`]: each thread adds to its own cache line with a relaxed add,
//! and a scrape sums the shards. One shared atomic per counter would make
//! every publishing core fight over one cache line; a per-connection count
//! would need a registry of connections to sum. Per-connection events
//! (logins, handshake failures) are rare and go into small labelled maps.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use warden_policy::QoS;

/// Counters kept apart per thread; see the module doc.
const SHARDS: usize = 16;

/// The per-message counters, one slot per (direction, QoS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Flow {
    MessagesIn = 0,
    BytesIn = 3,
    MessagesOut = 6,
    BytesOut = 9,
}

const SLOTS: usize = 12;

#[repr(align(128))]
#[derive(Default)]
struct Shard([AtomicU64; SLOTS]);

/// Counters summed at read time from per-thread shards.
pub struct Sharded {
    shards: Box<[Shard]>,
    /// Off when nothing reads them (no metrics listener, no `$SYS`): the
    /// message path then pays one relaxed load.
    enabled: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Sharded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharded").finish_non_exhaustive()
    }
}

thread_local! {
    /// This thread's shard, picked once (threads numbered in order of first use).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

static NEXT_SHARD: AtomicU64 = AtomicU64::new(0);

fn my_shard() -> usize {
    SHARD.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let n = (NEXT_SHARD.fetch_add(1, Ordering::Relaxed) as usize) % SHARDS;
        s.set(n);
        n
    })
}

impl Default for Sharded {
    fn default() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            enabled: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

impl Sharded {
    /// Count or not (see `enabled`).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Count `count` messages carrying `bytes` payload bytes at `qos`;
    /// `messages` is `MessagesIn` or `MessagesOut`. Out of line, so its
    /// cost shows by name in a profile (`bench/metrics-cost.sh`).
    #[inline(never)]
    pub fn add(&self, messages: Flow, qos: QoS, count: u64, bytes: u64) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let shard = &self.shards[my_shard()].0;
        let q = qos as usize;
        let m = messages as usize + q;
        shard[m].fetch_add(count, Ordering::Relaxed);
        // The byte slot of the same direction follows the message slots.
        shard[m + 3].fetch_add(bytes, Ordering::Relaxed);
    }

    /// The sum over all threads.
    pub fn get(&self, flow: Flow, qos: QoS) -> u64 {
        let slot = flow as usize + qos as usize;
        self.shards
            .iter()
            .map(|s| s.0[slot].load(Ordering::Relaxed))
            .sum()
    }

    /// The sum over all QoS levels.
    pub fn total(&self, flow: Flow) -> u64 {
        [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .map(|q| self.get(flow, q))
            .sum()
    }
}

/// Counts by label set, for events that happen once per connection or less.
#[derive(Debug)]
pub struct Counts<K>(Mutex<HashMap<K, u64>>);

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Counts(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq + Clone> Counts<K> {
    pub fn inc(&self, key: K) {
        *self.0.lock().entry(key).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> Vec<(K, u64)> {
        self.0.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    pub fn sum(&self) -> u64 {
        self.0.lock().values().sum()
    }
}

/// Everything the broker counts besides the decision counters (which
/// `authorize` keeps) and what is read from the live state at scrape time.
#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    pub started_at: SystemTime,
    pub flow: Sharded,
    /// Successful logins by (listener, protocol).
    pub connections: Counts<(std::sync::Arc<str>, &'static str)>,
    /// Authentications by (result, reason).
    pub auth: Counts<(&'static str, &'static str)>,
    /// TLS handshakes that failed, by reason.
    pub handshake_failures: Counts<&'static str>,
    /// Messages dropped from a full session queue.
    pub dropped: AtomicU64,
    /// Deliveries a publisher's task wrote straight into an idle
    /// subscriber's socket (`session/direct.rs`).
    pub written_through: AtomicU64,
    /// Times the sessions were recompiled after a policy change.
    pub recompilations: AtomicU64,
    /// From noticing a new policy version to every session running it: how
    /// long a revoked right can still be used, beyond the poll interval.
    pub revocation_delay: Histogram,
    /// Store call latencies and health (`timed_store`).
    pub store: std::sync::Arc<super::timed_store::StoreStats>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            started_at: SystemTime::now(),
            flow: Sharded::default(),
            connections: Counts::default(),
            auth: Counts::default(),
            handshake_failures: Counts::default(),
            dropped: AtomicU64::new(0),
            written_through: AtomicU64::new(0),
            recompilations: AtomicU64::new(0),
            // 1 ms … ~16 s.
            revocation_delay: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            store: Default::default(),
        }
    }
}

/// The metrics' word for why a TLS handshake failed.
pub fn handshake_reason(err: &crate::listener::ListenerError) -> &'static str {
    use crate::listener::ListenerError;
    let ListenerError::Handshake { source, .. } = err else {
        return "bad_certificate";
    };
    let Some(tls) = source
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match source.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            _ => "io",
        };
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidCertificate(_) => "bad_certificate",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => "protocol",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_across_threads() {
        let s = std::sync::Arc::new(Sharded::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        s.add(Flow::MessagesIn, QoS::AtLeastOnce, 1, 10);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.get(Flow::MessagesIn, QoS::AtLeastOnce), 4000);
        assert_eq!(s.get(Flow::BytesIn, QoS::AtLeastOnce), 40_000);
        assert_eq!(s.get(Flow::MessagesIn, QoS::AtMostOnce), 0);
        assert_eq!(s.total(Flow::MessagesIn), 4000);
        assert_eq!(s.get(Flow::MessagesOut, QoS::AtLeastOnce), 0);
    }
}
