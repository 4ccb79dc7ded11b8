//! The durable session store: persistent sessions, their queued and inflight
//! messages, and retained messages, written behind a narrow trait so the
//! session code never sees an engine (and the multi-node work can put a
//! replicated store behind the same seam later).
//!
//! - [`record`]: the stored records, plain serde data with a format version.
//! - [`SessionStore`]: the seam. [`SqliteStore`] (WAL) is the engine in use;
//!   [`FjallStore`] implements the same trait and passes the same tests, kept
//!   for the engine benchmark (docs/architecture.md, "Durability").
//! - [`Persister`]: the handle the broker holds; one writer thread drains a
//!   bounded queue of [`Op`]s, coalesces them, writes one batch, fsyncs per
//!   the mode and then publishes the batch's last [`Ticket`] as durable.
//!
//! It is not the place for session semantics (expiry timers, takeover,
//! policy re-checks): it stores what it is given and hands it back at start.

mod coalesce;
mod expiry;
mod fjall_store;
mod hold_back;
mod keys;
pub mod record;
mod sqlite_store;
mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

pub use expiry::now_ms;
pub use fjall_store::FjallStore;
pub use record::{
    Phase, StoredDelivery, StoredMessage, StoredProps, StoredSession, StoredSubscription,
    StoredWill,
};
pub use sqlite_store::SqliteStore;
pub use writer::{Persister, Ticket, QUEUE_BYTE_BUDGET};

use crate::config::PersistenceMode;

/// One change to the stored state. Ops are applied in submit order; the
/// writer may coalesce ops that cancel out before they reach the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Insert or replace the session record (not its deliveries). Boxed,
    /// like the other large records: ops are moved several times on their
    /// way to the engine (queue, coalescer, hold-back), and at high rates
    /// nearly all of them are the small delivery ops, which should not pay
    /// for copying the largest variant.
    PutSession(Box<StoredSession>),
    /// The session record and all its deliveries.
    RemoveSession {
        client_id: Arc<str>,
    },
    /// A queued message. `seq` is per session, increasing, assigned by the
    /// caller and never reused while the session lives.
    PutDelivery {
        /// Shared with the session (its principal's client id): every
        /// delivery op names its session, and a refcount is cheaper than
        /// a copy per op on the message path.
        client_id: Arc<str>,
        seq: u64,
        /// Boxed: an op is moved several times on its way to the engine,
        /// and most ops are small.
        delivery: Box<StoredDelivery>,
        /// A QoS 1 message for an online subscriber: its acknowledgement
        /// usually follows within milliseconds, so the writer may hold the
        /// write back briefly and drop it with its removal (`hold_back`).
        ack_expected: bool,
    },
    /// The delivery moved into flight, or its QoS 2 phase changed.
    SetInflight {
        client_id: Arc<str>,
        seq: u64,
        packet_id: u16,
        phase: Phase,
    },
    /// Acknowledged, expired or dropped.
    RemoveDelivery {
        client_id: Arc<str>,
        seq: u64,
    },
    PutRetained(Box<StoredMessage>),
    RemoveRetained {
        topic: String,
    },
}

impl Op {
    /// Nobody waits for this op to be durable promptly, so it need not
    /// wake the writer: a put for an online subscriber (held back anyway,
    /// and its publisher is released by the acknowledgement), a removal,
    /// and the first in-flight state of a delivery. A QoS 2 delivery's
    /// move to `AwaitComp` is not: its PUBREL waits for it.
    pub fn is_lazy(&self) -> bool {
        match self {
            Op::PutDelivery { ack_expected, .. } => *ack_expected,
            Op::RemoveDelivery { .. } => true,
            Op::SetInflight { phase, .. } => *phase != Phase::AwaitComp,
            _ => false,
        }
    }
}

/// Everything stored, as handed back at start-up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loaded {
    pub sessions: Vec<LoadedSession>,
    pub retained: Vec<StoredMessage>,
    /// The client ids of the sessions dropped at load, their expiry past
    /// (`expiry::purge`): a cluster node gives up their ownership records.
    pub expired: Vec<Arc<str>>,
}

/// One session and its deliveries, in `seq` order.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedSession {
    pub session: StoredSession,
    pub deliveries: Vec<(u64, StoredDelivery)>,
}

/// The seam between the broker and a storage engine. It speaks of sessions
/// and retained messages only, so another engine, or a store shared by
/// several nodes, can stand behind it.
pub trait SessionStore: Send + Sync + 'static {
    /// Applies one batch atomically. When this returns `Ok`, a process kill
    /// (kill -9) loses none of it; a power cut may, until [`Self::sync`].
    fn apply(&self, batch: &[Op]) -> Result<(), PersistError>;
    /// Makes everything applied so far survive a power cut (fsync).
    fn sync(&self) -> Result<(), PersistError>;
    /// The last call, at a graceful stop: [`Self::sync`], and whatever
    /// makes the next start cheaper (SQLite folds its WAL into the
    /// database).
    fn close(&self) -> Result<(), PersistError> {
        self.sync()
    }
    /// Everything stored, for start-up. Deliveries without a session record
    /// are not returned.
    fn load(&self) -> Result<Loaded, PersistError>;
    /// Bytes the store occupies on disk (for tests and the benchmarks).
    fn disk_bytes(&self) -> u64;
}

/// A shared or boxed store is a store: a caller can keep a handle on the
/// engine the writer thread owns (tests, stats), or pick the engine at run
/// time.
macro_rules! forward_store {
    ($($ptr:ident),*) => {$(
        impl<S: SessionStore + ?Sized> SessionStore for $ptr<S> {
            fn apply(&self, batch: &[Op]) -> Result<(), PersistError> {
                (**self).apply(batch)
            }
            fn sync(&self) -> Result<(), PersistError> {
                (**self).sync()
            }
            fn close(&self) -> Result<(), PersistError> {
                (**self).close()
            }
            fn load(&self) -> Result<Loaded, PersistError> {
                (**self).load()
            }
            fn disk_bytes(&self) -> u64 {
                (**self).disk_bytes()
            }
        }
    )*};
}
forward_store!(Arc, Box);

/// Opens the engine the broker uses in `dir`: SQLite, chosen by the
/// measurements in docs/architecture.md.
pub fn open_store(dir: &Path, mode: PersistenceMode) -> Result<SqliteStore, PersistError> {
    SqliteStore::open(dir, mode)
}

/// Why the store could not read or write.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    #[error("session store engine: {0}")]
    Engine(String),
    #[error("session store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("session store record could not be encoded: {0}")]
    Encode(String),
    #[error("session store record is corrupt: {0}")]
    Corrupt(String),
    #[error("session store record has format version {0}, which this build cannot read")]
    UnknownFormat(u8),
    #[error("session store writer has stopped")]
    WriterGone,
}

impl From<fjall::Error> for PersistError {
    fn from(e: fjall::Error) -> Self {
        PersistError::Engine(e.to_string())
    }
}
