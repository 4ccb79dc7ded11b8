//! JWT logins (`auth.jwt`): the token as the MQTT password or as MQTT 5
//! authentication data (method `jwt`); bad tokens refused with the reason in
//! the log; claims as roles and rules (deny overrides, with the store's
//! rules); the session ends when the token expires (DISCONNECT 0xA0) unless
//! an AUTH exchange brings a fresh token first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use warden_e2e::wire::{encode_auth, AUTH_DATA, AUTH_METHOD};
use warden_e2e::*;

const SECRET: &str = "e2e-secret-0123456789-0123456789-abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

async fn setup() -> TestBroker {
    let broker = TestBroker::start(BrokerOptions {
        auth_extra: format!(
            ", jwt: {{ secret: \"{SECRET}\", issuer: idp, audience: warden, leeway: 0s, \
             acl_claim: acl }}"
        ),
        ..BrokerOptions::default()
    });
    broker.cli_ok(&["role", "add", "sensors"]).await;
    broker
        .acl(&["--role", "sensors", "--allow", "publish", "sensors/#"])
        .await;
    broker
        .acl(&["--role", "sensors", "--deny", "publish", "t/secret"])
        .await;
    broker
}

fn claims(sub: &str, exp: u64) -> Value {
    json!({ "sub": sub, "iss": "idp", "aud": "warden", "exp": exp, "roles": ["sensors"] })
}

fn sign(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode token")
}

/// CONNECT with the token as the password (v5); the client and CONNACK code.
async fn login(broker: &TestBroker, username: Option<&str>, token: &str) -> (RawClient, u8) {
    let mut raw = broker.raw().await;
    let mut c = Connect::new(Version::V5, &client_id("jwt"));
    c.username = username.map(str::to_owned);
    c.password = Some(token.as_bytes().to_vec());
    let (_, code, _) = raw.connect(&c).await.expect("CONNACK");
    (raw, code)
}

/// CONNECT with authentication method `jwt` and the token as its data.
async fn login_with_method(broker: &TestBroker, token: &str) -> (RawClient, u8, Props) {
    let mut raw = broker.raw().await;
    let mut c = Connect::new(Version::V5, &client_id("jwtm"));
    c.props = Props(vec![
        Prop::Str(AUTH_METHOD, "jwt".into()),
        Prop::Bin(AUTH_DATA, token.as_bytes().to_vec()),
    ]);
    let (_, code, props) = raw.connect(&c).await.expect("CONNACK");
    (raw, code, props)
}

#[tokio::test]
async fn a_valid_token_logs_in_with_its_roles() {
    let broker = setup().await;
    let token = sign(&claims("dev1", now() + 600), SECRET);
    let (mut raw, code) = login(&broker, None, &token).await;
    assert_eq!(code, 0, "no store user needed, no username needed");
    assert_eq!(
        raw.publish_acked(Publish::new("sensors/dev1", b"x", 1))
            .await,
        0,
        "the role from the token brings the role's store rules"
    );
    assert_eq!(
        raw.publish_acked(Publish::new("other/x", b"x", 1)).await,
        0x87
    );
    // A username, when sent, must be the token's.
    let (_, code) = login(&broker, Some("dev1"), &token).await;
    assert_eq!(code, 0);
    let (_, code) = login(&broker, Some("dev2"), &token).await;
    assert_eq!(code, 0x86);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_reason_logged() {
    let broker = setup().await;
    let cases = [
        (sign(&claims("dev1", now() - 5), SECRET), "token expired"),
        (
            sign(
                &claims("dev1", now() + 600),
                "another-secret-0123456789-0123456789-x",
            ),
            "bad token signature",
        ),
        (
            sign(
                &json!({ "sub": "dev1", "iss": "idp", "aud": "elsewhere", "exp": now() + 600 }),
                SECRET,
            ),
            "wrong token audience",
        ),
        (
            sign(
                &json!({ "sub": "dev1", "iss": "idp", "aud": "warden" }),
                SECRET,
            ),
            "token lacks a required claim",
        ),
    ];
    for (token, reason) in cases {
        let (_, code) = login(&broker, None, &token).await;
        assert_eq!(code, 0x86, "{reason}");
        assert!(broker.wait_log(reason, WAIT).await, "log says {reason:?}");
    }
}

#[tokio::test]
async fn token_rules_join_the_store_rules_and_deny_overrides() {
    let broker = setup().await;
    let mut c = claims("dev1", now() + 600);
    c["acl"] = json!([
        { "effect": "allow", "actions": ["publish"], "pattern": "t/#" },
        { "effect": "deny", "actions": ["publish"], "pattern": "sensors/blocked" },
        { "effect": "allow", "actions": ["subscribe", "receive"], "pattern": "${username}/in/#" },
    ]);
    let (mut raw, code) = login(&broker, None, &sign(&c, SECRET)).await;
    assert_eq!(code, 0);
    assert_eq!(raw.publish_acked(Publish::new("t/ok", b"x", 1)).await, 0);
    assert_eq!(
        raw.publish_acked(Publish::new("t/secret", b"x", 1)).await,
        0x87,
        "the store's deny beats the token's allow"
    );
    assert_eq!(
        raw.publish_acked(Publish::new("sensors/blocked", b"x", 1))
            .await,
        0x87,
        "the token's deny beats the store's allow"
    );
    assert_eq!(
        raw.publish_acked(Publish::new("sensors/ok", b"x", 1)).await,
        0
    );
    assert_eq!(
        raw.subscribe("dev1/in/#", 1).await,
        1,
        "placeholders work in token rules"
    );
}

#[tokio::test]
async fn the_session_ends_when_the_token_expires() {
    let broker = setup().await;
    let token = sign(&claims("dev1", now() + 2), SECRET);
    let (mut raw, code) = login(&broker, None, &token).await;
    assert_eq!(code, 0);
    let ending = raw.ending(Duration::from_secs(6)).await;
    assert!(
        ending
            .packets
            .iter()
            .any(|p| matches!(p, Incoming::Disconnect { code: 0xA0, .. })),
        "v5 DISCONNECT 0xA0 at expiry: {ending:?}"
    );
}

#[tokio::test]
async fn auth_with_a_fresh_token_extends_the_session() {
    let broker = setup().await;
    let first = sign(&claims("dev1", now() + 2), SECRET);
    let (mut raw, code, props) = login_with_method(&broker, &first).await;
    assert_eq!(code, 0);
    assert_eq!(
        props.str(AUTH_METHOD),
        Some("jwt"),
        "CONNACK names the method"
    );

    let fresh = sign(&claims("dev1", now() + 600), SECRET);
    let auth = Props(vec![
        Prop::Str(AUTH_METHOD, "jwt".into()),
        Prop::Bin(AUTH_DATA, fresh.as_bytes().to_vec()),
    ]);
    raw.send(&encode_auth(0x19, &auth))
        .await
        .expect("send AUTH");
    let reply = raw
        .wait_for(WAIT, |p| matches!(p, Incoming::Auth { .. }))
        .await
        .expect("AUTH reply");
    let Incoming::Auth { code, props } = reply else {
        unreachable!("matched above")
    };
    assert_eq!(code, 0, "re-authenticated");
    assert_eq!(props.str(AUTH_METHOD), Some("jwt"));

    // Past the first token's expiry: still connected and served.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        raw.publish_acked(Publish::new("sensors/late", b"x", 1))
            .await,
        0
    );

    // A token for someone else ends the connection.
    let other = sign(&claims("dev2", now() + 600), SECRET);
    let auth = Props(vec![
        Prop::Str(AUTH_METHOD, "jwt".into()),
        Prop::Bin(AUTH_DATA, other.as_bytes().to_vec()),
    ]);
    raw.send(&encode_auth(0x19, &auth))
        .await
        .expect("send AUTH");
    let ending = raw.ending(WAIT).await;
    assert!(
        ending
            .packets
            .iter()
            .any(|p| matches!(p, Incoming::Disconnect { code: 0x87, .. })),
        "{ending:?}"
    );
}

#[tokio::test]
async fn a_disabled_store_user_cannot_use_a_token() {
    let broker = setup().await;
    broker.add_user("dev3", "pw", &[]).await;
    broker.cli_ok(&["user", "disable", "dev3"]).await;
    let token = sign(&claims("dev3", now() + 600), SECRET);
    let (_, code) = login(&broker, None, &token).await;
    assert_eq!(code, 0x87);
}
