//! MQTT over WebSocket with a real WebSocket MQTT client (rumqttc's
//! websocket transport, MQTT 5.0) on the ws and wss listeners: the same
//! authorization scenario as over TCP (allowed publish and subscribe, a
//! denied subscribe answered 0x87, a live revocation), and mutual TLS over
//! wss, where the certificate's CN is the username.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use warden_e2e::clients::{v5_ws_options, V5Client};
use warden_e2e::ws::{self, Upgrade};
use warden_e2e::*;

async fn broker() -> TestBroker {
    let broker = TestBroker::start(BrokerOptions {
        websockets: true,
        ..Default::default()
    });
    broker.add_user("alice", "pw", &[]).await;
    broker
        .allow("alice", "publish,subscribe,receive", "web/#")
        .await;
    broker
}

async fn acl_scenario(broker: &TestBroker, listener: &str, tls: bool) {
    let id = client_id(listener);
    let mut c = V5Client::start(v5_ws_options(broker, listener, tls, &id, "alice", "pw"));
    let ack = c.connack().await.expect("CONNACK over WebSocket");
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );

    c.client
        .subscribe("web/news", QoS::AtLeastOnce)
        .await
        .unwrap();
    match c.wait_for(WAIT, |p| matches!(p, Packet::SubAck(_))).await {
        Ok(Packet::SubAck(s)) => assert_eq!(
            s.return_codes,
            [SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            "{listener}"
        ),
        other => panic!("{listener}: SUBACK expected, got {other:?}"),
    }

    // rumqttc ends its event loop on a refused filter, reporting the
    // reason code (0x87, not authorized): a client of its own.
    let mut denied = V5Client::start(v5_ws_options(
        broker,
        listener,
        tls,
        &client_id(listener),
        "alice",
        "pw",
    ));
    denied.connack().await.expect("CONNACK");
    denied
        .client
        .subscribe("secret/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let refused = denied
        .wait_for(WAIT, |p| matches!(p, Packet::SubAck(_)))
        .await;
    assert_eq!(
        refused.map(|_| ()),
        Err("MqttState(SubFail { reason: NotAuthorized })".to_owned()),
        "{listener}: the denied filter gets 0x87"
    );

    c.client
        .publish("web/news", QoS::AtLeastOnce, false, "over websocket")
        .await
        .unwrap();
    let got = c.next_publish(WAIT).await.expect("own message delivered");
    assert_eq!(&got.payload[..], b"over websocket");

    // A live revocation reaches a WebSocket session like a TCP one: the
    // raw client reads the exact DISCONNECT (0x98, administrative action).
    let mut up = Upgrade::mqtt();
    if tls {
        up = up.tls(raw::tls_config(broker.ca_pem(), None));
    }
    let mut r = ws::raw(broker.addr(listener), &up).await.expect("upgrade");
    let (_, code, _) = r
        .connect(&Connect::new(Version::V5, &client_id(listener)).login("alice", "pw"))
        .await
        .expect("CONNACK");
    assert_eq!(code, 0);
    broker.cli_ok(&["user", "disable", "alice"]).await;
    let ending = r.ending(Duration::from_secs(3)).await;
    assert_eq!(
        ending.disconnect_code(),
        Some(0x98),
        "{listener}: {ending:?}"
    );
    // rumqttc's session is ended as well.
    let end = c.wait_for(Duration::from_secs(3), |_| false).await;
    assert_ne!(
        end,
        Err("timeout".to_owned()),
        "{listener}: rumqttc still connected"
    );
    broker.cli_ok(&["user", "enable", "alice"]).await;
}

#[tokio::test]
async fn rumqttc_over_ws_and_wss_follows_the_rules() {
    let broker = broker().await;
    acl_scenario(&broker, "ws", false).await;
    acl_scenario(&broker, "wss", true).await;
}

#[tokio::test]
async fn wss_with_a_client_certificate_maps_the_cn() {
    let broker = broker().await;
    broker.add_user_no_password("devicews").await;
    broker.allow("devicews", "publish", "dev/#").await;
    let cert = broker.pki.client("devicews");
    let up = Upgrade::mqtt().tls(raw::tls_config(broker.ca_pem(), Some(&cert)));
    let mut c = ws::raw(broker.addr("wss-mtls"), &up)
        .await
        .expect("wss upgrade");
    c.version = Version::V5;
    let (_, code, _) = c
        .connect(&Connect::new(Version::V5, &client_id("m")))
        .await
        .expect("CONNACK");
    assert_eq!(code, 0, "certificate identity logs in without a password");
    assert_eq!(c.publish_acked(Publish::new("dev/a", b"x", 1)).await, 0);
    assert_eq!(c.publish_acked(Publish::new("web/a", b"x", 1)).await, 0x87);

    // Without a certificate the TLS handshake itself is refused.
    let up = Upgrade::mqtt().tls(raw::tls_config(broker.ca_pem(), None));
    assert!(ws::connect(broker.addr("wss-mtls"), &up).await.is_err());
    assert!(
        broker
            .wait_log("handshake failed: TLS", Duration::from_secs(3))
            .await,
        "a refused handshake is logged at INFO:\n{}",
        broker.log()
    );
}
