//! SUBSCRIBE and UNSUBSCRIBE: the `subscribe` check per filter, the router
//! update, SUBACK/UNSUBACK, and retained messages for new subscriptions
//! (each one through the `receive` check).

use std::sync::Arc;

use warden_codec::{Packet, Properties, ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe};
use warden_policy::{QoS, SubscriptionFilter};

use crate::authorize::Who;
use crate::router::SubOptions;
use crate::session::handler::{End, Handler};
use crate::session::message::Message;

/// A granted subscription whose retained messages must be sent.
struct RetainedRequest {
    filter: String,
    qos: QoS,
    sub_id: Option<u32>,
}

impl<S: crate::session::connection::Transport> Handler<S> {
    fn invalid_filter_code(&self) -> u8 {
        if self.version.is_v5() {
            ReasonCode::TOPIC_FILTER_INVALID.value()
        } else {
            0x80
        }
    }

    /// SUBACK code for a subscription over `limits.max_subscriptions`.
    fn quota_exceeded_code(&self) -> u8 {
        if self.version.is_v5() {
            ReasonCode::QUOTA_EXCEEDED.value()
        } else {
            0x80
        }
    }

    pub(crate) fn on_subscribe(&mut self, sub: Subscribe) -> Result<(), End> {
        let sub_id = sub.properties.subscription_identifiers.first().copied();
        let (policy, peer) = {
            let st = self.session.state.lock();
            (Arc::clone(&st.policy), st.principal.peer)
        };
        let mut codes = Vec::with_capacity(sub.filters.len());
        let mut retained = Vec::new();
        for f in &sub.filters {
            let Ok(parsed) = SubscriptionFilter::parse(&f.filter) else {
                codes.push(self.invalid_filter_code());
                continue;
            };
            let group = parsed.share_group.as_deref();
            if group.is_some() && f.no_local && self.version.is_v5() {
                // MQTT 5 §3.8.3.1: No Local on a shared subscription.
                return Err(End::Violation(ReasonCode::PROTOCOL_ERROR.value()));
            }
            let requested = QoS::from_u8(f.qos).unwrap_or(QoS::AtMostOnce);
            let who = Who {
                client_id: &self.session.client_id,
                username: self.session.owner.username(),
                peer,
            };
            let filter = parsed.filter.as_str();
            match self
                .broker
                .authz
                .subscribe(who, &*policy, filter, requested, self.version)
            {
                Ok(granted) => {
                    let opts = SubOptions {
                        qos: granted.as_u8(),
                        no_local: f.no_local,
                        retain_as_published: f.retain_as_published,
                        retain_handling: f.retain_handling,
                        subscription_id: sub_id,
                    };
                    let max = self.config.limits.guard.max_subscriptions;
                    let replaced = {
                        let mut router = self.broker.router.write();
                        // Under the router lock (lock order: router, then
                        // state): a session discarded or taken over since
                        // gets no new entries.
                        let st = self.session.state.lock();
                        if !st.is_attached_to(self.conn_id) {
                            return Err(self.lost_ownership(st.kicked));
                        }
                        drop(st);
                        let full = max.is_some_and(|max| {
                            router.count_of(&self.session) >= max.get()
                                && !router.holds(filter, group, &self.session)
                        });
                        if full {
                            None
                        } else {
                            Some(router.subscribe(filter, group, self.session.clone(), opts))
                        }
                    };
                    let Some(replaced) = replaced else {
                        self.broker
                            .defence
                            .refused
                            .inc(crate::defence::limit::SUBSCRIPTIONS);
                        codes.push(self.quota_exceeded_code());
                        continue;
                    };
                    codes.push(granted.as_u8());
                    // Shared subscriptions never get retained messages
                    // (MQTT 5 §4.8.2); retain handling 1 only for new ones.
                    let wants = match f.retain_handling {
                        0 => true,
                        1 => !replaced,
                        _ => false,
                    };
                    if group.is_none() && wants {
                        retained.push(RetainedRequest {
                            filter: filter.to_owned(),
                            qos: granted,
                            sub_id,
                        });
                    }
                }
                Err(code) => codes.push(code),
            }
        }
        // The SUBACK waits until the subscription is in the session store
        // and, on a cluster node, until NATS has the new interest.
        let ticket = self.write_record();
        let interest = self.broker.cluster().map_or(0, |c| c.interest_ticket());
        self.ack_after_interest(
            ticket,
            interest,
            Packet::SubAck(SubAck {
                packet_id: sub.packet_id,
                codes,
                properties: Properties::default(),
            }),
        )?;
        for req in retained {
            self.send_retained(&req);
        }
        Ok(())
    }

    /// Queue the retained messages matching a new subscription. Each passes
    /// the `receive` check in `Session::offer`.
    fn send_retained(&mut self, req: &RetainedRequest) {
        let mut found: Vec<(Arc<str>, Arc<Message>)> = Vec::new();
        self.broker
            .retained
            .read()
            .matching(&req.filter, &mut found);
        let sub_ids: Vec<u32> = req.sub_id.into_iter().collect();
        let now = std::time::Instant::now();
        for (_, msg) in found {
            if msg.is_expired(now) {
                continue;
            }
            let qos = msg.qos.min(req.qos);
            self.session.offer(
                &self.broker.authz,
                &self.broker.persist,
                &msg,
                qos,
                true,
                &sub_ids,
                None,
            );
        }
    }

    pub(crate) fn on_unsubscribe(&mut self, unsub: Unsubscribe) -> Result<(), End> {
        let mut codes = Vec::with_capacity(unsub.filters.len());
        for filter in &unsub.filters {
            let code = match SubscriptionFilter::parse(filter) {
                Ok(parsed) => {
                    let removed = self.broker.router.write().unsubscribe(
                        parsed.filter.as_str(),
                        parsed.share_group.as_deref(),
                        &self.session,
                    );
                    if removed {
                        0
                    } else {
                        ReasonCode::NO_SUBSCRIPTION_EXISTED.value()
                    }
                }
                Err(_) => ReasonCode::TOPIC_FILTER_INVALID.value(),
            };
            codes.push(code);
        }
        if !self.version.is_v5() {
            codes.clear();
        }
        let ticket = self.write_record();
        self.ack(
            ticket,
            Packet::UnsubAck(UnsubAck {
                packet_id: unsub.packet_id,
                codes,
                properties: Properties::default(),
            }),
        )
    }
}
