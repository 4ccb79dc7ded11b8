//! Framed packet I/O over one stream: a read buffer fed from the socket and
//! decoded with the codec, and a write buffer that collects packets so a
//! batch goes out in one write.
//!
//! A connection waiting with nothing buffered holds no read buffer (most
//! connections are idle most of the time, and a buffer per waiting
//! connection was a large share of the broker's memory).

use std::future::{poll_fn, Future};
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
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
        }
    }

    /// Decode one packet already in the buffer, if a whole one is there.
    pub fn try_decode(&mut self) -> Result<Option<Packet>, CodecError> {
        warden_codec::decode(&mut self.read_buf, self.version, self.max_packet_size)
    }

    /// Read more bytes from the socket. Cancel safe (the reads are, and
    /// the buffer is only replaced while it holds no data).
    pub async fn fill(&mut self) -> Result<(), ConnectionError> {
        if self.read_buf.is_empty() {
            // Decoded payloads keep their slice of the old allocation alive;
            // the connection lets go of it and starts afresh.
            self.read_buf = BytesMut::new();
            return poll_fn(|cx| self.poll_read_empty(cx)).await;
        }
        if self.read_buf.capacity() - self.read_buf.len() < self.read_hint / 2 {
            self.read_buf.reserve(self.read_hint);
        }
        let spare = self.read_buf.capacity() - self.read_buf.len();
        let n = self.stream.read_buf(&mut self.read_buf).await?;
        if n == 0 {
            return Err(ConnectionError::Closed);
        }
        self.adapt_hint(n, spare);
        Ok(())
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

    /// Write everything queued.
    pub async fn flush(&mut self) -> Result<(), ConnectionError> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            self.write_buf.clear();
            if self.write_buf.capacity() > KEEP_WRITE {
                self.write_buf = BytesMut::new();
            }
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// Queue, flush, and close the write side (best effort: the peer may
    /// already be gone).
    pub async fn send_and_close(&mut self, packet: &Packet) {
        if self.queue(packet).is_ok() {
            let _ = self.flush().await;
        }
        let _ = self.stream.shutdown().await;
    }

    pub async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}
