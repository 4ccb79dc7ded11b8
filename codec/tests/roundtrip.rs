//! Property tests: every packet type in every protocol version survives
//! encode → decode unchanged, partial input asks for more bytes, and
//! arbitrary or corrupted input never panics the decoder.

mod common;

use bytes::BytesMut;
use common::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use warden_codec::*;

fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(VERSIONS.to_vec())
}

fn will(v: ProtocolVersion) -> impl Strategy<Value = LastWill> {
    (
        topic(),
        binary(),
        0u8..=2,
        any::<bool>(),
        props(v, Ctx::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let head = (any::<bool>(), any::<u16>(), text(), option::of(will(v)));
    let creds = (option::of(text()), option::of(binary())).prop_map(move |(user, pass)| {
        // Before 5.0 a password needs a user name.
        let pass = if v.is_v5() || user.is_some() {
            pass
        } else {
            None
        };
        (user, pass)
    });
    (head, creds, props(v, Ctx::Connect)).prop_map(
        move |((clean_start, keep_alive, client_id, will), (username, password), properties)| {
            Packet::Connect(Connect {
                protocol: v,
                clean_start,
                keep_alive,
                client_id,
                will,
                username,
                password,
                properties,
            })
        },
    )
}

fn reason(v: ProtocolVersion, v5_codes: &'static [u8]) -> BoxedStrategy<u8> {
    if v.is_v5() {
        select(v5_codes).boxed()
    } else {
        Just(0).boxed()
    }
}

fn connack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let code = if v.is_v5() {
        select(&[0x00u8, 0x80, 0x84, 0x86, 0x87, 0x9F][..]).boxed()
    } else {
        (0u8..=5).boxed()
    };
    (any::<bool>(), code, props(v, Ctx::ConnAck)).prop_map(|(sp, code, properties)| {
        Packet::ConnAck(ConnAck {
            session_present: sp && code == 0,
            code,
            properties,
        })
    })
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let topic = if v.is_v5() {
        prop_oneof![topic(), Just(String::new())].boxed()
    } else {
        topic().boxed()
    };
    (
        any::<bool>(),
        0u8..=2,
        any::<bool>(),
        topic,
        1u16..,
        props(v, Ctx::Publish),
        binary(),
    )
        .prop_map(|(dup, qos, retain, topic, id, mut properties, payload)| {
            if topic.is_empty() && properties.topic_alias.is_none() {
                properties.topic_alias = Some(1);
            }
            Packet::Publish(Publish {
                dup: dup && qos > 0,
                qos,
                retain,
                topic,
                packet_id: (qos > 0).then_some(id),
                properties,
                payload,
            })
        })
}

fn pub_resp(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let ack = (
        1u16..,
        reason(v, &[0x00, 0x10, 0x80, 0x87, 0x99]),
        props(v, Ctx::PubResp),
    );
    let rel = (1u16.., reason(v, &[0x00, 0x92]), props(v, Ctx::PubResp));
    let to = |(packet_id, reason, properties)| PubResp {
        packet_id,
        reason,
        properties,
    };
    prop_oneof![
        ack.clone().prop_map(move |a| Packet::PubAck(to(a))),
        ack.prop_map(move |a| Packet::PubRec(to(a))),
        rel.clone().prop_map(move |a| Packet::PubRel(to(a))),
        rel.prop_map(move |a| Packet::PubComp(to(a))),
    ]
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v.is_v5();
    let one = (filter(), 0u8..=2, any::<bool>(), any::<bool>(), 0u8..=2).prop_map(
        move |(filter, qos, nl, rap, rh)| SubscribeFilter {
            filter,
            qos,
            no_local: nl && v5,
            retain_as_published: rap && v5,
            retain_handling: if v5 { rh } else { 0 },
        },
    );
    (1u16.., vec(one, 1..4), props(v, Ctx::Subscribe)).prop_map(
        |(packet_id, filters, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        },
    )
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let code = if v.is_v5() {
        select(&[0x00u8, 0x01, 0x02, 0x80, 0x87, 0x8F, 0xA2][..]).boxed()
    } else {
        select(&[0u8, 1, 2, 0x80][..]).boxed()
    };
    (1u16.., vec(code, 1..4), props(v, Ctx::SubAck)).prop_map(|(packet_id, codes, properties)| {
        Packet::SubAck(SubAck {
            packet_id,
            codes,
            properties,
        })
    })
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (1u16.., vec(filter(), 1..4), props(v, Ctx::Unsubscribe)).prop_map(
        |(packet_id, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        },
    )
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if v.is_v5() {
        vec(select(&[0x00u8, 0x11, 0x80, 0x87][..]), 1..4).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (1u16.., codes, props(v, Ctx::UnsubAck)).prop_map(|(packet_id, codes, properties)| {
        Packet::UnsubAck(UnsubAck {
            packet_id,
            codes,
            properties,
        })
    })
}

fn disconnect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        reason(v, &[0x00, 0x04, 0x81, 0x8E, 0x95]),
        props(v, Ctx::Disconnect),
    )
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        select(&[0x00u8, 0x18, 0x19][..]),
        props(ProtocolVersion::V5, Ctx::Auth),
    )
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        pub_resp(v),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        disconnect(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
    ];
    if v.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| packet(v).prop_map(move |p| (v, p)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_decode_is_identity((v, packet) in versioned_packet()) {
        let mut buf = encode_checked(&packet, v);
        let decoded = decode_as_server(&mut buf, v);
        prop_assert_eq!(decoded, Ok(Some(packet)));
        prop_assert!(buf.is_empty(), "bytes left over");
    }

    #[test]
    fn encode_publish_writes_what_encode_writes(
        (v, packet) in version().prop_flat_map(|v| publish(v).prop_map(move |p| (v, p)))
    ) {
        let Packet::Publish(p) = &packet else { unreachable!("publish strategy") };
        let mut by_view = BytesMut::new();
        warden_codec::encode_publish(&p.view(), v, &mut by_view).expect("encode_publish");
        prop_assert_eq!(&by_view[..], &encode_checked(&packet, v)[..]);
        prop_assert_eq!(warden_codec::publish_encoded_len(&p.view(), v), by_view.len());
    }

    #[test]
    fn every_strict_prefix_needs_more((v, packet) in versioned_packet()) {
        let full = encode_checked(&packet, v);
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            prop_assert_eq!(decode_as_server(&mut part, v), Ok(None), "prefix of {} bytes", cut);
            prop_assert_eq!(part.len(), cut, "a partial packet was consumed");
        }
    }

    #[test]
    fn two_packets_in_one_buffer_decode_in_order((v, a) in versioned_packet(), b in any::<u16>()) {
        let second = Packet::PubAck(PubResp { packet_id: b.max(1), reason: 0, properties: Properties::default() });
        let mut buf = encode_checked(&a, v);
        buf.extend_from_slice(&encode_checked(&second, v));
        prop_assert_eq!(decode_as_server(&mut buf, v), Ok(Some(a)));
        prop_assert_eq!(decode(&mut buf, Some(v), u32::MAX), Ok(Some(second)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300), v in version()) {
        for state in [None, Some(v)] {
            let mut buf = BytesMut::from(&bytes[..]);
            let before = buf.len();
            if let Ok(Some(packet)) = decode(&mut buf, state, 1 << 20) {
                // Whatever decodes must account for exactly the bytes it took.
                let pv = match &packet { Packet::Connect(c) => c.protocol, _ => v };
                prop_assert_eq!(before - buf.len(), encoded_len(&packet, pv));
            }
        }
    }

    #[test]
    fn corrupted_packets_never_panic((v, packet) in versioned_packet(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut buf = encode_checked(&packet, v);
        let i = at.index(buf.len());
        buf[i] = byte;
        let _ = decode_as_server(&mut buf, v);
    }

    #[test]
    fn too_large_is_refused_from_the_header((v, packet) in versioned_packet()) {
        let full = encode_checked(&packet, v);
        let limit = u32::try_from(full.len() - 1).unwrap_or(u32::MAX);
        // Only the fixed header is present: the size check must not wait for the body.
        let header_len = 1 + full[1..].iter().position(|b| b & 0x80 == 0).map_or(0, |p| p + 1);
        let expected = Err(CodecError::PacketTooLarge { size: full.len() as u64, max: limit });
        prop_assert_eq!(decode_limit(&full[..header_len], v, limit), expected);
    }
}

fn decode_limit(
    bytes: &[u8],
    v: ProtocolVersion,
    limit: u32,
) -> Result<Option<Packet>, CodecError> {
    let mut buf = BytesMut::from(bytes);
    let state = if bytes.first().is_some_and(|b| b >> 4 == 1) {
        None
    } else {
        Some(v)
    };
    decode(&mut buf, state, limit)
}

#[test]
fn publish_payload_is_not_copied() {
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: 1,
        retain: false,
        topic: "a/b".into(),
        packet_id: Some(7),
        properties: Properties::default(),
        payload: bytes::Bytes::from_static(&[42; 64]),
    });
    let mut buf = encode_checked(&packet, ProtocolVersion::V311);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Ok(Some(Packet::Publish(p))) = decode(&mut buf, Some(ProtocolVersion::V311), 1024) else {
        panic!("PUBLISH did not decode");
    };
    assert!(
        range.contains(&(p.payload.as_ptr() as usize)),
        "payload was copied out of the read buffer"
    );
}

#[test]
fn properties_the_packet_or_version_cannot_carry_are_not_written() {
    let properties = Properties::from(PropertySet {
        session_expiry_interval: Some(5), // not allowed in PUBLISH
        message_expiry_interval: Some(9),
        ..PropertySet::default()
    });
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: 0,
        retain: true,
        topic: "t".into(),
        packet_id: None,
        properties,
        payload: bytes::Bytes::from_static(b"x"),
    });
    let mut v5 = encode_checked(&packet, ProtocolVersion::V5);
    let Ok(Some(Packet::Publish(p))) = decode(&mut v5, Some(ProtocolVersion::V5), 1024) else {
        panic!("5.0 PUBLISH did not decode");
    };
    assert_eq!(
        p.properties,
        Properties::from(PropertySet {
            message_expiry_interval: Some(9),
            ..PropertySet::default()
        })
    );
    let mut v3 = encode_checked(&packet, ProtocolVersion::V311);
    assert_eq!(&v3[..], &[0x31, 4, 0, 1, b't', b'x']);
    let Ok(Some(Packet::Publish(p))) = decode(&mut v3, Some(ProtocolVersion::V311), 1024) else {
        panic!("3.1.1 PUBLISH did not decode");
    };
    assert!(p.properties.is_empty());
}

#[test]
fn encode_refuses_what_a_receiver_must_reject() {
    let base = Publish {
        dup: false,
        qos: 1,
        retain: false,
        topic: "t".into(),
        packet_id: None,
        properties: Properties::default(),
        payload: bytes::Bytes::new(),
    };
    let mut buf = BytesMut::from(&b"keep"[..]);
    let bad = [
        Publish {
            qos: 3,
            packet_id: Some(1),
            ..base.clone()
        },
        base.clone(),
        Publish {
            qos: 0,
            dup: true,
            ..base.clone()
        },
        Publish {
            qos: 0,
            packet_id: Some(1),
            ..base.clone()
        },
        Publish {
            topic: "x".repeat(70_000),
            packet_id: Some(1),
            ..base
        },
    ];
    for p in bad {
        let result = encode(&Packet::Publish(p.clone()), ProtocolVersion::V5, &mut buf);
        assert!(
            matches!(result, Err(CodecError::Encode(_))),
            "{p:?} gave {result:?}"
        );
        assert_eq!(&buf[..], b"keep", "a refused packet left bytes behind");
    }
    let auth = Packet::Auth(Auth {
        reason: 0,
        properties: Properties::default(),
    });
    assert!(encode(&auth, ProtocolVersion::V311, &mut buf).is_err());
}
