//! Acknowledgements that wait for the session store: a PUBACK/PUBREC of a
//! message written for persistent sessions (or a SUBACK of a stored
//! session) goes out only once the store reports its ticket durable, and
//! everything after a held acknowledgement waits behind it, so they leave
//! in the order MQTT requires. A QoS 1 PUBACK may leave earlier: once every
//! persistent subscriber it was stored for has acknowledged the message
//! (its [`AckGate`] settled), nothing is owed that a crash could lose.

use std::sync::Arc;

use warden_codec::{Packet, Properties, PubResp, ReasonCode};

use crate::cluster::durable::{Outcome, PendingAck};
use crate::persist::Ticket;
use crate::session::handler::{End, Handler};
use crate::session::message::Message;

/// An acknowledgement as it waits. Nearly every held one is a PUBACK (or
/// PUBREC/PUBREL) without properties, and with persistence on every QoS 1
/// publish waits here: a whole `Packet` (a few hundred bytes, mostly
/// `Properties`) would be copied in and out of the queue per message.
#[derive(Debug)]
enum HeldPacket {
    Response {
        kind: Response,
        packet_id: u16,
        reason: u8,
    },
    Other(Box<Packet>),
}

#[derive(Clone, Copy, Debug)]
enum Response {
    Ack,
    Rec,
    Rel,
}

impl HeldPacket {
    fn new(packet: Packet) -> HeldPacket {
        let (kind, r) = match packet {
            Packet::PubAck(r) => (Response::Ack, r),
            Packet::PubRec(r) => (Response::Rec, r),
            Packet::PubRel(r) => (Response::Rel, r),
            other => return HeldPacket::Other(Box::new(other)),
        };
        if !r.properties.is_empty() {
            let packet = match kind {
                Response::Ack => Packet::PubAck(r),
                Response::Rec => Packet::PubRec(r),
                Response::Rel => Packet::PubRel(r),
            };
            return HeldPacket::Other(Box::new(packet));
        }
        HeldPacket::Response {
            kind,
            packet_id: r.packet_id,
            reason: r.reason,
        }
    }

    fn into_packet(self) -> Packet {
        match self {
            HeldPacket::Response {
                kind,
                packet_id,
                reason,
            } => {
                let r = PubResp {
                    packet_id,
                    reason,
                    properties: Properties::default(),
                };
                match kind {
                    Response::Ack => Packet::PubAck(r),
                    Response::Rec => Packet::PubRec(r),
                    Response::Rel => Packet::PubRel(r),
                }
            }
            HeldPacket::Other(p) => *p,
        }
    }
}

/// One acknowledgement waiting for the store (or its subscribers).
#[derive(Debug)]
pub(crate) struct HeldAck {
    ticket: Ticket,
    packet: HeldPacket,
    /// Released early when this message's [`AckGate`] settles.
    gated: Option<Arc<Message>>,
    /// A SUBACK on a cluster node also waits until NATS confirmed the
    /// subscriptions (`cluster::interest`); 0: it does not.
    interest: u64,
    /// A PUBACK/PUBREC with `cluster.durable_qos` also waits for JetStream;
    /// when it failed, a v5 publisher gets 0x80 (`cluster::durable`).
    durable: Option<Arc<PendingAck>>,
}

/// Whether an acknowledgement of `ticket` may leave.
fn ready(ticket: Ticket, gated: Option<&Message>, durable: Ticket) -> bool {
    ticket <= durable
        || gated
            .and_then(|m| m.ack_gate.as_ref())
            .is_some_and(|g| g.is_settled())
}

impl HeldAck {
    fn ready(&self, durable: Ticket, interest: Option<&crate::cluster::Interest>) -> bool {
        ready(self.ticket, self.gated.as_deref(), durable)
            && (self.interest == 0 || interest.is_none_or(|i| i.is_confirmed(self.interest)))
            && self.durable.as_ref().is_none_or(|p| p.outcome().is_some())
    }

    /// The packet to send; a PUBACK/PUBREC whose message JetStream did not
    /// store carries 0x80 for a v5 client (v3.1.1 has no negative
    /// acknowledgement: it gets a plain one, docs/cluster.md). Also the
    /// packet id of a refused PUBREC, whose QoS 2 flow ends there.
    fn finish(self, v5: bool) -> (Packet, Option<u16>) {
        let failed = self
            .durable
            .as_ref()
            .is_some_and(|p| p.outcome() == Some(Outcome::Failed));
        let mut packet = self.packet;
        let mut refused = None;
        if failed && v5 {
            if let HeldPacket::Response {
                kind,
                packet_id,
                reason,
            } = &mut packet
            {
                if *reason < 0x80 {
                    *reason = ReasonCode::UNSPECIFIED_ERROR.value();
                    if matches!(kind, Response::Rec) {
                        refused = Some(*packet_id);
                    }
                }
            }
        }
        (packet.into_packet(), refused)
    }
}

/// Acknowledgements waiting for the session store (PUBACK/PUBREC of a
/// message written for persistent sessions, SUBACK of a stored session), in
/// order; everything after a held one waits behind it.
#[derive(Debug, Default)]
pub(crate) struct HeldAcks {
    acks: std::collections::VecDeque<HeldAck>,
    /// The ticket the store was last asked to wake us for.
    registered: Ticket,
}

impl HeldAcks {
    /// The ticket to ask the store to wake us for, if any: the first
    /// held acknowledgement's (it holds back all the others), and only
    /// when no wake-up is outstanding. One registration per connection at
    /// a time: at high rates most held PUBACKs are released by their
    /// subscribers' acknowledgements long before the store, and a
    /// registration per read would fill the store's waiter list (scanned
    /// per batch) with wake-ups nobody needs.
    pub(crate) fn wake_at(&mut self, durable: Ticket) -> Option<Ticket> {
        if self.registered > durable {
            return None;
        }
        // Even when it became ready since `release_acks` looked: the store
        // then wakes us at once, and the next round releases it.
        let first = self.acks.front()?;
        if (first.interest != 0 || first.durable.is_some()) && first.ticket <= durable {
            // Waiting for the cluster only, which wakes us itself.
            return None;
        }
        self.registered = first.ticket;
        Some(first.ticket)
    }
}

impl<S: crate::session::connection::Transport> Handler<S> {
    /// Acknowledge now, or once `ticket` is durable (and after every
    /// acknowledgement already waiting: they go out in order).
    pub(crate) fn ack(&mut self, ticket: Ticket, packet: Packet) -> Result<(), End> {
        self.ack_gated(ticket, None, packet)
    }

    /// [`Handler::ack`], released early when `gated`'s gate settles.
    pub(crate) fn ack_gated(
        &mut self,
        ticket: Ticket,
        gated: Option<Arc<Message>>,
        packet: Packet,
    ) -> Result<(), End> {
        let holding = self
            .rare
            .as_ref()
            .and_then(|r| r.held.as_ref())
            .is_some_and(|h| !h.acks.is_empty());
        // Ticket 0: nothing was stored for it (a clean session, QoS 0 or
        // persistence off), so only the order can hold it back.
        if !holding
            && (ticket == 0 || ready(ticket, gated.as_deref(), self.broker.persist.durable()))
        {
            return self.send(&packet);
        }
        let held = HeldAck {
            ticket,
            packet: HeldPacket::new(packet),
            gated,
            interest: 0,
            durable: None,
        };
        let acks = self.rare_mut().held.get_or_insert_with(Box::default);
        acks.acks.push_back(held);
        Ok(())
    }

    /// [`Handler::ack`] of a SUBACK that also waits for the cluster's
    /// `interest` ticket: the NATS server has the new subscriptions, so
    /// messages published on other nodes after the SUBACK arrive here.
    pub(crate) fn ack_after_interest(
        &mut self,
        ticket: Ticket,
        interest: u64,
        packet: Packet,
    ) -> Result<(), End> {
        let cluster = self.broker.cluster().map(|c| Arc::clone(&c.interest));
        let Some(cluster) = cluster.filter(|c| interest != 0 && !c.is_confirmed(interest)) else {
            return self.ack(ticket, packet);
        };
        cluster.notify_when_confirmed(interest, &self.wake);
        let acks = self.rare_mut().held.get_or_insert_with(Box::default);
        acks.acks.push_back(HeldAck {
            ticket,
            packet: HeldPacket::new(packet),
            gated: None,
            interest,
            durable: None,
        });
        Ok(())
    }

    /// [`Handler::ack_gated`] of a PUBACK/PUBREC that also waits for
    /// JetStream to store the message (`cluster.durable_qos`), when
    /// `pending` is there.
    pub(crate) fn ack_durable(
        &mut self,
        ticket: Ticket,
        gated: Option<Arc<Message>>,
        pending: Option<Arc<PendingAck>>,
        packet: Packet,
    ) -> Result<(), End> {
        let Some(pending) = pending else {
            return self.ack_gated(ticket, gated, packet);
        };
        pending.notify_when_settled(&self.wake);
        let acks = self.rare_mut().held.get_or_insert_with(Box::default);
        acks.acks.push_back(HeldAck {
            ticket,
            packet: HeldPacket::new(packet),
            gated,
            interest: 0,
            durable: Some(pending),
        });
        // Already settled when NATS is down: no need to wait for a wake-up.
        self.release_acks()
    }

    /// Send the acknowledgements that may go now, in order.
    pub(crate) fn release_acks(&mut self) -> Result<(), End> {
        let Some(mut held) = self.rare.as_mut().and_then(|r| r.held.take()) else {
            return Ok(());
        };
        let durable = self.broker.persist.durable();
        let interest = self.broker.cluster().map(|c| Arc::clone(&c.interest));
        let mut result = Ok(());
        while held
            .acks
            .front()
            .is_some_and(|a| a.ready(durable, interest.as_deref()))
        {
            if let Some(a) = held.acks.pop_front() {
                let (packet, refused) = a.finish(self.version.is_v5());
                if let Some(id) = refused {
                    self.session.state.lock().incoming_qos2.remove(&id);
                }
                if let Err(end) = self.send(&packet) {
                    result = Err(end);
                    break;
                }
            }
        }
        self.rare_mut().held = Some(held);
        result
    }
}
