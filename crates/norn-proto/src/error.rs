//! Codec and frame errors. None of them changes any state: a bad frame is
//! refused whole.

/// Why bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is shorter than its header")]
    FrameTooShort { len: usize },
    #[error("frame format version {version} is not supported (this node speaks {supported})")]
    UnsupportedVersion { version: u8, supported: u8 },
    #[error("{trailing} trailing bytes after the payload")]
    TrailingBytes { trailing: usize },
    #[error("payload does not decode: {reason}")]
    Decode { reason: String },
    #[error("payload does not encode: {reason}")]
    Encode { reason: String },
}
