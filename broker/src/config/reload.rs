//! What a reloaded config file can change in a running broker (SIGHUP).
//!
//! Some settings are fixed once the broker runs: a listener's socket (its
//! bind address, transport and name), the store, the data dir, the
//! persistence mode and fsync interval (the session store's writer thread
//! runs with them), and the policy engine's superuser bypass (every
//! compiled policy carries it). [`Config::plan_reload`] keeps those at their
//! running values, names the ones that changed, and takes everything else
//! from the new file. Pure: no file is read here.

use super::{Config, ListenerConfig};

/// A new config as it can be applied to the running broker.
#[derive(Clone, Debug)]
pub struct ReloadPlan {
    /// The new config, with the parts that need a restart left at their
    /// running values; listeners are in the running order, one per socket.
    pub config: Config,
    /// The changed fields that need a restart, e.g. `listeners[0].bind`.
    pub needs_restart: Vec<String>,
}

impl Config {
    /// Merge `new` into this running config; see [`ReloadPlan`].
    pub fn plan_reload(&self, new: Config) -> ReloadPlan {
        let mut needs_restart = Vec::new();
        let mut restart = |changed: bool, field: &str| {
            if changed {
                needs_restart.push(field.to_owned());
            }
        };
        restart(new.data_dir != self.data_dir, "data_dir");
        restart(new.store != self.store, "store");
        restart(
            new.persistence.mode != self.persistence.mode,
            "persistence.mode",
        );
        restart(
            new.persistence.fsync_interval != self.persistence.fsync_interval,
            "persistence.fsync_interval",
        );
        restart(
            new.policy.superuser_bypass != self.policy.superuser_bypass,
            "policy.superuser_bypass",
        );
        restart(new.metrics.bind != self.metrics.bind, "metrics.bind");
        restart(
            new.auth.verify.concurrency != self.auth.verify.concurrency,
            "auth.verify.concurrency",
        );
        // The service's client, caches and breaker are built once.
        restart(new.auth.http != self.auth.http, "auth.http");
        restart(new.auth.webhook != self.auth.webhook, "auth.webhook");
        restart(new.cluster != self.cluster, "cluster");
        restart(new.log.format != self.log.format, "log.format");
        let listeners = merge_listeners(&self.listeners, &new.listeners, &mut needs_restart);
        let mut config = new;
        config.source.clone_from(&self.source);
        config.data_dir.clone_from(&self.data_dir);
        config.store = self.store.clone();
        config.persistence = self.persistence.clone();
        config.policy.superuser_bypass = self.policy.superuser_bypass;
        config.listeners = listeners;
        config.metrics.bind = self.metrics.bind;
        config.auth.verify.concurrency = self.auth.verify.concurrency;
        config.auth.http.clone_from(&self.auth.http);
        config.auth.webhook.clone_from(&self.auth.webhook);
        config.cluster.clone_from(&self.cluster);
        config.log.format = self.log.format;
        ReloadPlan {
            config,
            needs_restart,
        }
    }
}

/// Listeners are matched by position. A running listener keeps its socket
/// (name, bind address, transport) and takes the rest of its new entry; one
/// whose transport changed keeps its old entry whole, as does one the new
/// file no longer has. New entries are not started.
fn merge_listeners(
    running: &[ListenerConfig],
    new: &[ListenerConfig],
    needs_restart: &mut Vec<String>,
) -> Vec<ListenerConfig> {
    let mut merged = Vec::with_capacity(running.len());
    for (i, old) in running.iter().enumerate() {
        let Some(next) = new.get(i) else {
            needs_restart.push(format!("listeners[{i}] (removed)"));
            merged.push(old.clone());
            continue;
        };
        if next.name != old.name {
            needs_restart.push(format!("listeners[{i}].name"));
        }
        if next.bind != old.bind {
            needs_restart.push(format!("listeners[{i}].bind"));
        }
        if next.kind() != old.kind() {
            needs_restart.push(format!("listeners[{i}].kind"));
            merged.push(old.clone());
            continue;
        }
        let mut entry = next.clone();
        entry.name = old.name.clone();
        entry.bind = old.bind;
        merged.push(entry);
    }
    for i in running.len()..new.len() {
        needs_restart.push(format!("listeners[{i}] (added)"));
    }
    merged
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::OnDeny;

    fn config_in(dir: &Path, text: &str) -> Config {
        Config::from_yaml_str(text, dir, Path::new("warden.yaml")).expect("valid config")
    }

    fn config(text: &str) -> Config {
        config_in(Path::new("/srv/warden"), text)
    }

    const BASE: &str = "\
listeners:
  - { name: a, kind: tcp, bind: \"127.0.0.1:1883\" }
  - { name: b, kind: tcp, bind: \"127.0.0.1:1884\", max_connections: 5 }
";

    #[test]
    fn an_unchanged_file_needs_nothing() {
        let running = config(BASE);
        let plan = running.plan_reload(config(BASE));
        assert!(plan.needs_restart.is_empty(), "{:?}", plan.needs_restart);
        assert_eq!(plan.config.listeners, running.listeners);
    }

    #[test]
    fn live_settings_are_taken_and_sockets_kept() {
        let running = config(BASE);
        let new = config(
            "\
listeners:
  - { name: a, kind: tcp, bind: \"127.0.0.1:2883\" }
  - { name: b, kind: tcp, bind: \"127.0.0.1:1884\", max_connections: 9 }
  - { name: c, kind: tcp, bind: \"127.0.0.1:1885\" }
policy: { on_deny: disconnect, superuser_bypass: false }
limits: { max_packet_size: 1000 }
store: { backend: sqlite, path: other.db }
log: { level: debug }
",
        );
        let plan = running.plan_reload(new);
        assert_eq!(
            plan.needs_restart,
            [
                "store",
                "policy.superuser_bypass",
                "listeners[0].bind",
                "listeners[2] (added)"
            ]
        );
        let c = &plan.config;
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(c.listeners[0].bind, running.listeners[0].bind);
        assert_eq!(c.listeners[1].max_connections.get(), 9);
        assert_eq!(c.store, running.store);
        assert!(c.policy.superuser_bypass);
        assert_eq!(c.policy.on_deny, OnDeny::Disconnect);
        assert_eq!(c.limits.max_packet_size, 1000);
        assert_eq!(c.log.level, "debug");
    }

    #[test]
    fn a_changed_transport_or_a_removed_listener_keeps_the_running_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["s.pem", "s.key"] {
            std::fs::write(dir.path().join(f), "").expect("write");
        }
        let running = config_in(dir.path(), BASE);
        let new = config_in(
            dir.path(),
            "\
listeners:
  - { name: x, kind: tls, bind: \"127.0.0.1:1883\", cert: s.pem, key: s.key }
data_dir: /elsewhere
persistence: { mode: sync }
",
        );
        let plan = running.plan_reload(new);
        assert_eq!(
            plan.needs_restart,
            [
                "data_dir",
                // The SQLite file is in the data dir.
                "store",
                "persistence.mode",
                "listeners[0].name",
                "listeners[0].kind",
                "listeners[1] (removed)"
            ]
        );
        assert_eq!(plan.config.listeners, running.listeners);
        assert_eq!(plan.config.data_dir, running.data_dir);
    }
}
