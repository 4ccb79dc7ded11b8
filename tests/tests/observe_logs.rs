//! Logs that explain: the real broker's stderr, scraped for one INFO line
//! per connect and disconnect, takeovers, failed handshakes, refused logins
//! (who and why, the certificate's identity on mTLS listeners, never an
//! empty username) and thinned-out denied publishes; in text and in JSON
//! (`log.format: json`). Every password, token and secret the test used is
//! then looked for in the whole log: none may appear. Also: `RUST_LOG` adds
//! to the built-in filters (the rustls SNI warning stays quiet), and the
//! startup line names the store without its password.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use warden_e2e::clients::Mosq;
use warden_e2e::*;

const JWT_SECRET: &str = "e2e-log-secret-0123456789-0123456789-xyz";
const ALICE_PW: &str = "alice-pass-7f3kq";
const WRONG_PW: &str = "wrong-pass-91xz";
const NOBODY_PW: &str = "nobody-pass-55qw";
const MOSQ_PW: &str = "mosq-pass-k2j9d";
/// What rustls logs at WARN for an IP address sent as SNI.
const SNI_WARNING: &str = "Illegal SNI";
const FORGED_SECRET: &str = "forged-secret-0123456789-0123456789-abcd";

/// A listener whose `username_from` finds nothing in an ordinary client
/// certificate (no e-mail SAN): its clients have no username at all.
const EMAIL_LISTENER: &str = "  - name: mtls-email
    kind: tls
    bind: \"127.0.0.1:0\"
    cert: @DIR@/server.pem
    key: @DIR@/server.key
    client_auth: required
    client_ca: @DIR@/ca.pem
    username_from: san_email
";

fn start(format: &str) -> TestBroker {
    TestBroker::start(BrokerOptions {
        auth_extra: format!(", jwt: {{ secret: \"{JWT_SECRET}\", issuer: idp, audience: warden }}"),
        extra_yaml: format!("log: {{ format: {format} }}\n"),
        extra_listeners: EMAIL_LISTENER.to_owned(),
        extra_listener_count: 1,
        ..BrokerOptions::default()
    })
}

fn token(sub: &str, secret: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let claims = json!({ "sub": sub, "iss": "idp", "aud": "warden", "exp": exp });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode token")
}

/// Whether `line` has `key` = `value`: a JSON line's field, or a text
/// line's `key=value` / `key="value"`.
fn has(line: &str, key: &str, value: &str) -> bool {
    if line.starts_with('{') {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        return match v.get(key) {
            Some(Value::String(s)) => s == value,
            Some(Value::Number(n)) => n.as_u64().is_some_and(|n| value.parse() == Ok(n)),
            Some(Value::Bool(b)) => value.parse() == Ok(*b),
            _ => false,
        };
    }
    line.contains(&format!(" {key}={value}")) || line.contains(&format!(" {key}=\"{value}\""))
}

/// Whether `line` names `key` at all.
fn names(line: &str, key: &str) -> bool {
    if line.starts_with('{') {
        return serde_json::from_str::<Value>(line).is_ok_and(|v| v.get(key).is_some());
    }
    line.contains(&format!(" {key}="))
}

/// A numeric field of a line.
fn number(line: &str, key: &str) -> Option<u64> {
    if line.starts_with('{') {
        return serde_json::from_str::<Value>(line).ok()?.get(key)?.as_u64();
    }
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split(' ').next()?.parse().ok()
}

/// The lines of `log` with `message` and every `(key, value)`.
fn find<'a>(log: &'a str, message: &str, fields: &[(&str, &str)]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains(message) && fields.iter().all(|(k, v)| has(l, k, v)))
        .collect()
}

/// Waits until a line with `message` and `fields` is logged; returns it.
async fn wait_line(broker: &TestBroker, message: &str, fields: &[(&str, &str)]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = broker.log();
        if let Some(line) = find(&log, message, fields).first() {
            return (*line).to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {message:?} line with {fields:?}; log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connack(broker: &TestBroker, id: &str, user: Option<&str>, password: &str) -> u8 {
    let mut raw = broker.raw().await;
    let mut c = Connect::new(Version::V5, id);
    c.username = user.map(str::to_owned);
    c.password = Some(password.as_bytes().to_vec());
    let (_, code, _) = raw.connect(&c).await.expect("CONNACK");
    code
}

async fn mtls_connack(broker: &TestBroker, listener: &str, cn: &str, id: &str) -> u8 {
    let cert = broker.pki.client(cn);
    let mut raw = RawClient::tls(broker.addr(listener), broker.ca_pem(), Some(&cert))
        .await
        .expect("TLS with a valid certificate");
    let (_, code, _) = raw
        .connect(&Connect::new(Version::V311, id))
        .await
        .expect("CONNACK");
    code
}

/// A client with certificate `cn` refused on `listener`: the refusal line,
/// which names the certificate.
async fn refused_by_certificate(broker: &TestBroker, listener: &str, cn: &str) -> String {
    let id = client_id(cn);
    assert_ne!(mtls_connack(broker, listener, cn, &id).await, 0);
    let line = wait_line(broker, "login refused", &[("client_id", &id)]).await;
    assert!(
        line.contains("cert_subject") && line.contains(&format!("CN={cn}")),
        "{line}"
    );
    line
}

async fn scenario(format: &str) {
    let broker = start(format);
    broker.user_with_rights("alice", ALICE_PW, "alice/#").await;
    broker.add_user_no_password("dev1").await;
    broker.allow("dev1", "publish", "dev1/#").await;
    let tls = broker.tls_addr().to_string();
    let tls_ip = tls.split(':').next().expect("ip").to_owned();

    // The startup line names the store and the data dir.
    let start_line = wait_line(&broker, "starting", &[]).await;
    assert!(
        names(&start_line, "store") && names(&start_line, "data_dir"),
        "{start_line}"
    );
    assert!(start_line.contains("sqlite:"), "{start_line}");

    // A good password login, then its DISCONNECT.
    let alice_id = client_id("alice");
    let mut alice = broker
        .login(Version::V5, &alice_id, "alice", ALICE_PW)
        .await;
    let line = wait_line(&broker, "client connected", &[("client_id", &alice_id)]).await;
    for (k, v) in [
        ("username", "alice"),
        ("auth", "password"),
        ("listener", "tls"),
        ("protocol", "5"),
    ] {
        assert!(has(&line, k, v), "{k}={v} in {line}");
    }
    assert!(line.contains(&format!("{tls_ip}:")), "the peer: {line}");

    // A denied publish burst: one line for the first, then a count.
    for _ in 0..40 {
        assert_eq!(
            alice
                .publish_acked(Publish::new("forbidden/x", b"no", 1))
                .await,
            0x87
        );
    }
    alice.disconnect().await;
    let line = wait_line(
        &broker,
        "client disconnected",
        &[("client_id", &alice_id), ("reason", "client_disconnect")],
    )
    .await;
    assert!(has(&line, "code", "0x00"), "{line}");
    let log = broker.log();
    let first = find(&log, "publish denied", &[("client_id", &alice_id)]);
    assert_eq!(
        first.len(),
        1,
        "one whole line for the first denial:\n{log}"
    );
    assert!(has(first[0], "topic", "forbidden/x"), "{}", first[0]);
    let summaries = find(&log, "publishes denied since", &[("client_id", &alice_id)]);
    let counted: u64 = summaries.iter().filter_map(|l| number(l, "count")).sum();
    assert_eq!(counted, 39, "the other denials counted:\n{log}");
    assert!(summaries.len() <= 2, "no line per denied message:\n{log}");

    // A wrong password and an unknown user: the same answer to the
    // client, two different reasons in the log.
    let bad_id = client_id("badpw");
    let unknown_id = client_id("nobody");
    let wrong = connack(&broker, &bad_id, Some("alice"), WRONG_PW).await;
    let unknown = connack(&broker, &unknown_id, Some("nobody"), NOBODY_PW).await;
    assert_eq!(wrong, 0x86);
    assert_eq!(unknown, wrong, "the client cannot tell them apart");
    let line = wait_line(&broker, "login refused", &[("client_id", &bad_id)]).await;
    assert!(has(&line, "username", "alice"), "{line}");
    assert!(has(&line, "reason", "wrong password"), "{line}");
    assert!(has(&line, "listener", "tls"), "{line}");
    let line = wait_line(&broker, "login refused", &[("client_id", &unknown_id)]).await;
    assert!(has(&line, "username", "nobody"), "{line}");
    assert!(has(&line, "reason", "unknown user"), "{line}");

    // mTLS: a known certificate user, an unknown one, and a certificate
    // that names no user on this listener.
    let dev_id = client_id("dev1");
    assert_eq!(mtls_connack(&broker, "mtls", "dev1", &dev_id).await, 0);
    let line = wait_line(&broker, "client connected", &[("client_id", &dev_id)]).await;
    assert!(has(&line, "username", "dev1"), "{line}");
    assert!(has(&line, "auth", "certificate"), "{line}");
    assert!(
        line.contains("cert_subject") && line.contains("CN=dev1"),
        "{line}"
    );
    assert!(has(&line, "protocol", "3.1.1"), "{line}");
    let line = refused_by_certificate(&broker, "mtls", "mallory").await;
    assert!(has(&line, "reason", "unknown user"), "{line}");
    let line = refused_by_certificate(&broker, "mtls-email", "dev1").await;
    assert!(!names(&line, "username"), "no empty username: {line}");

    // A JWT login, and a forged token.
    let good = token("jwtuser", JWT_SECRET);
    let forged = token("jwtuser", FORGED_SECRET);
    let jwt_id = client_id("jwt");
    assert_eq!(connack(&broker, &jwt_id, None, &good).await, 0);
    let line = wait_line(&broker, "client connected", &[("client_id", &jwt_id)]).await;
    assert!(
        has(&line, "auth", "jwt") && has(&line, "username", "jwtuser"),
        "{line}"
    );
    let forged_id = client_id("forged");
    assert_eq!(connack(&broker, &forged_id, None, &forged).await, 0x86);
    wait_line(&broker, "login refused", &[("client_id", &forged_id)]).await;

    // A takeover: the old connection's end says so, and a line names both
    // peers.
    let twin = client_id("twin");
    let _first = broker.login(Version::V5, &twin, "alice", ALICE_PW).await;
    let _second = broker.login(Version::V5, &twin, "alice", ALICE_PW).await;
    let line = wait_line(&broker, "session taken over", &[("client_id", &twin)]).await;
    assert!(
        names(&line, "old_peer") && names(&line, "new_peer"),
        "{line}"
    );
    wait_line(
        &broker,
        "client disconnected",
        &[("client_id", &twin), ("reason", "taken_over")],
    )
    .await;

    // A socket closed without DISCONNECT.
    let lost_id = client_id("lost");
    drop(broker.login(Version::V5, &lost_id, "alice", ALICE_PW).await);
    wait_line(
        &broker,
        "client disconnected",
        &[("client_id", &lost_id), ("reason", "socket_closed")],
    )
    .await;

    // A failed TLS handshake: no client certificate on an mTLS listener.
    // (TLS 1.3: the client may learn of the refusal only at its first read.)
    let _ = RawClient::tls(broker.mtls_addr(), broker.ca_pem(), None).await;
    let line = wait_line(&broker, "handshake failed", &[("listener", "mtls")]).await;
    assert!(names(&line, "peer"), "{line}");

    // mosquitto_pub with `-h 127.0.0.1` (an IP address as SNI) and a
    // password.
    let ca = broker.dir.path().join("ca.pem");
    let mosq_id = client_id("mosq");
    broker.user_with_rights("mosq", MOSQ_PW, "m/#").await;
    let out = Mosq::with_password(broker.tls_addr().port(), &ca, ("mosq", MOSQ_PW), &mosq_id)
        .publish("m/x", "hello", 1)
        .await;
    assert!(out.status.success(), "{out:?}");
    wait_line(&broker, "client disconnected", &[("client_id", &mosq_id)]).await;

    tokio::time::sleep(QUIET).await;
    let log = broker.log();
    for secret in [
        ALICE_PW,
        WRONG_PW,
        NOBODY_PW,
        MOSQ_PW,
        JWT_SECRET,
        FORGED_SECRET,
        good.as_str(),
        forged.as_str(),
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
    // The signature alone must not be there either.
    for t in [&good, &forged] {
        let sig = t.rsplit('.').next().expect("signature");
        assert!(!log.contains(sig), "a token signature is in the log");
    }
    assert!(!log.contains("username=\"\""), "an empty username:\n{log}");
    assert!(
        !log.contains("\"username\":\"\""),
        "an empty username:\n{log}"
    );
    assert!(
        !log.contains(SNI_WARNING),
        "no rustls warning for an IP address as SNI at RUST_LOG=info:\n{log}"
    );
    if format == "json" {
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object a line ({e}): {line}"));
            for key in ["timestamp", "level", "target", "message"] {
                assert!(v.get(key).is_some(), "{key} in {line}");
            }
        }
    }
}

#[tokio::test]
async fn text_lines_explain_connects_refusals_and_denials_without_secrets() {
    scenario("text").await;
}

#[tokio::test]
async fn json_lines_explain_connects_refusals_and_denials_without_secrets() {
    scenario("json").await;
}

/// `mosquitto_pub -h 127.0.0.1` sends the IP address as SNI, which rustls
/// warns about. The built-in filter keeps rustls at errors whatever
/// `RUST_LOG` adds, unless `RUST_LOG` names rustls itself.
async fn sni_warning_with(rust_log: &str) -> String {
    let broker = TestBroker::start(BrokerOptions {
        rust_log: Some(rust_log.to_owned()),
        ..BrokerOptions::default()
    });
    broker.user_with_rights("mosq", MOSQ_PW, "m/#").await;
    let ca = broker.dir.path().join("ca.pem");
    let id = client_id("sni");
    let out = Mosq::with_password(broker.tls_addr().port(), &ca, ("mosq", MOSQ_PW), &id)
        .publish("m/x", "hello", 0)
        .await;
    assert!(out.status.success(), "{out:?}");
    wait_line(&broker, "client disconnected", &[("client_id", &id)]).await;
    tokio::time::sleep(QUIET).await;
    broker.log()
}

#[tokio::test]
async fn rust_log_adds_to_the_built_in_filters() {
    let log = sni_warning_with("info").await;
    assert!(
        !log.contains(SNI_WARNING),
        "RUST_LOG=info keeps rustls quiet:\n{log}"
    );
    let log = sni_warning_with("debug,warden=info").await;
    assert!(!log.contains(SNI_WARNING), "even at debug:\n{log}");
    assert!(
        log.contains("client connected"),
        "RUST_LOG's own directives apply:\n{log}"
    );
    let log = sni_warning_with("info,rustls=warn").await;
    assert!(
        log.contains(SNI_WARNING),
        "a rustls directive in RUST_LOG wins:\n{log}"
    );
}

/// The startup line of a server store shows its URL without the password.
#[tokio::test]
async fn the_startup_line_hides_the_store_password() {
    let broker = TestBroker::start(BrokerOptions {
        store: Some(
            "{ backend: postgres, url: \"postgres://postgres:pg-secret-x81@127.0.0.1:5432/test\" }"
                .to_owned(),
        ),
        ..BrokerOptions::default()
    });
    let line = wait_line(&broker, "starting", &[]).await;
    assert!(
        line.contains("postgres://postgres:***@127.0.0.1:5432/test"),
        "{line}"
    );
    assert!(!broker.log().contains("pg-secret-x81"), "{}", broker.log());
}

/// A client that goes silent past its keep alive, and a peer that never
/// finishes the TLS handshake: both are explained at INFO.
#[tokio::test]
async fn keepalive_timeouts_and_stalled_handshakes_are_explained() {
    let broker = TestBroker::start(BrokerOptions {
        connect_timeout: Some("1s"),
        ..BrokerOptions::default()
    });
    broker.user_with_rights("alice", ALICE_PW, "alice/#").await;
    let id = client_id("quiet");
    let mut c = Connect::new(Version::V5, &id).login("alice", ALICE_PW);
    c.keep_alive = 1;
    let _silent = broker.login_with(c).await;
    let line = wait_line(
        &broker,
        "client disconnected",
        &[("client_id", &id), ("reason", "keepalive_timeout")],
    )
    .await;
    assert!(has(&line, "code", "0x8d"), "{line}");

    // TCP only: no ClientHello within the listener's connect timeout.
    let _tcp = tokio::net::TcpStream::connect(broker.tls_addr())
        .await
        .expect("tcp");
    let line = wait_line(&broker, "handshake failed", &[("listener", "tls")]).await;
    assert!(
        line.contains("no handshake within the connect timeout"),
        "{line}"
    );
    assert!(!broker.log().contains(ALICE_PW));
}
