//! Codec errors and the MQTT 5.0 reason codes they map to.

/// An MQTT 5.0 reason code. The constants name the codes the broker sends;
/// any byte can be wrapped, so unknown codes survive a round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    pub const SUCCESS: Self = Self(0x00);
    pub const GRANTED_QOS_1: Self = Self(0x01);
    pub const GRANTED_QOS_2: Self = Self(0x02);
    pub const DISCONNECT_WITH_WILL: Self = Self(0x04);
    pub const NO_MATCHING_SUBSCRIBERS: Self = Self(0x10);
    pub const NO_SUBSCRIPTION_EXISTED: Self = Self(0x11);
    pub const CONTINUE_AUTHENTICATION: Self = Self(0x18);
    pub const RE_AUTHENTICATE: Self = Self(0x19);
    pub const UNSPECIFIED_ERROR: Self = Self(0x80);
    pub const MALFORMED_PACKET: Self = Self(0x81);
    pub const PROTOCOL_ERROR: Self = Self(0x82);
    pub const IMPLEMENTATION_SPECIFIC_ERROR: Self = Self(0x83);
    pub const UNSUPPORTED_PROTOCOL_VERSION: Self = Self(0x84);
    pub const CLIENT_IDENTIFIER_NOT_VALID: Self = Self(0x85);
    pub const BAD_USER_NAME_OR_PASSWORD: Self = Self(0x86);
    pub const NOT_AUTHORIZED: Self = Self(0x87);
    pub const SERVER_UNAVAILABLE: Self = Self(0x88);
    pub const SERVER_BUSY: Self = Self(0x89);
    pub const BANNED: Self = Self(0x8A);
    pub const SERVER_SHUTTING_DOWN: Self = Self(0x8B);
    pub const BAD_AUTHENTICATION_METHOD: Self = Self(0x8C);
    pub const KEEP_ALIVE_TIMEOUT: Self = Self(0x8D);
    pub const SESSION_TAKEN_OVER: Self = Self(0x8E);
    pub const TOPIC_FILTER_INVALID: Self = Self(0x8F);
    pub const TOPIC_NAME_INVALID: Self = Self(0x90);
    pub const PACKET_IDENTIFIER_IN_USE: Self = Self(0x91);
    pub const PACKET_IDENTIFIER_NOT_FOUND: Self = Self(0x92);
    pub const RECEIVE_MAXIMUM_EXCEEDED: Self = Self(0x93);
    pub const TOPIC_ALIAS_INVALID: Self = Self(0x94);
    pub const PACKET_TOO_LARGE: Self = Self(0x95);
    pub const MESSAGE_RATE_TOO_HIGH: Self = Self(0x96);
    pub const QUOTA_EXCEEDED: Self = Self(0x97);
    pub const ADMINISTRATIVE_ACTION: Self = Self(0x98);
    pub const PAYLOAD_FORMAT_INVALID: Self = Self(0x99);
    pub const RETAIN_NOT_SUPPORTED: Self = Self(0x9A);
    pub const QOS_NOT_SUPPORTED: Self = Self(0x9B);
    pub const USE_ANOTHER_SERVER: Self = Self(0x9C);
    pub const SERVER_MOVED: Self = Self(0x9D);
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0x9E);
    pub const CONNECTION_RATE_EXCEEDED: Self = Self(0x9F);
    pub const MAXIMUM_CONNECT_TIME: Self = Self(0xA0);
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: Self = Self(0xA1);
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0xA2);

    /// The raw byte.
    pub fn value(self) -> u8 {
        self.0
    }
}

impl From<ReasonCode> for u8 {
    fn from(code: ReasonCode) -> u8 {
        code.0
    }
}

/// MQTT 3.x CONNACK return codes.
pub mod v3_return_code {
    pub const ACCEPTED: u8 = 0x00;
    pub const UNACCEPTABLE_PROTOCOL_VERSION: u8 = 0x01;
    pub const IDENTIFIER_REJECTED: u8 = 0x02;
    pub const SERVER_UNAVAILABLE: u8 = 0x03;
    pub const BAD_USERNAME_OR_PASSWORD: u8 = 0x04;
    pub const NOT_AUTHORIZED: u8 = 0x05;
}

/// Why a packet could not be decoded or encoded. After a decode error the
/// connection must be closed: the buffer may have been partly consumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes break an encoding rule of the specification (reason 0x81).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well-formed bytes that the protocol does not allow here (reason 0x82).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The whole packet (fixed header included) exceeds the maximum packet
    /// size; detected from the fixed header alone (reason 0x95).
    #[error("packet of {size} bytes exceeds the maximum packet size {max}")]
    PacketTooLarge { size: u64, max: u32 },
    /// CONNECT names a protocol name or level this codec does not speak.
    /// Answer CONNACK 0x01 (3.x format) or 0x84 (5.0 format, when
    /// `level >= 5`), then close.
    #[error("unsupported protocol: name {name:?}, level {level}")]
    UnsupportedProtocol { name: String, level: u8 },
    /// The packet cannot be represented on the wire (a string over 65535
    /// bytes, a packet over 256 MiB, QoS > 2, a 5.0-only packet in 3.x …).
    #[error("cannot encode packet: {0}")]
    Encode(&'static str),
}

impl CodecError {
    /// The MQTT 5.0 reason code for a DISCONNECT (or CONNACK) about this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            CodecError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            CodecError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            CodecError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            CodecError::UnsupportedProtocol { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            CodecError::Encode(_) => ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
        }
    }

    /// True when the session should answer with an "unsupported protocol
    /// version" CONNACK (0x01 in 3.x, 0x84 in 5.0) before closing.
    pub fn is_unsupported_protocol(&self) -> bool {
        matches!(self, CodecError::UnsupportedProtocol { .. })
    }

    /// The CONNACK to send for an unsupported protocol, as
    /// `(answer in 5.0 format, code)`: 5.0 format with 0x84 when the client
    /// asked for level 5 or above, else 3.x format with 0x01. `None` for
    /// every other error.
    pub fn unsupported_protocol_connack(&self) -> Option<(bool, u8)> {
        match self {
            CodecError::UnsupportedProtocol { level, .. } if *level >= 5 => {
                Some((true, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION.0))
            }
            CodecError::UnsupportedProtocol { .. } => {
                Some((false, v3_return_code::UNACCEPTABLE_PROTOCOL_VERSION))
            }
            _ => None,
        }
    }
}
