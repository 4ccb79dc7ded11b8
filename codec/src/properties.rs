//! MQTT 5.0 properties (§2.2.2): one field per property, decoding with the
//! per-packet rules (which identifiers are allowed, which may repeat, which
//! values are out of range) and encoding.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::CodecError;
use crate::wire::{put_binary, put_string, put_vbi, vbi_len, Reader, MAX_VBI};

/// All MQTT 5.0 properties, one field each. `None`/empty means absent.
/// Packets hold them through [`Properties`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PropertySet {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    /// Several in a PUBLISH sent to a client; at most one in SUBSCRIBE.
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<bool>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<bool>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub reason_string: Option<String>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<bool>,
    /// In wire order; names may repeat.
    pub user_properties: Vec<(String, String)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifier_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
}

/// A packet's properties: a [`PropertySet`] behind a pointer that is null
/// when the packet has none (every 3.x packet, and most 5.0 ones). A set
/// is over 300 bytes; inline, it made every packet and every message that
/// big, and the broker moves those several times per message. Reads go
/// through `Deref` (an absent set reads as empty); the first write through
/// `DerefMut` allocates the set.
#[derive(Clone, Default)]
pub struct Properties(Option<Box<PropertySet>>);

/// What an absent set reads as.
static EMPTY: PropertySet = PropertySet {
    payload_format_indicator: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    subscription_identifiers: Vec::new(),
    session_expiry_interval: None,
    assigned_client_identifier: None,
    server_keep_alive: None,
    authentication_method: None,
    authentication_data: None,
    request_problem_information: None,
    will_delay_interval: None,
    request_response_information: None,
    response_information: None,
    server_reference: None,
    reason_string: None,
    receive_maximum: None,
    topic_alias_maximum: None,
    topic_alias: None,
    maximum_qos: None,
    retain_available: None,
    user_properties: Vec::new(),
    maximum_packet_size: None,
    wildcard_subscription_available: None,
    subscription_identifier_available: None,
    shared_subscription_available: None,
};

impl Properties {
    /// No property is present.
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(|p| *p == EMPTY)
    }
}

impl From<PropertySet> for Properties {
    fn from(set: PropertySet) -> Properties {
        if set == EMPTY {
            Properties(None)
        } else {
            Properties(Some(Box::new(set)))
        }
    }
}

impl std::ops::Deref for Properties {
    type Target = PropertySet;

    fn deref(&self) -> &PropertySet {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl std::ops::DerefMut for Properties {
    fn deref_mut(&mut self) -> &mut PropertySet {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        **self == **other
    }
}

impl Eq for Properties {}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// Where a property block sits; decides which identifiers are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PropCtx {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubResp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

// Property identifiers (§2.2.2.2).
const PAYLOAD_FORMAT: u8 = 0x01;
const MESSAGE_EXPIRY: u8 = 0x02;
const CONTENT_TYPE: u8 = 0x03;
const RESPONSE_TOPIC: u8 = 0x08;
const CORRELATION_DATA: u8 = 0x09;
const SUBSCRIPTION_ID: u8 = 0x0B;
const SESSION_EXPIRY: u8 = 0x11;
const ASSIGNED_CLIENT_ID: u8 = 0x12;
const SERVER_KEEP_ALIVE: u8 = 0x13;
const AUTH_METHOD: u8 = 0x15;
const AUTH_DATA: u8 = 0x16;
const REQUEST_PROBLEM_INFO: u8 = 0x17;
const WILL_DELAY: u8 = 0x18;
const REQUEST_RESPONSE_INFO: u8 = 0x19;
const RESPONSE_INFO: u8 = 0x1A;
const SERVER_REFERENCE: u8 = 0x1C;
const REASON_STRING: u8 = 0x1F;
const RECEIVE_MAXIMUM: u8 = 0x21;
const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
const TOPIC_ALIAS: u8 = 0x23;
const MAXIMUM_QOS: u8 = 0x24;
const RETAIN_AVAILABLE: u8 = 0x25;
const USER_PROPERTY: u8 = 0x26;
const MAXIMUM_PACKET_SIZE: u8 = 0x27;
const WILDCARD_SUB_AVAILABLE: u8 = 0x28;
const SUB_ID_AVAILABLE: u8 = 0x29;
const SHARED_SUB_AVAILABLE: u8 = 0x2A;

/// Whether property `id` may appear in `ctx` (the table in §2.2.2.2).
fn allowed(id: u8, ctx: PropCtx) -> bool {
    use PropCtx::*;
    match id {
        PAYLOAD_FORMAT | MESSAGE_EXPIRY | CONTENT_TYPE | RESPONSE_TOPIC | CORRELATION_DATA => {
            matches!(ctx, Publish | Will)
        }
        SUBSCRIPTION_ID => matches!(ctx, Publish | Subscribe),
        SESSION_EXPIRY => matches!(ctx, Connect | ConnAck | Disconnect),
        ASSIGNED_CLIENT_ID
        | SERVER_KEEP_ALIVE
        | RESPONSE_INFO
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUB_AVAILABLE
        | SUB_ID_AVAILABLE
        | SHARED_SUB_AVAILABLE => ctx == ConnAck,
        AUTH_METHOD | AUTH_DATA => matches!(ctx, Connect | ConnAck | Auth),
        REQUEST_PROBLEM_INFO | REQUEST_RESPONSE_INFO => ctx == Connect,
        WILL_DELAY => ctx == Will,
        SERVER_REFERENCE => matches!(ctx, ConnAck | Disconnect),
        REASON_STRING => !matches!(ctx, Connect | Will | Publish | Subscribe | Unsubscribe),
        RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | MAXIMUM_PACKET_SIZE => {
            matches!(ctx, Connect | ConnAck)
        }
        TOPIC_ALIAS => ctx == Publish,
        USER_PROPERTY => true,
        _ => false,
    }
}

/// Stores a value into a once-only slot; a second occurrence is a protocol
/// error (§2.2.2.2: "It is a Protocol Error to include … more than once").
fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), CodecError> {
    if slot.is_some() {
        return Err(CodecError::Protocol("property included more than once"));
    }
    *slot = Some(value);
    Ok(())
}

fn flag(r: &mut Reader) -> Result<bool, CodecError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(CodecError::Protocol("property value must be 0 or 1")),
    }
}

fn nonzero_u16(r: &mut Reader) -> Result<u16, CodecError> {
    match r.u16()? {
        0 => Err(CodecError::Protocol("property value must not be 0")),
        v => Ok(v),
    }
}

impl Properties {
    /// Reads a property block (length prefix included) for `ctx`.
    pub(crate) fn decode(r: &mut Reader, ctx: PropCtx) -> Result<Properties, CodecError> {
        let len = r.vbi()? as usize;
        if len > r.remaining() {
            return Err(CodecError::Malformed("property length exceeds the packet"));
        }
        if len == 0 {
            return Ok(Properties::default());
        }
        PropertySet::decode_block(Reader::new(r.take(len)?), ctx).map(Properties::from)
    }
}

impl PropertySet {
    fn decode_block(mut block: Reader, ctx: PropCtx) -> Result<PropertySet, CodecError> {
        let mut p = PropertySet::default();
        while !block.is_empty() {
            let id = block.u8()?;
            if !allowed(id, ctx) {
                return Err(CodecError::Malformed("property not valid for this packet"));
            }
            p.decode_one(id, &mut block, ctx)?;
        }
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(CodecError::Protocol(
                "authentication data without authentication method",
            ));
        }
        Ok(p)
    }

    fn decode_one(&mut self, id: u8, r: &mut Reader, ctx: PropCtx) -> Result<(), CodecError> {
        match id {
            PAYLOAD_FORMAT => match r.u8()? {
                v @ (0 | 1) => once(&mut self.payload_format_indicator, v),
                _ => Err(CodecError::Protocol(
                    "payload format indicator must be 0 or 1",
                )),
            },
            MESSAGE_EXPIRY => once(&mut self.message_expiry_interval, r.u32()?),
            CONTENT_TYPE => once(&mut self.content_type, r.string()?),
            RESPONSE_TOPIC => {
                let topic = r.string()?;
                if topic.is_empty() || topic.contains(['+', '#']) {
                    return Err(CodecError::Protocol(
                        "response topic is not a valid topic name",
                    ));
                }
                once(&mut self.response_topic, topic)
            }
            CORRELATION_DATA => once(&mut self.correlation_data, r.binary()?),
            SUBSCRIPTION_ID => {
                let id = r.vbi()?;
                if id == 0 {
                    return Err(CodecError::Protocol("subscription identifier 0"));
                }
                if ctx != PropCtx::Publish && !self.subscription_identifiers.is_empty() {
                    return Err(CodecError::Protocol("property included more than once"));
                }
                self.subscription_identifiers.push(id);
                Ok(())
            }
            SESSION_EXPIRY => once(&mut self.session_expiry_interval, r.u32()?),
            ASSIGNED_CLIENT_ID => once(&mut self.assigned_client_identifier, r.string()?),
            SERVER_KEEP_ALIVE => once(&mut self.server_keep_alive, r.u16()?),
            AUTH_METHOD => once(&mut self.authentication_method, r.string()?),
            AUTH_DATA => once(&mut self.authentication_data, r.binary()?),
            REQUEST_PROBLEM_INFO => once(&mut self.request_problem_information, flag(r)?),
            WILL_DELAY => once(&mut self.will_delay_interval, r.u32()?),
            REQUEST_RESPONSE_INFO => once(&mut self.request_response_information, flag(r)?),
            RESPONSE_INFO => once(&mut self.response_information, r.string()?),
            SERVER_REFERENCE => once(&mut self.server_reference, r.string()?),
            REASON_STRING => once(&mut self.reason_string, r.string()?),
            RECEIVE_MAXIMUM => once(&mut self.receive_maximum, nonzero_u16(r)?),
            TOPIC_ALIAS_MAXIMUM => once(&mut self.topic_alias_maximum, r.u16()?),
            TOPIC_ALIAS => once(&mut self.topic_alias, nonzero_u16(r)?),
            MAXIMUM_QOS => match r.u8()? {
                v @ (0 | 1) => once(&mut self.maximum_qos, v),
                _ => Err(CodecError::Protocol("maximum QoS must be 0 or 1")),
            },
            RETAIN_AVAILABLE => once(&mut self.retain_available, flag(r)?),
            USER_PROPERTY => {
                let pair = (r.string()?, r.string()?);
                self.user_properties.push(pair);
                Ok(())
            }
            MAXIMUM_PACKET_SIZE => match r.u32()? {
                0 => Err(CodecError::Protocol("maximum packet size 0")),
                v => once(&mut self.maximum_packet_size, v),
            },
            WILDCARD_SUB_AVAILABLE => once(&mut self.wildcard_subscription_available, flag(r)?),
            SUB_ID_AVAILABLE => once(&mut self.subscription_identifier_available, flag(r)?),
            SHARED_SUB_AVAILABLE => once(&mut self.shared_subscription_available, flag(r)?),
            _ => Err(CodecError::Malformed("unknown property identifier")),
        }
    }

    /// Length of the property block contents for `ctx`, without its prefix.
    /// Properties not allowed in `ctx` are not counted (and not encoded).
    pub(crate) fn content_len(&self, ctx: PropCtx) -> usize {
        let mut len = 0;
        self.visit(ctx, &mut |_, value| {
            len += 1 + value.len();
            Ok(())
        })
        .map(|()| len)
        .unwrap_or(len)
    }

    /// Length of the whole block: prefix plus contents.
    pub(crate) fn block_len(&self, ctx: PropCtx) -> usize {
        let len = self.content_len(ctx);
        vbi_len(len) + len
    }

    pub(crate) fn encode(&self, ctx: PropCtx, buf: &mut BytesMut) -> Result<(), CodecError> {
        put_vbi(buf, self.content_len(ctx))?;
        self.visit(ctx, &mut |id, value| {
            buf.put_u8(id);
            value.put(buf)
        })
    }

    /// Calls `f` for every present property allowed in `ctx`, in identifier
    /// order, so length and encoding come from one list.
    fn visit(
        &self,
        ctx: PropCtx,
        f: &mut dyn FnMut(u8, Value<'_>) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        let mut emit = |id: u8, value: Value<'_>| {
            if allowed(id, ctx) {
                f(id, value)
            } else {
                Ok(())
            }
        };
        let byte = |v: Option<u8>| v.map(Value::Byte);
        let boolean = |v: Option<bool>| v.map(|b| Value::Byte(u8::from(b)));
        let two = |v: Option<u16>| v.map(Value::Two);
        let four = |v: Option<u32>| v.map(Value::Four);
        fn string(v: &Option<String>) -> Option<Value<'_>> {
            v.as_deref().map(Value::Str)
        }
        fn binary(v: &Option<Bytes>) -> Option<Value<'_>> {
            v.as_deref().map(Value::Bin)
        }
        let singles: [(u8, Option<Value<'_>>); 25] = [
            (PAYLOAD_FORMAT, byte(self.payload_format_indicator)),
            (MESSAGE_EXPIRY, four(self.message_expiry_interval)),
            (CONTENT_TYPE, string(&self.content_type)),
            (RESPONSE_TOPIC, string(&self.response_topic)),
            (CORRELATION_DATA, binary(&self.correlation_data)),
            (SESSION_EXPIRY, four(self.session_expiry_interval)),
            (ASSIGNED_CLIENT_ID, string(&self.assigned_client_identifier)),
            (SERVER_KEEP_ALIVE, two(self.server_keep_alive)),
            (AUTH_METHOD, string(&self.authentication_method)),
            (AUTH_DATA, binary(&self.authentication_data)),
            (
                REQUEST_PROBLEM_INFO,
                boolean(self.request_problem_information),
            ),
            (WILL_DELAY, four(self.will_delay_interval)),
            (
                REQUEST_RESPONSE_INFO,
                boolean(self.request_response_information),
            ),
            (RESPONSE_INFO, string(&self.response_information)),
            (SERVER_REFERENCE, string(&self.server_reference)),
            (REASON_STRING, string(&self.reason_string)),
            (RECEIVE_MAXIMUM, two(self.receive_maximum)),
            (TOPIC_ALIAS_MAXIMUM, two(self.topic_alias_maximum)),
            (TOPIC_ALIAS, two(self.topic_alias)),
            (MAXIMUM_QOS, byte(self.maximum_qos)),
            (RETAIN_AVAILABLE, boolean(self.retain_available)),
            (MAXIMUM_PACKET_SIZE, four(self.maximum_packet_size)),
            (
                WILDCARD_SUB_AVAILABLE,
                boolean(self.wildcard_subscription_available),
            ),
            (
                SUB_ID_AVAILABLE,
                boolean(self.subscription_identifier_available),
            ),
            (
                SHARED_SUB_AVAILABLE,
                boolean(self.shared_subscription_available),
            ),
        ];
        for (id, value) in singles {
            if let Some(value) = value {
                emit(id, value)?;
            }
        }
        for &id in &self.subscription_identifiers {
            emit(SUBSCRIPTION_ID, Value::Vbi(id))?;
        }
        for (name, value) in &self.user_properties {
            emit(USER_PROPERTY, Value::Pair(name, value))?;
        }
        Ok(())
    }
}

/// One property value on the wire.
enum Value<'a> {
    Byte(u8),
    Two(u16),
    Four(u32),
    Vbi(u32),
    Str(&'a str),
    Bin(&'a [u8]),
    Pair(&'a str, &'a str),
}

impl Value<'_> {
    fn len(&self) -> usize {
        match self {
            Value::Byte(_) => 1,
            Value::Two(_) => 2,
            Value::Four(_) => 4,
            Value::Vbi(v) => vbi_len(*v as usize),
            Value::Str(s) => 2 + s.len(),
            Value::Bin(b) => 2 + b.len(),
            Value::Pair(k, v) => 4 + k.len() + v.len(),
        }
    }

    fn put(&self, buf: &mut BytesMut) -> Result<(), CodecError> {
        match self {
            Value::Byte(v) => buf.put_u8(*v),
            Value::Two(v) => buf.put_u16(*v),
            Value::Four(v) => buf.put_u32(*v),
            Value::Vbi(v) => {
                if *v == 0 || *v > MAX_VBI {
                    return Err(CodecError::Encode("subscription identifier out of range"));
                }
                put_vbi(buf, *v as usize)?;
            }
            Value::Str(s) => put_string(buf, s)?,
            Value::Bin(b) => put_binary(buf, b)?,
            Value::Pair(k, v) => {
                put_string(buf, k)?;
                put_string(buf, v)?;
            }
        }
        Ok(())
    }
}
