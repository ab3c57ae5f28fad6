//! Async frame IO over any byte stream (TLS or the admin Unix socket): read one frame with a size
//! bound checked before allocating and a timeout, write one frame.

use std::time::Duration;

use caucus::msg::frame::{self, Frame, FrameError, FrameKind, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Frame IO errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The peer sent nothing for too long.
    #[error("timed out")]
    Timeout,
    /// The frame header is invalid (too large, unknown kind).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The connection failed or closed mid-frame.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame of at most `max` body bytes within `timeout`. `Ok(None)` on a clean close before
/// a new frame starts.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    timeout: Duration,
) -> Result<Option<Frame>, WireError> {
    let fut = async {
        let mut header = [0u8; HEADER_LEN];
        let n = r.read(&mut header[..1]).await?;
        if n == 0 {
            return Ok(None);
        }
        r.read_exact(&mut header[1..]).await?;
        let (kind, len) = frame::parse_header(&header, max)?;
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await?;
        Ok(Some(Frame { kind, body }))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| WireError::Timeout)?
}

/// Writes one frame and flushes.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: FrameKind,
    body: &[u8],
    max: usize,
) -> Result<(), WireError> {
    let header = frame::encode_header(kind, body.len(), max)?;
    w.write_all(&header).await?;
    w.write_all(body).await?;
    w.flush().await?;
    Ok(())
}
