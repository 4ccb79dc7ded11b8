//! Shared subscriptions never lose a message: the group picks among members
//! that may `receive` the topic now (a member denied at delivery is skipped,
//! not handed the message to drop), and an offline persistent member's
//! share is queued for it rather than lost (issue 9).

use std::collections::BTreeSet;
use std::time::Duration;

use warden_e2e::sessions::{drain, persistent, try_connect};
use warden_e2e::*;

const N: u32 = 20;

async fn publish_n(broker: &TestBroker, topic: &str) {
    let mut p = broker
        .login(Version::V5, &client_id("pub"), "root", "pw")
        .await;
    for i in 0..N {
        let code = p
            .publish_acked(Publish::new(topic, i.to_string().as_bytes(), 1))
            .await;
        assert_eq!(code, 0, "publish {i}");
    }
}

fn numbers(msgs: &[Publish]) -> Vec<u32> {
    msgs.iter()
        .map(|m| {
            String::from_utf8_lossy(&m.payload)
                .parse()
                .expect("numbered payload")
        })
        .collect()
}

async fn start() -> TestBroker {
    let broker = TestBroker::start_default();
    let args = ["user", "add", "root", "--password-stdin", "--superuser"];
    let out = broker.cli_stdin(&args, "pw").await;
    warden_e2e::cli::success(&args, &out);
    broker
}

#[tokio::test]
async fn member_denied_at_delivery_does_not_lose_the_groups_messages() {
    let broker = start().await;
    // amy may subscribe to the group's filter but not receive t/secret.
    broker.add_user("amy", "pw", &[]).await;
    broker.allow("amy", "subscribe,receive", "t/#").await;
    broker.deny("amy", "receive", "t/secret").await;
    broker.user_with_rights("ben", "pw", "t/#").await;
    let mut amy = broker
        .login(Version::V5, &client_id("amy"), "amy", "pw")
        .await;
    let mut ben = broker
        .login(Version::V5, &client_id("ben"), "ben", "pw")
        .await;
    assert_eq!(amy.subscribe("$share/g/t/#", 1).await, 1);
    assert_eq!(ben.subscribe("$share/g/t/#", 1).await, 1);

    publish_n(&broker, "t/secret").await;
    let at_ben = numbers(&drain(&mut ben, Duration::from_secs(2)).await);
    let at_amy = numbers(&drain(&mut amy, Duration::from_millis(300)).await);
    assert!(
        at_amy.is_empty(),
        "amy may not receive t/secret: {at_amy:?}"
    );
    assert_eq!(
        at_ben,
        (0..N).collect::<Vec<_>>(),
        "every message of the group goes to ben, the member allowed to receive it"
    );
}

#[tokio::test]
async fn offline_persistent_members_share_is_queued_not_lost() {
    let broker = start().await;
    broker.user_with_rights("ben", "pw", "t/#").await;
    broker.user_with_rights("cid", "pw", "t/#").await;
    let off_id = client_id("offline");
    let (mut off, _, code) = try_connect(
        &broker,
        &persistent(Version::V5, &off_id, Some("cid"), false),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(off.subscribe("$share/g/t/#", 1).await, 1);
    off.disconnect().await;
    let mut on = broker
        .login(Version::V5, &client_id("online"), "ben", "pw")
        .await;
    assert_eq!(on.subscribe("$share/g/t/#", 1).await, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;

    publish_n(&broker, "t/q").await;
    let at_on = numbers(&drain(&mut on, Duration::from_secs(2)).await);
    let (mut off, present, code) = try_connect(
        &broker,
        &persistent(Version::V5, &off_id, Some("cid"), false),
    )
    .await;
    assert_eq!((present, code), (true, 0), "the offline member resumes");
    let at_off = numbers(&drain(&mut off, Duration::from_secs(2)).await);

    let all: Vec<u32> = at_on.iter().chain(&at_off).copied().collect();
    let distinct: BTreeSet<u32> = all.iter().copied().collect();
    assert_eq!(
        distinct,
        (0..N).collect::<BTreeSet<_>>(),
        "none lost: online got {at_on:?}, offline got {at_off:?}"
    );
    assert_eq!(
        all.len(),
        distinct.len(),
        "no duplicates: online got {at_on:?}, offline got {at_off:?}"
    );
}
