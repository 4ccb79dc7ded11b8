//! The only place a policy [`Decision`] becomes wire behaviour.
//!
//! The session and the router call one function per decision point
//! (DESIGN.md §2) and never read rules themselves. Each function asks the
//! client's compiled policy, counts the verdict, writes the audit line for a
//! denial, and returns what to put on the wire for that protocol version:
//! CONNACK codes, SUBACK codes, PUBACK/PUBREC codes, or "do not deliver".

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use serde::Serialize;
use warden_codec::ProtocolVersion;
use warden_policy::{Action, CompiledPolicy, Decision, QoS};

use crate::config::OnDeny;
use crate::observe::audit::{Audit, DenyRecord};
use crate::observe::stats::Counts;

mod denied;
mod memo;

pub use denied::DeniedLog;
pub use memo::DecisionMemo;

/// CONNACK and SUBACK/PUBACK codes used by the decision points.
pub mod codes {
    pub const V3_SERVER_UNAVAILABLE: u8 = 0x03;
    pub const V3_BAD_CREDENTIALS: u8 = 0x04;
    pub const V3_NOT_AUTHORIZED: u8 = 0x05;
    pub const V3_SUBACK_FAILURE: u8 = 0x80;
    pub const V5_BAD_CREDENTIALS: u8 = 0x86;
    pub const V5_NOT_AUTHORIZED: u8 = 0x87;
    pub const V5_SERVER_UNAVAILABLE: u8 = 0x88;
}

/// Who is asking, for the audit line.
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub peer: Option<std::net::SocketAddr>,
}

/// What to do with a PUBLISH after the `publish` check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishVerdict {
    /// Route it.
    Allow,
    /// Do not route it. QoS 1/2 are still acknowledged with `ack_code`
    /// (0x87 for v5, 0x00 for v3, where no failure code exists).
    Drop { ack_code: u8 },
    /// `on_deny: disconnect`: close the connection (v5 DISCONNECT 0x87).
    Disconnect,
}

/// Decision counters, one pair per decision point. Exposed for metrics.
#[derive(Debug, Default, Serialize)]
pub struct DecisionCounters {
    pub connect_allow: AtomicU64,
    pub connect_deny: AtomicU64,
    pub subscribe_allow: AtomicU64,
    pub subscribe_deny: AtomicU64,
    pub publish_allow: AtomicU64,
    pub publish_deny: AtomicU64,
    pub receive_allow: AtomicU64,
    pub receive_deny: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

const ON_DENY_IGNORE: u8 = 0;
const ON_DENY_DISCONNECT: u8 = 1;

fn on_deny_byte(on_deny: OnDeny) -> u8 {
    match on_deny {
        OnDeny::Ignore => ON_DENY_IGNORE,
        OnDeny::Disconnect => ON_DENY_DISCONNECT,
    }
}

/// Turns decisions into wire behaviour; one per broker.
#[derive(Debug)]
pub struct Authorizer {
    /// An [`OnDeny`] as a byte: SIGHUP changes it while connections run.
    on_deny: AtomicU8,
    pub counters: DecisionCounters,
    /// Where every deny (and, sampled, allows) is recorded.
    pub audit: Arc<Audit>,
    /// Denies by the rule that decided (0: none matched), for the metrics'
    /// top rules. Counted on the deny path only, which already audits.
    pub deny_rules: Counts<u64>,
}

fn not_authorized(version: ProtocolVersion) -> u8 {
    match version {
        ProtocolVersion::V5 => codes::V5_NOT_AUTHORIZED,
        _ => codes::V3_NOT_AUTHORIZED,
    }
}

/// CONNACK code for failed authentication (unknown user or wrong password:
/// the same code, so a client cannot tell which).
pub fn bad_credentials(version: ProtocolVersion) -> u8 {
    match version {
        ProtocolVersion::V5 => codes::V5_BAD_CREDENTIALS,
        _ => codes::V3_BAD_CREDENTIALS,
    }
}

/// CONNACK code for "not authorized".
pub fn connack_not_authorized(version: ProtocolVersion) -> u8 {
    not_authorized(version)
}

/// CONNACK code when the store cannot answer: fail closed.
pub fn server_unavailable(version: ProtocolVersion) -> u8 {
    match version {
        ProtocolVersion::V5 => codes::V5_SERVER_UNAVAILABLE,
        _ => codes::V3_SERVER_UNAVAILABLE,
    }
}

fn deny_record(
    who: Who<'_>,
    action: &'static str,
    object: &str,
    rule: Option<u64>,
    reason: String,
) -> DenyRecord {
    DenyRecord {
        ts: crate::observe::audit::timestamp_ms(),
        username: who.username.map(str::to_owned),
        client_id: who.client_id.to_owned(),
        peer: who.peer.map(|p| p.to_string()),
        action,
        topic: object.to_owned(),
        rule,
        reason,
    }
}

/// The verdict logged for a write under `$SYS/`.
const SYS_VERDICT: &str = "deny ($SYS/ is written only by the broker)";

/// `$SYS/` belongs to the broker: no client writes there, whatever its
/// rules say and superusers included (rules still decide who reads it).
pub fn is_broker_topic(topic: &str) -> bool {
    topic
        .strip_prefix("$SYS")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl Authorizer {
    fn audit(&self, who: Who<'_>, action: &'static str, object: &str, decision: &Decision) {
        tracing::info!(
            target: "warden::audit",
            client_id = who.client_id,
            username = who.username,
            action,
            object,
            verdict = %decision,
            "denied"
        );
        self.record(who, action, object, decision);
    }

    /// Count a denial and write it to the audit log (not the process log).
    fn record(&self, who: Who<'_>, action: &'static str, object: &str, decision: &Decision) {
        let (rule, reason) = match decision {
            Decision::Deny { reason, rule } => (rule.map(|r| r.0), reason.to_string()),
            _ => (None, decision.to_string()),
        };
        self.deny_rules.inc(rule.unwrap_or(0));
        self.audit
            .deny(deny_record(who, action, object, rule, reason));
    }

    /// A sampled allow for the audit log (only when sampling is on).
    #[inline]
    fn allowed(&self, who: Who<'_>, action: &'static str, object: &str, decision: &Decision) {
        if self.audit.samples_allows() {
            let rule = match decision {
                Decision::Allow { rule, .. } => rule.map(|r| r.0),
                _ => None,
            };
            self.audit
                .allow(who.username, who.client_id, action, object, rule);
        }
    }

    fn refuse_broker_topic(&self, who: Who<'_>, action: &'static str, topic: &str) {
        tracing::info!(
            target: "warden::audit",
            client_id = who.client_id,
            username = who.username,
            action,
            object = topic,
            verdict = SYS_VERDICT,
            "denied"
        );
        self.record_broker_topic(who, action, topic);
    }

    /// [`Self::refuse_broker_topic`] without the process log line.
    fn record_broker_topic(&self, who: Who<'_>, action: &'static str, topic: &str) {
        bump(&self.counters.publish_deny);
        self.audit.deny(deny_record(
            who,
            action,
            topic,
            None,
            "$SYS/ is written only by the broker".into(),
        ));
    }

    pub fn new(on_deny: OnDeny, audit: Arc<Audit>) -> Authorizer {
        Authorizer {
            on_deny: AtomicU8::new(on_deny_byte(on_deny)),
            counters: DecisionCounters::default(),
            audit,
            deny_rules: Counts::default(),
        }
    }

    /// What a denied publish does from now on (config reload).
    pub fn set_on_deny(&self, on_deny: OnDeny) {
        self.on_deny.store(on_deny_byte(on_deny), Ordering::Relaxed);
    }

    pub fn on_deny(&self) -> OnDeny {
        match self.on_deny.load(Ordering::Relaxed) {
            ON_DENY_DISCONNECT => OnDeny::Disconnect,
            _ => OnDeny::Ignore,
        }
    }

    /// The `connect` rule (client-id patterns). Err is the CONNACK code.
    pub fn connect(
        &self,
        who: Who<'_>,
        policy: &dyn CompiledPolicy,
        version: ProtocolVersion,
    ) -> Result<(), u8> {
        let decision = policy.decide(&Action::Connect);
        if decision.is_allow() {
            bump(&self.counters.connect_allow);
            self.allowed(who, "connect", who.client_id, &decision);
            Ok(())
        } else {
            bump(&self.counters.connect_deny);
            self.audit(who, "connect", who.client_id, &decision);
            Err(not_authorized(version))
        }
    }

    /// The will at CONNECT: a `publish` on the will topic. Err is the CONNACK code.
    pub fn will_at_connect(
        &self,
        who: Who<'_>,
        policy: &dyn CompiledPolicy,
        topic: &str,
        qos: QoS,
        retain: bool,
        version: ProtocolVersion,
    ) -> Result<(), u8> {
        if self.will_allowed(who, policy, topic, qos, retain) {
            Ok(())
        } else {
            Err(not_authorized(version))
        }
    }

    /// The will again when it fires: the publisher's rights may have changed.
    pub fn will_allowed(
        &self,
        who: Who<'_>,
        policy: &dyn CompiledPolicy,
        topic: &str,
        qos: QoS,
        retain: bool,
    ) -> bool {
        if is_broker_topic(topic) {
            self.refuse_broker_topic(who, "will", topic);
            return false;
        }
        let decision = policy.decide(&Action::Publish { topic, qos, retain });
        if decision.is_allow() {
            bump(&self.counters.publish_allow);
            true
        } else {
            bump(&self.counters.publish_deny);
            self.audit(who, "will", topic, &decision);
            false
        }
    }

    /// One SUBSCRIBE filter (without any `$share/g/` prefix). Returns the
    /// SUBACK code: the granted QoS, or the failure code for the version.
    pub fn subscribe(
        &self,
        who: Who<'_>,
        policy: &dyn CompiledPolicy,
        filter: &str,
        qos: QoS,
        version: ProtocolVersion,
    ) -> Result<QoS, u8> {
        let decision = policy.decide(&Action::Subscribe { filter, qos });
        match decision {
            Decision::Allow { qos, .. } => {
                bump(&self.counters.subscribe_allow);
                self.allowed(who, "subscribe", filter, &decision);
                Ok(qos)
            }
            _ => {
                bump(&self.counters.subscribe_deny);
                self.audit(who, "subscribe", filter, &decision);
                Err(match version {
                    ProtocolVersion::V5 => codes::V5_NOT_AUTHORIZED,
                    _ => codes::V3_SUBACK_FAILURE,
                })
            }
        }
    }

    /// Whether a subscription still holds after a policy change (no audit:
    /// the caller logs the removal).
    pub fn subscription_still_allowed(
        &self,
        policy: &dyn CompiledPolicy,
        filter: &str,
        qos: QoS,
    ) -> bool {
        policy.decide(&Action::Subscribe { filter, qos }).is_allow()
    }

    /// A PUBLISH from the client. A denial is logged through `denied`, the
    /// connection's own [`DeniedLog`] (made here at the first one).
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &self,
        who: Who<'_>,
        policy: &Arc<dyn CompiledPolicy>,
        memo: &mut DecisionMemo,
        denied: &mut Option<Box<DeniedLog>>,
        topic: &Arc<str>,
        qos: QoS,
        retain: bool,
        version: ProtocolVersion,
    ) -> PublishVerdict {
        let action = Action::Publish { topic, qos, retain };
        let decision = memo.decide(policy, topic, qos, retain, action);
        let broker_topic = is_broker_topic(topic);
        if decision.is_allow() && !broker_topic {
            bump(&self.counters.publish_allow);
            self.allowed(who, "publish", topic, &decision);
            return PublishVerdict::Allow;
        }
        if broker_topic {
            self.record_broker_topic(who, "publish", topic);
        } else {
            bump(&self.counters.publish_deny);
            self.record(who, "publish", topic, &decision);
        }
        match denied {
            Some(log) => log.note(who, topic),
            None if broker_topic => {
                *denied = Some(Box::new(DeniedLog::first(
                    who,
                    "publish",
                    topic,
                    &SYS_VERDICT,
                )));
            }
            None => *denied = Some(Box::new(DeniedLog::first(who, "publish", topic, &decision))),
        }
        match self.on_deny() {
            OnDeny::Disconnect => PublishVerdict::Disconnect,
            _ => PublishVerdict::Drop {
                ack_code: match version {
                    ProtocolVersion::V5 => codes::V5_NOT_AUTHORIZED,
                    _ => 0,
                },
            },
        }
    }

    /// Every delivery: may this subscriber receive this message? Returns the
    /// QoS to deliver at (a rule's `max_qos` may lower it), or None.
    pub fn receive(
        &self,
        who: Who<'_>,
        policy: &Arc<dyn CompiledPolicy>,
        memo: &mut DecisionMemo,
        topic: &Arc<str>,
        qos: QoS,
        retain: bool,
    ) -> Option<QoS> {
        let action = Action::Receive { topic, qos, retain };
        let decision = memo.decide(policy, topic, qos, retain, action);
        match decision {
            Decision::Allow { qos, .. } => {
                bump(&self.counters.receive_allow);
                Some(qos)
            }
            _ => {
                bump(&self.counters.receive_deny);
                self.audit(who, "receive", topic, &decision);
                None
            }
        }
    }
}
