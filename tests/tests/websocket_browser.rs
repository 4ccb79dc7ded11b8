//! A real browser: headless Chromium (Debian's `chromium`) opens a page
//! served on loopback that connects to the wss listener with MQTT.js,
//! subscribes, and shows the message the test publishes. The test reads the
//! page's DOM over the DevTools protocol and saves a screenshot to
//! `target/tmp/websocket_browser.png`.
//!
//! Chromium trusts exactly the test server's key
//! (`--ignore-certificate-errors-spki-list`), not every certificate.
//! Needs `scripts/install-test-deps` (chromium, and MQTT.js in tests/js).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use warden_e2e::ws::tungstenite::Message;
use warden_e2e::*;

fn mqtt_js() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js/node_modules/mqtt/dist/mqtt.min.js");
    assert!(
        path.is_file(),
        "{} missing: run scripts/install-test-deps",
        path.display()
    );
    path
}

fn page(wss_port: u16) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Warden over wss</title>
<script src="/mqtt.min.js"></script></head>
<body style="font-family: sans-serif">
<h1>Warden: MQTT over WebSocket</h1>
<p>state: <b id="state">loading</b></p>
<p>message: <b id="msg"></b></p>
<script>
const state = document.getElementById('state');
const client = mqtt.connect('wss://127.0.0.1:{wss_port}/mqtt', {{
  username: 'alice', password: 'pw', protocolVersion: 5, reconnectPeriod: 0,
  clientId: 'browser-' + Math.random().toString(16).slice(2),
}});
client.on('connect', () => {{
  state.textContent = 'connected';
  client.subscribe('web/news', {{ qos: 1 }}, (err, granted) => {{
    state.textContent = err ? 'error: ' + err.message : 'subscribed qos ' + granted[0].qos;
  }});
}});
client.on('message', (topic, payload) => {{
  document.getElementById('msg').textContent = topic + ': ' + payload.toString();
}});
client.on('error', (e) => {{ state.textContent = 'error: ' + e.message; }});
</script></body></html>"#
    )
}

/// Serves the page at `/` and MQTT.js at `/mqtt.min.js` until dropped.
async fn serve_page(html: String) -> (SocketAddrPort, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let port = listener.local_addr().expect("addr").port();
    let js = std::fs::read(mqtt_js()).expect("read mqtt.min.js");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let html = html.clone();
            let js = js.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let Ok(n) = tcp.read(&mut buf).await else {
                    return;
                };
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, kind, body) = match path {
                    "/" => ("200 OK", "text/html", html.into_bytes()),
                    "/mqtt.min.js" => ("200 OK", "text/javascript", js),
                    _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(&body).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (SocketAddrPort(port), task)
}

struct SocketAddrPort(u16);

/// base64(SHA-256(SubjectPublicKeyInfo)) of the broker's server key.
fn spki_pin(broker: &TestBroker) -> String {
    let key = rcgen::KeyPair::from_pem(&broker.pki.server.key_pem).expect("server key");
    let digest = Sha256::digest(key.public_key_der());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// An HTTP/1.1 GET on loopback; the body (by Content-Length: DevTools
/// keeps the connection open).
async fn http_get(port: u16, path: &str) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("devtools http");
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("devtools answers")
            .expect("read");
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if body.len() >= len {
                return body[..len].to_owned();
            }
        }
    }
    String::new()
}

/// The DevTools protocol on one page.
struct Cdp {
    ws: warden_e2e::ws::WsConn,
    next_id: u64,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = serde_json::json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("cdp send");
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("cdp answer in time")
                .expect("cdp open")
                .expect("cdp message");
            let Message::Text(text) = m else { continue };
            let v: serde_json::Value = serde_json::from_str(&text).expect("cdp json");
            if v["id"] == id {
                return v["result"].clone();
            }
        }
    }

    async fn text_of(&mut self, element: &str) -> String {
        let expr = format!("document.getElementById('{element}')?.textContent ?? ''");
        let r = self
            .call(
                "Runtime.evaluate",
                serde_json::json!({ "expression": expr, "returnByValue": true }),
            )
            .await;
        r["result"]["value"].as_str().unwrap_or_default().to_owned()
    }

    /// Polls the element until `done` holds (20 s at most); its text.
    async fn wait_text(&mut self, element: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text_of(element).await;
            if done(&text) || tokio::time::Instant::now() > deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn chromium_with_mqtt_js_over_wss_shows_a_published_message() {
    let broker = TestBroker::start(BrokerOptions {
        websockets: true,
        ..Default::default()
    });
    broker.add_user("alice", "pw", &[]).await;
    broker
        .allow("alice", "publish,subscribe,receive", "web/#")
        .await;
    let (http, _server) = serve_page(page(broker.addr("wss").port())).await;
    let url = format!("http://127.0.0.1:{}/", http.0);

    let profile = tempfile::tempdir().expect("profile dir");
    let mut chromium = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--window-size=800,400",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!(
            "--ignore-certificate-errors-spki-list={}",
            spki_pin(&broker)
        ))
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium: run scripts/install-test-deps");
    let mut stderr = BufReader::new(chromium.stderr.take().expect("stderr")).lines();
    let devtools = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = stderr.next_line().await {
            if let Some(rest) = line.strip_prefix("DevTools listening on ws://127.0.0.1:") {
                return rest.split('/').next().and_then(|p| p.parse::<u16>().ok());
            }
        }
        None
    })
    .await
    .expect("chromium starts within 30 s")
    .expect("DevTools port");
    // Keep draining chromium's stderr so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

    let page_ws = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let list: serde_json::Value =
                serde_json::from_str(&http_get(devtools, "/json/list").await).unwrap_or_default();
            let found = list.as_array().into_iter().flatten().find_map(|t| {
                (t["type"] == "page" && t["url"].as_str() == Some(url.as_str()))
                    .then(|| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
                    .flatten()
            });
            if let Some(u) = found {
                break u;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no page target: {list}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let tcp = TcpStream::connect(("127.0.0.1", devtools))
        .await
        .expect("devtools");
    let stream: Box<dyn warden_e2e::ws::IoStream> = Box::new(tcp);
    let (ws, _) = tokio_tungstenite::client_async(page_ws.as_str(), stream)
        .await
        .expect("devtools websocket");
    let mut cdp = Cdp { ws, next_id: 0 };

    let state = cdp
        .wait_text("state", |s| {
            s.starts_with("subscribed") || s.starts_with("error")
        })
        .await;
    assert_eq!(
        state,
        "subscribed qos 1",
        "the page's MQTT.js client:\n{}",
        broker.log()
    );

    let mut publisher = RawClient::tls(broker.tls_addr(), broker.ca_pem(), None)
        .await
        .expect("tls");
    let (_, code, _) = publisher
        .connect(&Connect::new(Version::V5, &client_id("pub")).login("alice", "pw"))
        .await
        .expect("CONNACK");
    assert_eq!(code, 0);
    assert_eq!(
        publisher
            .publish_acked(Publish::new("web/news", b"hello, browser", 1))
            .await,
        0
    );
    let shown = cdp.wait_text("msg", |s| !s.is_empty()).await;
    assert_eq!(shown, "web/news: hello, browser");

    let shot = cdp
        .call(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png" }),
        )
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("screenshot data"))
        .expect("base64 png");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("websocket_browser.png");
    std::fs::write(&out, &png).expect("save screenshot");
    eprintln!("screenshot: {}", out.display());
    let _ = chromium.kill().await;
}
