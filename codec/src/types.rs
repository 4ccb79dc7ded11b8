//! The packet types the codec decodes into and encodes from.
//!
//! QoS is a plain `u8` (0..=2) so the codec depends on no other crate of ours.
//! Topic names and filters are `String`: one small allocation per packet, and
//! the session can hand them to the router without conversion.

use bytes::Bytes;

use crate::properties::Properties;

/// The protocol level announced in CONNECT. The discriminant is the level byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name "MQIsdp", level 3.
    V31 = 3,
    /// MQTT 3.1.1, protocol name "MQTT", level 4.
    V311 = 4,
    /// MQTT 5.0, protocol name "MQTT", level 5.
    V5 = 5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        self as u8
    }

    /// The protocol name of CONNECT.
    pub fn name(self) -> &'static str {
        match self {
            ProtocolVersion::V31 => "MQIsdp",
            ProtocolVersion::V311 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// True for MQTT 5.0, the only version with properties and reason codes.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// One MQTT control packet.
// CONNECT holds two property sets (its own and the will's), so it is about
// twice the size of the other variants; it is decoded once per connection,
// and boxing it would change the shape every caller matches on.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Packet {
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubResp),
    PubRec(PubResp),
    PubRel(PubResp),
    PubComp(PubResp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5.0 only.
    Auth(Auth),
}

impl Packet {
    /// The control packet type number (1 = CONNECT … 15 = AUTH).
    pub fn packet_type(&self) -> u8 {
        match self {
            Packet::Connect(_) => 1,
            Packet::ConnAck(_) => 2,
            Packet::Publish(_) => 3,
            Packet::PubAck(_) => 4,
            Packet::PubRec(_) => 5,
            Packet::PubRel(_) => 6,
            Packet::PubComp(_) => 7,
            Packet::Subscribe(_) => 8,
            Packet::SubAck(_) => 9,
            Packet::Unsubscribe(_) => 10,
            Packet::UnsubAck(_) => 11,
            Packet::PingReq => 12,
            Packet::PingResp => 13,
            Packet::Disconnect(_) => 14,
            Packet::Auth(_) => 15,
        }
    }
}

/// CONNECT. `protocol` decides the wire format when it is encoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    /// Clean Session (3.x) or Clean Start (5.0).
    pub clean_start: bool,
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<LastWill>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub properties: Properties,
}

/// The will message carried in CONNECT.
#[derive(Clone, Debug, PartialEq)]
pub struct LastWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// Will properties (5.0): will delay, payload format, expiry, content
    /// type, response topic, correlation data, user properties.
    pub properties: Properties,
}

/// CONNACK. `code` is the 3.x return code or the 5.0 reason code.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnAck {
    pub session_present: bool,
    pub code: u8,
    pub properties: Properties,
}

/// PUBLISH. `packet_id` is `Some` exactly when `qos > 0`.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    /// May be empty in 5.0 when a topic alias is present.
    pub topic: String,
    pub packet_id: Option<u16>,
    pub properties: Properties,
    /// Sliced from the read buffer on decode, never copied.
    pub payload: Bytes,
}

/// A PUBLISH to encode, borrowing its parts: a broker sends one message to
/// many subscribers without building an owned [`Publish`] (and copying the
/// topic) for each.
#[derive(Clone, Copy, Debug)]
pub struct PublishView<'a> {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: &'a str,
    pub packet_id: Option<u16>,
    pub properties: &'a Properties,
    pub payload: &'a [u8],
}

impl Publish {
    pub fn view(&self) -> PublishView<'_> {
        PublishView {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            properties: &self.properties,
            payload: &self.payload,
        }
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP. `reason` is always 0 in 3.x.
#[derive(Clone, Debug, PartialEq)]
pub struct PubResp {
    pub packet_id: u16,
    pub reason: u8,
    pub properties: Properties,
}

/// One topic filter of a SUBSCRIBE with its options. The 5.0-only options
/// are false/0 in 3.x.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscribeFilter {
    pub filter: String,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0 send retained at subscribe, 1 only for a new subscription, 2 never.
    pub retain_handling: u8,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub filters: Vec<SubscribeFilter>,
    pub properties: Properties,
}

/// SUBACK: one return/reason code per filter, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct SubAck {
    pub packet_id: u16,
    pub codes: Vec<u8>,
    pub properties: Properties,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub filters: Vec<String>,
    pub properties: Properties,
}

/// UNSUBACK: one reason code per filter in 5.0, `codes` empty in 3.x.
#[derive(Clone, Debug, PartialEq)]
pub struct UnsubAck {
    pub packet_id: u16,
    pub codes: Vec<u8>,
    pub properties: Properties,
}

/// DISCONNECT. `reason` and `properties` are 5.0 only (0 and empty in 3.x).
#[derive(Clone, Debug, PartialEq)]
pub struct Disconnect {
    pub reason: u8,
    pub properties: Properties,
}

/// AUTH (5.0 only).
#[derive(Clone, Debug, PartialEq)]
pub struct Auth {
    pub reason: u8,
    pub properties: Properties,
}
