//! `warden migrate`: apply the schema for the configured store and say what
//! was applied, or that nothing was ("already at version N"). The
//! migrations are versioned, so running it again changes nothing. The
//! broker and the other commands apply pending migrations when they open
//! the store; this command opens it without, to report each step.

use std::sync::Arc;

use anyhow::Context;
use warden_auth::{AdminStore, Migrated, StoreConfig};

use super::output::{print_json, print_text};
use super::Outcome;
use crate::config::Config;

/// Opens the store the config names, creating the data dir first (the
/// embedded default keeps its SQLite file there).
pub async fn open_configured(config: &Config) -> anyhow::Result<Arc<dyn AdminStore>> {
    prepare(config)?;
    warden_auth::open(&config.store)
        .await
        .context("cannot open the store")
}

fn prepare(config: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    // SQLite creates its file but not the directory it sits in.
    if let StoreConfig::Sqlite { path, .. } = &config.store {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
    }
    Ok(())
}

pub async fn run(config: &Config, json: bool) -> anyhow::Result<Outcome> {
    prepare(config)?;
    let store = warden_auth::connect(&config.store)
        .await
        .context("cannot open the store")?;
    let migrated = store.migrate().await.context("cannot apply the schema")?;
    let backend = store.backend();
    if json {
        print_json(&serde_json::json!({
            "backend": backend,
            "applied": migrated.applied,
            "version": migrated.version,
        }))?;
    } else {
        print_text(&render(backend, &migrated))?;
    }
    Ok(Outcome::Success)
}

fn render(backend: &str, migrated: &Migrated) -> String {
    let mut out = String::new();
    for step in &migrated.applied {
        out.push_str(&format!("{backend}: applied {step}\n"));
    }
    match (migrated.applied.is_empty(), migrated.version) {
        (true, Some(v)) => out.push_str(&format!("{backend}: already at version {v}\n")),
        (true, None) => out.push_str(&format!("{backend}: already up to date\n")),
        (false, Some(v)) => out.push_str(&format!("{backend}: now at version {v}\n")),
        (false, None) => out.push_str(&format!("{backend}: up to date\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_then_the_version() {
        let done = Migrated {
            applied: vec!["0003 admin changes".into()],
            version: Some(3),
        };
        assert_eq!(
            render("sqlite", &done),
            "sqlite: applied 0003 admin changes\nsqlite: now at version 3\n"
        );
        let none = Migrated {
            applied: vec![],
            version: Some(3),
        };
        assert_eq!(
            render("postgres", &none),
            "postgres: already at version 3\n"
        );
    }
}
