//! Raw packet builders for the malformed-input table: bytes written by hand,
//! not by the encoder under test.

/// Fixed header byte plus remaining length, then the body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A two-byte-length string.
pub fn s(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A property block with its length prefix (short blocks only).
pub fn p(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub fn connect(name: &[u8], level: u8, flags: u8, props: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    let mut body = cat(&[&s(name), &[level, flags, 0, 60]]);
    if let Some(props) = props {
        body.extend_from_slice(&p(props));
    }
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

pub fn connect3(flags: u8, payload: &[u8]) -> Vec<u8> {
    connect(b"MQTT", 4, flags, None, payload)
}

pub fn connect5(flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    connect(b"MQTT", 5, flags, Some(props), payload)
}

/// PUBLISH QoS 0 in 5.0 to "t" with the given properties.
pub fn publish5(props: &[u8]) -> Vec<u8> {
    frame(0x30, &cat(&[&s(b"t"), &p(props), b"x"]))
}

pub fn subscribe5(props: &[u8], filter: &[u8], options: u8) -> Vec<u8> {
    frame(0x82, &cat(&[&[0, 1], &p(props), &s(filter), &[options]]))
}
