//! Wills of revoked users: a user removed (`warden user remove`) or disabled
//! (`warden user disable`) while connected is disconnected (v5 DISCONNECT
//! 0x98) and its will is not published, with or without a will delay; an
//! enabled user's ungraceful end still publishes it, so the watcher would
//! have seen one (issue 9).

use std::time::{Duration, Instant};

use warden_e2e::wire::{SESSION_EXPIRY, WILL_DELAY};
use warden_e2e::*;

const VERSIONS: [Version; 2] = [Version::V311, Version::V5];

/// A broker where `watch` may receive every will on `w/#`.
async fn setup() -> (TestBroker, RawClient) {
    let broker = TestBroker::start_default();
    broker.add_user("watch", "pw", &[]).await;
    broker.allow("watch", "subscribe,receive", "w/#").await;
    let mut watcher = broker
        .login(Version::V5, &client_id("watch"), "watch", "pw")
        .await;
    assert_eq!(watcher.subscribe("w/#", 1).await, 1);
    (broker, watcher)
}

/// A user allowed everything on `w/#`, connected with a will on `w/<user>`.
async fn dying(broker: &TestBroker, user: &str, version: Version, delay: u32) -> RawClient {
    broker.user_with_rights(user, "pw", "w/#").await;
    let mut c = Connect::new(version, &client_id(user)).login(user, "pw");
    let mut will = Will {
        topic: format!("w/{user}"),
        payload: b"gone".to_vec(),
        qos: 1,
        ..Will::default()
    };
    if delay > 0 {
        will.props.0.push(Prop::U32(WILL_DELAY, delay));
        c.props.0.push(Prop::U32(SESSION_EXPIRY, 60));
    }
    c.will = Some(will);
    broker.login_with(c).await
}

/// Runs `admin` for the connected `user` and asserts the kick and no will.
async fn assert_kicked_without_will(
    broker: &TestBroker,
    watcher: &mut RawClient,
    version: Version,
    delay: u32,
    admin: &str,
) {
    let user = format!("{admin}{}{}", version.level(), delay);
    let mut c = dying(broker, &user, version, delay).await;
    broker.cli_ok(&["user", admin, &user]).await;
    let started = Instant::now();
    let end = c.ending(Duration::from_secs(4)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{version:?} {admin}: kicked after {:?}",
        started.elapsed()
    );
    let expected = (version == Version::V5).then_some(0x98);
    assert_eq!(
        end.disconnect_code(),
        expected,
        "{version:?} {admin}: {end:?}"
    );
    let quiet = Duration::from_secs(2 + u64::from(delay));
    watcher
        .expect_no_publish(
            quiet,
            &format!("{version:?}: will of a user after `user {admin}`"),
        )
        .await;
}

#[tokio::test]
async fn removed_users_will_is_not_published() {
    let (broker, mut watcher) = setup().await;
    for version in VERSIONS {
        assert_kicked_without_will(&broker, &mut watcher, version, 0, "remove").await;
    }
}

#[tokio::test]
async fn disabled_users_will_is_not_published() {
    let (broker, mut watcher) = setup().await;
    for version in VERSIONS {
        assert_kicked_without_will(&broker, &mut watcher, version, 0, "disable").await;
    }
}

#[tokio::test]
async fn delayed_will_of_a_removed_or_disabled_user_is_not_published() {
    let (broker, mut watcher) = setup().await;
    for admin in ["remove", "disable"] {
        assert_kicked_without_will(&broker, &mut watcher, Version::V5, 1, admin).await;
    }
}

#[tokio::test]
async fn enabled_users_dropped_socket_still_publishes_its_will() {
    let (broker, mut watcher) = setup().await;
    for version in VERSIONS {
        let user = format!("alive{}", version.level());
        drop(dying(&broker, &user, version, 0).await);
        let will = watcher
            .next_publish(WAIT)
            .await
            .unwrap_or_else(|| panic!("{version:?}: will of an enabled user"));
        assert_eq!(
            (will.topic.as_str(), will.payload.as_slice()),
            (format!("w/{user}").as_str(), &b"gone"[..])
        );
    }
}
