//! `warden-bench`: a load generator for MQTT brokers (Warden, Mosquitto,
//! rumqttd) that keeps its own CPU cost low so the broker is the bottleneck.
//! Each run prints one JSON line and, with `--markdown`, a Markdown row.

mod conns;
mod durable;
mod logins;
mod net;
mod pubsub;
mod report;
mod throughput;
mod ws;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use tokio_rustls::rustls::pki_types::ServerName;

use crate::net::{Login, Target};
use crate::report::Report;
use crate::throughput::Plan;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// N publishers → 1 subscriber on a wildcard filter.
    Fanin,
    /// 1 publisher → N subscribers on one topic.
    Fanout,
    /// 1 publisher at a fixed rate → 1 subscriber; latency percentiles.
    Latency,
    /// Full handshakes up to CONNACK, then DISCONNECT.
    Connect,
    /// Hold N idle connections; broker RSS per connection.
    Idle,
    /// Create --sessions persistent sessions in waves (each subscribes to
    /// TOPIC/i), then queue --per-session QoS 1 messages to each.
    Offline,
    /// Resume persistent session --client-id after a restart: seconds from
    /// --since-ns to the ready log line, CONNACK and the first message.
    Resume,
    /// --conns clients connect and log in at the same moment: seconds to
    /// the last CONNACK, and the broker's peak RSS (--credentials for
    /// distinct users).
    Logins,
}

#[derive(Debug, Parser)]
#[command(
    name = "warden-bench",
    about = "MQTT load generator (see docs/benchmarks.md)"
)]
struct Args {
    scenario: Scenario,
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Subscribers connect to these ports instead, round robin (the other
    /// nodes of a cluster: bench/cluster.sh).
    #[arg(long, value_delimiter = ',')]
    sub_ports: Vec<u16>,
    /// Publishers connect to these ports instead, round robin.
    #[arg(long, value_delimiter = ',')]
    pub_ports: Vec<u16>,
    /// Label of the broker in the output.
    #[arg(long, default_value = "broker")]
    label: String,
    /// Use TLS, trusting this CA (PEM).
    #[arg(long)]
    ca: Option<String>,
    /// TLS client certificate (PEM) for mutual TLS; the broker takes the
    /// username from it, so no username/password is sent.
    #[arg(long, requires_all = ["key", "ca"])]
    cert: Option<String>,
    #[arg(long)]
    key: Option<String>,
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// MQTT over WebSocket at this path (e.g. /mqtt): ws, or wss with --ca.
    #[arg(long)]
    ws_path: Option<String>,
    /// Usernames are PREFIX0, PREFIX1, … (cycling over --users); empty sends none.
    #[arg(long, default_value = "bench")]
    user_prefix: String,
    #[arg(long, default_value_t = 64)]
    users: usize,
    #[arg(long, default_value = "secret")]
    password: String,
    /// `username secret` per line: connection i logs in with line i (logins).
    #[arg(long)]
    credentials: Option<String>,
    /// CONNECT keep-alive in seconds; no PINGREQ is sent, so make it outlast
    /// the run. 0 (none) unless the broker refuses it, as rumqttd does.
    #[arg(long, default_value_t = 0)]
    keep_alive: u16,
    /// Topic of publisher i; {user} is its username.
    #[arg(long, default_value = "bench/{user}/t")]
    topic: String,
    /// Subscription filter (fanin default bench/+/t).
    #[arg(long)]
    filter: Option<String>,
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Publishers (fanin).
    #[arg(long, default_value_t = 8)]
    pubs: usize,
    /// Subscribers (fanout).
    #[arg(long, default_value_t = 50)]
    subs: usize,
    /// Unacknowledged QoS 1 PUBLISHes per publisher.
    #[arg(long, default_value_t = 500)]
    window: usize,
    /// Messages per second (latency).
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Connections (connect, idle).
    #[arg(long, default_value_t = 2000)]
    conns: usize,
    /// Connect: start no connect after this many seconds (then --conns is
    /// only an upper bound), so a sample lasts the same time on every broker.
    #[arg(long)]
    connect_secs: Option<f64>,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Bind connections to 127.0.0.1 … 127.0.0.N round robin (idle at scale).
    #[arg(long, default_value_t = 1)]
    source_addrs: u8,
    /// Seconds to hold idle connections before measuring RSS.
    #[arg(long, default_value_t = 2.0)]
    hold: f64,
    /// The broker's pid: its CPU time and RSS are read from /proc.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Subscribers ask for a persistent session (clean session 0).
    #[arg(long)]
    persistent: bool,
    /// Persistent sessions to create (offline).
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// QoS 1 messages queued to each offline session.
    #[arg(long, default_value_t = 1)]
    per_session: usize,
    /// Client id to resume (resume; offline sessions are PREFIX-o-I).
    #[arg(long)]
    client_id: Option<String>,
    /// The broker's start time in ns since the Unix epoch (resume).
    #[arg(long)]
    since_ns: Option<u128>,
    /// Log file in which the broker announces it is ready (resume).
    #[arg(long)]
    ready_log: Option<std::path::PathBuf>,
    #[arg(long, default_value = "listening on")]
    ready_pattern: String,
    /// Seconds to wait for the broker and the queued message (resume).
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Client id prefix (distinct per run avoids session takeovers).
    #[arg(long, default_value = "wb")]
    client_prefix: String,
    /// Also print a Markdown table row.
    #[arg(long)]
    markdown: bool,
    /// Print the Markdown table header before the row.
    #[arg(long, requires = "markdown")]
    markdown_header: bool,
}

impl Args {
    fn target(&self) -> Result<Target> {
        let tls = match &self.ca {
            None => None,
            Some(ca) => {
                let client = self.cert.as_deref().zip(self.key.as_deref());
                let name =
                    ServerName::try_from(self.server_name.clone()).context("bad --server-name")?;
                Some((net::tls_connector(ca, client)?, name))
            }
        };
        let sources = if self.source_addrs > 1 {
            (1..=self.source_addrs)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Target {
            addr: SocketAddr::new(self.host, self.port),
            tls,
            sources,
            ws_path: self.ws_path.clone(),
        })
    }

    fn transport(&self) -> &'static str {
        match (&self.ca, &self.cert, self.ws_path.is_some()) {
            (None, _, false) => "tcp",
            (Some(_), None, false) => "tls",
            (Some(_), Some(_), false) => "mtls",
            (None, _, true) => "ws",
            (Some(_), None, true) => "wss",
            (Some(_), Some(_), true) => "wss+mtls",
        }
    }

    /// Login of connection `i` with user index `u`.
    fn login(&self, role: &str, i: usize, u: usize) -> Login {
        let with_password = self.cert.is_none() && !self.user_prefix.is_empty();
        Login {
            client_id: format!("{}-{role}-{i}", self.client_prefix),
            username: with_password.then(|| self.username(u)),
            password: with_password.then(|| self.password.clone()),
            keep_alive: self.keep_alive,
            clean: true,
        }
    }

    fn username(&self, u: usize) -> String {
        format!("{}{}", self.user_prefix, u % self.users.max(1))
    }

    fn topic_of(&self, u: usize) -> String {
        self.topic.replace("{user}", &self.username(u))
    }

    fn plan(&self) -> Plan {
        let (pubs, subs): (Vec<_>, Vec<_>) = match self.scenario {
            // Subscriber is user 0; publishers are users 1..=pubs.
            Scenario::Fanin => {
                let filter = self.filter.clone().unwrap_or_else(|| "bench/+/t".into());
                let pubs = (1..=self.pubs).map(|i| (self.login("p", i, i), self.topic_of(i)));
                let sub = Login {
                    clean: !self.persistent,
                    ..self.login("s", 0, 0)
                };
                (pubs.collect(), vec![(sub, filter)])
            }
            // Publisher is user 0; subscribers are users 1..=subs.
            _ => {
                let topic = self.topic_of(0);
                let filter = self.filter.clone().unwrap_or_else(|| topic.clone());
                let n = if self.scenario == Scenario::Fanout {
                    self.subs
                } else {
                    1
                };
                let subs = (1..=n).map(|i| {
                    let login = Login {
                        clean: !self.persistent,
                        ..self.login("s", i, i)
                    };
                    (login, filter.clone())
                });
                (vec![(self.login("p", 0, 0), topic)], subs.collect())
            }
        };
        let latency = self.scenario == Scenario::Latency;
        Plan {
            publishers: pubs,
            subscribers: subs,
            qos: self.qos,
            payload: self.payload.max(if latency { 8 } else { 0 }),
            window: self.window,
            secs: self.secs,
            rate: latency.then_some(self.rate),
            stamp: latency,
            sub_ports: self.sub_ports.clone(),
            pub_ports: self.pub_ports.clone(),
        }
    }
}

impl Args {
    fn offline_plan(self: &Arc<Self>) -> durable::OfflinePlan {
        let args = self.clone();
        let session_login = move |i: usize| Login {
            clean: false,
            ..args.login("o", i, i)
        };
        durable::OfflinePlan {
            sessions: self.sessions,
            per_session: self.per_session,
            topic: self.topic.replace("{user}", &self.client_prefix),
            payload: self.payload,
            window: self.window,
            concurrency: self.concurrency,
            session_login: Arc::new(session_login),
            publisher: self.login("q", 0, 0),
        }
    }

    fn resume_plan(&self) -> Result<durable::ResumePlan> {
        let Some(client_id) = self.client_id.clone() else {
            bail!("resume needs --client-id");
        };
        Ok(durable::ResumePlan {
            login: Login {
                client_id,
                clean: false,
                ..self.login("r", 0, 0)
            },
            since_ns: self.since_ns,
            ready_log: self
                .ready_log
                .clone()
                .map(|p| (p, self.ready_pattern.clone())),
            timeout: Duration::from_secs_f64(self.timeout),
        })
    }
}

/// Lifts the open-file soft limit to the hard limit (idle at scale).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls only read or write the local struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

async fn run(args: Args) -> Result<Report> {
    let target = args.target()?;
    let pid = args.broker_pid;
    let args = Arc::new(args);
    let logins = {
        let args = args.clone();
        Arc::new(move |i: usize| args.login("c", i, i)) as conns::LoginFn
    };
    let mut report = match args.scenario {
        Scenario::Fanin | Scenario::Fanout | Scenario::Latency => {
            let name = format!("{:?}", args.scenario).to_lowercase();
            throughput::run(&name, &target, args.plan(), pid).await?
        }
        Scenario::Connect => {
            let secs = args.connect_secs;
            conns::connect_scenario(&target, args.conns, args.concurrency, logins, pid, secs)
                .await?
        }
        Scenario::Idle => {
            let hold = Duration::from_secs_f64(args.hold);
            conns::idle_scenario(&target, args.conns, args.concurrency, logins, pid, hold).await?
        }
        Scenario::Offline => durable::offline_scenario(&target, args.offline_plan(), pid).await?,
        Scenario::Resume => durable::resume_scenario(&target, args.resume_plan()?, pid).await?,
        Scenario::Logins => {
            let logins = match &args.credentials {
                Some(path) => logins::from_credentials(
                    Arc::new(logins::read_credentials(path)?),
                    args.client_prefix.clone(),
                    args.keep_alive,
                ),
                None => logins,
            };
            logins::logins_scenario(&target, args.conns, logins, pid).await?
        }
    };
    report.broker = args.label.clone();
    report.transport = args.transport().to_string();
    Ok(report)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.cert.is_some() != args.key.is_some() {
        bail!("--cert and --key go together");
    }
    raise_nofile();
    let (markdown, header) = (args.markdown, args.markdown_header);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(args))?;
    println!("{}", serde_json::to_string(&report)?);
    if header {
        println!("{}", Report::MARKDOWN_HEADER);
    }
    if markdown {
        println!("{}", report.markdown_row());
    }
    Ok(())
}
