//! Real MQTT clients against a `TestBroker`: rumqttc for MQTT 3.1.1 and 5.0
//! over TLS, Debian's `mosquitto_pub`/`mosquitto_sub`, and Python paho-mqtt
//! scripts from `tests/fixtures/`. Every external process runs under a timeout.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::broker::TestBroker;
use crate::certs::CertFiles;

fn tls_transport(ca_pem: &str, client: Option<&CertFiles>) -> rumqttc::Transport {
    rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
        ca: ca_pem.as_bytes().to_vec(),
        alpn: None,
        client_auth: client.map(|c| {
            (
                c.cert_pem.clone().into_bytes(),
                c.key_pem.clone().into_bytes(),
            )
        }),
    })
}

/// rumqttc 3.1.1 options for the `tls` listener with a username and password.
pub fn v3_options(
    broker: &TestBroker,
    client_id: &str,
    user: &str,
    password: &str,
) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", broker.tls_addr().port());
    o.set_credentials(user, password);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(tls_transport(broker.ca_pem(), None));
    o
}

/// rumqttc 3.1.1 options for the `mtls` listener with a client certificate
/// and no password.
pub fn v3_mtls_options(
    broker: &TestBroker,
    client_id: &str,
    cert: &CertFiles,
) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", broker.mtls_addr().port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(tls_transport(broker.ca_pem(), Some(cert)));
    o
}

/// rumqttc 5.0 options for the `tls` listener.
pub fn v5_options(
    broker: &TestBroker,
    client_id: &str,
    user: &str,
    password: &str,
) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(client_id, "127.0.0.1", broker.tls_addr().port());
    o.set_credentials(user, password);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(tls_transport(broker.ca_pem(), None));
    o
}

/// rumqttc 5.0 options for a WebSocket listener (`ws`, or `wss` when
/// `tls`), path `/mqtt`, with a username and password.
pub fn v5_ws_options(
    broker: &TestBroker,
    listener: &str,
    tls: bool,
    client_id: &str,
    user: &str,
    password: &str,
) -> rumqttc::v5::MqttOptions {
    let port = broker.addr(listener).port();
    let scheme = if tls { "wss" } else { "ws" };
    let url = format!("{scheme}://127.0.0.1:{port}/mqtt");
    let mut o = rumqttc::v5::MqttOptions::new(client_id, url, port);
    o.set_credentials(user, password);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(if tls {
        rumqttc::Transport::wss_with_config(rumqttc::TlsConfiguration::Simple {
            ca: broker.ca_pem().as_bytes().to_vec(),
            alpn: None,
            client_auth: None,
        })
    } else {
        rumqttc::Transport::Ws
    });
    o
}

/// A rumqttc 3.1.1 client whose event loop runs in a task; the loop stops at
/// the first connection error (no reconnects), which is then reported.
pub struct V3Client {
    pub client: rumqttc::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
}

impl V3Client {
    pub fn start(opts: rumqttc::MqttOptions) -> Self {
        let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 64);
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let ev = eventloop.poll().await;
                let stop = ev.is_err();
                if tx.send(ev.map_err(|e| format!("{e:?}"))).is_err() || stop {
                    break;
                }
            }
        });
        Self { client, events }
    }

    /// Waits for an incoming packet matching `want`; Err(text) on a
    /// connection error or when nothing matched within `wait`.
    pub async fn wait_for(
        &mut self,
        wait: Duration,
        want: impl Fn(&rumqttc::Packet) -> bool,
    ) -> Result<rumqttc::Packet, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Err("timeout".into()),
                Ok(None) => return Err("event loop ended".into()),
                Ok(Some(Err(e))) => return Err(e),
                Ok(Some(Ok(rumqttc::Event::Incoming(p)))) if want(&p) => return Ok(p),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The CONNACK return code, or the refusal as rumqttc reports it.
    pub async fn connack(&mut self) -> Result<rumqttc::ConnAck, String> {
        match self
            .wait_for(Duration::from_secs(5), |p| {
                matches!(p, rumqttc::Packet::ConnAck(_))
            })
            .await?
        {
            rumqttc::Packet::ConnAck(c) => Ok(c),
            other => Err(format!("{other:?}")),
        }
    }

    pub async fn next_publish(&mut self, wait: Duration) -> Option<rumqttc::Publish> {
        match self
            .wait_for(wait, |p| matches!(p, rumqttc::Packet::Publish(_)))
            .await
        {
            Ok(rumqttc::Packet::Publish(p)) => Some(p),
            _ => None,
        }
    }
}

/// A rumqttc 5.0 client whose event loop runs in a task (no reconnects).
pub struct V5Client {
    pub client: rumqttc::v5::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<rumqttc::v5::Event, String>>,
}

impl V5Client {
    pub fn start(opts: rumqttc::v5::MqttOptions) -> Self {
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(opts, 64);
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let ev = eventloop.poll().await;
                let stop = ev.is_err();
                if tx.send(ev.map_err(|e| format!("{e:?}"))).is_err() || stop {
                    break;
                }
            }
        });
        Self { client, events }
    }

    pub async fn wait_for(
        &mut self,
        wait: Duration,
        want: impl Fn(&rumqttc::v5::mqttbytes::v5::Packet) -> bool,
    ) -> Result<rumqttc::v5::mqttbytes::v5::Packet, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Err("timeout".into()),
                Ok(None) => return Err("event loop ended".into()),
                Ok(Some(Err(e))) => return Err(e),
                Ok(Some(Ok(rumqttc::v5::Event::Incoming(p)))) if want(&p) => return Ok(p),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    pub async fn connack(&mut self) -> Result<rumqttc::v5::mqttbytes::v5::ConnAck, String> {
        use rumqttc::v5::mqttbytes::v5::Packet;
        match self
            .wait_for(Duration::from_secs(5), |p| matches!(p, Packet::ConnAck(_)))
            .await?
        {
            Packet::ConnAck(c) => Ok(c),
            other => Err(format!("{other:?}")),
        }
    }

    pub async fn next_publish(
        &mut self,
        wait: Duration,
    ) -> Option<rumqttc::v5::mqttbytes::v5::Publish> {
        use rumqttc::v5::mqttbytes::v5::Packet;
        match self
            .wait_for(wait, |p| matches!(p, Packet::Publish(_)))
            .await
        {
            Ok(Packet::Publish(p)) => Some(p),
            _ => None,
        }
    }
}

/// Common `mosquitto_pub`/`mosquitto_sub` arguments for a TLS listener.
pub struct Mosq<'a> {
    pub port: u16,
    /// "mqttv311" or "mqttv5".
    pub version: &'a str,
    pub ca: &'a Path,
    pub cert: Option<&'a CertFiles>,
    pub login: Option<(&'a str, &'a str)>,
    pub client_id: &'a str,
}

impl<'a> Mosq<'a> {
    /// MQTT 3.1.1 over TLS with a username and password, no client
    /// certificate.
    pub fn with_password(
        port: u16,
        ca: &'a Path,
        login: (&'a str, &'a str),
        client_id: &'a str,
    ) -> Mosq<'a> {
        Mosq {
            port,
            version: "mqttv311",
            ca,
            cert: None,
            login: Some(login),
            client_id,
        }
    }

    fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-V".into(),
            self.version.into(),
            "--cafile".into(),
            self.ca.display().to_string(),
            "-i".into(),
            self.client_id.into(),
        ];
        if let Some(c) = self.cert {
            a.extend(["--cert".into(), c.cert.display().to_string()]);
            a.extend(["--key".into(), c.key.display().to_string()]);
        }
        if let Some((u, p)) = self.login {
            a.extend(["-u".into(), u.into(), "-P".into(), p.into()]);
        }
        a
    }

    /// `mosquitto_pub … -t TOPIC -m MESSAGE -q QOS`, 10 s at most.
    pub async fn publish(&self, topic: &str, message: &str, qos: u8) -> Output {
        let mut args = self.args();
        args.extend(["-t".into(), topic.into(), "-m".into(), message.into()]);
        args.extend(["-q".into(), qos.to_string()]);
        run_program("mosquitto_pub", &args, Duration::from_secs(10)).await
    }

    /// Starts `mosquitto_sub -d -v -t FILTER -C count -W 10` and returns once it
    /// has its SUBACK; `finish` collects what it printed.
    pub async fn subscribe(&self, filter: &str, count: u32) -> MosqSub {
        let mut args = self.args();
        args.extend(["-d".into(), "-v".into(), "-t".into(), filter.into()]);
        args.extend(["-C".into(), count.to_string(), "-W".into(), "10".into()]);
        // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe, and
        // the SUBACK line must be seen before the test publishes.
        let mut child = tokio::process::Command::new("stdbuf")
            .arg("-oL")
            .arg("mosquitto_sub")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mosquitto_sub (scripts/install-test-deps installs it)");
        let stdout = child.stdout.take().expect("mosquitto_sub stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        let subscribed = timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let done = line.contains("SUBACK");
                seen.push(line);
                if done {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        MosqSub {
            child,
            lines,
            seen,
            subscribed,
        }
    }
}

pub struct MosqSub {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    /// Lines printed so far.
    pub seen: Vec<String>,
    /// Whether a SUBACK was printed.
    pub subscribed: bool,
}

impl MosqSub {
    /// Waits (at most `wait`) for the process to end and returns every line
    /// it printed on stdout.
    pub async fn finish(mut self, wait: Duration) -> Vec<String> {
        let _ = timeout(wait, async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                self.seen.push(line);
            }
        })
        .await;
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.seen
    }
}

/// Runs a program with a timeout; a program that is still running is killed.
pub async fn run_program(program: &str, args: &[String], wait: Duration) -> Output {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program} (scripts/install-test-deps installs it): {e}"));
    timeout(wait, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} still running after {wait:?}"))
        .expect("program output")
}

/// Path of a file in `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Runs `python3 tests/fixtures/SCRIPT ARGS…` (20 s at most) and returns the
/// JSON objects it printed, one per line.
pub async fn paho(script: &str, args: &[String]) -> Vec<serde_json::Value> {
    let mut full = vec![fixture(script).display().to_string()];
    full.extend_from_slice(args);
    let out = run_program("python3", &full, Duration::from_secs(20)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python3 {script} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{script} printed {l:?}: {e}")))
        .collect()
}
