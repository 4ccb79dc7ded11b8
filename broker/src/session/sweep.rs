//! The periodic clean-up of what expired while nobody looked: v5 messages
//! whose expiry interval ran out in offline sessions' queues and among the
//! retained messages. Delivery drops an expired message anyway; the sweep
//! frees its memory and its place in the session store, so a steady
//! workload cannot grow either without bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::persist::Op;
use crate::session::state::Session;
use crate::shutdown::Shutdown;

/// How often the sweep runs.
const EVERY: Duration = Duration::from_secs(60);

/// Sweep every [`EVERY`] until shutdown.
pub async fn run(broker: Arc<Broker>, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.recv() => return,
        }
        let (queued, retained) = sweep(&broker, Instant::now());
        if queued + retained > 0 {
            tracing::debug!(queued, retained, "expired messages removed");
        }
    }
}

/// Remove what expired by `now`; how many queued and retained messages.
pub fn sweep(broker: &Broker, now: Instant) -> (usize, usize) {
    let sessions: Vec<Arc<Session>> = broker.sessions.lock().values().cloned().collect();
    let mut queued = 0;
    for s in sessions {
        let mut st = s.state.lock();
        if st.attached.is_some() {
            // A live connection drops them as it sends.
            continue;
        }
        let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut st.queue)
            .into_iter()
            .partition(|d| !d.msg.is_expired(now));
        for d in &gone {
            st.forget_delivery(&broker.persist, d);
        }
        queued += gone.len();
        st.queue = keep.into();
    }
    let gone = broker.retained.write().remove_where(|m| m.is_expired(now));
    for topic in &gone {
        broker.persist.submit(Op::RemoveRetained {
            topic: String::from(&**topic),
        });
    }
    (queued, gone.len())
}
