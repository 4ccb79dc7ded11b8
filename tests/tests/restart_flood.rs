//! kill -9 during a QoS 1 flood (issue 10): a publisher sends numbered QoS 1
//! messages as fast as the broker's receive maximum allows while a persistent
//! subscriber acknowledges them; the broker is SIGKILLed at a random moment
//! (seeded; `WARDEN_E2E_SEED` replays a run), restarted, the subscriber
//! resumes. Every message the publisher got a PUBACK for must reach the
//! subscriber at least once over the whole run; duplicates are allowed for
//! QoS 1 and counted. Ten kills per mode, `periodic` and `sync`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;
use warden_e2e::durable::*;
use warden_e2e::wire::{self, RECEIVE_MAXIMUM};
use warden_e2e::*;

const ITERATIONS: usize = 10;
const EXPIRY: u32 = 300;
/// How long a resumed subscriber may take to catch up on the backlog.
const CATCH_UP: Duration = Duration::from_secs(20);

/// splitmix64: enough randomness for kill moments, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn seed() -> u64 {
    if let Some(s) = std::env::var("WARDEN_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// Deliveries per sequence number, over the whole run.
type Seen = Arc<Mutex<HashMap<u64, u32>>>;

/// Reads and acknowledges PUBLISHes until the connection ends.
fn spawn_subscriber(mut s: RawClient, seen: Seen) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(packet) = s.recv(Duration::from_secs(60)).await {
            let Incoming::Publish(m) = packet else {
                continue;
            };
            if let Ok(bytes) = <[u8; 8]>::try_from(m.payload.as_slice()) {
                let seq = u64::from_be_bytes(bytes);
                *seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(seq)
                    .or_default() += 1;
            }
            if m.qos > 0 && s.send(&wire::encode_ack(0x40, m.packet_id)).await.is_err() {
                break;
            }
        }
    })
}

/// Publishes sequence numbers from `first` on, keeping `window` unacknowledged,
/// until the connection ends; returns the next unsent number and the numbers
/// that got a successful PUBACK.
async fn flood(mut p: RawClient, window: usize, first: u64) -> (u64, Vec<u64>) {
    let mut inflight: HashMap<u16, u64> = HashMap::new();
    let mut acked = Vec::new();
    let mut next = first;
    loop {
        while inflight.len() < window {
            let mut m = Publish::new("f/seq", &next.to_be_bytes(), 1);
            m.packet_id = (next % 65_535) as u16 + 1;
            if p.publish(&m).await.is_err() {
                return (next, acked);
            }
            inflight.insert(m.packet_id, next);
            next += 1;
        }
        match p.recv(Duration::from_secs(10)).await {
            Ok(Incoming::PubAck { packet_id, code }) => {
                if let Some(seq) = inflight.remove(&packet_id) {
                    if code < 0x80 {
                        acked.push(seq);
                    }
                }
            }
            Ok(_) => {}
            Err(_) => return (next, acked),
        }
    }
}

/// A v5 publisher and the receive maximum the broker granted it.
async fn publisher(broker: &TestBroker) -> (RawClient, usize) {
    let mut p = broker.raw().await;
    let c = Connect::new(Version::V5, &client_id("flood")).login("alice", "pw");
    let (_, code, props) = p.connect(&c).await.expect("publisher CONNACK");
    assert_eq!(code, 0, "publisher CONNACK");
    let window = props.u16(RECEIVE_MAXIMUM).unwrap_or(u16::MAX);
    (p, usize::from(window))
}

/// Waits until every acknowledged number was delivered; the missing ones.
async fn missing_after_catch_up(seen: &Seen, acked: &[u64]) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        let missing: Vec<u64> = {
            let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            acked
                .iter()
                .copied()
                .filter(|s| !seen.contains_key(s))
                .collect()
        };
        if missing.is_empty() || tokio::time::Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn duplicates(seen: &Seen) -> BTreeMap<u64, u32> {
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, n)| (*s, *n))
        .collect()
}

async fn kill_during_flood(mode: &str) {
    let seed = seed();
    println!("restart_flood {mode}: seed {seed} (WARDEN_E2E_SEED={seed} replays the kill moments)");
    let mut rng = Rng(seed);
    let mut broker = TestBroker::start(BrokerOptions {
        max_queued_messages: 100_000,
        ..with_mode(mode)
    });
    broker.user_with_rights("alice", "pw", "f/#").await;
    let sub = persistent(Version::V5, &client_id("fsub"), "alice", "pw", EXPIRY);
    let (mut s, _) = resume(&broker, &sub).await;
    assert_eq!(s.subscribe("f/#", 1).await, 1);
    let seen: Seen = Arc::default();
    let mut reader = spawn_subscriber(s, seen.clone());
    let mut acked_total = Vec::new();
    let mut next_seq = 0;

    for iteration in 1..=ITERATIONS {
        let kill_after = Duration::from_millis(rng.between(50, 500));
        let (p, window) = publisher(&broker).await;
        let flooding = tokio::spawn(flood(p, window, next_seq));
        tokio::time::sleep(kill_after).await;
        stop(&mut broker, Stop::Kill);
        let (sent_to, acked) = flooding.await.expect("flood task");
        let _ = reader.await;
        println!(
            "  kill {iteration} at {kill_after:?}: sent {}, PUBACKed {}",
            sent_to - next_seq,
            acked.len()
        );
        next_seq = sent_to;
        acked_total.extend(acked);

        broker.restart();
        let s = resume_present(&broker, &sub).await;
        reader = spawn_subscriber(s, seen.clone());
        let missing = missing_after_catch_up(&seen, &acked_total).await;
        assert!(
            missing.is_empty(),
            "{mode}, seed {seed}, kill {iteration}: {} PUBACKed messages never delivered, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(20)]
        );
    }
    reader.abort();
    let dups = duplicates(&seen);
    println!(
        "restart_flood {mode}: {} PUBACKed, {} distinct delivered, {} delivered more than once {:?}",
        acked_total.len(),
        seen.lock().unwrap_or_else(|e| e.into_inner()).len(),
        dups.len(),
        dups.iter().take(20).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn no_acknowledged_message_lost_to_kill_9_periodic() {
    kill_during_flood("periodic").await;
}

#[tokio::test]
async fn no_acknowledged_message_lost_to_kill_9_sync() {
    kill_during_flood("sync").await;
}
