//! `Housekeeping`: what keeps the book's memory bounded over months.
//!
//! - **Archive.** Every auction closed or cancelled at or before
//!   `archive_closed_before_ms` (the leader's time minus `archive_after_secs`), up to
//!   `archive_max` per command in id order, leaves the book: its auction, format, rounds,
//!   retained events and subscriptions. Each becomes the book's next archive record
//!   ([`crate::archive`]), encoded here so that every replica produces the same bytes; the
//!   book keeps the number of records and the digest chain over them, which the state hash
//!   and every snapshot therefore cover. The records wait in an outbox that the state
//!   machine empties into the archive files after each entry.
//! - **Idempotency keys** past their 24 hours are dropped (they are otherwise dropped only
//!   when a new keyed request arrives).
//! - **UDP subscriptions** that expired, or whose auction has ended, are dropped.
//!
//! An archived auction's id stays taken: the book knows every id up to its counter, so a
//! command for an id it no longer holds is answered `AuctionClosed`.

use super::AuctionBook;
use crate::archive::{chain, encode_payload, ArchivedAuction};
use crate::command::{Rejection, Response};
use crate::types::{AuctionId, TimestampMs};

/// Most auctions one `Housekeeping` may archive (bounds the work of one log entry).
pub const ARCHIVE_PER_COMMAND_MAX: u32 = 10_000;

impl AuctionBook {
    pub(super) fn housekeeping(
        &mut self,
        archive_closed_before_ms: TimestampMs,
        archive_max: u32,
        now: TimestampMs,
    ) -> Result<Response, Rejection> {
        if archive_closed_before_ms > now {
            return Err(Rejection::InvalidInput {
                reason: "archive_closed_before_ms is later than the command's time".into(),
            });
        }
        if archive_max > ARCHIVE_PER_COMMAND_MAX {
            return Err(Rejection::InvalidInput {
                reason: format!("archive_max is over {ARCHIVE_PER_COMMAND_MAX}"),
            });
        }
        let due = self.archivable(archive_closed_before_ms);
        let more = due.len() > archive_max as usize;
        let mut archived = 0u32;
        for id in due.into_iter().take(archive_max as usize) {
            self.archive_one(id, now);
            archived += 1;
        }
        let idempotency_keys_dropped = self.idempotency.drop_expired_counting(now);
        let subscriptions_dropped = self.drop_lapsed_subscriptions(now);
        Ok(Response::Housekept {
            archived,
            more,
            idempotency_keys_dropped,
            subscriptions_dropped,
        })
    }

    /// Final auctions closed at or before `cutoff`, in id order.
    fn archivable(&self, cutoff: TimestampMs) -> Vec<AuctionId> {
        self.auctions
            .values()
            .filter(|a| a.status.is_final() && a.closed_at_ms.is_some_and(|at| at <= cutoff))
            .map(|a| a.id)
            .collect()
    }

    /// Whether a `Housekeeping` at `now` with this cutoff would change anything: what the
    /// leader asks before proposing one.
    pub fn housekeeping_due(&self, archive_closed_before_ms: TimestampMs, now: TimestampMs) -> bool {
        self.auctions
            .values()
            .any(|a| a.status.is_final() && a.closed_at_ms.is_some_and(|at| at <= archive_closed_before_ms))
            || self.idempotency.has_expired(now)
            || self.subscriptions.iter().any(|(id, subs)| {
                let ended = self.auctions.get(id).is_none_or(|a| a.status.is_final());
                ended || subs.values().any(|s| s.expires_at_ms <= now)
            })
    }

    fn archive_one(&mut self, id: AuctionId, now: TimestampMs) {
        let Some(auction) = self.auctions.remove(&id) else {
            return;
        };
        self.recent_events.remove(&id);
        if let Some(subs) = self.subscriptions.get(&id) {
            let addrs: Vec<String> = subs.keys().cloned().collect();
            for addr in addrs {
                self.remove_subscription(id, &addr);
            }
        }
        let record = ArchivedAuction {
            archived_at_ms: now,
            auction,
            format: self.formats.remove(&id),
            rounds: self.rounds.remove(&id),
        };
        self.archived_records += 1;
        let payload = encode_payload(self.archived_records, &record);
        self.archive_digest = chain(&self.archive_digest, &payload);
        self.archive_outbox.push(payload);
    }

    /// Subscriptions that expired by `now` or whose auction is no longer open.
    fn drop_lapsed_subscriptions(&mut self, now: TimestampMs) -> u64 {
        let lapsed: Vec<(AuctionId, String)> = self
            .subscriptions
            .iter()
            .flat_map(|(id, subs)| {
                let ended = self.auctions.get(id).is_none_or(|a| a.status.is_final());
                subs.iter()
                    .filter(move |(_, s)| ended || s.expires_at_ms <= now)
                    .map(move |(addr, _)| (*id, addr.clone()))
            })
            .collect();
        for (id, addr) in &lapsed {
            self.remove_subscription(*id, addr);
        }
        lapsed.len() as u64
    }

    /// The archive records `apply` produced since the last call, in order: the state
    /// machine appends them to the archive files.
    pub fn take_archived(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.archive_outbox)
    }

    /// How many auctions the cluster has archived, and the digest chain over their
    /// records: what this book's archive must hold.
    pub fn archive_ref(&self) -> (u64, [u8; 32]) {
        (self.archived_records, self.archive_digest)
    }

    /// Whether auction `id` was created and is no longer in the book (archived).
    pub fn is_archived(&self, id: AuctionId) -> bool {
        id != 0 && id <= self.last_auction_id && !self.auctions.contains_key(&id)
    }
}
