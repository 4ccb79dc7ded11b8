//! A subscriber that stops reading its socket under a QoS 0 flood never
//! blocks the broker: it is disconnected once its outbound queue stays full
//! for `limits.write_stall`, keep-alive still applies to it, other clients
//! round-trip normally, the broker's memory stays bounded, and SIGTERM
//! finishes within `shutdown_grace` (issue 9).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_e2e::sessions::rss_kib;
use warden_e2e::*;

/// Big enough that a few hundred fill every socket buffer on the way.
const PAYLOAD: usize = 32 * 1024;
/// Generous: the queues are bounded, the flood is far larger than this.
const RSS_BOUND_KIB: u64 = 300 * 1024;
/// How much the memory test pushes at a non-reader (15 s at most).
const FLOOD_MIB: u64 = 900;
/// What may sit in kernel socket buffers when the broker closes the socket.
const BUFFERED_BOUND: u64 = 64 * 1024 * 1024;

async fn setup(opts: BrokerOptions) -> TestBroker {
    let broker = TestBroker::start(BrokerOptions {
        plain_tcp: true,
        ..opts
    });
    broker.user_with_rights("flood", "pw", "f/#").await;
    broker.user_with_rights("rt", "pw", "o/#").await;
    broker
}

async fn plain_login(broker: &TestBroker, c: Connect) -> RawClient {
    let mut raw = RawClient::tcp(broker.plain_addr()).await.expect("TCP");
    let (_, code, _) = raw.connect(&c).await.expect("CONNACK");
    assert_eq!(code, 0, "CONNACK for {}", c.client_id);
    raw
}

/// A subscriber to `f/#` that will never read again.
async fn non_reader(broker: &TestBroker, keep_alive: u16) -> RawClient {
    let mut c = Connect::new(Version::V5, &client_id("stalled")).login("flood", "pw");
    c.keep_alive = keep_alive;
    let mut s = plain_login(broker, c).await;
    assert_eq!(s.subscribe("f/#", 0).await, 0);
    s
}

/// A publisher sending QoS 0 `PAYLOAD`s to `f/x` until stopped or cut off.
struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Flood {
    async fn start(broker: &TestBroker) -> Self {
        let c = Connect::new(Version::V5, &client_id("flooder")).login("flood", "pw");
        let mut p = plain_login(broker, c).await;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let task = tokio::spawn(async move {
            let msg = Publish::new("f/x", &vec![b'x'; PAYLOAD], 0);
            while !s.load(Ordering::Relaxed) {
                if p.publish(&msg).await.is_err() {
                    break;
                }
                let total = n.fetch_add(PAYLOAD as u64, Ordering::Relaxed);
                // About 200 MiB/s at most: plenty to fill every queue
                // without taking the shared cores from other work.
                if total % (2 << 20) == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        Self { stop, sent, task }
    }

    fn sent_mib(&self) -> u64 {
        self.sent.load(Ordering::Relaxed) >> 20
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        self.sent.load(Ordering::Relaxed) >> 20
    }
}

/// Publishes to itself at QoS 1 and gets it back within `WAIT`.
async fn round_trip(rt: &mut RawClient, i: u32) {
    let payload = format!("rt-{i}");
    let code = rt
        .publish_acked(Publish::new("o/rt", payload.as_bytes(), 1))
        .await;
    assert_eq!(code, 0, "round trip {i}: PUBACK");
    let got = rt.next_publish(WAIT).await;
    assert_eq!(
        got.map(|p| p.payload),
        Some(payload.into_bytes()),
        "round trip {i} during the flood"
    );
}

/// Keeps the flood going for `period`, round-tripping another client and
/// checking the broker's memory every half second.
async fn while_flooding(broker: &TestBroker, flood: &Flood, period: Duration) {
    let mut rt = broker
        .login(Version::V5, &client_id("rt"), "rt", "pw")
        .await;
    assert_eq!(rt.subscribe("o/rt", 1).await, 1);
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < period {
        round_trip(&mut rt, i).await;
        let rss = rss_kib(broker.pid());
        assert!(
            rss < RSS_BOUND_KIB,
            "broker RSS {rss} KiB after {} MiB flooded",
            flood.sent_mib()
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Resumes reading: the broker must already have closed the connection,
/// so only what sat in socket buffers comes before the end.
async fn assert_already_closed(s: &mut RawClient, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut bytes = 0u64;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match s.recv(left).await {
            Ok(Incoming::Publish(p)) => bytes += p.payload.len() as u64,
            Ok(_) => {}
            Err(RawError::Timeout) => panic!("{why}: still open, {} MiB read", bytes >> 20),
            Err(_) => break,
        }
        assert!(
            bytes < BUFFERED_BOUND,
            "{why}: {} MiB still delivered, the broker kept it",
            bytes >> 20
        );
    }
}

#[tokio::test]
async fn non_reader_is_disconnected_after_write_stall_while_others_round_trip() {
    let broker = setup(BrokerOptions {
        write_stall: Some("2s"),
        ..BrokerOptions::default()
    })
    .await;
    let mut stalled = non_reader(&broker, 60).await;
    let flood = Flood::start(&broker).await;
    while_flooding(&broker, &flood, Duration::from_secs(7)).await;
    let sent = flood.stop().await;
    eprintln!("flooded {sent} MiB");
    assert_already_closed(&mut stalled, "write_stall 2s, 7 s of flood").await;
}

#[tokio::test]
async fn broker_memory_stays_bounded_while_a_reader_is_stalled() {
    // The default write_stall (30 s) outlasts the flood: the queue is full
    // the whole time and must not grow.
    let broker = setup(BrokerOptions::default()).await;
    let _stalled = non_reader(&broker, 60).await;
    let flood = Flood::start(&broker).await;
    let started = Instant::now();
    while flood.sent_mib() < FLOOD_MIB && started.elapsed() < Duration::from_secs(15) {
        while_flooding(&broker, &flood, Duration::from_secs(1)).await;
    }
    let sent = flood.stop().await;
    let rss = rss_kib(broker.pid());
    eprintln!("flooded {sent} MiB; broker RSS {} MiB", rss >> 10);
    assert!(rss < RSS_BOUND_KIB, "broker RSS {rss} KiB after {sent} MiB");
    assert!(
        sent > RSS_BOUND_KIB >> 10,
        "the flood ({sent} MiB) must dwarf the bound for this test to mean anything"
    );
}

#[tokio::test]
async fn keep_alive_applies_to_a_non_reader() {
    let broker = setup(BrokerOptions::default()).await;
    let mut stalled = non_reader(&broker, 2).await;
    let flood = Flood::start(&broker).await;
    // Keep alive 2 s: closed after 3 s without a packet from the client.
    while_flooding(&broker, &flood, Duration::from_secs(6)).await;
    flood.stop().await;
    assert_already_closed(&mut stalled, "keep alive 2 s, 6 s silent").await;
}

#[tokio::test]
async fn sigterm_finishes_within_the_grace_period_despite_a_non_reader() {
    let mut broker = setup(BrokerOptions {
        extra_yaml: "shutdown_grace: 2s\n".into(),
        ..BrokerOptions::default()
    })
    .await;
    let _stalled = non_reader(&broker, 60).await;
    let flood = Flood::start(&broker).await;
    while_flooding(&broker, &flood, Duration::from_secs(3)).await;
    broker.signal("TERM");
    let started = Instant::now();
    let status = broker.wait_exit(Duration::from_secs(6));
    flood.stop().await;
    assert!(
        status.is_some(),
        "broker still running {:?} after SIGTERM with shutdown_grace 2s",
        started.elapsed()
    );
}
