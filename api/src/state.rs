//! What every handler and background task shares: this node's identity, its Raft handle
//! and state machine, the front door to the leader (`gavel_raft::front_door`, which also
//! holds the worker registry), the cluster secret and the UDP sender.

use openraft::async_runtime::watch::WatchReceiver as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gavel_raft::{FrontDoor, Raft};
use gavel_storage::{LogStore, StateMachineStore};

use crate::error::ApiError;
use crate::hosting::WorkerConfig;
use crate::udp::UdpSender;

/// How long a request to another node (a peer's cluster view) may take.
pub const PEER_REQUEST_TIMEOUT_MS: u64 = 15_000;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub node_id: u64,
    pub cluster_name: String,
    pub raft: Raft,
    pub sm: StateMachineStore,
    /// The Raft log (for its health: blob files, storage errors).
    pub log: LogStore,
    /// Cluster secret; `None` makes this a single-node deployment.
    pub secret: Option<Arc<str>>,
    /// HTTP client for reads from peers (their cluster view).
    pub client: reqwest::Client,
    pub counters: Counters,
    /// Connection counters of the HTTP server.
    pub connections: Arc<crate::server::ConnectionCounters>,
    /// The one way to the leader: writes, read indexes, heartbeats, membership.
    pub door: FrontDoor,
    pub worker: WorkerConfig,
    pub udp: UdpSender,
    /// UDP subscriptions waiting for their address to prove it wants them.
    pub proofs: crate::subscriptions::Proofs,
    /// Token buckets per address and per account.
    pub limits: Arc<crate::limits::RateLimits>,
    pub tls: Option<Arc<gavel_raft::tls::NodeTls>>,
    /// `https` or `http`: how this node addresses the others.
    pub scheme: &'static str,
    pub data_dir: Option<std::path::PathBuf>,
    /// The membership log index at which this node saw itself removed; 0 while a member
    /// (see [`crate::membership`]).
    pub removed_at: AtomicU64,
    /// This node's recent figures for the operator page (`crate::metrics`).
    pub history: crate::metrics::Recent,
    /// Whether this process has once applied everything it knew committed (see
    /// [`crate::cluster::readiness`]).
    pub caught_up_once: AtomicBool,
}

/// Request counters for `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub http_2xx: AtomicU64,
    pub http_4xx: AtomicU64,
    pub http_5xx: AtomicU64,
}

impl Counters {
    pub fn count_status(&self, status: u16) {
        let c = match status {
            200..=399 => &self.http_2xx,
            400..=499 => &self.http_4xx,
            _ => &self.http_5xx,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The parts of a node the API serves from.
pub struct NodeCore {
    pub raft: Raft,
    pub sm: StateMachineStore,
    pub log: LogStore,
    pub door: FrontDoor,
}

/// The API's settings.
#[derive(Clone, Default)]
pub struct ApiConfig {
    pub cluster_name: String,
    /// Cluster secret; `None` makes this a single-node deployment.
    pub secret: Option<Arc<str>>,
    /// Local address for connections to other nodes.
    pub source_ip: Option<std::net::IpAddr>,
    /// The node's data dir (for its removal marker); `None` in tests without one.
    pub data_dir: Option<std::path::PathBuf>,
    pub rate_limits: crate::limits::RateLimitConfig,
    /// TLS of the listener and towards other nodes.
    pub tls: Option<Arc<gavel_raft::tls::NodeTls>>,
}

impl AppState {
    pub fn new(core: NodeCore, config: ApiConfig, worker: WorkerConfig, udp: UdpSender) -> Self {
        let NodeCore { raft, sm, log, door } = core;
        let ApiConfig {
            cluster_name,
            secret,
            source_ip,
            data_dir,
            rate_limits,
            tls,
        } = config;
        let removed_at = data_dir
            .as_deref()
            .and_then(crate::membership::read_marker)
            .unwrap_or(0);
        if removed_at != 0 {
            tracing::warn!(
                membership_index = removed_at,
                "this node was removed from the cluster (see the `removed` file in its data dir); \
                 it answers clients with 503 not_a_member"
            );
        }
        let mut builder = reqwest::Client::builder()
            .local_address(source_ip)
            .timeout(Duration::from_millis(PEER_REQUEST_TIMEOUT_MS))
            .connect_timeout(Duration::from_millis(500))
            .pool_max_idle_per_host(32)
            .pool_idle_timeout(Duration::from_millis(gavel_raft::network::CLIENT_POOL_IDLE_MS))
            .tcp_nodelay(true);
        if let Some(tls) = &tls {
            builder = tls.peer_client(builder).expect("the TLS files were checked at start");
        }
        let client = builder.build().expect("HTTP client builds");
        AppState(Arc::new(Inner {
            node_id: worker.node_id,
            cluster_name,
            raft,
            sm,
            log,
            secret,
            client,
            counters: Counters::default(),
            connections: Arc::default(),
            door,
            worker,
            udp,
            proofs: Default::default(),
            limits: crate::limits::RateLimits::new(rate_limits),
            scheme: gavel_raft::tls::scheme(tls.as_deref()),
            tls,
            data_dir,
            removed_at: AtomicU64::new(removed_at),
            history: Default::default(),
            caught_up_once: AtomicBool::new(false),
        }))
    }

    /// Why this node cannot take part in writes at all, if it cannot: its Raft core has
    /// stopped (a full disk: 507 `insufficient_storage`; anything else: 503).
    pub fn stopped(&self) -> Option<ApiError> {
        let fatal = match &self.raft.metrics().borrow_watched().running_state {
            Ok(()) => return None,
            Err(fatal) => fatal.to_string(),
        };
        if self.log.disk_full() || self.sm.disk_full() {
            return Some(ApiError::InsufficientStorage(
                "this node's disk is full and its Raft core has stopped; the operator must free \
                 space and restart it. Retry on another node"
                    .into(),
            ));
        }
        Some(ApiError::Unavailable(format!(
            "this node's Raft core has stopped ({fatal}); it must be restarted. Retry on another node"
        )))
    }

    /// Cluster time, ms since the Unix epoch: what this node compares auction times with
    /// (see `gavel_raft::clock`).
    pub fn now_ms(&self) -> u64 {
        self.door.cluster_now_ms()
    }

    /// Whether this node has been removed from the cluster.
    pub fn is_removed(&self) -> bool {
        self.removed_at.load(Ordering::Relaxed) != 0
    }

    /// The address peers and clients use to reach this node.
    pub fn advertise(&self) -> &str {
        &self.worker.addr
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
