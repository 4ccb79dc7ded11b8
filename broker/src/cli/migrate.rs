//! `warden migrate`: apply the schema for the configured store. The
//! migrations are versioned, so running it again changes nothing.

use std::sync::Arc;

use anyhow::Context;
use warden_auth::{AdminStore, StoreConfig};

use super::output::{print_json, print_text};
use super::Outcome;
use crate::config::Config;

/// Opens the store the config names, creating the data dir first (the
/// embedded default keeps its SQLite file there).
pub async fn open_configured(config: &Config) -> anyhow::Result<Arc<dyn AdminStore>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    // SQLite creates its file but not the directory it sits in.
    if let StoreConfig::Sqlite { path, .. } = &config.store {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
    }
    warden_auth::open(&config.store)
        .await
        .context("cannot open the store")
}

pub async fn run(config: &Config, json: bool) -> anyhow::Result<Outcome> {
    let store = open_configured(config).await?;
    store.migrate().await.context("cannot apply the schema")?;
    let backend = store.backend();
    if json {
        print_json(&serde_json::json!({ "backend": backend, "result": "migrated" }))?;
    } else {
        print_text(&format!("{backend}: schema up to date\n"))?;
    }
    Ok(Outcome::Success)
}
