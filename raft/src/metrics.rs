//! Prometheus metrics of the Raft side, in the process's default registry (served by
//! `GET /metrics` with the rest).

use std::sync::LazyLock;

use prometheus::{register_histogram, register_int_gauge, Histogram, IntGauge};

/// Latency buckets in seconds, 0.5 ms to 5 s: a write on a healthy cluster takes 1–10 ms.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

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
        vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
    )
    .expect("metric registers once")
});

/// This node's clock minus cluster time (see [`crate::clock`]).
pub static CLOCK_OFFSET_MS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "gavel_clock_offset_ms",
        "This node's wall clock minus cluster time in ms (on the leader: the time a majority of voters agree on; on a follower: the leader's). 0 while unknown (see gavel_clock_synchronized)."
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
