//! Length-prefixed frames: 4-byte big-endian body length, 1-byte kind, body.
//!
//! [`check`] looks at a buffer and says whether a whole frame is there, enforcing the maximum size
//! *before* anything is allocated; [`parse`] then takes it. An incomplete buffer is an expected
//! state (`Ok(None)`), never an error. The length counts the body only (not the kind byte).

/// Default maximum frame body: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Bytes before the body: 4 length bytes and 1 kind byte.
pub const HEADER_LEN: usize = 5;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A signed JSON envelope (node ↔ node).
    Envelope = 1,
    /// An unsigned JSON request or response (the CA's enrolment API, over server-authenticated TLS;
    /// anything that must be trusted inside it, like a roster or a CRL, is signed separately).
    Plain = 2,
    /// A binary blob chunk: `blob id (16 bytes) ‖ chunk index (8 bytes, BE) ‖ ciphertext`.
    BlobChunk = 3,
    /// Several signed JSON messages under one signature (see [`crate::msg::batch`]).
    Batch = 4,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Envelope),
            2 => Some(Self::Plain),
            3 => Some(Self::BlobChunk),
            4 => Some(Self::Batch),
            _ => None,
        }
    }
}

/// Framing errors. Any of them ends the connection.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The announced body length exceeds the maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// announced length
        len: usize,
        /// the maximum in force
        max: usize,
    },
    /// Unknown kind byte.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the body is.
    pub kind: FrameKind,
    /// The body.
    pub body: Vec<u8>,
}

/// Checks whether `buf` starts with a whole frame. Returns its total length (header + body), or
/// `Ok(None)` if more bytes are needed. Validates the kind and the size limit as soon as the header
/// is there, so an oversized frame is refused before it is buffered.
pub fn check(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    FrameKind::from_u8(buf[4]).ok_or(FrameError::UnknownKind(buf[4]))?;
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    Ok(Some(HEADER_LEN + len))
}

/// Parses one frame from the front of `buf`: `Ok(Some((frame, consumed)))`, or `Ok(None)` if
/// incomplete.
pub fn parse(buf: &[u8], max: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(total) = check(buf, max)? else {
        return Ok(None);
    };
    let kind = FrameKind::from_u8(buf[4]).ok_or(FrameError::UnknownKind(buf[4]))?;
    Ok(Some((
        Frame {
            kind,
            body: buf[HEADER_LEN..total].to_vec(),
        },
        total,
    )))
}

/// Reads just the header: `(kind, body length)`, checked against `max`. For runtimes that read the
/// header first and then exactly `len` bytes.
pub fn parse_header(
    header: &[u8; HEADER_LEN],
    max: usize,
) -> Result<(FrameKind, usize), FrameError> {
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let kind = FrameKind::from_u8(header[4]).ok_or(FrameError::UnknownKind(header[4]))?;
    Ok((kind, len))
}

/// Encodes the header of a frame with a `len`-byte body.
pub fn encode_header(
    kind: FrameKind,
    len: usize,
    max: usize,
) -> Result<[u8; HEADER_LEN], FrameError> {
    if len > max || len > u32::MAX as usize {
        return Err(FrameError::TooLarge { len, max });
    }
    let l = (len as u32).to_be_bytes();
    Ok([l[0], l[1], l[2], l[3], kind as u8])
}

/// Encodes a whole frame.
pub fn encode(kind: FrameKind, body: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&encode_header(kind, body.len(), max)?);
    out.extend_from_slice(body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_incomplete_and_limits() {
        let f = encode(FrameKind::Envelope, b"hello", 16).expect("encode");
        for cut in 0..f.len() {
            assert_eq!(parse(&f[..cut], 16), Ok(None), "cut {cut}");
        }
        let (frame, used) = parse(&f, 16).expect("ok").expect("complete");
        assert_eq!(used, f.len());
        assert_eq!(frame.body, b"hello");
        assert_eq!(frame.kind, FrameKind::Envelope);
        // two frames back to back
        let mut two = f.clone();
        two.extend_from_slice(&encode(FrameKind::Plain, b"", 16).expect("encode"));
        let (_, used) = parse(&two, 16).expect("ok").expect("complete");
        let (second, _) = parse(&two[used..], 16).expect("ok").expect("complete");
        assert_eq!(second.kind, FrameKind::Plain);
        assert!(second.body.is_empty());
    }

    #[test]
    fn oversized_refused_from_header_alone() {
        let header = [0xff, 0xff, 0xff, 0xff, 1];
        assert_eq!(
            check(&header, DEFAULT_MAX_FRAME),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: DEFAULT_MAX_FRAME
            })
        );
        assert!(encode(FrameKind::Plain, &[0; 17], 16).is_err());
    }

    #[test]
    fn garbage_kind_refused() {
        assert_eq!(check(&[0, 0, 0, 0, 9], 16), Err(FrameError::UnknownKind(9)));
        assert_eq!(
            parse_header(&[0, 0, 0, 1, 0], 16),
            Err(FrameError::UnknownKind(0))
        );
    }
}
