//! CONNECT (§3.1): the only packet decoded before the version is known; it
//! names the version itself.

use crate::error::CodecError;
use crate::properties::{PropCtx, Properties};
use crate::types::{Connect, LastWill, Packet, ProtocolVersion};
use crate::wire::Reader;

/// Decodes the body of a CONNECT.
pub(crate) fn connect(r: &mut Reader) -> Result<Packet, CodecError> {
    let protocol = protocol(r)?;
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(CodecError::Malformed("CONNECT reserved flag set"));
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if will_qos == 3 {
        return Err(CodecError::Malformed("will QoS 3"));
    }
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(CodecError::Malformed(
            "will QoS or retain set without the will flag",
        ));
    }
    if password_flag && !username_flag && !protocol.is_v5() {
        return Err(CodecError::Malformed("password without user name"));
    }
    let keep_alive = r.u16()?;
    let properties = props(r, protocol, PropCtx::Connect)?;
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = props(r, protocol, PropCtx::Will)?;
        let topic = r.string()?;
        if topic.is_empty() || topic.contains(['+', '#']) {
            return Err(CodecError::Malformed(
                "will topic is not a valid topic name",
            ));
        }
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string()?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Packet::Connect(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    }))
}

/// Protocol name and level. An unknown pair is reported apart so the session
/// can answer with an "unsupported protocol version" CONNACK.
fn protocol(r: &mut Reader) -> Result<ProtocolVersion, CodecError> {
    let name = r.binary()?;
    let level = r.u8()?;
    match (&name[..], level) {
        (b"MQIsdp", 3) => Ok(ProtocolVersion::V31),
        (b"MQTT", 4) => Ok(ProtocolVersion::V311),
        (b"MQTT", 5) => Ok(ProtocolVersion::V5),
        _ => Err(CodecError::UnsupportedProtocol {
            name: String::from_utf8_lossy(&name).into_owned(),
            level,
        }),
    }
}

fn props(r: &mut Reader, version: ProtocolVersion, ctx: PropCtx) -> Result<Properties, CodecError> {
    if version.is_v5() {
        Properties::decode(r, ctx)
    } else {
        Ok(Properties::default())
    }
}
