//! Primitive wire types: the variable-byte integer, two-byte-length strings
//! and binary data, and a bounds-checked reader over one packet's body.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::CodecError;

/// The largest value a variable-byte integer can hold (four bytes).
pub const MAX_VBI: u32 = 268_435_455;

/// Outcome of reading a variable-byte integer from the front of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vbi {
    /// The value and the number of bytes it took.
    Value(u32, usize),
    /// The slice ends before the last byte of the integer.
    Incomplete,
}

/// Reads a variable-byte integer. More than four bytes, or a longer encoding
/// than the value needs, is malformed: MQTT 5.0 §1.5.5 requires the minimum
/// number of bytes and we apply the same rule to 3.x.
pub fn read_vbi(bytes: &[u8]) -> Result<Vbi, CodecError> {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(CodecError::Malformed(
                    "variable byte integer is not minimally encoded",
                ));
            }
            return Ok(Vbi::Value(value, i + 1));
        }
        if i == 3 {
            return Err(CodecError::Malformed(
                "variable byte integer longer than four bytes",
            ));
        }
    }
    Ok(Vbi::Incomplete)
}

/// Bytes needed to encode `value` (1..=4; values above [`MAX_VBI`] count 5,
/// which `put_vbi` refuses).
pub fn vbi_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        2_097_152..=268_435_455 => 4,
        _ => 5,
    }
}

pub fn put_vbi(buf: &mut BytesMut, value: usize) -> Result<(), CodecError> {
    if value > MAX_VBI as usize {
        return Err(CodecError::Encode(
            "value exceeds the variable byte integer range",
        ));
    }
    let mut rest = value;
    loop {
        // Truncation is intended: the low seven bits.
        let mut byte = (rest % 128) as u8;
        rest /= 128;
        if rest > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if rest == 0 {
            return Ok(());
        }
    }
}

pub fn put_string(buf: &mut BytesMut, s: &str) -> Result<(), CodecError> {
    put_binary(buf, s.as_bytes())
}

pub fn put_binary(buf: &mut BytesMut, data: &[u8]) -> Result<(), CodecError> {
    let len = u16::try_from(data.len())
        .map_err(|_| CodecError::Encode("string or binary data longer than 65535 bytes"))?;
    buf.put_u16(len);
    buf.put_slice(data);
    Ok(())
}

/// Checks the MQTT rules for a UTF-8 encoded string beyond what `str`
/// already guarantees (valid UTF-8, no surrogates): no U+0000.
pub fn check_utf8(bytes: &[u8]) -> Result<&str, CodecError> {
    let s =
        std::str::from_utf8(bytes).map_err(|_| CodecError::Malformed("invalid UTF-8 string"))?;
    if s.contains('\0') {
        return Err(CodecError::Malformed("UTF-8 string contains U+0000"));
    }
    Ok(s)
}

/// Whether `bytes` hold a 0 byte, and whether they hold `+` or `#`: eight
/// bytes at a time (a byte loop was most of the cost of a short topic).
fn scan_topic(bytes: &[u8]) -> (bool, bool) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Exact for "some byte of `x` is zero" (the carries that could fake a
    // zero only follow a real one).
    fn has_zero(x: u64) -> bool {
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    }
    let mut nul = false;
    let mut wildcard = false;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let x = u64::from_le_bytes(w);
        nul |= has_zero(x);
        wildcard |= has_zero(x ^ (ONES * u64::from(b'+'))) | has_zero(x ^ (ONES * u64::from(b'#')));
    }
    for &b in words.remainder() {
        nul |= b == 0;
        wildcard |= b == b'+' || b == b'#';
    }
    (nul, wildcard)
}

/// A cursor over the body of one packet. Running past the end is a
/// malformed packet: the remaining length promised more than was there.
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize) -> Result<(), CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Malformed("packet shorter than its contents"));
        }
        Ok(())
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub fn u16(&mut self) -> Result<u16, CodecError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub fn u32(&mut self) -> Result<u32, CodecError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    pub fn vbi(&mut self) -> Result<u32, CodecError> {
        match read_vbi(&self.buf)? {
            Vbi::Value(value, len) => {
                self.buf.advance(len);
                Ok(value)
            }
            Vbi::Incomplete => Err(CodecError::Malformed("truncated variable byte integer")),
        }
    }

    /// Takes the next `n` bytes without copying.
    pub fn take(&mut self, n: usize) -> Result<Bytes, CodecError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// Takes everything left without copying.
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    pub fn binary(&mut self) -> Result<Bytes, CodecError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    pub fn string(&mut self) -> Result<String, CodecError> {
        // Copied from the buffer in place: splitting a `Bytes` off first
        // (as `binary` does) costs two atomic reference-count changes per
        // string, and every PUBLISH has one.
        let len = usize::from(self.u16()?);
        self.need(len)?;
        let s = check_utf8(&self.buf[..len]).map(str::to_owned)?;
        self.buf.advance(len);
        Ok(s)
    }

    /// A PUBLISH topic name, and whether it holds a wildcard (an error the
    /// caller reports after the rest of the header, as before). One pass
    /// finds U+0000 and the wildcards together: bytes below 0x80 never
    /// occur inside a multi-byte UTF-8 sequence, so a byte scan is exact.
    /// Every PUBLISH goes through here, and the separate searches (a
    /// `memchr` call and a `char` pattern) cost more than the topic's own
    /// validation.
    pub fn topic_name(&mut self) -> Result<(String, bool), CodecError> {
        let len = usize::from(self.u16()?);
        self.need(len)?;
        let bytes = &self.buf[..len];
        let s = std::str::from_utf8(bytes)
            .map_err(|_| CodecError::Malformed("invalid UTF-8 string"))?;
        let (nul, wildcard) = scan_topic(bytes);
        if nul {
            return Err(CodecError::Malformed("UTF-8 string contains U+0000"));
        }
        let s = s.to_owned();
        self.buf.advance(len);
        Ok((s, wildcard))
    }

    /// Fails unless the body has been read to its end.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Malformed(
                "bytes after the end of the packet contents",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: usize) -> Vec<u8> {
        let mut buf = BytesMut::new();
        put_vbi(&mut buf, value)
            .map(|()| buf.to_vec())
            .unwrap_or_default()
    }

    #[test]
    fn vbi_boundaries_round_trip() {
        let cases: [(usize, &[u8]); 8] = [
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for (value, bytes) in cases {
            assert_eq!(encode(value), bytes, "encoding {value}");
            assert_eq!(vbi_len(value), bytes.len());
            assert_eq!(read_vbi(bytes), Ok(Vbi::Value(value as u32, bytes.len())));
        }
    }

    #[test]
    fn vbi_too_large_is_refused_on_encode() {
        let mut buf = BytesMut::new();
        assert!(put_vbi(&mut buf, 268_435_456).is_err());
        assert_eq!(vbi_len(268_435_456), 5);
    }

    #[test]
    fn vbi_five_bytes_is_malformed() {
        assert_eq!(
            read_vbi(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(CodecError::Malformed(
                "variable byte integer longer than four bytes"
            ))
        );
        assert!(read_vbi(&[0x80, 0x80, 0x80, 0x80]).is_err());
    }

    #[test]
    fn vbi_non_minimal_is_malformed() {
        assert!(read_vbi(&[0x80, 0x00]).is_err());
        assert!(read_vbi(&[0xFF, 0x80, 0x00]).is_err());
        assert!(read_vbi(&[0x81, 0x80, 0x80, 0x00]).is_err());
    }

    #[test]
    fn vbi_incomplete_needs_more() {
        assert_eq!(read_vbi(&[]), Ok(Vbi::Incomplete));
        assert_eq!(read_vbi(&[0x80]), Ok(Vbi::Incomplete));
        assert_eq!(read_vbi(&[0xFF, 0xFF, 0xFF]), Ok(Vbi::Incomplete));
    }

    #[test]
    fn utf8_rejects_nul_and_invalid() {
        assert!(check_utf8(b"a\0b").is_err());
        assert!(check_utf8(&[0xED, 0xA0, 0x80]).is_err()); // encoded surrogate U+D800
        assert!(check_utf8(&[0xC3]).is_err());
        assert_eq!(check_utf8("é/ü".as_bytes()), Ok("é/ü"));
    }

    #[test]
    fn reader_refuses_to_run_past_the_end() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a']));
        assert!(r.string().is_err());
        let mut r = Reader::new(Bytes::from_static(&[0x01]));
        assert!(r.u16().is_err());
    }

    fn topic(bytes: &[u8]) -> Result<(String, bool), CodecError> {
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(bytes);
        Reader::new(Bytes::from(framed)).topic_name()
    }

    #[test]
    fn topic_name_finds_nul_and_wildcards_in_one_pass() {
        assert_eq!(topic("a/é/b".as_bytes()), Ok(("a/é/b".to_owned(), false)));
        assert_eq!(topic(b"a/+/b"), Ok(("a/+/b".to_owned(), true)));
        assert_eq!(topic(b"a/#"), Ok(("a/#".to_owned(), true)));
        assert!(topic(b"a\0b").is_err());
        assert!(topic(&[b'a', 0xED, 0xA0, 0x80]).is_err());
        // A multi-byte character whose bytes end like '#' (0x23) cannot
        // exist: continuation bytes are 0x80..=0xBF.
        assert_eq!(
            topic("a/\u{2323}".as_bytes()),
            Ok(("a/\u{2323}".to_owned(), false))
        );
        // Every position of a word and of the remainder.
        for len in 1..20 {
            for at in 0..len {
                for (b, nul, wild) in [
                    (0u8, true, false),
                    (b'+', false, true),
                    (b'#', false, true),
                    (b'*', false, false),
                ] {
                    let mut t = vec![b'x'; len];
                    t[at] = b;
                    assert_eq!(scan_topic(&t), (nul, wild), "{t:?}");
                }
            }
        }
    }
}
