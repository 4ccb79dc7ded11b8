//! Framed packet I/O over one stream: a read buffer fed from the socket and
//! decoded with the codec, and a write buffer that collects packets so a
//! batch goes out in one write.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use warden_codec::{CodecError, Packet, ProtocolVersion};

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
    /// when they do not, so a busy publisher reads in large chunks and an
    /// idle connection holds a small buffer.
    read_hint: usize,
}

const MIN_READ: usize = 512;
const MAX_READ: usize = 64 * 1024;
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

    /// Read more bytes from the socket. Cancel safe (`read_buf` is, and
    /// the buffer is only replaced while it holds no data).
    pub async fn fill(&mut self) -> Result<(), ConnectionError> {
        if self.read_buf.is_empty() {
            // Decoded payloads keep their slice of the old allocation alive;
            // the connection starts afresh with a buffer of the current size.
            self.read_buf = BytesMut::with_capacity(self.read_hint);
        } else if self.read_buf.capacity() - self.read_buf.len() < self.read_hint / 2 {
            self.read_buf.reserve(self.read_hint);
        }
        let spare = self.read_buf.capacity() - self.read_buf.len();
        let n = self.stream.read_buf(&mut self.read_buf).await?;
        if n == 0 {
            return Err(ConnectionError::Closed);
        }
        if n >= spare {
            self.read_hint = (self.read_hint * 2).min(MAX_READ);
        } else if n < self.read_hint / 4 {
            self.read_hint = (self.read_hint / 2).max(MIN_READ);
        }
        Ok(())
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
