//! `/metrics`: the Prometheus text exposition, built at scrape time from
//! the broker's counters and its live state through `prometheus-client`.
//! A fresh registry per scrape: values are read, not kept twice.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use warden_policy::QoS;

use super::stats::Flow;
use super::Snapshot;
use crate::broker::Broker;

/// How many rules the top-rules metric names (labels stay bounded).
pub const TOP_RULES: usize = 10;

type Labels = Vec<(&'static str, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    registry.register(name, help, g);
}

fn counters(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, u64)>,
) {
    let family = Family::<Labels, Counter>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).inc_by(v);
    }
    registry.register(name, help, family);
}

fn gauges(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, i64)>,
) {
    let family = Family::<Labels, Gauge>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).set(v);
    }
    registry.register(name, help, family);
}

fn qos_label(q: QoS) -> Labels {
    vec![("qos", (q as u8).to_string())]
}

const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Bans, limits and the password verification queue.
fn defence(r: &mut Registry, broker: &Broker) {
    use crate::defence::BanKind;
    let bans = &broker.defence.bans;
    let kinds = [BanKind::Ip, BanKind::Username];
    counters(
        r,
        "bans",
        "Bans started after too many failed logins, by kind (ip, username)",
        kinds.map(|k| (vec![("kind", k.as_str().to_owned())], bans.started(k))),
    );
    let (ips, users) = bans.active(std::time::Instant::now());
    gauges(
        r,
        "bans_active",
        "Bans in force, by kind",
        [
            (vec![("kind", "ip".to_owned())], i(ips as u64)),
            (vec![("kind", "username".to_owned())], i(users as u64)),
        ],
    );
    counters(
        r,
        "limit_refusals",
        "Connections, subscriptions and clients refused by a limit, by limit",
        broker
            .defence
            .refused
            .snapshot()
            .into_iter()
            .map(|(limit, n)| (vec![("limit", limit.to_owned())], n)),
    );
    let v = &broker.verifier.counts;
    counters(
        r,
        "password_verifications",
        "Password verifications run, by kind (argon2; dummy: argon2 for an unknown user; device_secret: HMAC)",
        [
            ("argon2", &v.argon2),
            ("dummy", &v.dummy),
            ("device_secret", &v.device_secret),
        ]
        .map(|(kind, c)| (vec![("kind", kind.to_owned())], c.load(Ordering::Relaxed))),
    );
    counter(
        r,
        "password_verifications_shared",
        "Logins that used a concurrent login's verification of the same credentials",
        v.shared.load(Ordering::Relaxed),
    );
    counter(
        r,
        "password_verifications_busy",
        "Logins refused as busy: the verification queue was full or the wait ran out",
        v.busy.load(Ordering::Relaxed),
    );
    gauge(
        r,
        "password_verifications_waiting",
        "Logins waiting for a turn to verify a password",
        i(broker.verifier.waiting() as u64),
    );
    if let Some(hook) = broker.webhook.load_full() {
        let c = &hook.counts;
        counters(
            r,
            "auth_webhook_events",
            "Events of the event webhook (auth.webhook): sent, or dropped from the full queue",
            [("sent", &c.sent), ("dropped", &c.dropped)].map(|(outcome, n)| {
                (
                    vec![("outcome", outcome.to_owned())],
                    n.load(Ordering::Relaxed),
                )
            }),
        );
        counter(
            r,
            "auth_webhook_failed_batches",
            "Batches the webhook receiver did not take (sent again later)",
            c.failed_batches.load(Ordering::Relaxed),
        );
        gauge(
            r,
            "auth_webhook_queued",
            "Events waiting to be sent to the webhook receiver",
            i(hook.queued() as u64),
        );
    }
    if let Some(http) = broker.http.load_full() {
        let c = &http.counts;
        let requests = c.requests.load(Ordering::Relaxed);
        let failures = c.failures.load(Ordering::Relaxed);
        counters(
            r,
            "auth_http_requests",
            "Requests to the HTTP auth service (auth.http), by outcome",
            [
                ("ok", requests.saturating_sub(failures)),
                ("failed", failures),
            ]
            .map(|(outcome, n)| (vec![("outcome", outcome.to_owned())], n)),
        );
        counters(
            r,
            "auth_http_cache_hits",
            "Answers of the HTTP auth service taken from the cache, by kind",
            [
                ("login", &c.login_cache_hits),
                ("rules", &c.rules_cache_hits),
            ]
            .map(|(kind, n)| (vec![("kind", kind.to_owned())], n.load(Ordering::Relaxed))),
        );
        counters(
            r,
            "auth_http_decisions",
            "authorize_each decisions: answered from the cache, asked of the service, or denied for want of an answer",
            [
                ("cache_hit", &c.decision_cache_hits),
                ("asked", &c.decision_requests),
                ("unknown", &c.decision_unknown),
            ]
            .map(|(outcome, n)| (vec![("outcome", outcome.to_owned())], n.load(Ordering::Relaxed))),
        );
        gauge(
            r,
            "auth_http_decisions_cached",
            "authorize_each answers kept in the decision cache",
            i(http.decisions_cached()),
        );
        gauge(
            r,
            "auth_http_down",
            "1 while the HTTP auth service's circuit breaker is open",
            i64::from(http.is_down()),
        );
    }
}

/// The whole exposition.
pub fn render(broker: &Broker) -> String {
    let snap = Snapshot::take(broker);
    let stats = &broker.stats;
    let mut r = Registry::with_prefix("warden");

    // Connections and sessions.
    gauges(
        &mut r,
        "connections",
        "Connected clients, by listener and protocol",
        snap.connected.iter().map(|((l, p), n)| {
            (
                vec![("listener", l.clone()), ("protocol", (*p).to_owned())],
                i(*n),
            )
        }),
    );
    counters(
        &mut r,
        "connections_accepted",
        "Successful logins, by listener and protocol",
        stats.connections.snapshot().into_iter().map(|((l, p), n)| {
            (
                vec![("listener", l.to_string()), ("protocol", p.to_owned())],
                n,
            )
        }),
    );
    gauges(
        &mut r,
        "sessions",
        "Sessions, online (a connection attached) or offline (persistent, waiting)",
        [
            (
                vec![("state", "online".to_owned())],
                i(snap.sessions_online),
            ),
            (
                vec![("state", "offline".to_owned())],
                i(snap.sessions_offline),
            ),
        ],
    );
    gauge(
        &mut r,
        "queued_messages",
        "Messages waiting in session queues",
        i(snap.queued),
    );
    gauge(
        &mut r,
        "inflight_messages",
        "QoS 1/2 messages sent and not yet acknowledged",
        i(snap.inflight),
    );
    gauge(
        &mut r,
        "subscriptions",
        "Subscriptions held",
        i(snap.subscriptions),
    );
    gauge(
        &mut r,
        "retained_messages",
        "Retained messages",
        i(snap.retained),
    );

    // Messages.
    let flow = |f: Flow| QOS.map(|q| (qos_label(q), stats.flow.get(f, q)));
    counters(
        &mut r,
        "messages_received",
        "PUBLISH packets received from clients, by QoS",
        flow(Flow::MessagesIn),
    );
    counters(
        &mut r,
        "received_payload_bytes",
        "Payload bytes received in PUBLISH packets, by QoS",
        flow(Flow::BytesIn),
    );
    counters(
        &mut r,
        "messages_sent",
        "PUBLISH packets sent to clients, by QoS",
        flow(Flow::MessagesOut),
    );
    counters(
        &mut r,
        "sent_payload_bytes",
        "Payload bytes sent in PUBLISH packets, by QoS",
        flow(Flow::BytesOut),
    );
    counter(
        &mut r,
        "dropped_messages",
        "Messages dropped from a full session queue",
        stats.dropped.load(Ordering::Relaxed),
    );
    counter(
        &mut r,
        "written_through_messages",
        "PUBLISH packets a publisher's task wrote straight into an idle subscriber's socket (plain TCP)",
        stats.written_through.load(Ordering::Relaxed),
    );
    counter(
        &mut r,
        "slow_consumer_disconnects",
        "Clients disconnected because they stopped reading (limits.write_stall)",
        broker.write_stalls.load(Ordering::Relaxed),
    );

    // Authentication and decisions.
    counters(
        &mut r,
        "authentications",
        "Logins, by result and reason",
        stats.auth.snapshot().into_iter().map(|((res, why), n)| {
            (
                vec![("result", res.to_owned()), ("reason", why.to_owned())],
                n,
            )
        }),
    );
    let d = &broker.authz.counters;
    let decisions = [
        ("connect", &d.connect_allow, &d.connect_deny),
        ("subscribe", &d.subscribe_allow, &d.subscribe_deny),
        ("publish", &d.publish_allow, &d.publish_deny),
        ("receive", &d.receive_allow, &d.receive_deny),
    ];
    counters(
        &mut r,
        "decisions",
        "Policy decisions, by action and verdict",
        decisions.iter().flat_map(|(action, allow, deny)| {
            [("allow", allow), ("deny", deny)].map(|(verdict, c)| {
                (
                    vec![
                        ("action", (*action).to_owned()),
                        ("verdict", verdict.to_owned()),
                    ],
                    c.load(Ordering::Relaxed),
                )
            })
        }),
    );
    let mut rules = broker.authz.deny_rules.snapshot();
    rules.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    rules.truncate(TOP_RULES);
    counters(
        &mut r,
        "deny_rule_hits",
        "Denies by the deciding rule, the top rules only (rule=\"none\": no rule matched)",
        rules.into_iter().map(|(rule, n)| {
            let label = if rule == 0 {
                "none".to_owned()
            } else {
                rule.to_string()
            };
            (vec![("rule", label)], n)
        }),
    );
    counter(
        &mut r,
        "audit_suppressed_lines",
        "Audit log lines suppressed by the rate limit",
        broker.audit.suppressed_total(),
    );

    // Store and policy.
    r.register(
        "store_call_duration_seconds",
        "Store call latency, by backend and operation",
        stats.store.latency.clone(),
    );
    gauges(
        &mut r,
        "store_up",
        "1 when the store's last call succeeded",
        [(
            vec![("backend", broker.store.backend().to_owned())],
            i64::from(stats.store.up.load(Ordering::Relaxed)),
        )],
    );
    gauge(
        &mut r,
        "policy_version",
        "The store's policy version the sessions run",
        i(broker.policy_version()),
    );
    counter(
        &mut r,
        "policy_recompilations",
        "Times every session was recompiled after a policy change",
        stats.recompilations.load(Ordering::Relaxed),
    );
    r.register(
        "revocation_delay_seconds",
        "From noticing a new policy version to every session running it",
        stats.revocation_delay.clone(),
    );

    defence(&mut r, broker);

    // Transport.
    counters(
        &mut r,
        "tls_handshake_failures",
        "TLS handshakes that failed, by reason",
        stats
            .handshake_failures
            .snapshot()
            .into_iter()
            .map(|(why, n)| (vec![("reason", why.to_owned())], n)),
    );
    counters(
        &mut r,
        "ocsp_checks",
        "OCSP checks of client certificates at login, by result and where the answer came from",
        broker
            .ocsp
            .counts
            .snapshot()
            .into_iter()
            .map(|((result, source), n)| {
                (
                    vec![("result", result.to_owned()), ("source", source.to_owned())],
                    n,
                )
            }),
    );
    if let Some(cluster) = broker.cluster() {
        crate::cluster::metrics::register(&mut r, cluster);
    }
    gauge(
        &mut r,
        "uptime_seconds",
        "Seconds since the broker started",
        i(stats.started.elapsed().as_secs()),
    );

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}
