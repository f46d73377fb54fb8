//! The auction book: Gavel's whole replicated state, and `apply`, the pure function that
//! moves it forward one committed [`Command`] at a time.
//!
//! # Determinism
//!
//! `apply` reads nothing but the book and the command: no clock, no randomness, no I/O,
//! and it never panics (checked or saturating arithmetic; overflow is
//! [`Rejection::InvalidAmount`]). Every collection is a `BTreeMap`, `BTreeSet` or `Vec`,
//! so [`AuctionBook::encode`] gives the same bytes on every replica that applied the same
//! commands and [`AuctionBook::state_hash`] (sha256 of those bytes) can be compared
//! across nodes (DESIGN §6, invariant 4).
//!
//! # Time
//!
//! The effective time of a command is `now = max(cmd.ts_ms, last_ts_ms)`, so time never
//! runs backwards across leaders; `now` becomes `last_ts_ms` (except for a command answered
//! from the idempotency table, which changes nothing at all).
//!
//! # Rules (English auctions, eBay-style proxy bidding)
//!
//! - Auction ids and bid ids are sequential from 1. An auction is `Scheduled` until
//!   `starts_at`, then `Open` (by an `OpenAuction` command, or by the first bid or buy-now
//!   after `starts_at`), then `Closed` or `Cancelled` for good.
//! - A bid is accepted only with `starts_at <= now < ends_at` (the current, possibly
//!   extended end), whether or not a `CloseAuction` has been applied yet (invariant 3).
//! - A new bidder must bid at least the minimum next bid (the starting price, else
//!   `price + increment(price)`); the book then bids for the leader up to their
//!   `max_amount`: the higher maximum leads, a tie goes to the earlier bid, and the price
//!   becomes one increment above the loser's maximum, capped by the winner's maximum and
//!   never below what was bid in the open. Once the leader's maximum reaches a hidden
//!   reserve, the price jumps to the reserve. The leader may only raise their own maximum.
//!   The visible price therefore never decreases while an auction runs (invariant 5).
//! - Soft close: an accepted bid within `window_secs` of the end moves the end to
//!   `now + extend_secs`, at most `max_extensions` times; only a move that actually pushes
//!   the end later counts as an extension.
//! - Every auction has exactly one outcome once final (invariant 2): `sold`,
//!   `reserve_not_met`, `no_bids` (by `CloseAuction` at or after the end), `bought_now`,
//!   `cancelled`.
//! - Every event gets the auction's next `seq`, gapless from 1 (`Created`). The newest
//!   [`RECENT_EVENTS_MAX`] events of each auction are kept for SSE replay.
//! - Workers have a capacity; a non-final auction counts against its worker's capacity.
//!
//! A rejected command changes nothing but `last_ts_ms` and the idempotency table.
//!
//! # Idempotency
//!
//! A command with an idempotency key is executed at most once within 24 hours of command
//! time: a retry gets the first response back — even a rejection — and changes nothing,
//! not even `last_ts_ms`; the same key with a different request is
//! [`Rejection::IdempotencyKeyReused`]; a key let go early (quotas per client, a bound on
//! the table) is [`Rejection::IdempotencyKeyExpired`]. The exact guarantee and its bounds
//! are in [`idempotency`].
//!
//! # Archive
//!
//! Closed auctions leave the book for the archive by a committed `Housekeeping` command
//! ([`housekeeping`], [`crate::archive`]); the book then keeps only the number of records
//! and their digest, and answers `AuctionClosed` for the ids it no longer holds.
//!
//! Handlers live in submodules: `lifecycle` (create, open, buy-now, close, cancel),
//! `bidding` (bids and proxy pricing), `workers` (registry and assignment), `invariants`
//! (the checks [`AuctionBook::check_invariants`] runs, also after every decode).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::{Command, Op, Rejection, Response};
use crate::types::{Auction, AuctionEvent, AuctionId, AuctionStatus, EventKind, Money, NodeId, TimestampMs, Worker};

pub mod accounts;
#[cfg(test)]
mod accounts_tests;
mod bidding;
pub mod formats;
#[cfg(test)]
mod formats_tests;
pub mod housekeeping;
#[cfg(test)]
mod housekeeping_tests;
pub mod idempotency;
mod invariants;
mod lifecycle;
pub mod rounds;
mod subscriptions;
#[cfg(test)]
mod tests;
mod workers;

pub use idempotency::{
    IdempotencyLimits, IDEMPOTENCY_KEYS_MAX, IDEMPOTENCY_KEYS_PER_CLIENT, IDEMPOTENCY_KEY_MAX_BYTES, IDEMPOTENCY_TTL_MS,
};
pub use subscriptions::{SUBSCRIBERS_PER_AUCTION_MAX, SUBSCRIPTIONS_PER_ACCOUNT_MAX, SUBSCRIPTION_TTL_MAX_SECS};

use idempotency::{IdempotencyTable, Lookup};

/// Events kept per auction for SSE replay (`Last-Event-ID`); older ones are dropped.
pub const RECENT_EVENTS_MAX: usize = 256;

/// All replicated state of a node. See the module docs for the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionBook {
    auctions: BTreeMap<AuctionId, Auction>,
    workers: BTreeMap<NodeId, Worker>,
    last_ts_ms: TimestampMs,
    /// The highest auction id handed out so far; the next one is this + 1.
    last_auction_id: AuctionId,
    /// The highest bid id handed out so far (bid ids are global, not per auction).
    last_bid_id: u64,
    /// Non-final auctions by the worker hosting them; derived from `auctions` and kept so
    /// that capacity checks do not scan every auction. No empty sets.
    hosted: BTreeMap<NodeId, BTreeSet<AuctionId>>,
    /// The newest [`RECENT_EVENTS_MAX`] events of each auction, oldest first.
    recent_events: BTreeMap<AuctionId, Vec<AuctionEvent>>,
    idempotency: IdempotencyTable,
    /// UDP subscribers of each auction: address → expiry (command time). Replicated, so
    /// a worker that takes an auction over knows whom to push to.
    subscriptions: BTreeMap<AuctionId, BTreeMap<String, subscriptions::Subscription>>,
    /// Derived: each account's subscriptions, (auction, address).
    subscriptions_by_owner: BTreeMap<String, BTreeSet<(AuctionId, String)>>,
    /// Accounts by name (see [`accounts`]).
    accounts: BTreeMap<String, accounts::Account>,
    /// Enabled accounts' current token hashes → account name.
    accounts_by_token: BTreeMap<accounts::TokenHash, String>,
    /// Derived: what each bidder risks over auctions not yet final: the maxima it leads
    /// English auctions with, and its sealed bids.
    exposure: BTreeMap<String, Money>,
    /// The format of every auction that is not English (see [`formats`]).
    formats: BTreeMap<AuctionId, formats::Format>,
    /// The progress of every multi-round auction that has a participant (see [`rounds`]).
    rounds: BTreeMap<AuctionId, rounds::Rounds>,
    /// Auctions moved to the archive so far, and the digest chain over their records
    /// (see [`housekeeping`] and [`crate::archive`]).
    archived_records: u64,
    archive_digest: [u8; 32],
    /// Archive records made by the entry being applied, for the state machine to write;
    /// always empty between entries, never encoded.
    #[serde(skip)]
    archive_outbox: Vec<Vec<u8>>,
}

/// Summary counts for `gavel snapshot inspect` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookCounts {
    /// Keyed by [`AuctionStatus::as_str`]; every status is present, possibly with 0.
    pub auctions_by_status: BTreeMap<String, u64>,
    pub bids: u64,
    pub workers: u64,
    pub idempotency_keys: u64,
}

impl AuctionBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty book whose idempotency table has `limits` (part of the replicated state).
    pub fn with_idempotency_limits(limits: IdempotencyLimits) -> Self {
        AuctionBook {
            idempotency: IdempotencyTable::with_limits(limits),
            ..Self::default()
        }
    }

    /// The idempotency table's bounds.
    pub fn idempotency_limits(&self) -> IdempotencyLimits {
        self.idempotency.limits()
    }

    /// What the idempotency table holds.
    pub fn idempotency_stats(&self) -> idempotency::IdempotencyStats {
        self.idempotency.stats()
    }

    /// Applies one committed command. Pure and deterministic; never panics.
    pub fn apply(&mut self, cmd: &Command) -> Response {
        if let Op::Batch(commands) = &cmd.op {
            return Response::Batch(
                commands
                    .iter()
                    .map(|c| match c.op {
                        Op::Batch(_) => Response::Rejected(Rejection::InvalidInput {
                            reason: "batches do not nest".into(),
                        }),
                        _ => self.apply(c),
                    })
                    .collect(),
            );
        }
        let now = cmd.ts_ms.max(self.last_ts_ms);
        // Before the idempotency table: a refused caller's answer is not remembered.
        if let Err(refused) = self.authorize(cmd.caller.as_ref(), &cmd.op) {
            self.last_ts_ms = now;
            return Response::Rejected(refused);
        }
        let Some(tag) = &cmd.idempotency else {
            self.last_ts_ms = now;
            return self.apply_op(cmd, now);
        };
        match self.idempotency.lookup(&tag.key, &tag.request, now) {
            Lookup::Replay(response) => return response,
            Lookup::Reused => return Response::Rejected(Rejection::IdempotencyKeyReused),
            Lookup::Expired => return Response::Rejected(Rejection::IdempotencyKeyExpired),
            Lookup::Miss => {}
        }
        self.last_ts_ms = now;
        if let Err(refused) = self.idempotency.admit(tag.client, now) {
            return Response::Rejected(refused);
        }
        let response = self.apply_op(cmd, now);
        self.idempotency
            .insert(tag.key, tag.request, tag.client, response.clone(), now);
        response
    }

    fn apply_op(&mut self, cmd: &Command, now: TimestampMs) -> Response {
        let result = match &cmd.op {
            Op::CreateAuction { spec, worker } => self.create_auction(spec, *worker, now),
            Op::CreateFormatAuction { spec, format, worker } => self.create_format_auction(spec, format, *worker, now),
            Op::JoinAuction { auction_id, bidder } => self.join_auction(*auction_id, bidder, now),
            Op::StartRounds { auction_id, seller } => self.start_rounds(*auction_id, seller, now),
            Op::OpenAuction { auction_id } => self.open_auction(*auction_id, now),
            Op::PlaceBid {
                auction_id,
                bidder,
                amount,
                max_amount,
            } => self.place_bid(*auction_id, bidder, *amount, *max_amount, cmd.signed.as_ref(), now),
            Op::BuyNow { auction_id, buyer } => self.buy_now(*auction_id, buyer, now),
            Op::CloseAuction { auction_id } => self.close_auction(*auction_id, now),
            Op::CancelAuction { auction_id, by } => self.cancel_auction(*auction_id, by, now),
            Op::RegisterWorker {
                node_id,
                addr,
                udp_addr,
                max_auctions,
            } => Ok(self.register_worker(*node_id, addr, udp_addr, *max_auctions, now)),
            Op::RemoveWorker { node_id } => self.remove_worker(*node_id),
            Op::AssignAuction { auction_id, worker } => self.assign_auction(*auction_id, *worker, now),
            Op::Subscribe {
                auction_id,
                addr,
                ttl_secs,
            } => self.subscribe(*auction_id, addr, *ttl_secs, cmd.caller.as_ref(), now),
            Op::Unsubscribe { auction_id, addr } => self.unsubscribe(*auction_id, addr, cmd.caller.as_ref()),
            Op::Batch(_) => Err(Rejection::InvalidInput {
                reason: "batches do not nest".into(),
            }),
            Op::CreateAccount(account) => self.create_account(account, now),
            Op::RotateToken { name, token_hash } => self.rotate_token(name, token_hash),
            Op::DisableAccount { name } => self.disable_account(name),
            Op::Housekeeping {
                archive_closed_before_ms,
                archive_max,
            } => self.housekeeping(*archive_closed_before_ms, *archive_max, now),
            Op::SetIdempotencyLimits(limits) => match limits.validate() {
                Ok(()) => {
                    self.idempotency.set_limits(*limits);
                    Ok(Response::None)
                }
                Err(reason) => Err(Rejection::InvalidInput { reason }),
            },
        };
        result.unwrap_or_else(Response::Rejected)
    }

    /// Lowercase hex sha256 of [`AuctionBook::encode`].
    pub fn state_hash(&self) -> String {
        hex::encode(Sha256::digest(self.encode()))
    }

    pub fn auction(&self, id: AuctionId) -> Option<&Auction> {
        self.auctions.get(&id)
    }

    /// Every auction, in id order.
    pub fn auctions(&self) -> impl Iterator<Item = &Auction> {
        self.auctions.values()
    }

    pub fn workers(&self) -> &BTreeMap<NodeId, Worker> {
        &self.workers
    }

    /// The effective time of the newest applied command.
    pub fn last_ts_ms(&self) -> TimestampMs {
        self.last_ts_ms
    }

    /// The lowest amount a new bidder may bid now; `None` for an unknown or final auction
    /// (or if the amount would overflow). See [`Auction::min_next_bid`].
    pub fn min_next_bid(&self, id: AuctionId) -> Option<Money> {
        self.auctions.get(&id)?.min_next_bid()
    }

    /// Whether the hidden reserve is met (always `true` without a reserve); `None` for an
    /// unknown auction.
    pub fn reserve_met(&self, id: AuctionId) -> Option<bool> {
        Some(self.auctions.get(&id)?.reserve_met())
    }

    /// The non-final auctions assigned to `node`, in id order.
    pub fn hosted_by(&self, node: NodeId) -> Vec<AuctionId> {
        self.hosted
            .get(&node)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The retained events of auction `id` with `seq > after_seq`, oldest first. Only the
    /// newest [`RECENT_EVENTS_MAX`] are retained: if the first returned `seq` is not
    /// `after_seq + 1`, the caller missed events it must rebuild from the auction state.
    pub fn recent_events(&self, id: AuctionId, after_seq: u64) -> Vec<AuctionEvent> {
        let Some(events) = self.recent_events.get(&id) else {
            return Vec::new();
        };
        let start = events.partition_point(|event| event.seq <= after_seq);
        events[start..].to_vec()
    }

    /// The clock commands due at `now`: `CloseAuction` for every auction past its
    /// (extended) end, `OpenAuction` for every scheduled auction past its start. Proposing
    /// them is the hosting clock's job; applying them re-checks the time.
    pub fn due(&self, now: TimestampMs) -> Vec<Op> {
        self.auctions
            .values()
            .filter(|a| !a.status.is_final())
            .filter_map(|a| {
                if now >= a.ends_at_ms {
                    Some(Op::CloseAuction { auction_id: a.id })
                } else if a.status == AuctionStatus::Scheduled && now >= a.spec.starts_at_ms {
                    Some(Op::OpenAuction { auction_id: a.id })
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn counts(&self) -> BookCounts {
        let statuses = [
            AuctionStatus::Scheduled,
            AuctionStatus::Open,
            AuctionStatus::Closed,
            AuctionStatus::Cancelled,
        ];
        let mut auctions_by_status: BTreeMap<String, u64> =
            statuses.iter().map(|status| (status.as_str().to_string(), 0)).collect();
        let mut bids = 0u64;
        for auction in self.auctions.values() {
            *auctions_by_status
                .entry(auction.status.as_str().to_string())
                .or_default() += 1;
            bids += auction.bids.len() as u64;
        }
        BookCounts {
            auctions_by_status,
            bids,
            workers: self.workers.len() as u64,
            idempotency_keys: self.idempotency.len() as u64,
        }
    }

    /// The canonical bytes of the book: bincode 2 (serde mode, [`crate::bincode_config`]).
    /// Snapshot payloads and [`AuctionBook::state_hash`] are made of these.
    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, crate::bincode_config())
            .expect("the book holds only maps, vectors, strings and integers, which always encode")
    }

    /// Reads bytes written by [`AuctionBook::encode`]. Trailing bytes, a decode failure or
    /// a book that fails [`AuctionBook::check_invariants`] are [`crate::Error::Corrupt`].
    pub fn decode(bytes: &[u8]) -> crate::Result<Self> {
        let corrupt = |reason: String| crate::Error::corrupt("snapshot payload", reason);
        let decoded = crate::decode_limited::<AuctionBook, { crate::snapshot::SNAPSHOT_PAYLOAD_MAX_BYTES }>(bytes);
        // A book written before the archive (snapshot format 3) lacks the last two fields;
        // one written before auction formats (format 2) lacks two more.
        let decoded = decoded
            .or_else(|e| {
                crate::decode_limited::<BookV3, { crate::snapshot::SNAPSHOT_PAYLOAD_MAX_BYTES }>(bytes)
                    .map(|(old, read)| (old.into(), read))
                    .map_err(|_| e)
            })
            .or_else(|e| {
                crate::decode_limited::<BookV2, { crate::snapshot::SNAPSHOT_PAYLOAD_MAX_BYTES }>(bytes)
                    .map(|(old, read)| (old.into(), read))
                    .map_err(|_| e)
            });
        let (book, read): (AuctionBook, usize) = decoded.map_err(|e| corrupt(e.to_string()))?;
        if read != bytes.len() {
            return Err(corrupt(format!("{} trailing bytes after the book", bytes.len() - read)));
        }
        book.check_invariants().map_err(corrupt)?;
        Ok(book)
    }

    /// Hands out the next global bid id (every format's bids share the counter).
    fn take_bid_id(&mut self) -> Result<u64, Rejection> {
        let bid_id = self
            .last_bid_id
            .checked_add(1)
            .ok_or_else(|| Rejection::InvalidAmount {
                reason: "bid ids are exhausted".into(),
            })?;
        self.last_bid_id = bid_id;
        Ok(bid_id)
    }

    /// The auction `id`; `AuctionClosed` if it was archived, else `UnknownAuction`.
    fn get(&self, id: AuctionId) -> Result<&Auction, Rejection> {
        match self.auctions.get(&id) {
            Some(auction) => Ok(auction),
            None if self.is_archived(id) => Err(Rejection::AuctionClosed),
            None => Err(Rejection::UnknownAuction { auction_id: id }),
        }
    }

    /// Appends an event with the auction's next `seq` to the auction and to its replay
    /// buffer, and returns it.
    fn emit(&mut self, id: AuctionId, now: TimestampMs, kind: EventKind) -> Option<AuctionEvent> {
        let auction = self.auctions.get_mut(&id)?;
        auction.seq = auction.seq.saturating_add(1);
        let event = AuctionEvent {
            auction_id: id,
            seq: auction.seq,
            ts_ms: now,
            kind,
        };
        let buffer = self.recent_events.entry(id).or_default();
        buffer.push(event.clone());
        if buffer.len() > RECENT_EVENTS_MAX {
            let excess = buffer.len() - RECENT_EVENTS_MAX;
            buffer.drain(..excess);
        }
        Some(event)
    }

    /// Like [`AuctionBook::emit`], collecting the event into `events`.
    fn emit_into(&mut self, events: &mut Vec<AuctionEvent>, id: AuctionId, now: TimestampMs, kind: EventKind) {
        events.extend(self.emit(id, now, kind));
    }
}

/// `Closed` → `AuctionClosed`, `Cancelled` → `AuctionCancelled`, else `Ok`.
fn check_not_final(auction: &Auction) -> Result<(), Rejection> {
    match auction.status {
        AuctionStatus::Closed => Err(Rejection::AuctionClosed),
        AuctionStatus::Cancelled => Err(Rejection::AuctionCancelled),
        AuctionStatus::Scheduled | AuctionStatus::Open => Ok(()),
    }
}

/// The book as snapshot format 3 stored it: [`AuctionBook`] before the archive.
#[derive(Deserialize)]
struct BookV3 {
    auctions: BTreeMap<AuctionId, Auction>,
    workers: BTreeMap<NodeId, Worker>,
    last_ts_ms: TimestampMs,
    last_auction_id: AuctionId,
    last_bid_id: u64,
    hosted: BTreeMap<NodeId, BTreeSet<AuctionId>>,
    recent_events: BTreeMap<AuctionId, Vec<AuctionEvent>>,
    idempotency: IdempotencyTable,
    subscriptions: BTreeMap<AuctionId, BTreeMap<String, subscriptions::Subscription>>,
    subscriptions_by_owner: BTreeMap<String, BTreeSet<(AuctionId, String)>>,
    accounts: BTreeMap<String, accounts::Account>,
    accounts_by_token: BTreeMap<accounts::TokenHash, String>,
    exposure: BTreeMap<String, Money>,
    formats: BTreeMap<AuctionId, formats::Format>,
    rounds: BTreeMap<AuctionId, rounds::Rounds>,
}

impl From<BookV3> for AuctionBook {
    fn from(old: BookV3) -> Self {
        AuctionBook {
            auctions: old.auctions,
            workers: old.workers,
            last_ts_ms: old.last_ts_ms,
            last_auction_id: old.last_auction_id,
            last_bid_id: old.last_bid_id,
            hosted: old.hosted,
            recent_events: old.recent_events,
            idempotency: old.idempotency,
            subscriptions: old.subscriptions,
            subscriptions_by_owner: old.subscriptions_by_owner,
            accounts: old.accounts,
            accounts_by_token: old.accounts_by_token,
            exposure: old.exposure,
            formats: old.formats,
            rounds: old.rounds,
            archived_records: 0,
            archive_digest: crate::archive::EMPTY_DIGEST,
            archive_outbox: Vec::new(),
        }
    }
}

/// The book as snapshot format 2 stored it: [`AuctionBook`] before `formats` (every
/// auction English).
#[derive(Deserialize)]
struct BookV2 {
    auctions: BTreeMap<AuctionId, Auction>,
    workers: BTreeMap<NodeId, Worker>,
    last_ts_ms: TimestampMs,
    last_auction_id: AuctionId,
    last_bid_id: u64,
    hosted: BTreeMap<NodeId, BTreeSet<AuctionId>>,
    recent_events: BTreeMap<AuctionId, Vec<AuctionEvent>>,
    idempotency: IdempotencyTable,
    subscriptions: BTreeMap<AuctionId, BTreeMap<String, subscriptions::Subscription>>,
    subscriptions_by_owner: BTreeMap<String, BTreeSet<(AuctionId, String)>>,
    accounts: BTreeMap<String, accounts::Account>,
    accounts_by_token: BTreeMap<accounts::TokenHash, String>,
    exposure: BTreeMap<String, Money>,
}

impl From<BookV2> for AuctionBook {
    fn from(old: BookV2) -> Self {
        AuctionBook {
            auctions: old.auctions,
            workers: old.workers,
            last_ts_ms: old.last_ts_ms,
            last_auction_id: old.last_auction_id,
            last_bid_id: old.last_bid_id,
            hosted: old.hosted,
            recent_events: old.recent_events,
            idempotency: old.idempotency,
            subscriptions: old.subscriptions,
            subscriptions_by_owner: old.subscriptions_by_owner,
            accounts: old.accounts,
            accounts_by_token: old.accounts_by_token,
            exposure: old.exposure,
            formats: BTreeMap::new(),
            rounds: BTreeMap::new(),
            archived_records: 0,
            archive_digest: crate::archive::EMPTY_DIGEST,
            archive_outbox: Vec::new(),
        }
    }
}
