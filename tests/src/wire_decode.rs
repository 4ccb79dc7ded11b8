//! Reads the packets a broker sends (MQTT 3.1.1 and 5.0) from raw bytes, for
//! the raw client's exact assertions. Strict enough to notice a broker that
//! sends garbage: a bad length or a truncated field is `Malformed`.

use bytes::{Buf, BytesMut};

use crate::wire::{Incoming, Malformed, Prop, Props, Publish, Version, USER_PROPERTY};

type R<T> = Result<T, Malformed>;

fn bad(what: &str) -> Malformed {
    Malformed(what.to_string())
}

/// Reads a variable byte integer from the front of `buf` without consuming it.
/// `Ok(None)` means more bytes are needed; returns (value, bytes used).
fn peek_var_int(buf: &[u8]) -> R<Option<(u32, usize)>> {
    let mut value = 0u32;
    for i in 0..4 {
        let Some(byte) = buf.get(i) else {
            return Ok(None);
        };
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(bad("variable byte integer longer than 4 bytes"))
}

/// Splits one whole packet off `buf`: (first byte, body). `Ok(None)` until a
/// whole packet is buffered.
pub fn split_frame(buf: &mut BytesMut) -> R<Option<(u8, BytesMut)>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((len, used)) = peek_var_int(buf.get(1..).unwrap_or(&[]))? else {
        return Ok(None);
    };
    let total = 1 + used + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mut packet = buf.split_to(total);
    packet.advance(1 + used);
    Ok(Some((first, packet)))
}

struct Body(BytesMut);

impl Body {
    fn u8(&mut self) -> R<u8> {
        if self.0.remaining() < 1 {
            return Err(bad("truncated byte"));
        }
        Ok(self.0.get_u8())
    }
    fn u16(&mut self) -> R<u16> {
        if self.0.remaining() < 2 {
            return Err(bad("truncated u16"));
        }
        Ok(self.0.get_u16())
    }
    fn u32(&mut self) -> R<u32> {
        if self.0.remaining() < 4 {
            return Err(bad("truncated u32"));
        }
        Ok(self.0.get_u32())
    }
    fn var_int(&mut self) -> R<u32> {
        let (v, used) = peek_var_int(&self.0)?.ok_or_else(|| bad("truncated varint"))?;
        self.0.advance(used);
        Ok(v)
    }
    fn bin(&mut self) -> R<Vec<u8>> {
        let len = usize::from(self.u16()?);
        if self.0.remaining() < len {
            return Err(bad("truncated binary data"));
        }
        Ok(self.0.split_to(len).to_vec())
    }
    fn str(&mut self) -> R<String> {
        String::from_utf8(self.bin()?).map_err(|_| bad("invalid UTF-8"))
    }
    fn rest(&mut self) -> Vec<u8> {
        self.0.split_to(self.0.len()).to_vec()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn props(&mut self) -> R<Props> {
        let len = self.var_int()? as usize;
        if self.0.remaining() < len {
            return Err(bad("property length beyond packet"));
        }
        let mut inner = Body(self.0.split_to(len));
        let mut out = Vec::new();
        while !inner.is_empty() {
            out.push(inner.prop()?);
        }
        Ok(Props(out))
    }
    fn prop(&mut self) -> R<Prop> {
        let id = self.var_int()? as u8;
        Ok(match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => Prop::Byte(id, self.u8()?),
            0x13 | 0x21 | 0x22 | 0x23 => Prop::U16(id, self.u16()?),
            0x02 | 0x11 | 0x18 | 0x27 => Prop::U32(id, self.u32()?),
            0x0B => Prop::VarInt(id, self.var_int()?),
            0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => Prop::Str(id, self.str()?),
            0x09 | 0x16 => Prop::Bin(id, self.bin()?),
            USER_PROPERTY => Prop::Pair(self.str()?, self.str()?),
            other => return Err(Malformed(format!("unknown property 0x{other:02x}"))),
        })
    }
}

/// Decodes one server packet from its first byte and body.
pub fn decode(first: u8, body: BytesMut, version: Version) -> R<Incoming> {
    let v5 = version == Version::V5;
    let mut b = Body(body);
    let kind = first >> 4;
    let packet = match kind {
        2 => {
            let flags = b.u8()?;
            let code = b.u8()?;
            let props = if v5 { b.props()? } else { Props::default() };
            Incoming::ConnAck {
                session_present: flags & 1 == 1,
                code,
                props,
            }
        }
        3 => Incoming::Publish(decode_publish(first, &mut b, v5)?),
        4..=7 => decode_ack(kind, &mut b, v5)?,
        9 | 11 => {
            let packet_id = b.u16()?;
            if v5 {
                b.props()?;
            }
            let codes = b.rest();
            if kind == 9 {
                Incoming::SubAck { packet_id, codes }
            } else {
                Incoming::UnsubAck { packet_id, codes }
            }
        }
        13 => Incoming::PingResp,
        14 => {
            let code = if b.is_empty() { 0 } else { b.u8()? };
            let props = if v5 && !b.is_empty() {
                b.props()?
            } else {
                Props::default()
            };
            Incoming::Disconnect { code, props }
        }
        15 => {
            let code = if b.is_empty() { 0 } else { b.u8()? };
            let props = if b.is_empty() {
                Props::default()
            } else {
                b.props()?
            };
            Incoming::Auth { code, props }
        }
        other => return Err(Malformed(format!("server sent packet type {other}"))),
    };
    if !b.is_empty() {
        return Err(bad("trailing bytes after packet"));
    }
    Ok(packet)
}

fn decode_publish(first: u8, b: &mut Body, v5: bool) -> R<Publish> {
    let qos = (first >> 1) & 3;
    let topic = b.str()?;
    let packet_id = if qos > 0 { b.u16()? } else { 0 };
    let props = if v5 { b.props()? } else { Props::default() };
    Ok(Publish {
        topic,
        payload: b.rest(),
        qos,
        retain: first & 1 == 1,
        dup: first & 0x08 != 0,
        packet_id,
        props,
    })
}

fn decode_ack(kind: u8, b: &mut Body, v5: bool) -> R<Incoming> {
    let packet_id = b.u16()?;
    let code = if v5 && !b.is_empty() { b.u8()? } else { 0 };
    if v5 && !b.is_empty() {
        b.props()?;
    }
    Ok(match kind {
        4 => Incoming::PubAck { packet_id, code },
        5 => Incoming::PubRec { packet_id, code },
        6 => Incoming::PubRel { packet_id, code },
        _ => Incoming::PubComp { packet_id, code },
    })
}
