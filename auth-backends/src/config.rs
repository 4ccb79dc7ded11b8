//! Store configuration: which backend, where, and how long a call may take.
//!
//! Two steps, as in vector: `validate` is pure and names the field; `open`
//! does the I/O and returns the store ready to use (migrations applied).

// With no backend feature the enum is empty and some items go unused.
#![cfg_attr(not(feature = "sqlite"), allow(unused))]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::store::AdminStore;

/// The timeout of one store call when the config names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer timeouts are refused: a login should not hang for minutes.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// `backend:` picks the variant. Each variant exists only when its cargo
/// feature is on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum StoreConfig {
    #[cfg(feature = "sqlite")]
    Sqlite {
        /// The database file; created if missing. Its directory must exist.
        path: PathBuf,
        /// Per-call timeout, e.g. "5s" or "500ms"; default 5 s.
        #[serde(
            default,
            with = "humantime_opt",
            skip_serializing_if = "Option::is_none"
        )]
        timeout: Option<Duration>,
    },
}

/// A configuration value that cannot work; `field` is the key's path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl StoreConfig {
    /// The SQLite store at `path` with the default timeout.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig::Sqlite {
            path: path.into(),
            timeout: None,
        }
    }

    /// Check the values without touching the file system or the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite { ref path, timeout } => {
                if path.as_os_str().is_empty() {
                    return Err(ConfigError {
                        field: "store.path",
                        message: "must not be empty".to_owned(),
                    });
                }
                validate_timeout(timeout)
            }
        }
    }

    /// The per-call timeout in force.
    pub fn timeout(&self) -> Duration {
        match *self {
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite { timeout, .. } => timeout.unwrap_or(DEFAULT_TIMEOUT),
        }
    }
}

fn validate_timeout(timeout: Option<Duration>) -> Result<(), ConfigError> {
    match timeout {
        Some(t) if t.is_zero() => Err(ConfigError {
            field: "store.timeout",
            message: "must be greater than zero".to_owned(),
        }),
        Some(t) if t > MAX_TIMEOUT => Err(ConfigError {
            field: "store.timeout",
            message: format!(
                "must be at most {}",
                humantime::format_duration(MAX_TIMEOUT)
            ),
        }),
        _ => Ok(()),
    }
}

/// Validate, connect, apply migrations, and hand back the store.
///
/// A bad value is `Invalid`; a store that cannot be opened (missing
/// directory, no permission, locked past the timeout) is `Unavailable`.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn AdminStore>, StoreError> {
    config.validate().map_err(|e| StoreError::Invalid {
        field: e.field.to_owned(),
        message: e.message,
    })?;
    match *config {
        #[cfg(feature = "sqlite")]
        StoreConfig::Sqlite { ref path, .. } => {
            let store = crate::sqlite::SqliteStore::open(path, config.timeout()).await?;
            Ok(Arc::new(store))
        }
    }
}

mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => humantime::parse_duration(&text)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?}: {e}"))),
            None => Ok(None),
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<StoreConfig, serde_yaml::Error> {
        serde_yaml::from_str(yaml)
    }

    #[test]
    fn sqlite_from_yaml() {
        let config = parse("backend: sqlite\npath: /tmp/w.db\ntimeout: 250ms\n").unwrap();
        assert_eq!(
            config,
            StoreConfig::Sqlite {
                path: "/tmp/w.db".into(),
                timeout: Some(Duration::from_millis(250))
            }
        );
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.timeout(), Duration::from_millis(250));
        assert_eq!(
            parse("backend: sqlite\npath: a.db\n").unwrap().timeout(),
            DEFAULT_TIMEOUT
        );
    }

    #[test]
    fn unknown_keys_and_backends_are_refused() {
        assert!(parse("backend: sqlite\npath: a.db\npaht: b\n").is_err());
        assert!(parse("backend: oracle\npath: a.db\n").is_err());
        assert!(parse("backend: sqlite\npath: a.db\ntimeout: soon\n").is_err());
    }

    #[test]
    fn validate_names_the_field() {
        let empty = StoreConfig::sqlite("");
        assert_eq!(empty.validate().unwrap_err().field, "store.path");
        let zero = StoreConfig::Sqlite {
            path: "a.db".into(),
            timeout: Some(Duration::ZERO),
        };
        assert_eq!(zero.validate().unwrap_err().field, "store.timeout");
        let long = StoreConfig::Sqlite {
            path: "a.db".into(),
            timeout: Some(Duration::from_secs(3600)),
        };
        assert_eq!(long.validate().unwrap_err().field, "store.timeout");
    }

    #[test]
    fn round_trips_through_yaml() {
        let config = StoreConfig::Sqlite {
            path: "x.db".into(),
            timeout: Some(Duration::from_secs(2)),
        };
        let text = serde_yaml::to_string(&config).unwrap();
        assert_eq!(parse(&text).unwrap(), config);
    }
}
