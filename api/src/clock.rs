//! The auction clock: opens scheduled auctions at `starts_at` and closes auctions at
//! their (extended) end. For now the leader runs it for every auction; the workers issue
//! moves it to the worker hosting each auction.
//!
//! Every tick the leader asks the book which clock commands are due and proposes them,
//! stamped with its time; `apply` re-checks that time, so a clock that runs early is
//! refused (`not_yet_ended`) and one that runs twice is harmless (`auction_closed`). A bid
//! stamped at or after the end is refused by `apply` even before the close is applied.

use std::time::Duration;

use gavel_raft::cluster;
use gavel_storage::{Command, Response};
use openraft::ServerState;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::json::now_ms;
use crate::state::AppState;

/// How often the clock looks for due auctions.
pub const CLOCK_TICK_MS: u64 = 50;
/// Clock commands proposed at once per tick; the rest wait for the next tick.
pub const CLOCK_PROPOSALS_PER_TICK_MAX: usize = 256;

/// Runs the clock until `stop` becomes true.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(CLOCK_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if state.raft.metrics().borrow().state != ServerState::Leader {
            continue;
        }
        let due = state.sm.read().book.due(now_ms());
        let mut proposals = JoinSet::new();
        for op in due.into_iter().take(CLOCK_PROPOSALS_PER_TICK_MAX) {
            let raft = state.raft.clone();
            proposals.spawn(async move {
                let name = op.name();
                let result = cluster::write(&raft, Command::new(now_ms(), op)).await;
                (name, result)
            });
        }
        while let Some(joined) = proposals.join_next().await {
            match joined {
                Ok((
                    _,
                    Ok((
                        _,
                        Response::AuctionEnded {
                            auction_id, outcome, ..
                        },
                    )),
                )) => {
                    tracing::info!(auction_id, outcome = outcome.as_str(), "auction closed");
                }
                Ok((_, Ok((_, Response::AuctionOpened { auction_id, .. })))) => {
                    tracing::info!(auction_id, "auction opened");
                }
                Ok((name, Ok((_, other)))) => tracing::debug!(name, ?other, "clock command had no effect"),
                Ok((name, Err(e))) => {
                    tracing::debug!(name, error = %e, "clock command not committed; retrying next tick")
                }
                Err(e) => tracing::warn!(error = %e, "clock task failed"),
            }
        }
    }
}
