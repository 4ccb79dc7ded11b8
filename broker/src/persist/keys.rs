//! Key layout for ordered key-value engines. A delivery key is
//! `len(client_id) as u32 BE ‖ client_id ‖ seq as u64 BE ‖ kind`: the length
//! prefix makes one session's keys a contiguous range that no other client id
//! can share (client ids may contain any byte sequence), and the big-endian
//! seq keeps them in queue order. The inflight state lives under its own
//! `kind` so moving a message into flight is a blind write, not a
//! read-modify-write of the whole message.

/// The stored message itself.
pub const KIND_DELIVERY: u8 = 0;
/// Its `(packet_id, phase)` once in flight.
pub const KIND_INFLIGHT: u8 = 1;

/// The prefix every key of `client_id`'s deliveries starts with.
pub fn session_prefix(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut key = Vec::with_capacity(4 + id.len() + 9);
    // MQTT strings are at most 65,535 bytes, so the length always fits.
    key.extend_from_slice(&(id.len() as u32).to_be_bytes());
    key.extend_from_slice(id);
    key
}

/// The key of one delivery record (`kind` = [`KIND_DELIVERY`] or
/// [`KIND_INFLIGHT`]).
pub fn delivery_key(client_id: &str, seq: u64, kind: u8) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key.push(kind);
    key
}

/// Splits a delivery key into client id, seq and kind; `None` if malformed.
pub fn parse_delivery_key(key: &[u8]) -> Option<(&str, u64, u8)> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    let id = key.get(4..4 + len)?;
    let rest = key.get(4 + len..)?;
    if rest.len() != 9 {
        return None;
    }
    let seq = u64::from_be_bytes(rest[..8].try_into().ok()?);
    Some((std::str::from_utf8(id).ok()?, seq, rest[8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_do_not_collide_across_client_ids() {
        let k = delivery_key("a\u{1}b", 7, KIND_INFLIGHT);
        assert_eq!(parse_delivery_key(&k), Some(("a\u{1}b", 7, KIND_INFLIGHT)));
        // "ab" must not be a prefix match for "abc"'s keys.
        let other = delivery_key("abc", 1, KIND_DELIVERY);
        assert!(!other.starts_with(&session_prefix("ab")));
        assert!(delivery_key("x", 1, 0) < delivery_key("x", 256, 0));
        assert_eq!(parse_delivery_key(b"\0\0\0\x09short"), None);
    }
}
