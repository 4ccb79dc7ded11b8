//! A nats-server of the test's own: Debian's `/usr/sbin/nats-server` on free
//! loopback ports (client and monitoring), with its own store dir, killed on
//! drop. The system NATS on 4222 is never touched.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A free loopback port (bound and released: a small race that tests accept).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct NatsServer {
    pub port: u16,
    pub monitor_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// More arguments for nats-server (`start_with`).
    extra: Vec<String>,
}

impl NatsServer {
    /// Start on free ports and wait until it accepts connections.
    pub fn start() -> NatsServer {
        Self::start_with(&[])
    }

    /// [`NatsServer::start`] with JetStream enabled (the cluster's session
    /// ownership bucket and retained stream need it). Its store survives
    /// [`NatsServer::stop`] and [`NatsServer::resume`].
    pub fn start_js() -> NatsServer {
        Self::start_with(&["-js"])
    }

    /// [`Self::start`] with more nats-server arguments (`-js` for
    /// JetStream, which keeps its data under the server's own store dir).
    pub fn start_with(args: &[&str]) -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("warden-e2e-nats-")
            .tempdir()
            .expect("tempdir");
        let mut server = NatsServer {
            port: free_port(),
            monitor_port: free_port(),
            dir,
            child: None,
            extra: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.resume();
        server
    }

    /// Whether the process runs (not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `/varz`: the server's totals (in_msgs, in_bytes, out_msgs, out_bytes…).
    pub async fn varz(&self) -> serde_json::Value {
        crate::http::get(self.monitor(), "/varz", None).await.json()
    }

    /// `/jsz?streams=1&consumers=1`: JetStream's view (meta leader,
    /// streams and their consumers).
    pub async fn jsz(&self) -> serde_json::Value {
        crate::http::get(self.monitor(), "/jsz?streams=1&consumers=1", None)
            .await
            .json()
    }

    /// How many messages stream `name` holds on this server (None: it has
    /// no copy of it). A key-value bucket `b` is stream `KV_b`, one message
    /// per key.
    pub async fn stream_messages(&self, name: &str) -> Option<u64> {
        let jsz = self.jsz().await;
        jsz["account_details"]
            .as_array()?
            .iter()
            .filter_map(|a| a["stream_detail"].as_array())
            .flatten()
            .find(|s| s["name"].as_str() == Some(name))
            .and_then(|s| s["state"]["messages"].as_u64())
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn monitor(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.monitor_port))
    }

    /// Stop the server (its clients see an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send the server `signal` (`STOP`: it keeps its connections open
    /// and reads nothing, as a hung server; `CONT`: it goes on).
    pub fn signal(&self, signal: &str) {
        let Some(child) = &self.child else {
            panic!("nats-server is not running");
        };
        let status = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Start it again on the same ports.
    pub fn resume(&mut self) {
        let store: PathBuf = self.dir.path().join("store");
        let child = Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .arg("--store_dir")
            .arg(&store)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `/connz?subs=1`: every client connection, by name, with its
    /// subscriptions and the messages the server sent it.
    pub async fn connections(&self) -> Vec<Conn> {
        let reply = crate::http::get(self.monitor(), "/connz?subs=1", None).await;
        let v = reply.json();
        v["connections"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|c| Conn {
                        name: c["name"].as_str().unwrap_or_default().to_owned(),
                        out_msgs: c["out_msgs"].as_u64().unwrap_or(0),
                        in_msgs: c["in_msgs"].as_u64().unwrap_or(0),
                        in_bytes: c["in_bytes"].as_u64().unwrap_or(0),
                        subscriptions: c["subscriptions_list"]
                            .as_array()
                            .map(|s| {
                                let mut s: Vec<String> = s
                                    .iter()
                                    .filter_map(|x| x.as_str().map(str::to_owned))
                                    // The client's own request inbox.
                                    .filter(|x| !x.starts_with("_INBOX."))
                                    .collect();
                                s.sort();
                                s
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One client connection as the monitoring endpoint shows it.
#[derive(Clone, Debug)]
pub struct Conn {
    pub name: String,
    pub out_msgs: u64,
    /// Messages the client sent the server.
    pub in_msgs: u64,
    /// Bytes the client sent the server.
    pub in_bytes: u64,
    /// Sorted, without the client's request inbox (`_INBOX.…`).
    pub subscriptions: Vec<String>,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A NATS cluster of JetStream servers on loopback: each on its own free
/// client, monitoring and route ports, with its own store dir and server
/// name, routed to all the others. Stopping one leaves the others (and,
/// with three, JetStream's quorum) running.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
    pub name: String,
}

impl NatsCluster {
    /// Start `n` servers and wait until each accepts clients and JetStream
    /// has a meta leader (30 s at most). Each server tells its clients of
    /// the others (NATS's default): a client whose server stops moves.
    pub async fn start(n: usize) -> NatsCluster {
        Self::start_with(n, true).await
    }

    /// [`NatsCluster::start`] with servers that do not tell clients of the
    /// others (`--no_advertise`): a client goes only to the servers it was
    /// given, so a test can cut one node off.
    pub async fn start_unadvertised(n: usize) -> NatsCluster {
        Self::start_with(n, false).await
    }

    async fn start_with(n: usize, advertise: bool) -> NatsCluster {
        let name = format!("e2e{}", std::process::id());
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let servers = (0..n)
            .map(|i| {
                let others: Vec<String> = routes
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| format!("nats://127.0.0.1:{p}"))
                    .collect();
                let mut args = vec![
                    "-js".to_owned(),
                    "--server_name".to_owned(),
                    format!("{name}-s{i}"),
                    "--cluster_name".to_owned(),
                    name.clone(),
                    "--cluster".to_owned(),
                    format!("nats://127.0.0.1:{}", routes[i]),
                    "--routes".to_owned(),
                    others.join(","),
                ];
                if !advertise {
                    args.push("--no_advertise".to_owned());
                }
                NatsServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .collect();
        let cluster = NatsCluster { servers, name };
        cluster.wait_meta_leader().await;
        cluster
    }

    /// Every server's `nats://` URL.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }

    /// Wait (30 s at most) until a running server reports JetStream's meta
    /// leader: before that, no stream can be created.
    pub async fn wait_meta_leader(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for s in self.servers.iter().filter(|s| s.is_running()) {
                let jsz = s.jsz().await;
                if jsz["meta_cluster"]["leader"]
                    .as_str()
                    .is_some_and(|l| !l.is_empty())
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no JetStream meta leader after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The `cluster:` block of a Warden node: `urls` its NATS servers, `extra`
/// more keys (each line indented by two spaces, e.g. "  durable_qos: true\n").
/// A cluster name of the test's own (the process id keeps parallel runs of
/// one test apart on a shared NATS).
pub fn cluster_name(test: &str) -> String {
    format!("{test}{}", std::process::id())
}

/// Two nodes of a fresh cluster named after `test` on one JetStream
/// nats-server and the PostgreSQL store, each made by `node` (the test's
/// own configuration), with a superuser `root` (password `pw`) in the
/// shared store.
pub async fn two_nodes(
    test: &str,
    node: impl Fn(&crate::stores::TestStore, &NatsServer, &str, &str) -> crate::broker::TestBroker,
) -> (
    NatsServer,
    crate::stores::TestStore,
    crate::broker::TestBroker,
    crate::broker::TestBroker,
) {
    let nats = NatsServer::start_js();
    let store = crate::stores::TestStore::new(crate::stores::Backend::Postgres, None, "5s");
    let cluster = cluster_name(test);
    let n1 = node(&store, &nats, &cluster, "n1");
    let n2 = node(&store, &nats, &cluster, "n2");
    n1.cli_stdin(
        &["user", "add", "root", "--password-stdin", "--superuser"],
        "pw",
    )
    .await;
    (nats, store, n1, n2)
}

/// A Warden node of cluster `cluster` on `store`, talking to `urls`, with
/// `extra` config lines after the `cluster:` block's keys.
pub fn cluster_node(
    store: &crate::stores::TestStore,
    urls: &[String],
    cluster: &str,
    id: &str,
    extra: &str,
    metrics: bool,
) -> crate::broker::TestBroker {
    crate::broker::TestBroker::start(crate::broker::BrokerOptions {
        store: Some(store.yaml.clone()),
        metrics,
        extra_yaml: cluster_yaml(urls, cluster, id, extra),
        ..Default::default()
    })
}

pub fn cluster_yaml(urls: &[String], cluster: &str, node_id: &str, extra: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "cluster:\n  nats_urls: [{}]\n  cluster_name: {cluster}\n  node_id: {node_id}\n{extra}",
        urls.join(", ")
    )
}

/// What [`publish_numbered`] saw.
#[derive(Debug, Default)]
pub struct Numbered {
    /// Numbers whose PUBACK came with reason code 0.
    pub acked: Vec<u32>,
    /// Numbers whose PUBACK came with an error code.
    pub refused: Vec<u32>,
    /// Numbers sent, acknowledged or not.
    pub sent: u32,
}

/// Publish QoS 1 messages whose payload is their number (0, 1, …) on
/// `topic`, at most `window` unacknowledged, until `count` are sent and
/// acknowledged or the connection ends (a node killed under it: no panic).
/// `acked` counts the PUBACKs with code 0 as they come, for the caller to
/// pick its moment.
pub async fn publish_numbered(
    client: &mut crate::RawClient,
    topic: &str,
    count: u32,
    window: usize,
    acked: &std::sync::atomic::AtomicU32,
) -> Numbered {
    use crate::wire::{Incoming, Publish};
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;
    let mut out = Numbered::default();
    let mut inflight: HashMap<u16, u32> = HashMap::new();
    let mut next_id: u16 = 0;
    loop {
        while out.sent < count && inflight.len() < window {
            next_id = next_id.wrapping_add(1).max(1);
            let mut p = Publish::new(topic, out.sent.to_string().as_bytes(), 1);
            p.packet_id = next_id;
            if client.publish(&p).await.is_err() {
                return out;
            }
            inflight.insert(next_id, out.sent);
            out.sent += 1;
        }
        if inflight.is_empty() {
            return out;
        }
        match client.recv(Duration::from_secs(15)).await {
            Ok(Incoming::PubAck { packet_id, code }) => {
                if let Some(n) = inflight.remove(&packet_id) {
                    if code == 0 {
                        out.acked.push(n);
                        acked.fetch_add(1, Ordering::Relaxed);
                    } else {
                        out.refused.push(n);
                    }
                }
            }
            Ok(_) => {}
            Err(_) => return out,
        }
    }
}

/// Read numbered messages (see [`publish_numbered`]) until none came for
/// `quiet`; how many times each number arrived.
pub async fn receive_numbered(
    client: &mut crate::RawClient,
    quiet: Duration,
) -> std::collections::BTreeMap<u32, u32> {
    let mut got = std::collections::BTreeMap::new();
    while let Some(p) = client.next_publish(quiet).await {
        if let Some(n) = std::str::from_utf8(&p.payload)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
        {
            *got.entry(n).or_insert(0) += 1;
        }
    }
    got
}
