//! Bodies of every packet after CONNECT, for a known protocol version.

use crate::error::CodecError;
use crate::properties::{PropCtx, Properties};
use crate::types::{
    Auth, ConnAck, Disconnect, Packet, ProtocolVersion, PubResp, Publish, SubAck, Subscribe,
    SubscribeFilter, UnsubAck, Unsubscribe,
};
use crate::wire::Reader;

/// Decodes the body of a packet whose fixed header has already been checked.
pub(crate) fn body(
    packet_type: u8,
    flags: u8,
    r: &mut Reader,
    v: ProtocolVersion,
) -> Result<Packet, CodecError> {
    Ok(match packet_type {
        2 => Packet::ConnAck(connack(r, v)?),
        3 => Packet::Publish(publish(flags, r, v)?),
        4 => Packet::PubAck(pub_resp(r, v, PUBACK_CODES)?),
        5 => Packet::PubRec(pub_resp(r, v, PUBACK_CODES)?),
        6 => Packet::PubRel(pub_resp(r, v, PUBREL_CODES)?),
        7 => Packet::PubComp(pub_resp(r, v, PUBREL_CODES)?),
        8 => Packet::Subscribe(subscribe(r, v)?),
        9 => Packet::SubAck(suback(r, v)?),
        10 => Packet::Unsubscribe(unsubscribe(r, v)?),
        11 => Packet::UnsubAck(unsuback(r, v)?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect(disconnect(r, v)?),
        15 => Packet::Auth(auth(r)?),
        _ => return Err(CodecError::Protocol("unexpected packet type")),
    })
}

// Reason codes each 5.0 packet may carry (§2.4 and each packet's section).
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_CODES: &[u8] = &[0x00, 0x92];
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];
const V3_CONNACK_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x03, 0x04, 0x05];
const V3_SUBACK_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];

fn reason(r: &mut Reader, valid: &[u8]) -> Result<u8, CodecError> {
    let code = r.u8()?;
    if valid.contains(&code) {
        Ok(code)
    } else {
        Err(CodecError::Malformed(
            "reason code not valid for this packet",
        ))
    }
}

fn packet_id(r: &mut Reader) -> Result<u16, CodecError> {
    match r.u16()? {
        0 => Err(CodecError::Protocol("packet identifier 0")),
        id => Ok(id),
    }
}

fn props(r: &mut Reader, v: ProtocolVersion, ctx: PropCtx) -> Result<Properties, CodecError> {
    if v.is_v5() {
        Properties::decode(r, ctx)
    } else {
        Ok(Properties::default())
    }
}

fn connack(r: &mut Reader, v: ProtocolVersion) -> Result<ConnAck, CodecError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(CodecError::Malformed("CONNACK reserved flags set"));
    }
    let session_present = flags & 0x01 != 0;
    let code = reason(
        r,
        if v.is_v5() {
            CONNACK_CODES
        } else {
            V3_CONNACK_CODES
        },
    )?;
    if session_present && code != 0 {
        return Err(CodecError::Protocol(
            "session present with a refused connection",
        ));
    }
    let properties = props(r, v, PropCtx::ConnAck)?;
    Ok(ConnAck {
        session_present,
        code,
        properties,
    })
}

fn publish(flags: u8, r: &mut Reader, v: ProtocolVersion) -> Result<Publish, CodecError> {
    let qos = (flags >> 1) & 0x03;
    let (topic, wildcard) = r.topic_name()?;
    let packet_id = if qos > 0 { Some(packet_id(r)?) } else { None };
    let properties = props(r, v, PropCtx::Publish)?;
    if wildcard {
        return Err(CodecError::Malformed("wildcard in a PUBLISH topic name"));
    }
    if topic.is_empty() {
        if !v.is_v5() {
            return Err(CodecError::Malformed("empty topic name"));
        }
        if properties.topic_alias.is_none() {
            return Err(CodecError::Protocol(
                "empty topic name without a topic alias",
            ));
        }
    }
    Ok(Publish {
        dup: flags & 0x08 != 0,
        qos,
        retain: flags & 0x01 != 0,
        topic,
        packet_id,
        properties,
        payload: r.rest(),
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP. In 5.0 the reason code and properties
/// may be left out (§3.4.2.1): remaining length 2 means success.
fn pub_resp(r: &mut Reader, v: ProtocolVersion, valid: &[u8]) -> Result<PubResp, CodecError> {
    let packet_id = packet_id(r)?;
    let mut resp = PubResp {
        packet_id,
        reason: 0,
        properties: Properties::default(),
    };
    if v.is_v5() && !r.is_empty() {
        resp.reason = reason(r, valid)?;
        if !r.is_empty() {
            resp.properties = Properties::decode(r, PropCtx::PubResp)?;
        }
    }
    Ok(resp)
}

fn subscribe(r: &mut Reader, v: ProtocolVersion) -> Result<Subscribe, CodecError> {
    let packet_id = packet_id(r)?;
    let properties = props(r, v, PropCtx::Subscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = r.u8()?;
        filters.push(subscribe_options(filter, options, v)?);
    }
    if filters.is_empty() {
        return Err(CodecError::Protocol("SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

/// §3.8.3.1: reserved bits are malformed; QoS 3, retain handling 3 and
/// No Local on a shared subscription are protocol errors in 5.0.
fn subscribe_options(
    filter: String,
    options: u8,
    v: ProtocolVersion,
) -> Result<SubscribeFilter, CodecError> {
    let qos = options & 0x03;
    if !v.is_v5() {
        if options & 0xFC != 0 {
            return Err(CodecError::Malformed("SUBSCRIBE reserved option bits set"));
        }
        if qos == 3 {
            return Err(CodecError::Malformed("SUBSCRIBE with QoS 3"));
        }
        return Ok(SubscribeFilter {
            filter,
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        });
    }
    if options & 0xC0 != 0 {
        return Err(CodecError::Malformed("SUBSCRIBE reserved option bits set"));
    }
    if qos == 3 {
        return Err(CodecError::Protocol("SUBSCRIBE with QoS 3"));
    }
    let retain_handling = (options >> 4) & 0x03;
    if retain_handling == 3 {
        return Err(CodecError::Protocol("retain handling 3"));
    }
    let no_local = options & 0x04 != 0;
    if no_local && filter.starts_with("$share/") {
        return Err(CodecError::Protocol("No Local on a shared subscription"));
    }
    Ok(SubscribeFilter {
        filter,
        qos,
        no_local,
        retain_as_published: options & 0x08 != 0,
        retain_handling,
    })
}

fn suback(r: &mut Reader, v: ProtocolVersion) -> Result<SubAck, CodecError> {
    let packet_id = packet_id(r)?;
    let properties = props(r, v, PropCtx::SubAck)?;
    let valid = if v.is_v5() {
        SUBACK_CODES
    } else {
        V3_SUBACK_CODES
    };
    let codes = codes(r, valid)?;
    Ok(SubAck {
        packet_id,
        codes,
        properties,
    })
}

fn codes(r: &mut Reader, valid: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        codes.push(reason(r, valid)?);
    }
    if codes.is_empty() {
        return Err(CodecError::Protocol("acknowledgement without reason codes"));
    }
    Ok(codes)
}

fn unsubscribe(r: &mut Reader, v: ProtocolVersion) -> Result<Unsubscribe, CodecError> {
    let packet_id = packet_id(r)?;
    let properties = props(r, v, PropCtx::Unsubscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(CodecError::Protocol("UNSUBSCRIBE without topic filters"));
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

fn unsuback(r: &mut Reader, v: ProtocolVersion) -> Result<UnsubAck, CodecError> {
    let packet_id = packet_id(r)?;
    if !v.is_v5() {
        return Ok(UnsubAck {
            packet_id,
            codes: Vec::new(),
            properties: Properties::default(),
        });
    }
    let properties = Properties::decode(r, PropCtx::UnsubAck)?;
    let codes = codes(r, UNSUBACK_CODES)?;
    Ok(UnsubAck {
        packet_id,
        codes,
        properties,
    })
}

/// In 5.0 an empty DISCONNECT means normal disconnection (§3.14.2.1).
fn disconnect(r: &mut Reader, v: ProtocolVersion) -> Result<Disconnect, CodecError> {
    let mut packet = Disconnect {
        reason: 0,
        properties: Properties::default(),
    };
    if v.is_v5() && !r.is_empty() {
        packet.reason = reason(r, DISCONNECT_CODES)?;
        if !r.is_empty() {
            packet.properties = Properties::decode(r, PropCtx::Disconnect)?;
        }
    }
    Ok(packet)
}

/// An empty AUTH means success without properties (§3.15.2.1).
fn auth(r: &mut Reader) -> Result<Auth, CodecError> {
    let mut packet = Auth {
        reason: 0,
        properties: Properties::default(),
    };
    if !r.is_empty() {
        packet.reason = reason(r, AUTH_CODES)?;
        if !r.is_empty() {
            packet.properties = Properties::decode(r, PropCtx::Auth)?;
        }
    }
    Ok(packet)
}
