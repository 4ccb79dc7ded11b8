//! Packets to bytes. Lengths come from `body_len`, which mirrors `put_body`
//! field by field, so `encoded_len` is exact without encoding.

use bytes::{BufMut, BytesMut};

use crate::error::CodecError;
use crate::properties::{PropCtx, Properties};
use crate::types::{Connect, Packet, ProtocolVersion, PubResp, PublishView, Subscribe};
use crate::wire::{put_binary, put_string, put_vbi};

pub(crate) fn packet(
    packet: &Packet,
    v: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), CodecError> {
    if let Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) = packet {
        if r.reason == 0 && r.properties.is_empty() {
            // The acknowledgement of nearly every QoS 1/2 message: four
            // bytes in every version (5.0 leaves out a 0 reason with no
            // properties, §3.4.2.1), the same the general path writes.
            let [hi, lo] = r.packet_id.to_be_bytes();
            buf.put_slice(&[packet.packet_type() << 4 | fixed_flags(packet), 2, hi, lo]);
            return Ok(());
        }
    }
    check(packet, v)?;
    buf.put_u8(packet.packet_type() << 4 | fixed_flags(packet));
    let body = body_len(packet, v);
    put_vbi(buf, body)?;
    buf.reserve(body);
    put_body(packet, v, buf)
}

/// A PUBLISH from its borrowed parts; see [`crate::encode_publish`].
pub(crate) fn publish(
    p: &PublishView<'_>,
    v: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), CodecError> {
    check_publish(p)?;
    buf.put_u8(3 << 4 | publish_flags(p));
    let body = publish_len(p, v);
    put_vbi(buf, body)?;
    buf.reserve(body);
    put_publish(p, v, buf)
}

pub(crate) fn publish_total_len(p: &PublishView<'_>, v: ProtocolVersion) -> usize {
    let body = publish_len(p, v);
    1 + crate::wire::vbi_len(body) + body
}

fn check_publish(p: &PublishView<'_>) -> Result<(), CodecError> {
    if p.qos > 2 {
        return Err(CodecError::Encode("PUBLISH QoS above 2"));
    }
    if (p.qos > 0) != p.packet_id.is_some() {
        return Err(CodecError::Encode(
            "PUBLISH needs a packet id exactly when QoS > 0",
        ));
    }
    if p.qos == 0 && p.dup {
        return Err(CodecError::Encode("PUBLISH with QoS 0 and DUP set"));
    }
    Ok(())
}

fn publish_flags(p: &PublishView<'_>) -> u8 {
    u8::from(p.dup) << 3 | (p.qos & 0x03) << 1 | u8::from(p.retain)
}

/// Refuses what the wire cannot carry or a receiver must reject.
fn check(packet: &Packet, v: ProtocolVersion) -> Result<(), CodecError> {
    match packet {
        Packet::Publish(p) => check_publish(&p.view())?,
        Packet::Connect(c) => {
            if c.will.as_ref().is_some_and(|w| w.qos > 2) {
                return Err(CodecError::Encode("will QoS above 2"));
            }
            if c.password.is_some() && c.username.is_none() && !c.protocol.is_v5() {
                return Err(CodecError::Encode(
                    "password without user name before MQTT 5.0",
                ));
            }
        }
        Packet::Subscribe(s) if s.filters.iter().any(|f| f.qos > 2 || f.retain_handling > 2) => {
            return Err(CodecError::Encode("SUBSCRIBE option out of range"));
        }
        Packet::Auth(_) if !v.is_v5() => {
            return Err(CodecError::Encode("AUTH exists only in MQTT 5.0"))
        }
        _ => {}
    }
    Ok(())
}

fn fixed_flags(packet: &Packet) -> u8 {
    match packet {
        Packet::Publish(p) => publish_flags(&p.view()),
        Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0b0010,
        _ => 0,
    }
}

/// The properties block length in 5.0, nothing in 3.x.
fn props_len(p: &Properties, v: ProtocolVersion, ctx: PropCtx) -> usize {
    if v.is_v5() {
        p.block_len(ctx)
    } else {
        0
    }
}

fn put_props(
    p: &Properties,
    v: ProtocolVersion,
    ctx: PropCtx,
    buf: &mut BytesMut,
) -> Result<(), CodecError> {
    if v.is_v5() {
        p.encode(ctx, buf)
    } else {
        Ok(())
    }
}

/// Length of a 5.0 reason code plus properties that may be left out when
/// the reason is 0 and there are no properties (PUBACK family, DISCONNECT,
/// AUTH). `0` when both are omitted.
fn tail_len(reason: u8, p: &Properties, ctx: PropCtx) -> usize {
    match (reason, p.content_len(ctx)) {
        (0, 0) => 0,
        (_, 0) => 1,
        _ => 1 + p.block_len(ctx),
    }
}

fn put_tail(
    reason: u8,
    p: &Properties,
    ctx: PropCtx,
    buf: &mut BytesMut,
) -> Result<(), CodecError> {
    match (reason, p.content_len(ctx)) {
        (0, 0) => Ok(()),
        (_, 0) => {
            buf.put_u8(reason);
            Ok(())
        }
        _ => {
            buf.put_u8(reason);
            p.encode(ctx, buf)
        }
    }
}

pub(crate) fn body_len(packet: &Packet, v: ProtocolVersion) -> usize {
    let v5 = v.is_v5();
    match packet {
        Packet::Connect(c) => connect_len(c),
        Packet::ConnAck(c) => 2 + props_len(&c.properties, v, PropCtx::ConnAck),
        Packet::Publish(p) => publish_len(&p.view(), v),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            2 + if v5 {
                tail_len(r.reason, &r.properties, PropCtx::PubResp)
            } else {
                0
            }
        }
        Packet::Subscribe(s) => subscribe_len(s, v),
        Packet::SubAck(s) => 2 + props_len(&s.properties, v, PropCtx::SubAck) + s.codes.len(),
        Packet::Unsubscribe(u) => {
            2 + props_len(&u.properties, v, PropCtx::Unsubscribe)
                + u.filters.iter().map(|f| 2 + f.len()).sum::<usize>()
        }
        Packet::UnsubAck(u) if v5 => 2 + u.properties.block_len(PropCtx::UnsubAck) + u.codes.len(),
        Packet::UnsubAck(_) => 2,
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) if v5 => tail_len(d.reason, &d.properties, PropCtx::Disconnect),
        Packet::Disconnect(_) => 0,
        Packet::Auth(a) => tail_len(a.reason, &a.properties, PropCtx::Auth),
    }
}

fn put_body(packet: &Packet, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), CodecError> {
    let v5 = v.is_v5();
    match packet {
        Packet::Connect(c) => put_connect(c, buf)?,
        Packet::ConnAck(c) => {
            buf.put_u8(u8::from(c.session_present));
            buf.put_u8(c.code);
            put_props(&c.properties, v, PropCtx::ConnAck, buf)?;
        }
        Packet::Publish(p) => put_publish(&p.view(), v, buf)?,
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            put_pub_resp(r, v, buf)?
        }
        Packet::Subscribe(s) => put_subscribe(s, v, buf)?,
        Packet::SubAck(s) => {
            buf.put_u16(s.packet_id);
            put_props(&s.properties, v, PropCtx::SubAck, buf)?;
            buf.put_slice(&s.codes);
        }
        Packet::Unsubscribe(u) => {
            buf.put_u16(u.packet_id);
            put_props(&u.properties, v, PropCtx::Unsubscribe, buf)?;
            for filter in &u.filters {
                put_string(buf, filter)?;
            }
        }
        Packet::UnsubAck(u) => {
            buf.put_u16(u.packet_id);
            if v5 {
                u.properties.encode(PropCtx::UnsubAck, buf)?;
                buf.put_slice(&u.codes);
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) if v5 => put_tail(d.reason, &d.properties, PropCtx::Disconnect, buf)?,
        Packet::Disconnect(_) => {}
        Packet::Auth(a) => put_tail(a.reason, &a.properties, PropCtx::Auth, buf)?,
    }
    Ok(())
}

fn connect_len(c: &Connect) -> usize {
    let v = c.protocol;
    let mut len = 2 + v.name().len() + 1 + 1 + 2 + props_len(&c.properties, v, PropCtx::Connect);
    len += 2 + c.client_id.len();
    if let Some(w) = &c.will {
        len += props_len(&w.properties, v, PropCtx::Will) + 2 + w.topic.len() + 2 + w.payload.len();
    }
    len += c.username.as_ref().map_or(0, |u| 2 + u.len());
    len + c.password.as_ref().map_or(0, |p| 2 + p.len())
}

fn put_connect(c: &Connect, buf: &mut BytesMut) -> Result<(), CodecError> {
    let v = c.protocol;
    put_string(buf, v.name())?;
    buf.put_u8(v.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos & 0x03) << 3 | u8::from(w.retain) << 5;
    }
    flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    put_props(&c.properties, v, PropCtx::Connect, buf)?;
    put_string(buf, &c.client_id)?;
    if let Some(w) = &c.will {
        put_props(&w.properties, v, PropCtx::Will, buf)?;
        put_string(buf, &w.topic)?;
        put_binary(buf, &w.payload)?;
    }
    if let Some(u) = &c.username {
        put_string(buf, u)?;
    }
    if let Some(p) = &c.password {
        put_binary(buf, p)?;
    }
    Ok(())
}

fn publish_len(p: &PublishView<'_>, v: ProtocolVersion) -> usize {
    let id = if p.qos > 0 { 2 } else { 0 };
    2 + p.topic.len() + id + props_len(p.properties, v, PropCtx::Publish) + p.payload.len()
}

fn put_publish(
    p: &PublishView<'_>,
    v: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), CodecError> {
    put_string(buf, p.topic)?;
    if let Some(id) = p.packet_id {
        buf.put_u16(id);
    }
    put_props(p.properties, v, PropCtx::Publish, buf)?;
    buf.put_slice(p.payload);
    Ok(())
}

fn put_pub_resp(r: &PubResp, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), CodecError> {
    buf.put_u16(r.packet_id);
    if v.is_v5() {
        put_tail(r.reason, &r.properties, PropCtx::PubResp, buf)?;
    }
    Ok(())
}

fn subscribe_len(s: &Subscribe, v: ProtocolVersion) -> usize {
    2 + props_len(&s.properties, v, PropCtx::Subscribe)
        + s.filters.iter().map(|f| 3 + f.filter.len()).sum::<usize>()
}

fn put_subscribe(s: &Subscribe, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), CodecError> {
    buf.put_u16(s.packet_id);
    put_props(&s.properties, v, PropCtx::Subscribe, buf)?;
    for f in &s.filters {
        put_string(buf, &f.filter)?;
        let mut options = f.qos;
        if v.is_v5() {
            options |= u8::from(f.no_local) << 2
                | u8::from(f.retain_as_published) << 3
                | f.retain_handling << 4;
        }
        buf.put_u8(options);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PubResp;

    fn ack(reason: u8) -> PubResp {
        PubResp {
            packet_id: 0x1234,
            reason,
            properties: Properties::default(),
        }
    }

    fn bytes(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
        let mut buf = BytesMut::new();
        packet(p, v, &mut buf).expect("encodes");
        buf.to_vec()
    }

    #[test]
    fn plain_acknowledgements_are_four_bytes_in_every_version() {
        for v in [
            ProtocolVersion::V31,
            ProtocolVersion::V311,
            ProtocolVersion::V5,
        ] {
            assert_eq!(bytes(&Packet::PubAck(ack(0)), v), [0x40, 2, 0x12, 0x34]);
            assert_eq!(bytes(&Packet::PubRec(ack(0)), v), [0x50, 2, 0x12, 0x34]);
            assert_eq!(bytes(&Packet::PubRel(ack(0)), v), [0x62, 2, 0x12, 0x34]);
            assert_eq!(bytes(&Packet::PubComp(ack(0)), v), [0x70, 2, 0x12, 0x34]);
        }
        // A reason code takes the general path (5.0 writes it).
        assert_eq!(
            bytes(&Packet::PubAck(ack(0x10)), ProtocolVersion::V5),
            [0x40, 3, 0x12, 0x34, 0x10]
        );
        let mut with_reason_string = ack(0);
        with_reason_string.properties.reason_string = Some("r".into());
        assert_eq!(
            bytes(&Packet::PubAck(with_reason_string), ProtocolVersion::V5),
            [0x40, 8, 0x12, 0x34, 0x00, 4, 0x1F, 0, 1, b'r']
        );
    }
}
