//! The framed record: how one value is stored in the sled `log` and `meta` trees.
//!
//! ```text
//! offset  size  field
//! 0       4     len    u32 little-endian: number of payload bytes that follow the header
//! 4       4     crc    u32 little-endian: CRC-32 (IEEE, crc32fast) of the payload bytes
//! 8       len   payload: bincode 2 (serde mode, `bincode_config()`: varint integers)
//! ```
//!
//! Every read checks the length and the checksum before decoding. A record shorter than
//! its header says is *torn* (a write cut short); one whose checksum does not match is
//! *corrupt*. Both are errors naming the record; nothing is ever skipped silently.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{bincode_config, Error, Result};

/// Size of `len` + `crc`.
pub const RECORD_HEADER_LEN: usize = 8;
/// Largest payload we accept on read (a sanity bound against a garbage `len`): log
/// entries stop at `log_store::ENTRY_BYTES_MAX`, meta records are tiny.
pub const RECORD_PAYLOAD_MAX_BYTES: usize = 1024 * 1024;
/// Most bytes decoding one record may allocate (bincode counts strings and containers by
/// their in-memory size; see [`crate::decode_limited`]).
pub const RECORD_DECODE_MAX_BYTES: usize = 4 * RECORD_PAYLOAD_MAX_BYTES;

/// Length of `value` encoded as one framed record, without encoding it into memory.
pub fn encoded_record_len<T: Serialize>(value: &T) -> Result<usize> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, bincode_config())?;
    Ok(RECORD_HEADER_LEN + size.bytes_written)
}

/// Encodes `value` as one framed record.
pub fn encode_record<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![0u8; RECORD_HEADER_LEN];
    bincode::serde::encode_into_std_write(value, &mut out, bincode_config())?;
    let payload_len = out.len() - RECORD_HEADER_LEN;
    let len = u32::try_from(payload_len)
        .map_err(|_| Error::InvalidInput(format!("record of {payload_len} bytes is too large")))?;
    let crc = crc32fast::hash(&out[RECORD_HEADER_LEN..]);
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Checks a framed record and returns its payload. `what` names the record in errors
/// (for example `log record at index 42`).
pub fn check_record<'a>(bytes: &'a [u8], what: &dyn Fn() -> String) -> Result<&'a [u8]> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err(Error::corrupt(
            what(),
            format!(
                "torn record: {} bytes, shorter than the {RECORD_HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let have = bytes.len() - RECORD_HEADER_LEN;
    if len > RECORD_PAYLOAD_MAX_BYTES {
        return Err(Error::corrupt(
            what(),
            format!("length field {len} exceeds the {RECORD_PAYLOAD_MAX_BYTES}-byte limit"),
        ));
    }
    if have < len {
        return Err(Error::corrupt(
            what(),
            format!("torn record: header says {len} payload bytes, only {have} present"),
        ));
    }
    if have > len {
        return Err(Error::corrupt(
            what(),
            format!("header says {len} payload bytes, but {have} present"),
        ));
    }
    let payload = &bytes[RECORD_HEADER_LEN..];
    let actual = crc32fast::hash(payload);
    if actual != crc {
        return Err(Error::corrupt(
            what(),
            format!("checksum mismatch: stored {crc:08x}, computed {actual:08x}"),
        ));
    }
    Ok(payload)
}

/// Checks and decodes a framed record.
pub fn decode_record<T: DeserializeOwned>(bytes: &[u8], what: &dyn Fn() -> String) -> Result<T> {
    let payload = check_record(bytes, what)?;
    decode_exact(payload, what)
}

/// Decodes bincode that must use every byte.
pub fn decode_exact<T: DeserializeOwned>(payload: &[u8], what: &dyn Fn() -> String) -> Result<T> {
    let (value, used) = crate::decode_limited::<T, RECORD_DECODE_MAX_BYTES>(payload)
        .map_err(|e| Error::corrupt(what(), format!("undecodable payload: {e}")))?;
    if used != payload.len() {
        return Err(Error::corrupt(
            what(),
            format!("{} trailing bytes after the payload", payload.len() - used),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what() -> String {
        "test record".to_string()
    }

    #[test]
    fn encoded_record_len_is_the_length_of_the_encoded_record() {
        for value in [String::new(), "x".repeat(300), "é".repeat(70_000)] {
            assert_eq!(
                encoded_record_len(&value).unwrap(),
                encode_record(&value).unwrap().len()
            );
        }
    }

    #[test]
    fn round_trip() {
        let v = (42u64, "bid".to_string());
        let rec = encode_record(&v).unwrap();
        assert_eq!(
            rec.len(),
            RECORD_HEADER_LEN + u32::from_le_bytes(rec[0..4].try_into().unwrap()) as usize
        );
        let back: (u64, String) = decode_record(&rec, &what).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let rec = encode_record(&(7u64, "alice".to_string(), 12_345u64)).unwrap();
        for byte in 0..rec.len() {
            for bit in 0..8 {
                let mut bad = rec.clone();
                bad[byte] ^= 1 << bit;
                let err = decode_record::<(u64, String, u64)>(&bad, &what).unwrap_err();
                assert!(matches!(err, Error::Corrupt { .. }), "byte {byte} bit {bit}: {err}");
            }
        }
    }

    #[test]
    fn torn_records_are_detected() {
        let rec = encode_record(&"a longer payload for truncation".to_string()).unwrap();
        for cut in 0..rec.len() {
            let err = decode_record::<String>(&rec[..cut], &what).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("torn") || msg.contains("checksum"), "cut at {cut}: {msg}");
            assert!(msg.contains("test record"), "error names the record: {msg}");
        }
    }
}
