//! SUBSCRIBE authorization: one reason code per filter (v3.1.1 0x80, v5 0x87),
//! granted QoS lowered by a rule's max_qos, shared subscriptions checked on
//! their filter.

use warden_e2e::*;

async fn setup() -> TestBroker {
    let broker = TestBroker::start_default();
    broker.add_user("alice", "pw", &[]).await;
    broker.allow("alice", "subscribe,receive", "open/#").await;
    broker
        .acl(&[
            "--user",
            "alice",
            "--allow",
            "subscribe,receive",
            "slow/#",
            "--max-qos",
            "1",
        ])
        .await;
    broker
}

fn subs() -> Vec<Sub> {
    vec![
        Sub::new("open/a", 1),
        Sub::new("closed/a", 1),
        Sub::new("open/+/b", 2),
    ]
}

#[tokio::test]
async fn v311_suback_has_0x80_for_the_denied_filter_only() {
    let broker = setup().await;
    let mut c = broker
        .login(Version::V311, &client_id("s"), "alice", "pw")
        .await;
    let codes = c.subscribe_with(3, &subs(), &Props::default()).await;
    assert_eq!(codes, vec![0x01, 0x80, 0x02]);
}

#[tokio::test]
async fn v5_suback_has_0x87_for_the_denied_filter_only() {
    let broker = setup().await;
    let mut c = broker
        .login(Version::V5, &client_id("s"), "alice", "pw")
        .await;
    let codes = c.subscribe_with(3, &subs(), &Props::default()).await;
    assert_eq!(codes, vec![0x01, 0x87, 0x02]);
}

#[tokio::test]
async fn max_qos_lowers_the_granted_qos() {
    let broker = setup().await;
    for version in [Version::V311, Version::V5] {
        let mut c = broker.login(version, &client_id("q"), "alice", "pw").await;
        assert_eq!(
            c.subscribe("slow/x", 2).await,
            0x01,
            "{version:?} granted QoS 1"
        );
        assert_eq!(
            c.subscribe("slow/y", 0).await,
            0x00,
            "{version:?} QoS 0 stays 0"
        );
    }
}

#[tokio::test]
async fn wider_filter_than_the_rule_is_denied() {
    let broker = setup().await;
    let mut c = broker
        .login(Version::V5, &client_id("w"), "alice", "pw")
        .await;
    assert_eq!(
        c.subscribe("#", 0).await,
        0x87,
        "# covers topics outside open/#"
    );
    assert_eq!(c.subscribe("+/a", 0).await, 0x87, "+/a covers closed/a");
    assert_eq!(c.subscribe("open/#", 0).await, 0x00);
}

#[tokio::test]
async fn shared_subscription_is_checked_on_its_filter() {
    let broker = setup().await;
    let mut c = broker
        .login(Version::V5, &client_id("sh"), "alice", "pw")
        .await;
    let codes = c
        .subscribe_with(
            5,
            &[
                Sub::new("$share/g/open/#", 1),
                Sub::new("$share/g/closed/#", 1),
            ],
            &Props::default(),
        )
        .await;
    assert_eq!(codes, vec![0x01, 0x87]);
}

#[tokio::test]
async fn denied_subscription_receives_nothing() {
    let broker = setup().await;
    broker
        .cli_stdin(
            &["user", "add", "root", "--password-stdin", "--superuser"],
            "pw",
        )
        .await;
    let mut c = broker
        .login(Version::V311, &client_id("d"), "alice", "pw")
        .await;
    assert_eq!(c.subscribe("closed/a", 1).await, 0x80);
    let mut root = broker
        .login(Version::V311, &client_id("r"), "root", "pw")
        .await;
    root.publish(&Publish::new("closed/a", b"secret", 0))
        .await
        .expect("publish");
    c.expect_no_publish(QUIET, "denied filter").await;
}
