//! Property tests of the non-English formats: over random bids, a sealed amount never
//! shows in anything public before the close (the auction's price and leader, its
//! events), and each format's outcome is the one an independent model of its rules
//! computes from the committed bids.

use std::collections::BTreeMap;

use gavel_storage::book::formats::{DutchSpec, Format};
use gavel_storage::book::rounds::MultiRoundSpec;
use gavel_storage::{AuctionBook, AuctionSpec, Command, IncrementRule, Op, Outcome, Response};
use proptest::prelude::*;

const STARTS: u64 = 10_000;
const BIDDERS: [&str; 5] = ["ann", "bob", "cy", "dee", "eve"];

fn spec(ends_at_ms: u64, reserve: Option<u64>) -> AuctionSpec {
    AuctionSpec {
        seller: "sam".into(),
        title: "lot".into(),
        starting_price: 100_000,
        increment: IncrementRule::Fixed(1),
        reserve_price: reserve,
        starts_at_ms: STARTS,
        ends_at_ms,
        soft_close: None,
        buy_now_price: None,
    }
}

fn apply(book: &mut AuctionBook, ts: u64, op: Op) -> Response {
    let response = book.apply(&Command::new(ts, op));
    book.check_invariants().expect("invariants hold");
    response
}

fn bid(bidder: &str, amount: u64) -> Op {
    Op::PlaceBid {
        auction_id: 1,
        bidder: bidder.into(),
        amount: Some(amount),
        max_amount: None,
    }
}

fn outcome(book: &AuctionBook) -> Outcome {
    book.auction(1)
        .and_then(|a| a.outcome.clone())
        .expect("the auction ended")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Sealed first and second price: every bid is hidden until the close, and the
    /// outcome is the model's: each bidder's last bid counts, the highest wins (ties:
    /// the earlier bid), first price pays its bid, second price the next bid raised to
    /// the reserve (a lone bid without reserve pays itself).
    #[test]
    fn sealed_bids_stay_hidden_and_decide_the_outcome(
        second_price in any::<bool>(),
        reserve in proptest::option::of(100_000u64..200_000),
        bids in proptest::collection::vec((0..BIDDERS.len(), 100_000u64..200_000), 0..25),
    ) {
        let ends = STARTS + 1_000_000;
        let format = if second_price { Format::SealedSecondPrice } else { Format::SealedFirstPrice };
        let mut book = AuctionBook::new();
        apply(&mut book, STARTS, Op::CreateFormatAuction { spec: spec(ends, reserve), format, worker: None });
        // bidder → (amount, order of their last bid)
        let mut last: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
        for (i, (who, amount)) in bids.iter().enumerate() {
            let response = apply(&mut book, STARTS + 1 + i as u64, bid(BIDDERS[*who], *amount));
            prop_assert!(matches!(response, Response::SealedBidAccepted { .. }), "{:?}", response);
            last.insert(BIDDERS[*who], (*amount, i));
            let auction = book.auction(1).unwrap();
            prop_assert!(auction.leader.is_none() && auction.price == 0);
            let public = serde_json::to_string(&(book.recent_events(1, 0), response.events())).unwrap();
            for (amount, _) in last.values() {
                prop_assert!(!public.contains(&amount.to_string()), "{} is public: {}", amount, public);
            }
        }
        apply(&mut book, ends, Op::CloseAuction { auction_id: 1 });
        let mut ranked: Vec<(&str, u64, usize)> = last.iter().map(|(b, (a, i))| (*b, *a, *i)).collect();
        ranked.sort_by(|x, y| y.1.cmp(&x.1).then(x.2.cmp(&y.2)));
        let expected = match ranked.first() {
            None => Outcome::NoBids,
            Some((b, a, _)) if reserve.is_some_and(|r| *a < r) => Outcome::ReserveNotMet { highest_bidder: b.to_string(), highest_bid: *a },
            Some((b, a, _)) => {
                let price = if !second_price {
                    *a
                } else {
                    match (ranked.get(1).map(|x| x.1), reserve) {
                        (None, None) => *a,
                        (second, reserve) => second.unwrap_or(0).max(reserve.unwrap_or(0)),
                    }
                };
                Outcome::Sold { winner: b.to_string(), price }
            }
        };
        prop_assert_eq!(outcome(&book), expected);
        for b in BIDDERS {
            prop_assert_eq!(book.exposure(b), 0);
        }
    }

    /// Dutch: the first bid at or above the price at its time wins at that price; the
    /// price is the model's stepwise fall to the floor.
    #[test]
    fn a_dutch_auction_sells_to_the_first_bid_at_the_falling_price(
        decrement in 1u64..5_000,
        every_secs in 1u64..10,
        floor_offset in 0u64..100_000,
        bids in proptest::collection::vec((0..BIDDERS.len(), 1u64..60_000, 0u64..200_000), 0..12),
    ) {
        let dutch = DutchSpec { decrement, decrement_every_ms: every_secs * 1000, floor_price: 100_000 - floor_offset };
        let ends = gavel_storage::book::formats::dutch_ends_at(STARTS, 100_000, &dutch).unwrap();
        let mut book = AuctionBook::new();
        apply(&mut book, STARTS, Op::CreateFormatAuction { spec: spec(ends, None), format: Format::Dutch(dutch), worker: None });
        // The model's price: one step at a time.
        let price_at = |t: u64| {
            let mut price = 100_000u64;
            let mut step_at = STARTS + dutch.decrement_every_ms;
            while step_at <= t && price > dutch.floor_price {
                price = price.saturating_sub(decrement).max(dutch.floor_price);
                step_at += dutch.decrement_every_ms;
            }
            price
        };
        let mut now = STARTS;
        let mut expected = None;
        for (who, gap, amount) in bids {
            now += gap;
            if now >= ends {
                break;
            }
            apply(&mut book, now, bid(BIDDERS[who], amount));
            if expected.is_none() && amount >= price_at(now) {
                expected = Some(Outcome::Sold { winner: BIDDERS[who].to_string(), price: price_at(now) });
            }
        }
        if expected.is_none() {
            apply(&mut book, ends.max(now), Op::CloseAuction { auction_id: 1 });
        }
        prop_assert_eq!(outcome(&book), expected.unwrap_or(Outcome::NoBids));
    }

    /// Multi-round: the model sums each round's bids (missing: 0), ends after a round
    /// that keeps the leader once `min_rounds` are done, or after `max_rounds`, and the
    /// highest total wins (ties: who reached it first).
    #[test]
    fn multi_round_outcomes_are_the_cumulative_totals_of_the_revealed_rounds(
        participants in 2usize..=BIDDERS.len(),
        min_rounds in 1u32..4,
        extra_rounds in 0u32..3,
        // Per round, per participant: no bid, or an amount.
        plan in proptest::collection::vec(proptest::collection::vec(proptest::option::of(100_000u64..103_000), BIDDERS.len()), 6),
    ) {
        let max_rounds = min_rounds + extra_rounds;
        let rounds_spec = MultiRoundSpec { min_rounds, max_rounds, round_ms: 10_000, min_bidders: 2, join_ms: 60_000 };
        let mut book = AuctionBook::new();
        apply(&mut book, STARTS, Op::CreateFormatAuction {
            spec: spec(STARTS + 60_000, None),
            format: Format::MultiRound(rounds_spec),
            worker: None,
        });
        let names = &BIDDERS[..participants];
        for name in names {
            apply(&mut book, STARTS + 1, Op::JoinAuction { auction_id: 1, bidder: name.to_string() });
        }
        apply(&mut book, STARTS + 2, Op::StartRounds { auction_id: 1, seller: "sam".into() });
        let mut now = STARTS + 2;
        // name → (total, (round, order reached))
        let mut totals: BTreeMap<&str, (u64, (u32, usize))> = names.iter().map(|n| (*n, (0, (0, 0)))).collect();
        let leader = |totals: &BTreeMap<&str, (u64, (u32, usize))>| {
            totals
                .iter()
                .filter(|(_, (t, _))| *t > 0)
                .min_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)))
                .map(|(n, (t, _))| (n.to_string(), *t))
        };
        let mut expected = None;
        for round in 1..=max_rounds {
            let before = leader(&totals).map(|(n, _)| n);
            let bids = &plan[(round - 1) as usize];
            let mut order = 0;
            for (i, name) in names.iter().enumerate() {
                if let Some(amount) = bids[i] {
                    now += 1;
                    apply(&mut book, now, bid(name, amount));
                    let entry = totals.get_mut(name).unwrap();
                    entry.0 += amount;
                    entry.1 = (round, order);
                    order += 1;
                }
            }
            if bids[..participants].iter().any(Option::is_none) {
                // Someone did not bid: the deadline completes the round.
                now = book.auction(1).unwrap().ends_at_ms;
                apply(&mut book, now, Op::CloseAuction { auction_id: 1 });
            }
            let after = leader(&totals);
            let unchanged = before.is_some() && before == after.as_ref().map(|(n, _)| n.clone());
            if round >= max_rounds || (round >= min_rounds && unchanged) {
                expected = Some(match after {
                    None => Outcome::NoBids,
                    Some((winner, price)) => Outcome::Sold { winner, price },
                });
                break;
            }
        }
        prop_assert_eq!(outcome(&book), expected.expect("the model ended"));
        prop_assert_eq!(book.rounds(1).unwrap().revealed.len() as u32 <= max_rounds, true);
    }
}
