//! The node RPC decoder fed random and adversarial bytes: an error, never a panic or an
//! allocation of what a length prefix claims (a 2^62-byte string aborted a node).
//! Longer run: `PROPTEST_CASES=200000 cargo test --release -p gavel-raft --test decoders`.

use gavel_raft::rpc::decode_rpc;
use gavel_raft::rpc::SnapshotTransfer;
use gavel_storage::{Command, Entry, Op, TypeConfig};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{EntryPayload, Vote};
use proptest::prelude::*;

const HUGE_LEN: [u8; 9] = [253, 0, 0, 0, 0, 0, 0, 0, 0x40];

fn append_request() -> Vec<u8> {
    let entries: Vec<Entry> = (1..=3)
        .map(|i| Entry {
            log_id: gavel_storage::log_id(2, 1, i),
            payload: EntryPayload::Normal(Command::new(
                i,
                Op::PlaceBid {
                    auction_id: 1,
                    bidder: "ann".into(),
                    amount: Some(1000 + i),
                    max_amount: None,
                },
            )),
        })
        .collect();
    let req = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(gavel_storage::log_id(2, 1, 0)),
        entries,
        leader_commit: None,
    };
    bincode::serde::encode_to_vec(&req, gavel_storage::bincode_config()).unwrap()
}

#[test]
fn a_huge_length_prefix_anywhere_in_an_rpc_body_is_an_error() {
    let body = append_request();
    assert!(decode_rpc::<AppendEntriesRequest<TypeConfig>>(&body).is_ok());
    for at in 0..body.len() {
        let mut bad = body[..at].to_vec();
        bad.extend_from_slice(&HUGE_LEN);
        bad.extend_from_slice(&body[at..]);
        let _ = decode_rpc::<AppendEntriesRequest<TypeConfig>>(&bad);
        let _ = decode_rpc::<SnapshotTransfer>(&bad);
    }
    assert!(decode_rpc::<String>(&HUGE_LEN).is_err());
    assert!(decode_rpc::<SnapshotTransfer>(&HUGE_LEN).is_err());
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_rpc_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_rpc::<AppendEntriesRequest<TypeConfig>>(&bytes);
        let _ = decode_rpc::<VoteRequest<TypeConfig>>(&bytes);
        let _ = decode_rpc::<SnapshotTransfer>(&bytes);
    }

    #[test]
    fn mutated_rpc_bodies_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut body = append_request();
        for (i, b) in flips {
            let at = i.index(body.len());
            body[at] = b;
        }
        let _ = decode_rpc::<AppendEntriesRequest<TypeConfig>>(&body);
    }
}
