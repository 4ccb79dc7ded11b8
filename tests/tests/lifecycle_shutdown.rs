//! SIGTERM and SIGINT stop the broker gracefully: the listeners close at
//! once, v5 clients get DISCONNECT 0x8B (server shutting down), and the
//! process exits 0 within `shutdown_grace` whatever the clients do.

use std::time::{Duration, Instant};

use warden_e2e::*;

async fn setup(opts: BrokerOptions) -> TestBroker {
    let broker = TestBroker::start(opts);
    broker.user_with_rights("alice", "pw", "t/#").await;
    broker
}

async fn stop_with(signal: &str) {
    let mut broker = setup(BrokerOptions::default()).await;
    let mut v5 = Vec::new();
    for _ in 0..2 {
        let mut c = broker
            .login(Version::V5, &client_id("v5"), "alice", "pw")
            .await;
        c.subscribe("t/#", 1).await;
        v5.push(c);
    }
    let mut v3 = broker
        .login(Version::V311, &client_id("v3"), "alice", "pw")
        .await;

    let asked = Instant::now();
    broker.signal(signal);
    for c in &mut v5 {
        let end = c.ending(WAIT).await;
        assert_eq!(end.disconnect_code(), Some(0x8B), "{signal}: {end:?}");
    }
    let end = v3.ending(WAIT).await;
    assert!(end.packets.is_empty(), "v3.1.1 has no DISCONNECT: {end:?}");
    let status = broker.wait_exit(WAIT).expect("exited");
    assert!(status.success(), "{signal}: exit status {status}");
    // Every client left at once: nothing near the 10 s grace was waited.
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let log = broker.log();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("stopped: every connection closed"), "{log}");
}

#[tokio::test]
async fn sigterm_tells_v5_clients_and_exits_0() {
    stop_with("TERM").await;
}

#[tokio::test]
async fn sigint_stops_the_same_way() {
    stop_with("INT").await;
}

/// Publishes large QoS 0 messages to `topic` until stopped; the broker may
/// pause reading from it (back-pressure), so this runs in its own task.
fn flood(mut publisher: RawClient, topic: &'static str) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let payload = vec![0x5Au8; 256 * 1024];
        let mut sent = 0;
        while publisher
            .publish(&Publish::new(topic, &payload, 0))
            .await
            .is_ok()
        {
            sent += 1;
        }
        sent
    })
}

/// A broker with `shutdown_grace` = `grace`, a subscriber that stopped
/// reading, and a flood of messages to it running in another task: the
/// broker's write to the subscriber blocks, and the publisher is paused.
async fn stuck_subscriber(grace: &str) -> (TestBroker, RawClient, tokio::task::JoinHandle<usize>) {
    let broker = setup(BrokerOptions {
        extra_yaml: format!("shutdown_grace: {grace}\n"),
        ..BrokerOptions::default()
    })
    .await;
    let mut stuck = broker
        .login(Version::V5, &client_id("stuck"), "alice", "pw")
        .await;
    stuck.subscribe("t/flood", 0).await;
    // From here on `stuck` reads nothing.
    let publisher = broker
        .login(Version::V5, &client_id("flood"), "alice", "pw")
        .await;
    let flooding = flood(publisher, "t/flood");
    // Far more than the socket buffers on both sides hold.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!flooding.is_finished(), "the flood still runs");
    (broker, stuck, flooding)
}

#[tokio::test]
async fn a_client_that_never_reads_cannot_hold_the_stop_past_the_grace() {
    let grace = Duration::from_secs(2);
    let (mut broker, stuck, flooding) = stuck_subscriber("2s").await;

    let asked = Instant::now();
    broker.signal("TERM");
    assert!(broker.wait_log("shutting down", WAIT).await);
    let tls = broker.tls_addr();
    let refused = async {
        while tokio::net::TcpStream::connect(tls).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(1), refused)
        .await
        .expect("the listener closes at once");

    let status = broker
        .wait_exit(grace + Duration::from_secs(3))
        .unwrap_or_else(|| panic!("still running {:?} after SIGTERM", asked.elapsed()));
    assert!(status.success(), "exit status {status}");
    // The stuck connection's goodbye is bounded (it cannot take the
    // DISCONNECT), so every connection ends inside the grace.
    let log = broker.log();
    assert!(
        log.contains("stopped: every connection closed"),
        "the stuck connection ended inside the grace:\n{log}"
    );
    flooding.abort();
    drop(stuck);
}

#[tokio::test]
async fn a_second_stop_signal_ends_the_wait_for_connections() {
    let (mut broker, stuck, flooding) = stuck_subscriber("1h").await;
    broker.signal("TERM");
    assert!(broker.wait_log("shutting down", WAIT).await);
    assert!(
        broker.wait_exit(QUIET).is_none(),
        "waiting for the stuck client"
    );
    broker.signal("TERM");
    let status = broker
        .wait_exit(Duration::from_secs(3))
        .expect("exits on the second signal");
    assert!(status.success(), "exit status {status}");
    assert!(
        broker.log().contains("second stop signal"),
        "{}",
        broker.log()
    );
    flooding.abort();
    drop(stuck);
}
