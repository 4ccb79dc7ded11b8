//! Fuzz target: arbitrary bytes into the decoder, before CONNECT and for each
//! protocol version. Whatever decodes must re-encode to the bytes it took.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warden_codec::{decode, encode, encoded_len, Packet, ProtocolVersion};

const STATES: [Option<ProtocolVersion>; 4] = [
    None,
    Some(ProtocolVersion::V31),
    Some(ProtocolVersion::V311),
    Some(ProtocolVersion::V5),
];

fuzz_target!(|data: &[u8]| {
    for state in STATES {
        let mut buf = BytesMut::from(data);
        // Drain the buffer like a connection would, packet after packet.
        while let Ok(Some(packet)) = decode(&mut buf, state, 1 << 16) {
            let version = match (&packet, state) {
                (Packet::Connect(c), _) => c.protocol,
                (_, Some(v)) => v,
                (_, None) => panic!("non-CONNECT packet decoded before CONNECT"),
            };
            let mut out = BytesMut::new();
            if encode(&packet, version, &mut out).is_ok() {
                assert_eq!(out.len(), encoded_len(&packet, version));
                let mut again = out.clone();
                let state_again = if matches!(packet, Packet::Connect(_)) {
                    None
                } else {
                    Some(version)
                };
                assert_eq!(decode(&mut again, state_again, u32::MAX), Ok(Some(packet)));
            }
            if state.is_none() {
                break;
            }
        }
    }
});
