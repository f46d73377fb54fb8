//! Multi-round cumulative sealed bidding (`Format::MultiRound`).
//!
//! 1. **Joining.** The auction opens `open_for_joining` until `starts_at + join_ms` (the
//!    spec's `ends_at_ms`). Bidders join (`JoinAuction`), at most [`PARTICIPANTS_MAX`].
//!    The seller starts round 1 (`StartRounds`) once `min_bidders` have joined. At the
//!    joining deadline, round 1 starts by itself if enough have joined; otherwise the
//!    auction ends `not_enough_bidders`.
//! 2. **Rounds.** In each round every participant bids once, sealed, at least the
//!    starting price. The round completes when all have bid, or at its deadline
//!    (`round_ms` after it started); a missing bid counts 0. Then its bids are revealed
//!    to everyone (`RoundCompleted`) and added to the totals.
//! 3. **End.** Once `min_rounds` rounds have completed, the auction ends after a round in
//!    which the leader (by cumulative total) did not change, and at the latest after
//!    `max_rounds`.
//! 4. **Winner.** The highest cumulative total; on a tie, the participant who reached
//!    that total first (in an earlier round, or in the same round by an earlier bid). The
//!    winner pays their total. Below the reserve: `reserve_not_met`.
//!
//! Deadlines are the auction's `ends_at_ms`, so the hosting worker's clock drives the
//! rounds with the `CloseAuction` it already proposes at `ends_at`: at a joining deadline
//! it starts round 1 (or ends the auction), at a round deadline it completes the round.
//! Every total and bid counts against the bidder's budget until the end.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::formats::Format;
use super::lifecycle::check_party;
use super::AuctionBook;
use crate::command::{Rejection, Response};
use crate::types::{check_amount, AuctionEvent, AuctionId, AuctionStatus, EventKind, Money, Outcome, TimestampMs};

/// Most participants of one multi-round auction.
pub const PARTICIPANTS_MAX: usize = 1_000;
/// Most rounds of one multi-round auction.
pub const ROUNDS_MAX: u32 = 100;
/// Longest round or joining window (a day) and shortest (a second).
pub const ROUND_MAX_MS: u64 = 24 * 60 * 60 * 1000;
pub const ROUND_MIN_MS: u64 = 1_000;

/// What the auctioneer sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiRoundSpec {
    pub min_rounds: u32,
    pub max_rounds: u32,
    pub round_ms: u64,
    pub min_bidders: u32,
    pub join_ms: u64,
}

impl MultiRoundSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.min_rounds == 0 || self.min_rounds > self.max_rounds {
            return Err("min_rounds must be at least 1 and at most max_rounds".into());
        }
        if self.max_rounds > ROUNDS_MAX {
            return Err(format!("max_rounds must be at most {ROUNDS_MAX}"));
        }
        if self.min_bidders == 0 || self.min_bidders as usize > PARTICIPANTS_MAX {
            return Err(format!("min_bidders must be between 1 and {PARTICIPANTS_MAX}"));
        }
        for (field, ms) in [("round_secs", self.round_ms), ("join_secs", self.join_ms)] {
            if !(ROUND_MIN_MS..=ROUND_MAX_MS).contains(&ms) {
                return Err(format!("{field} must be between 1 and 86400"));
            }
        }
        Ok(())
    }
}

/// One participant's sealed bid in the current round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundBid {
    pub bid_id: u64,
    pub amount: Money,
}

/// A multi-round auction's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rounds {
    /// In join order.
    pub participants: Vec<String>,
    /// The round under way (1-based); 0 while joining.
    pub round: u32,
    /// The current round's sealed bids.
    pub current: BTreeMap<String, RoundBid>,
    /// Every completed round's bids, revealed, in participant order (0: no bid).
    pub revealed: Vec<Vec<(String, Money)>>,
}

impl Rounds {
    /// Each participant's cumulative total, and when they reached it: (round, bid id),
    /// smaller is earlier.
    pub fn totals(&self) -> BTreeMap<String, (Money, (u32, u64))> {
        let mut totals: BTreeMap<String, (Money, (u32, u64))> =
            self.participants.iter().map(|p| (p.clone(), (0, (0, 0)))).collect();
        for (i, round) in self.revealed.iter().enumerate() {
            for (order, (bidder, amount)) in round.iter().enumerate() {
                if *amount == 0 {
                    continue;
                }
                if let Some(total) = totals.get_mut(bidder) {
                    total.0 = total.0.saturating_add(*amount);
                    total.1 = (i as u32 + 1, order as u64);
                }
            }
        }
        totals
    }

    /// Every participant with their cumulative total, highest first; ties: who reached
    /// the total first.
    pub fn standings(&self) -> Vec<(String, Money)> {
        let mut totals: Vec<_> = self.totals().into_iter().collect();
        totals.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
        totals.into_iter().map(|(name, (total, _))| (name, total)).collect()
    }

    /// The leader by cumulative total (ties: who reached it first), if anyone has bid.
    pub fn leader(&self) -> Option<(String, Money)> {
        self.standings().into_iter().next().filter(|(_, total)| *total > 0)
    }

    /// What `name` risks now: their total and their sealed bid this round.
    fn exposure_of(&self, name: &str) -> Money {
        let total = self.totals().get(name).map_or(0, |t| t.0);
        total.saturating_add(self.current.get(name).map_or(0, |b| b.amount))
    }
}

impl AuctionBook {
    /// The progress of multi-round auction `id`.
    pub fn rounds(&self, id: AuctionId) -> Option<&Rounds> {
        self.rounds.get(&id)
    }

    fn multi_round_spec(&self, id: AuctionId) -> Result<MultiRoundSpec, Rejection> {
        match self.formats.get(&id) {
            Some(Format::MultiRound(spec)) => Ok(*spec),
            _ => Err(Rejection::InvalidInput {
                reason: "only a multi_round_sealed auction has participants and rounds".into(),
            }),
        }
    }

    /// Checks the auction is open and in its joining phase.
    fn check_joining(&self, id: AuctionId, now: TimestampMs) -> Result<(), Rejection> {
        let auction = self.get(id)?;
        super::check_not_final(auction)?;
        if now < auction.spec.starts_at_ms {
            return Err(Rejection::AuctionNotOpen {
                starts_at_ms: auction.spec.starts_at_ms,
            });
        }
        if self.rounds.get(&id).is_some_and(|r| r.round > 0) || now >= auction.ends_at_ms {
            return Err(Rejection::JoiningClosed);
        }
        Ok(())
    }

    pub(super) fn join_auction(
        &mut self,
        id: AuctionId,
        bidder: &str,
        now: TimestampMs,
    ) -> Result<Response, Rejection> {
        self.multi_round_spec(id)?;
        self.check_joining(id, now)?;
        check_party(self.get(id)?, bidder, "bidder")?;
        let rounds = self.rounds.get(&id).cloned().unwrap_or_default();
        if rounds.participants.iter().any(|p| p == bidder) {
            return Err(Rejection::AlreadyJoined);
        }
        if rounds.participants.len() >= PARTICIPANTS_MAX {
            return Err(Rejection::InvalidInput {
                reason: format!("the auction has its {PARTICIPANTS_MAX} participants"),
            });
        }
        let mut events = Vec::new();
        self.open_if_due(&mut events, id, now);
        let rounds = self.rounds.entry(id).or_default();
        rounds.participants.push(bidder.to_string());
        let participants = rounds.participants.len() as u32;
        let kind = EventKind::Joined {
            bidder: bidder.to_string(),
            participants,
        };
        self.emit_into(&mut events, id, now, kind);
        Ok(Response::RoundsChanged { auction_id: id, events })
    }

    /// The seller starts round 1 once `min_bidders` have joined.
    pub(super) fn start_rounds(
        &mut self,
        id: AuctionId,
        seller: &str,
        now: TimestampMs,
    ) -> Result<Response, Rejection> {
        let spec = self.multi_round_spec(id)?;
        self.check_joining(id, now)?;
        if self.get(id)?.spec.seller != seller {
            return Err(Rejection::NotSeller);
        }
        let joined = self.rounds.get(&id).map_or(0, |r| r.participants.len()) as u32;
        if joined < spec.min_bidders {
            return Err(Rejection::NotEnoughBidders {
                joined,
                needed: spec.min_bidders,
            });
        }
        let mut events = Vec::new();
        self.open_if_due(&mut events, id, now);
        self.start_round(&mut events, id, spec, now);
        Ok(Response::RoundsChanged { auction_id: id, events })
    }

    /// A sealed bid in the current round.
    pub(super) fn place_round_bid(
        &mut self,
        id: AuctionId,
        bidder: &str,
        amount: Option<Money>,
        max_amount: Option<Money>,
        now: TimestampMs,
    ) -> Result<Response, Rejection> {
        let spec = self.multi_round_spec(id)?;
        let auction = self.get(id)?;
        super::check_not_final(auction)?;
        let invalid = |reason: &str| Rejection::InvalidAmount {
            reason: reason.to_string(),
        };
        if max_amount.is_some() {
            return Err(invalid("max_amount (proxy bidding) is for english auctions"));
        }
        let amount = amount.ok_or_else(|| invalid("give an amount"))?;
        check_amount("amount", amount).map_err(|reason| Rejection::InvalidAmount { reason })?;
        let rounds = self.rounds.get(&id).cloned().unwrap_or_default();
        if !rounds.participants.iter().any(|p| p == bidder) {
            return Err(Rejection::NotAParticipant);
        }
        if rounds.round == 0 {
            return Err(Rejection::RoundsNotStarted);
        }
        if now >= auction.ends_at_ms {
            return Err(Rejection::AuctionClosed);
        }
        if rounds.current.contains_key(bidder) {
            return Err(Rejection::AlreadyBid { round: rounds.round });
        }
        if amount < auction.spec.starting_price {
            return Err(Rejection::BidTooLow {
                min_next_bid: auction.spec.starting_price,
            });
        }
        self.check_budget(bidder, 0, amount)?;
        let bid_id = self.take_bid_id()?;
        self.shift_exposure(bidder, 0, amount);
        let rounds = self.rounds.entry(id).or_default();
        rounds.current.insert(bidder.to_string(), RoundBid { bid_id, amount });
        let bid_count = rounds.current.len() as u64;
        let all_in = rounds.current.len() == rounds.participants.len();
        let mut events = Vec::new();
        self.emit_into(&mut events, id, now, EventKind::SealedBid { bid_count });
        if all_in {
            self.complete_round(&mut events, id, spec, now);
        }
        let seq = self.get(id)?.seq;
        Ok(Response::SealedBidAccepted {
            auction_id: id,
            bid_id,
            seq,
            replaced: false,
            events,
        })
    }

    /// At a deadline (`CloseAuction` at `ends_at`): start round 1 or end for want of
    /// bidders while joining; complete the round under way otherwise.
    pub(super) fn round_deadline(&mut self, id: AuctionId, now: TimestampMs) -> Result<Response, Rejection> {
        let spec = self.multi_round_spec(id)?;
        let mut events = Vec::new();
        self.open_if_due(&mut events, id, now);
        let rounds = self.rounds.get(&id).cloned().unwrap_or_default();
        if rounds.round == 0 {
            let joined = rounds.participants.len() as u32;
            if joined >= spec.min_bidders {
                self.start_round(&mut events, id, spec, now);
            } else {
                self.end_rounds(&mut events, id, Outcome::NotEnoughBidders { joined }, now);
            }
        } else {
            self.complete_round(&mut events, id, spec, now);
        }
        let auction = self.get(id)?;
        Ok(match &auction.outcome {
            Some(outcome) => Response::AuctionEnded {
                auction_id: id,
                outcome: outcome.clone(),
                events,
            },
            None => Response::RoundsChanged { auction_id: id, events },
        })
    }

    fn start_round(&mut self, events: &mut Vec<AuctionEvent>, id: AuctionId, spec: MultiRoundSpec, now: TimestampMs) {
        let ends_at_ms = now.saturating_add(spec.round_ms);
        let rounds = self.rounds.entry(id).or_default();
        rounds.round += 1;
        rounds.current.clear();
        let round = rounds.round;
        if let Some(auction) = self.auctions.get_mut(&id) {
            // A round may end before the joining window would have (the seller started
            // early): a multi-round auction's end is its current deadline.
            auction.ends_at_ms = ends_at_ms;
        }
        self.emit_into(events, id, now, EventKind::RoundStarted { round, ends_at_ms });
    }

    /// Reveals the current round (missing bids count 0), then ends the auction or starts
    /// the next round.
    fn complete_round(
        &mut self,
        events: &mut Vec<AuctionEvent>,
        id: AuctionId,
        spec: MultiRoundSpec,
        now: TimestampMs,
    ) {
        let Some(rounds) = self.rounds.get_mut(&id) else {
            return;
        };
        let leader_before = rounds.leader().map(|(name, _)| name);
        let mut ordered: Vec<(u64, String, Money)> = rounds
            .participants
            .iter()
            .map(|p| match rounds.current.get(p) {
                Some(bid) => (bid.bid_id, p.clone(), bid.amount),
                None => (u64::MAX, p.clone(), 0),
            })
            .collect();
        // Revealed in bid order (missing bids last), which also orders ties.
        ordered.sort_by_key(|(bid_id, _, _)| *bid_id);
        let revealed: Vec<(String, Money)> = ordered.into_iter().map(|(_, p, a)| (p, a)).collect();
        rounds.revealed.push(revealed.clone());
        rounds.current.clear();
        let round = rounds.round;
        let leader_after = rounds.leader();
        self.emit_into(events, id, now, EventKind::RoundCompleted { round, bids: revealed });
        let unchanged = leader_before.is_some() && leader_before == leader_after.as_ref().map(|(name, _)| name.clone());
        let done = round >= spec.max_rounds || (round >= spec.min_rounds && unchanged);
        if !done {
            self.start_round(events, id, spec, now);
            return;
        }
        let reserve = self.auctions.get(&id).and_then(|a| a.spec.reserve_price);
        let outcome = match leader_after {
            None => Outcome::NoBids,
            Some((name, total)) if reserve.is_some_and(|r| total < r) => Outcome::ReserveNotMet {
                highest_bidder: name,
                highest_bid: total,
            },
            Some((winner, price)) => Outcome::Sold { winner, price },
        };
        self.end_rounds(events, id, outcome, now);
    }

    fn end_rounds(&mut self, events: &mut Vec<AuctionEvent>, id: AuctionId, outcome: Outcome, now: TimestampMs) {
        self.finish(events, id, now, AuctionStatus::Closed, outcome);
    }

    /// What each participant of auction `id` risks (released when it ends).
    pub(super) fn round_exposures(&self, id: AuctionId) -> Vec<(String, Money)> {
        let Some(rounds) = self.rounds.get(&id) else {
            return Vec::new();
        };
        rounds
            .participants
            .iter()
            .map(|p| (p.clone(), rounds.exposure_of(p)))
            .filter(|(_, risk)| *risk > 0)
            .collect()
    }
}
