//! CONNECT authentication: password checks against the store, the same
//! reason code for an unknown user and a wrong password, anonymous clients,
//! assigned client ids, superusers.

use warden_e2e::wire::ASSIGNED_CLIENT_ID;
use warden_e2e::*;

async fn connack(broker: &TestBroker, c: Connect) -> u8 {
    let mut raw = broker.raw().await;
    let (_, code, _) = raw.connect(&c).await.expect("CONNACK");
    if code != 0 {
        let end = raw.ending(WAIT).await;
        assert!(
            end.packets.is_empty(),
            "nothing after a refusing CONNACK: {end:?}"
        );
    }
    code
}

#[tokio::test]
async fn v311_wrong_password_and_unknown_user_both_get_0x04() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "right-pw", "t/#").await;
    let wrong = Connect::new(Version::V311, &client_id("c")).login("alice", "wrong-pw");
    let unknown = Connect::new(Version::V311, &client_id("c")).login("nobody", "right-pw");
    assert_eq!(connack(&broker, wrong).await, 0x04, "wrong password");
    assert_eq!(connack(&broker, unknown).await, 0x04, "unknown user");
    let good = Connect::new(Version::V311, &client_id("c")).login("alice", "right-pw");
    assert_eq!(connack(&broker, good).await, 0x00, "right password");
}

#[tokio::test]
async fn v5_wrong_password_and_unknown_user_both_get_0x86() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "right-pw", "t/#").await;
    let wrong = Connect::new(Version::V5, &client_id("c")).login("alice", "wrong-pw");
    let unknown = Connect::new(Version::V5, &client_id("c")).login("nobody", "right-pw");
    assert_eq!(connack(&broker, wrong).await, 0x86, "wrong password");
    assert_eq!(connack(&broker, unknown).await, 0x86, "unknown user");
    let good = Connect::new(Version::V5, &client_id("c")).login("alice", "right-pw");
    assert_eq!(connack(&broker, good).await, 0x00, "right password");
}

#[tokio::test]
async fn anonymous_is_refused_by_default() {
    let broker = TestBroker::start_default();
    let v3 = Connect::new(Version::V311, &client_id("anon"));
    let v5 = Connect::new(Version::V5, &client_id("anon"));
    assert_eq!(
        connack(&broker, v3).await,
        0x05,
        "v3.1.1 anonymous: not authorized"
    );
    assert_eq!(
        connack(&broker, v5).await,
        0x87,
        "v5 anonymous: not authorized"
    );
}

#[tokio::test]
async fn allowed_anonymous_is_bound_by_the_everyone_rules() {
    let broker = TestBroker::start(BrokerOptions {
        allow_anonymous: true,
        ..BrokerOptions::default()
    });
    broker
        .acl(&["--everyone", "--allow", "publish", "public/#"])
        .await;
    let mut c = broker
        .login_with(Connect::new(Version::V5, &client_id("anon")))
        .await;
    let mut p = Publish::new("public/x", b"ok", 1);
    p.packet_id = 1;
    c.publish(&p).await.expect("publish");
    let ack = c
        .expect("PUBACK 1", |i| {
            matches!(i, Incoming::PubAck { packet_id: 1, .. })
        })
        .await;
    assert_eq!(
        ack,
        Incoming::PubAck {
            packet_id: 1,
            code: 0
        }
    );
    let mut p = Publish::new("private/x", b"no", 1);
    p.packet_id = 2;
    c.publish(&p).await.expect("publish");
    let ack = c
        .expect("PUBACK 2", |i| {
            matches!(i, Incoming::PubAck { packet_id: 2, .. })
        })
        .await;
    assert_eq!(
        ack,
        Incoming::PubAck {
            packet_id: 2,
            code: 0x87
        },
        "no bypass for anonymous"
    );
}

#[tokio::test]
async fn rumqttc_v311_and_v5_log_in_over_tls() {
    use warden_e2e::clients::{v3_options, v5_options, V3Client, V5Client};
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "t/#").await;
    let mut v3 = V3Client::start(v3_options(&broker, &client_id("r3"), "alice", "pw"));
    let ack = v3.connack().await.expect("v3 CONNACK");
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    let mut v5 = V5Client::start(v5_options(&broker, &client_id("r5"), "alice", "pw"));
    let ack = v5.connack().await.expect("v5 CONNACK");
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    let mut bad = V5Client::start(v5_options(&broker, &client_id("r5"), "alice", "nope"));
    let err = bad.connack().await.expect_err("wrong password refused");
    assert!(err.contains("BadUserNamePassword"), "rumqttc saw {err}");
}

#[tokio::test]
async fn v5_empty_client_id_gets_an_assigned_one() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "t/#").await;
    let mut raw = broker.raw().await;
    let (_, code, props) = raw
        .connect(&Connect::new(Version::V5, "").login("alice", "pw"))
        .await
        .expect("CONNACK");
    assert_eq!(code, 0);
    let assigned = props
        .str(ASSIGNED_CLIENT_ID)
        .expect("Assigned Client Identifier property");
    assert!(!assigned.is_empty(), "assigned id is not empty");
}

#[tokio::test]
async fn v311_empty_client_id_with_clean_session_is_accepted() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "t/#").await;
    let c = Connect::new(Version::V311, "").login("alice", "pw");
    assert_eq!(connack(&broker, c).await, 0x00);
    let mut persistent = Connect::new(Version::V311, "").login("alice", "pw");
    persistent.clean = false;
    assert_eq!(
        connack(&broker, persistent).await,
        0x02,
        "v3.1.1 §3.2.2.3: identifier rejected"
    );
}

#[tokio::test]
async fn superuser_needs_no_rules() {
    let broker = TestBroker::start_default();
    broker
        .cli_stdin(
            &["user", "add", "root", "--password-stdin", "--superuser"],
            "pw",
        )
        .await;
    let mut c = broker
        .login(Version::V5, &client_id("su"), "root", "pw")
        .await;
    assert_eq!(
        c.subscribe("any/#", 1).await,
        1,
        "superuser subscribe granted"
    );
    let mut p = Publish::new("any/x", b"hi", 1);
    p.packet_id = 7;
    c.publish(&p).await.expect("publish");
    let ack = c
        .expect("PUBACK", |i| matches!(i, Incoming::PubAck { .. }))
        .await;
    assert_eq!(
        ack,
        Incoming::PubAck {
            packet_id: 7,
            code: 0
        }
    );
    let got = c.next_publish(WAIT).await.expect("own message delivered");
    assert_eq!(got.payload, b"hi");
}

#[tokio::test]
async fn v5_unsupported_authentication_method_gets_0x8c() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "t/#").await;
    let mut c = Connect::new(Version::V5, &client_id("auth")).login("alice", "pw");
    c.props.0.push(Prop::Str(0x15, "SCRAM-SHA-1".into()));
    assert_eq!(connack(&broker, c).await, 0x8C);
}
