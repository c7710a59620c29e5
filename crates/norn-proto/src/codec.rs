//! The codec: bincode 2.0.1 with the standard configuration (little-endian,
//! varint integers) and a byte limit. Everything norn puts on the wire or on
//! disk goes through [`encode`] and [`decode`], so the format can change here
//! and nowhere else.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ProtoError;

/// The most bytes one decode may take as input. Frames and stored records
/// are each smaller than this.
pub const DECODE_LIMIT_BYTES: usize = 64 << 20;

/// The most in-memory bytes one input byte can decode to: a one-byte varint
/// read as a `u128`.
pub const CLAIM_PER_INPUT_BYTE: usize = 16;

/// The smallest input size a decode's limit is computed from.
const DECODE_LIMIT_FLOOR_BYTES: usize = 4 << 10;

fn config<const LIMIT: usize>() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    bincode::serde::encode_into_std_write(value, out, config::<DECODE_LIMIT_BYTES>())
        .map(|_| ())
        .map_err(|e| ProtoError::Encode {
            reason: e.to_string(),
        })
}

/// The encoding of `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ProtoError> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// How many bytes the encoding of `value` takes, without building it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, ProtoError> {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    bincode::serde::encode_into_std_write(value, &mut counter, config::<DECODE_LIMIT_BYTES>())
        .map_err(|e| ProtoError::Encode {
            reason: e.to_string(),
        })?;
    Ok(counter.0)
}

/// Decodes exactly one `T` from all of `bytes`: trailing bytes are an error.
///
/// The byte limit follows the input: [`CLAIM_PER_INPUT_BYTE`] times the next
/// power of two at or above its length (at least 4 KiB). bincode counts the
/// in-memory size of what it decodes against the limit (a one-byte varint
/// claims a whole `u64` or `u128`), so a genuine message claims at most that
/// many bytes per input byte, while a lying length prefix in a small hostile
/// frame cannot make the node allocate more than a small multiple of it. The
/// limit never passes [`DECODE_LIMIT_BYTES`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtoError> {
    if bytes.len() > DECODE_LIMIT_BYTES {
        return Err(ProtoError::FrameTooLarge {
            len: bytes.len(),
            max: DECODE_LIMIT_BYTES,
        });
    }
    let limit = bytes
        .len()
        .max(DECODE_LIMIT_FLOOR_BYTES)
        .next_power_of_two()
        .saturating_mul(CLAIM_PER_INPUT_BYTE);
    match limit {
        0..=65536 => decode_limited::<T, 65536>(bytes),
        65537..=1048576 => decode_limited::<T, 1048576>(bytes),
        1048577..=16777216 => decode_limited::<T, 16777216>(bytes),
        _ => decode_limited::<T, DECODE_LIMIT_BYTES>(bytes),
    }
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T, ProtoError> {
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config::<LIMIT>()).map_err(|e| {
            ProtoError::Decode {
                reason: e.to_string(),
            }
        })?;
    if read != bytes.len() {
        return Err(ProtoError::TrailingBytes {
            trailing: bytes.len() - read,
        });
    }
    Ok(value)
}

/// A causal context as text (hex of its encoding), for headers and the
/// command line. Opaque to users: they hand back what they were given.
pub fn context_to_hex(context: &norn_clock::Context) -> Result<String, ProtoError> {
    Ok(encode(context)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Parses a context given as text by [`context_to_hex`].
pub fn context_from_hex(hex: &str) -> Result<norn_clock::Context, ProtoError> {
    let not_hex = || ProtoError::Decode {
        reason: format!("context {hex:?} is not hex"),
    };
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return Err(not_hex());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| not_hex())?;
    decode(&bytes)
}
