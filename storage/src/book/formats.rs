//! Auction formats besides English: sealed first-price, sealed second-price (Vickrey) and
//! Dutch (descending). An auction without an entry in the book's format map is English.
//!
//! **Sealed** (first and second price). One bid per bidder, `amount` only (no proxy
//! maximum), at least the starting price; a later bid by the same bidder replaces theirs
//! until the close (the replacement's time counts for ties). While the auction runs it
//! has no leader and no price; its events (`SealedBid`) carry only the number of bidders.
//! At the close the bids are ranked by amount, ties to the earlier bid:
//! - below the reserve (or no bid): `reserve_not_met` (`no_bids`);
//! - first price: the highest bid wins and pays its amount;
//! - second price: the highest bid wins and pays the second-highest amount, raised to the
//!   reserve if the reserve is higher; a lone bid with no reserve pays its own amount.
//!
//! Every bid counts against its bidder's budget until the close: any of them may win.
//!
//! **Dutch.** The price starts at `starting_price` at `starts_at` and falls by
//! `decrement` every `decrement_every_ms`, down to `floor_price`, computed from
//! leader-stamped command time ([`dutch_price`]): nothing is proposed per step. The first
//! bid with `amount` at or above the current price wins at the current price, and the
//! auction closes at once (`sold`). The floor holds for one period; the auction's
//! `ends_at` is when it would fall below ([`dutch_ends_at`]), and it closes `no_bids`
//! then.

use serde::{Deserialize, Serialize};

use super::accounts::Signed;
use super::lifecycle::{check_biddable, check_party};
use super::AuctionBook;
use crate::command::{BidAccepted, Rejection, Response};
use crate::types::{
    check_amount, AuctionId, AuctionSpec, AuctionStatus, BidRecord, EventKind, Leader, Money, Outcome, TimestampMs,
    AUCTION_DURATION_MAX_MS,
};

/// The format of a non-English auction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    SealedFirstPrice,
    SealedSecondPrice,
    Dutch(DutchSpec),
    /// Multi-round cumulative sealed bidding (see `book::rounds`).
    MultiRound(super::rounds::MultiRoundSpec),
}

/// A Dutch auction's descent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DutchSpec {
    pub decrement: Money,
    pub decrement_every_ms: u64,
    pub floor_price: Money,
}

/// Shortest Dutch price step.
pub const DUTCH_STEP_MIN_MS: u64 = 1_000;

impl Format {
    /// The name clients use (`"format"` in the API).
    pub fn name(&self) -> &'static str {
        match self {
            Format::SealedFirstPrice => "sealed_first_price",
            Format::SealedSecondPrice => "sealed_second_price",
            Format::Dutch(_) => "dutch",
            Format::MultiRound(_) => "multi_round_sealed",
        }
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self, Format::SealedFirstPrice | Format::SealedSecondPrice)
    }

    /// Checks the spec against the format: the English-only fields are absent, and a
    /// Dutch descent is well formed and ends when [`dutch_ends_at`] says. The error names
    /// the field.
    pub fn validate(&self, spec: &AuctionSpec) -> Result<(), String> {
        if spec.soft_close.is_some() {
            return Err(format!("soft_close does not fit a {} auction", self.name()));
        }
        if spec.buy_now_price.is_some() {
            return Err(format!("buy_now_price does not fit a {} auction", self.name()));
        }
        if let Format::MultiRound(rounds) = self {
            rounds.validate()?;
            if spec.ends_at_ms != spec.starts_at_ms.saturating_add(rounds.join_ms) {
                return Err("a multi_round_sealed auction's joining window ends at starts_at + join_secs".into());
            }
            return Ok(());
        }
        let Format::Dutch(dutch) = self else {
            return Ok(());
        };
        if spec.reserve_price.is_some() {
            return Err("reserve_price does not fit a dutch auction: floor_price is its lowest price".into());
        }
        if dutch.decrement == 0 {
            return Err("decrement must be greater than 0".into());
        }
        check_amount("decrement", dutch.decrement)?;
        if dutch.decrement_every_ms < DUTCH_STEP_MIN_MS {
            return Err("decrement_every_secs must be at least 1".into());
        }
        if dutch.floor_price == 0 || dutch.floor_price > spec.starting_price {
            return Err("floor_price must be at least 1 and at most starting_price".into());
        }
        let ends = dutch_ends_at(spec.starts_at_ms, spec.starting_price, dutch)
            .filter(|ends| ends - spec.starts_at_ms <= AUCTION_DURATION_MAX_MS)
            .ok_or("the descent to floor_price takes more than 365 days")?;
        if spec.ends_at_ms != ends {
            return Err("a dutch auction ends when its price would fall below floor_price".into());
        }
        Ok(())
    }
}

/// The price of a Dutch auction at `now`.
pub fn dutch_price(starts_at_ms: TimestampMs, starting_price: Money, dutch: &DutchSpec, now: TimestampMs) -> Money {
    let steps = now.saturating_sub(starts_at_ms) / dutch.decrement_every_ms.max(1);
    starting_price
        .saturating_sub(steps.saturating_mul(dutch.decrement))
        .max(dutch.floor_price)
}

/// When a Dutch auction ends: one period after its price reaches the floor. `None` on
/// overflow.
pub fn dutch_ends_at(starts_at_ms: TimestampMs, starting_price: Money, dutch: &DutchSpec) -> Option<TimestampMs> {
    let drop = starting_price.checked_sub(dutch.floor_price)?;
    let steps = drop.div_ceil(dutch.decrement.max(1));
    let periods = steps.checked_add(1)?;
    starts_at_ms.checked_add(periods.checked_mul(dutch.decrement_every_ms)?)
}

/// The outcome of a sealed auction from its bids (at most one per bidder, in bid order).
pub fn sealed_outcome(format: &Format, bids: &[BidRecord], reserve: Option<Money>) -> Outcome {
    // Highest amount first; for equal amounts the earlier bid (lower id) first.
    let mut ranked: Vec<&BidRecord> = bids.iter().collect();
    ranked.sort_by(|a, b| b.amount.cmp(&a.amount).then(a.bid_id.cmp(&b.bid_id)));
    let Some(best) = ranked.first() else {
        return Outcome::NoBids;
    };
    if reserve.is_some_and(|reserve| best.amount < reserve) {
        return Outcome::ReserveNotMet {
            highest_bidder: best.bidder.clone(),
            highest_bid: best.amount,
        };
    }
    let price = match format {
        Format::SealedSecondPrice => match (ranked.get(1).map(|b| b.amount), reserve) {
            (Some(second), Some(reserve)) => second.max(reserve),
            (Some(second), None) => second,
            (None, Some(reserve)) => reserve,
            (None, None) => best.amount,
        },
        _ => best.amount,
    };
    Outcome::Sold {
        winner: best.bidder.clone(),
        price,
    }
}

impl AuctionBook {
    /// The format of auction `id`; `None` for English (or an unknown auction).
    pub fn format(&self, id: AuctionId) -> Option<&Format> {
        self.formats.get(&id)
    }

    /// Whether auction `id` is sealed and not yet final: its amounts are nobody's to see.
    pub fn is_sealed_open(&self, id: AuctionId) -> bool {
        self.formats.get(&id).is_some_and(Format::is_sealed)
            && self.auctions.get(&id).is_some_and(|a| !a.status.is_final())
    }

    pub(super) fn create_format_auction(
        &mut self,
        spec: &AuctionSpec,
        format: &Format,
        worker: Option<crate::types::NodeId>,
        now: TimestampMs,
    ) -> Result<Response, Rejection> {
        format
            .validate(spec)
            .map_err(|reason| Rejection::InvalidInput { reason })?;
        let response = self.create_auction(spec, worker, now)?;
        if let Response::AuctionCreated { auction_id, .. } = &response {
            self.formats.insert(*auction_id, *format);
        }
        Ok(response)
    }

    /// A bid on a sealed or Dutch auction `id` of `format` (the English rules are in
    /// `bidding`).
    pub(super) fn place_format_bid(
        &mut self,
        (id, format): (AuctionId, Format),
        bidder: &str,
        amount: Option<Money>,
        max_amount: Option<Money>,
        signed: Option<&Signed>,
        now: TimestampMs,
    ) -> Result<Response, Rejection> {
        let auction = self.get(id)?;
        check_biddable(auction, now)?;
        check_party(auction, bidder, "bidder")?;
        let invalid = |reason: String| Rejection::InvalidAmount { reason };
        if max_amount.is_some() {
            return Err(invalid(format!(
                "max_amount (proxy bidding) is for english auctions, not {}",
                format.name()
            )));
        }
        let amount = amount.ok_or_else(|| invalid("give an amount".into()))?;
        check_amount("amount", amount).map_err(invalid)?;
        let min = match &format {
            Format::Dutch(dutch) => dutch_price(auction.spec.starts_at_ms, auction.spec.starting_price, dutch, now),
            _ => auction.spec.starting_price,
        };
        if amount < min {
            return Err(Rejection::BidTooLow { min_next_bid: min });
        }
        let replaced = auction.bids.iter().find(|b| b.bidder == bidder).map_or(0, |b| b.amount);
        let committed = if format.is_sealed() { amount } else { min };
        self.check_budget(bidder, replaced, committed)?;
        let bid_id = self.take_bid_id()?;
        let mut events = Vec::new();
        self.open_if_due(&mut events, id, now);
        let record = |seq: u64, price_after: Money, leader_after: String| BidRecord {
            bid_id,
            seq,
            bidder: bidder.to_string(),
            amount: if format.is_sealed() { amount } else { min },
            max_amount: if format.is_sealed() { amount } else { min },
            ts_ms: now,
            price_after,
            leader_after,
            signed: signed.cloned(),
        };
        if format.is_sealed() {
            let Some(auction) = self.auctions.get_mut(&id) else {
                return Err(Rejection::UnknownAuction { auction_id: id });
            };
            auction.bids.retain(|b| b.bidder != bidder);
            let bid_count = auction.bids.len() as u64 + 1;
            self.shift_exposure(bidder, replaced, amount);
            if let Some(event) = self.emit(id, now, EventKind::SealedBid { bid_count }) {
                if let Some(auction) = self.auctions.get_mut(&id) {
                    auction.bids.push(record(event.seq, 0, String::new()));
                }
                events.push(event);
            }
            let seq = self.get(id)?.seq;
            return Ok(Response::SealedBidAccepted {
                auction_id: id,
                bid_id,
                seq,
                replaced: replaced > 0,
                events,
            });
        }
        // Dutch: the first taker wins at the current price, and the auction ends.
        let price = min;
        if let Some(auction) = self.auctions.get_mut(&id) {
            auction.price = price;
            auction.leader = Some(Leader {
                bidder: bidder.to_string(),
                max_amount: price,
                bid_id,
            });
        }
        self.shift_exposure(bidder, 0, price);
        let kind = EventKind::BidAccepted {
            bid_id,
            bidder: bidder.to_string(),
            price,
            leader: bidder.to_string(),
        };
        if let Some(event) = self.emit(id, now, kind) {
            if let Some(auction) = self.auctions.get_mut(&id) {
                auction.bids.push(record(event.seq, price, bidder.to_string()));
            }
            events.push(event);
        }
        let outcome = Outcome::Sold {
            winner: bidder.to_string(),
            price,
        };
        self.finish(&mut events, id, now, AuctionStatus::Closed, outcome);
        let auction = self.get(id)?;
        Ok(Response::BidAccepted(BidAccepted {
            seq: auction.seq,
            extended: false,
            auction_id: id,
            bid_id,
            price,
            leading: true,
            leader: bidder.to_string(),
            min_next_bid: Money::MAX,
            ends_at_ms: auction.ends_at_ms,
            reserve_met: true,
            events,
        }))
    }
}
