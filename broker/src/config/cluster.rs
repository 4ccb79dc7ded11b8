//! `cluster:` as written to [`ClusterConfig`]: the NATS servers a node joins,
//! the cluster's name (the first token of every subject, so two clusters can
//! share one NATS) and this node's id. Refused on the SQLite store: every
//! node must read the same policy, and a SQLite file belongs to one machine.

use std::time::Duration;

use serde::Deserialize;

use super::locate::Seg;
use super::validate::Ctx;
use super::ConfigError;

/// The file's `cluster:` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub nats_urls: Option<Vec<String>>,
    pub cluster_name: Option<String>,
    pub node_id: Option<String>,
    pub durable_qos: Option<bool>,
    pub durable_max_age: Option<super::types::HumanDuration>,
    pub durable_ack_timeout: Option<super::types::HumanDuration>,
    pub durable_replicas: Option<usize>,
    pub outbox_capacity: Option<usize>,
}

/// A node of a Warden cluster (docs/cluster.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// At least one; async-nats tries them in turn and learns the others
    /// from the server.
    pub nats_urls: Vec<String>,
    /// One NATS subject token: `[A-Za-z0-9_-]+`.
    pub cluster_name: String,
    /// Unique per node; one subject token, like the cluster name.
    pub node_id: String,
    /// QoS 1/2 publishes go through a JetStream stream, and their PUBACK or
    /// PUBREC waits for its acknowledgement (`cluster/durable.rs`).
    pub durable_qos: bool,
    /// How long the stream keeps a message (limits retention).
    pub durable_max_age: Duration,
    /// How long a PUBACK/PUBREC waits for JetStream at most.
    pub durable_ack_timeout: Duration,
    /// Copies of the stream JetStream keeps (1 to 5, at most the servers).
    pub durable_replicas: usize,
    /// Messages the outbox to NATS holds (advanced; tests make it small
    /// to fill it fast). Past it, publishers wait (`cluster/pacing.rs`).
    pub outbox_capacity: usize,
}

/// Default for [`ClusterConfig::cluster_name`].
pub const DEFAULT_CLUSTER_NAME: &str = "warden";

/// Default for [`ClusterConfig::durable_max_age`]: a node may be away this
/// long and still get what it missed.
pub const DEFAULT_DURABLE_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Default for [`ClusterConfig::durable_ack_timeout`]: a JetStream
/// acknowledgement takes a millisecond or two when healthy.
pub const DEFAULT_DURABLE_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest `outbox_capacity`: each place may hold a message, and the
/// channel's memory is taken as it fills.
const MAX_OUTBOX: usize = 1 << 20;

/// The longest cluster name or node id: both travel in subjects and
/// connection names, where every byte counts per message.
const MAX_NAME: usize = 64;

pub(super) fn build(
    raw: Option<RawCluster>,
    store: &warden_auth::StoreConfig,
    ctx: &Ctx<'_>,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let err = |key: Option<&'static str>, message: String| {
        let mut at = vec![Seg::Key("cluster")];
        at.extend(key.map(Seg::Key));
        let field = key.map_or_else(|| "cluster".to_owned(), |k| format!("cluster.{k}"));
        ctx.err(&at, &field, message)
    };
    if store.backend() == "sqlite" {
        return Err(err(
            None,
            "a cluster needs a policy store all nodes share; SQLite is single node only \
             (set store.backend to postgres, mysql, mongodb or redis)"
                .to_owned(),
        ));
    }
    let nats_urls = raw.nats_urls.unwrap_or_default();
    if nats_urls.is_empty() {
        return Err(err(
            Some("nats_urls"),
            "at least one NATS server URL is required, e.g. [\"nats://127.0.0.1:4222\"]".to_owned(),
        ));
    }
    for url in &nats_urls {
        if let Err(e) = url.parse::<async_nats::ServerAddr>() {
            return Err(err(
                Some("nats_urls"),
                format!("{url:?} is not a NATS server URL: {e}"),
            ));
        }
    }
    let cluster_name = raw
        .cluster_name
        .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.to_owned());
    token(&cluster_name).map_err(|why| err(Some("cluster_name"), why))?;
    let Some(node_id) = raw.node_id else {
        return Err(err(
            Some("node_id"),
            "required: a name unique to this node, e.g. node-1".to_owned(),
        ));
    };
    token(&node_id).map_err(|why| err(Some("node_id"), why))?;
    let durable_max_age = raw.durable_max_age.map_or(DEFAULT_DURABLE_MAX_AGE, |d| d.0);
    if durable_max_age < Duration::from_secs(1) {
        return Err(err(
            Some("durable_max_age"),
            "must be at least 1s (JetStream's max_age)".to_owned(),
        ));
    }
    let durable_ack_timeout = raw
        .durable_ack_timeout
        .map_or(DEFAULT_DURABLE_ACK_TIMEOUT, |d| d.0);
    if durable_ack_timeout.is_zero() || durable_ack_timeout > Duration::from_secs(60) {
        return Err(err(
            Some("durable_ack_timeout"),
            "must be between 1ms and 60s: a publisher waits that long for its PUBACK".to_owned(),
        ));
    }
    let durable_replicas = raw.durable_replicas.unwrap_or(1);
    if !(1..=5).contains(&durable_replicas) {
        return Err(err(
            Some("durable_replicas"),
            "must be 1 to 5 (JetStream's limit), at most the NATS servers".to_owned(),
        ));
    }
    let outbox_capacity = raw.outbox_capacity.unwrap_or(crate::cluster::OUTBOX);
    if !(1..=MAX_OUTBOX).contains(&outbox_capacity) {
        return Err(err(
            Some("outbox_capacity"),
            format!("must be 1 to {MAX_OUTBOX} messages"),
        ));
    }
    Ok(Some(ClusterConfig {
        nats_urls,
        cluster_name,
        node_id,
        durable_qos: raw.durable_qos.unwrap_or(false),
        durable_max_age,
        durable_ack_timeout,
        durable_replicas,
        outbox_capacity,
    }))
}

/// A name that is one NATS subject token, readable in logs.
fn token(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("must be 1 to {MAX_NAME} characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "{name:?}: only letters, digits, '-' and '_' (it is a NATS subject token)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    const PG: &str = "store: { backend: postgres, url: \"postgres://127.0.0.1/x\" }\n";

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str(text, Path::new("/srv/warden"), Path::new("warden.yaml"))
    }

    fn refused(text: &str) -> (String, Option<usize>, String) {
        match load(text) {
            Err(e) => (
                e.field().unwrap_or_default().to_owned(),
                e.line(),
                e.to_string(),
            ),
            Ok(_) => panic!("accepted: {text}"),
        }
    }

    #[test]
    fn no_cluster_by_default() {
        assert_eq!(load(PG).expect("valid").cluster, None);
    }

    #[test]
    fn a_cluster_on_a_shared_store() {
        let c = load(&format!(
            "{PG}cluster:\n  nats_urls: [\"nats://127.0.0.1:4222\", \"tls://n2:4222\"]\n  node_id: node-1\n"
        ))
        .expect("valid");
        let cluster = c.cluster.expect("cluster");
        assert_eq!(cluster.node_id, "node-1");
        assert_eq!(cluster.cluster_name, "warden");
        assert_eq!(cluster.nats_urls.len(), 2);
        assert!(!cluster.durable_qos);
        assert_eq!(cluster.durable_max_age, super::DEFAULT_DURABLE_MAX_AGE);
        assert_eq!(cluster.outbox_capacity, 16 * 1024);
    }

    #[test]
    fn durable_qos_with_its_limits() {
        let c = load(&format!(
            "{PG}cluster:\n  nats_urls: [\"nats://a:4222\"]\n  node_id: n1\n  durable_qos: true\n  durable_max_age: 2h\n  durable_ack_timeout: 500ms\n"
        ))
        .expect("valid");
        let cluster = c.cluster.expect("cluster");
        assert!(cluster.durable_qos);
        assert_eq!(cluster.durable_max_age.as_secs(), 7200);
        assert_eq!(cluster.durable_ack_timeout.as_millis(), 500);
        for (line, field) in [
            ("durable_max_age: 10ms", "cluster.durable_max_age"),
            ("durable_ack_timeout: 2m", "cluster.durable_ack_timeout"),
            ("durable_replicas: 0", "cluster.durable_replicas"),
            ("outbox_capacity: 0", "cluster.outbox_capacity"),
        ] {
            let (got, at, _) = refused(&format!(
                "{PG}cluster:\n  nats_urls: [\"nats://a:4222\"]\n  node_id: n1\n  {line}\n"
            ));
            assert_eq!(got, field, "{line}");
            assert!(at.is_some(), "{line}");
        }
    }

    #[test]
    fn sqlite_is_refused_with_the_field_and_line() {
        let text =
            "data_dir: /tmp/w\ncluster:\n  nats_urls: [\"nats://127.0.0.1:4222\"]\n  node_id: n1\n";
        let (field, line, message) = refused(text);
        assert_eq!(field, "cluster");
        assert_eq!(line, Some(2));
        assert!(message.contains("SQLite is single node only"), "{message}");
    }

    #[test]
    fn a_reload_keeps_the_running_cluster() {
        let block =
            |id: &str| format!("{PG}cluster:\n  nats_urls: [\"nats://a:4222\"]\n  node_id: {id}\n");
        let running = load(&block("n1")).expect("valid");
        let plan = running.plan_reload(load(&block("n2")).expect("valid"));
        assert_eq!(plan.needs_restart, ["cluster"]);
        assert_eq!(plan.config.cluster, running.cluster);
    }

    #[test]
    fn bad_values_name_their_field() {
        for (block, field) in [
            ("  node_id: n1\n", "cluster.nats_urls"),
            ("  nats_urls: []\n  node_id: n1\n", "cluster.nats_urls"),
            (
                "  nats_urls: [\"nats://a b\"]\n  node_id: n1\n",
                "cluster.nats_urls",
            ),
            ("  nats_urls: [\"nats://a:4222\"]\n", "cluster.node_id"),
            (
                "  nats_urls: [\"nats://a:4222\"]\n  node_id: \"a.b\"\n",
                "cluster.node_id",
            ),
            (
                "  nats_urls: [\"nats://a:4222\"]\n  node_id: n1\n  cluster_name: \"x y\"\n",
                "cluster.cluster_name",
            ),
        ] {
            let (got, line, _) = refused(&format!("{PG}cluster:\n{block}"));
            assert_eq!(got, field, "{block}");
            assert!(line.is_some(), "{block}");
        }
        let (field, _, _) = refused(&format!("{PG}cluster:\n  nodeid: n1\n"));
        assert!(field.starts_with("cluster"), "{field}");
    }
}
