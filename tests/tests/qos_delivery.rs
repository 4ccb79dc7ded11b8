//! QoS 0, 1 and 2 end to end: the sender's and receiver's flows, QoS
//! downgrade to the subscription's QoS, receive-maximum flow control, and
//! rumqttc (3.1.1 and 5.0) as real clients.

use std::time::Duration;

use warden_e2e::clients::{v3_options, v5_options, V3Client, V5Client};
use warden_e2e::wire;
use warden_e2e::*;

async fn setup() -> TestBroker {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "q/#").await;
    broker
}

#[tokio::test]
async fn each_qos_is_delivered_at_the_lower_of_publish_and_subscription_qos() {
    let broker = setup().await;
    for version in [Version::V311, Version::V5] {
        let mut subs = Vec::new();
        for sub_qos in 0..=2u8 {
            let mut s = broker.login(version, &client_id("s"), "alice", "pw").await;
            assert_eq!(s.subscribe("q/#", sub_qos).await, sub_qos);
            subs.push((sub_qos, s));
        }
        let mut p = broker.login(version, &client_id("p"), "alice", "pw").await;
        for pub_qos in 0..=2u8 {
            let payload = format!("m{pub_qos}");
            assert_eq!(
                p.publish_acked(Publish::new("q/t", payload.as_bytes(), pub_qos))
                    .await,
                0
            );
            for (sub_qos, s) in subs.iter_mut() {
                let got = s.next_publish(WAIT).await.expect("delivered");
                assert_eq!(got.payload, payload.as_bytes(), "{version:?}");
                assert_eq!(
                    got.qos,
                    pub_qos.min(*sub_qos),
                    "{version:?} pub {pub_qos} sub {sub_qos}"
                );
                if got.qos > 0 {
                    assert_ne!(got.packet_id, 0, "QoS>0 carries a packet id");
                }
            }
        }
        for (_, s) in subs.iter_mut() {
            s.expect_no_publish(QUIET, "exactly once each").await;
        }
    }
}

#[tokio::test]
async fn qos2_redelivered_publish_with_same_id_is_not_duplicated() {
    let broker = setup().await;
    let mut s = broker
        .login(Version::V5, &client_id("s"), "alice", "pw")
        .await;
    s.subscribe("q/#", 2).await;
    let mut p = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    let mut m = Publish::new("q/once", b"x", 2);
    m.packet_id = 42;
    p.publish(&m).await.expect("send");
    p.expect("PUBREC", |i| {
        matches!(i, Incoming::PubRec { packet_id: 42, .. })
    })
    .await;
    m.dup = true;
    p.publish(&m).await.expect("resend with DUP");
    p.expect("PUBREC again", |i| {
        matches!(i, Incoming::PubRec { packet_id: 42, .. })
    })
    .await;
    p.send(&wire::encode_ack(0x62, 42)).await.expect("PUBREL");
    p.expect("PUBCOMP", |i| {
        matches!(i, Incoming::PubComp { packet_id: 42, .. })
    })
    .await;
    assert!(s.next_publish(WAIT).await.is_some(), "delivered once");
    s.expect_no_publish(QUIET, "QoS 2 is exactly once").await;
}

#[tokio::test]
async fn receive_maximum_limits_unacknowledged_deliveries() {
    let broker = setup().await;
    let mut c = Connect::new(Version::V5, &client_id("slow")).login("alice", "pw");
    c.props.0.push(Prop::U16(wire::RECEIVE_MAXIMUM, 2));
    let mut s = broker.login_with(c).await;
    s.auto_ack = false;
    s.subscribe("q/#", 1).await;
    let mut p = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    for i in 0..5u8 {
        p.publish_acked(Publish::new("q/flow", &[i], 1)).await;
    }
    let a = s.next_publish(WAIT).await.expect("first");
    let b = s.next_publish(WAIT).await.expect("second");
    s.expect_no_publish(QUIET, "receive maximum 2 reached")
        .await;
    s.ack(&a).await;
    s.ack(&b).await;
    let mut rest = Vec::new();
    while let Some(m) = s.next_publish(Duration::from_secs(2)).await {
        s.ack(&m).await;
        rest.push(m.payload[0]);
    }
    assert_eq!((a.payload[0], b.payload[0]), (0, 1));
    assert_eq!(rest, vec![2, 3, 4], "the rest, in order, after acks");
}

#[tokio::test]
async fn rumqttc_v311_qos_0_1_2_round_trip() {
    let broker = setup().await;
    let mut sub = V3Client::start(v3_options(&broker, &client_id("rs"), "alice", "pw"));
    sub.connack().await.expect("CONNACK");
    sub.client
        .subscribe("q/r3", rumqttc::QoS::ExactlyOnce)
        .await
        .expect("subscribe");
    sub.wait_for(WAIT, |p| matches!(p, rumqttc::Packet::SubAck(_)))
        .await
        .expect("SUBACK");
    let mut pubr = V3Client::start(v3_options(&broker, &client_id("rp"), "alice", "pw"));
    pubr.connack().await.expect("CONNACK");
    for qos in [
        rumqttc::QoS::AtMostOnce,
        rumqttc::QoS::AtLeastOnce,
        rumqttc::QoS::ExactlyOnce,
    ] {
        pubr.client
            .publish("q/r3", qos, false, format!("{qos:?}"))
            .await
            .expect("publish");
        let got = sub.next_publish(WAIT).await.expect("delivered");
        assert_eq!(
            (got.qos, got.payload.as_ref()),
            (qos, format!("{qos:?}").as_bytes())
        );
    }
}

#[tokio::test]
async fn rumqttc_v5_qos1_round_trip() {
    use rumqttc::v5::mqttbytes::QoS;
    let broker = setup().await;
    let mut sub = V5Client::start(v5_options(&broker, &client_id("rs"), "alice", "pw"));
    sub.connack().await.expect("CONNACK");
    sub.client
        .subscribe("q/r5", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let mut pubr = V5Client::start(v5_options(&broker, &client_id("rp"), "alice", "pw"));
    pubr.connack().await.expect("CONNACK");
    tokio::time::sleep(Duration::from_millis(300)).await;
    pubr.client
        .publish("q/r5", QoS::AtLeastOnce, false, "v5")
        .await
        .expect("publish");
    let got = sub.next_publish(WAIT).await.expect("delivered");
    assert_eq!(
        (got.qos, got.payload.as_ref()),
        (QoS::AtLeastOnce, &b"v5"[..])
    );
}

#[tokio::test]
async fn v5_pubrel_for_an_unknown_packet_id_gets_pubcomp_0x92() {
    let broker = setup().await;
    let mut c = broker
        .login(Version::V5, &client_id("c"), "alice", "pw")
        .await;
    c.send(&wire::encode_ack(0x62, 77)).await.expect("PUBREL");
    let got = c
        .expect("PUBCOMP", |i| matches!(i, Incoming::PubComp { .. }))
        .await;
    assert_eq!(
        got,
        Incoming::PubComp {
            packet_id: 77,
            code: 0x92
        }
    );
}

#[tokio::test]
async fn v5_exceeding_the_brokers_receive_maximum_gets_0x93() {
    let broker = setup().await;
    let mut c = broker
        .login(Version::V5, &client_id("c"), "alice", "pw")
        .await;
    // receive_maximum is 64 in the test config: 65 QoS 2 messages without
    // PUBREL leave 65 unfinished flows.
    for id in 1..=65u16 {
        let mut p = Publish::new("q/flood", b"x", 2);
        p.packet_id = id;
        c.publish(&p).await.expect("send");
    }
    let end = c.ending(WAIT).await;
    assert_eq!(
        end.disconnect_code(),
        Some(0x93),
        "Receive Maximum exceeded: {:?}",
        end.end
    );
}
