//! Rules of `Housekeeping`: what is archived and when, what the book keeps of it, and
//! what is dropped.

use super::*;
use crate::archive::{decode_payload, payload_header, EMPTY_DIGEST};
use crate::book::idempotency::{client_id, fingerprint, key_digest, Idempotency};
use crate::types::{AuctionSpec, IncrementRule};

const DAY_MS: TimestampMs = 24 * 3600 * 1000;

fn spec(ends_at_ms: TimestampMs) -> AuctionSpec {
    AuctionSpec {
        seller: "sam".into(),
        title: "lamp".into(),
        starting_price: 100,
        increment: IncrementRule::Fixed(10),
        reserve_price: None,
        starts_at_ms: 1_000,
        ends_at_ms,
        soft_close: None,
        buy_now_price: None,
    }
}

fn apply(book: &mut AuctionBook, ts: TimestampMs, op: Op) -> Response {
    book.apply(&Command::new(ts, op))
}

fn housekeeping(book: &mut AuctionBook, ts: TimestampMs, cutoff: TimestampMs, max: u32) -> Response {
    apply(
        book,
        ts,
        Op::Housekeeping {
            archive_closed_before_ms: cutoff,
            archive_max: max,
        },
    )
}

/// Auctions 1..=4 ending at 10 s, 20 s, 30 s, 40 s; 1..=3 closed at their ends (1 with a
/// bid), 4 still open; 2 has a UDP subscriber.
fn book() -> AuctionBook {
    let mut book = AuctionBook::new();
    for end in [10_000, 20_000, 30_000, 40_000] {
        apply(
            &mut book,
            1_000,
            Op::CreateAuction {
                spec: spec(end),
                worker: None,
            },
        );
    }
    apply(
        &mut book,
        1_500,
        Op::PlaceBid {
            auction_id: 1,
            bidder: "ann".into(),
            amount: Some(100),
            max_amount: None,
        },
    );
    apply(
        &mut book,
        1_600,
        Op::Subscribe {
            auction_id: 2,
            addr: "127.0.0.1:9".into(),
            ttl_secs: 3600,
        },
    );
    for (id, at) in [(1, 10_000), (2, 20_000), (3, 30_000)] {
        apply(&mut book, at, Op::CloseAuction { auction_id: id });
    }
    book
}

#[test]
fn auctions_closed_before_the_cutoff_move_out_in_id_order_up_to_the_limit() {
    let mut book = book();
    let hash_before = book.state_hash();
    // Closed at or before 25 s: auctions 1 and 2; at most one per command.
    let r = housekeeping(&mut book, 50_000, 25_000, 1);
    assert!(
        matches!(
            r,
            Response::Housekept {
                archived: 1,
                more: true,
                subscriptions_dropped: 1,
                ..
            }
        ),
        "{r:?}: auction 2 has ended, so its subscriber goes"
    );
    let out = book.take_archived();
    assert_eq!(out.len(), 1);
    assert_eq!(payload_header(&out[0]), Some((1, 1)), "record 1 is auction 1");
    let record = decode_payload(&out[0], &|| "test".into()).unwrap();
    assert_eq!(record.auction.bids.len(), 1);
    assert_eq!(record.archived_at_ms, 50_000);
    assert!(book.auction(1).is_none() && book.is_archived(1));
    assert!(book.auction(2).is_some(), "the limit left auction 2");
    assert_ne!(book.state_hash(), hash_before, "the archive's digest is in the state");
    assert!(book.take_archived().is_empty(), "the outbox empties");

    let r = housekeeping(&mut book, 50_000, 25_000, 10);
    assert!(
        matches!(
            r,
            Response::Housekept {
                archived: 1,
                more: false,
                subscriptions_dropped: 0,
                ..
            }
        ),
        "{r:?}"
    );
    let out = book.take_archived();
    assert_eq!(payload_header(&out[0]), Some((2, 2)));
    assert_eq!(book.archive_ref().0, 2);
    assert!(book.subscribers(2, 50_000).is_empty());
    assert!(book.auction(3).is_some() && book.auction(4).is_some());
    book.check_invariants().unwrap();
}

#[test]
fn an_archived_auction_answers_closed_and_its_id_is_never_reused() {
    let mut book = book();
    housekeeping(&mut book, 50_000, 30_000, 10);
    book.take_archived();
    let bid = Op::PlaceBid {
        auction_id: 3,
        bidder: "bob".into(),
        amount: Some(500),
        max_amount: None,
    };
    assert_eq!(
        apply(&mut book, 50_001, bid),
        Response::Rejected(Rejection::AuctionClosed)
    );
    assert_eq!(
        apply(&mut book, 50_002, Op::CloseAuction { auction_id: 2 }),
        Response::Rejected(Rejection::AuctionClosed)
    );
    assert_eq!(
        apply(&mut book, 50_003, Op::OpenAuction { auction_id: 99 }),
        Response::Rejected(Rejection::UnknownAuction { auction_id: 99 })
    );
    let r = apply(
        &mut book,
        50_004,
        Op::CreateAuction {
            spec: spec(90_000),
            worker: None,
        },
    );
    assert!(matches!(r, Response::AuctionCreated { auction_id: 5, .. }), "{r:?}");
}

#[test]
fn replicas_applying_the_same_commands_archive_the_same_bytes() {
    let (mut a, mut b) = (book(), book());
    for book in [&mut a, &mut b] {
        housekeeping(book, 60_000, 35_000, 2);
        housekeeping(book, 60_001, 35_000, 2);
    }
    let (out_a, out_b) = (a.take_archived(), b.take_archived());
    assert_eq!(out_a.len(), 3);
    assert_eq!(out_a, out_b);
    assert_eq!(a.state_hash(), b.state_hash());
    let digest = out_a.iter().fold(EMPTY_DIGEST, |d, p| crate::archive::chain(&d, p));
    assert_eq!(a.archive_ref(), (3, digest));
    // The counters survive a snapshot; the outbox is never encoded.
    let decoded = AuctionBook::decode(&a.encode()).unwrap();
    assert_eq!(decoded.archive_ref(), (3, digest));
    assert_eq!(decoded.state_hash(), a.state_hash());
}

#[test]
fn a_cutoff_later_than_the_command_is_refused_and_changes_nothing() {
    let mut book = book();
    let before = book.clone();
    let r = housekeeping(&mut book, 40_000, 40_001, 10);
    assert!(matches!(r, Response::Rejected(Rejection::InvalidInput { .. })), "{r:?}");
    let r = housekeeping(&mut book, 40_000, 1, housekeeping::ARCHIVE_PER_COMMAND_MAX + 1);
    assert!(matches!(r, Response::Rejected(Rejection::InvalidInput { .. })), "{r:?}");
    assert_eq!(book.auctions, before.auctions);
    assert_eq!(book.archive_ref(), before.archive_ref());
}

#[test]
fn expired_idempotency_keys_and_subscriptions_are_dropped() {
    let mut book = book();
    let keyed = Command::new(
        2_000,
        Op::Subscribe {
            auction_id: 4,
            addr: "127.0.0.1:10".into(),
            ttl_secs: 60,
        },
    );
    let tag = Idempotency {
        key: key_digest("k1"),
        request: fingerprint(&keyed.op),
        client: client_id("ann"),
    };
    book.apply(&keyed.with_idempotency(tag));
    assert_eq!(book.counts().idempotency_keys, 1);
    // (Command time is already 30 s, after the closes: the key and the 60-s subscription
    // date from then; subscribing pruned the owner's subscription to ended auction 2.)
    // Nothing due an hour later but the subscription that lapsed after 60 s.
    let hour = 3_600_000;
    assert!(book.housekeeping_due(0, hour));
    let r = housekeeping(&mut book, hour, 0, 10);
    assert!(
        matches!(
            r,
            Response::Housekept {
                archived: 0,
                idempotency_keys_dropped: 0,
                subscriptions_dropped: 1,
                ..
            }
        ),
        "{r:?}"
    );
    assert!(!book.housekeeping_due(0, hour));
    // A day later the key is over too.
    let r = housekeeping(&mut book, 30_000 + DAY_MS + 1, 0, 10);
    assert!(
        matches!(
            r,
            Response::Housekept {
                idempotency_keys_dropped: 1,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(book.counts().idempotency_keys, 0);
    book.check_invariants().unwrap();
}

#[test]
fn a_book_from_before_the_archive_still_decodes() {
    let book = book();
    assert_eq!(book.archive_ref(), (0, EMPTY_DIGEST));
    let bytes = book.encode();
    // Format 3 ended before the record count (one varint byte for 0) and the digest.
    let v3 = &bytes[..bytes.len() - 33];
    let decoded = AuctionBook::decode(v3).unwrap();
    assert_eq!(decoded, book);
}
