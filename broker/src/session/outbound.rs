//! Server → client messages: moving deliveries from the session queue into
//! flight within the client's Receive Maximum, building the PUBLISH packets,
//! the QoS 1/2 acknowledgements that free the window, and retransmission on
//! resume. Fresh, queued and retransmitted deliveries are written by one
//! encoder (`Outbound`), and each was authorized under the session's
//! current policy (`SessionState::authorize_delivery`). Fresh and queued
//! deliveries to a v5 client that allows topic aliases are sent by alias
//! (`topic_alias.rs`); retransmissions on resume carry their whole topic.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use warden_codec::{
    CodecError, Packet, Properties, ProtocolVersion, PubResp, PublishView, ReasonCode,
};
use warden_policy::QoS;

use crate::authorize::Authorizer;
use crate::persist::Persister;
use crate::session::connection::Connection;
use crate::session::handler::{End, Handler, WRITE_CAP};
use crate::session::message::Delivery;
use crate::session::state::{Outgoing, Phase, SessionState};
use crate::session::topic_alias::{Alias, TopicAliases};

/// Most packets moved per drain, so one busy subscriber cannot hold its
/// session lock for long; the rest go on the next turn.
const DRAIN_BATCH: usize = 256;

thread_local! {
    /// The drain's batch, reused so sending does not allocate.
    static OUT: std::cell::RefCell<Vec<Outbound>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A delivery taken off the queue, to be written after the session lock is
/// released. Encoded from its parts: no owned packet, no topic copy.
#[derive(Debug)]
pub struct Outbound {
    delivery: Delivery,
    packet_id: Option<u16>,
    /// A retransmission on resume.
    dup: bool,
    /// Sent by its topic alias alone, with an empty topic.
    bare: bool,
    /// v5 only: the properties this delivery carries (expiry left,
    /// subscription identifiers); `None` for 3.x.
    properties: Option<Properties>,
}

/// Properties of a 3.x PUBLISH: none are written.
static NO_PROPERTIES: std::sync::LazyLock<Properties> =
    std::sync::LazyLock::new(Properties::default);

impl Outbound {
    fn new(d: Delivery, packet_id: Option<u16>, version: ProtocolVersion, now: Instant) -> Self {
        let properties = version.is_v5().then(|| v5_properties(&d, now));
        Outbound {
            delivery: d,
            packet_id,
            dup: false,
            bare: false,
            properties,
        }
    }

    /// Send by topic alias: the alias alone when the client knows it for
    /// this topic, else the topic with a new alias (the least recently used
    /// one when all are taken), unless the alias would take the packet past
    /// the client's Maximum Packet Size.
    fn use_alias(
        &mut self,
        table: &mut TopicAliases,
        max_packet: Option<u32>,
        version: ProtocolVersion,
    ) {
        if self.properties.is_none() {
            return;
        }
        if let Alias::Known(alias) = table.lookup(&self.delivery.msg.topic) {
            self.set_alias(Some(alias));
            self.bare = true;
            return;
        }
        if let Some(max) = max_packet {
            // Any alias adds the same three bytes.
            self.set_alias(Some(1));
            if warden_codec::publish_encoded_len(&self.view(), version) > max as usize {
                self.set_alias(None);
                return;
            }
        }
        let alias = table.assign(&self.delivery.msg.topic);
        self.set_alias(Some(alias));
    }

    fn set_alias(&mut self, alias: Option<u16>) {
        if let Some(p) = self.properties.as_mut() {
            // Clearing an absent alias must not allocate the set.
            if alias.is_some() || p.topic_alias.is_some() {
                p.topic_alias = alias;
            }
        }
    }

    pub(crate) fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    pub(crate) fn view(&self) -> PublishView<'_> {
        let d = &self.delivery;
        PublishView {
            dup: self.dup,
            qos: d.qos.as_u8(),
            retain: d.retain,
            topic: if self.bare { "" } else { &d.msg.topic },
            packet_id: self.packet_id,
            properties: self.properties.as_ref().unwrap_or(&NO_PROPERTIES),
            payload: &d.msg.payload,
        }
    }
}

fn v5_properties(d: &Delivery, now: Instant) -> Properties {
    let mut p = d.msg.properties.clone();
    // Written only when present: a write allocates the property set.
    if let Some(left) = d.msg.remaining_expiry(now) {
        p.message_expiry_interval = Some(left);
    }
    if !d.sub_ids.is_empty() {
        p.subscription_identifiers.clone_from(&d.sub_ids);
    }
    p
}

fn pubrel(packet_id: u16) -> Packet {
    Packet::PubRel(PubResp {
        packet_id,
        reason: 0,
        properties: Properties::default(),
    })
}

/// Resend what was in flight when a session resumes, in packet-id order:
/// PUBLISH with DUP, or PUBREL. Called with the session locked, after the
/// login's policy was installed (which dropped what it denies).
pub fn retransmit<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    st: &mut SessionState,
    authz: &Authorizer,
    persist: &Persister,
    version: ProtocolVersion,
) -> Result<(), CodecError> {
    let now = Instant::now();
    let ids = st.inflight.ids_in_order();
    for id in ids {
        let Some(out) = st.inflight.get(&id) else {
            continue;
        };
        if out.phase == Phase::AwaitComp {
            conn.queue(&pubrel(id))?;
            continue;
        }
        let mut d = out.delivery.clone();
        if d.epoch != st.policy_epoch && !st.authorize_delivery(authz, &mut d) {
            st.inflight.remove(&id);
            st.forget_delivery(persist, &d);
            continue;
        }
        let mut o = Outbound::new(d, Some(id), version, now);
        o.dup = true;
        conn.queue_publish(&o.view())?;
    }
    Ok(())
}

impl<S: crate::session::connection::Transport> Handler<S> {
    /// Move what may be sent now from the session queue to the write buffer.
    pub(crate) fn drain_outbound(&mut self) -> Result<(), End> {
        let max_packet;
        let fd = self.direct_fd();
        // One buffer per worker thread, not per connection: a drain never
        // waits, so it is back before another connection runs here.
        let mut out;
        let more = {
            let mut st = self.session.state.lock();
            let kicked = st.kicked.is_some_and(|(id, _)| id == self.conn_id);
            if kicked || !st.is_attached_to(self.conn_id) {
                return Err(self.lost_ownership(st.kicked));
            }
            // The socket is this task's again before it writes.
            let leftovers = &self.broker.leftovers;
            crate::session::direct::take_output(&mut self.conn, self.conn_id, leftovers, &mut st);
            if self.conn.pending_bytes() >= WRITE_CAP {
                // The socket has not taken what is already queued: the
                // rest waits in the session queue (bounded, counted).
                return Ok(());
            }
            max_packet = st.client_max_packet;
            out = OUT.with(|o| std::mem::take(&mut *o.borrow_mut()));
            let more = fill_batch(
                &mut st,
                &mut out,
                &self.broker.authz,
                &self.broker.persist,
                self.version,
            );
            if out.is_empty() {
                // Nothing to send from the queue: if nothing else waits
                // for the socket either, publishers may write to it.
                crate::session::direct::arm(&self.conn, fd, self.conn_id, &mut st);
            }
            more
        };
        let mut result = Ok(());
        // Counted per batch and QoS: one shared add per batch, not per message.
        let mut sent = [(0u64, 0u64); 3];
        // One branch per batch for a client without aliases.
        let max = self.alias_out_max;
        let mut aliases = (max > 0 && !out.is_empty()).then(|| {
            &mut **self
                .rare
                .get_or_insert_with(Box::default)
                .aliases_out
                .get_or_insert_with(|| Box::new(TopicAliases::new(max)))
        });
        for mut o in out.drain(..) {
            if let Some(table) = aliases.as_deref_mut() {
                o.use_alias(table, max_packet, self.version);
            }
            if self.conn.queue_publish(&o.view()).is_err() {
                result = Err(End::Violation(
                    ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR.value(),
                ));
                break;
            }
            let slot = &mut sent[o.delivery.qos as usize];
            slot.0 += 1;
            slot.1 += o.delivery.msg.payload.len() as u64;
        }
        for (qos, (n, bytes)) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .zip(sent)
        {
            if n > 0 {
                self.broker
                    .stats
                    .flow
                    .add(crate::observe::stats::Flow::MessagesOut, qos, n, bytes);
            }
        }
        OUT.with(|o| *o.borrow_mut() = out);
        if more {
            // Come back without waiting for a publisher's wake-up.
            self.wake.notify_one();
        }
        result
    }

    pub(crate) fn on_puback(&mut self, packet_id: u16) -> Result<(), End> {
        self.acknowledged(packet_id, Phase::AwaitAck);
        Ok(())
    }

    /// The client finished the exchange of `packet_id` (in `phase`).
    fn acknowledged(&mut self, packet_id: u16, phase: Phase) {
        let mut st = self.session.state.lock();
        if matches!(st.inflight.get(&packet_id), Some(o) if o.phase == phase) {
            if let Some(o) = st.inflight.remove(&packet_id) {
                st.forget_delivery(&self.broker.persist, &o.delivery);
            }
        }
    }

    pub(crate) fn on_pubrec(&mut self, packet_id: u16, reason: u8) -> Result<(), End> {
        let known = {
            let mut st = self.session.state.lock();
            match st.inflight.get_mut(&packet_id) {
                Some(o) if o.phase == Phase::AwaitRec && reason >= 0x80 => {
                    // The client refused it: the exchange ends here.
                    if let Some(o) = st.inflight.remove(&packet_id) {
                        st.forget_delivery(&self.broker.persist, &o.delivery);
                    }
                    return Ok(());
                }
                Some(o) => {
                    let first = o.phase == Phase::AwaitRec;
                    o.phase = Phase::AwaitComp;
                    let seq = o.delivery.seq;
                    let ticket = if first {
                        st.store_phase(&self.broker.persist, seq, packet_id, Phase::AwaitComp)
                    } else {
                        0
                    };
                    Some(ticket)
                }
                None => None,
            }
        };
        // PUBREL waits until the new phase is durable: after a crash the
        // broker must resend PUBREL, not the PUBLISH the client already
        // completed (which it would take as a new message).
        let (known, ticket) = (known.is_some(), known.unwrap_or(0));
        let mut rel = pubrel(packet_id);
        if !known && self.version.is_v5() {
            if let Packet::PubRel(r) = &mut rel {
                r.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND.value();
            }
        }
        self.ack(ticket, rel)
    }

    pub(crate) fn on_pubcomp(&mut self, packet_id: u16) -> Result<(), End> {
        self.acknowledged(packet_id, Phase::AwaitComp);
        Ok(())
    }
}

/// Take deliveries off the queue while the window allows. Returns true when
/// more could be sent right away (the batch limit was hit).
pub(crate) fn fill_batch(
    st: &mut SessionState,
    out: &mut Vec<Outbound>,
    authz: &Authorizer,
    persist: &Persister,
    version: ProtocolVersion,
) -> bool {
    let now = Instant::now();
    while let Some(front) = st.queue.front() {
        if out.len() >= DRAIN_BATCH {
            return true;
        }
        if front.qos != QoS::AtMostOnce && st.inflight.len() >= usize::from(st.send_quota) {
            return false;
        }
        let Some(mut d) = st.queue.pop_front() else {
            break;
        };
        st.last_drain = now;
        if d.msg.is_expired(now) {
            st.forget_delivery(persist, &d);
            continue;
        }
        // Authorized when queued; again if the policy changed since.
        if d.epoch != st.policy_epoch && !st.authorize_delivery(authz, &mut d) {
            st.forget_delivery(persist, &d);
            continue;
        }
        let packet_id = if d.qos == QoS::AtMostOnce {
            None
        } else {
            match st.alloc_packet_id() {
                Some(id) => Some(id),
                None => {
                    st.queue.push_front(d);
                    return false;
                }
            }
        };
        let o = Outbound::new(d, packet_id, version, now);
        if let Some(max) = st.client_max_packet {
            // MQTT 5 §3.1.2.11.4: a packet over the client's maximum is
            // discarded as if it had been delivered.
            if warden_codec::publish_encoded_len(&o.view(), version) > max as usize {
                st.forget_delivery(persist, &o.delivery);
                continue;
            }
        }
        if let Some(id) = packet_id {
            let phase = if o.delivery.qos == QoS::AtLeastOnce {
                Phase::AwaitAck
            } else {
                Phase::AwaitRec
            };
            let delivery = o.delivery.clone();
            st.store_phase(persist, delivery.seq, id, phase);
            st.inflight.insert(id, Outgoing { delivery, phase });
        }
        out.push(o);
    }
    false
}
