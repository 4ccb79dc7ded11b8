//! Shared subscriptions `$share/group/filter`: each message goes to one
//! member, round robin; a plain subscriber still gets every message.

use std::time::Duration;

use warden_e2e::*;

#[tokio::test]
async fn shared_group_members_take_turns() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "sh/#").await;
    let mut a = broker
        .login(Version::V5, &client_id("a"), "alice", "pw")
        .await;
    let mut b = broker
        .login(Version::V311, &client_id("b"), "alice", "pw")
        .await;
    let mut plain = broker
        .login(Version::V5, &client_id("plain"), "alice", "pw")
        .await;
    assert_eq!(a.subscribe("$share/g/sh/#", 1).await, 1);
    assert_eq!(b.subscribe("$share/g/sh/#", 1).await, 1);
    assert_eq!(plain.subscribe("sh/#", 1).await, 1);

    let mut p = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    for i in 0..6u8 {
        p.publish_acked(Publish::new("sh/t", &[i], 1)).await;
    }
    let mut got_a = Vec::new();
    while let Some(m) = a.next_publish(Duration::from_secs(1)).await {
        got_a.push(m.payload[0]);
    }
    let mut got_b = Vec::new();
    while let Some(m) = b.next_publish(Duration::from_secs(1)).await {
        got_b.push(m.payload[0]);
    }
    assert_eq!(
        got_a.len(),
        3,
        "round robin: a got {got_a:?}, b got {got_b:?}"
    );
    assert_eq!(
        got_b.len(),
        3,
        "round robin: a got {got_a:?}, b got {got_b:?}"
    );
    let mut all: Vec<u8> = got_a.iter().chain(got_b.iter()).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..6).collect::<Vec<u8>>(),
        "each message to exactly one member"
    );
    let alternating = got_a.windows(2).all(|w| w[1] == w[0] + 2);
    assert!(alternating, "members alternate: a got {got_a:?}");

    let mut got_plain = 0;
    while plain.next_publish(Duration::from_secs(1)).await.is_some() {
        got_plain += 1;
    }
    assert_eq!(got_plain, 6, "a plain subscriber gets every message");
}
