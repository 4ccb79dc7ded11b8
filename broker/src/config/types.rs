//! Value types of the config file whose checks live in their `Deserialize`
//! impls, so that serde_yaml's error carries the field path and the line.
//!
//! Cross-field checks are not here; they are in `validate.rs`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The largest packet MQTT can express (remaining length 268,435,455 plus the
/// fixed header is what the spec allows; we cap the whole packet at this).
pub const MAX_PACKET_SIZE_LIMIT: u32 = 268_435_455;

/// The transport of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    Tls,
    Tcp,
    /// MQTT over WebSocket on plain TCP.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl ListenerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Tls => "tls",
            ListenerKind::Tcp => "tcp",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }

    /// Whether the listener runs TLS (tls, wss).
    pub fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    /// Whether MQTT is carried in WebSocket frames (ws, wss).
    pub fn is_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }
}

/// Whether a TLS listener asks for, or insists on, a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    None,
    Optional,
    Required,
}

/// Whether a listener asks an OCSP responder about client certificates,
/// and what a missing answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OcspMode {
    #[default]
    Off,
    /// No usable answer (responder down, slow, `unknown`, a bad response):
    /// the client is let in and a warning logged.
    SoftFail,
    /// No usable answer: the client is refused.
    HardFail,
}

impl OcspMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OcspMode::Off => "off",
            OcspMode::SoftFail => "soft_fail",
            OcspMode::HardFail => "hard_fail",
        }
    }
}

/// Which part of a verified client certificate becomes the MQTT username.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsernameFrom {
    /// The subject's common name.
    Cn,
    /// The whole subject as an RFC 4514-style string.
    Subject,
    /// The first DNS name SAN.
    SanDns,
    /// The first e-mail (rfc822Name) SAN.
    SanEmail,
    /// The first URI SAN.
    SanUri,
}

impl UsernameFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            UsernameFrom::Cn => "cn",
            UsernameFrom::Subject => "subject",
            UsernameFrom::SanDns => "san_dns",
            UsernameFrom::SanEmail => "san_email",
            UsernameFrom::SanUri => "san_uri",
        }
    }
}

/// Who may connect with the client id of an existing session (online or
/// offline) that another principal owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Takeover {
    /// Only the principal that created the session; anyone else is refused
    /// (CONNACK 0x85 v5 / 0x02 v3) and the session is left untouched.
    #[default]
    SameUser,
    /// Anyone the connect rules admit: the old connection is closed (0x8E),
    /// the old session discarded, and the newcomer starts clean.
    Any,
}

/// How much of the session state survives a restart, and at what cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PersistenceMode {
    /// Memory only: a restart loses sessions and retained messages.
    None,
    /// Written before the ack (survives kill -9), fsync every
    /// `fsync_interval` (a power cut loses at most that).
    #[default]
    Periodic,
    /// fsync before the ack, with group commit.
    Sync,
}

/// What the broker does to a client whose publish or subscribe is denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDeny {
    /// Refuse that one operation with the protocol's reason code.
    Ignore,
    /// Refuse it and close the connection.
    Disconnect,
}

/// How log lines are written: `text` for people, `json` (one object a
/// line) for log collectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A socket address whose parse error quotes the offending text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindAddr(pub SocketAddr);

impl<'de> Deserialize<'de> for BindAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "a socket address such as \"127.0.0.1:8883\"", |text| {
            text.trim()
                .parse::<SocketAddr>()
                .map(BindAddr)
                .map_err(|_| {
                    format!(
                    "invalid socket address \"{text}\" (expected IP:PORT, e.g. \"127.0.0.1:8883\")"
                )
                })
        })
    }
}

/// Deserializes a string and checks it inside the visitor: an error raised
/// there is placed by serde_yaml at the value, with the value's field path;
/// one raised after `String::deserialize` returns is placed at the mapping.
fn from_str<'de, D, T, F>(d: D, expecting: &'static str, check: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct V<F> {
        expecting: &'static str,
        check: F,
    }
    impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.check)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V { expecting, check })
}

/// A duration written the humantime way: "10s", "1d", "500ms", "1h 30m".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "a duration such as \"10s\" or \"1d\"", |text| {
            humantime::parse_duration(text.trim())
                .map(HumanDuration)
                .map_err(|e| {
                    format!("invalid duration \"{text}\": {e} (expected e.g. \"10s\", \"1d\")")
                })
        })
    }
}

/// A byte count: an integer, or a string such as "65536", "256KiB", "1MiB".
/// Bounded by [`MAX_PACKET_SIZE_LIMIT`] because its only use is packet sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSize(pub u32);

impl PacketSize {
    fn checked(bytes: u64) -> Result<Self, String> {
        if bytes == 0 || bytes > u64::from(MAX_PACKET_SIZE_LIMIT) {
            return Err(format!(
                "packet size {bytes} out of range (1..={MAX_PACKET_SIZE_LIMIT} bytes)"
            ));
        }
        u32::try_from(bytes)
            .map(PacketSize)
            .map_err(|_| format!("packet size {bytes} out of range"))
    }
}

/// Parses "1MiB", "256 KiB", "65536", "64B". Decimal units (kB, MB) are
/// accepted as their decimal meaning because people write them.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size \"{text}\" (expected e.g. \"1MiB\", \"65536\")"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "kB" | "KB" => 1000,
        "MB" => 1_000_000,
        other => {
            return Err(format!(
                "invalid size \"{text}\": unknown unit \"{other}\" (use B, KiB or MiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size \"{text}\": too large"))
}

impl<'de> Deserialize<'de> for PacketSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PacketSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes such as 65536, \"256KiB\" or \"1MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PacketSize, E> {
                PacketSize::checked(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PacketSize, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::custom(format!("packet size {v} must be positive")))?;
                self.visit_u64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PacketSize, E> {
                let bytes = parse_byte_size(v).map_err(E::custom)?;
                PacketSize::checked(bytes).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A `tracing` EnvFilter directive such as "info" or "warden=debug,info".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogDirective(pub String);

impl<'de> Deserialize<'de> for LogDirective {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "a log filter such as \"info\"", |text| {
            tracing_subscriber::EnvFilter::try_new(text)
                .map(|_| LogDirective(text.to_owned()))
                .map_err(|e| format!("invalid log directive \"{text}\": {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("65536"), Ok(65536));
        assert_eq!(parse_byte_size("256KiB"), Ok(262_144));
        assert_eq!(parse_byte_size("1 MiB"), Ok(1_048_576));
        assert_eq!(parse_byte_size("1kB"), Ok(1000));
        assert!(parse_byte_size("1GiB").is_err());
        assert!(parse_byte_size("MiB").is_err());
        assert!(PacketSize::checked(268_435_456).is_err());
        assert!(PacketSize::checked(0).is_err());
        assert_eq!(
            PacketSize::checked(268_435_455),
            Ok(PacketSize(268_435_455))
        );
    }
}
