//! Bytes on the wire to fan-out subscribers with and without outbound topic
//! aliases, for a typical device topic and 64-byte payloads: counted on the
//! TCP stream under the client (so over TLS they include the TLS records).
//! The exact plain-TCP figures are asserted; the rest is printed for
//! docs/benchmarks.md (`cargo nextest run -p warden-e2e topic_alias_bytes
//! --no-capture`).

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use warden_e2e::raw::tls_config;
use warden_e2e::wire::TOPIC_ALIAS_MAXIMUM;
use warden_e2e::*;

const TOPIC: &str = "fleet/site-7/device-01234/telemetry";
const MESSAGES: usize = 500;
/// Subscribers per kind (with and without aliases).
const SUBS: usize = 5;

/// A TCP stream that counts the bytes read from it.
struct Counting {
    tcp: TcpStream,
    read: Arc<AtomicU64>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.tcp).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        res
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Tls,
}

/// A v5 subscriber to `fleet/#` at `qos` over `transport`, allowing
/// `aliases` (0: no Topic Alias Maximum sent), and its byte counter.
async fn subscriber(
    broker: &TestBroker,
    transport: Transport,
    aliases: u16,
    qos: u8,
) -> (RawClient, Arc<AtomicU64>) {
    let read = Arc::new(AtomicU64::new(0));
    let (addr, tls) = match transport {
        Transport::Tcp => (broker.plain_addr(), false),
        Transport::Tls => (broker.tls_addr(), true),
    };
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let counting = Counting {
        tcp,
        read: Arc::clone(&read),
    };
    let mut c = if tls {
        let connector = tokio_rustls::TlsConnector::from(tls_config(broker.ca_pem(), None));
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        let stream = connector.connect(name, counting).await.expect("TLS");
        RawClient::from_stream(Box::new(stream))
    } else {
        RawClient::from_stream(Box::new(counting))
    };
    let mut connect = Connect::new(Version::V5, &client_id("fan")).login("alice", "pw");
    if aliases > 0 {
        connect
            .props
            .0
            .push(Prop::U16(TOPIC_ALIAS_MAXIMUM, aliases));
    }
    let (_, code, _) = c.connect(&connect).await.expect("CONNACK");
    assert_eq!(code, 0);
    assert_eq!(c.subscribe("fleet/#", qos).await, qos);
    (c, read)
}

/// Bytes per delivery to each kind of subscriber (without, with aliases)
/// for `topics` published in turn, `MESSAGES` in all.
async fn measure(
    broker: &TestBroker,
    transport: Transport,
    qos: u8,
    topics: &[String],
) -> (f64, f64) {
    let mut subs = Vec::new();
    for aliases in [0u16, 16] {
        for _ in 0..SUBS {
            subs.push((aliases, subscriber(broker, transport, aliases, qos).await));
        }
    }
    for (_, (_, read)) in &subs {
        read.store(0, Ordering::Relaxed);
    }
    let mut p = broker
        .login(Version::V5, &client_id("pub"), "alice", "pw")
        .await;
    let payload = [b'x'; 64];
    for i in 0..MESSAGES {
        let topic = &topics[i % topics.len()];
        p.publish_acked(Publish::new(topic, &payload, 1)).await;
    }
    let (mut without, mut with) = (0u64, 0u64);
    for (aliases, (c, read)) in &mut subs {
        for i in 0..MESSAGES {
            let got = c
                .next_publish(WAIT)
                .await
                .unwrap_or_else(|| panic!("delivery {i}"));
            assert_eq!(got.payload.len(), 64);
        }
        let bytes = read.load(Ordering::Relaxed);
        if *aliases == 0 {
            without += bytes;
        } else {
            with += bytes;
        }
    }
    let per = |total: u64| total as f64 / (SUBS * MESSAGES) as f64;
    (per(without), per(with))
}

#[tokio::test]
async fn fan_out_bytes_per_delivery_with_and_without_aliases() {
    let broker = TestBroker::start(BrokerOptions {
        plain_tcp: true,
        ..BrokerOptions::default()
    });
    broker.user_with_rights("alice", "pw", "fleet/#").await;
    let one = vec![TOPIC.to_owned()];
    // A subscriber to many devices that cycle through more topics than it
    // has aliases: the worst case for least-recently-used replacement.
    let many: Vec<String> = (0..100)
        .map(|i| format!("fleet/site-7/device-{i:05}/telemetry"))
        .collect();
    let mut rows = Vec::new();
    for (label, topics) in [("one topic", &one), ("100 topics cycling", &many)] {
        for transport in [Transport::Tcp, Transport::Tls] {
            for qos in [0u8, 1] {
                let (without, with) = measure(&broker, transport, qos, topics).await;
                rows.push(format!(
                    "| {label} | {transport:?} | {qos} | {without:.1} | {with:.1} | {:+.1}% |",
                    (with / without - 1.0) * 100.0
                ));
                if label == "one topic" && transport == Transport::Tcp {
                    // Without: 2 (fixed header) + 37 (topic) + 2 (packet id at
                    // QoS 1) + 1 (empty properties) + 64. With: the first
                    // PUBLISH carries the topic and a 3-byte alias, the rest
                    // an empty topic (2) and the alias.
                    let id = if qos == 1 { 2.0 } else { 0.0 };
                    let plain = 104.0 + id;
                    let first = plain + 3.0;
                    let rest = 2.0 + 2.0 + id + 4.0 + 64.0;
                    let want = (first + rest * (MESSAGES as f64 - 1.0)) / MESSAGES as f64;
                    assert_eq!((without, with), (plain, want), "QoS {qos}");
                }
                if label == "one topic" {
                    assert!(with < without, "{transport:?} QoS {qos}");
                }
            }
        }
    }
    eprintln!("| topics | transport | QoS | bytes/delivery without | with aliases | change |");
    eprintln!("|---|---|---|---|---|---|");
    for r in rows {
        eprintln!("{r}");
    }
}
