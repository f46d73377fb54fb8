//! Rule tests for the book, written as scripts of commands with the expected result of
//! each, and tables of cases. Every rejected step is also checked to have changed
//! nothing but `last_ts_ms` (and the idempotency table, for keyed commands).

use super::*;
use crate::types::{
    Actor, AuctionSpec, IncrementBand, IncrementRule, Leader, Outcome, SoftClose, AUCTION_DURATION_MAX_MS,
};

const SELLER: &str = "sam";
const STARTS: TimestampMs = 10_000;
const ENDS: TimestampMs = 1_000_000;

/// An auction that opens at `STARTS` and ends at `ENDS`: starting price 100, steps of 10.
fn spec() -> AuctionSpec {
    AuctionSpec {
        seller: SELLER.into(),
        title: "brass lamp".into(),
        starting_price: 100,
        increment: IncrementRule::Fixed(10),
        reserve_price: None,
        starts_at_ms: STARTS,
        ends_at_ms: ENDS,
        soft_close: None,
        buy_now_price: None,
    }
}

fn with(change: impl FnOnce(&mut AuctionSpec)) -> AuctionSpec {
    let mut spec = spec();
    change(&mut spec);
    spec
}

fn create(spec: AuctionSpec) -> Op {
    Op::CreateAuction { spec, worker: None }
}
fn create_on(spec: AuctionSpec, worker: NodeId) -> Op {
    Op::CreateAuction {
        spec,
        worker: Some(worker),
    }
}
fn open(auction_id: AuctionId) -> Op {
    Op::OpenAuction { auction_id }
}
/// A straight bid: `amount`, no separate maximum.
fn bid(auction_id: AuctionId, bidder: &str, amount: Money) -> Op {
    Op::PlaceBid {
        auction_id,
        bidder: bidder.into(),
        amount: Some(amount),
        max_amount: None,
    }
}
/// A proxy bid: the minimum in the open, the book bids up to `max`.
fn proxy(auction_id: AuctionId, bidder: &str, max: Money) -> Op {
    Op::PlaceBid {
        auction_id,
        bidder: bidder.into(),
        amount: None,
        max_amount: Some(max),
    }
}
fn bid_up_to(auction_id: AuctionId, bidder: &str, amount: Money, max: Money) -> Op {
    Op::PlaceBid {
        auction_id,
        bidder: bidder.into(),
        amount: Some(amount),
        max_amount: Some(max),
    }
}
fn buy(auction_id: AuctionId, buyer: &str) -> Op {
    Op::BuyNow {
        auction_id,
        buyer: buyer.into(),
    }
}
fn close(auction_id: AuctionId) -> Op {
    Op::CloseAuction { auction_id }
}
fn cancel(auction_id: AuctionId, by: Actor) -> Op {
    Op::CancelAuction { auction_id, by }
}
fn seller(name: &str) -> Actor {
    Actor::Seller(name.into())
}
fn register(node_id: NodeId, max_auctions: u32) -> Op {
    Op::RegisterWorker {
        node_id,
        addr: format!("10.0.0.{node_id}:7070"),
        udp_addr: format!("10.0.0.{node_id}:7071"),
        max_auctions,
    }
}
fn remove(node_id: NodeId) -> Op {
    Op::RemoveWorker { node_id }
}
fn sub(auction_id: AuctionId, addr: &str, ttl_secs: u32) -> Op {
    Op::Subscribe {
        auction_id,
        addr: addr.into(),
        ttl_secs,
    }
}

fn assign(auction_id: AuctionId, worker: NodeId) -> Op {
    Op::AssignAuction { auction_id, worker }
}

/// The expected result of one step.
#[derive(Debug, Clone)]
enum Want {
    /// Anything but a rejection.
    Ok,
    Created(AuctionId),
    /// A bid accepted with this visible price and leader.
    Bid(Money, &'static str),
    Ended(Outcome),
    Reject(Rejection),
    /// A rejection with this code (for reasons that carry text).
    Code(&'static str),
}

fn sold(winner: &str, price: Money) -> Want {
    Want::Ended(Outcome::Sold {
        winner: winner.into(),
        price,
    })
}

struct Step {
    ts: TimestampMs,
    key: Option<&'static str>,
    op: Op,
    want: Want,
}

fn at(ts: TimestampMs, op: Op, want: Want) -> Step {
    Step {
        ts,
        key: None,
        op,
        want,
    }
}

impl Step {
    fn key(mut self, key: &'static str) -> Step {
        self.key = Some(key);
        self
    }
}

fn matches(want: &Want, got: &Response) -> bool {
    match (want, got) {
        (Want::Ok, Response::Rejected(_)) => false,
        (Want::Ok, _) => true,
        (Want::Created(id), Response::AuctionCreated { auction_id, .. }) => id == auction_id,
        (Want::Bid(price, leader), Response::BidAccepted(b)) => b.price == *price && b.leader == *leader,
        (Want::Ended(outcome), Response::AuctionEnded { outcome: got, .. }) => outcome == got,
        (Want::Reject(rejection), Response::Rejected(got)) => rejection == got,
        (Want::Code(code), Response::Rejected(got)) => got.code() == *code,
        _ => false,
    }
}

/// Applies each step to `book`, checking its result; a rejected step must leave the book
/// as it was apart from `last_ts_ms` and the idempotency table. Returns the responses.
#[track_caller]
fn run_on(book: &mut AuctionBook, steps: Vec<Step>) -> Vec<Response> {
    let mut responses = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        let before = book.clone();
        let mut cmd = Command::new(step.ts, step.op.clone());
        if let Some(key) = step.key {
            cmd = cmd.with_key(key);
        }
        let got = book.apply(&cmd);
        assert!(
            matches(&step.want, &got),
            "step {i} ({} at {}): wanted {:?}, got {got:#?}",
            step.op.name(),
            step.ts,
            step.want
        );
        if let Err(violation) = book.check_invariants() {
            panic!("step {i} ({}): invariant broken: {violation}", step.op.name());
        }
        if let Response::Rejected(_) = got {
            let mut expected = before;
            expected.last_ts_ms = book.last_ts_ms;
            expected.idempotency = book.idempotency.clone();
            assert!(
                expected == *book,
                "step {i} ({}): a rejected command changed the book",
                step.op.name()
            );
        }
        responses.push(got);
    }
    responses
}

#[track_caller]
fn run(steps: Vec<Step>) -> (AuctionBook, Vec<Response>) {
    let mut book = AuctionBook::new();
    let responses = run_on(&mut book, steps);
    (book, responses)
}

fn kinds(response: &Response) -> Vec<EventKind> {
    response.events().iter().map(|event| event.kind.clone()).collect()
}

fn seqs(response: &Response) -> Vec<u64> {
    response.events().iter().map(|event| event.seq).collect()
}

// ---------------------------------------------------------------------------------------
// Outcomes

#[test]
fn every_outcome_is_reached_and_recorded_once() {
    let cases: Vec<(&str, AuctionSpec, Vec<Step>, Outcome)> = vec![
        (
            "sold at the visible price to the leader",
            spec(),
            vec![
                at(STARTS, bid(1, "alice", 150), Want::Bid(150, "alice")),
                at(ENDS, close(1), Want::Ok),
            ],
            Outcome::Sold {
                winner: "alice".into(),
                price: 150,
            },
        ),
        (
            "reserve not met",
            with(|s| s.reserve_price = Some(1_000)),
            vec![
                at(STARTS, bid(1, "alice", 150), Want::Bid(150, "alice")),
                at(ENDS, close(1), Want::Ok),
            ],
            Outcome::ReserveNotMet {
                highest_bidder: "alice".into(),
                highest_bid: 150,
            },
        ),
        (
            "sold once the reserve is met",
            with(|s| s.reserve_price = Some(1_000)),
            vec![
                at(STARTS, bid(1, "alice", 1_000), Want::Bid(1_000, "alice")),
                at(ENDS, close(1), Want::Ok),
            ],
            Outcome::Sold {
                winner: "alice".into(),
                price: 1_000,
            },
        ),
        (
            "no bids",
            spec(),
            vec![at(ENDS + 5, close(1), Want::Ok)],
            Outcome::NoBids,
        ),
        (
            "a scheduled auction nobody opened closes with no bids",
            with(|s| s.starts_at_ms = 500_000),
            vec![at(ENDS, close(1), Want::Ok)],
            Outcome::NoBids,
        ),
        (
            "cancelled by the seller before any bid",
            spec(),
            vec![at(STARTS, cancel(1, seller(SELLER)), Want::Ok)],
            Outcome::Cancelled { by: seller(SELLER) },
        ),
        (
            "cancelled by an admin after bids",
            spec(),
            vec![
                at(STARTS, bid(1, "alice", 150), Want::Ok),
                at(STARTS + 1, cancel(1, Actor::Admin), Want::Ok),
            ],
            Outcome::Cancelled { by: Actor::Admin },
        ),
        (
            "bought now before any bid",
            with(|s| s.buy_now_price = Some(5_000)),
            vec![at(STARTS, buy(1, "bob"), Want::Ok)],
            Outcome::BoughtNow {
                buyer: "bob".into(),
                price: 5_000,
            },
        ),
        (
            "bought now while the reserve is not met",
            with(|s| {
                s.reserve_price = Some(1_000);
                s.buy_now_price = Some(5_000);
            }),
            vec![
                at(STARTS, bid(1, "alice", 150), Want::Ok),
                at(STARTS + 1, buy(1, "bob"), Want::Ok),
            ],
            Outcome::BoughtNow {
                buyer: "bob".into(),
                price: 5_000,
            },
        ),
    ];
    for (name, spec, steps, outcome) in cases {
        let mut all = vec![at(STARTS, create(spec), Want::Created(1))];
        all.extend(steps);
        let (book, responses) = run(all);
        let auction = book.auction(1).unwrap();
        assert_eq!(auction.outcome.as_ref(), Some(&outcome), "{name}");
        let last = responses.last().unwrap();
        assert!(matches(&Want::Ended(outcome.clone()), last), "{name}: {last:?}");
        let event = last.events().last().unwrap().kind.clone();
        let want_event = match &outcome {
            Outcome::Cancelled { by } => EventKind::Cancelled { by: by.clone() },
            outcome => EventKind::Closed {
                outcome: outcome.clone(),
            },
        };
        assert_eq!(event, want_event, "{name}");
        assert!(auction.status.is_final(), "{name}");
        assert_eq!(auction.closed_at_ms, Some(book.last_ts_ms()), "{name}");
        assert_eq!(book.min_next_bid(1), None, "{name}");

        // At most one outcome: nothing can end it again or bid on it.
        let mut again = book.clone();
        let final_rejection = if auction.status == AuctionStatus::Cancelled {
            Rejection::AuctionCancelled
        } else {
            Rejection::AuctionClosed
        };
        run_on(
            &mut again,
            vec![
                at(ENDS + 10, close(1), Want::Reject(final_rejection.clone())),
                at(
                    ENDS + 10,
                    cancel(1, Actor::Admin),
                    Want::Reject(final_rejection.clone()),
                ),
                at(ENDS + 10, buy(1, "carol"), Want::Reject(final_rejection.clone())),
                at(ENDS + 10, open(1), Want::Reject(final_rejection.clone())),
                at(STARTS + 10, bid(1, "carol", 10_000), Want::Reject(final_rejection)),
            ],
        );
        assert_eq!(again.auction(1).unwrap().outcome.as_ref(), Some(&outcome), "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// Rejections

#[test]
fn every_rejection_reachable_through_apply() {
    let scheduled = || with(|s| s.starts_at_ms = 50_000);
    // Each case: a setup script (must succeed) then the rejected step.
    let cases: Vec<(&str, Vec<Step>, Step)> = vec![
        (
            "unknown auction",
            vec![],
            at(
                STARTS,
                bid(7, "alice", 100),
                Want::Reject(Rejection::UnknownAuction { auction_id: 7 }),
            ),
        ),
        (
            "bid before starts_at",
            vec![at(STARTS, create(scheduled()), Want::Created(1))],
            at(
                49_999,
                bid(1, "alice", 100),
                Want::Reject(Rejection::AuctionNotOpen { starts_at_ms: 50_000 }),
            ),
        ),
        (
            "open before starts_at",
            vec![at(STARTS, create(scheduled()), Want::Created(1))],
            at(
                49_999,
                open(1),
                Want::Reject(Rejection::AuctionNotOpen { starts_at_ms: 50_000 }),
            ),
        ),
        (
            "buy-now before starts_at",
            vec![at(
                STARTS,
                create(with(|s| {
                    s.starts_at_ms = 50_000;
                    s.buy_now_price = Some(900);
                })),
                Want::Created(1),
            )],
            at(
                20_000,
                buy(1, "bob"),
                Want::Reject(Rejection::AuctionNotOpen { starts_at_ms: 50_000 }),
            ),
        ),
        (
            "bid exactly at ends_at, before any close",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(ENDS, bid(1, "alice", 100), Want::Reject(Rejection::AuctionClosed)),
        ),
        (
            "bid on a closed auction",
            vec![
                at(STARTS, create(spec()), Want::Created(1)),
                at(ENDS, close(1), Want::Ok),
            ],
            at(ENDS, bid(1, "alice", 100), Want::Reject(Rejection::AuctionClosed)),
        ),
        (
            "bid on a cancelled auction",
            vec![
                at(STARTS, create(spec()), Want::Created(1)),
                at(STARTS, cancel(1, Actor::Admin), Want::Ok),
            ],
            at(STARTS, bid(1, "alice", 100), Want::Reject(Rejection::AuctionCancelled)),
        ),
        (
            "bid below the starting price",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(
                STARTS,
                bid(1, "alice", 99),
                Want::Reject(Rejection::BidTooLow { min_next_bid: 100 }),
            ),
        ),
        (
            "bid below price + increment",
            vec![
                at(STARTS, create(spec()), Want::Created(1)),
                at(STARTS, bid(1, "alice", 150), Want::Ok),
            ],
            at(
                STARTS,
                bid(1, "bob", 159),
                Want::Reject(Rejection::BidTooLow { min_next_bid: 160 }),
            ),
        ),
        (
            "proxy whose max is below the minimum",
            vec![
                at(STARTS, create(spec()), Want::Created(1)),
                at(STARTS, bid(1, "alice", 150), Want::Ok),
            ],
            at(
                STARTS,
                proxy(1, "bob", 155),
                Want::Reject(Rejection::BidTooLow { min_next_bid: 160 }),
            ),
        ),
        (
            "leader keeps their max",
            vec![
                at(STARTS, create(spec()), Want::Created(1)),
                at(STARTS, proxy(1, "alice", 500), Want::Ok),
            ],
            at(STARTS, proxy(1, "alice", 500), Want::Reject(Rejection::MaxNotRaised)),
        ),
        (
            "leader lowers their max",
            vec![
                at(STARTS, create(spec()), Want::Created(1)),
                at(STARTS, proxy(1, "alice", 500), Want::Ok),
            ],
            at(STARTS, bid(1, "alice", 400), Want::Reject(Rejection::MaxNotRaised)),
        ),
        (
            "seller bids",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, bid(1, SELLER, 100), Want::Reject(Rejection::SellerCannotBid)),
        ),
        (
            "seller buys now",
            vec![at(
                STARTS,
                create(with(|s| s.buy_now_price = Some(900))),
                Want::Created(1),
            )],
            at(STARTS, buy(1, SELLER), Want::Reject(Rejection::SellerCannotBid)),
        ),
        (
            "neither amount nor max",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(
                STARTS,
                Op::PlaceBid {
                    auction_id: 1,
                    bidder: "alice".into(),
                    amount: None,
                    max_amount: None,
                },
                Want::Code("invalid_amount"),
            ),
        ),
        (
            "zero amount",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, bid(1, "alice", 0), Want::Code("invalid_amount")),
        ),
        (
            "zero max",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, proxy(1, "alice", 0), Want::Code("invalid_amount")),
        ),
        (
            "amount above max",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, bid_up_to(1, "alice", 300, 200), Want::Code("invalid_amount")),
        ),
        (
            "a bid over the amount cap",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(
                STARTS,
                bid(1, "bob", crate::types::AMOUNT_MAX + 1),
                Want::Code("invalid_amount"),
            ),
        ),
        (
            "a maximum over the amount cap",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, proxy(1, "bob", u64::MAX), Want::Code("invalid_amount")),
        ),
        (
            "a starting price over the amount cap",
            vec![],
            at(
                STARTS,
                create(with(|s| s.starting_price = u64::MAX - 5)),
                Want::Code("invalid_input"),
            ),
        ),
        (
            "an increment over the amount cap",
            vec![],
            at(
                STARTS,
                create(with(|s| s.increment = IncrementRule::Fixed(u64::MAX))),
                Want::Code("invalid_input"),
            ),
        ),
        (
            "a start more than a year ahead",
            vec![],
            at(
                STARTS,
                create(with(|s| {
                    s.starts_at_ms = STARTS + crate::types::START_AHEAD_MAX_MS + 1;
                    s.ends_at_ms = s.starts_at_ms + 1000;
                })),
                Want::Code("invalid_input"),
            ),
        ),
        (
            "an extension longer than a day",
            vec![],
            at(
                STARTS,
                create(with(|s| {
                    s.soft_close = Some(SoftClose {
                        window_secs: 10,
                        extend_secs: u32::MAX,
                        max_extensions: 3,
                    })
                })),
                Want::Code("invalid_input"),
            ),
        ),
        (
            "a bidder name with an escape character",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, bid(1, "ann\u{1b}[2J", 100), Want::Code("invalid_input")),
        ),
        (
            "a bidder name with a bidi override",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, bid(1, "\u{202E}nna", 100), Want::Code("invalid_input")),
        ),
        (
            "a seller name with a zero-width space",
            vec![],
            at(
                STARTS,
                create(with(|s| s.seller = "sam\u{200B}".into())),
                Want::Code("invalid_input"),
            ),
        ),
        (
            "a title with NUL",
            vec![],
            at(
                STARTS,
                create(with(|s| s.title = "lamp\0".into())),
                Want::Code("invalid_input"),
            ),
        ),
        (
            "empty bidder",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, bid(1, "", 100), Want::Code("invalid_input")),
        ),
        (
            "bidder name too long",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, bid(1, &"x".repeat(129), 100), Want::Code("invalid_input")),
        ),
        (
            "invalid spec",
            vec![],
            at(STARTS, create(with(|s| s.title.clear())), Want::Code("invalid_input")),
        ),
        (
            "ends_at in the past",
            vec![],
            at(
                ENDS,
                create(spec()),
                Want::Reject(Rejection::InvalidInput {
                    reason: "ends_at is in the past".into(),
                }),
            ),
        ),
        (
            "close before the end",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(
                ENDS - 1,
                close(1),
                Want::Reject(Rejection::NotYetEnded { ends_at_ms: ENDS }),
            ),
        ),
        (
            "close a cancelled auction",
            vec![
                at(STARTS, create(spec()), Want::Created(1)),
                at(STARTS, cancel(1, Actor::Admin), Want::Ok),
            ],
            at(ENDS, close(1), Want::Reject(Rejection::AuctionCancelled)),
        ),
        (
            "close twice",
            vec![
                at(STARTS, create(spec()), Want::Created(1)),
                at(ENDS, close(1), Want::Ok),
            ],
            at(ENDS, close(1), Want::Reject(Rejection::AuctionClosed)),
        ),
        (
            "seller cancels after a bid",
            vec![
                at(STARTS, create(spec()), Want::Created(1)),
                at(STARTS, bid(1, "alice", 100), Want::Ok),
            ],
            at(STARTS, cancel(1, seller(SELLER)), Want::Reject(Rejection::HasBids)),
        ),
        (
            "someone else cancels as seller",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, cancel(1, seller("mallory")), Want::Reject(Rejection::NotSeller)),
        ),
        (
            "buy-now without a buy-now price",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, buy(1, "bob"), Want::Reject(Rejection::BuyNowUnavailable)),
        ),
        (
            "buy-now after a bid, no reserve",
            vec![
                at(STARTS, create(with(|s| s.buy_now_price = Some(900))), Want::Created(1)),
                at(STARTS, bid(1, "alice", 100), Want::Ok),
            ],
            at(STARTS, buy(1, "bob"), Want::Reject(Rejection::BuyNowUnavailable)),
        ),
        (
            "buy-now after the reserve is met",
            vec![
                at(
                    STARTS,
                    create(with(|s| {
                        s.reserve_price = Some(300);
                        s.buy_now_price = Some(900);
                    })),
                    Want::Created(1),
                ),
                at(STARTS, bid(1, "alice", 300), Want::Ok),
            ],
            at(STARTS, buy(1, "bob"), Want::Reject(Rejection::BuyNowUnavailable)),
        ),
        (
            "buy-now at the end",
            vec![at(
                STARTS,
                create(with(|s| s.buy_now_price = Some(900))),
                Want::Created(1),
            )],
            at(ENDS, buy(1, "bob"), Want::Reject(Rejection::AuctionClosed)),
        ),
        (
            "create on an unknown worker",
            vec![],
            at(
                STARTS,
                create_on(spec(), 3),
                Want::Reject(Rejection::UnknownWorker { node_id: 3 }),
            ),
        ),
        (
            "create on a full worker",
            vec![at(STARTS, register(3, 0), Want::Ok)],
            at(
                STARTS,
                create_on(spec(), 3),
                Want::Reject(Rejection::NoCapacity { node_id: 3 }),
            ),
        ),
        (
            "remove an unknown worker",
            vec![],
            at(STARTS, remove(3), Want::Reject(Rejection::UnknownWorker { node_id: 3 })),
        ),
        (
            "assign to an unknown worker",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(
                STARTS,
                assign(1, 3),
                Want::Reject(Rejection::UnknownWorker { node_id: 3 }),
            ),
        ),
        (
            "assign to a full worker",
            vec![
                at(STARTS, register(3, 1), Want::Ok),
                at(STARTS, create_on(spec(), 3), Want::Created(1)),
                at(STARTS, register(4, 1), Want::Ok),
                at(STARTS, create_on(spec(), 4), Want::Created(2)),
            ],
            at(STARTS, assign(1, 4), Want::Reject(Rejection::NoCapacity { node_id: 4 })),
        ),
        (
            "assign an unknown auction",
            vec![at(STARTS, register(3, 1), Want::Ok)],
            at(
                STARTS,
                assign(9, 3),
                Want::Reject(Rejection::UnknownAuction { auction_id: 9 }),
            ),
        ),
        (
            "assign a closed auction",
            vec![
                at(STARTS, register(3, 1), Want::Ok),
                at(STARTS, create(spec()), Want::Created(1)),
                at(ENDS, close(1), Want::Ok),
            ],
            at(ENDS, assign(1, 3), Want::Reject(Rejection::AuctionClosed)),
        ),
        (
            "assign a cancelled auction",
            vec![
                at(STARTS, register(3, 1), Want::Ok),
                at(STARTS, create(spec()), Want::Created(1)),
                at(STARTS, cancel(1, Actor::Admin), Want::Ok),
            ],
            at(STARTS, assign(1, 3), Want::Reject(Rejection::AuctionCancelled)),
        ),
        (
            "idempotency key reused for another operation",
            vec![
                at(STARTS, create(spec()), Want::Created(1)),
                at(STARTS, bid(1, "alice", 100), Want::Ok).key("k1"),
            ],
            at(
                STARTS,
                bid(1, "alice", 200),
                Want::Reject(Rejection::IdempotencyKeyReused),
            )
            .key("k1"),
        ),
    ];
    let mut cases = cases;
    let mut full = vec![at(STARTS, create(spec()), Want::Created(1))];
    for port in 1..=crate::book::SUBSCRIBERS_PER_AUCTION_MAX {
        full.push(at(
            STARTS,
            sub(1, &format!("127.0.0.1:{}", 10_000 + port), 60),
            Want::Ok,
        ));
    }
    cases.extend([
        (
            "subscription with a zero ttl",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, sub(1, "127.0.0.1:9000", 0), Want::Code("invalid_input")),
        ),
        (
            "subscription to an address that is not ip:port",
            vec![at(STARTS, create(spec()), Want::Created(1))],
            at(STARTS, sub(1, "localhost", 60), Want::Code("invalid_input")),
        ),
        (
            "subscription to an unknown auction",
            vec![],
            at(
                STARTS,
                sub(7, "127.0.0.1:9000", 60),
                Want::Reject(Rejection::UnknownAuction { auction_id: 7 }),
            ),
        ),
        (
            "subscription to a closed auction",
            vec![
                at(STARTS, create(spec()), Want::Created(1)),
                at(ENDS, close(1), Want::Ok),
            ],
            at(
                ENDS,
                sub(1, "127.0.0.1:9000", 60),
                Want::Reject(Rejection::AuctionClosed),
            ),
        ),
        (
            "one subscriber too many",
            full,
            at(
                STARTS,
                sub(1, "127.0.0.1:9000", 60),
                Want::Reject(Rejection::TooManySubscribers {
                    max: crate::book::SUBSCRIBERS_PER_AUCTION_MAX,
                }),
            ),
        ),
    ]);
    let mut codes = BTreeSet::new();
    for (name, setup, step) in cases {
        let mut book = AuctionBook::new();
        run_on(&mut book, setup);
        let responses = run_on(&mut book, vec![step]);
        match &responses[0] {
            Response::Rejected(rejection) => codes.insert(rejection.code()),
            other => panic!("{name}: not rejected: {other:?}"),
        };
    }
    // The idempotency refusals that need small limits have tests of their own below.
    assert_eq!(codes.len(), 17, "every other Rejection variant is covered: {codes:?}");
}

#[test]
fn invalid_specs_are_rejected_with_a_reason() {
    let band = |from, increment| IncrementBand { from, increment };
    let soft = |window_secs, extend_secs| {
        Some(SoftClose {
            window_secs,
            extend_secs,
            max_extensions: 3,
        })
    };
    let cases: Vec<(AuctionSpec, &str)> = vec![
        (with(|s| s.seller.clear()), "seller must not be empty"),
        (with(|s| s.seller = "s".repeat(129)), "seller is longer"),
        (with(|s| s.title.clear()), "title must not be empty"),
        (with(|s| s.title = "t".repeat(257)), "title is longer"),
        (with(|s| s.starting_price = 0), "starting_price"),
        (
            with(|s| s.increment = IncrementRule::Fixed(0)),
            "increment must be greater",
        ),
        (
            with(|s| s.increment = IncrementRule::Table(vec![])),
            "at least one band",
        ),
        (
            with(|s| s.increment = IncrementRule::Table(vec![band(5, 1)])),
            "start at 0",
        ),
        (
            with(|s| s.increment = IncrementRule::Table(vec![band(0, 1), band(100, 5), band(100, 6)])),
            "strictly increasing",
        ),
        (
            with(|s| s.increment = IncrementRule::Table(vec![band(0, 1), band(50, 0)])),
            "every increment",
        ),
        (
            with(|s| s.increment = IncrementRule::Table((0..65).map(|i| band(i * 10, 1)).collect())),
            "more than 64 bands",
        ),
        (
            with(|s| s.ends_at_ms = s.starts_at_ms),
            "ends_at must be after starts_at",
        ),
        (
            with(|s| s.ends_at_ms = s.starts_at_ms + 365 * 86_400_000 + 1),
            "365 days",
        ),
        (with(|s| s.reserve_price = Some(99)), "reserve_price"),
        (
            with(|s| s.buy_now_price = Some(99)),
            "buy_now_price must be at least starting_price",
        ),
        (
            with(|s| {
                s.reserve_price = Some(500);
                s.buy_now_price = Some(400);
            }),
            "buy_now_price must be at least reserve_price",
        ),
        (with(|s| s.soft_close = soft(0, 60)), "window_secs"),
        (with(|s| s.soft_close = soft(60, 0)), "extend_secs"),
    ];
    for (spec, reason) in cases {
        let (_, responses) = run(vec![at(STARTS, create(spec), Want::Code("invalid_input"))]);
        match &responses[0] {
            Response::Rejected(Rejection::InvalidInput { reason: got }) => {
                assert!(got.contains(reason), "wanted {reason:?} in {got:?}")
            }
            other => panic!("{other:?}"),
        }
    }
    // The edges that are allowed.
    let fine = [
        with(|s| s.ends_at_ms = s.starts_at_ms + 365 * 86_400_000),
        with(|s| {
            s.reserve_price = Some(100);
            s.buy_now_price = Some(100);
        }),
        with(|s| s.increment = IncrementRule::Table(vec![band(0, 1), band(1, 2)])),
        with(|s| {
            s.soft_close = Some(SoftClose {
                window_secs: 1,
                extend_secs: 1,
                max_extensions: 0,
            })
        }),
    ];
    for spec in fine {
        assert_eq!(spec.validate(), Ok(()));
    }
}

// ---------------------------------------------------------------------------------------
// Proxy bidding

#[test]
fn proxy_bidding_table() {
    use IncrementRule::{Fixed, Table};
    let bands = || {
        Table(vec![
            IncrementBand { from: 0, increment: 10 },
            IncrementBand {
                from: 1_000,
                increment: 50,
            },
            IncrementBand {
                from: 5_000,
                increment: 100,
            },
        ])
    };
    // (name, increment, reserve, bids, expected (price, leader) after each bid)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, IncrementRule, Option<Money>, Vec<Op>, Vec<(Money, &str)>)> = vec![
        (
            "first bid sets the price",
            Fixed(10),
            None,
            vec![bid(1, "alice", 130)],
            vec![(130, "alice")],
        ),
        (
            "pure proxy bids the minimum",
            Fixed(10),
            None,
            vec![proxy(1, "alice", 500)],
            vec![(100, "alice")],
        ),
        (
            "challenger below the leader's max: proxy answers one step above",
            Fixed(10),
            None,
            vec![proxy(1, "alice", 500), bid(1, "bob", 200)],
            vec![(100, "alice"), (210, "alice")],
        ),
        (
            "proxy answer is capped by the leader's max",
            Fixed(10),
            None,
            vec![proxy(1, "alice", 500), bid(1, "bob", 495)],
            vec![(100, "alice"), (500, "alice")],
        ),
        (
            "challenger equal to the leader's max: tie goes to the earlier bid",
            Fixed(10),
            None,
            vec![proxy(1, "alice", 500), bid(1, "bob", 500)],
            vec![(100, "alice"), (500, "alice")],
        ),
        (
            "challenger above the leader's max: one step above it",
            Fixed(10),
            None,
            vec![proxy(1, "alice", 500), proxy(1, "bob", 800)],
            vec![(100, "alice"), (510, "bob")],
        ),
        (
            "challenger just above the leader's max pays their own max",
            Fixed(10),
            None,
            vec![proxy(1, "alice", 500), proxy(1, "bob", 505)],
            vec![(100, "alice"), (505, "bob")],
        ),
        (
            "an open amount above the proxy step is the price",
            Fixed(10),
            None,
            vec![proxy(1, "alice", 500), bid_up_to(1, "bob", 700, 900)],
            vec![(100, "alice"), (700, "bob")],
        ),
        (
            "leader raises their max: price unchanged",
            Fixed(10),
            None,
            vec![proxy(1, "alice", 500), proxy(1, "alice", 800), bid(1, "bob", 600)],
            vec![(100, "alice"), (100, "alice"), (610, "alice")],
        ),
        (
            "straight bids alternate",
            Fixed(10),
            None,
            vec![bid(1, "alice", 100), bid(1, "bob", 110), bid(1, "alice", 120)],
            vec![(100, "alice"), (110, "bob"), (120, "alice")],
        ),
        (
            "proxy war climbs to the lower max plus a step",
            Fixed(25),
            None,
            vec![proxy(1, "alice", 300), proxy(1, "bob", 1_000), proxy(1, "alice", 2_000)],
            vec![(100, "alice"), (325, "bob"), (1_025, "alice")],
        ),
        (
            "reserve jump: a max at or over the reserve lifts the price to it",
            Fixed(10),
            Some(400),
            vec![proxy(1, "alice", 500)],
            vec![(400, "alice")],
        ),
        (
            "reserve not met, then the leader raises over it",
            Fixed(10),
            Some(400),
            vec![proxy(1, "alice", 300), proxy(1, "alice", 450)],
            vec![(100, "alice"), (400, "alice")],
        ),
        (
            "a challenger under the reserve does not trigger it",
            Fixed(10),
            Some(400),
            vec![proxy(1, "alice", 300), proxy(1, "bob", 350)],
            vec![(100, "alice"), (310, "bob")],
        ),
        (
            "a winning challenger over the reserve jumps to it",
            Fixed(10),
            Some(400),
            vec![proxy(1, "alice", 300), proxy(1, "bob", 900)],
            vec![(100, "alice"), (400, "bob")],
        ),
        (
            "a losing challenger pushes a leader already over the reserve above it",
            Fixed(10),
            Some(400),
            vec![proxy(1, "alice", 900), bid(1, "bob", 600)],
            vec![(400, "alice"), (610, "alice")],
        ),
        (
            "increment table: the band containing the price applies",
            bands(),
            None,
            vec![
                bid(1, "alice", 990),
                bid(1, "bob", 1_000),
                bid(1, "alice", 1_050),
                bid(1, "bob", 5_000),
                bid(1, "alice", 5_100),
            ],
            vec![
                (990, "alice"),
                (1_000, "bob"),
                (1_050, "alice"),
                (5_000, "bob"),
                (5_100, "alice"),
            ],
        ),
        (
            "increment table: proxy steps use the band of the loser's max",
            bands(),
            None,
            vec![proxy(1, "alice", 1_200), bid(1, "bob", 1_100), proxy(1, "bob", 4_000)],
            vec![(100, "alice"), (1_150, "alice"), (1_250, "bob")],
        ),
    ];
    for (name, increment, reserve, bids, expected) in cases {
        let spec = with(|s| {
            s.increment = increment;
            s.reserve_price = reserve;
        });
        let mut steps = vec![at(STARTS, create(spec), Want::Created(1))];
        steps.extend(
            bids.into_iter()
                .zip(&expected)
                .map(|(op, (price, leader))| at(STARTS, op, Want::Bid(*price, leader))),
        );
        let (book, _) = run(steps);
        let auction = book.auction(1).unwrap();
        let (price, leader) = expected.last().unwrap();
        assert_eq!(
            (auction.price, auction.leader.as_ref().unwrap().bidder.as_str()),
            (*price, *leader),
            "{name}"
        );
    }
}

#[test]
fn bid_increment_boundaries_in_a_table() {
    let rule = IncrementRule::Table(vec![
        IncrementBand { from: 0, increment: 10 },
        IncrementBand {
            from: 1_000,
            increment: 50,
        },
    ]);
    let table = [(0, 10), (999, 10), (1_000, 50), (u64::MAX, 50)];
    for (price, step) in table {
        assert_eq!(rule.increment_at(price), step, "at {price}");
    }
    assert_eq!(IncrementRule::Fixed(7).increment_at(123), 7);
}

#[test]
fn bid_response_and_records() {
    let (book, responses) = run(vec![
        at(STARTS, create(with(|s| s.reserve_price = Some(400))), Want::Created(1)),
        at(STARTS + 1, proxy(1, "alice", 300), Want::Bid(100, "alice")),
        at(STARTS + 2, bid(1, "bob", 200), Want::Bid(210, "alice")),
        at(STARTS + 3, proxy(1, "alice", 450), Want::Bid(400, "alice")),
    ]);
    let Response::BidAccepted(losing) = &responses[2] else {
        panic!()
    };
    assert_eq!(
        (
            losing.bid_id,
            losing.leading,
            losing.min_next_bid,
            losing.reserve_met,
            losing.ends_at_ms
        ),
        (2, false, 220, false, ENDS)
    );
    assert_eq!(
        kinds(&responses[2]),
        vec![EventKind::BidAccepted {
            bid_id: 2,
            bidder: "bob".into(),
            price: 210,
            leader: "alice".into()
        }]
    );
    let Response::BidAccepted(raise) = &responses[3] else {
        panic!()
    };
    assert_eq!(
        (raise.bid_id, raise.leading, raise.min_next_bid, raise.reserve_met),
        (3, true, 410, true)
    );

    let auction = book.auction(1).unwrap();
    let records: Vec<_> = auction
        .bids
        .iter()
        .map(|b| {
            (
                b.bid_id,
                b.seq,
                b.bidder.as_str(),
                b.amount,
                b.max_amount,
                b.price_after,
            )
        })
        .collect();
    assert_eq!(
        records,
        vec![
            (1, 3, "alice", 100, 300, 100),
            (2, 4, "bob", 200, 200, 210),
            (3, 5, "alice", 400, 450, 400)
        ]
    );
    assert_eq!(
        auction.leader,
        Some(Leader {
            bidder: "alice".into(),
            max_amount: 450,
            bid_id: 3
        })
    );
    assert_eq!(book.reserve_met(1), Some(true));
    assert_eq!(book.reserve_met(2), None);
    assert_eq!(book.min_next_bid(1), Some(410));
}

// ---------------------------------------------------------------------------------------
// Time, opening, soft close

#[test]
fn soft_close_extends_within_the_window_up_to_the_cap() {
    let soft = SoftClose {
        window_secs: 60,
        extend_secs: 120,
        max_extensions: 2,
    };
    let (book, responses) = run(vec![
        at(STARTS, create(with(|s| s.soft_close = Some(soft))), Want::Created(1)),
        // Outside the window: no extension.
        at(ENDS - 60_001, bid(1, "alice", 100), Want::Bid(100, "alice")),
        // Inside: the end moves to bid time + 120 s.
        at(ENDS - 30_000, bid(1, "bob", 110), Want::Bid(110, "bob")),
        // Still inside the (new) window: second and last extension.
        at(ENDS + 60_000, bid(1, "alice", 120), Want::Bid(120, "alice")),
        // Cap reached: no further extension.
        at(ENDS + 150_000, bid(1, "bob", 130), Want::Bid(130, "bob")),
        // Exactly at the extended end: too late, and not closable before it.
        at(
            ENDS + 179_999,
            close(1),
            Want::Reject(Rejection::NotYetEnded {
                ends_at_ms: ENDS + 180_000,
            }),
        ),
        at(
            ENDS + 180_000,
            bid(1, "alice", 200),
            Want::Reject(Rejection::AuctionClosed),
        ),
        at(ENDS + 180_000, close(1), sold("bob", 130)),
    ]);
    let ends: Vec<_> = responses[1..5]
        .iter()
        .map(|r| match r {
            Response::BidAccepted(b) => b.ends_at_ms,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(ends, vec![ENDS, ENDS + 90_000, ENDS + 180_000, ENDS + 180_000]);
    assert_eq!(
        kinds(&responses[2])[1],
        EventKind::Extended {
            ends_at_ms: ENDS + 90_000,
            extensions: 1
        }
    );
    assert_eq!(responses[4].events().len(), 1, "no Extended event once capped");
    assert_eq!(book.auction(1).unwrap().extensions, 2);
}

#[test]
fn soft_close_never_moves_the_end_earlier() {
    // extend (10 s) shorter than the window (60 s): a bid 50 s before the end would move
    // it to 40 s earlier, so nothing happens and no extension is used up.
    let soft = SoftClose {
        window_secs: 60,
        extend_secs: 10,
        max_extensions: 5,
    };
    let (book, responses) = run(vec![
        at(STARTS, create(with(|s| s.soft_close = Some(soft))), Want::Created(1)),
        at(ENDS - 50_000, bid(1, "alice", 100), Want::Ok),
        at(ENDS - 5_000, bid(1, "bob", 110), Want::Ok),
    ]);
    assert_eq!(responses[1].events().len(), 1);
    assert_eq!(
        kinds(&responses[2])[1],
        EventKind::Extended {
            ends_at_ms: ENDS + 5_000,
            extensions: 1
        }
    );
    assert_eq!(book.auction(1).unwrap().ends_at_ms, ENDS + 5_000);
}

#[test]
fn soft_close_never_extends_past_the_longest_auction() {
    // A year-long auction (the cap) with hour-long extensions: a bid in its last minute
    // may extend it only up to starts_at + 365 days, and a bid at that point not at all.
    let last = STARTS + AUCTION_DURATION_MAX_MS;
    let soft = SoftClose {
        window_secs: 120,
        extend_secs: 3_600,
        max_extensions: 10,
    };
    let (book, responses) = run(vec![
        at(
            STARTS,
            create(with(|s| {
                s.ends_at_ms = last - 60_000;
                s.soft_close = Some(soft);
            })),
            Want::Created(1),
        ),
        at(last - 90_000, bid(1, "alice", 100), Want::Ok),
        at(last - 10_000, bid(1, "bob", 110), Want::Ok),
    ]);
    assert_eq!(
        kinds(&responses[1])[1],
        EventKind::Extended {
            ends_at_ms: last,
            extensions: 1
        }
    );
    assert_eq!(responses[2].events().len(), 1, "no extension past the cap");
    assert_eq!(book.auction(1).unwrap().ends_at_ms, last);
}

#[test]
fn time_never_runs_backwards() {
    let (book, responses) = run(vec![
        at(STARTS, create(with(|s| s.starts_at_ms = 50_000)), Want::Created(1)),
        at(60_000, register(1, 5), Want::Ok),
        // Stamped before starts_at by a lagging leader, applied at 60 000: accepted.
        at(20_000, bid(1, "alice", 100), Want::Bid(100, "alice")),
        // And a close stamped long after the end makes later stamps "late" too.
        at(ENDS, close(1), Want::Ok),
        at(30_000, cancel(1, Actor::Admin), Want::Reject(Rejection::AuctionClosed)),
    ]);
    assert_eq!(kinds(&responses[2])[0], EventKind::Opened);
    assert!(responses[2].events().iter().all(|e| e.ts_ms == 60_000));
    assert_eq!(book.auction(1).unwrap().bids[0].ts_ms, 60_000);
    assert_eq!(book.last_ts_ms(), ENDS);
}

#[test]
fn opening_is_by_time_and_idempotent() {
    let (book, responses) = run(vec![
        at(STARTS, create(spec()), Want::Created(1)),
        at(STARTS - 1, create(spec()), Want::Created(2)),
        at(5_000, create(with(|s| s.starts_at_ms = 50_000)), Want::Created(3)),
        at(50_000, open(3), Want::Ok),
        at(50_001, open(3), Want::Ok),
        at(50_002, create(with(|s| s.starts_at_ms = 60_000)), Want::Created(4)),
        at(60_000, bid(4, "alice", 100), Want::Bid(100, "alice")),
    ]);
    // Created at/after starts_at: Created then Opened at once.
    assert_eq!(kinds(&responses[0]), vec![EventKind::Created, EventKind::Opened]);
    assert_eq!(seqs(&responses[0]), vec![1, 2]);
    // starts_at is in the past when applied (time is max(ts, last)): open at once.
    assert_eq!(book.auction(2).unwrap().status, AuctionStatus::Open);
    assert_eq!(kinds(&responses[2]), vec![EventKind::Created]);
    assert_eq!(kinds(&responses[3]), vec![EventKind::Opened]);
    assert_eq!(seqs(&responses[3]), vec![2]);
    assert!(responses[4].events().is_empty(), "opening an open auction is a no-op");
    // A bid after starts_at opens a scheduled auction first.
    assert_eq!(seqs(&responses[6]), vec![2, 3]);
    assert_eq!(kinds(&responses[6])[0], EventKind::Opened);
    let statuses: Vec<_> = book.auctions().map(|a| (a.id, a.status)).collect();
    assert_eq!(
        statuses,
        vec![
            (1, AuctionStatus::Open),
            (2, AuctionStatus::Open),
            (3, AuctionStatus::Open),
            (4, AuctionStatus::Open)
        ]
    );
}

#[test]
fn a_rejected_bid_does_not_open_a_scheduled_auction() {
    let (book, _) = run(vec![
        at(STARTS, create(with(|s| s.starts_at_ms = 50_000)), Want::Created(1)),
        at(
            50_000,
            bid(1, "alice", 5),
            Want::Reject(Rejection::BidTooLow { min_next_bid: 100 }),
        ),
    ]);
    assert_eq!(book.auction(1).unwrap().status, AuctionStatus::Scheduled);
    assert_eq!(book.last_ts_ms(), 50_000);
}

#[test]
fn buy_now_opens_a_due_auction_and_ends_it() {
    let (book, responses) = run(vec![
        at(
            STARTS,
            create(with(|s| {
                s.starts_at_ms = 50_000;
                s.buy_now_price = Some(700);
            })),
            Want::Created(1),
        ),
        at(
            50_000,
            buy(1, "bob"),
            Want::Ended(Outcome::BoughtNow {
                buyer: "bob".into(),
                price: 700,
            }),
        ),
    ]);
    assert_eq!(
        kinds(&responses[1]),
        vec![
            EventKind::Opened,
            EventKind::Closed {
                outcome: Outcome::BoughtNow {
                    buyer: "bob".into(),
                    price: 700
                }
            }
        ]
    );
    assert_eq!(book.auction(1).unwrap().status, AuctionStatus::Closed);
}

// ---------------------------------------------------------------------------------------
// Events

#[test]
fn event_seqs_are_gapless_and_replay_is_bounded() {
    let mut steps = vec![at(STARTS, create(spec()), Want::Created(1))];
    for i in 0..300u64 {
        let bidder = if i % 2 == 0 { "alice" } else { "bob" };
        steps.push(at(STARTS + i, bid(1, bidder, 100 + 10 * i), Want::Ok));
    }
    steps.push(at(ENDS, close(1), Want::Ok));
    let (book, responses) = run(steps);
    let all: Vec<u64> = responses.iter().flat_map(seqs).collect();
    assert_eq!(all, (1..=303).collect::<Vec<_>>());
    assert_eq!(book.auction(1).unwrap().seq, 303);

    let kept = book.recent_events(1, 0);
    assert_eq!(kept.len(), RECENT_EVENTS_MAX);
    assert_eq!((kept[0].seq, kept.last().unwrap().seq), (303 - 255, 303));
    assert_eq!(
        book.recent_events(1, 300).iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![301, 302, 303]
    );
    assert!(book.recent_events(1, 303).is_empty());
    assert!(book.recent_events(2, 0).is_empty());
}

// ---------------------------------------------------------------------------------------
// Idempotency

#[test]
fn idempotent_replay_returns_the_first_response_and_changes_nothing() {
    let mut book = AuctionBook::new();
    let first = run_on(
        &mut book,
        vec![
            at(STARTS, create(spec()), Want::Created(1)).key("create-1"),
            at(STARTS, bid(1, "alice", 100), Want::Bid(100, "alice")).key("bid-a"),
            at(STARTS, bid(1, "bob", 5), Want::Code("bid_too_low")).key("bid-low"),
        ],
    );
    let hash = book.state_hash();
    let last_ts = book.last_ts_ms();
    let replays = run_on(
        &mut book,
        vec![
            at(STARTS + 5_000, create(spec()), Want::Created(1)).key("create-1"),
            at(STARTS + 5_000, bid(1, "alice", 100), Want::Bid(100, "alice")).key("bid-a"),
            // The stored rejection is returned even though the op would now be valid
            // elsewhere: Stripe semantics.
            at(STARTS + 5_000, bid(1, "bob", 5), Want::Code("bid_too_low")).key("bid-low"),
            at(
                STARTS + 5_000,
                bid(1, "bob", 500),
                Want::Reject(Rejection::IdempotencyKeyReused),
            )
            .key("bid-a"),
        ],
    );
    // A replay is the first answer without its events (a replay pushes nothing).
    let first: Vec<Response> = first.iter().map(Response::without_events).collect();
    assert_eq!(first, replays[..3]);
    assert_eq!(book.state_hash(), hash, "replays and key reuse change nothing");
    assert_eq!(book.last_ts_ms(), last_ts);
    assert_eq!(book.auctions().count(), 1);
    assert_eq!(book.counts().idempotency_keys, 3);

    // Without a key the same op is simply applied again.
    run_on(
        &mut book,
        vec![at(STARTS + 6_000, bid(1, "alice", 500), Want::Bid(100, "alice"))],
    );
}

fn limits(keys_max: u64, keys_per_client: u64, ttl_ms: u64) -> IdempotencyLimits {
    IdempotencyLimits {
        keys_max,
        keys_per_client,
        ttl_ms,
        filter_bits_per_hour: 1 << 12,
    }
}

/// A keyed command from `client`.
fn keyed(ts: TimestampMs, op: Op, key: &str, client: u64) -> Command {
    let cmd = Command::new(ts, op);
    let tag = idempotency::Idempotency {
        key: idempotency::key_digest(key),
        request: idempotency::fingerprint(&cmd.op),
        client,
    };
    cmd.with_idempotency(tag)
}

fn code_of(r: &Response) -> Option<&'static str> {
    match r {
        Response::Rejected(rejection) => Some(rejection.code()),
        _ => None,
    }
}

#[test]
fn idempotency_keys_expire_by_command_time() {
    let mut book = AuctionBook::with_idempotency_limits(limits(10, 10, 1_000));
    run_on(
        &mut book,
        vec![
            at(STARTS, create(spec()), Want::Created(1)).key("k"),
            at(STARTS + 999, create(spec()), Want::Created(1)).key("k"),
            // Past its time: the key is free again and a different op under it is applied.
            at(STARTS + 1_000, create(spec()), Want::Created(2)).key("k"),
            at(STARTS + 1_500, bid(1, "alice", 100), Want::Ok).key("other"),
        ],
    );
    assert_eq!(book.counts().idempotency_keys, 2);
    // "k" was stored at STARTS + 1 000, so it is over at STARTS + 2 000, when the next
    // keyed command drops it; "other" is still held. Nothing went early.
    run_on(
        &mut book,
        vec![at(STARTS + 2_000, bid(1, "bob", 200), Want::Ok).key("third")],
    );
    assert!(!book.idempotency.contains("k"));
    assert!(book.idempotency.contains("other") && book.idempotency.contains("third"));
    assert_eq!(book.idempotency_stats().evicted_total, 0);
}

#[test]
fn a_key_let_go_early_is_refused_as_expired_never_run_again() {
    // Two keys per client: the third key of client 7 lets its first go early.
    let mut book = AuctionBook::with_idempotency_limits(limits(100, 2, IDEMPOTENCY_TTL_MS));
    let first = book.apply(&keyed(STARTS, create(spec()), "a", 7));
    assert!(matches!(first, Response::AuctionCreated { auction_id: 1, .. }));
    book.apply(&keyed(STARTS + 1, create(spec()), "b", 7));
    book.apply(&keyed(STARTS + 2, create(spec()), "c", 7));
    assert!(!book.idempotency.contains("a"));
    let hash = book.state_hash();
    let retry = book.apply(&keyed(STARTS + 3, create(spec()), "a", 7));
    assert_eq!(code_of(&retry), Some("idempotency_key_expired"));
    assert_eq!(book.state_hash(), hash, "the expired retry changed nothing");
    assert_eq!(book.auctions().count(), 3, "and created no fourth auction");
    // "b" and "c" are still answered from the table.
    let replay = book.apply(&keyed(STARTS + 4, create(spec()), "c", 7));
    assert!(matches!(replay, Response::AuctionCreated { auction_id: 3, .. }));
    assert_eq!(book.idempotency_stats().evicted_total, 1);
    check_decodes_the_same(&book);
}

#[test]
fn one_client_cannot_push_out_anothers_keys() {
    // Room for 4 keys in all, 3 per client. Client 1 holds one key; client 2 floods.
    let mut book = AuctionBook::with_idempotency_limits(limits(4, 3, IDEMPOTENCY_TTL_MS));
    book.apply(&keyed(STARTS, create(spec()), "mine", 1));
    for i in 0..20u64 {
        let r = book.apply(&keyed(STARTS + 1 + i, create(spec()), &format!("flood-{i}"), 2));
        assert!(code_of(&r).is_none(), "flood {i}: {r:?}");
    }
    assert!(book.idempotency.contains("mine"), "client 1's key survived the flood");
    assert!(book.idempotency.contains("flood-19") && !book.idempotency.contains("flood-0"));
    // A third client arrives with the table full: the biggest client (2) gives way.
    book.apply(&keyed(STARTS + 30, create(spec()), "theirs", 3));
    assert!(book.idempotency.contains("mine") && book.idempotency.contains("theirs"));
    assert_eq!(book.counts().idempotency_keys, 4);
    let again = book.apply(&keyed(STARTS + 31, create(spec()), "mine", 1));
    assert!(matches!(again, Response::AuctionCreated { auction_id: 1, .. }));
    check_decodes_the_same(&book);
}

#[test]
fn without_filter_budget_a_request_is_refused_not_forgotten() {
    // 2^10 bits per hour records 1024 / 15 = 68 early evictions.
    let tight = IdempotencyLimits {
        filter_bits_per_hour: 1 << 10,
        ..limits(1_000, 1, IDEMPOTENCY_TTL_MS)
    };
    let mut book = AuctionBook::with_idempotency_limits(tight);
    let mut refused_at = None;
    for i in 0..200u64 {
        let r = book.apply(&keyed(STARTS + i, create(spec()), &format!("k{i}"), 9));
        if code_of(&r) == Some("idempotency_capacity_exhausted") {
            refused_at = Some(i);
            break;
        }
    }
    let refused_at = refused_at.expect("the hour's budget runs out");
    assert_eq!(refused_at, 69, "68 early evictions fit, the 69th has no room");
    assert_eq!(book.auctions().count(), 69, "the refused request was not executed");
    // Every key let go is still recognised.
    for i in 0..refused_at - 1 {
        let r = book.apply(&keyed(STARTS + 500, create(spec()), &format!("k{i}"), 9));
        assert_eq!(code_of(&r), Some("idempotency_key_expired"), "k{i}");
    }
    // The next hour has a budget again.
    let r = book.apply(&keyed(STARTS + 3_600_000, open(1), "later", 9));
    assert_eq!(code_of(&r), None, "{r:?}");
    // After 24 hours past its hour the old filter is gone and k0 is a new request.
    let r = book.apply(&keyed(STARTS + 2 * IDEMPOTENCY_TTL_MS, register(1, 5), "k0", 9));
    assert_eq!(code_of(&r), None, "{r:?}");
}

#[test]
fn the_filter_rarely_refuses_a_new_key() {
    // At full budget the false-positive rate stays at about 0.1%.
    let mut book = AuctionBook::with_idempotency_limits(IdempotencyLimits {
        filter_bits_per_hour: 1 << 16,
        ..limits(10, 1, IDEMPOTENCY_TTL_MS)
    });
    let budget = (1u64 << 16) / 15;
    for i in 0..budget {
        book.apply(&keyed(STARTS, open(1), &format!("old-{i}"), 1));
    }
    let false_refusals = (0..20_000u64)
        .filter(|i| {
            let r = book.apply(&keyed(STARTS + 1, open(1), &format!("new-{i}"), 2 + i));
            code_of(&r) == Some("idempotency_key_expired")
        })
        .count();
    assert!(
        false_refusals <= 60,
        "{false_refusals} of 20000 new keys refused as expired"
    );
}

fn check_decodes_the_same(book: &AuctionBook) {
    assert_eq!(&AuctionBook::decode(&book.encode()).unwrap(), book);
}

#[test]
fn idempotency_limits_are_part_of_the_state() {
    let mut book = AuctionBook::new();
    let small = limits(2, 2, IDEMPOTENCY_TTL_MS);
    assert_ne!(
        AuctionBook::new().state_hash(),
        AuctionBook::with_idempotency_limits(small).state_hash()
    );
    let r = book.apply(&Command::new(STARTS, Op::SetIdempotencyLimits(small)));
    assert_eq!(r, Response::None);
    assert_eq!(book.idempotency_limits(), small);
    let bad = limits(0, 1, 1);
    let r = book.apply(&Command::new(STARTS, Op::SetIdempotencyLimits(bad)));
    assert_eq!(code_of(&r), Some("invalid_input"));
    check_decodes_the_same(&book);
}

// ---------------------------------------------------------------------------------------
// Workers

#[test]
fn worker_capacity_assignment_and_removal() {
    let (book, responses) = run(vec![
        at(STARTS, register(1, 2), Want::Ok),
        at(STARTS + 5, register(2, 1), Want::Ok),
        at(STARTS, create_on(spec(), 1), Want::Created(1)),
        at(STARTS, create_on(spec(), 1), Want::Created(2)),
        at(
            STARTS,
            create_on(spec(), 1),
            Want::Reject(Rejection::NoCapacity { node_id: 1 }),
        ),
        // Ending an auction frees its slot.
        at(STARTS, cancel(2, Actor::Admin), Want::Ok),
        at(STARTS, create_on(spec(), 1), Want::Created(3)),
        // Re-registration updates capacity but keeps registered_at_ms.
        at(STARTS + 50, register(1, 3), Want::Ok),
        at(STARTS + 50, create_on(spec(), 1), Want::Created(4)),
        // Assigning to the worker it is already on: no-op, no event.
        at(STARTS + 60, assign(1, 1), Want::Ok),
        at(STARTS + 60, assign(1, 2), Want::Ok),
        at(
            STARTS + 60,
            assign(3, 2),
            Want::Reject(Rejection::NoCapacity { node_id: 2 }),
        ),
        at(STARTS + 70, remove(1), Want::Ok),
    ]);
    assert!(responses[9].events().is_empty());
    assert_eq!(kinds(&responses[10]), vec![EventKind::Reassigned { worker: Some(2) }]);
    assert_eq!(seqs(&responses[10]), vec![3]);
    assert_eq!(
        responses[12],
        Response::WorkerRemoved {
            node_id: 1,
            orphaned: vec![3, 4]
        }
    );

    let workers: Vec<_> = book
        .workers()
        .values()
        .map(|w| (w.node_id, w.max_auctions, w.registered_at_ms))
        .collect();
    assert_eq!(workers, vec![(2, 1, STARTS + 5)]);
    assert_eq!(book.hosted_by(1), Vec::<AuctionId>::new());
    assert_eq!(book.hosted_by(2), vec![1]);
    let hosts: Vec<_> = book.auctions().map(|a| (a.id, a.worker)).collect();
    // The cancelled auction keeps the worker it ended on.
    assert_eq!(hosts, vec![(1, Some(2)), (2, Some(1)), (3, None), (4, None)]);

    // Orphans can be reassigned; re-registering 1 starts it empty.
    let mut book = book;
    run_on(
        &mut book,
        vec![
            at(STARTS + 80, register(1, 0), Want::Ok),
            at(
                STARTS + 80,
                assign(3, 1),
                Want::Reject(Rejection::NoCapacity { node_id: 1 }),
            ),
            at(STARTS + 80, register(1, 1), Want::Ok),
            at(STARTS + 80, assign(3, 1), Want::Ok),
        ],
    );
    assert_eq!(book.workers()[&1].registered_at_ms, STARTS + 80);
    assert_eq!(book.hosted_by(1), vec![3]);
}

#[test]
fn closing_frees_worker_capacity() {
    let (book, _) = run(vec![
        at(STARTS, register(1, 1), Want::Ok),
        at(STARTS, create_on(spec(), 1), Want::Created(1)),
        at(ENDS, close(1), Want::Ok),
        at(ENDS, create_on(with(|s| s.ends_at_ms = 2 * ENDS), 1), Want::Created(2)),
    ]);
    assert_eq!(book.hosted_by(1), vec![2]);
}

// ---------------------------------------------------------------------------------------
// Encoding, hashing, counts

#[test]
fn encode_decode_round_trip_and_corruption() {
    let (book, _) = run(vec![
        at(STARTS, register(1, 5), Want::Ok),
        at(
            STARTS,
            create_on(with(|s| s.reserve_price = Some(300)), 1),
            Want::Created(1),
        ),
        at(STARTS, create(spec()), Want::Created(2)),
        at(STARTS, proxy(1, "alice", 500), Want::Ok).key("x"),
        at(STARTS, cancel(2, seller(SELLER)), Want::Ok),
    ]);
    let bytes = book.encode();
    let decoded = AuctionBook::decode(&bytes).unwrap();
    assert_eq!(decoded, book);
    assert_eq!(decoded.state_hash(), book.state_hash());
    let hash = book.state_hash();
    assert_eq!(hash.len(), 64);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(AuctionBook::new().encode(), AuctionBook::default().encode());

    let mut trailing = bytes.clone();
    trailing.push(0);
    let err = AuctionBook::decode(&trailing).unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");
    assert!(matches!(
        AuctionBook::decode(&bytes[..bytes.len() - 3]),
        Err(crate::Error::Corrupt { .. })
    ));
    assert!(matches!(
        AuctionBook::decode(b"not a book"),
        Err(crate::Error::Corrupt { .. })
    ));

    // A structurally valid encoding that breaks an invariant is refused too.
    let mut broken = book.clone();
    broken.auctions.get_mut(&1).unwrap().price = 10_000;
    let err = AuctionBook::decode(&broken.encode()).unwrap_err();
    assert!(err.to_string().contains("price"), "{err}");

    let counts = book.counts();
    let by_status: Vec<_> = counts
        .auctions_by_status
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        by_status,
        vec![("cancelled", 1), ("closed", 0), ("open", 1), ("scheduled", 0)]
    );
    assert_eq!((counts.bids, counts.workers, counts.idempotency_keys), (1, 1, 1));
}

#[test]
fn subscriptions_renew_expire_and_survive_a_snapshot() {
    let (mut book, _) = run(vec![
        at(STARTS, create(spec()), Want::Created(1)),
        at(STARTS, sub(1, "127.0.0.1:9000", 10), Want::Ok),
        at(STARTS, sub(1, "[::1]:9001", 20), Want::Ok),
    ]);
    let live = |book: &AuctionBook, now| book.subscribers(1, now).into_iter().map(|(a, _)| a).collect::<Vec<_>>();
    assert_eq!(live(&book, STARTS), vec!["127.0.0.1:9000", "[::1]:9001"]);
    assert_eq!(
        live(&book, STARTS + 15_000),
        vec!["[::1]:9001"],
        "the first expired after 10 s"
    );
    run_on(
        &mut book,
        vec![at(STARTS + 5_000, sub(1, "127.0.0.1:9000", 60), Want::Ok)],
    );
    assert_eq!(
        live(&book, STARTS + 30_000),
        vec!["127.0.0.1:9000"],
        "renewed for 60 s from its renewal"
    );
    let copy = AuctionBook::decode(&book.encode()).unwrap();
    assert_eq!(live(&copy, STARTS + 30_000), vec!["127.0.0.1:9000"]);
    run_on(
        &mut book,
        vec![at(
            STARTS + 6_000,
            Op::Unsubscribe {
                auction_id: 1,
                addr: "127.0.0.1:9000".into(),
            },
            Want::Ok,
        )],
    );
    assert!(live(&book, STARTS + 6_000).iter().all(|a| a != "127.0.0.1:9000"));
}

#[test]
fn a_batch_applies_like_separate_entries_and_does_not_nest() {
    let commands = vec![
        Command::new(STARTS, create(spec())),
        Command::new(STARTS + 1, bid(1, "alice", 100)).with_key("k1"),
        Command::new(STARTS + 2, bid(1, "bob", 50)),
        Command::new(STARTS + 3, bid(1, "alice", 100)).with_key("k1"),
    ];
    let mut separate = AuctionBook::new();
    let one_by_one: Vec<Response> = commands.iter().map(|c| separate.apply(c)).collect();
    let mut batched = AuctionBook::new();
    let response = batched.apply(&Command::new(STARTS + 3, Op::Batch(commands.clone())));
    assert_eq!(response, Response::Batch(one_by_one));
    assert_eq!(batched.state_hash(), separate.state_hash());
    let nested = batched.apply(&Command::new(
        STARTS + 4,
        Op::Batch(vec![Command::new(STARTS + 4, Op::Batch(vec![]))]),
    ));
    assert!(
        matches!(nested, Response::Batch(ref r) if matches!(r[0], Response::Rejected(Rejection::InvalidInput { .. })))
    );
}

/// `refuses_early` (the leader's refusal without a Raft round) answers only where `apply`
/// would refuse the bid as too low, with the same rejection; anything else is left to
/// Raft. Checked over a run of straight and proxy bids at every price step, and for the
/// cases that must go through Raft.
#[test]
fn an_early_refusal_is_exactly_the_refusal_apply_gives() {
    let mut book = AuctionBook::default();
    book.apply(&Command::new(1, create(spec())));
    let bidders = ["ann", "bob", "cat"];
    let mut early = 0;
    for step in 0..300u64 {
        let ts = STARTS + step;
        let who = bidders[(step % 3) as usize];
        let op = if step % 4 == 0 {
            proxy(1, who, 100 + (step * 37) % 900)
        } else {
            bid(1, who, 100 + (step * 53) % 700)
        };
        let cmd = Command::new(ts, op);
        let answer = book.clone().apply(&cmd);
        match book.refuses_early(&cmd) {
            Some(refused) => {
                early += 1;
                assert_eq!(answer, Response::Rejected(refused), "step {step}");
                assert_eq!(code_of(&answer), Some("bid_too_low"));
            }
            None => assert_ne!(code_of(&answer), Some("bid_too_low"), "step {step}: {answer:?}"),
        }
        book.apply(&cmd);
    }
    assert!(early > 50, "only {early} early refusals");

    let too_low = bid(1, "dan", 100);
    let plain = Command::new(STARTS + 400, too_low.clone());
    assert!(book.refuses_early(&plain).is_some());
    // A keyed bid goes through Raft: a retry must get its first attempt's answer.
    assert_eq!(book.refuses_early(&keyed(STARTS + 400, too_low.clone(), "k", 1)), None);
    // After the end the answer is auction_closed, not bid_too_low: Raft gives it.
    assert_eq!(book.refuses_early(&Command::new(ENDS, too_low.clone())), None);
    // The seller's own bid, an unknown auction, a well-placed bid: not early either.
    assert_eq!(
        book.refuses_early(&Command::new(STARTS + 400, bid(1, SELLER, 100))),
        None
    );
    assert_eq!(
        book.refuses_early(&Command::new(STARTS + 400, bid(9, "dan", 100))),
        None
    );
    assert_eq!(
        book.refuses_early(&Command::new(STARTS + 400, bid(1, "dan", 1_000_000))),
        None
    );
}
