//! Creating, opening and ending auctions: `CreateAuction`, `OpenAuction`, `BuyNow`,
//! `CloseAuction`, `CancelAuction`. Each handler checks everything first and mutates
//! only once the command is known to be accepted.

use super::{check_not_final, AuctionBook};
use crate::command::{Rejection, Response};
use crate::types::{
    check_name, Actor, Auction, AuctionEvent, AuctionId, AuctionSpec, AuctionStatus, EventKind, NodeId, Outcome,
    TimestampMs, START_AHEAD_MAX_MS,
};

impl AuctionBook {
    pub(super) fn create_auction(
        &mut self,
        spec: &AuctionSpec,
        worker: Option<NodeId>,
        now: TimestampMs,
    ) -> Result<Response, Rejection> {
        spec.validate().map_err(|reason| Rejection::InvalidInput { reason })?;
        if spec.ends_at_ms <= now {
            return Err(Rejection::InvalidInput {
                reason: "ends_at is in the past".into(),
            });
        }
        if spec.starts_at_ms > now.saturating_add(START_AHEAD_MAX_MS) {
            return Err(Rejection::InvalidInput {
                reason: format!(
                    "starts_at may be at most {} days ahead",
                    START_AHEAD_MAX_MS / (24 * 60 * 60 * 1000)
                ),
            });
        }
        if let Some(node_id) = worker {
            self.check_capacity(node_id)?;
        }
        let id = self
            .last_auction_id
            .checked_add(1)
            .ok_or_else(|| Rejection::InvalidInput {
                reason: "auction ids are exhausted".into(),
            })?;

        let opens_now = now >= spec.starts_at_ms;
        self.last_auction_id = id;
        self.auctions.insert(
            id,
            Auction {
                id,
                spec: spec.clone(),
                created_at_ms: now,
                status: if opens_now {
                    AuctionStatus::Open
                } else {
                    AuctionStatus::Scheduled
                },
                price: 0,
                leader: None,
                ends_at_ms: spec.ends_at_ms,
                extensions: 0,
                seq: 0,
                bids: Vec::new(),
                worker,
                outcome: None,
                closed_at_ms: None,
            },
        );
        if let Some(node_id) = worker {
            self.hosted.entry(node_id).or_default().insert(id);
        }
        let mut events = Vec::new();
        self.emit_into(&mut events, id, now, EventKind::Created);
        if opens_now {
            self.emit_into(&mut events, id, now, EventKind::Opened);
        }
        Ok(Response::AuctionCreated {
            auction_id: id,
            worker,
            seq: events.last().map_or(0, |e| e.seq),
            events,
        })
    }

    pub(super) fn open_auction(&mut self, id: AuctionId, now: TimestampMs) -> Result<Response, Rejection> {
        let auction = self.get(id)?;
        check_not_final(auction)?;
        if now < auction.spec.starts_at_ms {
            return Err(Rejection::AuctionNotOpen {
                starts_at_ms: auction.spec.starts_at_ms,
            });
        }
        let mut events = Vec::new();
        self.open_if_due(&mut events, id, now);
        Ok(Response::AuctionOpened { auction_id: id, events })
    }

    pub(super) fn buy_now(&mut self, id: AuctionId, buyer: &str, now: TimestampMs) -> Result<Response, Rejection> {
        let auction = self.get(id)?;
        check_biddable(auction, now)?;
        check_party(auction, buyer, "buyer")?;
        let Some(price) = auction.spec.buy_now_price else {
            return Err(Rejection::BuyNowUnavailable);
        };
        let reserve_unmet = auction.spec.reserve_price.is_some() && !auction.reserve_met();
        if auction.leader.is_some() && !reserve_unmet {
            return Err(Rejection::BuyNowUnavailable);
        }
        self.check_budget(buyer, 0, price)?;

        let mut events = Vec::new();
        self.open_if_due(&mut events, id, now);
        let outcome = Outcome::BoughtNow {
            buyer: buyer.to_string(),
            price,
        };
        self.finish(&mut events, id, now, AuctionStatus::Closed, outcome.clone());
        Ok(Response::AuctionEnded {
            auction_id: id,
            outcome,
            events,
        })
    }

    pub(super) fn close_auction(&mut self, id: AuctionId, now: TimestampMs) -> Result<Response, Rejection> {
        let auction = self.get(id)?;
        check_not_final(auction)?;
        if now < auction.ends_at_ms {
            return Err(Rejection::NotYetEnded {
                ends_at_ms: auction.ends_at_ms,
            });
        }
        if matches!(self.formats.get(&id), Some(super::formats::Format::MultiRound(_))) {
            return self.round_deadline(id, now);
        }
        let sealed = self.formats.get(&id).filter(|f| f.is_sealed());
        let outcome = match (&auction.leader, auction.spec.reserve_price) {
            _ if sealed.is_some() => {
                super::formats::sealed_outcome(sealed.expect("sealed"), &auction.bids, auction.spec.reserve_price)
            }
            (None, _) => Outcome::NoBids,
            (Some(leader), Some(reserve)) if auction.price < reserve => Outcome::ReserveNotMet {
                highest_bidder: leader.bidder.clone(),
                highest_bid: auction.price,
            },
            (Some(leader), _) => Outcome::Sold {
                winner: leader.bidder.clone(),
                price: auction.price,
            },
        };
        let mut events = Vec::new();
        self.finish(&mut events, id, now, AuctionStatus::Closed, outcome.clone());
        Ok(Response::AuctionEnded {
            auction_id: id,
            outcome,
            events,
        })
    }

    pub(super) fn cancel_auction(
        &mut self,
        id: AuctionId,
        by: &Actor,
        now: TimestampMs,
    ) -> Result<Response, Rejection> {
        let auction = self.get(id)?;
        check_not_final(auction)?;
        if let Actor::Seller(seller) = by {
            if *seller != auction.spec.seller {
                return Err(Rejection::NotSeller);
            }
            let rounds_began = self.rounds.get(&id).is_some_and(|r| r.round > 0);
            if auction.leader.is_some() || !auction.bids.is_empty() || rounds_began {
                return Err(Rejection::HasBids);
            }
        }
        let outcome = Outcome::Cancelled { by: by.clone() };
        let mut events = Vec::new();
        self.finish(&mut events, id, now, AuctionStatus::Cancelled, outcome.clone());
        Ok(Response::AuctionEnded {
            auction_id: id,
            outcome,
            events,
        })
    }

    /// Opens a `Scheduled` auction whose `starts_at` has passed (an `Opened` event); a
    /// no-op otherwise.
    pub(super) fn open_if_due(&mut self, events: &mut Vec<AuctionEvent>, id: AuctionId, now: TimestampMs) {
        let Some(auction) = self.auctions.get_mut(&id) else {
            return;
        };
        if auction.status != AuctionStatus::Scheduled || now < auction.spec.starts_at_ms {
            return;
        }
        auction.status = AuctionStatus::Open;
        self.emit_into(events, id, now, EventKind::Opened);
    }

    /// Ends an auction: final status, outcome, `closed_at_ms`, the `Closed` or
    /// `Cancelled` event, and it stops counting against its worker's capacity.
    pub(super) fn finish(
        &mut self,
        events: &mut Vec<AuctionEvent>,
        id: AuctionId,
        now: TimestampMs,
        status: AuctionStatus,
        outcome: Outcome,
    ) {
        // What a multi-round auction's participants risk (their totals).
        let rounds = self.round_exposures(id);
        let Some(auction) = self.auctions.get_mut(&id) else {
            return;
        };
        auction.status = status;
        auction.outcome = Some(outcome.clone());
        auction.closed_at_ms = Some(now);
        let leader = auction.leader.as_ref().map(|l| (l.bidder.clone(), l.max_amount));
        // A sealed auction's every bid counted against its bidder; it has no leader.
        let sealed: Vec<(String, crate::types::Money)> = match self.formats.get(&id) {
            Some(format) if format.is_sealed() => auction.bids.iter().map(|b| (b.bidder.clone(), b.amount)).collect(),
            _ => Vec::new(),
        };
        if let Some(node_id) = auction.worker {
            self.unhost(node_id, id);
        }
        for (name, risk) in rounds {
            self.shift_exposure(&name, risk, 0);
        }
        if let Some((name, max)) = leader {
            self.shift_exposure(&name, max, 0);
        }
        for (name, amount) in sealed {
            self.shift_exposure(&name, amount, 0);
        }
        let kind = match (status, outcome) {
            (AuctionStatus::Cancelled, Outcome::Cancelled { by }) => EventKind::Cancelled { by },
            (_, outcome) => EventKind::Closed { outcome },
        };
        self.emit_into(events, id, now, kind);
    }
}

/// The window checks shared by bids and buy-now, in rule order: cancelled, closed or at or
/// past the (extended) end, before `starts_at`.
pub(super) fn check_biddable(auction: &Auction, now: TimestampMs) -> Result<(), Rejection> {
    check_not_final(auction)?;
    if now >= auction.ends_at_ms {
        return Err(Rejection::AuctionClosed);
    }
    if now < auction.spec.starts_at_ms {
        return Err(Rejection::AuctionNotOpen {
            starts_at_ms: auction.spec.starts_at_ms,
        });
    }
    Ok(())
}

/// A bidder or buyer name: valid ([`check_name`]) and not the seller.
pub(super) fn check_party(auction: &Auction, name: &str, role: &str) -> Result<(), Rejection> {
    check_name(role, name).map_err(|reason| Rejection::InvalidInput { reason })?;
    if name == auction.spec.seller {
        return Err(Rejection::SellerCannotBid);
    }
    Ok(())
}
