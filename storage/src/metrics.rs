//! Prometheus metrics of the storage side, in the process's default registry (served by
//! `GET /metrics` with the rest).

use std::sync::LazyLock;

use prometheus::{register_int_counter, IntCounter};

/// Bids this node has applied (accepted bids, sealed bids included): the same on every
/// replica, so its rate is the cluster's accepted bids per second.
pub static APPLIED_BIDS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "gavel_applied_bids_total",
        "Accepted bids applied by this node's state machine (the same on every replica)."
    )
    .expect("metric registers once")
});
