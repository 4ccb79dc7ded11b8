//! A publish that waits for room in the cluster's outbox
//! (`cluster/pacing.rs`): the connection holds the message and its
//! acknowledgement, reads nothing more from the client meanwhile (TCP
//! back-pressure), and sends the PUBACK/PUBREC once the message has its
//! place, or once it stayed local because NATS went down.

use std::sync::Arc;

use tokio::time::Instant;
use warden_codec::Packet;

use crate::cluster::pacing::{Deferred, Placed};
use crate::persist::Ticket;
use crate::session::handler::{End, Handler};
use crate::session::message::Message;

/// The waiting message and what its acknowledgement needs.
#[derive(Debug)]
pub(crate) struct Paced {
    deferred: Box<Deferred>,
    /// The PUBACK/PUBREC (none for QoS 0), with the store ticket and the
    /// gate it waits for after that (`held_acks.rs`).
    ack: Option<(Ticket, Option<Arc<Message>>, Packet)>,
    /// Look again at this instant at the latest (the stall deadline).
    pub(crate) until: Option<Instant>,
}

impl<S: crate::session::connection::Transport> Handler<S> {
    /// Hold `deferred` and its acknowledgement until the message has its
    /// place in the outbox; the packet loop stops reading meanwhile.
    pub(crate) fn hold_for_outbox(
        &mut self,
        deferred: Box<Deferred>,
        ack: Option<(Ticket, Option<Arc<Message>>, Packet)>,
    ) -> Result<(), End> {
        self.rare_mut().paced = Some(Box::new(Paced {
            deferred,
            ack,
            until: None,
        }));
        self.place_paced()
    }

    /// Look for room for the waiting message: once placed (or left local),
    /// acknowledge it, in order behind anything already held.
    pub(crate) fn place_paced(&mut self) -> Result<(), End> {
        let Some(paced) = self.rare.as_mut().and_then(|r| r.paced.as_deref_mut()) else {
            return Ok(());
        };
        let placed = match self.broker.cluster() {
            Some(cluster) => cluster.place(&mut paced.deferred, &self.wake),
            None => Placed::Dropped,
        };
        if let Placed::Wait(at) = placed {
            paced.until = Some(Instant::from_std(at));
            return Ok(());
        }
        let ack = self
            .rare
            .as_mut()
            .and_then(|r| r.paced.take())
            .and_then(|p| p.ack);
        match ack {
            Some((ticket, gate, packet)) => self.ack_gated(ticket, gate, packet),
            None => Ok(()),
        }
    }
}
