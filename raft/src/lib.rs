//! gavel-raft: how Gavel nodes run Raft together.
//!
//! - [`config`]: openraft timeouts chosen for a loaded 2-core machine.
//! - [`network`]: the client side of node-to-node RPC (HTTP, bincode bodies, pooled
//!   keep-alive connections, the cluster secret).
//! - [`rpc`]: the server side: axum routes under `/raft/` that feed openraft.
//! - [`front_door`]: the one way a node's writes and leader-only requests reach the
//!   leader: admitted there, or sent on as typed requests over node RPC.
//! - [`proposer`]: the leader's group commit.
//! - [`workers`]: the worker registry (liveness, re-reports, registration) and the
//!   leader's reassignment loop.
//! - [`clock`]: cluster time: the peers' clocks sampled on node RPC round trips, the
//!   time a majority of voters agree on (Marzullo), and the leader that stops stamping
//!   commands and hands over when its clock is off.
//! - [`housekeeping`]: the leader's loop that archives closed auctions and drops
//!   expired keys and subscriptions.
//! - [`metrics`]: Prometheus metrics of the commit path and the clock.
//! - [`cluster`]: the Raft calls beneath: one write, read barriers, membership changes,
//!   the leadership hand-off, and their errors.

pub mod clock;
pub mod cluster;
pub mod config;
pub mod front_door;
pub mod housekeeping;
pub mod metrics;
pub mod network;
pub mod proposer;
pub mod rpc;
pub mod tls;
pub mod workers;

pub use cluster::{ClusterError, NodeAddr};
pub use config::RaftTimings;
pub use front_door::{FrontDoor, FrontDoorConfig};
pub use network::HttpNetwork;

/// The Raft handle of a Gavel node.
pub type Raft = openraft::Raft<gavel_storage::TypeConfig, gavel_storage::StateMachineStore>;

/// Checks a request's `Authorization: Bearer <secret>` against the cluster secret in
/// constant time. With no secret configured nothing passes: such a node runs alone.
pub fn secret_matches(configured: Option<&str>, headers: &axum::http::HeaderMap) -> bool {
    let Some(configured) = configured else { return false };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq::constant_time_eq(given.as_bytes(), configured.as_bytes())
}
