//! MQTT over WebSocket at the frame level, with a raw tungstenite client:
//! packets split across frames and several packets in one frame, ping and
//! close frames answered, text frames refused, and the upgrade checks (path,
//! allowed origins, subprotocol negotiation).

use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use warden_e2e::wire::{self, Incoming};
use warden_e2e::ws::tungstenite::{self, Message};
use warden_e2e::ws::{self, Upgrade, WsConn};
use warden_e2e::*;

async fn broker() -> TestBroker {
    let broker = TestBroker::start(BrokerOptions {
        websockets: true,
        ..Default::default()
    });
    broker.add_user("alice", "pw", &[]).await;
    broker
        .allow("alice", "publish,subscribe,receive", "web/#")
        .await;
    broker
}

/// A WebSocket that sends the frames it is given and decodes the MQTT
/// packets of the binary frames it receives.
struct Frames {
    ws: WsConn,
    buf: BytesMut,
}

impl Frames {
    async fn open(broker: &TestBroker) -> Self {
        let (ws, _) = ws::connect(broker.addr("ws"), &Upgrade::mqtt())
            .await
            .expect("upgrade");
        Self {
            ws,
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, frames: &[&[u8]]) {
        for f in frames {
            self.ws
                .send(Message::Binary(f.to_vec().into()))
                .await
                .expect("send frame");
        }
    }

    /// The next non-data message (ping, pong, close) or the end.
    async fn next_control(&mut self) -> Option<Message> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => panic!("nothing from the broker within {WAIT:?}"),
                Ok(Some(Ok(Message::Binary(b)))) => self.buf.extend_from_slice(&b),
                Ok(Some(Ok(m))) => return Some(m),
                Ok(_) => return None,
            }
        }
    }

    async fn packet(&mut self) -> Incoming {
        loop {
            let split = warden_e2e::wire_decode::split_frame(&mut self.buf).expect("framing");
            if let Some((first, body)) = split {
                return warden_e2e::wire_decode::decode(first, body, Version::V5)
                    .expect("decodable packet");
            }
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => self.buf.extend_from_slice(&b),
                Ok(Some(Ok(_))) => {}
                other => panic!("expected a packet, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn packets_split_across_frames_and_several_in_one_frame() {
    let broker = broker().await;
    let mut f = Frames::open(&broker).await;
    let connect =
        wire::encode_connect(&Connect::new(Version::V5, &client_id("f")).login("alice", "pw"));
    // CONNECT in three frames, the first holding one byte.
    f.send(&[&connect[..1], &connect[1..5], &connect[5..]])
        .await;
    assert!(
        matches!(f.packet().await, Incoming::ConnAck { code: 0, .. }),
        "CONNACK 0"
    );

    // SUBSCRIBE, PUBLISH and PINGREQ in one frame.
    let mut batch =
        wire::encode_subscribe(1, &[Sub::new("web/#", 1)], &Props::default(), Version::V5);
    let mut publish = Publish::new("web/a", b"one frame", 1);
    publish.packet_id = 2;
    batch.extend(wire::encode_publish(&publish, Version::V5));
    batch.extend(wire::encode_pingreq());
    f.send(&[&batch]).await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(f.packet().await);
    }
    assert!(
        seen.iter()
            .any(|p| matches!(p, Incoming::SubAck { codes, .. } if codes == &[1])),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|p| matches!(p, Incoming::PubAck { packet_id: 2, .. })),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|p| matches!(p, Incoming::PingResp)),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|p| matches!(p, Incoming::Publish(m) if m.payload == b"one frame")),
        "{seen:?}"
    );

    // One PUBLISH cut in the middle of its payload, and its tail in the
    // same frame as the next packet.
    let payload = vec![b'x'; 5000];
    let mut big = Publish::new("web/b", &payload, 0);
    big.packet_id = 0;
    let bytes = wire::encode_publish(&big, Version::V5);
    let mut tail = bytes[2500..].to_vec();
    tail.extend(wire::encode_pingreq());
    f.send(&[&bytes[..2500], &tail]).await;
    let mut got_big = false;
    let mut got_pong = false;
    while !(got_big && got_pong) {
        match f.packet().await {
            Incoming::Publish(m) if m.payload == payload => got_big = true,
            Incoming::PingResp => got_pong = true,
            Incoming::PubAck { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn ping_and_close_frames_are_answered() {
    let broker = broker().await;
    let mut f = Frames::open(&broker).await;
    let connect =
        wire::encode_connect(&Connect::new(Version::V5, &client_id("p")).login("alice", "pw"));
    f.send(&[&connect]).await;
    assert!(matches!(
        f.packet().await,
        Incoming::ConnAck { code: 0, .. }
    ));
    f.ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    match f.next_control().await {
        Some(Message::Pong(p)) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
    f.ws.close(None).await.unwrap();
    match f.next_control().await {
        Some(Message::Close(_)) => {}
        other => panic!("expected the close echoed, got {other:?}"),
    }
    let after = tokio::time::timeout(WAIT, f.ws.next()).await;
    assert!(
        matches!(after, Ok(None | Some(Err(_)))),
        "the stream ends after the close handshake: {after:?}"
    );
}

#[tokio::test]
async fn a_text_frame_closes_the_connection() {
    let broker = broker().await;
    let mut f = Frames::open(&broker).await;
    let connect =
        wire::encode_connect(&Connect::new(Version::V5, &client_id("t")).login("alice", "pw"));
    f.send(&[&connect]).await;
    assert!(matches!(
        f.packet().await,
        Incoming::ConnAck { code: 0, .. }
    ));
    f.ws.send(Message::Text("hello".into())).await.unwrap();
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match f.ws.next().await {
                Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => {}
                other => return other,
            }
        }
    })
    .await
    .expect("the broker ends the connection");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_)))),
        "closed after a text frame: {end:?}"
    );
}

/// The HTTP status of a refused upgrade.
async fn refused(addr: std::net::SocketAddr, up: &Upgrade) -> u16 {
    match ws::connect(addr, up).await {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("upgrade accepted: {up:?}"),
    }
}

#[tokio::test]
async fn upgrade_checks_path_origin_and_subprotocol() {
    let broker = broker().await;
    let ws_addr = broker.addr("ws");

    let mut up = Upgrade::mqtt();
    up.path = "/other".into();
    assert_eq!(refused(ws_addr, &up).await, 404);

    // Subprotocols: the client's first one that is MQTT's.
    for (offered, chosen) in [
        (Some("mqtt"), Some("mqtt")),
        (Some("chat, mqttv3.1, mqtt"), Some("mqttv3.1")),
        (None, None),
    ] {
        let mut up = Upgrade::mqtt();
        up.protocols = offered.map(str::to_owned);
        let (_, resp) = ws::connect(ws_addr, &up).await.expect("upgrade");
        assert_eq!(
            ws::protocol(&resp).as_deref(),
            chosen,
            "offered {offered:?}"
        );
    }
    let mut up = Upgrade::mqtt();
    up.protocols = Some("chat".into());
    assert_eq!(refused(ws_addr, &up).await, 400);

    // Allowed origins: checked at the upgrade.
    let origin_addr = broker.addr("ws-origin");
    let mut up = Upgrade::mqtt();
    up.origin = Some("http://evil.example".into());
    assert_eq!(refused(origin_addr, &up).await, 403);
    up.origin = None;
    assert_eq!(refused(origin_addr, &up).await, 403);
    up.origin = Some("http://allowed.example".into());
    let mut c = ws::raw(origin_addr, &up).await.expect("allowed origin");
    let (_, code, _) = c
        .connect(&Connect::new(Version::V311, &client_id("o")).login("alice", "pw"))
        .await
        .expect("CONNACK");
    assert_eq!(code, 0);

    assert!(
        broker
            .wait_log(
                "origin \"http://evil.example\" not allowed",
                Duration::from_secs(3)
            )
            .await,
        "refused upgrades are logged:\n{}",
        broker.log()
    );
}
