//! `connect` rules on client ids and the will's publish check at CONNECT.

use warden_e2e::*;

async fn code(broker: &TestBroker, c: Connect) -> u8 {
    let mut raw = broker.raw().await;
    raw.connect(&c).await.expect("CONNACK").1
}

#[tokio::test]
async fn connect_rule_restricts_client_ids() {
    let broker = TestBroker::start_default();
    broker.add_user("alice", "pw", &[]).await;
    broker
        .acl(&["--user", "alice", "--allow", "connect", "alice-*"])
        .await;
    for version in [Version::V311, Version::V5] {
        let ok = Connect::new(version, "alice-sensor").login("alice", "pw");
        assert_eq!(code(&broker, ok).await, 0, "{version:?} matching id");
        let bad = Connect::new(version, "bob-sensor").login("alice", "pw");
        let want = if version == Version::V5 { 0x87 } else { 0x05 };
        assert_eq!(
            code(&broker, bad).await,
            want,
            "{version:?} id outside the pattern"
        );
    }
}

#[tokio::test]
async fn connect_deny_overrides_allow() {
    let broker = TestBroker::start_default();
    broker.add_user("alice", "pw", &[]).await;
    broker
        .acl(&["--user", "alice", "--allow", "connect", "alice-*"])
        .await;
    broker
        .acl(&["--user", "alice", "--deny", "connect", "alice-bad*"])
        .await;
    let ok = Connect::new(Version::V5, "alice-good").login("alice", "pw");
    assert_eq!(code(&broker, ok).await, 0);
    let bad = Connect::new(Version::V5, "alice-bad-1").login("alice", "pw");
    assert_eq!(code(&broker, bad).await, 0x87);
}

fn with_will(version: Version, topic: &str) -> Connect {
    let mut c = Connect::new(version, &client_id("w")).login("alice", "pw");
    c.will = Some(Will {
        topic: topic.to_string(),
        payload: b"gone".to_vec(),
        qos: 1,
        ..Will::default()
    });
    c
}

#[tokio::test]
async fn will_topic_without_publish_right_is_refused() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "alice/#").await;
    assert_eq!(
        code(&broker, with_will(Version::V311, "other/will")).await,
        0x05
    );
    assert_eq!(
        code(&broker, with_will(Version::V5, "other/will")).await,
        0x87
    );
    assert_eq!(
        code(&broker, with_will(Version::V311, "alice/will")).await,
        0x00
    );
    assert_eq!(
        code(&broker, with_will(Version::V5, "alice/will")).await,
        0x00
    );
}

#[tokio::test]
async fn retained_will_needs_the_retain_right() {
    let broker = TestBroker::start_default();
    broker.add_user("alice", "pw", &[]).await;
    broker
        .acl(&[
            "--user", "alice", "--allow", "publish", "alice/#", "--retain", "false",
        ])
        .await;
    let mut c = with_will(Version::V5, "alice/will");
    if let Some(w) = c.will.as_mut() {
        w.retain = true;
    }
    assert_eq!(code(&broker, c).await, 0x87);
}
