//! The audit log under a deny storm: 2,000 denied publishes in a burst
//! leave at most the configured rate of deny lines (plus its burst), the
//! rest are counted in `suppressed` lines, and every line is JSON. A failed
//! login is there with its reason and never its password (issue 13).

use std::time::{Duration, Instant};

use warden_e2e::*;

const RATE: u64 = 20;
const STORM: usize = 2000;

#[tokio::test]
async fn a_deny_storm_stays_within_the_audit_rate() {
    let broker = TestBroker::start(BrokerOptions {
        extra_yaml: format!("audit: {{ file: audit.log, rate: {RATE} }}\n"),
        ..BrokerOptions::default()
    });
    let path = broker.dir.path().join("data/audit.log");
    broker.user_with_rights("eve", "pw", "ok/#").await;
    let secret = "hunter2-never-logged";
    let (_, _, code) = warden_e2e::sessions::try_connect(
        &broker,
        &Connect::new(Version::V5, &client_id("bad")).login("eve", secret),
    )
    .await;
    assert_eq!(code, 0x86);

    // The policy changes above are audited too: let them be written first
    // (poll interval 1 s), so the storm's lines are the storm's alone.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let id = client_id("storm");
    let mut c = broker.login(Version::V5, &id, "eve", "pw").await;
    let started = Instant::now();
    for i in 0..STORM {
        c.publish(&Publish::new(&format!("no/{i}"), b"x", 0))
            .await
            .expect("publish");
    }
    // Everything was decided once this QoS 1 deny is acknowledged.
    assert_eq!(c.publish_acked(Publish::new("no/end", b"x", 1)).await, 0x87);
    // Let the suppressed count be written (at most a tick later).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let elapsed = started.elapsed().as_secs_f64();

    let text = std::fs::read_to_string(&path).expect("audit log written");
    assert!(!text.contains(secret), "a password reached the audit log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let failure = lines
        .iter()
        .find(|l| l["event"] == "auth_failure")
        .expect("the failed login is audited");
    assert_eq!(failure["username"], "eve");
    assert_eq!(failure["reason"], "bad_credentials");

    let denies: Vec<_> = lines.iter().filter(|l| l["event"] == "deny").collect();
    let allowed = RATE + (elapsed * RATE as f64).ceil() as u64;
    assert!(
        (denies.len() as u64) <= allowed,
        "{} deny lines in {elapsed:.1}s at {RATE}/s",
        denies.len()
    );
    assert!(denies.len() >= RATE as usize, "the burst is written");
    let d = denies[0];
    assert_eq!(d["client_id"], id.as_str());
    assert_eq!(d["username"], "eve");
    assert_eq!(d["action"], "publish");
    assert!(d["topic"].as_str().unwrap().starts_with("no/"));
    assert!(d["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(d["reason"], "no matching allow rule");
    let suppressed: u64 = lines
        .iter()
        .filter(|l| l["event"] == "suppressed")
        .map(|l| l["count"].as_u64().unwrap())
        .sum();
    // Lines written and lines suppressed account for every deny.
    assert_eq!(
        denies.len() as u64 + suppressed,
        STORM as u64 + 1,
        "denies {} suppressed {suppressed}",
        denies.len()
    );
}
