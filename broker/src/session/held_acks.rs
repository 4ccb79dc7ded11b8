//! Acknowledgements that wait for the session store: a PUBACK/PUBREC of a
//! message written for persistent sessions (or a SUBACK of a stored
//! session) goes out only once the store reports its ticket durable, and
//! everything after a held acknowledgement waits behind it, so they leave
//! in the order MQTT requires. A QoS 1 PUBACK may leave earlier: once every
//! persistent subscriber it was stored for has acknowledged the message
//! (its [`AckGate`] settled), nothing is owed that a crash could lose.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use warden_codec::Packet;

use crate::persist::Ticket;
use crate::session::handler::{End, Handler};
use crate::session::message::Message;

/// One acknowledgement waiting for the store (or its subscribers).
#[derive(Debug)]
pub(crate) struct HeldAck {
    ticket: Ticket,
    packet: Packet,
    /// Released early when this message's [`AckGate`] settles.
    gated: Option<Arc<Message>>,
}

impl HeldAck {
    fn ready(&self, durable: Ticket) -> bool {
        self.ticket <= durable
            || self
                .gated
                .as_ref()
                .and_then(|m| m.ack_gate.as_ref())
                .is_some_and(|g| g.is_settled())
    }
}

/// Acknowledgements waiting for the session store (PUBACK/PUBREC of a
/// message written for persistent sessions, SUBACK of a stored session), in
/// order; everything after a held one waits behind it.
#[derive(Debug, Default)]
pub(crate) struct HeldAcks {
    acks: std::collections::VecDeque<HeldAck>,
    /// The highest ticket held (what the store is asked to wake us for).
    pub(crate) highest: Ticket,
    /// The ticket the store was last asked to wake us for.
    pub(crate) registered: Ticket,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Handler<S> {
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
        let held = HeldAck {
            ticket,
            packet,
            gated,
        };
        let holding = self.held.as_ref().is_some_and(|h| !h.acks.is_empty());
        // Ticket 0: nothing was stored for it (a clean session, QoS 0 or
        // persistence off), so only the order can hold it back.
        if !holding && (ticket == 0 || held.ready(self.broker.persist.durable())) {
            return self.send(&held.packet);
        }
        let acks = self.held.get_or_insert_with(Box::default);
        acks.highest = acks.highest.max(ticket);
        acks.acks.push_back(held);
        Ok(())
    }

    /// Send the acknowledgements that may go now, in order.
    pub(crate) fn release_acks(&mut self) -> Result<(), End> {
        let Some(mut held) = self.held.take() else {
            return Ok(());
        };
        let durable = self.broker.persist.durable();
        let mut result = Ok(());
        while held.acks.front().is_some_and(|a| a.ready(durable)) {
            if let Some(a) = held.acks.pop_front() {
                if let Err(end) = self.send(&a.packet) {
                    result = Err(end);
                    break;
                }
            }
        }
        self.held = Some(held);
        result
    }
}
