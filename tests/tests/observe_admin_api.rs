//! The admin API on the metrics listener: 401 without the token or with a
//! wrong one; with it, the client list, one client, the recent denies, and
//! a kick (v5 DISCONNECT 0x98) that counts in the audit; the same through
//! `warden clients list|show|kick` (issue 13).

use std::time::Duration;

use warden_e2e::broker::ADMIN_TOKEN;
use warden_e2e::http::{get, request};
use warden_e2e::*;

fn with_metrics() -> TestBroker {
    TestBroker::start(BrokerOptions {
        metrics: true,
        ..BrokerOptions::default()
    })
}

#[tokio::test]
async fn the_api_refuses_requests_without_the_token() {
    let broker = with_metrics();
    let m = broker.addr("metrics");
    for path in [
        "/api/clients",
        "/api/clients/x",
        "/api/decisions",
        "/api/status",
    ] {
        let r = get(m, path, None).await;
        assert_eq!(r.status, 401, "{path} without a token: {}", r.body);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v == "Bearer"));
        let r = get(m, path, Some("wrong-token")).await;
        assert_eq!(r.status, 401, "{path} with a wrong token");
    }
    let r = request(m, "DELETE", "/api/clients/x", Some("wrong")).await;
    assert_eq!(r.status, 401);
    // The metrics themselves are not behind the token.
    assert_eq!(get(m, "/metrics", None).await.status, 200);
}

#[tokio::test]
async fn an_api_without_a_configured_token_is_closed() {
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        ..BrokerOptions::default()
    });
    std::fs::write(broker.dir.path().join("admin-token"), "").unwrap();
    let r = get(broker.addr("metrics"), "/api/clients", Some("")).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn clients_are_listed_shown_and_kicked_with_0x98() {
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        extra_yaml: "audit: { file: audit.log }\n".into(),
        ..BrokerOptions::default()
    });
    let m = broker.addr("metrics");
    let tok = Some(ADMIN_TOKEN);
    broker.user_with_rights("alice", "pw", "t/#").await;
    let id = client_id("dev");
    let mut c = broker.login(Version::V5, &id, "alice", "pw").await;
    assert_eq!(c.subscribe("t/+", 1).await, 1);
    assert_eq!(c.subscribe("forbidden", 0).await, 0x87);

    let list = get(m, "/api/clients", tok).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let list = list.json();
    let me = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {list}"));
    assert_eq!(me["username"], "alice");
    assert_eq!(me["connected"], true);
    assert_eq!(me["listener"], "tls");
    assert_eq!(me["protocol"], "5");
    assert_eq!(me["subscriptions"], serde_json::json!(["t/+"]));
    assert!(me["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(me["connected_since"].as_u64().unwrap() > 1_700_000_000_000);

    let one = get(m, &format!("/api/clients/{id}"), tok).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["client_id"], id.as_str());
    assert_eq!(get(m, "/api/clients/nobody", tok).await.status, 404);

    let denies = get(m, "/api/decisions?limit=5", tok).await.json();
    let d = &denies[0];
    assert_eq!(d["action"], "subscribe");
    assert_eq!(d["topic"], "forbidden");
    assert_eq!(d["client_id"], id.as_str());
    assert_eq!(d["username"], "alice");
    assert!(d["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(get(m, "/api/decisions?limit=x", tok).await.status, 400);

    let kick = request(m, "DELETE", &format!("/api/clients/{id}"), tok).await;
    assert_eq!(kick.status, 204, "{}", kick.body);
    let end = c.ending(Duration::from_secs(5)).await;
    assert_eq!(end.disconnect_code(), Some(0x98), "{end:?}");
    // Kicking again: the session is there, nobody is connected.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = request(m, "DELETE", &format!("/api/clients/{id}"), tok).await;
    assert!(
        again.status == 409 || again.status == 404,
        "{}",
        again.status
    );
    let audit = std::fs::read_to_string(broker.dir.path().join("data/audit.log")).unwrap();
    let kick = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["event"] == "kick")
        .unwrap_or_else(|| panic!("no kick in the audit log:\n{audit}"));
    assert_eq!(kick["client_id"], id.as_str());
    assert_eq!(kick["username"], "alice");
    assert_eq!(kick["by"], "admin api");
    assert!(!audit.contains(ADMIN_TOKEN));
}

#[tokio::test]
async fn the_clients_cli_uses_the_api() {
    let broker = with_metrics();
    broker.user_with_rights("bob", "pw", "x/#").await;
    let id = client_id("cli");
    let mut c = broker.login(Version::V5, &id, "bob", "pw").await;
    assert_eq!(c.subscribe("x/y", 0).await, 0);

    let addr = broker.addr("metrics").to_string();
    let cli = |args: &[&str]| {
        let mut v = vec!["clients", "--addr", &addr];
        v.extend_from_slice(args);
        v.into_iter().map(str::to_owned).collect::<Vec<String>>()
    };
    let b = &broker;
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        b.cli(&refs).await
    };
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let list = ok(run(cli(&["list"])).await);
    assert!(list.starts_with("CLIENT ID"), "{list}");
    let line = list.lines().find(|l| l.starts_with(&id)).expect("listed");
    assert!(line.contains("bob") && line.contains("true"), "{line}");

    let shown = ok(run(cli(&["show", &id])).await);
    assert!(shown.contains("username: bob"), "{shown}");
    assert!(shown.contains("  x/y"), "{shown}");

    let mut args = cli(&["list"]);
    args.insert(0, "--json".into());
    let json = ok(run(args).await);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["client_id"] == id.as_str()));

    let out = ok(run(cli(&["kick", &id])).await);
    assert!(out.contains("disconnected"), "{out}");
    let end = c.ending(Duration::from_secs(5)).await;
    assert_eq!(end.disconnect_code(), Some(0x98));

    let out = run(cli(&["show", "nobody"])).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404"), "{err}");
}
