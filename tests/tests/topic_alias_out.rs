//! Outbound topic aliases (MQTT 5 §3.3.2.3.4): the broker assigns aliases
//! to the topics it sends a v5 client whose CONNECT allows them, never more
//! than the client's Topic Alias Maximum, least recently used replaced, per
//! network connection. Read on the wire with the spec-based raw client, and
//! resolved by a real client (rumqttc 5).

use std::collections::HashMap;
use std::time::Duration;

use warden_e2e::clients::{v5_options, V5Client};
use warden_e2e::wire::{MAXIMUM_PACKET_SIZE, TOPIC_ALIAS, TOPIC_ALIAS_MAXIMUM};
use warden_e2e::*;

const PUBLISH_WAIT: Duration = Duration::from_secs(5);

async fn broker_with(limits_extra: &str) -> TestBroker {
    let broker = TestBroker::start(BrokerOptions {
        limits_extra: limits_extra.to_owned(),
        ..BrokerOptions::default()
    });
    broker.user_with_rights("alice", "pw", "ta/#").await;
    broker
}

/// A v5 subscriber to `ta/#` that allows `max` aliases (None: no property).
async fn subscriber(broker: &TestBroker, max: Option<u16>, extra: &[Prop]) -> RawClient {
    let mut c = Connect::new(Version::V5, &client_id("s")).login("alice", "pw");
    if let Some(max) = max {
        c.props.0.push(Prop::U16(TOPIC_ALIAS_MAXIMUM, max));
    }
    c.props.0.extend(extra.iter().cloned());
    let mut s = broker.login_with(c).await;
    assert_eq!(s.subscribe("ta/#", 0).await, 0);
    s
}

async fn publisher(broker: &TestBroker) -> RawClient {
    broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await
}

/// What one delivery looked like on the wire.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// The topic field as sent (empty when only the alias was sent).
    topic: String,
    alias: Option<u16>,
}

fn seen(topic: &str, alias: Option<u16>) -> Seen {
    Seen {
        topic: topic.to_owned(),
        alias,
    }
}

/// The client's side of the aliases: resolves each PUBLISH as the spec
/// says a receiver must, and fails on an alias it was never given.
#[derive(Default)]
struct Resolver(HashMap<u16, String>);

impl Resolver {
    fn resolve(&mut self, p: &Publish) -> String {
        match p.props.u16(TOPIC_ALIAS) {
            None => {
                assert!(!p.topic.is_empty(), "empty topic without alias: {p:?}");
                p.topic.clone()
            }
            Some(alias) if p.topic.is_empty() => self
                .0
                .get(&alias)
                .unwrap_or_else(|| panic!("alias {alias} used before it was set: {p:?}"))
                .clone(),
            Some(alias) => {
                self.0.insert(alias, p.topic.clone());
                p.topic.clone()
            }
        }
    }
}

/// Publishes `topics` in order (payload = index) and reads them back from
/// `s`: what was on the wire, after checking each resolves to its topic.
async fn round_trip(p: &mut RawClient, s: &mut RawClient, topics: &[&str]) -> Vec<Seen> {
    let mut resolver = Resolver::default();
    let mut out = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        p.publish_acked(Publish::new(topic, i.to_string().as_bytes(), 1))
            .await;
        let got = s.next_publish(PUBLISH_WAIT).await.expect("delivered");
        assert_eq!(got.payload, i.to_string().as_bytes(), "in order");
        assert_eq!(resolver.resolve(&got), *topic, "delivery {i}");
        out.push(seen(&got.topic, got.props.u16(TOPIC_ALIAS)));
    }
    out
}

#[tokio::test]
async fn the_first_publish_of_a_topic_sets_its_alias_later_ones_use_it_alone() {
    let broker = broker_with("").await;
    let mut s = subscriber(&broker, Some(4), &[]).await;
    let mut p = publisher(&broker).await;
    let got = round_trip(&mut p, &mut s, &["ta/a", "ta/a", "ta/b", "ta/a", "ta/b"]).await;
    assert_eq!(
        got,
        [
            seen("ta/a", Some(1)),
            seen("", Some(1)),
            seen("ta/b", Some(2)),
            seen("", Some(1)),
            seen("", Some(2)),
        ]
    );
}

#[tokio::test]
async fn a_full_table_gives_the_least_recently_used_alias_to_the_new_topic() {
    let broker = broker_with("").await;
    let mut s = subscriber(&broker, Some(2), &[]).await;
    let mut p = publisher(&broker).await;
    let got = round_trip(
        &mut p,
        &mut s,
        &["ta/x", "ta/y", "ta/x", "ta/z", "ta/x", "ta/y", "ta/z"],
    )
    .await;
    assert_eq!(
        got,
        [
            seen("ta/x", Some(1)),
            seen("ta/y", Some(2)),
            seen("", Some(1)),
            // y is the least recently used: z takes alias 2.
            seen("ta/z", Some(2)),
            seen("", Some(1)),
            // z is the least recently used now: y takes its alias 2…
            seen("ta/y", Some(2)),
            // …and z comes back on x's alias 1.
            seen("ta/z", Some(1)),
        ]
    );
    // Three topics cycling through two aliases: every one is a replacement,
    // and each still resolves to its topic (checked by round_trip).
    let cycle: Vec<&str> = ["ta/x", "ta/y", "ta/z"].repeat(5);
    let got = round_trip(&mut p, &mut s, &cycle).await;
    assert!(
        got.iter()
            .all(|g| !g.topic.is_empty() && matches!(g.alias, Some(1 | 2))),
        "{got:?}"
    );
}

#[tokio::test]
async fn no_alias_for_a_client_that_allows_none() {
    let broker = broker_with("").await;
    let mut none = subscriber(&broker, None, &[]).await;
    let mut zero = subscriber(&broker, Some(0), &[]).await;
    let mut v3 = broker
        .login(Version::V311, &client_id("v3"), "alice", "pw")
        .await;
    assert_eq!(v3.subscribe("ta/#", 0).await, 0);
    let mut p = publisher(&broker).await;
    for _ in 0..3 {
        p.publish_acked(Publish::new("ta/plain", b"m", 1)).await;
    }
    for s in [&mut none, &mut zero, &mut v3] {
        for _ in 0..3 {
            let got = s.next_publish(PUBLISH_WAIT).await.expect("delivered");
            assert_eq!(
                (got.topic.as_str(), got.props.u16(TOPIC_ALIAS)),
                ("ta/plain", None)
            );
        }
    }
}

#[tokio::test]
async fn the_broker_assigns_at_most_its_configured_number() {
    let broker = broker_with(", outbound_topic_aliases: 2").await;
    let mut s = subscriber(&broker, Some(100), &[]).await;
    let mut p = publisher(&broker).await;
    let got = round_trip(&mut p, &mut s, &["ta/1", "ta/2", "ta/3", "ta/4", "ta/3"]).await;
    let aliases: Vec<Option<u16>> = got.iter().map(|g| g.alias).collect();
    assert_eq!(aliases, [Some(1), Some(2), Some(1), Some(2), Some(1)]);

    let off = broker_with(", outbound_topic_aliases: 0").await;
    let mut s = subscriber(&off, Some(100), &[]).await;
    let mut p = publisher(&off).await;
    let got = round_trip(&mut p, &mut s, &["ta/1", "ta/1"]).await;
    assert_eq!(got, [seen("ta/1", None), seen("ta/1", None)]);
}

#[tokio::test]
async fn aliases_start_over_on_each_network_connection() {
    let broker = broker_with("").await;
    let id = client_id("resume");
    let connect = || {
        let mut c = Connect::new(Version::V5, &id).login("alice", "pw");
        c.clean = false;
        c.props.0.push(Prop::U16(TOPIC_ALIAS_MAXIMUM, 4));
        c.props.0.push(Prop::U32(wire::SESSION_EXPIRY, 60));
        c
    };
    let mut s = broker.login_with(connect()).await;
    assert_eq!(s.subscribe("ta/#", 0).await, 0);
    let mut p = publisher(&broker).await;
    let got = round_trip(&mut p, &mut s, &["ta/r", "ta/r"]).await;
    assert_eq!(got, [seen("ta/r", Some(1)), seen("", Some(1))]);
    s.disconnect().await;

    // The same session on a new connection: the client knows no alias.
    let (mut s, present) = broker.connect_ok(&connect()).await;
    assert!(present, "session resumed");
    let got = round_trip(&mut p, &mut s, &["ta/r", "ta/r"]).await;
    assert_eq!(got, [seen("ta/r", Some(1)), seen("", Some(1))]);
}

#[tokio::test]
async fn no_new_alias_when_it_would_pass_the_clients_maximum_packet_size() {
    let broker = broker_with("").await;
    // QoS 0 PUBLISH of topic "ta/limit" (10 bytes with its length), an
    // empty property block (1) and a 4-byte payload: 2 + 15 = 17 bytes.
    // Setting an alias would add 3.
    let mut s = subscriber(&broker, Some(4), &[Prop::U32(MAXIMUM_PACKET_SIZE, 17)]).await;
    let mut p = publisher(&broker).await;
    for _ in 0..2 {
        p.publish_acked(Publish::new("ta/limit", b"1234", 1)).await;
        let got = s.next_publish(PUBLISH_WAIT).await.expect("delivered");
        assert_eq!(
            (got.topic.as_str(), got.props.u16(TOPIC_ALIAS)),
            ("ta/limit", None)
        );
    }
    // A shorter payload leaves room for the alias.
    let got = round_trip(&mut p, &mut s, &["ta/limit", "ta/limit"]).await;
    assert_eq!(got, [seen("ta/limit", Some(1)), seen("", Some(1))]);
}

#[tokio::test]
async fn a_real_client_resolves_the_aliases() {
    let broker = broker_with("").await;
    let mut o = v5_options(&broker, &client_id("rumqttc"), "alice", "pw");
    o.set_topic_alias_max(Some(2));
    let mut sub = V5Client::start(o);
    sub.connack().await.expect("CONNACK");
    sub.client
        .subscribe("ta/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    sub.wait_for(WAIT, |p| {
        matches!(p, rumqttc::v5::mqttbytes::v5::Packet::SubAck(_))
    })
    .await
    .expect("SUBACK");
    let mut p = publisher(&broker).await;
    let topics = [
        "ta/d/1", "ta/d/2", "ta/d/1", "ta/d/3", "ta/d/2", "ta/d/3", "ta/d/1",
    ];
    for (i, t) in topics.iter().enumerate() {
        p.publish_acked(Publish::new(t, i.to_string().as_bytes(), 1))
            .await;
    }
    let mut aliased = 0;
    for (i, t) in topics.iter().enumerate() {
        let got = sub.next_publish(PUBLISH_WAIT).await.expect("delivered");
        assert_eq!(got.payload.as_ref(), i.to_string().as_bytes());
        assert_eq!(got.topic.as_ref(), t.as_bytes(), "delivery {i}");
        aliased += usize::from(got.properties.and_then(|p| p.topic_alias).is_some());
    }
    assert_eq!(aliased, topics.len(), "every delivery carried an alias");
}
