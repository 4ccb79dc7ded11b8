//! Tests of config loading: every error names its field and its line.

use std::fs;
use std::path::Path;

use super::*;

fn parse_in(dir: &Path, yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml_str(yaml, dir, Path::new("test.yaml"))
}

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    parse_in(Path::new("/tmp"), yaml)
}

/// Asserts the error names `field` and `line`, and returns its text.
fn fails(yaml: &str, field: &str, line: usize) -> String {
    fails_in(Path::new("/tmp"), yaml, field, line)
}

fn fails_in(dir: &Path, yaml: &str, field: &str, line: usize) -> String {
    let err = match parse_in(dir, yaml) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(text.contains(field), "{text:?} should name {field}");
    assert!(
        text.contains(&format!("at line {line} ")),
        "{text:?} should say line {line}"
    );
    assert_eq!(err.line(), Some(line), "{text}");
    text
}

#[test]
fn missing_file_names_the_path() {
    let err = Config::load(Path::new("/nonexistent/warden.yaml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/warden.yaml"),
        "{err}"
    );
}

#[test]
fn syntax_error_has_a_line() {
    let text = fails("data_dir: x\nlisteners: [\n  {bind: \n", "", 4);
    assert!(text.starts_with("test.yaml: "), "{text}");
}

#[test]
fn unknown_top_level_key() {
    let text = fails(
        "data_dir: x\nlistenerz: []\n",
        "unknown field `listenerz`",
        2,
    );
    assert!(
        text.contains("listeners"),
        "suggests the valid keys: {text}"
    );
}

#[test]
fn unknown_listener_key() {
    let yaml = "listeners:\n  - bind: \"127.0.0.1:1\"\n    kind: tcp\n    bnd: x\n";
    fails(yaml, "listeners[0]: unknown field `bnd`", 4);
}

#[test]
fn bad_socket_address() {
    let yaml = "data_dir: d\nlisteners:\n  - name: main\n    bind: x\n";
    let text = fails(yaml, "listeners[0].bind", 4);
    assert!(text.contains("invalid socket address \"x\""), "{text}");
}

#[test]
fn bad_enum_value() {
    let yaml = "listeners:\n  - bind: \"127.0.0.1:1\"\n    kind: udp\n";
    fails(yaml, "listeners[0].kind", 3);
    fails("policy:\n  on_deny: shout\n", "policy.on_deny", 2);
}

#[test]
fn bad_duration() {
    let text = fails(
        "policy:\n  poll_interval: soon\n",
        "policy.poll_interval",
        2,
    );
    assert!(text.contains("invalid duration \"soon\""), "{text}");
    fails("policy: { poll_interval: 0s }\n", "policy.poll_interval", 1);
}

#[test]
fn bad_sizes_and_counts() {
    fails(
        "limits:\n  max_packet_size: 2GiB\n",
        "limits.max_packet_size",
        2,
    );
    fails(
        "limits:\n  max_packet_size: 268435456\n",
        "limits.max_packet_size",
        2,
    );
    fails(
        "limits:\n  receive_maximum: 0\n",
        "limits.receive_maximum",
        2,
    );
    fails(
        "limits:\n  receive_maximum: 65536\n",
        "limits.receive_maximum",
        2,
    );
    fails(
        "limits:\n\n  max_session_expiry: 200years\n",
        "limits.max_session_expiry",
        3,
    );
}

#[test]
fn bad_log_directive() {
    fails("log:\n  level: \"=[\"\n", "log.level", 2);
}

#[test]
fn client_auth_needs_a_ca() {
    let yaml = "listeners:\n  - bind: \"127.0.0.1:1\"\n    client_auth: required\n";
    let text = fails(yaml, "listeners[0].client_ca", 3);
    assert!(text.contains("required when client_auth"), "{text}");
}

#[test]
fn client_ca_without_client_auth() {
    let yaml = "listeners:\n  - bind: \"127.0.0.1:1\"\n    client_ca: ca.pem\n";
    fails(yaml, "listeners[0].client_ca", 3);
}

#[test]
fn username_from_needs_client_auth() {
    let yaml = "listeners:\n  - bind: \"127.0.0.1:1\"\n\n    username_from: cn\n";
    fails(yaml, "listeners[0].username_from", 4);
}

#[test]
fn duplicate_listener_names() {
    let yaml = "listeners:\n  - name: a\n    bind: \"127.0.0.1:1\"\n    kind: tcp\n  - name: a\n    bind: \"127.0.0.1:2\"\n    kind: tcp\n";
    let text = fails(yaml, "listeners[1].name", 5);
    assert!(text.contains("duplicate listener name \"a\""), "{text}");
}

#[test]
fn missing_cert_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("server.key"), "k").unwrap();
    let yaml = "listeners:\n  - bind: \"127.0.0.1:1\"\n    cert: server.pem\n    key: server.key\n";
    let text = fails_in(dir.path(), yaml, "listeners[0].cert", 3);
    assert!(text.contains("file not found"), "{text}");
    let yaml = "listeners:\n  - bind: \"127.0.0.1:1\"\n    key: server.key\n";
    fails_in(dir.path(), yaml, "listeners[0].cert", 3);
}

#[test]
fn tls_keys_on_a_tcp_listener() {
    let yaml = "listeners:\n  - bind: \"127.0.0.1:1\"\n    kind: tcp\n    client_auth: required\n";
    fails(yaml, "listeners[0].client_auth", 4);
}

#[test]
fn no_listeners() {
    fails("data_dir: x\nlisteners: []\n", "listeners", 2);
}

#[test]
fn store_errors_are_placed() {
    fails("store:\n  backend: sqlite\n  path: \"\"\n", "store.path", 3);
    fails("store:\n  backend: oracle\n", "store", 2);
}

#[test]
fn store_errors_carry_their_field_and_line() {
    // A wrong type inside the block.
    let text = fails(
        "data_dir: x\nstore:\n  backend: postgres\n  url: postgres://h/db\n  timeout: 5\n",
        "store.timeout",
        5,
    );
    assert!(text.contains("duration"), "{text}");
    // An unknown key inside the block.
    let text = fails(
        "store:\n  backend: postgres\n  url: postgres://h/db\n  tiemout: 5s\n",
        "tiemout",
        4,
    );
    assert!(text.contains("store"), "{text}");
    // A key of another backend.
    let text = fails(
        "store:\n  backend: postgres\n  url: postgres://h/db\n  path: x.db\n",
        "store.path",
        4,
    );
    assert!(text.contains("not a key of the postgres store"), "{text}");
    // A missing url; a bad pool; a bad URL scheme; a flow mapping.
    fails("store:\n  backend: mysql\n", "store.url", 1);
    fails(
        "store:\n  backend: mysql\n  url: mysql://h/db\n  pool: 0\n",
        "store.pool",
        4,
    );
    fails(
        "store:\n  backend: redis\n  url: http://h\n",
        "store.url",
        3,
    );
    fails(
        "store: { backend: redis, url: redis://h, pool: 3 }\n",
        "store.pool",
        1,
    );
    fails("store:\n  path: x.db\n", "store.backend", 1);
}

#[test]
fn every_backend_reads_its_keys() {
    let c =
        parse("store: { backend: postgres, url: \"postgres://u:p@h/db\", pool: 3, timeout: 2s }\n")
            .unwrap();
    assert_eq!(
        c.store,
        warden_auth::StoreConfig::Postgres {
            url: "postgres://u:p@h/db".into(),
            pool: Some(3),
            timeout: Some(std::time::Duration::from_secs(2)),
        }
    );
    assert_eq!(c.store.redacted(), "postgres://u:***@h/db");
    let c =
        parse("store: { backend: redis, url: \"redis://h:6379/0\", prefix: \"w:\" }\n").unwrap();
    assert_eq!(c.store.backend(), "redis");
    let c = parse("store: { backend: sqlite, path: w.db }\n").unwrap();
    assert_eq!(
        c.store,
        warden_auth::StoreConfig::sqlite("/tmp/warden-data/w.db")
    );
}

/// `config default` says relative paths resolve against the config file's
/// directory, and its commented `cert`/`key`/`client_ca` name the
/// development files: uncommented, they must load and be those files.
#[test]
fn the_default_configs_commented_paths_work_uncommented() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("warden-data/certs");
    fs::create_dir_all(&certs).unwrap();
    for f in ["server.pem", "server.key", "ca.pem"] {
        fs::write(certs.join(f), "x").unwrap();
    }
    let text: String = Config::default_yaml()
        .lines()
        .map(|l| {
            let t = l.trim_start();
            let uncomment = ["# cert: ", "# key: ", "# client_ca: ", "# username_from: "]
                .iter()
                .any(|p| t.starts_with(p));
            if uncomment {
                l.replacen("# ", "", 1)
            } else if t.starts_with("client_auth: none") {
                l.replace("none", "required")
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    assert!(
        text.contains("    cert: warden-data/certs/server.pem"),
        "{text}"
    );
    let path = dir.path().join("warden.yaml");
    fs::write(&path, &text).unwrap();
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let tls = c.listeners[0].tls().expect("tls");
    assert_eq!(tls.cert, certs.join("server.pem"));
    assert_eq!(tls.key, certs.join("server.key"));
    assert!(!tls.dev_certs);
    // The same files the development certificates are written to.
    assert_eq!(c.data_dir.join("certs"), certs);
}

#[test]
fn log_format_is_text_or_json() {
    assert_eq!(
        parse("log: { format: json }\n").unwrap().log.format,
        LogFormat::Json
    );
    assert_eq!(parse("# nothing\n").unwrap().log.format, LogFormat::Text);
    let text = fails(
        "data_dir: x\nlog:\n  level: info\n  format: xml\n",
        "log.format",
        4,
    );
    assert!(text.contains("json"), "{text}");
}

#[test]
fn default_yaml_is_the_embedded_default() {
    let cwd = std::env::current_dir().unwrap();
    let from_text = parse_in(&cwd, Config::default_yaml()).unwrap();
    let embedded = Config::embedded_default();
    assert_eq!(from_text.data_dir, embedded.data_dir);
    assert_eq!(from_text.data_dir, cwd.join("warden-data"));
    assert_eq!(from_text.listeners, embedded.listeners);
    assert_eq!(from_text.store, embedded.store);
    assert_eq!(from_text.auth, embedded.auth);
    assert_eq!(from_text.policy, embedded.policy);
    assert_eq!(from_text.limits, embedded.limits);
    assert_eq!(from_text.log, embedded.log);
    assert_eq!(from_text.metrics, embedded.metrics);
    assert_eq!(from_text.audit, embedded.audit);
    assert_eq!(from_text.sys_interval, embedded.sys_interval);
    let l = &embedded.listeners[0];
    assert_eq!(&*l.name, "tls");
    assert_eq!(l.bind.to_string(), "127.0.0.1:8883");
    assert_eq!(
        embedded.dev_certs_dir(),
        Some(cwd.join("warden-data/certs"))
    );
    assert_eq!(
        embedded.store,
        warden_auth::StoreConfig::sqlite(cwd.join("warden-data/warden.db"))
    );
}

#[test]
fn empty_file_gives_defaults() {
    let c = parse("# nothing here\n").unwrap();
    assert_eq!(c.data_dir, Path::new("/tmp/warden-data"));
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.listeners.len(), 1);
}

#[test]
fn full_file_with_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["server.pem", "server.key", "ca.pem"] {
        fs::write(dir.path().join(f), "x").unwrap();
    }
    let yaml = r#"
data_dir: ./data
listeners:
  - name: mtls
    bind: "127.0.0.1:0"
    cert: server.pem
    key: ./server.key
    client_auth: required
    client_ca: ca.pem
    username_from: cn
    max_connections: 5
    connect_timeout: 2s
  - kind: tcp
    bind: "127.0.0.1:0"
  - kind: tcp
    bind: "127.0.0.1:0"
store: { backend: sqlite, path: db/w.db }
auth: { allow_anonymous: true }
policy: { on_deny: disconnect, poll_interval: 250ms, superuser_bypass: false }
limits:
  max_packet_size: 256KiB
  receive_maximum: 10
  max_queued_messages: 7
  max_session_expiry: 1h
  max_keepalive: 60
  topic_alias_maximum: 0
  outbound_topic_aliases: 3
  retain_available: false
log: { level: "warden=debug,info" }
"#;
    let path = dir.path().join("warden.yaml");
    fs::write(&path, yaml).unwrap();
    let c = Config::load(&path).unwrap();
    let d = dir.path();
    assert_eq!(c.source.as_deref(), Some(path.as_path()));
    assert_eq!(c.data_dir, d.join("data"));
    let tls = c.listeners[0].tls().unwrap();
    assert_eq!(tls.cert, d.join("server.pem"));
    assert_eq!(tls.key, d.join("server.key"));
    assert_eq!(
        tls.client_auth,
        ClientAuth::Required {
            ca: d.join("ca.pem")
        }
    );
    assert_eq!(c.listeners[0].username_from(), Some(UsernameFrom::Cn));
    assert!(!tls.dev_certs);
    assert_eq!(c.listeners[0].max_connections.get(), 5);
    assert_eq!(c.listeners[0].connect_timeout, Duration::from_secs(2));
    assert_eq!(&*c.listeners[1].name, "tcp-0");
    assert_eq!(&*c.listeners[2].name, "tcp-0-2");
    assert_eq!(c.listeners[1].kind(), ListenerKind::Tcp);
    assert_eq!(c.dev_certs_dir(), None);
    assert_eq!(
        c.store,
        warden_auth::StoreConfig::sqlite(d.join("data/db/w.db"))
    );
    assert!(c.auth.allow_anonymous);
    assert_eq!(c.policy.on_deny, OnDeny::Disconnect);
    assert_eq!(c.policy.poll_interval, Duration::from_millis(250));
    assert!(!c.policy.superuser_bypass);
    assert_eq!(c.limits.max_packet_size, 262_144);
    assert_eq!(c.limits.receive_maximum.get(), 10);
    assert_eq!(c.limits.max_queued_messages, 7);
    assert_eq!(c.limits.max_session_expiry_secs(), 3600);
    assert_eq!(c.limits.max_keepalive.map(|k| k.get()), Some(60));
    assert_eq!(c.limits.topic_alias_maximum, 0);
    assert_eq!(c.limits.outbound_topic_aliases, 3);
    assert!(!c.limits.retain_available);
    assert_eq!(c.log.level, "warden=debug,info");
}

#[test]
fn packet_size_as_plain_integer() {
    let c = parse("limits: { max_packet_size: 65536 }\n").unwrap();
    assert_eq!(c.limits.max_packet_size, 65536);
    let c = parse("limits: { max_packet_size: \"1MiB\", max_keepalive: 0 }\n").unwrap();
    assert_eq!(c.limits.max_packet_size, 1 << 20);
    assert_eq!(c.limits.max_keepalive, None);
}

#[test]
fn observability_keys_are_read_and_checked() {
    let c = parse(
        "metrics: { bind: \"127.0.0.1:9090\", token_file: tok }\n\
         audit: { file: a.log, stdout: true, rate: 5, max_size: 1MiB, keep: 2, allow_sample: 10 }\n\
         sys_interval: 0s\n",
    )
    .unwrap();
    assert_eq!(c.metrics.bind.unwrap().to_string(), "127.0.0.1:9090");
    assert_eq!(c.metrics.token_file.as_deref(), Some(Path::new("/tmp/tok")));
    assert_eq!(c.audit.file, Some(c.data_dir.join("a.log")));
    assert!(c.audit.stdout);
    assert_eq!(
        (c.audit.rate, c.audit.max_size, c.audit.keep),
        (5, 1 << 20, 2)
    );
    assert_eq!(c.audit.allow_sample, 10);
    assert!(c.sys_interval.is_zero());
    assert_eq!(
        parse("audit: { max_size: 65536 }\n")
            .unwrap()
            .audit
            .max_size,
        65536
    );
    assert!(parse("metrics: {}\n").unwrap().metrics.bind.is_none());

    fails("audit:\n  rate: 0\n", "audit.rate", 2);
    fails("audit:\n  max_size: 10x\n", "audit.max_size", 2);
    fails("audit:\n  max_size: 100\n", "audit.max_size", 2);
    fails("metrics:\n  bind: nowhere\n", "metrics.bind", 2);
    fails("metrics:\n  open: true\n", "metrics", 2);
}

#[test]
fn websocket_listeners() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["s.pem", "s.key", "a.pem", "a.key"] {
        fs::write(dir.path().join(f), "").unwrap();
    }
    let c = parse_in(
        dir.path(),
        "\
listeners:
  - { name: ws, kind: ws, bind: \"127.0.0.1:0\" }
  - name: wss
    kind: wss
    bind: \"127.0.0.1:0\"
    path: /broker/mqtt
    allowed_origins: [\"https://App.example.com/\"]
    certificates: [{ cert: a.pem, key: a.key, hostnames: [\"*.A.example\"] }]
    alpn: [mqtt, x-other]
    cert_poll_interval: 1s
limits: { max_packet_size: 1000 }
",
    )
    .unwrap();
    let ws = &c.listeners[0];
    assert_eq!(ws.kind(), ListenerKind::Ws);
    assert!(ws.tls().is_none());
    let w = ws.websocket.as_ref().unwrap();
    assert_eq!(w.path, "/mqtt");
    assert!(w.allowed_origins.is_empty());
    assert_eq!(w.max_message_size, 1016);
    let wss = &c.listeners[1];
    assert_eq!(wss.kind(), ListenerKind::Wss);
    let w = wss.websocket.as_ref().unwrap();
    assert_eq!(w.path, "/broker/mqtt");
    assert_eq!(w.allowed_origins, ["https://app.example.com"]);
    let tls = wss.tls().unwrap();
    // Without cert and key the first entry is also the default.
    assert_eq!(tls.cert, dir.path().join("a.pem"));
    assert!(!tls.dev_certs);
    assert_eq!(tls.certificates[0].hostnames, ["*.a.example"]);
    assert_eq!(tls.alpn, ["mqtt", "x-other"]);
    assert_eq!(tls.cert_poll_interval, Duration::from_secs(1));
    assert_eq!(
        tls.files(),
        [
            dir.path().join("a.pem"),
            dir.path().join("a.key"),
            dir.path().join("a.pem"),
            dir.path().join("a.key")
        ]
    );
}

#[test]
fn websocket_and_tls_keys_only_where_they_apply() {
    let text = fails(
        "listeners:\n  - kind: tls\n    bind: \"127.0.0.1:0\"\n    path: /mqtt\n",
        "listeners[0].path",
        4,
    );
    assert!(text.contains("ws or wss"), "{text}");
    let text = fails(
        "listeners:\n  - kind: ws\n    bind: \"127.0.0.1:0\"\n    alpn: [mqtt]\n",
        "listeners[0].alpn",
        4,
    );
    assert!(text.contains("kind: ws"), "{text}");
    fails(
        "listeners:\n  - kind: ws\n    bind: \"127.0.0.1:0\"\n    path: mqtt\n",
        "listeners[0].path",
        4,
    );
    fails(
        "listeners:\n  - kind: wss\n    bind: \"127.0.0.1:0\"\n    allowed_origins: [\"evil\"]\n",
        "listeners[0].allowed_origins",
        4,
    );
    fails(
        "listeners:\n  - kind: wss\n    bind: \"127.0.0.1:0\"\n    certificates:\n      - { cert: nope.pem, key: nope.key }\n",
        "listeners[0].certificates[0].cert",
        5,
    );
    fails(
        "listeners:\n  - kind: tls\n    bind: \"127.0.0.1:0\"\n    cert_poll_interval: 0s\n",
        "listeners[0].cert_poll_interval",
        4,
    );
}

#[test]
fn ocsp_keys_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ca.pem"), "x").unwrap();
    let mtls = "listeners:\n  - bind: \"127.0.0.1:1\"\n    client_auth: required\n    client_ca: ca.pem\n    connect_timeout: 8s\n";
    let parse_ok = |extra: &str| parse_in(dir.path(), &format!("{mtls}{extra}")).unwrap();

    // Off unless asked for.
    assert_eq!(parse_ok("").listeners[0].ocsp(), None);
    assert_eq!(parse_ok("    ocsp: off\n").listeners[0].ocsp(), None);
    let cfg = parse_ok("    ocsp: hard_fail\n    ocsp_responder: http://127.0.0.1:2560/ocsp\n    ocsp_timeout: 1500ms\n");
    let ocsp = cfg.listeners[0].ocsp().unwrap();
    assert_eq!(ocsp.mode, OcspMode::HardFail);
    assert_eq!(
        ocsp.responder.as_deref(),
        Some("http://127.0.0.1:2560/ocsp")
    );
    assert_eq!(ocsp.timeout, Duration::from_millis(1500));
    // The default timeout stays inside the connect timeout.
    let cfg = parse_ok("    ocsp: soft_fail\n");
    assert_eq!(
        cfg.listeners[0].ocsp().unwrap().timeout,
        DEFAULT_OCSP_TIMEOUT
    );
    let short = "listeners:\n  - bind: \"127.0.0.1:1\"\n    client_auth: required\n    client_ca: ca.pem\n    connect_timeout: 2s\n    ocsp: soft_fail\n";
    let cfg = parse_in(dir.path(), short).unwrap();
    assert_eq!(
        cfg.listeners[0].ocsp().unwrap().timeout,
        Duration::from_secs(1)
    );

    let fails_with = |extra: &str, field: &str, line: usize| {
        fails_in(dir.path(), &format!("{mtls}{extra}"), field, line)
    };
    let text = fails_with("    ocsp: sometimes\n", "ocsp", 6);
    assert!(text.contains("soft_fail"), "{text}");
    let text = fails_with(
        "    ocsp: hard_fail\n    ocsp_responder: https://ocsp.example.com\n",
        "listeners[0].ocsp_responder",
        7,
    );
    assert!(text.contains("only http://"), "{text}");
    let text = fails_with(
        "    ocsp: hard_fail\n    ocsp_timeout: 8s\n",
        "listeners[0].ocsp_timeout",
        7,
    );
    assert!(
        text.contains("shorter than the listener's connect_timeout"),
        "{text}"
    );
    fails_with(
        "    ocsp: hard_fail\n    ocsp_timeout: 0s\n",
        "listeners[0].ocsp_timeout",
        7,
    );
    let text = fails_with(
        "    ocsp_responder: http://r.example\n",
        "listeners[0].ocsp_responder",
        6,
    );
    assert!(text.contains("ocsp is off"), "{text}");

    // Only where there are client certificates.
    let yaml = "listeners:\n  - bind: \"127.0.0.1:1\"\n    ocsp: soft_fail\n";
    let text = fails(yaml, "listeners[0].ocsp", 3);
    assert!(text.contains("needs client_auth"), "{text}");
    let yaml = "listeners:\n  - bind: \"127.0.0.1:1\"\n    kind: tcp\n    ocsp: soft_fail\n";
    fails(yaml, "listeners[0].ocsp", 4);
}

#[test]
fn defence_keys_are_read() {
    let c = parse(
        "auth:\n  bans: { failures_per_ip: 0, failures_per_user: 3, window: 10s, duration: 1m }\n  verify: { concurrency: 2, queue: 7, wait: 1s }\nlimits: { max_connections: 9, max_connections_per_ip: 0, connection_rate_per_ip: 4, max_subscriptions: 0, publish_rate: 100 }\n",
    )
    .unwrap();
    let b = &c.auth.bans;
    assert_eq!(b.failures_per_ip, None, "0 is off");
    assert_eq!(b.failures_per_user.map(|n| n.get()), Some(3));
    assert_eq!(b.window, std::time::Duration::from_secs(10));
    assert_eq!(b.duration, std::time::Duration::from_secs(60));
    assert_eq!(c.auth.verify.concurrency.get(), 2);
    assert_eq!(c.auth.verify.queue, 7);
    let g = &c.limits.guard;
    assert_eq!(g.max_connections.map(|n| n.get()), Some(9));
    assert_eq!(g.max_connections_per_ip, None);
    assert_eq!(g.connection_rate_per_ip.map(|n| n.get()), Some(4));
    assert_eq!(g.max_subscriptions, None, "0 is off");
    assert_eq!(g.publish_rate.map(|n| n.get()), Some(100));
    // Defaults: bans on, per-address connection limits off.
    let d = parse("data_dir: d\n").unwrap();
    assert_eq!(d.auth.bans, BanConfig::default());
    assert_eq!(
        d.limits.guard.max_subscriptions.map(|n| n.get()),
        Some(10_000)
    );
    assert_eq!(d.limits.guard.max_connections_per_ip, None);
}

#[test]
fn bad_defence_values_name_the_field_and_line() {
    fails("auth:\n  bans:\n    window: 0s\n", "auth.bans.window", 3);
    fails(
        "auth:\n  bans:\n    duration: 0s\n",
        "auth.bans.duration",
        3,
    );
    fails("auth:\n  verify:\n    wait: 0s\n", "auth.verify.wait", 3);
    fails(
        "auth:\n  bans:\n    failures_per_ip: -1\n",
        "auth.bans.failures_per_ip",
        3,
    );
    fails("limits:\n  publish_rate: lots\n", "limits.publish_rate", 2);
    fails(
        "auth:\n  bans:\n    thresold: 3\n",
        "auth.bans: unknown field `thresold`",
        3,
    );
}

#[test]
fn http_auth_and_chain_are_read() {
    let c = parse(
        "auth:\n  http:\n    url: https://id.example/w/\n    token: t\n    timeout: 3s\n  chain: [http, store]\n  compose: all_must_allow\n",
    )
    .unwrap();
    let http = c.auth.http.as_ref().expect("http");
    assert_eq!(http.url, "https://id.example/w", "trailing slash dropped");
    assert_eq!(http.token.as_deref(), Some("t"));
    assert_eq!(http.timeout, Duration::from_secs(3));
    assert_eq!(http.connect_timeout, Duration::from_secs(1));
    assert_eq!(c.auth.chain, [ChainStep::Http, ChainStep::Store]);
    assert_eq!(c.auth.compose, Compose::AllMustAllow);
    assert!(!format!("{http:?}").contains("\"t\""), "token redacted");
    let d = parse("").unwrap();
    assert!(d.auth.http.is_none() && d.auth.chain.is_empty());
    assert_eq!(d.auth.compose, Compose::FirstMatch);
}

#[test]
fn bad_http_auth_values_name_the_field_and_line() {
    fails("auth:\n  http:\n    url: ftp://x\n", "auth.http.url", 3);
    fails("auth:\n  http:\n    token: t\n", "auth.http.url", 2);
    fails(
        "auth:\n  http:\n    url: http://x\n    timeout: 0s\n",
        "auth.http.timeout",
        4,
    );
    fails(
        "auth:\n  http:\n    url: http://x\n    client_key: /etc/hostname\n",
        "auth.http.client_key",
        4,
    );
    fails(
        "auth:\n  http:\n    url: http://x\n    token: a\n    token_file: /etc/hostname\n",
        "auth.http.token_file",
        5,
    );
    fails("auth:\n  chain: [http]\n", "auth.chain", 2);
    fails(
        "auth:\n  http: { url: \"http://x\" }\n  chain: [http, ldap]\n",
        "auth.chain",
        3,
    );
    fails("auth:\n  compose: any\n", "compose", 2);
}

#[test]
fn chain_extensions_authorize_each_and_the_webhook() {
    fn unused(
        _: &serde_yaml::Value,
    ) -> Result<std::sync::Arc<dyn crate::auth::extension::Authenticator>, String> {
        Err("not built in this test".into())
    }
    crate::auth::extension::register_authenticator("cfg-test-ext", unused).unwrap();
    let c = parse(
        "auth:\n  chain: [{extension: cfg-test-ext, level: 3}, store]\n  webhook: { url: \"http://h/e\", batch_size: 10, queue: 50 }\n",
    )
    .unwrap();
    match &c.auth.chain[0] {
        ChainStep::Extension { name, config } => {
            assert_eq!(name, "cfg-test-ext");
            assert_eq!(
                config.get("level").and_then(serde_yaml::Value::as_u64),
                Some(3)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.auth.chain[1], ChainStep::Store);
    let w = c.auth.webhook.as_ref().expect("webhook");
    assert_eq!(
        (w.batch_size.get(), w.queue.get(), w.interval),
        (10, 50, Duration::from_secs(1))
    );
    fails("auth:\n  chain: [{extension: nope}]\n", "auth.chain", 2);
    fails("auth:\n  chain: [{level: 3}]\n", "auth.chain", 2);
    fails(
        "auth:\n  chain: [{extension: cfg-test-ext}, {extension: cfg-test-ext}]\n",
        "auth.chain",
        2,
    );
    fails(
        "auth:\n  webhook:\n    batch_size: 1\n",
        "auth.webhook.url",
        2,
    );
    fails(
        "auth:\n  webhook:\n    url: http://h\n    batch_size: 10\n    queue: 5\n",
        "auth.webhook.queue",
        5,
    );
    let h = parse(
        "auth:\n  http: { url: \"http://x\", authorize_each: true, decision_cache_size: 10 }\n",
    )
    .unwrap();
    let http = h.auth.http.expect("http");
    assert!(http.authorize_each);
    assert_eq!(http.decision_cache_size, 10);
    fails(
        "auth:\n  http:\n    url: http://x\n    decision_cache_size: 0\n",
        "auth.http.decision_cache_size",
        4,
    );
}
