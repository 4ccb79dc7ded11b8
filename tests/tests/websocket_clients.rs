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
    broker.allow("alice", "publish,subscribe,receive", "web/#").await;
    broker
}

async fn acl_scenario(broker: &TestBroker, listener: &str, tls: bool) {
    let id = client_id(listener);
    let mut c = V5Client::start(v5_ws_options(broker, listener, tls, &id, "alice", "pw"));
    let ack = c.connack().await.expect("CONNACK over WebSocket");
    assert_eq!(ack.code, rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success);

    c.client
        .subscribe("web/news", QoS::AtLeastOnce)
        .await
        .unwrap();
    c.client
        .subscribe("secret/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut codes = Vec::new();
    while codes.len() < 2 {
        match c.wait_for(WAIT, |p| matches!(p, Packet::SubAck(_))).await {
            Ok(Packet::SubAck(s)) => codes.extend(s.return_codes),
            other => panic!("{listener}: SUBACK expected, got {other:?}"),
        }
    }
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::NotAuthorized
        ],
        "{listener}: the denied filter gets 0x87"
    );

    c.client
        .publish("web/news", QoS::AtLeastOnce, false, "over websocket")
        .await
        .unwrap();
    let got = c.next_publish(WAIT).await.expect("own message delivered");
    assert_eq!(&got.payload[..], b"over websocket");

    // A live revocation reaches the WebSocket session like a TCP one.
    broker.cli_ok(&["user", "disable", "alice"]).await;
    let ended = c
        .wait_for(Duration::from_secs(3), |p| matches!(p, Packet::Disconnect(_)))
        .await;
    match ended {
        Ok(Packet::Disconnect(d)) => assert_eq!(
            d.reason_code,
            rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::AdministrativeAction,
            "{listener}"
        ),
        other => panic!("{listener}: expected DISCONNECT 0x98, got {other:?}"),
    }
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
