//! Acknowledgements that wait for the session store: a PUBACK/PUBREC of a
//! message written for persistent sessions (or a SUBACK of a stored
//! session) goes out only once the store reports its ticket durable, and
//! everything after a held acknowledgement waits behind it, so they leave
//! in the order MQTT requires.

use tokio::io::{AsyncRead, AsyncWrite};
use warden_codec::Packet;

use crate::persist::Ticket;
use crate::session::handler::{End, Handler};

/// Acknowledgements waiting for the session store (PUBACK/PUBREC of a
/// message written for persistent sessions, SUBACK of a stored session), in
/// order, each with the ticket it waits for; everything after a held one
/// waits behind it.
#[derive(Debug, Default)]
pub(crate) struct HeldAcks {
    pub(crate) acks: std::collections::VecDeque<(Ticket, Packet)>,
    /// The ticket the store was last asked to wake us for.
    pub(crate) registered: Ticket,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Handler<S> {
    /// Acknowledge now, or once `ticket` is durable (and after every
    /// acknowledgement already waiting: they go out in order).
    pub(crate) fn ack(&mut self, ticket: Ticket, packet: Packet) -> Result<(), End> {
        let holding = self.held.as_ref().is_some_and(|h| !h.acks.is_empty());
        // Ticket 0: nothing was stored for it (a clean session, QoS 0 or
        // persistence off), so only the order can hold it back.
        if !holding && (ticket == 0 || ticket <= self.broker.persist.durable()) {
            return self.send(&packet);
        }
        let held = self.held.get_or_insert_with(Box::default);
        let ticket = held.acks.back().map_or(ticket, |(t, _)| ticket.max(*t));
        held.acks.push_back((ticket, packet));
        Ok(())
    }

    /// Send the acknowledgements whose messages are durable now.
    pub(crate) fn release_acks(&mut self) -> Result<(), End> {
        let Some(mut held) = self.held.take() else {
            return Ok(());
        };
        let durable = self.broker.persist.durable();
        let mut result = Ok(());
        while let Some(&(ticket, _)) = held.acks.front() {
            if ticket > durable {
                break;
            }
            if let Some((_, packet)) = held.acks.pop_front() {
                if let Err(end) = self.send(&packet) {
                    result = Err(end);
                    break;
                }
            }
        }
        self.held = Some(held);
        result
    }
}
