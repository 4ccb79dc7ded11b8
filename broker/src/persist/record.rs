//! What the session store holds, as plain serde data: no broker types, so the
//! records stay stable while the session code changes, and a second node (or
//! a second engine) can read them. Every encoded record starts with a format
//! version byte; the body is postcard.

use std::sync::Arc;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::PersistError;

/// The format of every record this build writes. A record with another
/// version byte is refused at load rather than misread.
pub const FORMAT_VERSION: u8 = 1;

/// The MQTT v5 properties a stored message or will carries to its receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProps {
    pub payload_format_indicator: Option<u8>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
}

/// An application message as published (queued copies and retained ones).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Shared with the live message (`Arc`, not a copy per subscriber);
    /// encoded exactly as a `String` would be.
    #[serde(with = "shared_str")]
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub props: StoredProps,
    /// Wall clock (unix ms) after which the message is dropped, from the
    /// v5 message expiry interval; `None` never expires.
    pub expires_at_ms: Option<u64>,
    /// The publisher's client id (for no-local after a restart).
    #[serde(with = "shared_str")]
    pub origin: Arc<str>,
}

/// `Arc<str>` as serde's string (serde's own impl needs its `rc` feature
/// for the whole workspace).
mod shared_str {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Arc<str>, out: S) -> Result<S::Ok, S::Error> {
        out.serialize_str(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }
}

/// One subscription of a persistent session, with its v5 options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSubscription {
    pub filter: String,
    pub share_group: Option<String>,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    pub subscription_id: Option<u32>,
}

/// A session's will, not yet published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub props: StoredProps,
    /// The v5 message expiry interval, relative: it starts when the will is
    /// published.
    pub message_expiry: Option<u32>,
    pub delay_secs: u32,
}

/// A persistent session without its queued messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    pub client_id: String,
    /// The username that owns the session; `None` = anonymous.
    pub owner: Option<String>,
    /// MQTT protocol level: 3, 4 or 5.
    pub protocol: u8,
    /// Session expiry interval; `u32::MAX` never expires.
    pub expiry_secs: u32,
    /// Wall clock (unix ms) of the disconnect; `None` while online.
    pub disconnected_at_ms: Option<u64>,
    pub subscriptions: Vec<StoredSubscription>,
    pub will: Option<StoredWill>,
    /// Inbound QoS 2 packet ids received and not yet released (PUBREL).
    pub incoming_qos2: Vec<u16>,
}

/// Where an outbound QoS 1/2 message stands in its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// QoS 1 sent, waiting for PUBACK.
    AwaitAck,
    /// QoS 2 sent, waiting for PUBREC.
    AwaitRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitComp,
}

/// A message queued for (or in flight to) one session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDelivery {
    pub msg: StoredMessage,
    /// QoS as delivered (the subscription may have downgraded it).
    pub qos: u8,
    /// Retain flag as delivered (retain-as-published, retained on subscribe).
    pub retain: bool,
    /// v5 subscription identifiers of the matching subscriptions.
    pub sub_ids: Vec<u32>,
    /// Packet id and phase once sent; `None` while only queued.
    pub inflight: Option<(u16, Phase)>,
}

/// Encodes a record: the format version byte, then postcard.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, PersistError> {
    let mut out = vec![FORMAT_VERSION];
    postcard::to_io(value, &mut out).map_err(|e| PersistError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a record written by [`encode`], refusing other format versions.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PersistError> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => {
            postcard::from_bytes(body).map_err(|e| PersistError::Corrupt(e.to_string()))
        }
        Some((&v, _)) => Err(PersistError::UnknownFormat(v)),
        None => Err(PersistError::Corrupt("empty record".into())),
    }
}
