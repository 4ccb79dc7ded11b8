//! SIGHUP: read the config file again and apply what can change live.
//!
//! The file is parsed and validated by the same loader as at start; an
//! invalid file changes nothing. Otherwise [`Config::plan_reload`] keeps the
//! parts that need a restart at their running values (and names them in one
//! warning), each listener takes its new settings and reads its
//! certificates, keys and CA bundle from disk again, and the broker's live
//! config, the `on_deny` setting and the log filter are replaced. New
//! connections are admitted under the new config; connections already up
//! keep the snapshot they were admitted under.

use std::sync::Arc;

use crate::broker::Broker;
use crate::config::{Config, ListenerConfig, ReloadPlan};
use crate::listener::Listener;

use super::log_level::{self, LevelChange};

/// Reload the config file of a running broker; every outcome is logged.
/// `listeners` are the running ones, in config order.
pub async fn reload(broker: &Broker, listeners: &[Arc<Listener>]) {
    let running = broker.config();
    let Some(path) = running.source.clone() else {
        tracing::info!(
            "config reload: running on the embedded default config (no file); nothing to reload"
        );
        return;
    };
    let loaded = tokio::task::spawn_blocking(move || Config::load(&path))
        .await
        .map_err(|e| e.to_string())
        .and_then(|config| config.map_err(|e| e.to_string()));
    let new = match loaded {
        Ok(config) => config,
        Err(err) => {
            // ConfigError names the file, the field and the line.
            tracing::error!("config reload failed, the running config stays: {err}");
            return;
        }
    };
    let ReloadPlan {
        mut config,
        needs_restart,
    } = running.plan_reload(new);
    let listeners = listeners.to_vec();
    let wanted = std::mem::take(&mut config.listeners);
    // Certificate files are read here: off the runtime's workers.
    let applied = tokio::task::spawn_blocking(move || apply_listeners(&listeners, wanted)).await;
    let tls_reloaded;
    (config.listeners, tls_reloaded) = match applied {
        Ok(applied) => applied,
        Err(err) => {
            tracing::error!("config reload failed, the running config stays: {err}");
            return;
        }
    };
    broker.authz.set_on_deny(config.policy.on_deny);
    if let Err(err) = crate::auth::jwt::install(broker, &config) {
        tracing::error!("config reload: keeping the previous JWT settings: {err}");
        config.auth.jwt = running.auth.jwt.clone();
    }
    broker
        .stats
        .flow
        .set_enabled(crate::observe::counting_wanted(&config));
    // Reopened even when unchanged: SIGHUP after an external logrotate.
    if let Err(err) = broker.audit.open(&config.audit) {
        tracing::error!(error = %err, "audit log: cannot reopen; it stays as it was");
    }
    let log = log_level(&running, &config);
    broker.replace_config(Arc::new(config));
    if !needs_restart.is_empty() {
        tracing::warn!(
            "config reload: these changes need a restart: {}",
            needs_restart.join(", ")
        );
    }
    tracing::info!(
        restart_needed = needs_restart.len(),
        tls_listeners_reloaded = tls_reloaded,
        log_level = log,
        "config reloaded; new connections use it"
    );
}

/// Apply each listener's new settings; returns the settings they run with
/// (a listener whose TLS files cannot be used keeps its TLS settings) and
/// how many TLS listeners took new certificates.
fn apply_listeners(
    listeners: &[Arc<Listener>],
    wanted: Vec<ListenerConfig>,
) -> (Vec<ListenerConfig>, usize) {
    let mut running = Vec::with_capacity(listeners.len());
    let mut tls_reloaded = 0;
    for (listener, cfg) in listeners.iter().zip(wanted) {
        let tls = cfg.tls().is_some();
        let done = listener.reload(cfg);
        if tls && done.tls_error.is_none() {
            tls_reloaded += 1;
        }
        if let Some(err) = &done.tls_error {
            tracing::error!(listener = %listener.name(), "config reload: keeping the previous certificates of this listener: {err}");
        } else if done.ca_changed {
            tracing::info!(listener = %listener.name(), "config reload: client CA bundle changed; remembered client chains dropped");
        }
        running.push(Arc::unwrap_or_clone(done.config));
    }
    (running, tls_reloaded)
}

/// Apply `log.level`; what the summary line says about it.
fn log_level(running: &Config, next: &Config) -> &'static str {
    match log_level::apply(&next.log.level) {
        Ok(LevelChange::Applied) if running.log.level != next.log.level => "changed",
        Ok(LevelChange::Applied) | Ok(LevelChange::NoControl) => "unchanged",
        Ok(LevelChange::KeptRustLog) => "RUST_LOG decides",
        Err(err) => {
            tracing::error!("config reload: {err}");
            "unchanged"
        }
    }
}
