//! `$SYS/` belongs to the broker: a client PUBLISH there is refused for a
//! user granted `$SYS/#` and for a superuser alike (v5 PUBACK 0x87; v3.1.1
//! acknowledged and dropped; QoS 0 dropped), never delivered to a `$SYS/#`
//! subscriber, never retained, and a will on `$SYS/` is refused at CONNECT
//! (v5 0x87, v3.1.1 0x05) (issue 9).

use std::time::Duration;

use warden_e2e::sessions::{drain, not_authorized, try_connect};
use warden_e2e::*;

const TOPIC: &str = "$SYS/broker/version";
/// The two principals whose rules would otherwise let them write `$SYS`.
const WRITERS: [&str; 2] = ["mon", "root"];

/// `mon` is granted everything on `$SYS/#`; `root` is a superuser; the
/// watcher (`mon`) subscribes to `$SYS/#`.
async fn setup() -> (TestBroker, RawClient) {
    let broker = TestBroker::start_default();
    broker.add_user("mon", "pw", &[]).await;
    broker
        .allow("mon", "publish,subscribe,receive", "$SYS/#")
        .await;
    let args = ["user", "add", "root", "--password-stdin", "--superuser"];
    let out = broker.cli_stdin(&args, "pw").await;
    warden_e2e::cli::success(&args, &out);
    let mut watcher = broker
        .login(Version::V5, &client_id("watch"), "mon", "pw")
        .await;
    assert_eq!(watcher.subscribe("$SYS/#", 1).await, 1);
    (broker, watcher)
}

/// Asserts the watcher sees no PUBLISH carrying `fake` (the broker's own
/// `$SYS` messages, if any, are ignored).
async fn assert_not_delivered(watcher: &mut RawClient, fake: &[u8], why: &str) {
    let got = drain(watcher, Duration::from_secs(1)).await;
    let forged: Vec<_> = got.iter().filter(|p| p.payload == fake).collect();
    assert!(forged.is_empty(), "{why}: delivered {forged:?}");
}

#[tokio::test]
async fn v5_qos1_publish_to_sys_is_refused_with_0x87() {
    let (broker, mut watcher) = setup().await;
    for user in WRITERS {
        let mut c = broker
            .login(Version::V5, &client_id(user), user, "pw")
            .await;
        let fake = format!("fake-by-{user}");
        let code = c
            .publish_acked(Publish::new(TOPIC, fake.as_bytes(), 1))
            .await;
        assert_eq!(code, 0x87, "{user}: PUBACK for a $SYS publish");
        assert_not_delivered(&mut watcher, fake.as_bytes(), user).await;
    }
}

#[tokio::test]
async fn qos0_publish_to_sys_is_dropped() {
    let (broker, mut watcher) = setup().await;
    for version in [Version::V311, Version::V5] {
        for user in WRITERS {
            let mut c = broker.login(version, &client_id(user), user, "pw").await;
            let fake = format!("fake0-{user}-{version:?}");
            c.publish_acked(Publish::new(TOPIC, fake.as_bytes(), 0))
                .await;
            assert_not_delivered(
                &mut watcher,
                fake.as_bytes(),
                &format!("{version:?} {user}"),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn v311_qos1_publish_to_sys_is_acknowledged_and_dropped() {
    let (broker, mut watcher) = setup().await;
    for user in WRITERS {
        let mut c = broker
            .login(Version::V311, &client_id(user), user, "pw")
            .await;
        let fake = format!("fake3-{user}");
        // v3.1.1 has no negative PUBACK: the flow completes, the message goes.
        c.publish_acked(Publish::new(TOPIC, fake.as_bytes(), 1))
            .await;
        assert_not_delivered(&mut watcher, fake.as_bytes(), user).await;
    }
}

#[tokio::test]
async fn retained_publish_to_sys_is_not_stored() {
    let (broker, _watcher) = setup().await;
    for version in [Version::V311, Version::V5] {
        for user in WRITERS {
            let mut c = broker.login(version, &client_id(user), user, "pw").await;
            let fake = format!("retained-{user}-{version:?}");
            let mut p = Publish::new(TOPIC, fake.as_bytes(), 1);
            p.retain = true;
            let code = c.publish_acked(p).await;
            if version == Version::V5 {
                assert_eq!(code, 0x87, "{user}: PUBACK for a retained $SYS publish");
            }
            c.disconnect().await;
            let mut later = broker
                .login(Version::V5, &client_id("later"), "mon", "pw")
                .await;
            assert_eq!(later.subscribe("$SYS/#", 1).await, 1);
            let got = drain(&mut later, Duration::from_secs(1)).await;
            let stored: Vec<_> = got
                .iter()
                .filter(|m| m.payload == fake.as_bytes())
                .collect();
            assert!(stored.is_empty(), "{version:?} {user}: retained {stored:?}");
        }
    }
}

#[tokio::test]
async fn will_on_a_sys_topic_is_refused_at_connect() {
    let (broker, mut watcher) = setup().await;
    for version in [Version::V311, Version::V5] {
        for user in WRITERS {
            let mut c = Connect::new(version, &client_id(user)).login(user, "pw");
            let fake = format!("will-{user}-{version:?}");
            c.will = Some(Will {
                topic: TOPIC.into(),
                payload: fake.clone().into_bytes(),
                qos: 1,
                retain: true,
                ..Will::default()
            });
            let (raw, present, code) = try_connect(&broker, &c).await;
            assert_eq!(
                (present, code),
                (false, not_authorized(version)),
                "{version:?} {user}: CONNECT with a $SYS will"
            );
            drop(raw);
            assert_not_delivered(&mut watcher, fake.as_bytes(), "will").await;
        }
    }
}
