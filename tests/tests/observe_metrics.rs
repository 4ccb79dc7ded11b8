//! `/metrics` counts exactly what happened: scraped before and after a
//! scenario (two logins, a failed login, QoS 0/1/2 publishes delivered to a
//! subscriber, a denied publish and a denied subscribe), the counter deltas
//! are asserted one by one. `/health` and `/ready` answer (issue 13).

use std::time::Duration;

use warden_e2e::http::{get, scrape, value};
use warden_e2e::*;

fn delta(
    before: &std::collections::HashMap<String, f64>,
    after: &std::collections::HashMap<String, f64>,
    key: &str,
) -> f64 {
    value(after, key) - value(before, key)
}

#[tokio::test]
async fn counters_move_by_exactly_what_the_scenario_did() {
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        ..BrokerOptions::default()
    });
    let m = broker.addr("metrics");
    broker.user_with_rights("alice", "pw", "data/#").await;
    let before = scrape(m).await;

    let mut sub = broker
        .login(Version::V5, &client_id("sub"), "alice", "pw")
        .await;
    assert_eq!(sub.subscribe("data/#", 2).await, 2);
    // Denied: no rule for it.
    assert_eq!(sub.subscribe("secret/#", 1).await, 0x87);
    let mut publ = broker
        .login(Version::V311, &client_id("pub"), "alice", "pw")
        .await;
    let (_, _, code) = warden_e2e::sessions::try_connect(
        &broker,
        &Connect::new(Version::V5, &client_id("bad")).login("alice", "wrong"),
    )
    .await;
    assert_eq!(code, 0x86);

    for (qos, n) in [(0u8, 3usize), (1, 2), (2, 1)] {
        for i in 0..n {
            let p = Publish::new(&format!("data/{qos}"), format!("m{i}").as_bytes(), qos);
            assert_eq!(publ.publish_acked(p).await, 0);
        }
    }
    // Denied publish (QoS 1, v3.1.1: acknowledged, dropped).
    assert_eq!(publ.publish_acked(Publish::new("other", b"x", 1)).await, 0);
    let got = warden_e2e::sessions::drain(&mut sub, Duration::from_millis(500)).await;
    assert_eq!(got.len(), 6, "{got:?}");

    let after = scrape(m).await;
    let d = |k: &str| delta(&before, &after, k);
    assert_eq!(d("warden_messages_received_total{qos=\"0\"}"), 3.0);
    assert_eq!(d("warden_messages_received_total{qos=\"1\"}"), 3.0);
    assert_eq!(d("warden_messages_received_total{qos=\"2\"}"), 1.0);
    assert_eq!(d("warden_received_payload_bytes_total{qos=\"1\"}"), 5.0);
    assert_eq!(d("warden_messages_sent_total{qos=\"0\"}"), 3.0);
    assert_eq!(d("warden_messages_sent_total{qos=\"1\"}"), 2.0);
    assert_eq!(d("warden_messages_sent_total{qos=\"2\"}"), 1.0);
    assert_eq!(d("warden_sent_payload_bytes_total{qos=\"0\"}"), 6.0);
    assert_eq!(
        d("warden_connections_accepted_total{listener=\"tls\",protocol=\"5\"}"),
        1.0
    );
    assert_eq!(
        d("warden_connections_accepted_total{listener=\"tls\",protocol=\"3.1.1\"}"),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "warden_connections{listener=\"tls\",protocol=\"5\"}"
        ),
        1.0
    );
    assert_eq!(
        d("warden_authentications_total{result=\"success\",reason=\"ok\"}"),
        2.0
    );
    assert_eq!(
        d("warden_authentications_total{result=\"failure\",reason=\"bad_credentials\"}"),
        1.0
    );
    assert_eq!(
        d("warden_decisions_total{action=\"publish\",verdict=\"allow\"}"),
        6.0
    );
    assert_eq!(
        d("warden_decisions_total{action=\"publish\",verdict=\"deny\"}"),
        1.0
    );
    assert_eq!(
        d("warden_decisions_total{action=\"subscribe\",verdict=\"allow\"}"),
        1.0
    );
    assert_eq!(
        d("warden_decisions_total{action=\"subscribe\",verdict=\"deny\"}"),
        1.0
    );
    assert_eq!(
        d("warden_decisions_total{action=\"receive\",verdict=\"allow\"}"),
        6.0
    );
    assert_eq!(d("warden_deny_rule_hits_total{rule=\"none\"}"), 2.0);
    assert_eq!(value(&after, "warden_subscriptions"), 1.0);
    assert_eq!(value(&after, "warden_sessions{state=\"online\"}"), 2.0);
    assert_eq!(
        value(&after, "warden_store_up{backend=\"sqlite\"}"),
        1.0,
        "store up"
    );
    assert!(
        value(
            &after,
            "warden_store_call_duration_seconds_count{backend=\"sqlite\",operation=\"user\"}"
        ) >= 1.0
    );

    assert_eq!(get(m, "/health", None).await.status, 200);
    let ready = get(m, "/ready", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
}

#[tokio::test]
async fn a_failed_tls_handshake_is_counted_by_reason() {
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        ..BrokerOptions::default()
    });
    let m = broker.addr("metrics");
    let before = scrape(m).await;
    // Not TLS at all: an MQTT CONNECT in the clear to the TLS port.
    let mut tcp = RawClient::tcp(broker.tls_addr()).await.expect("tcp");
    let _ = tcp
        .connect(&Connect::new(Version::V5, "clear").login("a", "b"))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = scrape(m).await;
    let key = "warden_tls_handshake_failures_total{reason=\"protocol\"}";
    assert_eq!(delta(&before, &after, key), 1.0, "{after:?}");
}
