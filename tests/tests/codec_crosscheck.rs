//! `warden-codec` against the tests' own spec-based packet code: the codec's
//! encoder gives the same bytes as `wire`, and the codec decodes every packet
//! a running broker sent to a raw client, agreeing with `wire_decode`.

use bytes::{Bytes, BytesMut};
use warden_codec::{Packet, Properties, ProtocolVersion};
use warden_e2e::wire::{self, SUBSCRIPTION_ID};
use warden_e2e::*;

fn codec_bytes(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    warden_codec::encode(p, v, &mut buf).expect("codec encodes");
    assert_eq!(
        buf.len(),
        warden_codec::encoded_len(p, v),
        "encoded_len agrees"
    );
    buf.to_vec()
}

#[test]
fn codec_encoder_matches_the_spec_encoder() {
    for (ours, version) in [
        (Version::V311, ProtocolVersion::V311),
        (Version::V5, ProtocolVersion::V5),
    ] {
        let mut c = Connect::new(ours, "cid").login("user", "pw");
        c.keep_alive = 30;
        c.will = Some(Will {
            topic: "w/t".into(),
            payload: b"bye".to_vec(),
            qos: 1,
            retain: true,
            ..Will::default()
        });
        let theirs = Packet::Connect(warden_codec::Connect {
            protocol: version,
            clean_start: true,
            keep_alive: 30,
            client_id: "cid".into(),
            will: Some(warden_codec::LastWill {
                topic: "w/t".into(),
                payload: Bytes::from_static(b"bye"),
                qos: 1,
                retain: true,
                properties: Properties::default(),
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"pw")),
            properties: Properties::default(),
        });
        assert_eq!(
            codec_bytes(&theirs, version),
            wire::encode_connect(&c),
            "CONNECT {ours:?}"
        );

        let mut p = Publish::new("a/b", b"payload", 1);
        p.packet_id = 258;
        p.retain = true;
        let mut props = Properties::default();
        if ours == Version::V5 {
            p.props.0.push(Prop::Pair("k".into(), "v".into()));
            props.user_properties = vec![("k".into(), "v".into())];
        }
        let theirs = Packet::Publish(warden_codec::Publish {
            dup: false,
            qos: 1,
            retain: true,
            topic: "a/b".into(),
            packet_id: Some(258),
            properties: props,
            payload: Bytes::from_static(b"payload"),
        });
        assert_eq!(
            codec_bytes(&theirs, version),
            wire::encode_publish(&p, ours),
            "PUBLISH {ours:?}"
        );
    }
}

#[test]
fn codec_decodes_what_the_spec_encoder_writes() {
    let mut sub = Sub::new("a/+", 2);
    sub.no_local = true;
    sub.retain_handling = 2;
    let bytes = wire::encode_subscribe(
        7,
        &[sub],
        &Props(vec![Prop::VarInt(SUBSCRIPTION_ID, 9)]),
        Version::V5,
    );
    let mut buf = BytesMut::from(&bytes[..]);
    let decoded = warden_codec::decode(&mut buf, Some(ProtocolVersion::V5), 1 << 20)
        .expect("valid SUBSCRIBE")
        .expect("whole packet");
    let Packet::Subscribe(s) = decoded else {
        panic!("not SUBSCRIBE: {decoded:?}")
    };
    assert_eq!(s.packet_id, 7);
    assert_eq!(s.properties.subscription_identifiers, vec![9]);
    let f = &s.filters[0];
    assert_eq!(
        (
            f.filter.as_str(),
            f.qos,
            f.no_local,
            f.retain_as_published,
            f.retain_handling
        ),
        ("a/+", 2, true, false, 2)
    );
    assert!(buf.is_empty());
}

#[tokio::test]
async fn codec_decodes_every_packet_the_broker_sent() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "cc/#").await;
    let id = client_id("cc");
    let mut c = broker.raw().await;
    c.transcript = Some(Vec::new());
    c.connect(&Connect::new(Version::V5, &id).login("alice", "pw"))
        .await
        .expect("CONNACK");
    c.subscribe_with(
        1,
        &[Sub::new("cc/#", 2)],
        &Props(vec![Prop::VarInt(SUBSCRIPTION_ID, 5)]),
    )
    .await;
    let mut m = Publish::new("cc/x", b"hello", 1);
    m.props.0.push(Prop::Pair("a".into(), "b".into()));
    c.publish_acked(m).await;
    c.next_publish(WAIT).await.expect("own message");
    c.publish_acked(Publish::new("cc/y", b"q2", 2)).await;
    c.next_publish(WAIT).await.expect("own QoS 2 message");
    c.send(&wire::encode_pingreq()).await.expect("ping");
    c.expect("PINGRESP", |i| *i == Incoming::PingResp).await;
    let _new = broker.login(Version::V5, &id, "alice", "pw").await;
    c.ending(WAIT).await;

    let transcript = c.transcript.take().expect("transcript");
    let mut ours = Vec::new();
    let mut buf = BytesMut::from(&transcript[..]);
    while let Some((first, body)) = warden_e2e::wire_decode::split_frame(&mut buf).expect("frame") {
        ours.push(warden_e2e::wire_decode::decode(first, body, Version::V5).expect("spec decode"));
    }
    let mut theirs = Vec::new();
    let mut buf = BytesMut::from(&transcript[..]);
    while let Some(p) = warden_codec::decode(&mut buf, Some(ProtocolVersion::V5), 1 << 20)
        .unwrap_or_else(|e| panic!("codec rejects broker output after {theirs:?}: {e:?}"))
    {
        theirs.push(p);
    }
    assert!(buf.is_empty(), "codec left {} bytes", buf.len());
    assert_eq!(ours.len(), theirs.len(), "ours {ours:?}\ntheirs {theirs:?}");
    for (a, b) in ours.iter().zip(&theirs) {
        let same_kind = matches!(
            (a, b),
            (Incoming::ConnAck { .. }, Packet::ConnAck(_))
                | (Incoming::SubAck { .. }, Packet::SubAck(_))
                | (Incoming::Publish(_), Packet::Publish(_))
                | (Incoming::PubAck { .. }, Packet::PubAck(_))
                | (Incoming::PubRec { .. }, Packet::PubRec(_))
                | (Incoming::PubRel { .. }, Packet::PubRel(_))
                | (Incoming::PubComp { .. }, Packet::PubComp(_))
                | (Incoming::PingResp, Packet::PingResp)
                | (Incoming::Disconnect { .. }, Packet::Disconnect(_))
        );
        assert!(same_kind, "ours {a:?} vs codec {b:?}");
    }
}
