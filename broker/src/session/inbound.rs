//! Client → server messages: PUBLISH (topic alias, the `publish` check,
//! routing, acknowledgement) and the QoS 2 release (PUBREL → PUBCOMP).

use std::sync::Arc;
use std::time::Instant;

use warden_codec::{Packet, Properties, PubResp, Publish, ReasonCode};
use warden_policy::QoS;

use crate::authorize::{PublishVerdict, Who};
use crate::session::handler::{End, Handler};
use crate::session::message::{AckGate, Message};

/// What the acknowledgement of a routed PUBLISH waits for.
struct RoutedPublish {
    /// The session store ticket.
    ticket: crate::persist::Ticket,
    /// The message, when the wait may end early through its [`AckGate`].
    gated: Option<Arc<Message>>,
    /// The JetStream acknowledgement (`cluster.durable_qos`).
    pending: Option<Arc<crate::cluster::durable::PendingAck>>,
    /// The message, when it waits for room in the cluster's outbox.
    deferred: Option<Box<crate::cluster::pacing::Deferred>>,
}

fn violation(code: ReasonCode) -> End {
    End::Violation(code.value())
}

fn ack(packet_id: u16, reason: u8) -> PubResp {
    PubResp {
        packet_id,
        reason,
        properties: Properties::default(),
    }
}

impl<S: crate::session::connection::Transport> Handler<S> {
    /// The topic of a PUBLISH after applying (and learning) a topic alias.
    fn resolve_topic(&mut self, p: &mut Publish) -> Result<String, End> {
        let Some(alias) = p.properties.topic_alias else {
            if p.topic.is_empty() {
                return Err(violation(ReasonCode::PROTOCOL_ERROR));
            }
            return Ok(std::mem::take(&mut p.topic));
        };
        if alias == 0 || alias > self.topic_alias_max {
            return Err(violation(ReasonCode::TOPIC_ALIAS_INVALID));
        }
        if p.topic.is_empty() {
            return self
                .rare
                .as_ref()
                .and_then(|r| r.aliases.as_ref())
                .and_then(|aliases| aliases.get(&alias))
                .cloned()
                .ok_or(violation(ReasonCode::PROTOCOL_ERROR));
        }
        self.rare_mut()
            .aliases
            .get_or_insert_default()
            .insert(alias, p.topic.clone());
        Ok(std::mem::take(&mut p.topic))
    }

    /// `limits.publish_rate`: false when this PUBLISH is over the rate.
    fn within_publish_rate(&mut self) -> bool {
        let Some(rate) = self.config.limits.guard.publish_rate else {
            return true;
        };
        let now = Instant::now();
        let bucket = self
            .rare_mut()
            .publish_bucket
            .get_or_insert_with(|| Box::new(crate::defence::rate::Bucket::full(rate.get(), now)));
        if bucket.take(rate.get(), now) {
            return true;
        }
        self.broker
            .defence
            .refused
            .inc(crate::defence::limit::PUBLISH_RATE);
        tracing::info!(client_id = %self.session.client_id, rate = rate.get(), "publish rate exceeded; disconnecting");
        false
    }

    pub(crate) fn on_publish(&mut self, mut p: Publish) -> Result<(), End> {
        if !self.within_publish_rate() {
            return Err(violation(ReasonCode::MESSAGE_RATE_TOO_HIGH));
        }
        let name = self.resolve_topic(&mut p)?;
        let topic: Arc<str> = match self.publish_memo.shared_topic(&name) {
            Some(shared) => shared,
            None => Arc::from(name),
        };
        if p.retain && !self.config.limits.retain_available {
            return Err(violation(ReasonCode::RETAIN_NOT_SUPPORTED));
        }
        let qos = QoS::from_u8(p.qos).ok_or(violation(ReasonCode::MALFORMED_PACKET))?;
        self.broker.stats.flow.add(
            crate::observe::stats::Flow::MessagesIn,
            qos,
            1,
            p.payload.len() as u64,
        );
        let packet_id = p.packet_id.unwrap_or(0);
        // The peer is read here rather than kept by the connection: the
        // packet loop's size is watched (server.rs).
        let (policy, peer) = {
            let st = self.session.state.lock();
            if qos == QoS::ExactlyOnce {
                if st.incoming_qos2.contains(&packet_id) {
                    // A resent QoS 2 PUBLISH we already routed: acknowledge only.
                    drop(st);
                    return self.send(&Packet::PubRec(ack(packet_id, 0)));
                }
                let max = usize::from(self.config.limits.receive_maximum.get());
                if st.incoming_qos2.len() >= max {
                    drop(st);
                    self.broker
                        .defence
                        .refused
                        .inc(crate::defence::limit::RECEIVE_MAXIMUM);
                    return Err(violation(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED));
                }
            }
            (Arc::clone(&st.policy), st.principal.peer)
        };
        let who = Who {
            client_id: &self.session.client_id,
            username: self.session.owner.username(),
            peer,
        };
        // The denial log lives in `rare`: taken out for the decision and
        // put back only when there is one (the allowed path allocates none).
        let mut denied = self.rare.as_mut().and_then(|r| r.denied.take());
        let verdict = self.broker.authz.publish(
            who,
            &policy,
            &mut self.publish_memo,
            &mut denied,
            &topic,
            qos,
            p.retain,
            self.version,
        );
        if denied.is_some() {
            self.rare.get_or_insert_with(Box::default).denied = denied;
        }
        let (code, mut ticket, gate, pending, deferred) = match verdict {
            PublishVerdict::Allow => {
                let r = self.route(topic, qos, p);
                (0, r.ticket, r.gated, r.pending, r.deferred)
            }
            PublishVerdict::Drop { ack_code } => (ack_code, 0, None, None, None),
            PublishVerdict::Disconnect => return Err(violation(ReasonCode::NOT_AUTHORIZED)),
        };
        match qos {
            QoS::AtMostOnce => match deferred {
                Some(d) => self.hold_for_outbox(d, None),
                None => Ok(()),
            },
            QoS::AtLeastOnce => {
                let packet = Packet::PubAck(ack(packet_id, code));
                match deferred {
                    // The cluster's outbox is full: the PUBACK waits until
                    // the message has its place (`paced.rs`).
                    Some(d) => self.hold_for_outbox(d, Some((ticket, gate, packet))),
                    None => self.ack_durable(ticket, gate, pending, packet),
                }
            }
            QoS::ExactlyOnce => {
                if code < 0x80 {
                    self.session.state.lock().incoming_qos2.insert(packet_id);
                    // A restart must still know the id when PUBREL comes.
                    ticket = ticket.max(self.write_record());
                }
                let packet = Packet::PubRec(ack(packet_id, code));
                match deferred {
                    Some(d) => self.hold_for_outbox(d, Some((ticket, None, packet))),
                    None => self.ack_durable(ticket, None, pending, packet),
                }
            }
        }
    }

    /// Hand an authorized PUBLISH to the router.
    fn route(&mut self, topic: Arc<str>, qos: QoS, p: Publish) -> RoutedPublish {
        // Only a QoS 1 PUBACK is released by the subscribers: a retained
        // message must be on disk as the retained one, and a PUBREC also
        // waits for the session's inbound QoS 2 state.
        let gated = qos == QoS::AtLeastOnce && !p.retain && self.broker.persist.enabled();
        let msg = Message {
            topic,
            payload: p.payload,
            qos,
            retain: p.retain,
            properties: Message::forwarded_properties(&p.properties),
            // The clock is read only for a message that expires.
            expires_at: p
                .properties
                .message_expiry_interval
                .and_then(|secs| Message::expiry_from(Some(secs), Instant::now())),
            origin: Arc::clone(&self.session.client_id),
            ack_gate: gated.then(|| AckGate::new(Arc::clone(&self.wake))),
        };
        let msg = Arc::new(msg);
        // Empty here (no packet is read while a subscriber is congested),
        // and allocated only when one is.
        let mut congested = Vec::new();
        let published =
            self.broker
                .publish_pending(Arc::clone(&msg), Some(&self.session), &mut congested);
        if !congested.is_empty() {
            self.rare_mut().congested.append(&mut congested);
        }
        let ticket = published.routed.ticket;
        RoutedPublish {
            ticket,
            gated: (gated && ticket != 0).then_some(msg),
            pending: published.pending,
            deferred: published.deferred,
        }
    }

    pub(crate) fn on_pubrel(&mut self, packet_id: u16) -> Result<(), End> {
        let known = self.session.state.lock().incoming_qos2.remove(&packet_id);
        if known {
            self.write_record();
        }
        let reason = if known || !self.version.is_v5() {
            0
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND.value()
        };
        self.ack(0, Packet::PubComp(ack(packet_id, reason)))
    }
}
