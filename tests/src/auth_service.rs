//! A real HTTP auth service for `auth.http` tests: `POST /authenticate`,
//! `POST /rules` and `POST /authorize` as docs/extending.md describes
//! them, and a webhook receiver (`POST /events`, `auth.webhook`), over
//! plain HTTP or TLS (optionally requiring a client certificate), with
//! keep-alive.
//! The test changes what it answers (users, rules, TTLs) and how (slow,
//! malformed, down) while the broker runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// How the service misbehaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Normal,
    /// Answers after this long.
    Slow(Duration),
    /// `/authenticate` answers JSON that is not the schema.
    MalformedAuth,
    /// `/rules` answers rules that are not the rule schema.
    MalformedRules,
    /// `/authorize` answers JSON that is not the schema.
    MalformedAuthorize,
}

/// What the service knows and how it answers.
#[derive(Debug, Default)]
pub struct ServiceState {
    /// username → (password, roles).
    pub users: HashMap<String, (String, Vec<String>)>,
    /// username → the rules list answered by `/rules`.
    pub rules: HashMap<String, Value>,
    /// `ttl_seconds` of `/rules` answers (None: not sent).
    pub rules_ttl: Option<u64>,
    /// `ttl_seconds` of `/authenticate` answers.
    pub login_ttl: Option<u64>,
    pub mode: Mode,
    /// The bearer token required, if any.
    pub token: Option<String>,
    pub authenticate_calls: usize,
    pub rules_calls: usize,
    /// The last `/authenticate` body.
    pub last_login: Option<Value>,
    /// Logins answered with `"authorize_each": true`.
    pub authorize_each: bool,
    /// `/authorize`: (username, action, topic) allowed; anything else is
    /// denied.
    pub allowed: std::collections::HashSet<(String, String, String)>,
    /// `ttl_seconds` of `/authorize` answers.
    pub authorize_ttl: Option<u64>,
    /// Every `/authorize` asked: (username, client_id, action, topic).
    pub authorized: Vec<(String, String, String, String)>,
    /// Every `/events` body received (the webhook's batches).
    pub batches: Vec<Value>,
}

impl ServiceState {
    /// Let `user` do `action` on `topic` (`/authorize`).
    pub fn allow(&mut self, user: &str, action: &str, topic: &str) {
        self.allowed
            .insert((user.to_owned(), action.to_owned(), topic.to_owned()));
    }

    /// How many times `/authorize` was asked about `action` on `topic`.
    pub fn asked(&self, action: &str, topic: &str) -> usize {
        self.authorized
            .iter()
            .filter(|(_, _, a, t)| a == action && t == topic)
            .count()
    }

    /// The events of every batch received, in order.
    pub fn events(&self) -> Vec<Value> {
        self.batches
            .iter()
            .filter_map(|b| b["events"].as_array())
            .flatten()
            .cloned()
            .collect()
    }
}

pub struct AuthService {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<ServiceState>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl AuthService {
    /// Plain HTTP on 127.0.0.1, a free port.
    pub async fn start() -> AuthService {
        Self::start_with(None).await
    }

    /// TLS with `tls` (e.g. requiring client certificates).
    pub async fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> AuthService {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let service = AuthService {
            addr: listener.local_addr().expect("addr"),
            state: Arc::default(),
            tls,
            tasks: Arc::default(),
        };
        service.serve(listener);
        service
    }

    /// `http://ADDR` or `https://localhost:PORT`.
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut ServiceState) -> R) -> R {
        f(&mut self.state.lock().expect("state"))
    }

    pub fn add_user(&self, name: &str, password: &str, roles: &[&str], rules: Value) {
        self.with(|s| {
            s.users.insert(
                name.to_owned(),
                (
                    password.to_owned(),
                    roles.iter().map(|r| (*r).to_owned()).collect(),
                ),
            );
            s.rules.insert(name.to_owned(), rules);
        });
    }

    /// Down: the port is closed and every open connection dropped.
    pub fn stop(&self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }

    /// Up again on the same port.
    pub async fn restart(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let state = Arc::clone(&self.state);
        let tls = self.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let tasks = Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&state);
                let tls = tls.clone();
                let conn = tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve_conn(stream, &state).await;
                            }
                        }
                        None => serve_conn(tcp, &state).await,
                    }
                });
                tasks.lock().expect("tasks").push(conn.abort_handle());
            }
        });
        self.tasks
            .lock()
            .expect("tasks")
            .push(accept.abort_handle());
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Requests on one connection until it closes.
async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, state: &Mutex<ServiceState>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.lines();
        let path = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_owned();
        let mut length = 0;
        let mut auth = None;
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "authorization" => auth = Some(v.trim().to_owned()),
                    _ => {}
                }
            }
        }
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf[head_end..head_end + length].to_vec();
        buf.drain(..head_end + length);
        let (status, answer, delay) = answer(state, &path, auth.as_deref(), &body);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(reply.as_bytes()).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

fn answer(
    state: &Mutex<ServiceState>,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> (&'static str, String, Option<Duration>) {
    let mut st = state.lock().expect("state");
    let delay = match st.mode {
        Mode::Slow(d) => Some(d),
        _ => None,
    };
    if let Some(token) = &st.token {
        if auth != Some(&format!("Bearer {token}")) {
            return ("401 Unauthorized", "{}".into(), delay);
        }
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return ("400 Bad Request", "{}".into(), delay);
    };
    let username = req["username"].as_str().unwrap_or("").to_owned();
    match path {
        "/authenticate" => {
            st.authenticate_calls += 1;
            st.last_login = Some(req.clone());
            if st.mode == Mode::MalformedAuth {
                return ("200 OK", r#"{"result": "allow", "roles": "#.into(), delay);
            }
            let password = req["password"].as_str().unwrap_or("");
            let known = st.users.get(&username).filter(|(p, _)| p == password);
            let answer = match known {
                Some((_, roles)) => {
                    let mut a = json!({
                        "result": "allow",
                        "username": username,
                        "roles": roles,
                        "attributes": { "tenant": "t1" },
                    });
                    if let Some(ttl) = st.login_ttl {
                        a["ttl_seconds"] = ttl.into();
                    }
                    if st.authorize_each {
                        a["authorize_each"] = true.into();
                    }
                    a
                }
                None => json!({ "result": "deny", "reason": "unknown user or wrong password" }),
            };
            ("200 OK", answer.to_string(), delay)
        }
        "/rules" => {
            st.rules_calls += 1;
            if st.mode == Mode::MalformedRules {
                let bad = json!({ "rules": [{ "effect": "maybe", "pattern": "#" }] });
                return ("200 OK", bad.to_string(), delay);
            }
            let rules = st.rules.get(&username).cloned().unwrap_or(json!([]));
            let mut a = json!({ "rules": rules });
            if let Some(ttl) = st.rules_ttl {
                a["ttl_seconds"] = ttl.into();
            }
            ("200 OK", a.to_string(), delay)
        }
        "/authorize" => {
            let action = req["action"].as_str().unwrap_or("").to_owned();
            let topic = req["topic"].as_str().unwrap_or("").to_owned();
            let client = req["client_id"].as_str().unwrap_or("").to_owned();
            st.authorized
                .push((username.clone(), client, action.clone(), topic.clone()));
            if st.mode == Mode::MalformedAuthorize {
                return ("200 OK", r#"{"result": "sure"}"#.into(), delay);
            }
            let allow = st.allowed.contains(&(username, action, topic));
            let mut a = json!({ "result": if allow { "allow" } else { "deny" } });
            if let Some(ttl) = st.authorize_ttl {
                a["ttl_seconds"] = ttl.into();
            }
            ("200 OK", a.to_string(), delay)
        }
        "/events" => {
            st.batches.push(req);
            ("200 OK", "{}".into(), delay)
        }
        _ => ("404 Not Found", "{}".into(), delay),
    }
}

/// TLS for the service with `pki`'s server certificate, requiring a client
/// certificate from `pki`'s CA.
pub fn mtls_config(pki: &crate::certs::TestPki) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pki.ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .expect("client verifier");
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut pki.server.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("server cert PEM");
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut pki.server.key_pem.as_bytes())
            .expect("server key PEM")
            .expect("a server key");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .expect("server config");
    Arc::new(config)
}
