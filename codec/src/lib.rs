//! Strict MQTT 3.1, 3.1.1 and 5.0 packet codec. Pure: no I/O, no async.
//!
//! # Layout
//!
//! - [`types`]: the [`Packet`] enum and one struct per packet.
//! - [`properties`]: MQTT 5.0 [`Properties`] and their per-packet rules.
//! - [`error`]: [`CodecError`] and the 5.0 [`ReasonCode`]s it maps to.
//! - `wire`: variable-byte integers, strings, the bounds-checked reader.
//! - `header`: the fixed header, checked before any body byte is read.
//! - `decode_connect`, `decode_packets`: packet bodies, bytes to types.
//! - `encode`: types to bytes.
//!
//! Decoding never panics and never allocates more than the packet it
//! decodes, whose size is checked against `max_packet_size` from the fixed
//! header alone. A PUBLISH payload is a `Bytes` slice of the read buffer.

mod decode_connect;
mod decode_packets;
mod encode;
pub mod error;
mod header;
pub mod properties;
pub mod types;
mod wire;

use bytes::{Buf, BytesMut};

pub use error::{v3_return_code, CodecError, ReasonCode};
pub use properties::{Properties, PropertySet};
pub use types::{
    Auth, ConnAck, Connect, Disconnect, LastWill, Packet, ProtocolVersion, PubResp, Publish,
    PublishView, SubAck, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe,
};

/// The largest remaining length a fixed header can announce (256 MiB − 1).
pub const MAX_REMAINING_LENGTH: u32 = wire::MAX_VBI;

/// Decodes one packet from the front of `buf`.
///
/// `Ok(None)`: `buf` does not hold a whole packet yet; nothing is consumed.
/// `Ok(Some(_))`: exactly that packet's bytes were consumed.
/// `version` is `None` before CONNECT, when only CONNECT is accepted; after
/// it, pass the negotiated version (a second CONNECT is then a protocol
/// error). `max_packet_size` bounds the whole packet, fixed header included,
/// and is enforced before the body has arrived.
/// After an error the connection must be closed; `buf` may be partly consumed.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
) -> Result<Option<Packet>, CodecError> {
    let Some(header) = header::parse(buf, version)? else {
        return Ok(None);
    };
    let total = header.total_len();
    if total > u64::from(max_packet_size) {
        return Err(CodecError::PacketTooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    if (buf.len() as u64) < total {
        return Ok(None);
    }
    buf.advance(header.header_len);
    let body = buf.split_to(header.remaining as usize).freeze();
    let mut reader = wire::Reader::new(body);
    let packet = match version {
        None => decode_connect::connect(&mut reader)?,
        Some(version) => {
            decode_packets::body(header.packet_type, header.flags, &mut reader, version)?
        }
    };
    reader.finish()?;
    Ok(Some(packet))
}

/// Appends `packet` to `buf` in the wire format of `version` (CONNECT uses
/// its own `protocol` field). Properties and reason codes are dropped for
/// 3.x, and properties not allowed in the packet type are not written, so
/// one `Publish` can be sent to 3.x and 5.0 clients alike. On error nothing
/// is appended.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), CodecError> {
    let start = buf.len();
    let result = encode::packet(packet, version, buf);
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

/// Appends a PUBLISH given by its borrowed parts; the same bytes as
/// [`encode`] of the equivalent [`Packet::Publish`]. On error nothing is
/// appended.
pub fn encode_publish(
    publish: &PublishView<'_>,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), CodecError> {
    let start = buf.len();
    let result = encode::publish(publish, version, buf);
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

/// The number of bytes [`encode_publish`] appends.
pub fn publish_encoded_len(publish: &PublishView<'_>, version: ProtocolVersion) -> usize {
    encode::publish_total_len(publish, version)
}

/// The number of bytes [`encode`] appends for `packet`. Unspecified for a
/// packet that [`encode`] refuses.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let body = encode::body_len(packet, version);
    1 + wire::vbi_len(body) + body
}
