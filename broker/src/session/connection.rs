//! Framed packet I/O over one stream: a read buffer fed from the socket and
//! decoded with the codec, and a write buffer that collects packets so a
//! batch goes out in one write.
//!
//! A connection waiting with nothing buffered holds no read buffer (most
//! connections are idle most of the time, and a buffer per waiting
//! connection was a large share of the broker's memory).
//!
//! Writing is split so it never blocks the connection's control path: the
//! packet loop writes what the socket takes now ([`Connection::try_write`])
//! and waits for the rest inside its `select!` ([`Connection::write_pending`])
//! beside reads, wake-ups, timers and shutdown. Only the last goodbye
//! ([`Connection::send_and_close`]) waits on the socket, and its caller
//! bounds it with a timeout.

use std::future::{poll_fn, Future};
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use warden_codec::{CodecError, Packet, ProtocolVersion, PublishView};

/// Errors reading or writing packets.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    #[error("connection closed by peer")]
    Closed,
}

/// A stream a connection runs over. Only a plain TCP stream can be written
/// by another task through its descriptor (write-through, `direct.rs`);
/// TLS and WebSocket streams keep state only their task may touch.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// The socket, when this is a plain TCP stream.
    fn plain_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// What [`Connection::io`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    Read,
    Written,
}

/// A stream with its buffers.
pub struct Connection<S> {
    stream: S,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Known after CONNECT; decides the wire format of everything else.
    pub version: Option<ProtocolVersion>,
    /// Largest packet we accept (our Maximum Packet Size).
    pub max_packet_size: u32,
    /// How much to read at once: grows while reads fill the buffer, shrinks
    /// when they do not, so a busy publisher reads in large chunks and a
    /// quiet connection in small ones.
    read_hint: usize,
    /// Everything was written but the stream (TLS) may still hold bytes.
    needs_flush: bool,
    /// Bytes handed to the stream so far: progress for stall detection.
    written: u64,
}

const MIN_READ: usize = 512;
const MAX_READ: usize = 64 * 1024;
/// The stack buffer of a read with nothing buffered: large enough that a
/// wake-up with a few packets is one read, small enough to be free on the
/// stack (it lives only while the read is polled, never in the future).
const FIRST_READ: usize = 2048;
/// A write buffer grown past this by a burst is freed after the flush.
const KEEP_WRITE: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S, max_packet_size: u32) -> Connection<S> {
        Connection {
            stream,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            version: None,
            max_packet_size,
            read_hint: MIN_READ,
            needs_flush: false,
            written: 0,
        }
    }

    /// Decode one packet already in the buffer, if a whole one is there.
    pub fn try_decode(&mut self) -> Result<Option<Packet>, CodecError> {
        warden_codec::decode(&mut self.read_buf, self.version, self.max_packet_size)
    }

    /// Read more bytes from the socket. Cancel safe (the reads are, and
    /// the buffer is only replaced while it holds no data).
    pub async fn fill(&mut self) -> Result<(), ConnectionError> {
        poll_fn(|cx| self.poll_fill(cx)).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectionError>> {
        if self.read_buf.is_empty() {
            // Decoded payloads keep their slice of the old allocation alive;
            // the connection lets go of it and starts afresh. Even with no
            // room left (the last packet took all of it), an empty buffer
            // split off a shared one still holds that allocation: an idle
            // connection kept its CONNECT's bytes that way.
            self.read_buf = BytesMut::new();
            return self.poll_read_empty(cx);
        }
        if self.read_buf.capacity() - self.read_buf.len() < self.read_hint / 2 {
            self.read_buf.reserve(self.read_hint);
        }
        let spare = self.read_buf.capacity() - self.read_buf.len();
        let n = ready!(pin!(self.stream.read_buf(&mut self.read_buf)).poll(cx))?;
        if n == 0 {
            return Poll::Ready(Err(ConnectionError::Closed));
        }
        self.adapt_hint(n, spare);
        Poll::Ready(Ok(()))
    }

    /// Ready at the first of: bytes read (when `read`), or everything
    /// queued written. Cancel safe, like its two halves; polled beside the
    /// connection's other sources in one future (`handler.rs`).
    pub fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        read: bool,
    ) -> Poll<Result<Io, ConnectionError>> {
        if self.wants_write() {
            if let Poll::Ready(res) = self.poll_write_pending(cx) {
                return Poll::Ready(res.map(|()| Io::Written));
            }
        }
        if read {
            if let Poll::Ready(res) = self.poll_fill(cx) {
                return Poll::Ready(res.map(|()| Io::Read));
            }
        }
        Poll::Pending
    }

    /// A read with nothing buffered, which never waits holding a buffer. A
    /// busy connection (its reads have grown) reads straight into a buffer
    /// of the current size and lets it go if nothing is there yet; a quiet
    /// one reads onto the stack and allocates only for what arrived.
    fn poll_read_empty(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectionError>> {
        if self.read_hint > MIN_READ {
            self.read_buf.reserve(self.read_hint);
            let spare = self.read_buf.capacity();
            let read = pin!(self.stream.read_buf(&mut self.read_buf)).poll(cx);
            let Poll::Ready(read) = read else {
                self.read_buf = BytesMut::new();
                return Poll::Pending;
            };
            return Poll::Ready(match read {
                Ok(0) => Err(ConnectionError::Closed),
                Ok(n) => {
                    self.adapt_hint(n, spare);
                    Ok(())
                }
                Err(err) => Err(err.into()),
            });
        }
        let mut stack = [MaybeUninit::<u8>::uninit(); FIRST_READ];
        let mut first = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(&mut self.stream).poll_read(cx, &mut first))?;
        let got = first.filled();
        if got.is_empty() {
            return Poll::Ready(Err(ConnectionError::Closed));
        }
        if got.len() < FIRST_READ {
            self.read_buf = BytesMut::from(got);
            return Poll::Ready(Ok(()));
        }
        // The stack filled up: more is likely waiting, and this connection
        // is no longer quiet.
        let room = self.read_hint;
        self.read_buf = BytesMut::with_capacity(FIRST_READ + room);
        self.read_buf.extend_from_slice(got);
        self.read_hint = (self.read_hint * 2).min(MAX_READ);
        // An error or the end of the stream here waits for the next fill:
        // the bytes already read come first.
        let more = pin!(self.stream.read_buf(&mut self.read_buf)).poll(cx);
        if let Poll::Ready(Ok(n)) = more {
            self.adapt_hint(n, room);
        }
        Poll::Ready(Ok(()))
    }

    /// Grow the read size while reads fill the room they had, shrink it
    /// when they use little of it.
    fn adapt_hint(&mut self, n: usize, room: usize) {
        if n >= room {
            self.read_hint = (self.read_hint * 2).min(MAX_READ);
        } else if n < self.read_hint / 4 {
            self.read_hint = (self.read_hint / 2).max(MIN_READ);
        }
    }

    /// Read until one whole packet is decoded.
    pub async fn read_packet(&mut self) -> Result<Packet, ConnectionError> {
        loop {
            if let Some(packet) = self.try_decode()? {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }

    /// Queue a packet for the next flush.
    pub fn queue(&mut self, packet: &Packet) -> Result<(), CodecError> {
        let version = self.version.unwrap_or(ProtocolVersion::V311);
        warden_codec::encode(packet, version, &mut self.write_buf)
    }

    /// Queue a PUBLISH given by its borrowed parts for the next flush.
    pub fn queue_publish(&mut self, publish: &PublishView<'_>) -> Result<(), CodecError> {
        let version = self.version.unwrap_or(ProtocolVersion::V311);
        warden_codec::encode_publish(publish, version, &mut self.write_buf)
    }

    pub fn pending_bytes(&self) -> usize {
        self.write_buf.len()
    }

    /// Whether anything queued still has to reach the socket.
    pub fn wants_write(&self) -> bool {
        !self.write_buf.is_empty() || self.needs_flush
    }

    /// Total bytes handed to the stream: unchanged between two looks means
    /// the peer took nothing.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Write as much as the stream takes, then flush it; Ready once all of
    /// it is out. State lives in `self`, so a Pending poll can be dropped
    /// and resumed later (cancel safe).
    fn poll_write_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectionError>> {
        while !self.write_buf.is_empty() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &self.write_buf))?;
            if n == 0 {
                return Poll::Ready(Err(ConnectionError::Closed));
            }
            self.write_buf.advance(n);
            self.written += n as u64;
            self.needs_flush = true;
        }
        if self.write_buf.capacity() > KEEP_WRITE {
            self.write_buf = BytesMut::new();
        }
        if self.needs_flush {
            ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
            self.needs_flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Wait until everything queued is written. Cancel safe: for a
    /// `select!` branch beside reads, wake-ups and timers.
    pub async fn write_pending(&mut self) -> Result<(), ConnectionError> {
        poll_fn(|cx| self.poll_write_pending(cx)).await
    }

    /// Write what the socket takes right now, without waiting. None: some
    /// is left for [`Connection::write_pending`].
    pub fn try_write(&mut self) -> Option<Result<(), ConnectionError>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_write_pending(&mut cx) {
            Poll::Ready(res) => Some(res),
            Poll::Pending => None,
        }
    }

    /// Write everything queued (before CONNACK success and at the end;
    /// the packet loop uses `try_write` and `write_pending`).
    pub async fn flush(&mut self) -> Result<(), ConnectionError> {
        self.write_pending().await?;
        // A stream may buffer even with nothing queued here (TLS).
        self.stream.flush().await?;
        Ok(())
    }

    /// Put bytes before everything queued: the rest of a delivery another
    /// task began to write to this socket (`direct.rs`).
    pub fn prepend_output(&mut self, first: &[u8]) {
        let mut buf = BytesMut::with_capacity(first.len() + self.write_buf.len());
        buf.extend_from_slice(first);
        buf.extend_from_slice(&self.write_buf);
        self.write_buf = buf;
    }

    /// Forget output the peer will never read (it stopped reading).
    pub fn discard_output(&mut self) {
        self.write_buf = BytesMut::new();
        self.needs_flush = false;
    }

    /// Queue, flush, and close the write side (best effort: the peer may
    /// already be gone).
    pub async fn send_and_close(&mut self, packet: &Packet) {
        if self.queue(packet).is_ok() {
            let _ = self.flush().await;
        }
        let _ = self.stream.shutdown().await;
    }

    /// Read and drop input until the peer closes, fails, or `max_bytes`
    /// were read (the linger after an error DISCONNECT, `linger.rs`; the
    /// caller bounds the time). Holds no buffer: each read lands on the
    /// stack while it is polled.
    pub async fn discard_input(&mut self, max_bytes: usize) {
        self.read_buf = BytesMut::new();
        let mut left = max_bytes;
        poll_fn(|cx| loop {
            let mut stack = [MaybeUninit::<u8>::uninit(); FIRST_READ];
            let mut buf = ReadBuf::uninit(&mut stack);
            match ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => {
                    left = left.saturating_sub(buf.filled().len());
                    if left == 0 {
                        return Poll::Ready(());
                    }
                }
                _ => return Poll::Ready(()),
            }
        })
        .await;
    }

    pub async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

impl<S: Transport> Connection<S> {
    /// The socket, when the stream is plain TCP.
    pub fn plain_fd(&self) -> Option<std::os::fd::RawFd> {
        self.stream.plain_fd()
    }
}
