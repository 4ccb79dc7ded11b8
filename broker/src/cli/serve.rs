//! `warden serve`: install the signal handlers, prepare what a first run
//! needs (data dir, development certificates, schema), then run the broker:
//! SIGHUP reloads the config, Ctrl-C or SIGTERM stops it.

use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::lifecycle::Signals;

pub async fn run(config: Config) -> anyhow::Result<()> {
    // First of all: until SIGHUP is handled, one kills the process.
    let signals = Signals::install().context("cannot install signal handlers")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let mut ca_note = None;
    if config
        .listeners
        .iter()
        .any(|l| l.tls().is_some_and(|t| t.dev_certs))
    {
        let dir = config.data_dir.join("certs");
        let dev = crate::certs::ensure_dev_certs(&dir).context("development certificates")?;
        if dev.created {
            tracing::info!(ca = %dev.ca_cert.display(), "created a development CA and server certificate");
        }
        ca_note = Some(dev.ca_cert);
    }
    // Named before it is opened: a store that cannot be reached is then
    // in the log beside the error. The URL goes without its password.
    tracing::info!(
        store = %config.store.redacted(),
        data_dir = %config.data_dir.display(),
        "starting"
    );
    let store = warden_auth::open(&config.store)
        .await
        .context("cannot open the store")?;
    store
        .migrate()
        .await
        .context("cannot apply the store schema")?;
    if let Ok(users) = store.list_users().await {
        if users.is_empty() {
            let cfg = config
                .source
                .as_ref()
                .map(|p| format!(" -c {}", p.display()))
                .unwrap_or_default();
            tracing::info!("no users yet: add one with `warden{cfg} user add NAME` and grant it topics with `warden{cfg} acl add --user NAME --allow publish,subscribe,receive 'FILTER'`");
        }
    }
    if let Some(ca) = ca_note {
        tracing::info!(ca = %ca.display(), "clients verify the server with this CA file (e.g. mosquitto_pub --cafile)");
    }
    let store: Arc<dyn warden_auth::Store> = store;
    crate::server::run(Arc::new(config), store, signals).await?;
    Ok(())
}
