//! A real OCSP responder for the tests: `openssl ocsp` serving an
//! `index.txt` (the OpenSSL CA database) on a loopback port, killed on drop.
//! Also a port where nothing answers, and one that accepts and stays silent.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One certificate in the responder's database.
pub struct IndexEntry<'a> {
    /// Big-endian serial bytes.
    pub serial: &'a [u8],
    /// The subject, as OpenSSL writes it: `/CN=alice/O=Warden e2e`.
    pub subject: String,
    pub revoked: bool,
}

impl IndexEntry<'_> {
    fn line(&self) -> String {
        let serial: String = self.serial.iter().map(|b| format!("{b:02X}")).collect();
        let (status, revoked_at) = if self.revoked {
            ("R", "200102000000Z")
        } else {
            ("V", "")
        };
        format!(
            "{status}\t991231235959Z\t{revoked_at}\t{serial}\tunknown\t{}\n",
            self.subject
        )
    }
}

/// The OpenSSL subject of a test client certificate with this CN.
pub fn client_subject(cn: &str) -> String {
    format!("/CN={cn}/O=Warden e2e")
}

/// Who signs the answers.
pub struct Signer<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

pub struct OcspResponder {
    pub port: u16,
    child: Child,
}

/// A loopback port that nothing listens on (bound, then let go).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl OcspResponder {
    /// Starts `openssl ocsp` on `port` for the CA in `ca` (PEM), answering
    /// from `entries`; `next_update_minutes` sets nextUpdate (`-nmin`),
    /// None leaves it out. Waits until it listens.
    pub fn start(
        dir: &Path,
        port: u16,
        ca: &Path,
        signer: Signer<'_>,
        entries: &[IndexEntry<'_>],
        next_update_minutes: Option<u32>,
    ) -> OcspResponder {
        let index = dir.join(format!("index-{port}.txt"));
        let lines: String = entries.iter().map(IndexEntry::line).collect();
        std::fs::write(&index, lines).expect("write index");
        std::fs::write(
            PathBuf::from(format!("{}.attr", index.display())),
            "unique_subject = no\n",
        )
        .expect("write index attr");
        let mut cmd = Command::new("openssl");
        cmd.arg("ocsp")
            .args(["-index".as_ref(), index.as_os_str()])
            .args(["-port", &port.to_string()])
            .args(["-rsigner".as_ref(), signer.cert.as_os_str()])
            .args(["-rkey".as_ref(), signer.key.as_os_str()])
            .args(["-CA".as_ref(), ca.as_os_str()]);
        if let Some(n) = next_update_minutes {
            cmd.args(["-nmin", &n.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl ocsp (is openssl installed? scripts/install-test-deps)");
        // Ready once it says so: a probe connection would not do, as the
        // responder then waits on the probe and serves nobody else.
        let (tx, rx) = mpsc::channel();
        for out in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
        }
        let responder = OcspResponder { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("waiting for OCSP client connections") => break,
                Ok(_) => {}
                Err(_) => panic!("openssl ocsp did not start listening on {port}"),
            }
        }
        responder
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Stops the responder and waits until it is gone.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OcspResponder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A responder that accepts connections and never answers, until dropped.
pub struct SilentResponder {
    pub port: u16,
    _listener: TcpListener,
}

impl SilentResponder {
    pub fn start() -> SilentResponder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // The backlog takes the connections; nobody reads them.
        SilentResponder {
            port,
            _listener: listener,
        }
    }
}
