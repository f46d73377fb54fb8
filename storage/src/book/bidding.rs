//! `PlaceBid`: English auction bids with eBay-style proxy bidding and soft close.
//!
//! [`plan_bid`] is the whole pricing rule as a pure function of the auction and the bid;
//! [`AuctionBook::place_bid`] checks the window and the bidder, asks for a plan, and only
//! then changes the auction.

use super::accounts::Signed;
use super::formats::Format;
use super::lifecycle::{check_biddable, check_party};
use super::AuctionBook;
use crate::command::{BidAccepted, Command, Op, Rejection, Response};
use crate::types::{
    check_amount, Auction, AuctionEvent, AuctionId, BidRecord, EventKind, Leader, Money, TimestampMs,
    AUCTION_DURATION_MAX_MS,
};

/// What an accepted bid does to an auction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BidPlan {
    /// Recorded as the bid's `amount`: what was bid in the open, or for the leader
    /// raising their own maximum, the price after.
    pub(super) amount: Money,
    pub(super) max_amount: Money,
    pub(super) price: Money,
    /// The leader afterwards and their maximum; `bidder_leads` when this bid made or kept
    /// the bidder as leader (then the leader is replaced, with this bid's id as `bid_id`).
    pub(super) leader: String,
    pub(super) leader_max: Money,
    pub(super) bidder_leads: bool,
}

/// The price rule. `amount`/`max_amount` are as in `Op::PlaceBid`; the auction's window,
/// status and the bidder's name are checked by the caller.
pub(super) fn plan_bid(
    auction: &Auction,
    bidder: &str,
    amount: Option<Money>,
    max_amount: Option<Money>,
) -> Result<BidPlan, Rejection> {
    let invalid = |reason: &str| Rejection::InvalidAmount {
        reason: reason.to_string(),
    };
    match (amount, max_amount) {
        (None, None) => return Err(invalid("give an amount or a max_amount")),
        (Some(0), _) | (_, Some(0)) => return Err(invalid("amounts must be greater than 0")),
        (Some(amount), Some(max)) if amount > max => return Err(invalid("amount is greater than max_amount")),
        _ => {}
    }
    for (field, value) in [("amount", amount), ("max_amount", max_amount)] {
        if let Some(value) = value {
            check_amount(field, value).map_err(|reason| Rejection::InvalidAmount { reason })?;
        }
    }
    let increment = &auction.spec.increment;
    let reserve = auction.spec.reserve_price;
    // Once the leader's maximum covers the reserve, the price is at least the reserve.
    let with_reserve = |price: Money, leader_max: Money| match reserve {
        Some(reserve) if leader_max >= reserve && price < reserve => reserve,
        _ => price,
    };

    if let Some(leader) = auction.leader.as_ref().filter(|leader| leader.bidder == bidder) {
        // The leader raises their own maximum; what they bid in the open is irrelevant.
        let max = max_amount.or(amount).unwrap_or(0);
        if max <= leader.max_amount {
            // Never says what the maximum is: the caller's identity is not proven here.
            return Err(Rejection::MaxNotRaised);
        }
        let price = with_reserve(auction.price, max);
        return Ok(BidPlan {
            amount: price,
            max_amount: max,
            price,
            leader: bidder.to_string(),
            leader_max: max,
            bidder_leads: true,
        });
    }

    let min = auction
        .min_next_bid()
        .ok_or_else(|| invalid("the minimum next bid overflows"))?;
    let amount = amount.unwrap_or(min);
    let max = max_amount.unwrap_or(amount);
    if amount < min || max < min {
        return Err(Rejection::BidTooLow { min_next_bid: min });
    }
    let plan = |price: Money, leader: &str, leader_max: Money, bidder_leads: bool| BidPlan {
        amount,
        max_amount: max,
        price: with_reserve(price, leader_max),
        leader: leader.to_string(),
        leader_max,
        bidder_leads,
    };
    Ok(match &auction.leader {
        None => plan(amount, bidder, max, true),
        Some(leader) if max > leader.max_amount => {
            // The challenger wins: one increment over the old maximum, capped by theirs.
            let step = leader
                .max_amount
                .saturating_add(increment.increment_at(leader.max_amount));
            plan(amount.max(step.min(max)), bidder, max, true)
        }
        Some(leader) => {
            // The leader's proxy answers (ties go to the earlier bid).
            let step = max.saturating_add(increment.increment_at(max));
            plan(
                amount.max(step.min(leader.max_amount)),
                &leader.bidder,
                leader.max_amount,
                false,
            )
        }
    })
}

impl AuctionBook {
    /// On the leader, before proposing: the refusal `apply` would give this command, if it
    /// is an unsigned bid without an Idempotency-Key that is too low. Anything else is
    /// `None` and goes through Raft.
    ///
    /// Sound because an English auction's price only rises: every write acknowledged so
    /// far is applied on the leader (it answers after applying), so the leader's
    /// `min_next_bid` is at most the one at the bid's log position, and a bid below it is
    /// refused there too. The checks run in `apply`'s order and the first one that fails
    /// for another reason hands the bid to Raft, so the code is always the one `apply`
    /// gives. Keyed bids always go through Raft: a retry arriving while its first attempt
    /// is still in flight must get that attempt's answer. Signed bids too: their nonce is
    /// spent even when the bid is refused, and the audit keeps them.
    pub fn refuses_early(&self, cmd: &Command) -> Option<Rejection> {
        let Op::PlaceBid {
            auction_id,
            bidder,
            amount,
            max_amount,
        } = &cmd.op
        else {
            return None;
        };
        // Only an English auction's price only rises.
        if cmd.signed.is_some() || cmd.idempotency.is_some() || self.formats.contains_key(auction_id) {
            return None;
        }
        let now = cmd.ts_ms.max(self.last_ts_ms);
        self.authorize(cmd.caller.as_ref(), &cmd.op).ok()?;
        let auction = self.get(*auction_id).ok()?;
        self.check_signature(bidder, *auction_id, None).ok()?;
        check_biddable(auction, now).ok()?;
        check_party(auction, bidder, "bidder").ok()?;
        match plan_bid(auction, bidder, *amount, *max_amount) {
            Err(too_low @ Rejection::BidTooLow { .. }) => Some(too_low),
            _ => None,
        }
    }

    /// A bid. A signed bid's nonce is spent whatever the outcome once its signature
    /// verifies, so the request can never be replayed (see `accounts`).
    pub(super) fn place_bid(
        &mut self,
        id: AuctionId,
        bidder: &str,
        amount: Option<Money>,
        max_amount: Option<Money>,
        signed: Option<&Signed>,
        now: TimestampMs,
    ) -> Result<Response, Rejection> {
        self.get(id)?;
        let nonce = self.check_signature(bidder, id, signed)?;
        let result = self.place_verified_bid(id, bidder, amount, max_amount, signed, now);
        if let Some(nonce) = nonce {
            self.spend_nonce(bidder, nonce);
        }
        result
    }

    fn place_verified_bid(
        &mut self,
        id: AuctionId,
        bidder: &str,
        amount: Option<Money>,
        max_amount: Option<Money>,
        signed: Option<&Signed>,
        now: TimestampMs,
    ) -> Result<Response, Rejection> {
        if let Some(Format::MultiRound(_)) = self.formats.get(&id) {
            return self.place_round_bid(id, bidder, amount, max_amount, now);
        }
        if let Some(format) = self.formats.get(&id).copied() {
            return self.place_format_bid((id, format), bidder, amount, max_amount, signed, now);
        }
        let auction = self.get(id)?;
        check_biddable(auction, now)?;
        check_party(auction, bidder, "bidder")?;
        let plan = plan_bid(auction, bidder, amount, max_amount)?;
        let old_leader = auction.leader.as_ref().map(|l| (l.bidder.clone(), l.max_amount));
        if plan.bidder_leads {
            let released = match &old_leader {
                Some((name, max)) if name == bidder => *max,
                _ => 0,
            };
            self.check_budget(bidder, released, plan.leader_max)?;
        }
        let bid_id = self.take_bid_id()?;

        let mut events = Vec::new();
        self.open_if_due(&mut events, id, now);
        let Some(auction) = self.auctions.get_mut(&id) else {
            return Err(Rejection::UnknownAuction { auction_id: id });
        };
        auction.price = plan.price;
        if plan.bidder_leads {
            auction.leader = Some(Leader {
                bidder: plan.leader.clone(),
                max_amount: plan.leader_max,
                bid_id,
            });
            if let Some((name, max)) = &old_leader {
                self.shift_exposure(name, *max, 0);
            }
            self.shift_exposure(bidder, 0, plan.leader_max);
        }
        let kind = EventKind::BidAccepted {
            bid_id,
            bidder: bidder.to_string(),
            price: plan.price,
            leader: plan.leader.clone(),
        };
        if let Some(event) = self.emit(id, now, kind) {
            let record = BidRecord {
                bid_id,
                seq: event.seq,
                bidder: bidder.to_string(),
                amount: plan.amount,
                max_amount: plan.max_amount,
                ts_ms: now,
                price_after: plan.price,
                leader_after: plan.leader.clone(),
                signed: signed.cloned(),
            };
            if let Some(auction) = self.auctions.get_mut(&id) {
                auction.bids.push(record);
            }
            events.push(event);
        }
        self.extend_if_sniped(&mut events, id, now);

        let auction = self.get(id)?;
        let extended = events.iter().any(|e| matches!(e.kind, EventKind::Extended { .. }));
        Ok(Response::BidAccepted(BidAccepted {
            seq: auction.seq,
            extended,
            auction_id: id,
            bid_id,
            price: plan.price,
            leading: plan.leader == bidder,
            leader: plan.leader,
            min_next_bid: auction.min_next_bid().unwrap_or(Money::MAX),
            ends_at_ms: auction.ends_at_ms,
            reserve_met: auction.reserve_met(),
            events,
        }))
    }

    /// Soft close, after an accepted bid at `now`: within `window_secs` of the end, move
    /// the end to `now + extend_secs` (an `Extended` event), unless that is not later than
    /// the current end or `max_extensions` are used up.
    fn extend_if_sniped(&mut self, events: &mut Vec<AuctionEvent>, id: AuctionId, now: TimestampMs) {
        let Some(auction) = self.auctions.get_mut(&id) else {
            return;
        };
        let Some(soft_close) = auction.spec.soft_close else {
            return;
        };
        let window_ms = u64::from(soft_close.window_secs) * 1000;
        // Never past the longest an auction may run.
        let latest_end_ms = auction.spec.starts_at_ms.saturating_add(AUCTION_DURATION_MAX_MS);
        let extended_ms = now
            .saturating_add(u64::from(soft_close.extend_secs) * 1000)
            .min(latest_end_ms);
        if auction.ends_at_ms.saturating_sub(now) > window_ms
            || auction.extensions >= soft_close.max_extensions
            || extended_ms <= auction.ends_at_ms
        {
            return;
        }
        auction.ends_at_ms = extended_ms;
        auction.extensions += 1;
        let kind = EventKind::Extended {
            ends_at_ms: extended_ms,
            extensions: auction.extensions,
        };
        self.emit_into(events, id, now, kind);
    }
}
