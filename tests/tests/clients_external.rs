//! Non-Rust clients over TLS with passwords: mosquitto_pub/mosquitto_sub
//! (3.1.1 and 5.0) and Python paho-mqtt 2.x (5.0).

use std::time::Duration;

use warden_e2e::clients::{paho, Mosq};
use warden_e2e::*;

async fn setup() -> TestBroker {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "ext/#").await;
    broker
}

#[tokio::test]
async fn mosquitto_pub_and_sub_over_tls() {
    let broker = setup().await;
    for version in ["mqttv311", "mqttv5"] {
        let sub_id = client_id("msub");
        let sub = Mosq {
            port: broker.tls_addr().port(),
            version,
            ca: &broker.pki.ca_file,
            cert: None,
            login: Some(("alice", "pw")),
            client_id: &sub_id,
        };
        let running = sub.subscribe("ext/#", 1).await;
        assert!(
            running.subscribed,
            "{version}: mosquitto_sub got no SUBACK: {:?}",
            running.seen
        );
        let pub_id = client_id("mpub");
        let publisher = Mosq {
            client_id: &pub_id,
            ..sub
        };
        let out = publisher
            .publish("ext/m", &format!("hello {version}"), 1)
            .await;
        assert!(
            out.status.success(),
            "mosquitto_pub: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = running.finish(Duration::from_secs(5)).await;
        let want = format!("ext/m hello {version}");
        assert!(
            lines.iter().any(|l| l == &want),
            "{version}: {want:?} not in {lines:?}"
        );
    }
}

#[tokio::test]
async fn mosquitto_pub_with_a_wrong_password_fails() {
    let broker = setup().await;
    let id = client_id("mpub");
    let m = Mosq {
        port: broker.tls_addr().port(),
        version: "mqttv5",
        ca: &broker.pki.ca_file,
        cert: None,
        login: Some(("alice", "wrong")),
        client_id: &id,
    };
    let out = m.publish("ext/x", "no", 1).await;
    assert!(!out.status.success(), "wrong password must fail");
}

fn paho_args(broker: &TestBroker, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--port".into(),
        broker.tls_addr().port().to_string(),
        "--ca".into(),
        broker.pki.ca_file.display().to_string(),
        "--client-id".into(),
        client_id("paho"),
        "--user".into(),
        "alice".into(),
        "--password".into(),
        "pw".into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn events<'a>(all: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    all.iter().filter(|e| e["event"] == kind).collect()
}

#[tokio::test]
async fn paho_v5_subscribes_publishes_and_receives_with_user_properties() {
    let broker = setup().await;
    let args = paho_args(
        &broker,
        &[
            "--sub",
            "ext/#:1",
            "--pub",
            "ext/p:1:from paho",
            "--user-property",
            "k=v",
            "--messages",
            "1",
        ],
    );
    let out = paho("paho_client.py", &args).await;
    assert_eq!(events(&out, "connack")[0]["reason"], 0, "{out:?}");
    assert_eq!(
        events(&out, "suback")[0]["reasons"],
        serde_json::json!([1]),
        "{out:?}"
    );
    assert_eq!(events(&out, "puback")[0]["reason"], 0, "{out:?}");
    let msgs = events(&out, "message");
    assert_eq!(msgs.len(), 1, "{out:?}");
    assert_eq!(msgs[0]["payload"], "from paho");
    assert_eq!(msgs[0]["user_properties"], serde_json::json!([["k", "v"]]));
}

#[tokio::test]
async fn paho_v5_denied_publish_and_subscribe_get_0x87() {
    let broker = setup().await;
    let args = paho_args(&broker, &["--sub", "other/#:1", "--pub", "other/p:1:x"]);
    let out = paho("paho_client.py", &args).await;
    assert_eq!(
        events(&out, "suback")[0]["reasons"],
        serde_json::json!([0x87]),
        "{out:?}"
    );
    assert_eq!(events(&out, "puback")[0]["reason"], 0x87, "{out:?}");
}

#[tokio::test]
async fn paho_v5_wrong_password_gets_0x86() {
    let broker = setup().await;
    let mut args = paho_args(&broker, &[]);
    let at = args.iter().position(|a| a == "pw").expect("password arg");
    args[at] = "wrong".into();
    let out = paho("paho_client.py", &args).await;
    assert_eq!(events(&out, "connack")[0]["reason"], 0x86, "{out:?}");
}
