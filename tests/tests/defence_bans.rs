//! Brute force (issue 13, Defence): failed logins past `auth.bans` ban the
//! username or the source address; a banned login gets CONNACK 0x8A (v5) /
//! 0x05 (v3) and is closed even with the right password; the ban shows in
//! `/metrics` (exact deltas), in `GET /api/bans` and in the audit log as a
//! `ban` record; it ends when its duration is over, or when an operator
//! lifts it with `DELETE /api/bans/...`, and the login then works.

use std::time::{Duration, Instant};

use warden_e2e::broker::ADMIN_TOKEN;
use warden_e2e::http::{get, request, scrape, value};
use warden_e2e::sessions::try_connect;
use warden_e2e::*;

fn delta(
    before: &std::collections::HashMap<String, f64>,
    after: &std::collections::HashMap<String, f64>,
    key: &str,
) -> f64 {
    value(after, key) - value(before, key)
}

const BANNED_TOTAL_USER: &str = "warden_bans_total{kind=\"username\"}";
const BANNED_TOTAL_IP: &str = "warden_bans_total{kind=\"ip\"}";
const ACTIVE_USER: &str = "warden_bans_active{kind=\"username\"}";
const ACTIVE_IP: &str = "warden_bans_active{kind=\"ip\"}";
const AUTH_BANNED: &str = "warden_authentications_total{result=\"failure\",reason=\"banned\"}";
const AUTH_BAD: &str =
    "warden_authentications_total{result=\"failure\",reason=\"bad_credentials\"}";

/// A login with these credentials: its CONNACK code, after which a refused
/// connection must be closed by the broker.
async fn login_code(broker: &TestBroker, version: Version, user: &str, password: &str) -> u8 {
    let c = Connect::new(version, &client_id("bf")).login(user, password);
    let (mut raw, _, code) = try_connect(broker, &c).await;
    if code != 0 {
        let ending = raw.ending(WAIT).await;
        assert!(
            matches!(ending.end, RawError::Closed),
            "a refused login is closed: {ending:?}"
        );
    }
    code
}

fn audit_lines(broker: &TestBroker) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(broker.dir.path().join("data/audit.log"))
        .expect("audit log written");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Waits until the audit log holds a line for which `want` holds.
async fn audited(
    broker: &TestBroker,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(l) = audit_lines(broker).into_iter().find(|l| want(l)) {
            return l;
        }
        assert!(Instant::now() < deadline, "no such audit line");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_brute_forced_username_is_banned_then_released_when_the_ban_ends() {
    const FAILURES: u32 = 4;
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        auth_extra: format!(
            ", bans: {{ failures_per_ip: 0, failures_per_user: {FAILURES}, window: 1m, duration: 4s }}"
        ),
        extra_yaml: "audit: { file: audit.log, rate: 1000 }\n".into(),
        ..BrokerOptions::default()
    });
    let m = broker.addr("metrics");
    broker.user_with_rights("eve", "right", "e/#").await;
    broker.user_with_rights("bob", "pw", "b/#").await;
    let before = scrape(m).await;

    for _ in 0..FAILURES {
        assert_eq!(login_code(&broker, Version::V5, "eve", "guess").await, 0x86);
    }
    // Banned: the right password does not get in, in either protocol.
    assert_eq!(login_code(&broker, Version::V5, "eve", "right").await, 0x8A);
    assert_eq!(
        login_code(&broker, Version::V311, "eve", "right").await,
        0x05
    );
    // Only that username: another user from the same address gets in.
    assert_eq!(login_code(&broker, Version::V5, "bob", "pw").await, 0);

    let after = scrape(m).await;
    let d = |k: &str| delta(&before, &after, k);
    assert_eq!(d(BANNED_TOTAL_USER), 1.0);
    assert_eq!(d(BANNED_TOTAL_IP), 0.0);
    assert_eq!(value(&after, ACTIVE_USER), 1.0);
    assert_eq!(value(&after, ACTIVE_IP), 0.0);
    assert_eq!(d(AUTH_BAD), f64::from(FAILURES));
    assert_eq!(d(AUTH_BANNED), 2.0);
    // Banned logins cost no password verification: only the failures ran
    // argon2 (bob's login ran one more).
    assert_eq!(
        d("warden_password_verifications_total{kind=\"argon2\"}"),
        f64::from(FAILURES) + 1.0
    );

    // The API lists it (and only with the token).
    assert_eq!(get(m, "/api/bans", None).await.status, 401);
    let bans = get(m, "/api/bans", Some(ADMIN_TOKEN)).await;
    assert_eq!(bans.status, 200, "{}", bans.body);
    let list = bans.json();
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["kind"], "username");
    assert_eq!(list[0]["subject"], "eve");
    assert_eq!(list[0]["failures"], FAILURES);

    // The audit log has the ban, and the banned logins as failures.
    let ban = audited(&broker, |l| l["event"] == "ban").await;
    assert_eq!(ban["kind"], "username");
    assert_eq!(ban["subject"], "eve");
    assert_eq!(ban["seconds"], 4);
    assert_eq!(ban["reason"], "failed_logins");
    audited(&broker, |l| {
        l["event"] == "auth_failure" && l["reason"] == "banned" && l["username"] == "eve"
    })
    .await;

    // The ban ends on its own; then the right password works again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = get(m, "/api/bans", Some(ADMIN_TOKEN)).await.json();
        if list.as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "the ban never ended: {list}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(login_code(&broker, Version::V5, "eve", "right").await, 0);
    assert_eq!(login_code(&broker, Version::V311, "eve", "right").await, 0);
    let end = scrape(m).await;
    assert_eq!(value(&end, ACTIVE_USER), 0.0);
    assert_eq!(delta(&before, &end, BANNED_TOTAL_USER), 1.0);
}

#[tokio::test]
async fn an_address_is_banned_for_every_username_until_an_operator_lifts_it() {
    const FAILURES: usize = 5;
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        auth_extra: format!(
            ", bans: {{ failures_per_ip: {FAILURES}, failures_per_user: 0, window: 1m, duration: 10m }}"
        ),
        extra_yaml: "audit: { file: audit.log, rate: 1000 }\n".into(),
        ..BrokerOptions::default()
    });
    let m = broker.addr("metrics");
    broker.user_with_rights("alice", "pw", "a/#").await;
    let before = scrape(m).await;

    // A different made-up username each time: no username reaches a
    // threshold, the address does.
    for i in 0..FAILURES {
        let code = login_code(&broker, Version::V5, &format!("nobody{i}"), "x").await;
        assert_eq!(code, 0x86);
    }
    assert_eq!(login_code(&broker, Version::V5, "alice", "pw").await, 0x8A);
    assert_eq!(
        login_code(&broker, Version::V311, "alice", "pw").await,
        0x05
    );

    let after = scrape(m).await;
    let d = |k: &str| delta(&before, &after, k);
    assert_eq!(d(BANNED_TOTAL_IP), 1.0);
    assert_eq!(d(BANNED_TOTAL_USER), 0.0);
    assert_eq!(value(&after, ACTIVE_IP), 1.0);
    assert_eq!(d(AUTH_BAD), FAILURES as f64);
    assert_eq!(d(AUTH_BANNED), 2.0);
    // Unknown users still cost one dummy verification each; banned logins
    // cost none.
    assert_eq!(
        d("warden_password_verifications_total{kind=\"dummy\"}"),
        FAILURES as f64
    );

    let list = get(m, "/api/bans", Some(ADMIN_TOKEN)).await.json();
    assert_eq!(list[0]["kind"], "ip", "{list}");
    assert_eq!(list[0]["subject"], "127.0.0.1");
    assert!(list[0]["remaining_seconds"].as_u64().unwrap() > 60);
    let ban = audited(&broker, |l| l["event"] == "ban").await;
    assert_eq!(ban["kind"], "ip");
    assert_eq!(ban["subject"], "127.0.0.1");
    assert_eq!(ban["seconds"], 600);

    // Lifting needs the token, and a ban that exists.
    let path = "/api/bans/ip/127.0.0.1";
    assert_eq!(request(m, "DELETE", path, None).await.status, 401);
    assert_eq!(
        request(m, "DELETE", "/api/bans/ip/192.0.2.9", Some(ADMIN_TOKEN))
            .await
            .status,
        404
    );
    assert_eq!(
        request(m, "DELETE", "/api/bans/colour/x", Some(ADMIN_TOKEN))
            .await
            .status,
        400
    );
    assert_eq!(
        request(m, "DELETE", path, Some(ADMIN_TOKEN)).await.status,
        204
    );
    assert_eq!(
        request(m, "DELETE", path, Some(ADMIN_TOKEN)).await.status,
        404
    );
    assert_eq!(login_code(&broker, Version::V5, "alice", "pw").await, 0);
    let lifted = audited(&broker, |l| l["event"] == "ban" && l["seconds"] == 0).await;
    assert_eq!(lifted["subject"], "127.0.0.1");
    assert_eq!(lifted["reason"], "admin api");
    let end = scrape(m).await;
    assert_eq!(value(&end, ACTIVE_IP), 0.0);
}
