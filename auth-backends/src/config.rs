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
    /// `url: postgres://user@host:5432/db` (`?sslmode=require` for TLS).
    #[cfg(feature = "postgres")]
    Postgres {
        url: String,
        /// Pool size; default 8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pool: Option<u32>,
        #[serde(
            default,
            with = "humantime_opt",
            skip_serializing_if = "Option::is_none"
        )]
        timeout: Option<Duration>,
    },
    /// `url: mysql://root@host:3306/db` (MySQL or MariaDB; `?ssl-mode=required` for TLS).
    #[cfg(feature = "mysql")]
    Mysql {
        url: String,
        /// Pool size; default 8.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pool: Option<u32>,
        #[serde(
            default,
            with = "humantime_opt",
            skip_serializing_if = "Option::is_none"
        )]
        timeout: Option<Duration>,
    },
    /// `url: mongodb://host:27017/warden` (the database is the URL path,
    /// default "warden"; `?tls=true` for TLS).
    #[cfg(feature = "mongodb")]
    Mongodb {
        url: String,
        #[serde(
            default,
            with = "humantime_opt",
            skip_serializing_if = "Option::is_none"
        )]
        timeout: Option<Duration>,
    },
    /// `url: redis://host:6379/0` (`rediss://` for TLS). Every key starts
    /// with `prefix` (default "warden:").
    #[cfg(feature = "redis")]
    Redis {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
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
            #[cfg(feature = "postgres")]
            StoreConfig::Postgres {
                ref url,
                pool,
                timeout,
            } => {
                validate_url(url, &["postgres", "postgresql"])?;
                validate_pool(pool)?;
                validate_timeout(timeout)
            }
            #[cfg(feature = "mysql")]
            StoreConfig::Mysql {
                ref url,
                pool,
                timeout,
            } => {
                validate_url(url, &["mysql", "mariadb"])?;
                validate_pool(pool)?;
                validate_timeout(timeout)
            }
            #[cfg(feature = "mongodb")]
            StoreConfig::Mongodb { ref url, timeout } => {
                validate_url(url, &["mongodb", "mongodb+srv"])?;
                validate_timeout(timeout)
            }
            #[cfg(feature = "redis")]
            StoreConfig::Redis {
                ref url,
                ref prefix,
                timeout,
            } => {
                validate_url(url, &["redis", "rediss"])?;
                if prefix.as_deref().is_some_and(str::is_empty) {
                    return Err(ConfigError {
                        field: "store.prefix",
                        message: "must not be empty".to_owned(),
                    });
                }
                validate_timeout(timeout)
            }
        }
    }

    /// The backend's name, as in `backend:`.
    pub fn backend(&self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite { .. } => "sqlite",
            #[cfg(feature = "postgres")]
            StoreConfig::Postgres { .. } => "postgres",
            #[cfg(feature = "mysql")]
            StoreConfig::Mysql { .. } => "mysql",
            #[cfg(feature = "mongodb")]
            StoreConfig::Mongodb { .. } => "mongodb",
            #[cfg(feature = "redis")]
            StoreConfig::Redis { .. } => "redis",
        }
    }

    /// Where the store is, fit for a log line: the SQLite path, or the URL
    /// without its password and query (which may carry one), e.g.
    /// `postgres://warden:***@db:5432/warden`.
    pub fn redacted(&self) -> String {
        match self {
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite { path, .. } => format!("sqlite:{}", path.display()),
            #[cfg(feature = "postgres")]
            StoreConfig::Postgres { url, .. } => redact_url(url),
            #[cfg(feature = "mysql")]
            StoreConfig::Mysql { url, .. } => redact_url(url),
            #[cfg(feature = "mongodb")]
            StoreConfig::Mongodb { url, .. } => redact_url(url),
            #[cfg(feature = "redis")]
            StoreConfig::Redis { url, .. } => redact_url(url),
        }
    }

    /// The per-call timeout in force.
    pub fn timeout(&self) -> Duration {
        match *self {
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite { timeout, .. } => timeout.unwrap_or(DEFAULT_TIMEOUT),
            #[cfg(feature = "postgres")]
            StoreConfig::Postgres { timeout, .. } => timeout.unwrap_or(DEFAULT_TIMEOUT),
            #[cfg(feature = "mysql")]
            StoreConfig::Mysql { timeout, .. } => timeout.unwrap_or(DEFAULT_TIMEOUT),
            #[cfg(feature = "mongodb")]
            StoreConfig::Mongodb { timeout, .. } => timeout.unwrap_or(DEFAULT_TIMEOUT),
            #[cfg(feature = "redis")]
            StoreConfig::Redis { timeout, .. } => timeout.unwrap_or(DEFAULT_TIMEOUT),
        }
    }

    /// The same store with another per-call timeout: bulk admin writes
    /// (imports) take longer than any login may.
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> StoreConfig {
        let mut config = self.clone();
        match config {
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite {
                timeout: ref mut t, ..
            } => *t = Some(timeout),
            #[cfg(feature = "postgres")]
            StoreConfig::Postgres {
                timeout: ref mut t, ..
            } => *t = Some(timeout),
            #[cfg(feature = "mysql")]
            StoreConfig::Mysql {
                timeout: ref mut t, ..
            } => *t = Some(timeout),
            #[cfg(feature = "mongodb")]
            StoreConfig::Mongodb {
                timeout: ref mut t, ..
            } => *t = Some(timeout),
            #[cfg(feature = "redis")]
            StoreConfig::Redis {
                timeout: ref mut t, ..
            } => *t = Some(timeout),
        }
        config
    }
}

/// `url` without the password of its userinfo (`***` stands for it) and
/// without its query and fragment. Text that is not `scheme://...` is
/// replaced whole: it cannot be told apart.
#[allow(dead_code)]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".to_owned();
    };
    let strip = |s: &str| s.split(['?', '#']).next().unwrap_or_default().to_owned();
    // The userinfo ends at the last '@': a password may hold a '/', '?' or
    // '#' that its writer did not escape, and must not leak as a path or
    // a query.
    match rest.rsplit_once('@') {
        Some((userinfo, host_and_path)) => {
            let after = strip(host_and_path);
            let user = userinfo
                .split([':', '/', '?', '#'])
                .next()
                .unwrap_or_default();
            if user.len() == userinfo.len() {
                format!("{scheme}://{user}@{after}")
            } else {
                format!("{scheme}://{user}:***@{after}")
            }
        }
        None => format!("{scheme}://{}", strip(rest)),
    }
}

/// The URL must show a scheme this backend speaks; the driver checks the rest
/// when the store is opened.
#[allow(dead_code)]
fn validate_url(url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    match url.split_once("://") {
        Some((scheme, _)) if schemes.contains(&scheme) => Ok(()),
        _ => Err(ConfigError {
            field: "store.url",
            message: format!("expected a URL starting with {}://", schemes.join("://, ")),
        }),
    }
}

#[allow(dead_code)]
fn validate_pool(pool: Option<u32>) -> Result<(), ConfigError> {
    match pool {
        Some(0) => Err(ConfigError {
            field: "store.pool",
            message: "must be at least 1".to_owned(),
        }),
        Some(n) if n > 1024 => Err(ConfigError {
            field: "store.pool",
            message: "must be at most 1024".to_owned(),
        }),
        _ => Ok(()),
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
    let store = connect(config).await?;
    store.migrate().await?;
    Ok(store)
}

/// As [`open`], without applying the schema (`warden migrate` applies it
/// itself, to say what it applied).
pub async fn connect(config: &StoreConfig) -> Result<Arc<dyn AdminStore>, StoreError> {
    config.validate().map_err(|e| StoreError::Invalid {
        field: e.field.to_owned(),
        message: e.message,
    })?;
    match *config {
        #[cfg(feature = "sqlite")]
        StoreConfig::Sqlite { ref path, .. } => {
            let store = crate::sqlite::SqliteStore::connect(path, config.timeout()).await?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        StoreConfig::Postgres { ref url, pool, .. } => {
            let pool = pool.unwrap_or(8);
            let store =
                crate::postgres::PostgresStore::connect(url, pool, config.timeout()).await?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "mysql")]
        StoreConfig::Mysql { ref url, pool, .. } => {
            let pool = pool.unwrap_or(8);
            let store = crate::mysql::MysqlStore::connect(url, pool, config.timeout()).await?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "mongodb")]
        StoreConfig::Mongodb { ref url, .. } => {
            let store = crate::mongodb::MongoStore::connect(url, config.timeout()).await?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "redis")]
        StoreConfig::Redis {
            ref url,
            ref prefix,
            ..
        } => {
            let prefix = prefix.as_deref().unwrap_or("warden:");
            let store = crate::redis::RedisStore::connect(url, prefix, config.timeout()).await?;
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

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn passwords_and_queries_do_not_survive() {
        assert_eq!(
            redact_url("postgres://warden:s3cret@db:5432/warden?sslmode=require"),
            "postgres://warden:***@db:5432/warden"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1:3306/test"),
            "mysql://root@127.0.0.1:3306/test"
        );
        assert_eq!(
            redact_url("redis://:p%40ss@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(
            redact_url("mongodb://u:p@a:1,b:2/warden?password=x"),
            "mongodb://u:***@a:1,b:2/warden"
        );
        assert_eq!(redact_url("not a url with secret"), "***");
        assert_eq!(
            redact_url("postgres://u:a/b?c#d@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
