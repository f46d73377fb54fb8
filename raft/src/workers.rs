//! The worker registry: which workers are alive, what they host, and the leader's
//! reassignment loop. (Hosting itself, the clocks and the UDP push, is in gavel-api.)
//!
//! **Liveness** is the leader's soft state, never in the log: every node, as a worker,
//! sends a [`Heartbeat`] every [`HEARTBEAT_INTERVAL_MS`] through the front door (node id,
//! addresses, capacity, and the auctions it hosts with the last `seq` it pushed). The first
//! heartbeat from a node the book does not know, or knows with other addresses or
//! capacity, is registered through Raft (`RegisterWorker`).
//!
//! **Failover.** When the leader changes, every worker at once re-registers with the new
//! leader and re-reports its auctions. A new leader starts with no liveness knowledge and
//! waits one grace period before it declares anyone silent, but for its predecessor,
//! silent since its last AppendEntries. Then, every [`RECONCILE_INTERVAL_MS`], each
//! auction whose worker is silent past the grace period (or that has no worker) is
//! reassigned (`AssignAuction`, committed through the front door) to the live worker with
//! the most spare capacity. New auctions go to that worker too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gavel_storage::{AuctionBook, AuctionId, Command, NodeId, Op, Response};
use openraft::async_runtime::watch::WatchReceiver as _;
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::cluster::ClusterError;
use crate::front_door::{now_ms, FrontDoor};

/// How often a worker reports to the leader.
pub const HEARTBEAT_INTERVAL_MS: u64 = 200;
/// How often the leader looks for auctions to reassign.
pub const RECONCILE_INTERVAL_MS: u64 = 100;
/// Reassignments proposed per reconcile round.
pub const REASSIGN_PER_ROUND_MAX: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedReport {
    pub auction_id: AuctionId,
    pub last_pushed_seq: u64,
}

/// A worker's report to the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: NodeId,
    pub addr: String,
    pub udp_addr: String,
    pub max_auctions: u32,
    pub hosted: Vec<HostedReport>,
}

/// One worker's liveness as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    pub node_id: NodeId,
    pub live: bool,
    pub last_seen_ms_ago: Option<u64>,
    /// How many auctions it reported hosting in its last heartbeat.
    pub reported: Option<usize>,
}

struct Seen {
    at: Instant,
    hosted: Vec<HostedReport>,
}

#[derive(Default)]
struct RegistryInner {
    /// The term in which this node became leader, and when.
    leading: Option<(u64, Instant)>,
    seen: HashMap<NodeId, Seen>,
    /// The leader before this node, and when this node last heard from it: that worker
    /// has been silent since then, not only since this node took over.
    prior_leader: Option<(NodeId, Instant)>,
}

/// The leader's soft state about workers: who reported when. Reset on every new term.
pub struct Registry {
    inner: Mutex<RegistryInner>,
    grace: Duration,
}

impl Registry {
    pub fn new(grace: Duration) -> Self {
        Registry {
            inner: Mutex::new(RegistryInner::default()),
            grace,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tracks leadership; returns true when this node just became leader. `prior_leader`
    /// is the leader this node followed before, with when it last heard from it.
    pub fn observe(&self, leader_term: Option<u64>, prior_leader: Option<(NodeId, Instant)>) -> bool {
        let mut inner = self.lock();
        match (leader_term, inner.leading) {
            (Some(term), Some((t, _))) if term == t => false,
            (Some(term), _) => {
                inner.leading = Some((term, Instant::now()));
                inner.seen.clear();
                inner.prior_leader = prior_leader;
                true
            }
            (None, _) => {
                inner.leading = None;
                inner.seen.clear();
                inner.prior_leader = None;
                false
            }
        }
    }

    /// Records a heartbeat; true if it is the first from this node since this node
    /// became leader.
    fn record(&self, hb: &Heartbeat) -> bool {
        let mut inner = self.lock();
        inner
            .seen
            .insert(
                hb.node_id,
                Seen {
                    at: Instant::now(),
                    hosted: hb.hosted.clone(),
                },
            )
            .is_none()
    }

    pub fn is_live(&self, node: NodeId) -> bool {
        self.lock()
            .seen
            .get(&node)
            .is_some_and(|s| s.at.elapsed() <= self.grace)
    }

    /// Silent past the grace period, counted from when this node became leader at the
    /// earliest (a new leader gives every worker a full grace period to re-report), but
    /// for the previous leader: a new leader knows it has not heard from that one since
    /// its last AppendEntries, so a worker that died with its leadership is replaced one
    /// grace period after it went quiet, not after the election on top.
    pub fn is_silent(&self, node: NodeId) -> bool {
        let inner = self.lock();
        let Some((_, since)) = inner.leading else { return false };
        let last = match (inner.seen.get(&node), inner.prior_leader) {
            (Some(seen), _) => seen.at.max(since),
            (None, Some((prior, heard))) if prior == node => heard,
            (None, _) => since,
        };
        last.elapsed() > self.grace
    }

    pub fn last_seen_ms(&self, node: NodeId) -> Option<u64> {
        self.lock().seen.get(&node).map(|s| s.at.elapsed().as_millis() as u64)
    }

    pub fn reported(&self, node: NodeId) -> Option<Vec<HostedReport>> {
        self.lock().seen.get(&node).map(|s| s.hosted.clone())
    }
}

/// The live worker with the most spare capacity (ties: the lowest id), other than `not`.
pub fn pick_worker(book: &AuctionBook, registry: &Registry, not: Option<NodeId>) -> Option<NodeId> {
    book.workers()
        .values()
        .filter(|w| Some(w.node_id) != not && registry.is_live(w.node_id))
        .filter_map(|w| {
            let hosted = book.hosted_by(w.node_id).len() as u64;
            let spare = u64::from(w.max_auctions).checked_sub(hosted).filter(|s| *s > 0)?;
            Some((spare, std::cmp::Reverse(w.node_id)))
        })
        .max()
        .map(|(_, id)| id.0)
}

/// On the leader: every registered worker's liveness.
pub fn liveness(door: &FrontDoor) -> Vec<Liveness> {
    let ids: Vec<NodeId> = door.sm.read().book.workers().keys().copied().collect();
    ids.into_iter()
        .map(|node_id| Liveness {
            node_id,
            live: door.registry.is_live(node_id),
            last_seen_ms_ago: door.registry.last_seen_ms(node_id),
            reported: door.registry.reported(node_id).map(|r| r.len()),
        })
        .collect()
}

/// Leader side of a heartbeat: liveness, registration, reconciliation log lines.
pub(crate) async fn on_heartbeat(door: &FrontDoor, hb: Heartbeat) -> Result<(), ClusterError> {
    let member = door
        .raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .get_node(&hb.node_id)
        .is_some();
    if !member {
        return Err(ClusterError::Conflict(format!(
            "node {} is not a member of the cluster; it cannot be a worker",
            hb.node_id
        )));
    }
    let first = door.registry.record(&hb);
    let (registered, misplaced) = {
        let st = door.sm.read();
        let registered = st
            .book
            .workers()
            .get(&hb.node_id)
            .is_some_and(|w| w.addr == hb.addr && w.udp_addr == hb.udp_addr && w.max_auctions == hb.max_auctions);
        let misplaced: Vec<(AuctionId, Option<NodeId>)> = hb
            .hosted
            .iter()
            .filter_map(|r| {
                let owner = st.book.auction(r.auction_id).and_then(|a| a.worker);
                (owner != Some(hb.node_id)).then_some((r.auction_id, owner))
            })
            .collect();
        (registered, misplaced)
    };
    if first {
        tracing::info!(
            worker = hb.node_id,
            auctions = hb.hosted.len(),
            "worker reported to this leader"
        );
    }
    for (auction_id, owner) in misplaced {
        tracing::info!(
            worker = hb.node_id,
            auction_id,
            owner,
            "worker reports an auction it no longer owns; it will drop it"
        );
    }
    if !registered {
        tracing::info!(worker = hb.node_id, addr = %hb.addr, udp = %hb.udp_addr, max_auctions = hb.max_auctions, "registering worker");
        let op = Op::RegisterWorker {
            node_id: hb.node_id,
            addr: hb.addr,
            udp_addr: hb.udp_addr,
            max_auctions: hb.max_auctions,
        };
        door.write(Command::new(now_ms(), op)).await?;
    }
    Ok(())
}

/// On the leader: makes the replicated idempotency limits the configured ones (a
/// committed command, so every replica changes them at the same index).
async fn apply_configured_limits(door: &FrontDoor) {
    let configured = door.config.idempotency_limits;
    if door.sm.read().book.idempotency_limits() == configured {
        return;
    }
    let cmd = Command::new(now_ms(), Op::SetIdempotencyLimits(configured));
    match door.write(cmd).await {
        Ok(_) => tracing::info!(limits = ?configured, "idempotency limits set to this leader's configuration"),
        Err(e) => tracing::warn!(error = %e, "could not set the idempotency limits yet"),
    }
}

/// The leader's reassignment loop. Runs on every node; acts only while leading.
pub async fn run_reconciler(door: FrontDoor, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(RECONCILE_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The other node this one last saw leading.
    let mut followed: Option<NodeId> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let m = door.raft.metrics().borrow_watched().clone();
        let leading = (m.state == ServerState::Leader).then_some(m.current_term);
        if let Some(other) = m.current_leader.filter(|l| *l != m.id) {
            followed = Some(other);
        }
        let heard = door
            .contact
            .elapsed_ms()
            .and_then(|ms| Instant::now().checked_sub(Duration::from_millis(ms)));
        if door.registry.observe(leading, followed.zip(heard)) {
            tracing::info!(
                term = m.current_term,
                grace_ms = door.config.worker_grace.as_millis() as u64,
                "became leader; waiting for workers to re-report before reassigning"
            );
        }
        if leading.is_none() {
            continue;
        }
        apply_configured_limits(&door).await;
        reassign_orphans(&door).await;
    }
}

/// Reassigns the auctions whose worker is silent (or that have none), up to
/// [`REASSIGN_PER_ROUND_MAX`].
async fn reassign_orphans(door: &FrontDoor) {
    let orphans: Vec<(AuctionId, Option<NodeId>)> = {
        let st = door.sm.read();
        st.book
            .auctions()
            .filter(|a| !a.status.is_final())
            .filter(|a| a.worker.is_none_or(|w| door.registry.is_silent(w)))
            .map(|a| (a.id, a.worker))
            .take(REASSIGN_PER_ROUND_MAX)
            .collect()
    };
    for (auction_id, from) in orphans {
        let to = { pick_worker(&door.sm.read().book, &door.registry, from) };
        let Some(to) = to else {
            tracing::warn!(
                auction_id,
                from,
                "no live worker with spare capacity; auction stays unassigned"
            );
            return;
        };
        tracing::info!(auction_id, from, to, "reassigning auction from a silent worker");
        match door
            .write(Command::new(now_ms(), Op::AssignAuction { auction_id, worker: to }))
            .await
        {
            Ok(Response::Rejected(r)) => tracing::debug!(auction_id, code = r.code(), "reassignment refused"),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "reassignment not committed; next round");
                return;
            }
        }
    }
}
