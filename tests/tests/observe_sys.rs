//! `$SYS/broker/...` is published every `sys_interval` in Mosquitto's
//! layout, and delivered only where the subscriber's `receive` rules allow
//! (issue 13). That no client writes there is `sys_topics.rs`.

use std::time::Duration;

use warden_e2e::*;

/// Every PUBLISH read within `wait`.
async fn collect(c: &mut RawClient, wait: Duration) -> Vec<Publish> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return got;
        }
        if let Some(p) = c.next_publish(left).await {
            got.push(p);
        }
    }
}

#[tokio::test]
async fn sys_topics_are_published_and_delivered_only_where_rules_allow() {
    let broker = TestBroker::start(BrokerOptions {
        extra_yaml: "sys_interval: 1s\n".into(),
        ..BrokerOptions::default()
    });
    broker.add_user("mon", "pw", &[]).await;
    broker.allow("mon", "subscribe,receive", "$SYS/#").await;
    // May subscribe, may not receive.
    broker.add_user("nosy", "pw", &[]).await;
    broker.allow("nosy", "subscribe", "$SYS/#").await;

    let mut mon = broker
        .login(Version::V5, &client_id("mon"), "mon", "pw")
        .await;
    assert_eq!(mon.subscribe("$SYS/broker/#", 0).await, 0);
    let mut nosy = broker
        .login(Version::V5, &client_id("nosy"), "nosy", "pw")
        .await;
    assert_eq!(nosy.subscribe("$SYS/broker/#", 0).await, 0);

    let got = collect(&mut mon, Duration::from_millis(2500)).await;
    let topic = |t: &str| {
        got.iter()
            .rev()
            .find(|p| p.topic == t)
            .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
            .unwrap_or_else(|| {
                panic!(
                    "no {t} in {:?}",
                    got.iter().map(|p| &p.topic).collect::<Vec<_>>()
                )
            })
    };
    assert!(topic("$SYS/broker/version").starts_with("warden "));
    assert!(topic("$SYS/broker/uptime").ends_with(" seconds"));
    assert_eq!(topic("$SYS/broker/clients/connected"), "2");
    assert_eq!(topic("$SYS/broker/clients/total"), "2");
    assert_eq!(topic("$SYS/broker/subscriptions/count"), "2");
    assert_eq!(topic("$SYS/broker/retained messages/count"), "0");
    for t in [
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
    ] {
        topic(t)
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{t}: {e}"));
    }
    assert!(got.iter().all(|p| !p.retain));

    let seen = collect(&mut nosy, Duration::from_millis(1500)).await;
    assert!(seen.is_empty(), "nosy may not receive $SYS: {seen:?}");
}
