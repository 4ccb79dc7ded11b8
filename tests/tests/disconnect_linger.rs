//! After a DISCONNECT with an error reason the broker keeps reading (and
//! dropping) what the client still sends for a bounded linger before it
//! closes, so a client that is still writing does not meet a reset (broken
//! pipe) and can read why it was disconnected. Bounded in time and bytes.

use std::time::Duration;

use tokio::time::Instant;
use warden_e2e::*;

/// More than any write takes on loopback; less than the linger (1.5 s).
const GAP: Duration = Duration::from_millis(20);

/// Bytes of QoS 0 PUBLISHes to the client's own topic, about `len` long.
fn chatter(version: Version, len: usize) -> Vec<u8> {
    let one = wire::encode_publish(&Publish::new("lg/more", &[b'x'; 200], 0), version);
    one.repeat(len.div_ceil(one.len()))
}

/// Keeps writing `chunks` × `chunk` bytes, `GAP` apart: every write must
/// succeed (the broker still reads), then the DISCONNECT must be there.
async fn keep_writing_then_read_reason(c: &mut RawClient, chunks: usize, chunk: &[u8]) -> u8 {
    for i in 0..chunks {
        if let Err(e) = c.send(chunk).await {
            panic!("write {i} after the violation failed: {e:?}");
        }
        tokio::time::sleep(GAP).await;
    }
    let end = c.ending(WAIT).await;
    end.disconnect_code()
        .unwrap_or_else(|| panic!("no DISCONNECT read: {end:?}"))
}

#[tokio::test]
async fn a_client_still_publishing_after_0x93_reads_the_reason() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "lg/#").await;
    let mut c = broker
        .login(Version::V5, &client_id("flood"), "alice", "pw")
        .await;
    // receive_maximum is 64 in the test config: 65 QoS 2 flows left open.
    let mut burst = Vec::new();
    for id in 1..=65u16 {
        let mut p = Publish::new("lg/q2", b"x", 2);
        p.packet_id = id;
        burst.extend(wire::encode_publish(&p, Version::V5));
    }
    c.send(&burst).await.expect("send the burst");
    // 20 × 4 KB over ~0.4 s: within the linger's time and bytes.
    let code = keep_writing_then_read_reason(&mut c, 20, &chatter(Version::V5, 4096)).await;
    assert_eq!(code, 0x93, "receive maximum exceeded");
}

#[tokio::test]
async fn a_client_sending_a_packet_too_large_reads_0x95() {
    let broker = TestBroker::start(BrokerOptions {
        max_packet_size: "16KiB",
        ..BrokerOptions::default()
    });
    broker.user_with_rights("alice", "pw", "lg/#").await;
    let mut c = broker
        .login(Version::V5, &client_id("big"), "alice", "pw")
        .await;
    // The broker refuses it from the fixed header, long before the
    // client has written it all.
    let big = wire::encode_publish(
        &Publish::new("lg/big", &vec![b'b'; 96 * 1024], 0),
        Version::V5,
    );
    let code = keep_writing_then_read_reason(&mut c, 12, &big[..8 * 1024]).await;
    assert_eq!(code, 0x95, "packet too large");
}

#[tokio::test]
async fn the_linger_is_bounded_in_time_for_a_client_that_never_stops() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "lg/#").await;
    let mut c = broker
        .login(Version::V5, &client_id("trickle"), "alice", "pw")
        .await;
    // A second CONNECT: protocol error (0x82).
    let again = wire::encode_connect(&Connect::new(Version::V5, "again"));
    c.send(&again).await.expect("send");
    // Trickle forever: the broker must close anyway (1.5 s linger). A write
    // fails once the broker has closed and answered with a reset.
    let started = Instant::now();
    let little = chatter(Version::V5, 100);
    let closed = loop {
        if c.send(&little).await.is_err() {
            break true;
        }
        if started.elapsed() > Duration::from_secs(15) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(closed, "the broker still reads after 15 s");
}

#[tokio::test]
async fn the_linger_is_bounded_in_bytes() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "lg/#").await;
    let mut c = broker
        .login(Version::V5, &client_id("firehose"), "alice", "pw")
        .await;
    let again = wire::encode_connect(&Connect::new(Version::V5, "again"));
    c.send(&again).await.expect("send");
    // 64 MiB as fast as the socket takes it: far more than the linger
    // reads (256 KiB) and than loopback buffers hold, so the writes stop
    // with an error, not after all of it.
    let chunk = chatter(Version::V5, 64 * 1024);
    let mut sent = 0usize;
    while sent < 64 * 1024 * 1024 {
        if c.send(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(
        sent < 64 * 1024 * 1024,
        "the broker read {sent} bytes after the violation"
    );
}
