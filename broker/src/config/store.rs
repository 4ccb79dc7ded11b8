//! The `store:` block: read as one flat struct (every key of every backend,
//! unknown keys refused) and only then turned into the backend's
//! [`StoreConfig`]. Read straight into the tagged enum, serde would buffer
//! the block and its errors would lose their field and line; this way a
//! wrong type, an unknown key or a key of another backend is placed like
//! any other config error.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use warden_auth::StoreConfig;

use super::locate::Seg;
use super::types::HumanDuration;
use super::validate::Ctx;
use super::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Option<String>,
    pub path: Option<PathBuf>,
    pub url: Option<String>,
    pub pool: Option<u32>,
    pub timeout: Option<HumanDuration>,
    pub prefix: Option<String>,
}

/// The backends this build has, for messages.
const BACKENDS: &[&str] = &[
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "mysql")]
    "mysql",
    #[cfg(feature = "mongodb")]
    "mongodb",
    #[cfg(feature = "redis")]
    "redis",
];

fn at(key: &'static str) -> [Seg<'static>; 2] {
    [Seg::Key("store"), Seg::Key(key)]
}

impl RawStore {
    /// The keys given, by name (for "not a key of this backend").
    fn given(&self) -> [(&'static str, bool); 5] {
        [
            ("path", self.path.is_some()),
            ("url", self.url.is_some()),
            ("pool", self.pool.is_some()),
            ("timeout", self.timeout.is_some()),
            ("prefix", self.prefix.is_some()),
        ]
    }
}

/// The store the block describes; a relative SQLite path resolves against
/// `data_dir`. Values are checked (`StoreConfig::validate`) before any
/// path is resolved: an empty path joined to data_dir would silently
/// become data_dir itself.
pub(super) fn build(
    raw: Option<RawStore>,
    data_dir: &Path,
    ctx: &Ctx<'_>,
) -> Result<StoreConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(StoreConfig::sqlite(data_dir.join("warden.db")));
    };
    let Some(backend) = raw.backend.clone() else {
        return Err(ctx.err(
            &[Seg::Key("store")],
            "store.backend",
            format!("missing; one of {}", BACKENDS.join(", ")),
        ));
    };
    let keys: &[&str] = match backend.as_str() {
        "sqlite" => &["path", "timeout"],
        "postgres" | "mysql" => &["url", "pool", "timeout"],
        "mongodb" => &["url", "timeout"],
        "redis" => &["url", "prefix", "timeout"],
        _ => &[],
    };
    if !BACKENDS.contains(&backend.as_str()) {
        return Err(ctx.err(
            &at("backend"),
            "store.backend",
            format!(
                "unknown backend \"{backend}\" (this build has {})",
                BACKENDS.join(", ")
            ),
        ));
    }
    for (key, present) in raw.given() {
        if present && !keys.contains(&key) {
            return Err(ctx.err(
                &at(key),
                &format!("store.{key}"),
                format!(
                    "not a key of the {backend} store (it takes {})",
                    keys.join(", ")
                ),
            ));
        }
    }
    let store = typed(raw, &backend, ctx)?;
    if let Err(e) = store.validate() {
        let at: Vec<Seg<'_>> = e.field.split('.').map(Seg::Key).collect();
        return Err(ctx.err(&at, e.field, e.message));
    }
    Ok(match store {
        #[cfg(feature = "sqlite")]
        StoreConfig::Sqlite { path, timeout } => StoreConfig::Sqlite {
            path: super::validate::clean(&data_dir.join(path)),
            timeout,
        },
        #[allow(unreachable_patterns)]
        other => other,
    })
}

/// The backend's variant, its required keys present.
fn typed(raw: RawStore, backend: &str, ctx: &Ctx<'_>) -> Result<StoreConfig, ConfigError> {
    let timeout = raw.timeout.map(|t| t.0);
    let url = || {
        raw.url.clone().ok_or_else(|| {
            ctx.err(
                &[Seg::Key("store")],
                "store.url",
                format!("missing; the {backend} store needs a url"),
            )
        })
    };
    Ok(match backend {
        #[cfg(feature = "sqlite")]
        "sqlite" => StoreConfig::Sqlite {
            path: raw.path.clone().ok_or_else(|| {
                ctx.err(
                    &[Seg::Key("store")],
                    "store.path",
                    "missing; the sqlite store needs a path",
                )
            })?,
            timeout,
        },
        #[cfg(feature = "postgres")]
        "postgres" => StoreConfig::Postgres {
            url: url()?,
            pool: raw.pool,
            timeout,
        },
        #[cfg(feature = "mysql")]
        "mysql" => StoreConfig::Mysql {
            url: url()?,
            pool: raw.pool,
            timeout,
        },
        #[cfg(feature = "mongodb")]
        "mongodb" => StoreConfig::Mongodb {
            url: url()?,
            timeout,
        },
        #[cfg(feature = "redis")]
        "redis" => StoreConfig::Redis {
            url: url()?,
            prefix: raw.prefix.clone(),
            timeout,
        },
        other => {
            return Err(ctx.err(
                &at("backend"),
                "store.backend",
                format!("unknown backend \"{other}\""),
            ))
        }
    })
}
