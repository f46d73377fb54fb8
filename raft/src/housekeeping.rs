//! The leader's housekeeping loop: what keeps every node's memory bounded.
//!
//! Every [`HOUSEKEEPING_INTERVAL_MS`] the leader asks its own book whether anything is
//! due — an auction closed longer than `archive_after` ago, an idempotency key past its
//! 24 hours, a lapsed UDP subscription — and if so proposes one `Housekeeping` command
//! through the front door, stamped with its time like every other command. Every node
//! applies it the same way (`gavel_storage::book::housekeeping`): archived auctions go to
//! the archive files, the rest is dropped. While a command leaves auctions for the next
//! one (at most [`ARCHIVE_PER_ROUND`] each), the loop goes on at once, at most
//! [`ROUNDS_PER_TICK_MAX`] times per tick, so a backlog drains without starving clients.

use std::time::Duration;

use gavel_storage::{Command, Op, Response};
use openraft::async_runtime::watch::WatchReceiver as _;
use openraft::ServerState;
use tokio::sync::watch;

use crate::front_door::FrontDoor;

/// How often the leader looks for housekeeping to do.
pub const HOUSEKEEPING_INTERVAL_MS: u64 = 2_000;
/// Auctions archived by one command (one log entry): bounds the work of one apply.
pub const ARCHIVE_PER_ROUND: u32 = 2_000;
/// Commands proposed back to back in one tick while a backlog lasts.
pub const ROUNDS_PER_TICK_MAX: usize = 50;

/// Runs on every node; acts only while leading.
pub async fn run_housekeeping(door: FrontDoor, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(HOUSEKEEPING_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if door.raft.metrics().borrow_watched().state != ServerState::Leader {
            continue;
        }
        for _ in 0..ROUNDS_PER_TICK_MAX {
            if *stop.borrow() || !round(&door).await {
                break;
            }
        }
    }
}

/// One `Housekeeping` if anything is due; whether another should follow at once.
async fn round(door: &FrontDoor) -> bool {
    let now = door.cluster_now_ms();
    let cutoff = now.saturating_sub(door.config.archive_after.as_millis() as u64);
    if !door.sm.read().book.housekeeping_due(cutoff, now) {
        return false;
    }
    let op = Op::Housekeeping {
        archive_closed_before_ms: cutoff,
        archive_max: ARCHIVE_PER_ROUND,
    };
    match door.write(Command::new(now, op)).await {
        Ok(Response::Housekept {
            archived,
            more,
            idempotency_keys_dropped,
            subscriptions_dropped,
        }) => {
            tracing::debug!(
                archived,
                idempotency_keys_dropped,
                subscriptions_dropped,
                "housekeeping"
            );
            more
        }
        Ok(other) => {
            tracing::warn!(response = ?other, "housekeeping was not applied");
            false
        }
        Err(e) => {
            tracing::debug!(error = %e, "housekeeping not proposed");
            false
        }
    }
}
