//! Prometheus metrics of the Raft side, in the process's default registry (served by
//! `GET /metrics` with the rest).
//!
//! - The commit path: [`COMMIT_SECONDS`] (proposal to applied on the leader),
//!   [`BATCH_COMMANDS`] (commands per group-commit entry) and [`PROPOSER_QUEUE`]
//!   (commands waiting for a proposal slot).
//! - Replication: [`REPLICATION_LAG`], on the leader, per follower (bounded by the
//!   membership: one series per other member). Gauges read at scrape time ([`refresh`]).
//! - Leadership: [`LEADER_CHANGES`], counted by [`run_leader_watch`] as this node sees
//!   them (so each node's count is its own view; a flapping leader shows on all).

use openraft::async_runtime::watch::WatchReceiver as _;
use std::sync::LazyLock;

use prometheus::{
    register_gauge, register_histogram, register_int_counter, register_int_gauge, register_int_gauge_vec, Gauge,
    Histogram, IntCounter, IntGauge, IntGaugeVec,
};
use tokio::sync::watch;

use crate::{FrontDoor, Raft};

/// Latency buckets in seconds, 0.5 ms to 5 s: a write on a healthy cluster takes 1–10 ms.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// Buckets for commands per group-commit entry (its bound is
/// [`crate::proposer::BATCH_COMMANDS_MAX`]).
pub const BATCH_BUCKETS_COMMANDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// From a proposal's hand-over to openraft until it is committed on a majority and
/// applied on the leader (what a client's write waits for, less the HTTP work).
pub static COMMIT_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "gavel_raft_commit_duration_seconds",
        "Time from proposing a log entry until it is committed and applied on the leader.",
        LATENCY_BUCKETS_SECONDS.to_vec()
    )
    .expect("metric registers once")
});

/// Commands per proposal of the group commit.
pub static BATCH_COMMANDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "gavel_proposer_batch_commands",
        "Commands carried by one proposal of the leader's group commit.",
        BATCH_BUCKETS_COMMANDS.to_vec()
    )
    .expect("metric registers once")
});

pub static PROPOSER_QUEUE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "gavel_proposer_queue_commands",
        "Commands waiting in the group commit's queue for a proposal slot (bounded by PROPOSER_QUEUE_MAX, 8192)."
    )
    .expect("metric registers once")
});

pub static REPLICATION_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "gavel_raft_replication_lag_entries",
        "On the leader: log entries each follower (or learner) has not acknowledged yet; absent on other nodes.",
        &["follower"]
    )
    .expect("metric registers once")
});

pub static LEADER_CHANGES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "gavel_raft_leader_changes_total",
        "Times this node saw a new leader (the first leader it saw included)."
    )
    .expect("metric registers once")
});

/// Registers every metric of this crate, so that each is scraped (at zero) before its
/// first observation.
pub fn register() {
    LazyLock::force(&COMMIT_SECONDS);
    LazyLock::force(&BATCH_COMMANDS);
    LazyLock::force(&PROPOSER_QUEUE);
    LazyLock::force(&REPLICATION_LAG);
    LazyLock::force(&LEADER_CHANGES);
    LazyLock::force(&CLOCK_OFFSET_SECONDS);
    LazyLock::force(&CLOCK_SKEWED);
    LazyLock::force(&CLOCK_SYNCHRONIZED);
}

/// Sets the gauges read at scrape time: the proposer's queue and, on the leader, each
/// follower's lag. A node that does not lead has no lag series (none go stale).
pub fn refresh(door: &FrontDoor) {
    PROPOSER_QUEUE.set(i64::try_from(door.proposer_queued()).unwrap_or(i64::MAX));
    let m = door.raft.metrics().borrow_watched().clone();
    let lags = replication_lags(&m);
    REPLICATION_LAG.reset();
    for (follower, lag) in lags {
        REPLICATION_LAG
            .with_label_values(&[follower.to_string().as_str()])
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }
}

/// On the leader: entries each other member is behind its last log index (all of them
/// for a member that never answered). Empty elsewhere.
pub fn replication_lags(m: &openraft::RaftMetrics<gavel_storage::TypeConfig>) -> Vec<(u64, u64)> {
    let Some(replication) = &m.replication else {
        return Vec::new();
    };
    let last = m.last_log_index.unwrap_or(0);
    replication
        .iter()
        .filter(|(id, _)| **id != m.id)
        .map(|(id, matched)| (*id, last.saturating_sub(matched.as_ref().map_or(0, |l| l.index))))
        .collect()
}

/// Counts leader changes as this node sees them, until `stop` or until the Raft core
/// stops. Driven by openraft's server metrics, which change only with the vote, the
/// role or the leader, never per entry.
pub async fn run_leader_watch(raft: Raft, mut stop: watch::Receiver<bool>) {
    let mut server = raft.server_metrics();
    let mut last_seen = None;
    loop {
        let leader = server.borrow_watched().current_leader;
        if leader.is_some() && leader != last_seen {
            LEADER_CHANGES.inc();
            last_seen = leader;
        }
        tokio::select! {
            changed = server.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// This node's clock minus cluster time, in seconds (see [`crate::clock`]).
pub static CLOCK_OFFSET_SECONDS: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "gavel_clock_offset_seconds",
        "This node's wall clock minus cluster time (on the leader: the time a majority of voters agree on; on a follower: the leader's). 0 while unknown (see gavel_clock_synchronized)."
    )
    .expect("metric registers once")
});

/// 1 while this node's clock is more than `max_clock_skew_ms` from cluster time.
pub static CLOCK_SKEWED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "gavel_clock_skewed",
        "1 while this node's clock is more than max_clock_skew_ms from cluster time: as leader it stamps no command and hands its leadership over."
    )
    .expect("metric registers once")
});

/// 1 while this node knows cluster time.
pub static CLOCK_SYNCHRONIZED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "gavel_clock_synchronized",
        "1 while this node knows cluster time: as leader, a majority of voters agree on it within max_clock_skew_ms; as follower, it has a fresh sample of the leader's."
    )
    .expect("metric registers once")
});
