//! Sealed records: `[format u8][crc32 u32 LE][body]`, where the CRC32
//! (crc32fast) covers the record's key, the format byte and the body. A key
//! is covered so that a record copied under the wrong key fails too.

use crate::error::{Result, StorageError};

/// The record format this build writes and reads.
pub const RECORD_FORMAT: u8 = 1;
const HEADER_BYTES: usize = 5;

fn checksum(key: &[u8], format: u8, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(key);
    hasher.update(&[format]);
    hasher.update(body);
    hasher.finalize()
}

/// Seals `body` stored under `key`.
pub fn seal(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&checksum(key, RECORD_FORMAT, body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The body of a record read under `key`, once its format and checksum hold.
/// `column` and `show_key` only name the record in the error.
pub fn open<'a>(
    column: &'static str,
    key: &[u8],
    record: &'a [u8],
    show_key: impl FnOnce() -> String,
) -> Result<&'a [u8]> {
    let corrupt = |reason: String| StorageError::Corrupt {
        column,
        key: show_key(),
        reason,
    };
    let Some((header, body)) = record.split_first_chunk::<HEADER_BYTES>() else {
        return Err(corrupt(format!(
            "record of {} bytes is shorter than its header",
            record.len()
        )));
    };
    let format = header[0];
    if format != RECORD_FORMAT {
        return Err(corrupt(format!("unknown record format {format}")));
    }
    let stored = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
    let computed = checksum(key, format, body);
    if stored != computed {
        return Err(corrupt(format!(
            "checksum {stored:08x} stored, {computed:08x} computed"
        )));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_records_open() {
        let record = seal(b"k", b"body");
        assert_eq!(
            open("data", b"k", &record, String::new).expect("intact"),
            b"body"
        );
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let record = seal(b"key", b"some body bytes");
        for bit in 0..record.len() * 8 {
            let mut damaged = record.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let err = open("data", b"key", &damaged, || "key".into()).expect_err("damaged");
            assert!(
                matches!(err, StorageError::Corrupt { column: "data", .. }),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn a_record_under_another_key_is_caught() {
        let record = seal(b"a", b"body");
        assert!(open("data", b"b", &record, String::new).is_err());
    }
}
