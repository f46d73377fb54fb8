//! Structural invariants of a book. `apply` keeps them; [`AuctionBook::decode`] checks
//! them right after reading a snapshot, and the property tests after every step.

use std::collections::{BTreeMap, BTreeSet};

use super::formats::Format;
use super::{AuctionBook, RECENT_EVENTS_MAX};
use crate::types::{Auction, AuctionId, AuctionStatus, NodeId};

impl AuctionBook {
    /// Checks what must hold of every book `apply` can produce: ids, per-auction state
    /// (outcome iff final, leader iff bids, price between the starting price and the
    /// leader's maximum, bid prices never decreasing, the soft-close cap), gapless event
    /// buffers, and the derived indexes (`hosted`, the idempotency table). The error names
    /// the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut hosted: BTreeMap<NodeId, BTreeSet<AuctionId>> = BTreeMap::new();
        for (&id, auction) in &self.auctions {
            check_auction(auction, self.formats.get(&id), self.last_bid_id)
                .map_err(|reason| format!("auction {id}: {reason}"))?;
            if id != auction.id || id == 0 || id > self.last_auction_id {
                return Err(format!("auction {id}: id does not match its key or the id counter"));
            }
            self.check_events(auction)
                .map_err(|reason| format!("auction {id}: {reason}"))?;
            if let (Some(node_id), false) = (auction.worker, auction.status.is_final()) {
                hosted.entry(node_id).or_default().insert(id);
            }
        }
        if hosted != self.hosted {
            return Err("the hosted index does not match the auctions' workers".into());
        }
        if let Some(node_id) = self.hosted.keys().find(|node_id| !self.workers.contains_key(node_id)) {
            return Err(format!("auctions are hosted by unregistered worker {node_id}"));
        }
        if let Some(id) = self.recent_events.keys().find(|id| !self.auctions.contains_key(id)) {
            return Err(format!("events kept for unknown auction {id}"));
        }
        if let Some((&key, worker)) = self.workers.iter().find(|(key, worker)| **key != worker.node_id) {
            return Err(format!("worker {key} is registered as node {}", worker.node_id));
        }
        let mut owned: BTreeMap<String, BTreeSet<(AuctionId, String)>> = BTreeMap::new();
        for (id, subs) in &self.subscriptions {
            if subs.is_empty() {
                return Err(format!("auction {id} keeps an empty subscriber map"));
            }
            for (addr, sub) in subs {
                owned.entry(sub.owner.clone()).or_default().insert((*id, addr.clone()));
            }
        }
        if owned != self.subscriptions_by_owner {
            return Err("the subscriptions-by-owner index does not match the subscriptions".into());
        }
        let mut exposure: BTreeMap<String, crate::types::Money> = BTreeMap::new();
        for auction in self.auctions.values().filter(|a| !a.status.is_final()) {
            if let Some(leader) = &auction.leader {
                *exposure.entry(leader.bidder.clone()).or_default() += leader.max_amount;
            }
            if self.formats.get(&auction.id).is_some_and(Format::is_sealed) {
                for bid in &auction.bids {
                    *exposure.entry(bid.bidder.clone()).or_default() += bid.amount;
                }
            }
            for (name, risk) in self.round_exposures(auction.id) {
                *exposure.entry(name).or_default() += risk;
            }
        }
        for (id, rounds) in &self.rounds {
            if !matches!(self.formats.get(id), Some(Format::MultiRound(_))) {
                return Err(format!("rounds are kept for auction {id}, which is not multi-round"));
            }
            let joined: BTreeSet<&String> = rounds.participants.iter().collect();
            if joined.len() != rounds.participants.len() || rounds.current.keys().any(|b| !joined.contains(b)) {
                return Err(format!("auction {id}: a bidder joined twice or bids without joining"));
            }
            if rounds.revealed.len() as u32 + u32::from(rounds.round > 0) < rounds.round {
                return Err(format!(
                    "auction {id}: rounds revealed do not match the round under way"
                ));
            }
        }
        if let Some(id) = self.formats.keys().find(|id| !self.auctions.contains_key(id)) {
            return Err(format!("a format is kept for unknown auction {id}"));
        }
        if exposure != self.exposure {
            return Err("the exposure index does not match the leaders' maxima".into());
        }
        for (hash, name) in &self.accounts_by_token {
            match self.accounts.get(name) {
                Some(a) if a.token_hash == *hash && !a.disabled => {}
                _ => return Err(format!("token index names account {name:?} wrongly")),
            }
        }
        if self.accounts.values().filter(|a| !a.disabled).count() != self.accounts_by_token.len() {
            return Err("an enabled account is missing from the token index".into());
        }
        self.idempotency.check()
    }

    /// The retained events are the newest `min(seq, RECENT_EVENTS_MAX)` ones, gapless,
    /// ending at the auction's `seq`.
    fn check_events(&self, auction: &Auction) -> Result<(), String> {
        let events = self.recent_events.get(&auction.id).map_or(&[][..], Vec::as_slice);
        let expected_len = auction.seq.min(RECENT_EVENTS_MAX as u64);
        if events.len() as u64 != expected_len {
            return Err(format!("{} events retained, expected {expected_len}", events.len()));
        }
        let first_seq = auction.seq - expected_len + 1;
        for (offset, event) in events.iter().enumerate() {
            if event.seq != first_seq + offset as u64 || event.auction_id != auction.id {
                return Err(format!(
                    "retained event {offset} has seq {} or the wrong auction",
                    event.seq
                ));
            }
        }
        Ok(())
    }
}

fn check_auction(auction: &Auction, format: Option<&Format>, last_bid_id: u64) -> Result<(), String> {
    let is_final = auction.status.is_final();
    if is_final != auction.outcome.is_some() || is_final != auction.closed_at_ms.is_some() {
        return Err("outcome and closed_at must be set exactly when it is final".into());
    }
    if format.is_some_and(Format::is_sealed) {
        return check_sealed(auction, last_bid_id);
    }
    if matches!(format, Some(Format::MultiRound(_))) {
        // Its bids are in `rounds`, its end is its current deadline.
        if auction.leader.is_some() || auction.price != 0 || !auction.bids.is_empty() {
            return Err("a multi-round auction keeps its bids in its rounds, not as a leader".into());
        }
        return Ok(());
    }
    if auction.leader.is_some() == auction.bids.is_empty() {
        return Err("there must be a leader exactly when there are bids".into());
    }
    // A Dutch price falls below the starting price (to its floor).
    let lowest = match format {
        Some(Format::Dutch(dutch)) => dutch.floor_price,
        _ => auction.spec.starting_price,
    };
    if let Some(leader) = &auction.leader {
        if auction.price < lowest || auction.price > leader.max_amount {
            return Err("price is outside [starting_price, leader max]".into());
        }
        if leader.bid_id > last_bid_id {
            return Err("leader's bid id is beyond the bid counter".into());
        }
    }
    let mut previous: Option<(u64, u64, u64)> = None;
    for bid in &auction.bids {
        if let Some((bid_id, seq, price)) = previous {
            if bid.bid_id <= bid_id || bid.seq <= seq || bid.price_after < price {
                return Err(format!("bid {} is out of order or lowered the price", bid.bid_id));
            }
        }
        if bid.bid_id > last_bid_id || bid.seq > auction.seq || bid.amount > bid.max_amount {
            return Err(format!("bid {} is inconsistent", bid.bid_id));
        }
        previous = Some((bid.bid_id, bid.seq, bid.price_after));
    }
    if let (Some(last), Some(leader)) = (auction.bids.last(), &auction.leader) {
        if last.price_after != auction.price || last.leader_after != leader.bidder {
            return Err("the last bid does not match the price and leader".into());
        }
    }
    if auction.ends_at_ms < auction.spec.ends_at_ms {
        return Err("ends_at moved earlier than the spec's".into());
    }
    let max_extensions = auction
        .spec
        .soft_close
        .map_or(0, |soft_close| soft_close.max_extensions);
    if auction.extensions > max_extensions {
        return Err("more soft-close extensions than allowed".into());
    }
    if auction.status == AuctionStatus::Open && auction.seq < 2 {
        return Err("an open auction has at least its Created and Opened events".into());
    }
    if auction.seq == 0 {
        return Err("every auction has at least its Created event".into());
    }
    Ok(())
}

/// A sealed auction: no leader and no price ever (the outcome names the winner), at
/// most one bid per bidder, each at least the starting price, in bid order.
fn check_sealed(auction: &Auction, last_bid_id: u64) -> Result<(), String> {
    if auction.leader.is_some() || auction.price != 0 {
        return Err("a sealed auction has no leader and no price".into());
    }
    let mut bidders = BTreeSet::new();
    let mut previous = 0;
    for bid in &auction.bids {
        if !bidders.insert(bid.bidder.as_str()) {
            return Err(format!("{} has more than one sealed bid", bid.bidder));
        }
        if bid.bid_id <= previous || bid.bid_id > last_bid_id || bid.seq > auction.seq {
            return Err(format!("bid {} is out of order", bid.bid_id));
        }
        if bid.amount < auction.spec.starting_price || bid.amount != bid.max_amount {
            return Err(format!("bid {} is inconsistent", bid.bid_id));
        }
        previous = bid.bid_id;
    }
    if auction.seq == 0 {
        return Err("every auction has at least its Created event".into());
    }
    Ok(())
}
