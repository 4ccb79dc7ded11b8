//! Rule placeholders through the whole stack: `${username}` and
//! `${cert.cn}` are substituted per client at connect, and a value holding a
//! wildcard never widens a rule.

use warden_e2e::*;

#[tokio::test]
async fn username_placeholder_scopes_each_user_to_its_own_topics() {
    let broker = TestBroker::start_default();
    broker.cli_ok(&["role", "add", "sensors"]).await;
    broker
        .acl(&[
            "--role",
            "sensors",
            "--allow",
            "publish",
            "sensors/${username}/#",
        ])
        .await;
    broker.add_user("alice", "pw", &["sensors"]).await;
    broker.add_user("bob", "pw", &["sensors"]).await;
    let mut alice = broker
        .login(Version::V5, &client_id("a"), "alice", "pw")
        .await;
    assert_eq!(
        alice
            .publish_acked(Publish::new("sensors/alice/t", b"1", 1))
            .await,
        0
    );
    assert_eq!(
        alice
            .publish_acked(Publish::new("sensors/bob/t", b"1", 1))
            .await,
        0x87
    );
    let mut bob = broker
        .login(Version::V5, &client_id("b"), "bob", "pw")
        .await;
    assert_eq!(
        bob.publish_acked(Publish::new("sensors/bob/t", b"1", 1))
            .await,
        0
    );
    assert_eq!(
        bob.publish_acked(Publish::new("sensors/alice/t", b"1", 1))
            .await,
        0x87
    );
}

#[tokio::test]
async fn wildcard_in_a_username_never_widens_a_rule() {
    let broker = TestBroker::start_default();
    broker
        .acl(&[
            "--everyone",
            "--allow",
            "publish,subscribe",
            "home/${username}/#",
        ])
        .await;
    broker.add_user("ev+l", "pw", &[]).await;
    let mut c = broker
        .login(Version::V5, &client_id("e"), "ev+l", "pw")
        .await;
    assert_eq!(
        c.publish_acked(Publish::new("home/evXl/t", b"1", 1)).await,
        0x87,
        "`+` in the username must not act as a wildcard"
    );
    assert_eq!(c.subscribe("home/+/t", 0).await, 0x87);
}

#[tokio::test]
async fn cert_cn_placeholder_on_the_mtls_listener() {
    let broker = TestBroker::start_default();
    broker.add_user_no_password("dev-7").await;
    broker
        .acl(&[
            "--user",
            "dev-7",
            "--allow",
            "publish",
            "devices/${cert.cn}/#",
        ])
        .await;
    let cert = broker.pki.client("dev-7");
    let mut c = RawClient::tls(broker.mtls_addr(), broker.ca_pem(), Some(&cert))
        .await
        .expect("TLS");
    let (_, code, _) = c
        .connect(&Connect::new(Version::V5, &client_id("d")))
        .await
        .expect("CONNACK");
    assert_eq!(code, 0);
    assert_eq!(
        c.publish_acked(Publish::new("devices/dev-7/up", b"1", 1))
            .await,
        0
    );
    assert_eq!(
        c.publish_acked(Publish::new("devices/dev-8/up", b"1", 1))
            .await,
        0x87
    );
}

/// Devices of one user share a compiled policy only when their rules do not
/// look at the client id: with `${clientid}` each device must keep its own
/// rights, however the broker caches policies between logins.
#[tokio::test]
async fn clientid_placeholder_keeps_devices_of_one_user_apart() {
    let broker = TestBroker::start_default();
    broker
        .acl(&["--everyone", "--allow", "publish", "dev/${clientid}/#"])
        .await;
    broker
        .acl(&["--everyone", "--allow", "publish", "fleet/${username}/#"])
        .await;
    broker.add_user("fleet", "pw", &[]).await;
    let (a_id, b_id) = (client_id("dev-a"), client_id("dev-b"));
    let mut a = broker.login(Version::V5, &a_id, "fleet", "pw").await;
    let mut b = broker.login(Version::V5, &b_id, "fleet", "pw").await;
    for (c, own, other) in [(&mut a, &a_id, &b_id), (&mut b, &b_id, &a_id)] {
        let own_topic = format!("dev/{own}/t");
        let other_topic = format!("dev/{other}/t");
        assert_eq!(c.publish_acked(Publish::new(&own_topic, b"1", 1)).await, 0);
        assert_eq!(
            c.publish_acked(Publish::new(&other_topic, b"1", 1)).await,
            0x87,
            "{own} may not publish as {other}"
        );
        assert_eq!(
            c.publish_acked(Publish::new("fleet/fleet/t", b"1", 1))
                .await,
            0
        );
    }
    // A reconnect of the first device gets its own rights back, not the
    // second device's.
    drop(a);
    let mut again = broker.login(Version::V5, &a_id, "fleet", "pw").await;
    assert_eq!(
        again
            .publish_acked(Publish::new(&format!("dev/{a_id}/t"), b"1", 1))
            .await,
        0
    );
    assert_eq!(
        again
            .publish_acked(Publish::new(&format!("dev/{b_id}/t"), b"1", 1))
            .await,
        0x87
    );
}
