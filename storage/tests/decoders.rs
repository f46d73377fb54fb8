//! Every decoder of bytes from outside the process, fed random and adversarial bytes: it
//! returns an error, never panics, and never allocates what a length prefix claims.
//!
//! The adversarial case that aborted a node: a length prefix declaring 2^62 bytes. Here
//! such a prefix is written at every offset of a valid encoding, so every string and
//! container of the format is tried. The bounded run is what CI does; for a longer one:
//! `PROPTEST_CASES=200000 cargo test --release -p gavel-storage --test decoders`.

use gavel_storage::codec::{decode_record, encode_record};
use gavel_storage::snapshot::{decode_snapshot, encode_snapshot};
use gavel_storage::{AuctionBook, AuctionSpec, Command, Entry, IncrementRule, Op, SnapshotMeta};
use openraft::EntryPayload;
use proptest::prelude::*;

/// bincode varint prefix of a u64 (253), then 2^62 little-endian.
const HUGE_LEN: [u8; 9] = [253, 0, 0, 0, 0, 0, 0, 0, 0x40];

fn what() -> String {
    "test".into()
}

fn sample_entry() -> Entry {
    let spec = AuctionSpec {
        seller: "sam".into(),
        title: "Brass lamp".into(),
        starting_price: 1000,
        increment: IncrementRule::Fixed(100),
        reserve_price: Some(1500),
        starts_at_ms: 1,
        ends_at_ms: 100_000,
        soft_close: None,
        buy_now_price: None,
    };
    let batch = vec![
        Command::new(5, Op::CreateAuction { spec, worker: Some(1) }).with_key("key-1"),
        Command::new(
            6,
            Op::PlaceBid {
                auction_id: 1,
                bidder: "ann".into(),
                amount: Some(1000),
                max_amount: Some(2000),
            },
        ),
    ];
    Entry {
        log_id: gavel_storage::log_id(3, 1, 42),
        payload: EntryPayload::Normal(Command::new(7, Op::Batch(batch))),
    }
}

fn sample_book() -> Vec<u8> {
    let mut book = AuctionBook::new();
    if let EntryPayload::Normal(cmd) = sample_entry().payload {
        book.apply(&cmd);
    }
    book.encode()
}

/// Frames `payload` as a record with a correct length and checksum.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_huge_length_prefix_anywhere_in_a_log_record_is_an_error() {
    let record = encode_record(&sample_entry()).unwrap();
    let payload = &record[8..];
    for at in 0..payload.len() {
        let mut bad = payload[..at].to_vec();
        bad.extend_from_slice(&HUGE_LEN);
        bad.extend_from_slice(&payload[at..]);
        // With a valid frame, so that only the decoder stands in the way.
        let _ = decode_record::<Entry>(&frame(&bad), &what);
        let mut overwritten = payload.to_vec();
        for (i, b) in HUGE_LEN.iter().enumerate() {
            if at + i < overwritten.len() {
                overwritten[at + i] = *b;
            }
        }
        let _ = decode_record::<Entry>(&frame(&overwritten), &what);
    }
    assert!(decode_record::<String>(&frame(&HUGE_LEN), &what).is_err());
    assert!(decode_record::<Vec<u64>>(&frame(&HUGE_LEN), &what).is_err());
}

#[test]
fn a_huge_length_prefix_anywhere_in_a_snapshot_payload_is_an_error() {
    let payload = sample_book();
    assert!(AuctionBook::decode(&payload).is_ok());
    for at in 0..payload.len() {
        let mut bad = payload[..at].to_vec();
        bad.extend_from_slice(&HUGE_LEN);
        bad.extend_from_slice(&payload[at..]);
        assert!(AuctionBook::decode(&bad).is_err(), "inserted at {at}");
    }
}

#[test]
fn a_snapshot_header_declaring_a_huge_payload_is_refused() {
    let meta = SnapshotMeta::default();
    let mut file = encode_snapshot(&meta, b"payload").unwrap();
    // payload_len sits 16 bytes before the payload (len u64, payload crc, header crc).
    let at = file.len() - b"payload".len() - 16;
    file[at..at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let err = decode_snapshot(&file, "f.snap").unwrap_err().to_string();
    assert!(err.contains("f.snap"), "{err}");
}

proptest! {
    #[test]
    fn random_bytes_never_panic_a_record_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_record::<Entry>(&bytes, &what);
        let _ = decode_record::<Entry>(&frame(&bytes), &what);
    }

    #[test]
    fn random_bytes_never_panic_the_snapshot_decoders(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_snapshot(&bytes, "random");
        let _ = AuctionBook::decode(&bytes);
    }

    #[test]
    fn mutated_records_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let record = encode_record(&sample_entry()).unwrap();
        let mut payload = record[8..].to_vec();
        for (i, b) in flips {
            let at = i.index(payload.len());
            payload[at] = b;
        }
        let _ = decode_record::<Entry>(&frame(&payload), &what);
    }

    #[test]
    fn mutated_snapshot_payloads_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut payload = sample_book();
        for (i, b) in flips {
            let at = i.index(payload.len());
            payload[at] = b;
        }
        let _ = AuctionBook::decode(&payload);
    }
}
