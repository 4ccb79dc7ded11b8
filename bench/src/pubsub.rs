//! The publisher and subscriber loops. Publishers copy a PUBLISH encoded
//! once by warden-codec into a batch buffer (patching only the packet id and
//! the timestamp) and write the batch at once; QoS 1 publishers keep up to
//! `window` PUBLISHes unacknowledged. Subscribers decode everything they
//! read and answer QoS 1 deliveries with one batched write of PUBACKs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};
use tokio::sync::{watch, Semaphore};
use warden_codec::{decode, encode, Packet, Properties, PubResp, Publish};

use crate::net::{BoxStream, MAX_PACKET, VERSION};

/// Messages per write for an unpaced QoS 0 publisher, and the most a QoS 1
/// publisher sends in one write.
const BATCH: usize = 64;

/// A PUBLISH encoded once, with the offsets that change per message.
#[derive(Clone)]
pub struct Template {
    bytes: Vec<u8>,
    pid_at: Option<usize>,
    payload_at: usize,
}

impl Template {
    pub fn new(topic: &str, qos: u8, payload_len: usize) -> Result<Template> {
        let publish = Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.to_string(),
            packet_id: (qos > 0).then_some(1),
            properties: Properties::default(),
            payload: Bytes::from(vec![0x5a; payload_len]),
        });
        let mut buf = BytesMut::new();
        encode(&publish, VERSION, &mut buf)?;
        let payload_at = buf.len() - payload_len;
        Ok(Template {
            pid_at: (qos > 0).then(|| payload_at - 2),
            payload_at,
            bytes: buf.to_vec(),
        })
    }

    /// Appends one message with packet id `pid` and, if the payload has
    /// room, the send time in nanoseconds since `base`.
    fn push(&self, out: &mut Vec<u8>, pid: u16, base: Option<Instant>) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if let Some(at) = self.pid_at {
            out[start + at..start + at + 2].copy_from_slice(&pid.to_be_bytes());
        }
        if let Some(base) = base {
            let at = start + self.payload_at;
            if out.len() >= at + 8 {
                let nanos = base.elapsed().as_nanos() as u64;
                out[at..at + 8].copy_from_slice(&nanos.to_le_bytes());
            }
        }
    }
}

/// Counters shared by all publishers of a run.
#[derive(Default)]
pub struct PubCounters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
}

/// How a publisher sends.
#[derive(Clone)]
pub struct PubMode {
    pub qos: u8,
    pub window: usize,
    /// Messages per second; `None` sends as fast as the broker reads.
    pub rate: Option<u32>,
    /// Stamp payloads with the send time (since this instant).
    pub stamp: Option<Instant>,
}

struct PacketIds(u16);

impl PacketIds {
    fn next(&mut self) -> u16 {
        self.0 = self.0.checked_add(1).unwrap_or(1);
        self.0
    }
}

/// Publishes until `stop` is set, then waits (up to 10 s) for outstanding
/// PUBACKs.
pub async fn publisher(
    stream: BoxStream,
    tpl: Template,
    mode: PubMode,
    stop: Arc<AtomicBool>,
    counters: Arc<PubCounters>,
) -> Result<()> {
    let (rd, mut wr) = tokio::io::split(stream);
    let window = if mode.qos == 0 {
        usize::MAX >> 4
    } else {
        mode.window.max(1)
    };
    let credit = Arc::new(Semaphore::new(window.min(Semaphore::MAX_PERMITS)));
    let acks =
        (mode.qos > 0).then(|| tokio::spawn(ack_reader(rd, credit.clone(), counters.clone())));
    let mut ticker = mode.rate.map(|r| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let mut ids = PacketIds(0);
    let mut out = Vec::with_capacity(BATCH * tpl.bytes.len());
    while !stop.load(Ordering::Relaxed) {
        let want = match ticker.as_mut() {
            Some(t) => {
                t.tick().await;
                1
            }
            None => BATCH,
        };
        let granted = want.min(credit.available_permits()).max(1);
        let Ok(Ok(permit)) = tokio::time::timeout(
            Duration::from_millis(50),
            credit.acquire_many(granted as u32),
        )
        .await
        else {
            continue;
        };
        permit.forget();
        out.clear();
        for _ in 0..granted {
            tpl.push(&mut out, ids.next(), mode.stamp);
        }
        wr.write_all(&out).await?;
        counters.sent.fetch_add(granted as u64, Ordering::Relaxed);
    }
    if let Some(acks) = acks {
        let deadline = Instant::now() + Duration::from_secs(10);
        while credit.available_permits() < window && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        acks.abort();
    }
    wr.shutdown().await.ok();
    Ok(())
}

/// Reads PUBACKs and gives their window slots back.
pub(crate) async fn ack_reader(
    mut rd: ReadHalf<BoxStream>,
    credit: Arc<Semaphore>,
    counters: Arc<PubCounters>,
) -> Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        if rd.read_buf(&mut buf).await? == 0 {
            bail!("publisher connection closed by the broker");
        }
        let mut n = 0usize;
        while let Some(packet) = decode(&mut buf, Some(VERSION), MAX_PACKET)? {
            if matches!(packet, Packet::PubAck(_)) {
                n += 1;
            }
        }
        if n > 0 {
            counters.acked.fetch_add(n as u64, Ordering::Relaxed);
            credit.add_permits(n);
        }
    }
}

/// Counters shared by all subscribers of a run.
#[derive(Default)]
pub struct SubCounters {
    pub received: AtomicU64,
    /// Nanoseconds since the run's base instant of the latest delivery.
    pub last_nanos: AtomicU64,
}

/// Reads deliveries until `stop` changes, acknowledging QoS 1 ones. Returns
/// the latency samples in µs when `stamp` is given.
pub async fn subscriber(
    mut stream: BoxStream,
    mut buf: BytesMut,
    base: Instant,
    stamp: bool,
    counters: Arc<SubCounters>,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<u64>> {
    let mut samples = Vec::new();
    let mut acks = BytesMut::with_capacity(16 * 1024);
    buf.reserve(256 * 1024);
    loop {
        let mut n = 0u64;
        while let Some(packet) = decode(&mut buf, Some(VERSION), MAX_PACKET)? {
            if let Packet::Publish(p) = packet {
                n += 1;
                if stamp {
                    if let Some(sent) = p.payload.get(..8).and_then(|b| b.try_into().ok()) {
                        let sent = u64::from_le_bytes(sent);
                        let now = base.elapsed().as_nanos() as u64;
                        samples.push(now.saturating_sub(sent) / 1000);
                    }
                }
                if let Some(packet_id) = p.packet_id {
                    let ack = Packet::PubAck(PubResp {
                        packet_id,
                        reason: 0,
                        properties: Properties::default(),
                    });
                    encode(&ack, VERSION, &mut acks)?;
                }
            }
        }
        if n > 0 {
            counters.received.fetch_add(n, Ordering::Relaxed);
            counters
                .last_nanos
                .fetch_max(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        if !acks.is_empty() {
            stream.write_all(&acks).await?;
            acks.clear();
        }
        tokio::select! {
            r = stream.read_buf(&mut buf) => {
                if r? == 0 {
                    bail!("subscriber connection closed by the broker");
                }
            }
            _ = stop.changed() => return Ok(samples),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_patches_packet_id_and_stamp() {
        let tpl = Template::new("bench/u/t", 1, 64).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        let base = Instant::now();
        tpl.push(&mut out, 0x1234, Some(base));
        tpl.push(&mut out, 7, None);
        let mut buf = BytesMut::from(&out[..]);
        let first = decode(&mut buf, Some(VERSION), MAX_PACKET);
        let second = decode(&mut buf, Some(VERSION), MAX_PACKET);
        match (first, second) {
            (Ok(Some(Packet::Publish(a))), Ok(Some(Packet::Publish(b)))) => {
                assert_eq!(a.packet_id, Some(0x1234));
                assert_eq!(b.packet_id, Some(7));
                assert_eq!(a.topic, "bench/u/t");
                assert_eq!(a.payload.len(), 64);
                assert_ne!(&a.payload[..8], &[0x5a; 8]);
                assert_eq!(&b.payload[..8], &[0x5a; 8]);
            }
            other => panic!("unexpected decode result {other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn qos0_template_has_no_packet_id() {
        let tpl = Template::new("a", 0, 8).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tpl.pid_at, None);
        assert_eq!(tpl.bytes.len(), 2 + 3 + 8);
    }

    #[test]
    fn packet_ids_skip_zero() {
        let mut ids = PacketIds(u16::MAX - 1);
        assert_eq!(ids.next(), u16::MAX);
        assert_eq!(ids.next(), 1);
    }
}
