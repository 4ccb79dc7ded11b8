//! Session store engines on the fan-in QoS 1 pattern, as the writer thread
//! sees it: per message a `PutDelivery`, a `SetInflight` one batch later and
//! a `RemoveDelivery` (the PUBACK) two batches later, for one persistent
//! subscriber; in `periodic` (fsync once a second) and `sync` (fsync per
//! batch) modes, at a few batch sizes. Coalescing is left out on purpose so
//! the engine sees every op. Also: disk bytes per queued message, and the
//! time `Persister::open` takes to load 100,000 sessions.
//!
//! `cargo bench -p warden --no-default-features --features sqlite --bench persist_engines`
//! (set `PERSIST_BENCH_SECS` to change the 1.5 s per case).

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use warden::config::PersistenceMode;
use warden::persist::{
    FjallStore, Op, Persister, Phase, SessionStore, SqliteStore, StoredDelivery, StoredMessage,
    StoredProps, StoredSession, StoredSubscription,
};

type Opener = fn(&Path, PersistenceMode) -> Box<dyn SessionStore>;

const ENGINES: [(&str, Opener); 2] = [
    ("fjall", |d, m| {
        Box::new(FjallStore::open(d, m).expect("open fjall"))
    }),
    ("sqlite", |d, m| {
        Box::new(SqliteStore::open(d, m).expect("open sqlite"))
    }),
];

fn delivery(i: u64) -> StoredDelivery {
    StoredDelivery {
        msg: StoredMessage {
            topic: format!("bench/{}/t", i % 8).into(),
            payload: Bytes::from(vec![0x5a; 64]),
            qos: 1,
            retain: false,
            props: StoredProps::default(),
            expires_at_ms: None,
            origin: format!("p{}", i % 8).into(),
        },
        qos: 1,
        retain: false,
        sub_ids: vec![],
        inflight: None,
    }
}

fn session(id: &str) -> StoredSession {
    let sub = |filter: &str| StoredSubscription {
        filter: filter.into(),
        share_group: None,
        qos: 1,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
        subscription_id: None,
    };
    StoredSession {
        client_id: id.into(),
        owner: Some(format!("user-{id}")),
        protocol: 5,
        expiry_secs: u32::MAX,
        disconnected_at_ms: Some(1),
        subscriptions: vec![sub("bench/+/t"), sub(&format!("devices/{id}/cmd"))],
        will: None,
        incoming_qos2: vec![],
    }
}

/// Batch `k` of the pipeline: puts of batch k, inflight of k-1, acks of k-2.
fn pipeline_batch(k: u64, size: u64) -> Vec<Op> {
    let c = || std::sync::Arc::<str>::from("subscriber");
    let mut ops = Vec::with_capacity(3 * size as usize);
    for seq in k * size..(k + 1) * size {
        ops.push(Op::PutDelivery {
            client_id: c(),
            seq,
            delivery: Box::new(delivery(seq)),
            ack_expected: false,
        });
        if let Some(s) = seq.checked_sub(size) {
            let packet_id = (s % 65_535 + 1) as u16;
            let phase = Phase::AwaitAck;
            ops.push(Op::SetInflight {
                client_id: c(),
                seq: s,
                packet_id,
                phase,
            });
        }
        if let Some(s) = seq.checked_sub(2 * size) {
            ops.push(Op::RemoveDelivery {
                client_id: c(),
                seq: s,
            });
        }
    }
    ops
}

fn fan_in(open: Opener, mode: PersistenceMode, size: u64, secs: f64) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), mode);
    store
        .apply(&[Op::PutSession(Box::new(session("subscriber")))])
        .expect("apply");
    let start = Instant::now();
    let mut last_fsync = start;
    let (mut k, mut ops) = (0u64, 0u64);
    while start.elapsed().as_secs_f64() < secs {
        let batch = pipeline_batch(k, size);
        store.apply(&batch).expect("apply");
        if mode == PersistenceMode::Sync || last_fsync.elapsed() >= Duration::from_secs(1) {
            store.sync().expect("sync");
            last_fsync = Instant::now();
        }
        ops += batch.len() as u64;
        k += 1;
    }
    let took = start.elapsed().as_secs_f64();
    ((k * size) as f64 / took, ops as f64 / took)
}

/// Through the [`Persister`], as the broker will drive it: a publisher path
/// submits put + inflight per message and the subscriber's PUBACK removes
/// it `window` messages later; coalescing cancels most pairs in a batch.
/// Counts messages whose ticket became durable per second.
fn writer(open: Opener, mode: PersistenceMode, window: u64, secs: f64) -> f64 {
    // 8 publishers × 500 unacknowledged each, as in the fan-in benchmark:
    // publishers stop when that many messages wait to become durable.
    const OUTSTANDING_OPS: u64 = 3 * 8 * 500;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), mode);
    store
        .apply(&[Op::PutSession(Box::new(session("subscriber")))])
        .expect("apply");
    let (p, _) = Persister::with_store(store, mode, Duration::from_secs(1)).expect("open");
    let c = || std::sync::Arc::<str>::from("subscriber");
    let start = Instant::now();
    let mut seq = 0u64;
    let mut last = 0;
    while start.elapsed().as_secs_f64() < secs {
        if p.is_congested() || last > p.durable() + OUTSTANDING_OPS {
            std::thread::yield_now();
            continue;
        }
        p.submit(Op::PutDelivery {
            client_id: c(),
            seq,
            delivery: Box::new(delivery(seq)),
            ack_expected: false,
        });
        let packet_id = (seq % 65_535 + 1) as u16;
        last = p.submit(Op::SetInflight {
            client_id: c(),
            seq,
            packet_id,
            phase: Phase::AwaitAck,
        });
        if let Some(s) = seq.checked_sub(window) {
            last = p.submit(Op::RemoveDelivery {
                client_id: c(),
                seq: s,
            });
        }
        seq += 1;
    }
    while p.durable() < last {
        std::thread::sleep(Duration::from_micros(100));
    }
    seq as f64 / start.elapsed().as_secs_f64()
}

/// Measured on reopened stores: fjall preallocates its journal and trims it
/// to what was written when it recovers.
fn disk_per_message(open: Opener) -> f64 {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let reopened = || open(dir.path(), PersistenceMode::Periodic).disk_bytes();
    {
        let store = open(dir.path(), PersistenceMode::Periodic);
        store
            .apply(&[Op::PutSession(Box::new(session("subscriber")))])
            .expect("apply");
        store.sync().expect("sync");
    }
    let before = reopened();
    {
        let store = open(dir.path(), PersistenceMode::Periodic);
        for k in 0..N / 1000 {
            let ops: Vec<Op> = (k * 1000..(k + 1) * 1000)
                .map(|seq| Op::PutDelivery {
                    client_id: "subscriber".into(),
                    seq,
                    delivery: Box::new(delivery(seq)),
                    ack_expected: false,
                })
                .collect();
            store.apply(&ops).expect("apply");
        }
        store.sync().expect("sync");
    }
    reopened().saturating_sub(before) as f64 / N as f64
}

fn load_time(open: Opener) -> (Duration, usize) {
    const SESSIONS: u64 = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path(), PersistenceMode::Periodic);
        for k in 0..SESSIONS / 1000 {
            let mut ops = Vec::with_capacity(2000);
            for i in k * 1000..(k + 1) * 1000 {
                let id = format!("client-{i}");
                ops.push(Op::PutSession(Box::new(session(&id))));
                ops.push(Op::PutDelivery {
                    client_id: id.into(),
                    seq: 1,
                    delivery: Box::new(delivery(i)),
                    ack_expected: false,
                });
            }
            store.apply(&ops).expect("apply");
        }
        store.sync().expect("sync");
    }
    let start = Instant::now();
    let store = open(dir.path(), PersistenceMode::Periodic);
    let (p, loaded) =
        Persister::with_store(store, PersistenceMode::Periodic, Duration::from_secs(1))
            .expect("open");
    let took = start.elapsed();
    drop(p);
    (took, loaded.sessions.len())
}

fn main() {
    let secs: f64 = std::env::var("PERSIST_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    println!("engine  mode      batch(msgs)  msg/s      ops/s");
    for (name, open) in ENGINES {
        for mode in [PersistenceMode::Periodic, PersistenceMode::Sync] {
            for size in [1, 16, 256] {
                let (msgs, ops) = fan_in(open, mode, size, secs);
                println!(
                    "{name:<7} {:<9} {size:<12} {msgs:<10.0} {ops:.0}",
                    format!("{mode:?}")
                );
            }
        }
    }
    for (name, open) in ENGINES {
        for mode in [PersistenceMode::Periodic, PersistenceMode::Sync] {
            let msgs = writer(open, mode, 500, secs);
            let mode = format!("{mode:?}");
            println!("{name:<7} {mode:<9} through Persister, ack window 500: {msgs:.0} msg/s");
        }
    }
    for (name, open) in ENGINES {
        println!(
            "{name}: {:.0} disk bytes per queued 64-byte message",
            disk_per_message(open)
        );
        let (took, n) = load_time(open);
        println!(
            "{name}: Persister::open loaded {n} sessions in {:.2} s",
            took.as_secs_f64()
        );
    }
}
