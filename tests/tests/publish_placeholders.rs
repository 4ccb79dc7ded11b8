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
