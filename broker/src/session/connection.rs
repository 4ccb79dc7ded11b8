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
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S, max_packet_size: u32) -> Connection<S> {
        Connection {
            stream,
            read_buf: BytesMut::with_capacity(4 * 1024),
            write_buf: BytesMut::with_capacity(4 * 1024),
            version: None,
            max_packet_size,
        }
    }

    /// Decode one packet already in the buffer, if a whole one is there.
    pub fn try_decode(&mut self) -> Result<Option<Packet>, CodecError> {
        warden_codec::decode(&mut self.read_buf, self.version, self.max_packet_size)
    }

    /// Read more bytes from the socket. Cancel safe (`read_buf` is).
    pub async fn fill(&mut self) -> Result<(), ConnectionError> {
        if self.read_buf.capacity() - self.read_buf.len() < 1024 {
            self.read_buf.reserve(4 * 1024);
        }
        let n = self.stream.read_buf(&mut self.read_buf).await?;
        if n == 0 {
            return Err(ConnectionError::Closed);
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
