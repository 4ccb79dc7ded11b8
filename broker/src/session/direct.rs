//! Write-through: a publisher's task writes a delivery straight into an
//! idle subscriber's socket, instead of queueing it and waking the
//! subscriber's task to write it.
//!
//! At a low rate every delivery otherwise costs a wake-up of the
//! subscriber's task, and the publisher's PUBACK went out before the
//! delivery (the subscriber's task runs after the publisher's turn): the
//! publisher's client was woken first and the delivery came one write
//! later. Mosquitto writes the delivery first, in the same loop iteration.
//! With write-through the delivery leaves before the PUBACK is written.
//!
//! Who may write to a socket is kept under the session lock, in the
//! subscriber's [`Output`] (in its `Attachment`):
//! - `Handler`: the connection's own task writes; publishers queue.
//! - `Armed(fd)`: the connection's task has written everything it had,
//!   its queue is empty, and it is waiting; a publisher holding the lock
//!   may write a delivery to the socket, which stays armed when it took
//!   the whole packet (the task is not woken). One delivery per publisher
//!   turn ([`PER_TURN`]): any other delivery of the turn is queued, which
//!   hands the socket back (`Handler`) and wakes the task, so a burst goes
//!   out in batches as before and a busy publisher makes at most one
//!   system call per turn more.
//! - `Left`: the socket took only part of a delivery; the rest waits in
//!   [`Leftovers`] and the connection's task writes it before anything else.
//!
//! Only plain TCP sockets are written through (a TLS or WebSocket stream
//! has state only its task may touch), only for clients that use no
//! outbound topic aliases (the table is the task's), and never to the
//! publisher's own session (its task is running and may hold output).
//!
//! The socket is written by its descriptor. It stays valid while the
//! session says `Armed`: the connection's task leaves `Armed` (under the
//! lock, [`take_output`]) before it writes a goodbye or drops its stream
//! (`Handler`'s `Drop`), and a new or ended attachment carries no
//! descriptor.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use parking_lot::Mutex;

use crate::authorize::Authorizer;
use crate::observe::stats::Flow;
use crate::persist::Persister;
use crate::session::connection::{Connection, Transport};
use crate::session::handler::Handler;
use crate::session::outbound::Outbound;
use crate::session::state::{ConnId, SessionId, SessionState};

/// Deliveries one publisher turn (one batch of packets read) may write
/// through; the rest of the turn's deliveries are queued, so a burst is
/// written in batches by the subscribers' tasks and costs a publisher at
/// most one system call per turn more.
const PER_TURN: u8 = 1;

/// Who writes to a connection's socket (see the module docs). Four bytes:
/// it lives in every session's attachment, whose size class counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output(i32);

impl Output {
    /// The connection's task.
    pub const HANDLER: Output = Output(-1);
    /// The connection's task, which first writes what a publisher left
    /// ([`Leftovers`]).
    const LEFT: Output = Output(-2);

    /// Publishers may write deliveries to this socket, one per turn.
    pub fn armed(fd: RawFd) -> Output {
        debug_assert!(fd >= 0);
        Output(fd.max(0))
    }

    fn fd(self) -> Option<RawFd> {
        (self.0 >= 0).then_some(self.0)
    }

    pub fn is_left(self) -> bool {
        self == Output::LEFT
    }
}

/// The rest of deliveries the socket did not take whole, by connection:
/// rare (a socket with no room while its task was idle), so one map for
/// the broker rather than a field in every session.
#[derive(Debug, Default)]
pub struct Leftovers {
    left: Mutex<HashMap<ConnId, Vec<u8>>>,
    /// Entries in `left`: a connection that ends looks here without the
    /// lock when there are none (nearly always).
    count: AtomicUsize,
}

impl Leftovers {
    /// What was left for `conn`, to be written before anything else.
    pub fn take(&self, conn: ConnId) -> Option<Vec<u8>> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut left = self.left.lock();
        let rest = left.remove(&conn);
        self.count.store(left.len(), Ordering::Release);
        rest
    }

    fn put(&self, conn: ConnId, rest: &[u8]) {
        let mut left = self.left.lock();
        left.entry(conn).or_default().extend_from_slice(rest);
        self.count.store(left.len(), Ordering::Release);
    }
}

thread_local! {
    /// The publisher whose packets this thread is handling, and how many
    /// deliveries it may still write through this turn.
    static TURN: Cell<Option<(SessionId, u8)>> = const { Cell::new(None) };
    /// The encoding buffer of write-through deliveries.
    static BUF: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
    /// The batch `fill_batch` fills, reused so a write-through does not
    /// allocate one.
    static ONE: std::cell::RefCell<Vec<Outbound>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run one publisher turn with write-through allowed (the packet loop's
/// handling of what it read).
pub fn turn<R>(publisher: SessionId, f: impl FnOnce() -> R) -> R {
    /// Ends the turn however `f` returns (a panic is caught by the runtime,
    /// and the thread goes on to other tasks).
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            TURN.set(None);
        }
    }
    TURN.set(Some((publisher, PER_TURN)));
    let _end = End;
    f()
}

/// Take one write-through from this turn's allowance, unless `target` is
/// the publisher itself or no turn is running.
fn take_allowance(target: SessionId) -> bool {
    match TURN.get() {
        Some((publisher, left)) if left > 0 && publisher != target => {
            TURN.set(Some((publisher, left - 1)));
            true
        }
        _ => false,
    }
}

/// What the publisher side needs besides the session and what
/// [`Session::offer`](crate::session::state::Session::offer) is given anyway.
pub struct WriteThrough<'a> {
    pub stats: &'a crate::observe::Stats,
    pub leftovers: &'a Leftovers,
}

/// Called under the subscriber's session lock right after a delivery was
/// queued. Writes it to the socket when the subscriber is armed, this is
/// the only delivery queued and the turn has allowance left; then the
/// socket stays armed and true says the task need not be woken. Otherwise
/// the delivery stays queued and an armed socket goes back to its task,
/// which the caller wakes (as it does when a write left a rest).
pub fn offer(
    st: &mut SessionState,
    target: SessionId,
    (authz, persist): (&Authorizer, &Persister),
    ctx: &WriteThrough<'_>,
) -> bool {
    let Some(att) = st.attached.as_mut() else {
        return false;
    };
    let Some(fd) = att.output.fd() else {
        return false;
    };
    att.output = Output::HANDLER;
    let (conn, version) = (att.id, att.protocol);
    if st.queue.len() != 1 || st.kicked.is_some() || !take_allowance(target) {
        return false;
    }
    // The queue holds this one delivery: at most one comes out.
    let taken = ONE.with_borrow_mut(|out| {
        crate::session::outbound::fill_batch(st, out, authz, persist, version);
        out.pop()
    });
    let Some(o) = taken else {
        // Expired, over the client's maximum packet size, or no room in
        // the window: nothing to write.
        return false;
    };
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        if let Err(err) = warden_codec::encode_publish(&o.view(), version, buf) {
            // Only an impossible PUBLISH fails here (a QoS above 2, DUP on
            // QoS 0, a body past 256 MB): the message came in within the
            // packet size limit and the queue checked the client's.
            tracing::error!(error = %err, "write-through: delivery not encodable; dropped");
            return false;
        }
        let n = send(fd, buf);
        let whole = n == buf.len();
        if let Some(att) = st.attached.as_mut() {
            att.output = if whole {
                // Still idle: the next delivery may be written through too
                // (by another turn: one per turn).
                Output::armed(fd)
            } else {
                ctx.leftovers.put(conn, &buf[n..]);
                Output::LEFT
            };
        }
        let d = o.delivery();
        ctx.stats
            .flow
            .add(Flow::MessagesOut, d.qos, 1, d.msg.payload.len() as u64);
        ctx.stats.written_through.fetch_add(1, Ordering::Relaxed);
        whole
    })
}

/// Write `bytes` to the socket `fd` without waiting; how many it took (0
/// on any error: the connection's task meets the error itself).
fn send(fd: RawFd, bytes: &[u8]) -> usize {
    // SAFETY: `fd` comes from an `Armed` output read under the session
    // lock, which the caller still holds; the connection's task leaves
    // `Armed` under that lock before it closes or drops its socket (module
    // docs), so the descriptor is open and is that connection's. The
    // stream is never dropped here (`ManuallyDrop`): it does not own it.
    let stream = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    // Non-blocking (tokio set it on the socket); `send` with MSG_NOSIGNAL.
    (&*stream).write(bytes).unwrap_or(0)
}

/// Take the socket back from publishers (under the session lock), with
/// whatever a write-through left unwritten, before the connection's task
/// writes to it.
pub(crate) fn take_output<S: Transport>(
    conn: &mut Connection<S>,
    conn_id: ConnId,
    leftovers: &Leftovers,
    st: &mut SessionState,
) {
    let Some(att) = st.attached.as_mut().filter(|a| a.id == conn_id) else {
        return;
    };
    let was = std::mem::replace(&mut att.output, Output::HANDLER);
    if was.is_left() {
        if let Some(rest) = leftovers.take(conn_id) {
            conn.prepend_output(&rest);
        }
    }
}

/// Let publishers write to the socket `fd` (under the session lock): when
/// the task has nothing queued for it, the session queue is empty and the
/// connection still owns the session.
pub(crate) fn arm<S: Transport>(
    conn: &Connection<S>,
    fd: Option<RawFd>,
    conn_id: ConnId,
    st: &mut SessionState,
) {
    let Some(fd) = fd else {
        return;
    };
    if conn.wants_write() || !st.queue.is_empty() || st.kicked.is_some() {
        return;
    }
    if let Some(att) = st.attached.as_mut().filter(|a| a.id == conn_id) {
        if att.output == Output::HANDLER {
            att.output = Output::armed(fd);
        }
    }
}

impl<S: Transport> Handler<S> {
    /// The socket publishers may write to while this connection is idle:
    /// plain TCP, and no outbound topic aliases (the table is this task's).
    pub(crate) fn direct_fd(&self) -> Option<RawFd> {
        if self.alias_out_max > 0 {
            return None;
        }
        self.conn.plain_fd()
    }

    /// After a turn's output went out whole: arm, when it can be.
    pub(crate) fn arm_if_idle(&mut self) {
        let fd = self.direct_fd();
        if fd.is_none() || self.conn.wants_write() {
            return;
        }
        let mut st = self.session.state.lock();
        arm(&self.conn, fd, self.conn_id, &mut st);
    }

    /// Before the goodbye and before the socket is dropped: publishers no
    /// longer write to it.
    pub(crate) fn disarm(&mut self) {
        if self.direct_fd().is_none() {
            return;
        }
        let mut st = self.session.state.lock();
        take_output(
            &mut self.conn,
            self.conn_id,
            &self.broker.leftovers,
            &mut st,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_is_armed_only_with_a_descriptor() {
        assert_eq!(Output::armed(7).fd(), Some(7));
        assert_eq!(Output::armed(0).fd(), Some(0));
        assert_eq!(Output::HANDLER.fd(), None);
        assert_eq!(Output::LEFT.fd(), None);
        assert!(Output::LEFT.is_left() && !Output::HANDLER.is_left());
    }

    #[test]
    fn leftovers_keep_their_order_and_are_taken_once() {
        let left = Leftovers::default();
        assert_eq!(left.take(1), None);
        left.put(1, b"ab");
        left.put(2, b"x");
        left.put(1, b"cd");
        assert_eq!(left.take(1).as_deref(), Some(&b"abcd"[..]));
        assert_eq!(left.take(1), None);
        assert_eq!(left.take(2).as_deref(), Some(&b"x"[..]));
        assert_eq!(left.count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_turn_allows_its_write_throughs_never_to_the_publisher() {
        assert!(!take_allowance(2), "outside a turn");
        turn(1, || {
            assert!(!take_allowance(1), "the publisher's own session");
            for _ in 0..PER_TURN {
                assert!(take_allowance(2));
            }
            assert!(!take_allowance(2), "the turn's allowance is spent");
        });
        assert!(!take_allowance(2), "the turn ended");
        let caught = std::panic::catch_unwind(|| turn(1, || panic!("in a turn")));
        assert!(caught.is_err());
        assert!(!take_allowance(2), "a panic ends the turn too");
    }
}
