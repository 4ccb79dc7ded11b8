//! Shared subscriptions and interest across three Warden nodes (one
//! PostgreSQL policy store, a nats-server of the test's own): members of
//! one share group on three nodes split the messages with none lost and
//! none duplicated, a direct subscriber of the same filter gets each once,
//! and another group gets its own copy; a message no other node wants
//! costs no NATS message at all (the server's per-connection counters);
//! a subscriber whose SUBACK came gets what other nodes publish next.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use warden_e2e::nats::{cluster_name, cluster_node, Conn, NatsServer};
use warden_e2e::stores::{Backend, TestStore};
use warden_e2e::*;

fn node(store: &TestStore, nats: &NatsServer, cluster: &str, id: &str) -> TestBroker {
    cluster_node(store, &[nats.url()], cluster, id, "", false)
}

/// The data connection of node `id` (not its control connection).
async fn data_conn(nats: &NatsServer, id: &str) -> Conn {
    let suffix = format!(" node {id}");
    let conns = nats.connections().await;
    conns
        .iter()
        .find(|c| c.name.ends_with(&suffix))
        .cloned()
        .unwrap_or_else(|| panic!("no connection of {id}: {conns:?}"))
}

/// Everything `c` receives until nothing comes for `quiet`, acknowledged.
async fn drain(c: &mut RawClient, quiet: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(p) = c.next_publish(quiet).await {
        got.push(p.payload);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_group_on_three_nodes_gets_each_message_once() {
    std::env::set_var("WARDEN_E2E_LOG", "info,warden::cluster=debug");
    let nats = NatsServer::start_with(&["-js"]);
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("shr");
    let n1 = node(&store, &nats, &cluster, "n1");
    let n2 = node(&store, &nats, &cluster, "n2");
    let n3 = node(&store, &nats, &cluster, "n3");
    n1.user_with_rights("u", "pw", "s/#").await;

    // Group g: two members on node 1, one on node 2, one on node 3.
    // Group h: one member, on node 3. A direct subscriber on node 2.
    let mut members = Vec::new();
    for (i, n) in [&n1, &n1, &n2, &n3].iter().enumerate() {
        let mut c = n
            .login(Version::V5, &client_id(&format!("g{i}")), "u", "pw")
            .await;
        assert_eq!(c.subscribe("$share/g/s/#", 1).await, 1);
        members.push(c);
    }
    let mut h = n3.login(Version::V5, &client_id("h"), "u", "pw").await;
    assert_eq!(h.subscribe("$share/h/s/#", 1).await, 1);
    let mut direct = n2.login(Version::V5, &client_id("d"), "u", "pw").await;
    assert_eq!(direct.subscribe("s/#", 1).await, 1);

    // Publishers on two nodes, 150 messages each, distinct payloads.
    let mut p1 = n1.login(Version::V5, &client_id("p1"), "u", "pw").await;
    let mut p3 = n3.login(Version::V5, &client_id("p3"), "u", "pw").await;
    const EACH: usize = 150;
    let mut sent = HashSet::new();
    for i in 0..EACH {
        for (name, p) in [("a", &mut p1), ("c", &mut p3)] {
            let payload = format!("{name}{i}").into_bytes();
            assert_eq!(p.publish_acked(Publish::new("s/x", &payload, 1)).await, 0);
            sent.insert(payload);
        }
    }

    let mut per_member = Vec::new();
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for c in &mut members {
        let got = drain(c, Duration::from_millis(1500)).await;
        per_member.push(got.len());
        for p in got {
            *seen.entry(p).or_default() += 1;
        }
    }
    println!("group g split per member (node 1, node 1, node 2, node 3): {per_member:?}");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered twice in the group: {twice:?}");
    let lost: Vec<_> = sent.iter().filter(|p| !seen.contains_key(*p)).collect();
    assert!(
        lost.is_empty(),
        "lost in the group: {} of {}\n{}\n{}\n{}",
        lost.len(),
        sent.len(),
        n1.log(),
        n2.log(),
        n3.log()
    );
    assert_eq!(per_member.iter().sum::<usize>(), 2 * EACH);
    // Every node's members got a share (NATS picks a node at random per
    // message: a node left out of 300 would be a broken queue group).
    assert!(per_member[0] + per_member[1] > 0, "{per_member:?}");
    assert!(per_member[2] > 0 && per_member[3] > 0, "{per_member:?}");

    // The other group and the direct subscriber: every message, once.
    for (who, c) in [("group h", &mut h), ("direct", &mut direct)] {
        let mut got = drain(c, Duration::from_millis(1000)).await;
        got.sort();
        let mut want: Vec<Vec<u8>> = sent.iter().cloned().collect();
        want.sort();
        assert_eq!(got.len(), want.len(), "{who}: count");
        assert_eq!(got, want, "{who}");
    }
    drop((n1, n2, n3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_remote_interest_costs_no_nats_message() {
    std::env::set_var("WARDEN_E2E_LOG", "info,warden::cluster=debug");
    let nats = NatsServer::start_with(&["-js"]);
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("zero");
    let n1 = node(&store, &nats, &cluster, "n1");
    let n2 = node(&store, &nats, &cluster, "n2");
    n1.user_with_rights("u", "pw", "#").await;

    let mut local = n1.login(Version::V5, &client_id("local"), "u", "pw").await;
    assert_eq!(local.subscribe("z/#", 1).await, 1);
    let mut group = n1.login(Version::V5, &client_id("grp"), "u", "pw").await;
    assert_eq!(group.subscribe("$share/g/z/#", 1).await, 1);
    let mut remote = n2.login(Version::V5, &client_id("remote"), "u", "pw").await;
    assert_eq!(remote.subscribe("x/sentinel", 1).await, 1);
    let mut p = n1.login(Version::V5, &client_id("p"), "u", "pw").await;
    // Past the start's settling time, when a node sends everything.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // 200 messages with local subscribers only, 50 with none anywhere:
    // node 1's data connection sends NATS nothing for them. Then one that
    // node 2 wants: exactly one message.
    let before = data_conn(&nats, "n1").await;
    for i in 0..200 {
        let payload = i.to_string();
        assert_eq!(
            p.publish_acked(Publish::new("z/a", payload.as_bytes(), 1))
                .await,
            0
        );
    }
    for _ in 0..50 {
        assert_eq!(p.publish_acked(Publish::new("nobody/x", b"n", 1)).await, 0);
    }
    assert_eq!(
        drain(&mut local, Duration::from_millis(500)).await.len(),
        200
    );
    assert_eq!(
        drain(&mut group, Duration::from_millis(500)).await.len(),
        200
    );
    assert_eq!(
        p.publish_acked(Publish::new("x/sentinel", b"s", 1)).await,
        0
    );
    let got = remote.next_publish(WAIT).await.expect("the sentinel");
    assert_eq!(got.payload, b"s");
    let after = data_conn(&nats, "n1").await;
    println!(
        "node 1 data connection: {} NATS messages, {} bytes for 250 local-only publishes and 1 remote",
        after.in_msgs - before.in_msgs,
        after.in_bytes - before.in_bytes
    );
    assert_eq!(after.in_msgs - before.in_msgs, 1, "NATS messages sent");

    // Interest learned in both directions: a subscriber whose SUBACK came
    // gets what the other node publishes right after, every time.
    let mut q = n2.login(Version::V5, &client_id("q"), "u", "pw").await;
    for i in 0..20 {
        let topic = format!("late/{i}");
        let mut sub = n1.login(Version::V5, &client_id("sub"), "u", "pw").await;
        assert_eq!(sub.subscribe(&topic, 1).await, 1);
        assert_eq!(q.publish_acked(Publish::new(&topic, b"l", 1)).await, 0);
        let got = sub.next_publish(WAIT).await;
        assert_eq!(
            got.map(|p| p.topic),
            Some(topic.clone()),
            "message right after the SUBACK"
        );
        sub.disconnect().await;
    }

    // The last unsubscribe removes the interest: nothing goes any more.
    remote.disconnect().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let before = data_conn(&nats, "n1").await.in_msgs;
        assert_eq!(
            p.publish_acked(Publish::new("x/sentinel", b"t", 1)).await,
            0
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        if data_conn(&nats, "n1").await.in_msgs == before {
            break;
        }
        assert!(Instant::now() < deadline, "interest never went away");
    }
    drop((n1, n2));
}
