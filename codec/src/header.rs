//! The fixed header (§2.1): packet type, the flags each type requires, and
//! the remaining length. Checked before the body is read or buffered.

use crate::error::CodecError;
use crate::types::ProtocolVersion;
use crate::wire::{read_vbi, Vbi};

pub(crate) struct FixedHeader {
    pub packet_type: u8,
    pub flags: u8,
    pub remaining: u32,
    /// Bytes of the fixed header itself: 1 + the remaining-length bytes.
    pub header_len: usize,
}

impl FixedHeader {
    pub fn total_len(&self) -> u64 {
        self.header_len as u64 + u64::from(self.remaining)
    }
}

/// Parses the fixed header at the front of `buf` without consuming it.
/// `Ok(None)` when the header itself is incomplete.
pub(crate) fn parse(
    buf: &[u8],
    version: Option<ProtocolVersion>,
) -> Result<Option<FixedHeader>, CodecError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let packet_type = first >> 4;
    let flags = first & 0x0F;
    check_type(packet_type, version)?;
    check_flags(packet_type, flags)?;
    match read_vbi(rest)? {
        Vbi::Incomplete => Ok(None),
        Vbi::Value(remaining, len) => Ok(Some(FixedHeader {
            packet_type,
            flags,
            remaining,
            header_len: 1 + len,
        })),
    }
}

fn check_type(packet_type: u8, version: Option<ProtocolVersion>) -> Result<(), CodecError> {
    match (packet_type, version) {
        (0, _) => Err(CodecError::Malformed("reserved packet type 0")),
        (1, None) => Ok(()),
        (_, None) => Err(CodecError::Protocol("the first packet must be CONNECT")),
        (1, Some(_)) => Err(CodecError::Protocol("second CONNECT on a connection")),
        (15, Some(v)) if !v.is_v5() => Err(CodecError::Malformed(
            "reserved packet type 15 before MQTT 5.0",
        )),
        _ => Ok(()),
    }
}

/// §2.1.3: PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010, PUBLISH carries
/// DUP/QoS/RETAIN, every other type 0. Anything else is malformed.
fn check_flags(packet_type: u8, flags: u8) -> Result<(), CodecError> {
    match packet_type {
        3 => {
            let qos = (flags >> 1) & 0x03;
            if qos == 3 {
                return Err(CodecError::Malformed("PUBLISH with QoS 3"));
            }
            if qos == 0 && flags & 0x08 != 0 {
                return Err(CodecError::Malformed("PUBLISH with QoS 0 and DUP set"));
            }
            Ok(())
        }
        6 | 8 | 10 if flags != 0b0010 => Err(CodecError::Malformed(
            "reserved fixed header flags must be 0010",
        )),
        6 | 8 | 10 => Ok(()),
        _ if flags != 0 => Err(CodecError::Malformed(
            "reserved fixed header flags must be 0",
        )),
        _ => Ok(()),
    }
}
