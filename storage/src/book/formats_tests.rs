//! Rule tables for the sealed and Dutch formats (`formats`), and scripts through `apply`
//! that check the book's invariants after every step.

use super::formats::{dutch_ends_at, dutch_price, sealed_outcome, DutchSpec, Format};
use super::*;
use crate::types::{Actor, AuctionSpec, BidRecord, IncrementRule, Outcome};

const STARTS: TimestampMs = 10_000;
const ENDS: TimestampMs = 1_000_000;

fn spec(reserve: Option<Money>) -> AuctionSpec {
    AuctionSpec {
        seller: "sam".into(),
        title: "tender".into(),
        starting_price: 100,
        increment: IncrementRule::Fixed(1),
        reserve_price: reserve,
        starts_at_ms: STARTS,
        ends_at_ms: ENDS,
        soft_close: None,
        buy_now_price: None,
    }
}

fn record(bid_id: u64, bidder: &str, amount: Money) -> BidRecord {
    BidRecord {
        bid_id,
        seq: bid_id + 2,
        bidder: bidder.into(),
        amount,
        max_amount: amount,
        ts_ms: STARTS + bid_id,
        price_after: 0,
        leader_after: String::new(),
        signed: None,
    }
}

fn sold(winner: &str, price: Money) -> Outcome {
    Outcome::Sold {
        winner: winner.into(),
        price,
    }
}

#[test]
fn sealed_outcomes_follow_the_format_the_reserve_and_the_earlier_bid() {
    use Format::{SealedFirstPrice as First, SealedSecondPrice as Second};
    // (case, format, bids in bid order, reserve, outcome)
    type Case<'a> = (&'a str, Format, Vec<(&'a str, Money)>, Option<Money>, Outcome);
    let cases: Vec<Case> = vec![
        (
            "first price: the highest pays its bid",
            First,
            vec![("ann", 100), ("bob", 150), ("cy", 120)],
            None,
            sold("bob", 150),
        ),
        (
            "second price: the highest pays the second",
            Second,
            vec![("ann", 100), ("bob", 150), ("cy", 120)],
            None,
            sold("bob", 120),
        ),
        (
            "second price: raised to the reserve",
            Second,
            vec![("ann", 120), ("bob", 150)],
            Some(130),
            sold("bob", 130),
        ),
        (
            "second price: the second above the reserve",
            Second,
            vec![("ann", 140), ("bob", 150)],
            Some(130),
            sold("bob", 140),
        ),
        (
            "second price: alone, no reserve, pays its own bid",
            Second,
            vec![("bob", 150)],
            None,
            sold("bob", 150),
        ),
        (
            "second price: alone above the reserve pays the reserve",
            Second,
            vec![("bob", 150)],
            Some(110),
            sold("bob", 110),
        ),
        (
            "first price: a tie goes to the earlier bid",
            First,
            vec![("ann", 150), ("bob", 150)],
            None,
            sold("ann", 150),
        ),
        (
            "second price: a tie pays the tied amount",
            Second,
            vec![("ann", 150), ("bob", 150)],
            None,
            sold("ann", 150),
        ),
        (
            "below the reserve",
            First,
            vec![("ann", 100), ("bob", 180)],
            Some(200),
            Outcome::ReserveNotMet {
                highest_bidder: "bob".into(),
                highest_bid: 180,
            },
        ),
        ("no bids", Second, vec![], Some(200), Outcome::NoBids),
    ];
    for (case, format, bids, reserve, expected) in cases {
        let records: Vec<BidRecord> = bids
            .iter()
            .enumerate()
            .map(|(i, (bidder, amount))| record(i as u64 + 1, bidder, *amount))
            .collect();
        assert_eq!(sealed_outcome(&format, &records, reserve), expected, "{case}");
    }
}

#[test]
fn dutch_prices_fall_by_the_step_to_the_floor_and_end_one_period_later() {
    let dutch = DutchSpec {
        decrement: 30,
        decrement_every_ms: 1_000,
        floor_price: 20,
    };
    // (ms after the start, price)
    for (after, price) in [(0, 100), (999, 100), (1_000, 70), (2_500, 40), (3_000, 20), (9_000, 20)] {
        assert_eq!(
            dutch_price(STARTS, 100, &dutch, STARTS + after),
            price,
            "at +{after} ms"
        );
    }
    assert_eq!(dutch_price(STARTS, 100, &dutch, STARTS - 5), 100, "before the start");
    // 100 → 70 → 40 → 20 (floor) takes 3 steps; the floor holds one period.
    assert_eq!(dutch_ends_at(STARTS, 100, &dutch), Some(STARTS + 4_000));
}

/// Applies `op` at `ts` and checks the invariants.
fn step(book: &mut AuctionBook, ts: TimestampMs, op: Op) -> Response {
    let response = book.apply(&Command::new(ts, op));
    book.check_invariants().expect("invariants hold after every step");
    response
}

fn bid(auction_id: AuctionId, bidder: &str, amount: Option<Money>, max_amount: Option<Money>) -> Op {
    Op::PlaceBid {
        auction_id,
        bidder: bidder.into(),
        amount,
        max_amount,
    }
}

fn rejected(response: &Response) -> &'static str {
    match response {
        Response::Rejected(r) => r.code(),
        _ => "accepted",
    }
}

#[test]
fn a_sealed_auction_shows_nothing_until_the_close_then_decides_by_the_bids() {
    let mut book = AuctionBook::new();
    let create = Op::CreateFormatAuction {
        spec: spec(Some(120)),
        format: Format::SealedSecondPrice,
        worker: None,
    };
    assert!(matches!(
        step(&mut book, STARTS, create),
        Response::AuctionCreated { .. }
    ));
    // (case, op, expected: "accepted" or the rejection code)
    let script: Vec<(&str, Op, &str)> = vec![
        ("ann bids", bid(1, "ann", Some(130), None), "accepted"),
        ("bob bids", bid(1, "bob", Some(200), None), "accepted"),
        (
            "a proxy maximum does not fit",
            bid(1, "cy", Some(150), Some(300)),
            "invalid_amount",
        ),
        ("below the starting price", bid(1, "cy", Some(99), None), "bid_too_low"),
        (
            "the seller may not bid",
            bid(1, "sam", Some(500), None),
            "seller_cannot_bid",
        ),
        (
            "bob replaces his bid with a lower one",
            bid(1, "bob", Some(160), None),
            "accepted",
        ),
        (
            "the seller cannot cancel once there are bids",
            Op::CancelAuction {
                auction_id: 1,
                by: Actor::Seller("sam".into()),
            },
            "auction_has_bids",
        ),
        (
            "not before the end",
            Op::CloseAuction { auction_id: 1 },
            "not_yet_ended",
        ),
    ];
    for (i, (case, op, expected)) in script.into_iter().enumerate() {
        let response = step(&mut book, STARTS + 1 + i as u64, op);
        assert_eq!(rejected(&response), expected, "{case}: {response:?}");
        if expected == "accepted" {
            assert!(matches!(response, Response::SealedBidAccepted { .. }), "{case}");
            for event in response.events() {
                assert!(matches!(event.kind, EventKind::SealedBid { .. }), "{case}: {event:?}");
            }
        }
    }
    let auction = book.auction(1).unwrap();
    assert_eq!(
        (auction.leader.as_ref(), auction.price, auction.bids.len()),
        (None, 0, 2)
    );
    assert_eq!(
        book.exposure("ann") + book.exposure("bob"),
        130 + 160,
        "every sealed bid counts"
    );
    let closed = step(&mut book, ENDS, Op::CloseAuction { auction_id: 1 });
    let Response::AuctionEnded { outcome, .. } = closed else {
        panic!("{closed:?}")
    };
    assert_eq!(
        outcome,
        sold("bob", 130),
        "second price: bob pays ann's 130 (above the 120 reserve)"
    );
    assert_eq!(book.exposure("ann") + book.exposure("bob"), 0);
    assert_eq!(
        rejected(&step(&mut book, ENDS + 1, bid(1, "cy", Some(500), None))),
        "auction_closed"
    );
}

#[test]
fn a_dutch_auction_sells_to_the_first_taker_at_the_current_price() {
    let dutch = DutchSpec {
        decrement: 10,
        decrement_every_ms: 1_000,
        floor_price: 50,
    };
    let ends = dutch_ends_at(STARTS, 100, &dutch).unwrap();
    let dutch_spec = AuctionSpec {
        ends_at_ms: ends,
        ..spec(None)
    };
    let mut book = AuctionBook::new();
    let wrong_end = Op::CreateFormatAuction {
        spec: spec(None),
        format: Format::Dutch(dutch),
        worker: None,
    };
    assert_eq!(rejected(&step(&mut book, STARTS, wrong_end)), "invalid_input");
    let with_reserve = Op::CreateFormatAuction {
        spec: AuctionSpec {
            reserve_price: Some(60),
            ..dutch_spec.clone()
        },
        format: Format::Dutch(dutch),
        worker: None,
    };
    assert_eq!(rejected(&step(&mut book, STARTS, with_reserve)), "invalid_input");
    for _ in 0..2 {
        let create = Op::CreateFormatAuction {
            spec: dutch_spec.clone(),
            format: Format::Dutch(dutch),
            worker: None,
        };
        assert!(matches!(
            step(&mut book, STARTS, create),
            Response::AuctionCreated { .. }
        ));
    }
    // At +2.5 s the price is 80: 79 is too low (and says the price), 95 wins at 80.
    let at = STARTS + 2_500;
    let low = step(&mut book, at, bid(1, "ann", Some(79), None));
    assert!(
        matches!(low, Response::Rejected(Rejection::BidTooLow { min_next_bid: 80 })),
        "{low:?}"
    );
    let taken = step(&mut book, at, bid(1, "bob", Some(95), None));
    assert!(
        matches!(&taken, Response::BidAccepted(b) if b.price == 80 && b.leader == "bob"),
        "{taken:?}"
    );
    let auction = book.auction(1).unwrap();
    assert_eq!(auction.outcome, Some(sold("bob", 80)));
    assert_eq!(
        rejected(&step(&mut book, at + 1, bid(1, "cy", Some(100), None))),
        "auction_closed"
    );
    // The other one reaches its floor untaken and closes with no bids at its end.
    assert_eq!(
        rejected(&step(&mut book, ends - 1, Op::CloseAuction { auction_id: 2 })),
        "not_yet_ended"
    );
    let closed = step(&mut book, ends, Op::CloseAuction { auction_id: 2 });
    assert!(
        matches!(
            closed,
            Response::AuctionEnded {
                outcome: Outcome::NoBids,
                ..
            }
        ),
        "{closed:?}"
    );
}

#[test]
fn a_book_from_before_formats_still_decodes() {
    let mut book = AuctionBook::new();
    let create = Op::CreateAuction {
        spec: AuctionSpec {
            increment: IncrementRule::Fixed(10),
            ..spec(None)
        },
        worker: None,
    };
    step(&mut book, STARTS, create);
    let bytes = book.encode();
    // The archive's record count (a zero varint) and digest (32 bytes) end the book since
    // format 4; before them come the format and rounds maps, each an empty map's single
    // zero length byte. Without all of them the bytes are what snapshot format 2 stored.
    let v3 = &bytes[..bytes.len() - 33];
    assert_eq!(&v3[v3.len() - 2..], &[0, 0]);
    let old = AuctionBook::decode(&v3[..v3.len() - 2]).expect("a format-2 book decodes");
    assert_eq!(old, book);
    assert_eq!(AuctionBook::decode(&bytes).unwrap(), book);
}

fn multi_round(min_rounds: u32, max_rounds: u32, min_bidders: u32) -> Op {
    let rounds = super::rounds::MultiRoundSpec {
        min_rounds,
        max_rounds,
        round_ms: 10_000,
        min_bidders,
        join_ms: 60_000,
    };
    Op::CreateFormatAuction {
        spec: AuctionSpec {
            ends_at_ms: STARTS + 60_000,
            ..spec(None)
        },
        format: Format::MultiRound(rounds),
        worker: None,
    }
}

fn join(auction_id: AuctionId, bidder: &str) -> Op {
    Op::JoinAuction {
        auction_id,
        bidder: bidder.into(),
    }
}

fn start(auction_id: AuctionId) -> Op {
    Op::StartRounds {
        auction_id,
        seller: "sam".into(),
    }
}

fn ok_or_code(response: &Response) -> &'static str {
    match response {
        Response::Rejected(r) => r.code(),
        Response::AuctionEnded { outcome, .. } => outcome.as_str(),
        _ => "ok",
    }
}

#[test]
fn multi_round_bidding_sums_rounds_reveals_each_and_ends_by_its_rules() {
    let mut book = AuctionBook::new();
    assert_eq!(ok_or_code(&step(&mut book, STARTS, multi_round(2, 4, 2))), "ok");
    let b = |bidder: &str, amount: Money| bid(1, bidder, Some(amount), None);
    // (time, case, op, expected: "ok", a rejection code, or the outcome)
    let script: Vec<(TimestampMs, &str, Op, &str)> = vec![
        (1, "ann joins", join(1, "ann"), "ok"),
        (2, "ann cannot join twice", join(1, "ann"), "already_joined"),
        (3, "the seller cannot join", join(1, "sam"), "seller_cannot_bid"),
        (4, "no bids while joining", b("ann", 500), "rounds_not_started"),
        (5, "one bidder is not enough to start", start(1), "not_enough_bidders"),
        (6, "bob joins", join(1, "bob"), "ok"),
        (7, "cy joins", join(1, "cy"), "ok"),
        (8, "the seller starts round 1", start(1), "ok"),
        (9, "dee is too late to join", join(1, "dee"), "joining_closed"),
        (10, "dee did not join", b("dee", 500), "not_a_participant"),
        (11, "below the minimum per bid", b("ann", 99), "bid_too_low"),
        (
            12,
            "a proxy maximum does not fit",
            bid(1, "ann", Some(100), Some(900)),
            "invalid_amount",
        ),
        (13, "round 1: ann", b("ann", 100), "ok"),
        (14, "one bid per round", b("ann", 300), "already_bid"),
        (15, "round 1: bob", b("bob", 150), "ok"),
        (
            16,
            "cy does not bid: the deadline is not yet",
            Op::CloseAuction { auction_id: 1 },
            "not_yet_ended",
        ),
        (
            10_008,
            "the round 1 deadline completes it; cy's bid counts 0",
            Op::CloseAuction { auction_id: 1 },
            "ok",
        ),
        (10_010, "round 2: ann", b("ann", 200), "ok"),
        (10_011, "round 2: bob", b("bob", 100), "ok"),
        (
            10_012,
            "round 2: cy, the last bid, completes it (ann now leads 300 to 250)",
            b("cy", 120),
            "ok",
        ),
        (10_020, "round 3: ann reaches 400 first", b("ann", 100), "ok"),
        (10_021, "round 3: bob ties at 400, later", b("bob", 150), "ok"),
        (
            10_022,
            "round 3 completes; ann still leads after min_rounds: the auction ends",
            b("cy", 100),
            "sold",
        ),
    ];
    for (at, case, op, expected) in script {
        let response = step(&mut book, STARTS + at, op);
        let got = match &response {
            Response::SealedBidAccepted { events, .. } => events
                .iter()
                .find_map(|e| match &e.kind {
                    EventKind::Closed { outcome } => Some(outcome.as_str()),
                    _ => None,
                })
                .unwrap_or("ok"),
            other => ok_or_code(other),
        };
        assert_eq!(got, expected, "{case}: {response:?}");
    }
    let rounds = book.rounds(1).unwrap();
    assert_eq!(
        rounds.revealed,
        vec![
            vec![("ann".to_string(), 100), ("bob".into(), 150), ("cy".into(), 0)],
            vec![("ann".to_string(), 200), ("bob".into(), 100), ("cy".into(), 120)],
            vec![("ann".to_string(), 100), ("bob".into(), 150), ("cy".into(), 100)],
        ]
    );
    let auction = book.auction(1).unwrap();
    assert_eq!(
        auction.outcome,
        Some(sold("ann", 400)),
        "a tie at 400 goes to who reached it first"
    );
    for name in ["ann", "bob", "cy"] {
        assert_eq!(book.exposure(name), 0, "{name}'s totals are released at the end");
    }
}

#[test]
fn a_multi_round_auction_starts_itself_or_ends_for_want_of_bidders_at_the_joining_deadline() {
    let mut book = AuctionBook::new();
    step(&mut book, STARTS, multi_round(1, 1, 2));
    step(&mut book, STARTS, multi_round(1, 1, 2));
    for op in [join(1, "ann"), join(2, "ann"), join(2, "bob")] {
        assert_eq!(ok_or_code(&step(&mut book, STARTS + 1, op)), "ok");
    }
    let deadline = STARTS + 60_000;
    let short = step(&mut book, deadline, Op::CloseAuction { auction_id: 1 });
    assert!(
        matches!(
            &short,
            Response::AuctionEnded {
                outcome: Outcome::NotEnoughBidders { joined: 1 },
                ..
            }
        ),
        "{short:?}"
    );
    assert_eq!(
        ok_or_code(&step(&mut book, deadline, Op::CloseAuction { auction_id: 2 })),
        "ok"
    );
    assert_eq!(
        book.rounds(2).unwrap().round,
        1,
        "enough joined: round 1 started by itself"
    );
    assert_eq!(book.auction(2).unwrap().ends_at_ms, deadline + 10_000);
    // Nobody bids in the one round: no bids.
    let ended = step(&mut book, deadline + 10_000, Op::CloseAuction { auction_id: 2 });
    assert_eq!(ok_or_code(&ended), "no_bids", "{ended:?}");
}
