//! A small MQTT 3.1.1/5.0 encoder and decoder written from the specification,
//! independent of `warden-codec`, so the tests check the broker against the
//! spec rather than against the broker's own codec. It only knows what the
//! tests need: the client's packets out, every server packet in.

use bytes::{BufMut, BytesMut};

/// Protocol level on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

impl Version {
    pub fn level(self) -> u8 {
        match self {
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

/// One property value, typed as in MQTT 5.0 §2.2.2.2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prop {
    Byte(u8, u8),
    U16(u8, u16),
    U32(u8, u32),
    VarInt(u8, u32),
    Str(u8, String),
    Bin(u8, Vec<u8>),
    Pair(String, String),
}

pub const PAYLOAD_FORMAT: u8 = 0x01;
pub const MESSAGE_EXPIRY: u8 = 0x02;
pub const CONTENT_TYPE: u8 = 0x03;
pub const RESPONSE_TOPIC: u8 = 0x08;
pub const CORRELATION_DATA: u8 = 0x09;
pub const SUBSCRIPTION_ID: u8 = 0x0B;
pub const SESSION_EXPIRY: u8 = 0x11;
pub const ASSIGNED_CLIENT_ID: u8 = 0x12;
pub const SERVER_KEEP_ALIVE: u8 = 0x13;
pub const REASON_STRING: u8 = 0x1F;
pub const WILL_DELAY: u8 = 0x18;
pub const RECEIVE_MAXIMUM: u8 = 0x21;
pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub const TOPIC_ALIAS: u8 = 0x23;
pub const USER_PROPERTY: u8 = 0x26;
pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub const AUTH_METHOD: u8 = 0x15;
pub const AUTH_DATA: u8 = 0x16;

/// A property list with lookups by identifier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Props(pub Vec<Prop>);

impl Props {
    pub fn u32(&self, id: u8) -> Option<u32> {
        self.0.iter().find_map(|p| match p {
            Prop::U32(i, v) | Prop::VarInt(i, v) if *i == id => Some(*v),
            _ => None,
        })
    }
    pub fn u16(&self, id: u8) -> Option<u16> {
        self.0.iter().find_map(|p| match p {
            Prop::U16(i, v) if *i == id => Some(*v),
            _ => None,
        })
    }
    pub fn str(&self, id: u8) -> Option<&str> {
        self.0.iter().find_map(|p| match p {
            Prop::Str(i, v) if *i == id => Some(v.as_str()),
            _ => None,
        })
    }
    pub fn bin(&self, id: u8) -> Option<&[u8]> {
        self.0.iter().find_map(|p| match p {
            Prop::Bin(i, v) if *i == id => Some(v.as_slice()),
            _ => None,
        })
    }
    /// Every value of a repeatable varint property (subscription identifiers).
    pub fn var_ints(&self, id: u8) -> Vec<u32> {
        self.0
            .iter()
            .filter_map(|p| match p {
                Prop::VarInt(i, v) if *i == id => Some(*v),
                _ => None,
            })
            .collect()
    }
    pub fn user(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|p| match p {
                Prop::Pair(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }
}

/// A PUBLISH as the tests build or read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: u16,
    pub props: Props,
}

impl Publish {
    pub fn new(topic: &str, payload: &[u8], qos: u8) -> Self {
        Self {
            topic: topic.to_string(),
            payload: payload.to_vec(),
            qos,
            packet_id: if qos > 0 { 1 } else { 0 },
            ..Self::default()
        }
    }
}

/// The will of a CONNECT.
#[derive(Clone, Debug, Default)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

/// A CONNECT as the tests build it.
#[derive(Clone, Debug)]
pub struct Connect {
    pub version: Version,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub clean: bool,
    pub keep_alive: u16,
    pub will: Option<Will>,
    pub props: Props,
}

impl Connect {
    pub fn new(version: Version, client_id: &str) -> Self {
        Self {
            version,
            client_id: client_id.to_string(),
            username: None,
            password: None,
            clean: true,
            keep_alive: 60,
            will: None,
            props: Props::default(),
        }
    }
    pub fn login(mut self, user: &str, password: &str) -> Self {
        self.username = Some(user.to_string());
        self.password = Some(password.as_bytes().to_vec());
        self
    }
}

/// One SUBSCRIBE filter with its options byte spelled out.
#[derive(Clone, Debug)]
pub struct Sub {
    pub filter: String,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
}

impl Sub {
    pub fn new(filter: &str, qos: u8) -> Self {
        Self {
            filter: filter.to_string(),
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        }
    }
    fn options(&self) -> u8 {
        self.qos
            | (u8::from(self.no_local) << 2)
            | (u8::from(self.retain_as_published) << 3)
            | (self.retain_handling << 4)
    }
}

/// A packet the broker sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    ConnAck {
        session_present: bool,
        code: u8,
        props: Props,
    },
    Publish(Publish),
    PubAck {
        packet_id: u16,
        code: u8,
    },
    PubRec {
        packet_id: u16,
        code: u8,
    },
    PubRel {
        packet_id: u16,
        code: u8,
    },
    PubComp {
        packet_id: u16,
        code: u8,
    },
    SubAck {
        packet_id: u16,
        codes: Vec<u8>,
    },
    UnsubAck {
        packet_id: u16,
        codes: Vec<u8>,
    },
    PingResp,
    Disconnect {
        code: u8,
        props: Props,
    },
    Auth {
        code: u8,
        props: Props,
    },
}

/// Why bytes from the broker could not be read as a packet.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

pub fn put_var_int(buf: &mut BytesMut, mut value: u32) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    put_bin(buf, s.as_bytes());
}

fn put_bin(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u16(b.len() as u16);
    buf.put_slice(b);
}

fn put_props(buf: &mut BytesMut, props: &Props) {
    let mut body = BytesMut::new();
    for p in &props.0 {
        match p {
            Prop::Byte(id, v) => {
                body.put_u8(*id);
                body.put_u8(*v);
            }
            Prop::U16(id, v) => {
                body.put_u8(*id);
                body.put_u16(*v);
            }
            Prop::U32(id, v) => {
                body.put_u8(*id);
                body.put_u32(*v);
            }
            Prop::VarInt(id, v) => {
                body.put_u8(*id);
                put_var_int(&mut body, *v);
            }
            Prop::Str(id, v) => {
                body.put_u8(*id);
                put_str(&mut body, v);
            }
            Prop::Bin(id, v) => {
                body.put_u8(*id);
                put_bin(&mut body, v);
            }
            Prop::Pair(k, v) => {
                body.put_u8(USER_PROPERTY);
                put_str(&mut body, k);
                put_str(&mut body, v);
            }
        }
    }
    put_var_int(buf, body.len() as u32);
    buf.put_slice(&body);
}

/// Prepends the fixed header to `body`.
pub fn frame(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(first_byte);
    put_var_int(&mut out, body.len() as u32);
    out.put_slice(body);
    out.to_vec()
}

pub fn encode_connect(c: &Connect) -> Vec<u8> {
    let v5 = c.version == Version::V5;
    let mut b = BytesMut::new();
    put_str(&mut b, "MQTT");
    b.put_u8(c.version.level());
    let mut flags = 0u8;
    if c.clean {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos << 3) | (u8::from(w.retain) << 5);
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    b.put_u8(flags);
    b.put_u16(c.keep_alive);
    if v5 {
        put_props(&mut b, &c.props);
    }
    put_str(&mut b, &c.client_id);
    if let Some(w) = &c.will {
        if v5 {
            put_props(&mut b, &w.props);
        }
        put_str(&mut b, &w.topic);
        put_bin(&mut b, &w.payload);
    }
    if let Some(u) = &c.username {
        put_str(&mut b, u);
    }
    if let Some(p) = &c.password {
        put_bin(&mut b, p);
    }
    frame(0x10, &b)
}

pub fn encode_publish(p: &Publish, version: Version) -> Vec<u8> {
    let mut b = BytesMut::new();
    put_str(&mut b, &p.topic);
    if p.qos > 0 {
        b.put_u16(p.packet_id);
    }
    if version == Version::V5 {
        put_props(&mut b, &p.props);
    }
    b.put_slice(&p.payload);
    let first = 0x30 | (u8::from(p.dup) << 3) | (p.qos << 1) | u8::from(p.retain);
    frame(first, &b)
}

pub fn encode_subscribe(packet_id: u16, subs: &[Sub], props: &Props, version: Version) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u16(packet_id);
    if version == Version::V5 {
        put_props(&mut b, props);
    }
    for s in subs {
        put_str(&mut b, &s.filter);
        b.put_u8(if version == Version::V5 {
            s.options()
        } else {
            s.qos
        });
    }
    frame(0x82, &b)
}

pub fn encode_unsubscribe(packet_id: u16, filters: &[&str], version: Version) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u16(packet_id);
    if version == Version::V5 {
        put_props(&mut b, &Props::default());
    }
    for f in filters {
        put_str(&mut b, f);
    }
    frame(0xA2, &b)
}

/// PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70) with success.
pub fn encode_ack(first_byte: u8, packet_id: u16) -> Vec<u8> {
    frame(first_byte, &packet_id.to_be_bytes())
}

pub fn encode_disconnect(version: Version, code: u8) -> Vec<u8> {
    match version {
        Version::V311 => frame(0xE0, &[]),
        Version::V5 => frame(0xE0, &[code, 0]),
    }
}

pub fn encode_pingreq() -> Vec<u8> {
    frame(0xC0, &[])
}

/// AUTH (5.0): reason code and properties.
pub fn encode_auth(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u8(reason);
    put_props(&mut body, props);
    frame(0xF0, &body)
}
