//! Workers: every node hosts the auctions the replicated book assigns to it.
//!
//! **Hosting.** A worker's auctions are the non-final auctions whose `worker` is its node
//! id in its own copy of the book (every node has the whole book). It runs their clocks —
//! proposes `OpenAuction` at `starts_at` and `CloseAuction` at the (extended) end, checked
//! every [`WORKER_TICK_MS`] — and pushes each applied event of theirs, once, to every live
//! UDP subscriber and the optional broadcast target. When the book moves an auction away
//! the worker drops it (logged).
//!
//! **Liveness** is the leader's soft state, never in the log: workers send a heartbeat
//! every [`HEARTBEAT_INTERVAL_MS`] (node id, addresses, capacity, and the auctions they
//! host with the last `seq` pushed). The first heartbeat from a node the book does not know,
//! or knows with other addresses or capacity, is registered through Raft
//! (`RegisterWorker`).
//!
//! **Failover.** When the leader changes, every worker at once re-registers with the new
//! leader and re-reports its auctions. A new leader starts with no liveness knowledge and
//! waits one grace period before it declares anyone silent. Then, every
//! [`RECONCILE_INTERVAL_MS`], each auction whose worker is silent past the grace period (or
//! that has no worker) is reassigned (`AssignAuction`, committed) to the live worker with
//! the most spare capacity. New auctions go to that worker too; with no capacity anywhere,
//! creating an auction fails with 503 `no_capacity`.

use openraft::async_runtime::watch::WatchReceiver as _;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gavel_raft::{cluster, NodeAddr};
use gavel_storage::{AuctionBook, AuctionEvent, AuctionId, Command, NodeId, Op, Response};
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::error::ApiError;
use crate::json::now_ms;
use crate::state::AppState;
use crate::udp::{EventFrame, Push};

pub const HEARTBEAT_INTERVAL_MS: u64 = 200;
pub const WORKER_TICK_MS: u64 = 20;
pub const RECONCILE_INTERVAL_MS: u64 = 100;
/// Reassignments proposed per reconcile round.
pub const REASSIGN_PER_ROUND_MAX: usize = 256;
pub const HEARTBEAT_PATH: &str = "/v1/internal/heartbeat";
pub const CLOCK_PATH: &str = "/v1/internal/clock";

/// This node as a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub node_id: NodeId,
    pub addr: String,
    pub udp_addr: String,
    pub max_auctions: u32,
    /// A worker silent this long loses its auctions.
    pub grace: Duration,
    /// Also push every hosted event here (a broadcast or multicast address).
    pub broadcast: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedReport {
    pub auction_id: AuctionId,
    pub last_pushed_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub node_id: NodeId,
    pub addr: String,
    pub udp_addr: String,
    pub max_auctions: u32,
    pub hosted: Vec<HostedReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockOp {
    Open,
    Close,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockRequest {
    pub auction_id: AuctionId,
    pub op: ClockOp,
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

/// Leader side of a heartbeat: liveness, registration, reconciliation log lines.
pub async fn handle_heartbeat(s: &AppState, hb: Heartbeat) -> Result<(), ApiError> {
    let member = s
        .raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .get_node(&hb.node_id)
        .is_some();
    if !member {
        return Err(ApiError::Conflict {
            code: "not_a_member",
            message: format!(
                "node {} is not a member of the cluster; it cannot be a worker",
                hb.node_id
            ),
        });
    }
    let first = s.registry.record(&hb);
    let (registered, misplaced) = {
        let st = s.sm.read();
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
        cluster::write(&s.raft, Command::new(now_ms(), op)).await?;
    }
    Ok(())
}

/// Leader side of a worker's clock request: proposes it stamped with the leader's time.
pub async fn handle_clock(s: &AppState, req: ClockRequest) -> Result<Response, ApiError> {
    let op = match req.op {
        ClockOp::Open => Op::OpenAuction {
            auction_id: req.auction_id,
        },
        ClockOp::Close => Op::CloseAuction {
            auction_id: req.auction_id,
        },
    };
    Ok(cluster::write(&s.raft, Command::new(now_ms(), op)).await?.1)
}

fn is_leader(s: &AppState) -> bool {
    s.raft.metrics().borrow_watched().state == ServerState::Leader
}

/// Sends `body` to the leader's internal `path`; a leader calls itself directly.
/// POSTs `body` to an internal route of the leader, with the cluster secret.
pub async fn to_leader<T: Serialize>(s: &AppState, leader: &NodeAddr, path: &str, body: &T) -> Result<(), String> {
    let secret = s
        .secret
        .as_deref()
        .ok_or("no cluster secret: cannot reach another leader")?;
    let resp = s
        .client
        .post(format!("{}://{}{path}", s.scheme, leader.addr))
        .bearer_auth(secret)
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("{}: {}", resp.status(), resp.text().await.unwrap_or_default()))
    }
}

/// On the leader: makes the replicated idempotency limits the configured ones (a
/// committed command, so every replica changes them at the same index).
async fn apply_configured_limits(s: &AppState) {
    let configured = s.idempotency_limits;
    if s.sm.read().book.idempotency_limits() == configured {
        return;
    }
    let cmd = Command::new(now_ms(), Op::SetIdempotencyLimits(configured));
    match s.proposer.write(cmd).await {
        Ok(_) => tracing::info!(limits = ?configured, "idempotency limits set to this leader's configuration"),
        Err(e) => tracing::warn!(error = %e, "could not set the idempotency limits yet"),
    }
}

/// The leader's reassignment loop. Runs on every node; acts only while leading.
pub async fn run_reconciler(s: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(RECONCILE_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The other node this one last saw leading.
    let mut followed: Option<NodeId> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let m = s.raft.metrics().borrow_watched().clone();
        let leading = (m.state == ServerState::Leader).then_some(m.current_term);
        if let Some(other) = m.current_leader.filter(|l| *l != m.id) {
            followed = Some(other);
        }
        let heard = s
            .leader_contact
            .elapsed_ms()
            .and_then(|ms| Instant::now().checked_sub(Duration::from_millis(ms)));
        if s.registry.observe(leading, followed.zip(heard)) {
            tracing::info!(
                term = m.current_term,
                grace_ms = s.worker.grace.as_millis() as u64,
                "became leader; waiting for workers to re-report before reassigning"
            );
        }
        if leading.is_none() {
            continue;
        }
        apply_configured_limits(&s).await;
        let orphans: Vec<(AuctionId, Option<NodeId>)> = {
            let st = s.sm.read();
            st.book
                .auctions()
                .filter(|a| !a.status.is_final())
                .filter(|a| a.worker.is_none_or(|w| s.registry.is_silent(w)))
                .map(|a| (a.id, a.worker))
                .take(REASSIGN_PER_ROUND_MAX)
                .collect()
        };
        for (auction_id, from) in orphans {
            let to = { pick_worker(&s.sm.read().book, &s.registry, from) };
            let Some(to) = to else {
                tracing::warn!(
                    auction_id,
                    from,
                    "no live worker with spare capacity; auction stays unassigned"
                );
                break;
            };
            tracing::info!(auction_id, from, to, "reassigning auction from a silent worker");
            match cluster::write(
                &s.raft,
                Command::new(now_ms(), Op::AssignAuction { auction_id, worker: to }),
            )
            .await
            {
                Ok((_, Response::Rejected(r))) => tracing::debug!(auction_id, code = r.code(), "reassignment refused"),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "reassignment not committed; next round");
                    break;
                }
            }
        }
    }
}

/// The worker loop: hosting, clocks, heartbeats and pushes. Runs on every node.
pub async fn run_worker(s: AppState, mut stop: watch::Receiver<bool>) {
    let me = s.worker.node_id;
    let mut events = s.sm.subscribe_events();
    // Auctions hosted here → last seq pushed.
    let mut hosted: BTreeMap<AuctionId, u64> = BTreeMap::new();
    let mut last_leader: Option<NodeId> = None;
    let mut next_heartbeat = Instant::now();
    let in_flight: Arc<Mutex<BTreeSet<AuctionId>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_millis(WORKER_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            received = events.recv() => match received {
                Ok(event) => push_event(&s, &mut hosted, &event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "worker fell behind the applied events; catching up from the book");
                    catch_up(&s, &mut hosted);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if s.is_removed() {
                    // Not a member: no clocks, no heartbeats (the leader has moved its
                    // auctions elsewhere).
                    continue;
                }
                refresh_hosting(&s, &mut hosted);
                run_clocks(&s, &hosted, &in_flight);
                let leader = cluster::leader(&s.raft);
                let changed = leader.as_ref().map(|l| l.id) != last_leader;
                if changed {
                    if let Some(l) = &leader {
                        tracing::info!(leader = l.id, auctions = hosted.len(), "leader changed: re-registering and re-reporting hosted auctions");
                    }
                    last_leader = leader.as_ref().map(|l| l.id);
                }
                if let Some(leader) = leader.filter(|_| changed || Instant::now() >= next_heartbeat) {
                    next_heartbeat = Instant::now() + Duration::from_millis(HEARTBEAT_INTERVAL_MS);
                    let hb = Heartbeat {
                        node_id: me,
                        addr: s.worker.addr.clone(),
                        udp_addr: s.worker.udp_addr.clone(),
                        max_auctions: s.worker.max_auctions,
                        hosted: hosted.iter().map(|(id, seq)| HostedReport { auction_id: *id, last_pushed_seq: *seq }).collect(),
                    };
                    let s2 = s.clone();
                    tokio::spawn(async move {
                        let result = if leader.id == me && is_leader(&s2) {
                            handle_heartbeat(&s2, hb).await.map_err(|e| e.to_string())
                        } else {
                            to_leader(&s2, &leader, HEARTBEAT_PATH, &hb).await
                        };
                        if let Err(e) = result {
                            tracing::debug!(leader = leader.id, error = %e, "heartbeat not delivered");
                        }
                    });
                }
            }
        }
    }
}

/// Re-reads which auctions this node hosts; logs gains and losses.
fn refresh_hosting(s: &AppState, hosted: &mut BTreeMap<AuctionId, u64>) {
    let me = s.worker.node_id;
    let st = s.sm.read();
    let now_mine: BTreeMap<AuctionId, u64> = st
        .book
        .hosted_by(me)
        .into_iter()
        .filter_map(|id| st.book.auction(id).map(|a| (id, a.seq)))
        .collect();
    hosted.retain(|id, _| {
        let keep = now_mine.contains_key(id);
        if !keep {
            match st.book.auction(*id) {
                Some(a) if a.status.is_final() => {}
                Some(a) => tracing::info!(
                    auction_id = *id,
                    now_on = a.worker,
                    "dropping auction: the book moved it to another worker"
                ),
                None => {}
            }
        }
        keep
    });
    for (id, seq) in now_mine {
        hosted.entry(id).or_insert_with(|| {
            tracing::info!(auction_id = id, "now hosting auction");
            seq
        });
    }
}

/// Proposes the clock commands due for hosted auctions (one in flight per auction).
fn run_clocks(s: &AppState, hosted: &BTreeMap<AuctionId, u64>, in_flight: &Arc<Mutex<BTreeSet<AuctionId>>>) {
    if hosted.is_empty() {
        return;
    }
    let due: Vec<Op> = {
        let st = s.sm.read();
        st.book
            .due(now_ms())
            .into_iter()
            .filter(|op| hosted.contains_key(&clock_target(op)))
            .collect()
    };
    for op in due {
        let id = clock_target(&op);
        if !in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(id) {
            continue;
        }
        let (s2, in_flight) = (s.clone(), in_flight.clone());
        tokio::spawn(async move {
            let req = ClockRequest {
                auction_id: id,
                op: if matches!(op, Op::CloseAuction { .. }) {
                    ClockOp::Close
                } else {
                    ClockOp::Open
                },
            };
            let result = match cluster::leader(&s2.raft) {
                Some(l) if l.id == s2.worker.node_id && is_leader(&s2) => {
                    handle_clock(&s2, req).await.map(|_| ()).map_err(|e| e.to_string())
                }
                Some(l) => to_leader(&s2, &l, CLOCK_PATH, &req).await,
                None => Err("no leader".into()),
            };
            if let Err(e) = result {
                tracing::debug!(auction_id = id, error = %e, "clock command not delivered; retrying next tick");
            }
            in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        });
    }
}

fn clock_target(op: &Op) -> AuctionId {
    match op {
        Op::OpenAuction { auction_id } | Op::CloseAuction { auction_id } => *auction_id,
        _ => 0,
    }
}

/// Pushes one applied event if this node hosts (or hosted, for the final event) its
/// auction and has not pushed that `seq` yet.
fn push_event(s: &AppState, hosted: &mut BTreeMap<AuctionId, u64>, event: &AuctionEvent) {
    let me = s.worker.node_id;
    let (ends_at, targets) = {
        let st = s.sm.read();
        let Some(a) = st.book.auction(event.auction_id) else {
            return;
        };
        if a.worker != Some(me) {
            return;
        }
        let now = now_ms();
        let targets: Vec<SocketAddr> = st
            .book
            .subscribers(a.id, now)
            .into_iter()
            .filter_map(|(addr, _)| addr.parse().ok())
            .collect();
        (a.ends_at_ms, targets)
    };
    let last = hosted.entry(event.auction_id).or_insert(0);
    if event.seq <= *last {
        return;
    }
    *last = event.seq;
    let mut targets = targets;
    if let Some(b) = s.worker.broadcast {
        targets.push(b);
    }
    if targets.is_empty() {
        return;
    }
    let frame = EventFrame::from_event(event, ends_at).encode();
    s.udp.push(Push {
        frame: frame.into(),
        targets,
    });
}

/// After missing applied events: push what the book still has after the last pushed seq.
fn catch_up(s: &AppState, hosted: &mut BTreeMap<AuctionId, u64>) {
    let pending: Vec<AuctionEvent> = {
        let st = s.sm.read();
        hosted
            .iter()
            .flat_map(|(id, last)| st.book.recent_events(*id, *last))
            .collect()
    };
    for event in pending {
        push_event(s, hosted, &event);
    }
}
