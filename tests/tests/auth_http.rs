//! `auth.http`: an external HTTP service authenticates logins and gives
//! their rules, which the broker compiles and enforces locally; TTL expiry
//! and `POST /api/policy/invalidate` reach live subscriptions; an outage, a
//! slow or a malformed answer refuses new logins as server-unavailable
//! (never an allow) while connected clients keep their policy; `auth.chain`
//! composes JWT, the service and the store.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_e2e::auth_service::{AuthService, Mode};
use warden_e2e::broker::ADMIN_TOKEN;
use warden_e2e::http::{get, request_with_body, scrape, value};
use warden_e2e::*;

const SERVICE_TOKEN: &str = "svc-token-0123456789";

fn alice_rules() -> Value {
    json!([
        { "effect": "allow", "actions": ["publish"], "pattern": "a/#" },
        { "effect": "deny", "actions": ["publish"], "pattern": "a/secret" },
        { "effect": "allow", "actions": ["subscribe", "receive"], "pattern": "in/#" },
        { "effect": "allow", "actions": ["subscribe"], "pattern": "${username}/#" },
    ])
}

/// A service knowing alice, and a broker asking it (with a bearer token),
/// the admin API on, and a store superuser `root` to publish with.
async fn setup(extra: &str) -> (AuthService, TestBroker) {
    let service = AuthService::start().await;
    service.with(|s| s.token = Some(SERVICE_TOKEN.into()));
    service.add_user("alice", "pw", &["staff"], alice_rules());
    let broker = TestBroker::start(BrokerOptions {
        auth_extra: format!(
            ", http: {{ url: \"{}\", token: {SERVICE_TOKEN}, timeout: 500ms, \
             connect_timeout: 300ms, breaker_open: 200ms, breaker_max_open: 500ms{extra} }}",
            service.url()
        ),
        metrics: true,
        ..BrokerOptions::default()
    });
    broker
        .cli_stdin(
            &["user", "add", "root", "--password-stdin", "--superuser"],
            "pw",
        )
        .await;
    (service, broker)
}

async fn connack(broker: &TestBroker, version: Version, user: &str, password: &str) -> u8 {
    connack_as(broker, version, &client_id("h"), user, password).await
}

async fn connack_as(
    broker: &TestBroker,
    version: Version,
    id: &str,
    user: &str,
    password: &str,
) -> u8 {
    let mut raw = broker.raw().await;
    let c = Connect::new(version, id).login(user, password);
    raw.connect(&c).await.expect("CONNACK").1
}

/// The filters the admin API lists for `client`.
async fn subscriptions(broker: &TestBroker, client: &str) -> Vec<String> {
    let reply = get(
        broker.addr("metrics"),
        &format!("/api/clients/{client}"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["subscriptions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().expect("filter").to_owned())
        .collect()
}

/// Poll until `client` no longer holds `filter`; how long it took.
async fn wait_removed(broker: &TestBroker, client: &str, filter: &str) -> Duration {
    let start = Instant::now();
    while subscriptions(broker, client)
        .await
        .iter()
        .any(|f| f == filter)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{filter} still held; log:\n{}",
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn the_service_allows_and_refuses_logins() {
    let (service, broker) = setup("").await;
    assert_eq!(connack(&broker, Version::V5, "alice", "pw").await, 0);
    assert_eq!(connack(&broker, Version::V5, "alice", "wrong").await, 0x86);
    assert_eq!(connack(&broker, Version::V5, "mallory", "pw").await, 0x86);
    assert_eq!(
        connack(&broker, Version::V311, "alice", "wrong").await,
        0x04
    );
    // What the service was told about the login.
    let last = service.with(|s| s.last_login.clone()).expect("asked");
    assert_eq!(last["username"], "alice");
    assert_eq!(last["listener"], "tls");
    assert!(last["client_id"]
        .as_str()
        .is_some_and(|c| c.starts_with("h-")));
    assert!(last["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
    assert!(broker.wait_log("refused by the auth service", WAIT).await);
    // A store user the service does not know: the default chain (the
    // service, then the store; first_match) lets the store accept him.
    broker.add_user("bob", "pw", &[]).await;
    assert_eq!(connack(&broker, Version::V5, "bob", "pw").await, 0);
}

#[tokio::test]
async fn rules_from_the_service_are_enforced_locally() {
    let (service, broker) = setup("").await;
    let mut alice = broker
        .login(Version::V5, &client_id("alice"), "alice", "pw")
        .await;
    assert_eq!(alice.publish_acked(Publish::new("a/x", b"1", 1)).await, 0);
    assert_eq!(
        alice.publish_acked(Publish::new("a/secret", b"1", 1)).await,
        0x87,
        "the service's deny overrides its allow"
    );
    assert_eq!(
        alice.publish_acked(Publish::new("b/x", b"1", 1)).await,
        0x87
    );
    assert_eq!(alice.subscribe("in/#", 1).await, 1);
    assert_eq!(alice.subscribe("alice/#", 0).await, 0, "placeholders");
    assert_eq!(alice.subscribe("other/#", 1).await, 0x87);
    let mut root = broker
        .login(Version::V5, &client_id("root"), "root", "pw")
        .await;
    root.publish_acked(Publish::new("in/1", b"hello", 1)).await;
    assert_eq!(
        alice.next_publish(WAIT).await.expect("delivered").payload,
        b"hello"
    );
    // alice may subscribe to alice/# but not receive there.
    root.publish_acked(Publish::new("alice/1", b"no", 1)).await;
    alice
        .expect_no_publish(QUIET, "no receive rule for alice/#")
        .await;
    let calls = service.with(|s| (s.authenticate_calls, s.rules_calls));
    // Decisions are local: a request per login (alice's, and root's, which
    // the service refuses and the store accepts) and one rules request,
    // whatever the traffic.
    assert_eq!(calls, (2, 1));
}

#[tokio::test]
async fn cached_answers_spare_the_service() {
    let (service, broker) = setup("").await;
    service.with(|s| {
        s.login_ttl = Some(60);
        s.rules_ttl = Some(60);
    });
    // The same client reconnecting: answered from the caches.
    let id = client_id("alice");
    for _ in 0..3 {
        assert_eq!(
            connack_as(&broker, Version::V5, &id, "alice", "pw").await,
            0
        );
    }
    assert_eq!(
        service.with(|s| (s.authenticate_calls, s.rules_calls)),
        (1, 1)
    );
    // The login cache is per credentials and client: a wrong password or
    // another client id asks again; the rules are per user.
    assert_eq!(
        connack_as(&broker, Version::V5, &id, "alice", "nope").await,
        0x86
    );
    assert_eq!(connack(&broker, Version::V5, "alice", "pw").await, 0);
    assert_eq!(
        service.with(|s| (s.authenticate_calls, s.rules_calls)),
        (3, 1)
    );
    let m = scrape(broker.addr("metrics")).await;
    assert_eq!(
        value(&m, "warden_auth_http_cache_hits_total{kind=\"login\"}"),
        2.0
    );
    assert_eq!(
        value(&m, "warden_auth_http_cache_hits_total{kind=\"rules\"}"),
        3.0
    );
}

#[tokio::test]
async fn ttl_expiry_revokes_a_live_subscription() {
    let (service, broker) = setup("").await;
    service.with(|s| s.rules_ttl = Some(1));
    let id = client_id("alice");
    let mut alice = broker.login(Version::V5, &id, "alice", "pw").await;
    assert_eq!(alice.subscribe("in/#", 1).await, 1);
    // The service stops granting in/#.
    service.with(|s| {
        s.rules.insert(
            "alice".into(),
            json!([{ "effect": "allow", "actions": ["publish"], "pattern": "a/#" }]),
        );
    });
    let took = wait_removed(&broker, &id, "in/#").await;
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let mut root = broker
        .login(Version::V5, &client_id("root"), "root", "pw")
        .await;
    root.publish_acked(Publish::new("in/1", b"late", 1)).await;
    alice.expect_no_publish(QUIET, "revoked by TTL").await;
}

#[tokio::test]
async fn pushed_invalidation_revokes_within_a_second() {
    let (service, broker) = setup("").await;
    service.with(|s| s.rules_ttl = Some(3600));
    let id = client_id("alice");
    let mut alice = broker.login(Version::V5, &id, "alice", "pw").await;
    assert_eq!(alice.subscribe("in/#", 1).await, 1);
    service.with(|s| {
        s.rules.insert("alice".into(), json!([]));
    });
    // Unauthenticated: refused.
    let denied = request_with_body(
        broker.addr("metrics"),
        "POST",
        "/api/policy/invalidate",
        None,
        r#"{"username":"alice"}"#,
    )
    .await;
    assert_eq!(denied.status, 401);
    let bad = request_with_body(
        broker.addr("metrics"),
        "POST",
        "/api/policy/invalidate",
        Some(ADMIN_TOKEN),
        r#"{"username":"alice","all":true}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
    let pushed = Instant::now();
    let reply = request_with_body(
        broker.addr("metrics"),
        "POST",
        "/api/policy/invalidate",
        Some(ADMIN_TOKEN),
        r#"{"username":"alice"}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["sessions"], 1);
    wait_removed(&broker, &id, "in/#").await;
    let took = pushed.elapsed();
    // Measured, with a generous bound for a loaded machine; the log has it.
    eprintln!("invalidation reached the subscription in {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        broker
            .wait_log("subscription no longer allowed", WAIT)
            .await
    );
}

#[tokio::test]
async fn the_service_down_refuses_new_logins_and_spares_connected_clients() {
    let (service, broker) = setup("").await;
    let mut alice = broker
        .login(Version::V5, &client_id("alice"), "alice", "pw")
        .await;
    assert_eq!(alice.subscribe("in/#", 1).await, 1);
    let mut root = broker
        .login(Version::V5, &client_id("root"), "root", "pw")
        .await;

    service.stop();
    // The service's tasks end at their next turn.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..4 {
        assert_eq!(connack(&broker, Version::V5, "alice", "pw").await, 0x88);
    }
    assert_eq!(connack(&broker, Version::V311, "alice", "pw").await, 0x03);
    assert!(broker.wait_log("auth service unavailable", WAIT).await);
    let m = scrape(broker.addr("metrics")).await;
    assert_eq!(value(&m, "warden_auth_http_down"), 1.0);
    // The connected client keeps its compiled policy.
    root.publish_acked(Publish::new("in/1", b"still", 1)).await;
    assert_eq!(
        alice.next_publish(WAIT).await.expect("delivered").payload,
        b"still"
    );
    assert_eq!(alice.publish_acked(Publish::new("a/1", b"x", 1)).await, 0);

    service.restart().await;
    let start = Instant::now();
    loop {
        let code = connack(&broker, Version::V5, "alice", "pw").await;
        if code == 0 {
            break;
        }
        assert_eq!(code, 0x88);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no recovery; log:\n{}",
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(broker.wait_log("auth service reachable again", WAIT).await);
    let m = scrape(broker.addr("metrics")).await;
    assert_eq!(value(&m, "warden_auth_http_down"), 0.0);
    let log = broker.log();
    assert_eq!(log.matches("auth service unavailable;").count(), 1, "{log}");
    assert_eq!(log.matches("auth service reachable again").count(), 1);
}

#[tokio::test]
async fn a_slow_service_is_a_refusal_never_an_allow() {
    let (service, broker) = setup("").await;
    service.with(|s| s.mode = Mode::Slow(Duration::from_secs(3)));
    let start = Instant::now();
    assert_eq!(connack(&broker, Version::V5, "alice", "pw").await, 0x88);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "refused at the timeout, not after the answer"
    );
    assert!(broker.wait_log("too slow", WAIT).await);
}

#[tokio::test]
async fn a_malformed_answer_is_a_refusal() {
    let (service, broker) = setup(", breaker_failures: 100").await;
    service.with(|s| s.mode = Mode::MalformedAuth);
    assert_eq!(connack(&broker, Version::V5, "alice", "pw").await, 0x88);
    service.with(|s| s.mode = Mode::MalformedRules);
    assert_eq!(connack(&broker, Version::V5, "alice", "pw").await, 0x88);
    assert!(broker.wait_log("answer malformed", WAIT).await);
    // A wrong bearer token: the service answers 401, also never an allow.
    service.with(|s| {
        s.mode = Mode::Normal;
        s.token = Some("another".into());
    });
    assert_eq!(connack(&broker, Version::V5, "alice", "pw").await, 0x88);
    service.with(|s| s.token = Some(SERVICE_TOKEN.into()));
    assert_eq!(connack(&broker, Version::V5, "alice", "pw").await, 0);
}

const JWT_SECRET: &str = "e2e-secret-0123456789-0123456789-abcdef";

fn token(sub: &str, exp_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": sub, "exp": now + exp_in, "roles": ["ops"] }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("token")
}

/// JWT → HTTP → SQLite under `compose`. The service knows alice (pw) and
/// carol (pw "both"); the store knows bob (pw), carol (pw "both", role
/// ops) and root.
async fn chain_setup(compose: &str) -> (AuthService, TestBroker) {
    let service = AuthService::start().await;
    service.add_user("alice", "pw", &[], alice_rules());
    service.add_user(
        "carol",
        "both",
        &[],
        json!([{ "effect": "allow", "actions": ["publish"], "pattern": "c/#" }]),
    );
    let broker = TestBroker::start(BrokerOptions {
        auth_extra: format!(
            ", jwt: {{ secret: \"{JWT_SECRET}\", leeway: 0s }}, \
             http: {{ url: \"{}\", timeout: 500ms }}, \
             chain: [jwt, http, store], compose: {compose}",
            service.url()
        ),
        ..BrokerOptions::default()
    });
    broker.add_user("bob", "pw", &[]).await;
    broker.add_user("carol", "both", &["ops"]).await;
    broker
        .acl(&["--role", "ops", "--allow", "publish", "ops/#"])
        .await;
    (service, broker)
}

#[tokio::test]
async fn a_chain_with_first_match_takes_the_first_that_accepts() {
    let (_service, broker) = chain_setup("first_match").await;
    assert_eq!(
        connack(&broker, Version::V5, "dev1", &token("dev1", 600)).await,
        0,
        "jwt"
    );
    assert_eq!(
        connack(&broker, Version::V5, "alice", "pw").await,
        0,
        "http"
    );
    assert_eq!(
        connack(&broker, Version::V5, "bob", "pw").await,
        0,
        "the service refuses bob, the store accepts him"
    );
    assert_eq!(connack(&broker, Version::V5, "mallory", "pw").await, 0x86);
    assert_eq!(
        connack(&broker, Version::V5, "dev1", &token("dev1", -60)).await,
        0x86
    );
    assert!(
        broker.wait_log("token expired", WAIT).await,
        "the first refusal is the one logged"
    );
}

#[tokio::test]
async fn a_chain_with_all_must_allow_needs_every_applicable_yes() {
    let (service, broker) = chain_setup("all_must_allow").await;
    assert_eq!(
        connack(&broker, Version::V5, "alice", "pw").await,
        0x86,
        "the store does not know alice"
    );
    assert_eq!(
        connack(&broker, Version::V5, "bob", "pw").await,
        0x86,
        "the service does not know bob"
    );
    // Both know carol: the store's role rules and the service's rules join.
    let mut carol = broker
        .login(Version::V5, &client_id("carol"), "carol", "both")
        .await;
    assert_eq!(carol.publish_acked(Publish::new("ops/1", b"x", 1)).await, 0);
    assert_eq!(carol.publish_acked(Publish::new("c/1", b"x", 1)).await, 0);
    assert_eq!(
        carol.publish_acked(Publish::new("z/1", b"x", 1)).await,
        0x87
    );
    // A token login: the JWT (with the store's view of carol) and the
    // service must both accept; the store's password check does not apply.
    let t = token("carol", 600);
    assert_eq!(
        connack(&broker, Version::V5, "carol", &t).await,
        0x86,
        "the service does not accept this token as carol's password"
    );
    service.add_user(
        "carol",
        &t,
        &[],
        json!([{ "effect": "allow", "actions": ["publish"], "pattern": "c/#" }]),
    );
    assert_eq!(connack(&broker, Version::V5, "carol", &t).await, 0);
    // The service down: nothing gets in, not even what the store accepts.
    service.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(connack(&broker, Version::V5, "carol", "both").await, 0x88);
}

#[tokio::test]
async fn mutual_tls_to_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = warden_e2e::certs::TestPki::new(dir.path());
    let service = AuthService::start_with(Some(warden_e2e::auth_service::mtls_config(&pki))).await;
    service.add_user("alice", "pw", &[], alice_rules());
    let with_cert = pki.client("warden");
    let http = |client: &str| {
        format!(
            ", http: {{ url: \"{}\", ca_file: {}, timeout: 1s{client} }}",
            service.url(),
            pki.ca_file.display()
        )
    };
    let broker = TestBroker::start(BrokerOptions {
        auth_extra: http(&format!(
            ", client_cert: {}, client_key: {}",
            with_cert.cert.display(),
            with_cert.key.display()
        )),
        ..BrokerOptions::default()
    });
    assert_eq!(connack(&broker, Version::V5, "alice", "pw").await, 0);
    assert_eq!(connack(&broker, Version::V5, "alice", "no").await, 0x86);
    drop(broker);
    // Without its certificate the broker cannot reach the service: refused.
    let broker = TestBroker::start(BrokerOptions {
        auth_extra: http(""),
        ..BrokerOptions::default()
    });
    assert_eq!(connack(&broker, Version::V5, "alice", "pw").await, 0x88);
}

/// The README's example service (`examples/auth_service.py`) behind a
/// broker, as the README shows it.
#[tokio::test]
async fn the_python_example_service_works_as_documented() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        probe.local_addr().expect("addr").port()
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/auth_service.py");
    let mut child = tokio::process::Command::new("python3")
        .args([script, "--port", &port.to_string(), "--token", "s3cret"])
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "service did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let broker = TestBroker::start(BrokerOptions {
        auth_extra: format!(", http: {{ url: \"http://127.0.0.1:{port}\", token: s3cret }}"),
        ..BrokerOptions::default()
    });
    assert_eq!(connack(&broker, Version::V5, "alice", "nope").await, 0x86);
    let mut alice = broker
        .login(Version::V5, &client_id("alice"), "alice", "pw")
        .await;
    assert_eq!(
        alice
            .publish_acked(Publish::new("devices/alice/t", b"x", 1))
            .await,
        0
    );
    assert_eq!(
        alice
            .publish_acked(Publish::new("devices/bob/t", b"x", 1))
            .await,
        0x87
    );
    assert_eq!(alice.subscribe("devices/#", 1).await, 1, "staff rule");
    child.kill().await.ok();
}

/// A session holding a token's grant and the service's rules
/// (all_must_allow) renews its token with MQTT 5 AUTH: the service's rules
/// stay with the session.
#[tokio::test]
async fn a_token_renewed_with_auth_keeps_the_services_rules() {
    use warden_e2e::wire::{encode_auth, AUTH_DATA, AUTH_METHOD};
    let (service, broker) = chain_setup("all_must_allow").await;
    // A method-token login has no password: the service vouches for dev1
    // on its username.
    service.add_user(
        "dev1",
        "",
        &[],
        json!([{ "effect": "allow", "actions": ["publish"], "pattern": "svc/#" }]),
    );
    let mut raw = broker.raw().await;
    let mut c = Connect::new(Version::V5, &client_id("renew"));
    c.username = Some("dev1".into());
    c.props = Props(vec![
        Prop::Str(AUTH_METHOD, "jwt".into()),
        Prop::Bin(AUTH_DATA, token("dev1", 600).into_bytes()),
    ]);
    let (_, code, _) = raw.connect(&c).await.expect("CONNACK");
    assert_eq!(code, 0, "{}", broker.log());
    assert_eq!(raw.publish_acked(Publish::new("svc/1", b"x", 1)).await, 0);
    assert_eq!(
        raw.publish_acked(Publish::new("other/1", b"x", 1)).await,
        0x87
    );

    let auth = Props(vec![
        Prop::Str(AUTH_METHOD, "jwt".into()),
        Prop::Bin(AUTH_DATA, token("dev1", 1200).into_bytes()),
    ]);
    raw.send(&encode_auth(0x19, &auth))
        .await
        .expect("send AUTH");
    let reply = raw
        .wait_for(WAIT, |p| matches!(p, Incoming::Auth { .. }))
        .await
        .expect("AUTH reply");
    assert!(matches!(reply, Incoming::Auth { code: 0, .. }), "{reply:?}");
    // Give a (wrong) recompile time to land before checking.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        raw.publish_acked(Publish::new("svc/2", b"x", 1)).await,
        0,
        "the service's rules survive the renewal"
    );
    assert_eq!(
        raw.publish_acked(Publish::new("other/1", b"x", 1)).await,
        0x87
    );
}
