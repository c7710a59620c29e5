//! Frames: `[length: u32 BE][version: u8][request id: u64 BE][payload]`.
//!
//! `length` counts the bytes after itself (version, request id, payload). A
//! reader checks it against its configured maximum before it allocates or
//! waits for the rest.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::error::ProtoError;

/// The frame format this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes before the payload: length, version, request id.
pub const FRAME_HEADER_BYTES: usize = 4 + 1 + 8;
/// Bytes counted by the length field before the payload.
const LENGTH_COVERED_HEADER: usize = FRAME_HEADER_BYTES - 4;

/// Encodes `message` as one frame for `request_id`.
pub fn encode_frame<T: Serialize + ?Sized>(
    request_id: u64,
    message: &T,
) -> Result<Vec<u8>, ProtoError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0; 4]);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&request_id.to_be_bytes());
    codec::encode_into(message, &mut out)?;
    let len = u32::try_from(out.len() - 4).map_err(|_| ProtoError::FrameTooLarge {
        len: out.len(),
        max: u32::MAX as usize,
    })?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// One decoded frame, borrowing its payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub request_id: u64,
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Decodes the payload as exactly one `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ProtoError> {
        codec::decode(self.payload)
    }
}

/// Splits a byte stream into frames no larger than a maximum.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames whose length field exceeds `max_frame_bytes`
    /// (capped at the codec's decode limit).
    pub fn new(max_frame_bytes: usize) -> FrameDecoder {
        FrameDecoder {
            max_frame_bytes: max_frame_bytes.min(codec::DECODE_LIMIT_BYTES),
        }
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// How many more bytes the frame starting at `buf` needs, once its length
    /// is known: `Ok(None)` until 4 bytes are there.
    pub fn frame_len(&self, buf: &[u8]) -> Result<Option<usize>, ProtoError> {
        let Some(prefix) = buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > self.max_frame_bytes {
            return Err(ProtoError::FrameTooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        if len < LENGTH_COVERED_HEADER {
            return Err(ProtoError::FrameTooShort { len });
        }
        Ok(Some(4 + len))
    }

    /// The first frame of `buf` and how many bytes it took, or `Ok(None)` if
    /// `buf` does not hold a whole frame yet.
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>, ProtoError> {
        let Some(total) = self.frame_len(buf)? else {
            return Ok(None);
        };
        let Some(frame) = buf.get(..total) else {
            return Ok(None);
        };
        let version = frame[4];
        if version != FORMAT_VERSION {
            return Err(ProtoError::UnsupportedVersion {
                version,
                supported: FORMAT_VERSION,
            });
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&frame[5..FRAME_HEADER_BYTES]);
        let frame = Frame {
            request_id: u64::from_be_bytes(id),
            payload: &frame[FRAME_HEADER_BYTES..],
        };
        Ok(Some((frame, total)))
    }
}
