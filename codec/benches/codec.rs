//! Decode and encode of a PUBLISH (QoS 1, 64-byte payload) in MQTT 3.1.1 and
//! 5.0; the 5.0 packet carries a message expiry and a user property.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use warden_codec::{
    decode, encode, encoded_len, Packet, Properties, PropertySet, ProtocolVersion, Publish,
};

fn publish(v5: bool) -> Packet {
    let properties = if v5 {
        Properties::from(PropertySet {
            message_expiry_interval: Some(60),
            user_properties: vec![("trace".into(), "abc123".into())],
            ..PropertySet::default()
        })
    } else {
        Properties::default()
    };
    Packet::Publish(Publish {
        dup: false,
        qos: 1,
        retain: false,
        topic: "site/42/sensors/temperature".into(),
        packet_id: Some(17),
        properties,
        payload: Bytes::from(vec![0xA5; 64]),
    })
}

fn bench(c: &mut Criterion) {
    for (name, version) in [("v311", ProtocolVersion::V311), ("v5", ProtocolVersion::V5)] {
        let packet = publish(version.is_v5());
        let mut wire = BytesMut::new();
        if let Err(e) = encode(&packet, version, &mut wire) {
            panic!("bench packet does not encode: {e}");
        }
        let wire = wire.freeze();
        let mut group = c.benchmark_group(format!("publish_64b_{name}"));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function("decode", |b| {
            // The copy into a fresh read buffer is setup, not measured.
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| black_box(decode(buf, Some(version), 1 << 20)),
                BatchSize::SmallInput,
            )
        });
        let mut out = BytesMut::with_capacity(encoded_len(&packet, version) * 2);
        group.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                black_box(encode(black_box(&packet), version, &mut out))
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
