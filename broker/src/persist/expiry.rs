//! What is dropped at start-up: sessions whose expiry ran out while the
//! broker was down, and messages whose v5 expiry passed. They are deleted
//! from the store and never handed to the broker.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Loaded, Op};

/// Wall clock now, in unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn expired(expires_at_ms: Option<u64>, now: u64) -> bool {
    expires_at_ms.is_some_and(|at| at <= now)
}

/// Removes from `loaded` what has expired at `now` and returns the ops that
/// delete it from the store.
///
/// A session that expired with a will still to publish is handed over
/// without its messages: the broker publishes the will and then removes it.
/// A session that was online when the broker stopped (`disconnected_at_ms`
/// = `None`) is kept: the broker starts its expiry clock when it loads it.
/// A message already in flight is kept even if expired, as MQTT 5 §3.3.2.3.3
/// only drops copies whose onward delivery has not started.
pub fn purge(loaded: &mut Loaded, now: u64) -> Vec<Op> {
    let mut ops = Vec::new();
    loaded.sessions.retain_mut(|ls| {
        let s = &ls.session;
        let gone = s.expiry_secs != u32::MAX
            && s.disconnected_at_ms
                .is_some_and(|d| d.saturating_add(u64::from(s.expiry_secs) * 1000) <= now);
        if gone {
            if s.will.is_some() {
                // Its will is still owed (the session ended while the
                // broker was down): the broker publishes it at start, then
                // removes the session.
                for (seq, _) in ls.deliveries.drain(..) {
                    ops.push(Op::RemoveDelivery {
                        client_id: Arc::from(s.client_id.as_str()),
                        seq,
                    });
                }
                return true;
            }
            ops.push(Op::RemoveSession {
                client_id: Arc::from(s.client_id.as_str()),
            });
            return false;
        }
        ls.deliveries.retain(|(seq, d)| {
            let drop = d.inflight.is_none() && expired(d.msg.expires_at_ms, now);
            if drop {
                ops.push(Op::RemoveDelivery {
                    client_id: Arc::from(s.client_id.as_str()),
                    seq: *seq,
                });
            }
            !drop
        });
        true
    });
    loaded.retained.retain(|m| {
        let drop = expired(m.expires_at_ms, now);
        if drop {
            ops.push(Op::RemoveRetained {
                topic: m.topic.to_string(),
            });
        }
        !drop
    });
    ops
}
