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
