//! The front door: the one way anything on a node reaches the leader.
//!
//! Every change a node wants committed (a client's command, a worker's clock, a worker
//! registration, a reassignment, a UDP subscription, the first admin) is a typed
//! [`Command`] handed to [`FrontDoor::write`]. So are the other requests only the leader
//! can answer: a read index, a worker's heartbeat, a membership change, worker liveness.
//!
//! - **On the leader** a write is *admitted*: stamped with cluster time (apply's only
//!   time source: the leader's clock, checked against a majority of the voters' by
//!   [`crate::clock`]; a leader whose clock is off waits up to [`STAMP_WAIT_MS`] for its
//!   hand-off and then refuses with [`ClusterError::ClockSkew`]; one cut off from its
//!   voters refuses at once with [`ClusterError::NotLeader`]), placed on a live
//!   worker if it creates an auction, refused at once if it is a bid already below the
//!   applied price (see `AuctionBook::refuses_early`), and otherwise proposed through
//!   the group commit ([`crate::proposer`]).
//! - **On a follower** the typed request travels to the leader over node RPC
//!   (`POST /raft/forward`, bincode, the cluster secret; see [`crate::rpc`]) and the
//!   leader admits it there. The follower has already parsed, validated and
//!   authenticated the client's request; the command carries the caller, the
//!   idempotency key and request digest, and a signed bid's signature, so the leader
//!   never sees HTTP. The caller is checked again in `apply` against the state at the
//!   command's index.
//! - A node that gets a forwarded request and does not lead answers
//!   [`ClusterError::NotLeader`]; it never forwards again, so nothing loops during an
//!   election. A leader that could not be reached is the same error naming it. When the
//!   node asked answers that another node leads now, the request (which it did not
//!   execute) is sent there once more.
//!
//! Reads that must be linearizable ask the leader for its read index the same way, wait
//! until this node has applied that far, and read locally (openraft's follower read).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gavel_storage::{Command, IdempotencyLimits, NodeId, Op, Response, StateMachineStore};
use openraft::async_runtime::watch::WatchReceiver as _;
use openraft::ServerState;
use serde::{Deserialize, Serialize};

use crate::clock::{self, ClockSamples, ClockView};
use crate::cluster::{self, ClusterError, NodeAddr};
use crate::network::HttpNetwork;
use crate::proposer::Proposer;
use crate::rpc::LeaderContact;
use crate::workers::{self, Heartbeat, Registry};
use crate::Raft;

/// How long a forwarded write or read index may take at the leader.
pub const FORWARD_TIMEOUT_MS: u64 = 15_000;
/// How long a follower waits to apply up to the leader's read index.
pub const READ_INDEX_WAIT_MS: u64 = 5_000;
/// How long creating an auction waits for a live worker with spare capacity (just after
/// start-up or a leader change no worker has reported yet).
pub const WORKER_WAIT_MS: u64 = 2_000;
/// How often that wait looks again.
const WORKER_POLL_MS: u64 = 20;
/// How long a leader that cannot stamp a command (its clock is off, or the voters do not
/// agree on the time yet) holds a write: a newly elected leader gathers its voters'
/// clocks, a skewed one hands its leadership over, within this.
pub const STAMP_WAIT_MS: u64 = 1_000;
/// How often that wait looks again.
const STAMP_POLL_MS: u64 = 10;
/// How long moving the leadership (`POST /v1/cluster/leader`) waits for another node to
/// lead.
pub const MOVE_LEADER_WAIT_MS: u64 = 5_000;
/// How long the leader waits for a proposed write to commit before it answers
/// "unavailable" (it may still commit: the client retries with its Idempotency-Key). A
/// leader cut off from its voters refuses new writes at once (see `cut_off`); this bounds
/// the ones proposed just before the cut. Below [`FORWARD_TIMEOUT_MS`], so a follower
/// forwarding the write hears the answer.
pub const COMMIT_WAIT_MS: u64 = 10_000;

/// What a follower asks of the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forwarded {
    /// Admit and commit this command; answer its response.
    Write(Box<Command>),
    /// Confirm leadership and answer the index a read must wait for.
    ReadIndex,
    /// A worker's liveness report.
    Heartbeat(Heartbeat),
    AddNode {
        id: NodeId,
        addr: String,
    },
    RemoveNode {
        id: NodeId,
    },
    /// The leader's view of worker liveness.
    Workers,
    /// Hand the leadership to voter `to`.
    MoveLeader {
        to: NodeId,
    },
}

/// The leader's answer to a [`Forwarded`] request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    /// The command's response, and the index of its entry (none for an early refusal).
    Written(Option<u64>, Response),
    ReadIndex(u64),
    Done,
    Workers(Vec<workers::Liveness>),
    /// Who leads after a move.
    Leader(NodeId),
}

/// This node's settings for the front door.
#[derive(Debug, Clone)]
pub struct FrontDoorConfig {
    pub node_id: NodeId,
    /// A worker silent this long loses its auctions.
    pub worker_grace: Duration,
    /// How long adding a node waits for it to acknowledge the log.
    pub learner_catchup_timeout: Duration,
    /// The idempotency table's bounds this node proposes when it leads.
    pub idempotency_limits: IdempotencyLimits,
    /// When it leads: archive auctions closed this long ago.
    pub archive_after: Duration,
    /// A leader whose clock is further than this from the majority's stamps no command.
    pub max_clock_skew_ms: u64,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct DoorCounters {
    /// Requests this node sent on to the leader.
    pub forwarded: AtomicU64,
    /// Bids the leader refused as too low without a Raft round.
    pub refused_early: AtomicU64,
}

/// The front door of one node (cheap to clone).
#[derive(Clone)]
pub struct FrontDoor(Arc<Inner>);

pub struct Inner {
    pub raft: Raft,
    pub sm: StateMachineStore,
    /// The leader's soft state about workers.
    pub registry: Registry,
    /// When a leader last reached this node.
    pub contact: Arc<LeaderContact>,
    pub counters: DoorCounters,
    pub config: FrontDoorConfig,
    /// The peers' clocks as this node's node RPC round trips saw them.
    pub clock: Arc<ClockSamples>,
    proposer: Proposer,
    pub(crate) network: HttpNetwork,
}

impl std::ops::Deref for FrontDoor {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Milliseconds since the Unix epoch by this node's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl FrontDoor {
    /// Starts the group commit; `network` reaches the other nodes.
    pub fn new(raft: Raft, sm: StateMachineStore, network: HttpNetwork, config: FrontDoorConfig) -> Self {
        FrontDoor(Arc::new(Inner {
            proposer: Proposer::start(raft.clone()),
            registry: Registry::new(config.worker_grace),
            contact: Arc::new(LeaderContact::default()),
            counters: DoorCounters::default(),
            clock: network.clock(),
            raft,
            sm,
            config,
            network,
        }))
    }

    /// Commands waiting in the group commit's queue (`gavel_proposer_queue_commands`).
    pub fn proposer_queued(&self) -> usize {
        self.proposer.queued()
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// On the leader: no quorum of the voters has acknowledged it for longer than an
    /// election timeout (a leader alone is its own quorum; one that has not heard from
    /// a quorum yet, just elected, is not cut off).
    fn cut_off(&self) -> bool {
        use openraft::Instant as _;
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let alone = m.membership_config.membership().voter_ids().eq([m.id]);
        let timeout = Duration::from_millis(self.raft.config().election_timeout_max);
        m.state == ServerState::Leader
            && !alone
            && m.last_quorum_acked.as_ref().is_some_and(|at| at.elapsed() > timeout)
    }

    /// This node's clock against the cluster's, now (see [`crate::clock`]).
    pub fn clock_view(&self) -> ClockView {
        let (leader, voters) = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            let leader = match m.state {
                ServerState::Leader => Some(m.id),
                _ => m.current_leader.filter(|l| *l != m.id),
            };
            (leader, m.membership_config.membership().voter_ids().collect())
        };
        clock::evaluate(
            &self.clock,
            self.config.node_id,
            &voters,
            leader,
            self.config.max_clock_skew_ms,
        )
    }

    /// Cluster time, ms since the Unix epoch: what this node compares auction times with
    /// (its own clock when it knows no better).
    pub fn cluster_now_ms(&self) -> u64 {
        self.clock_view().now_ms()
    }

    /// Commits `cmd` (admitted by the leader, wherever it came in) and returns its
    /// response; a rejection is a `Response::Rejected`. When it returns, this node has
    /// applied the command too, so the caller can read its effect here.
    pub async fn write(&self, cmd: Command) -> Result<Response, ClusterError> {
        if self.is_leader() {
            // Only a leader that has stepped down gives NotLeader, before anything was
            // appended: sending the command on is safe.
            match self.admit(cmd.clone()).await {
                Err(ClusterError::NotLeader { .. }) => {}
                done => return done.map(|(_, response)| response),
            }
        }
        let (index, response) = match self
            .forward(Forwarded::Write(Box::new(cmd)), FORWARD_TIMEOUT_MS)
            .await?
        {
            Answer::Written(index, response) => (index, response),
            other => return Err(unexpected(other)),
        };
        if let Some(index) = index {
            self.wait_applied(index).await.map_err(|e| {
                ClusterError::Unavailable(format!(
                    "the write committed at index {index}, but this node has not applied it yet \
                     ({e}); retry with the same Idempotency-Key for its answer"
                ))
            })?;
        }
        Ok(response)
    }

    /// Waits until this node has applied `index`, up to [`READ_INDEX_WAIT_MS`].
    async fn wait_applied(&self, index: u64) -> Result<(), String> {
        self.raft
            .wait(Some(Duration::from_millis(READ_INDEX_WAIT_MS)))
            .applied_index_at_least(Some(index), "index applied")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// After it returns, reading this node's state is linearizable: the leader confirmed
    /// its leadership with a quorum, and this node has applied everything committed
    /// before the read began.
    pub async fn read_index(&self) -> Result<(), ClusterError> {
        if self.is_leader() {
            match cluster::read_barrier(&self.raft).await {
                Err(ClusterError::NotLeader { .. }) => {}
                done => return done.map(|_| ()),
            }
        }
        let index = match self.forward(Forwarded::ReadIndex, FORWARD_TIMEOUT_MS).await? {
            Answer::ReadIndex(index) => index,
            other => return Err(unexpected(other)),
        };
        self.wait_applied(index).await.map_err(|e| {
            ClusterError::Unavailable(format!(
                "this node has not applied up to the leader's read index {index} in time ({e}); retry"
            ))
        })
    }

    /// Reports this node's worker liveness to the leader.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<(), ClusterError> {
        if self.is_leader() {
            return workers::on_heartbeat(self, hb).await;
        }
        self.forward(Forwarded::Heartbeat(hb), FORWARD_TIMEOUT_MS)
            .await
            .map(|_| ())
    }

    /// Adds node `id` at `addr` (see [`cluster::add_node`]).
    pub async fn add_node(&self, id: NodeId, addr: String) -> Result<(), ClusterError> {
        if self.is_leader() {
            match cluster::add_node(&self.raft, id, &addr, self.config.learner_catchup_timeout).await {
                Err(ClusterError::NotLeader { .. }) => {}
                done => return done,
            }
        }
        let timeout = self.config.learner_catchup_timeout.as_millis() as u64 + FORWARD_TIMEOUT_MS;
        self.forward(Forwarded::AddNode { id, addr }, timeout).await.map(|_| ())
    }

    /// Removes node `id`, and its worker: its auctions are reassigned at once.
    pub async fn remove_node(&self, id: NodeId) -> Result<(), ClusterError> {
        if self.is_leader() {
            match self.remove_here(id).await {
                Err(ClusterError::NotLeader { .. }) => {}
                done => return done,
            }
        }
        self.forward(Forwarded::RemoveNode { id }, FORWARD_TIMEOUT_MS)
            .await
            .map(|_| ())
    }

    /// Hands the leadership to voter `to`; answers who leads then.
    pub async fn move_leader(&self, to: NodeId) -> Result<NodeId, ClusterError> {
        let wait = Duration::from_millis(MOVE_LEADER_WAIT_MS);
        if self.is_leader() {
            match cluster::move_leader(&self.raft, to, wait).await {
                Err(ClusterError::NotLeader { .. }) => {}
                done => return done,
            }
        }
        match self
            .forward(Forwarded::MoveLeader { to }, MOVE_LEADER_WAIT_MS + FORWARD_TIMEOUT_MS)
            .await?
        {
            Answer::Leader(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// The leader's view of worker liveness.
    pub async fn workers(&self) -> Result<Vec<workers::Liveness>, ClusterError> {
        if self.is_leader() {
            return Ok(workers::liveness(self));
        }
        match self.forward(Forwarded::Workers, FORWARD_TIMEOUT_MS).await? {
            Answer::Workers(list) => Ok(list),
            other => Err(unexpected(other)),
        }
    }

    /// Leader side of `/raft/forward`. A node that does not lead says who does.
    pub async fn serve(&self, req: Forwarded) -> Result<Answer, ClusterError> {
        if !self.is_leader() {
            return Err(ClusterError::NotLeader {
                leader: cluster::leader(&self.raft),
            });
        }
        match req {
            Forwarded::Write(cmd) => self
                .admit(*cmd)
                .await
                .map(|(index, response)| Answer::Written(index, response)),
            Forwarded::ReadIndex => cluster::read_barrier(&self.raft).await.map(Answer::ReadIndex),
            Forwarded::Heartbeat(hb) => workers::on_heartbeat(self, hb).await.map(|()| Answer::Done),
            Forwarded::AddNode { id, addr } => {
                cluster::add_node(&self.raft, id, &addr, self.config.learner_catchup_timeout)
                    .await
                    .map(|()| Answer::Done)
            }
            Forwarded::RemoveNode { id } => self.remove_here(id).await.map(|()| Answer::Done),
            Forwarded::Workers => Ok(Answer::Workers(workers::liveness(self))),
            Forwarded::MoveLeader { to } => {
                cluster::move_leader(&self.raft, to, Duration::from_millis(MOVE_LEADER_WAIT_MS))
                    .await
                    .map(Answer::Leader)
            }
        }
    }

    /// On the leader: cluster time, a worker for a new auction, the early refusal, then
    /// the group commit.
    async fn admit(&self, mut cmd: Command) -> Result<(Option<u64>, Response), ClusterError> {
        cmd.ts_ms = self.stamp().await?;
        if let Op::CreateAuction {
            worker: worker @ None, ..
        }
        | Op::CreateFormatAuction {
            worker: worker @ None, ..
        } = &mut cmd.op
        {
            *worker = Some(self.wait_for_worker().await?);
        }
        // A bid already below the price this leader has applied needs no Raft round (see
        // `AuctionBook::refuses_early` for why the answer is the one `apply` would give).
        if let Some(refused) = self.sm.read().book.refuses_early(&cmd) {
            self.counters.refused_early.fetch_add(1, Ordering::Relaxed);
            return Ok((None, Response::Rejected(refused)));
        }
        // Cut off from its voters, this leader could append but never commit: the
        // others elect a leader (or already have), and the caller goes there.
        if self.cut_off() {
            return Err(ClusterError::NotLeader { leader: None });
        }
        let commit = self.proposer.write(cmd);
        let (log_id, response) = tokio::time::timeout(Duration::from_millis(COMMIT_WAIT_MS), commit)
            .await
            .map_err(|_| {
                ClusterError::Unavailable(format!(
                    "the write was not known to commit within {COMMIT_WAIT_MS} ms (is this \
                     leader cut off from its voters?); it may still commit: retry with the \
                     same Idempotency-Key"
                ))
            })??;
        Ok((Some(log_id.index), response))
    }

    /// On the leader: the time to stamp on a command. A leader that cannot stamp one yet
    /// waits up to [`STAMP_WAIT_MS`]: for its voters' clock samples (just elected), or
    /// for its leadership to move (its clock is off). Once another node leads, the answer
    /// is [`ClusterError::NotLeader`] naming it (nothing was appended: the caller sends
    /// the command there); past the wait it is [`ClusterError::ClockSkew`].
    async fn stamp(&self) -> Result<u64, ClusterError> {
        let deadline = std::time::Instant::now() + Duration::from_millis(STAMP_WAIT_MS);
        loop {
            let problem = if self.is_leader() {
                match self.clock_view().stamp() {
                    Ok(ts_ms) => return Ok(ts_ms),
                    // Cut off from its voters rather than off in time (their samples
                    // aged out with the link): its lease is over, it could append
                    // nothing, and the others elect a leader. Say that, not "check
                    // the clocks".
                    Err(_) if self.cut_off() => return Err(ClusterError::NotLeader { leader: None }),
                    Err(problem) => Some(problem),
                }
            } else {
                match cluster::leader(&self.raft).filter(|l| l.id != self.config.node_id) {
                    Some(leader) => return Err(ClusterError::NotLeader { leader: Some(leader) }),
                    None => None,
                }
            };
            if std::time::Instant::now() >= deadline {
                return Err(match problem {
                    Some(problem) => ClusterError::ClockSkew {
                        offset_ms: problem.offset_ms(),
                        message: problem.message(self.config.max_clock_skew_ms),
                    },
                    None => ClusterError::NotLeader { leader: None },
                });
            }
            tokio::time::sleep(Duration::from_millis(STAMP_POLL_MS)).await;
        }
    }

    /// On the leader: the worker to place a new auction on, waiting briefly for one.
    async fn wait_for_worker(&self) -> Result<NodeId, ClusterError> {
        let deadline = std::time::Instant::now() + Duration::from_millis(WORKER_WAIT_MS);
        loop {
            if !self.is_leader() {
                return Err(ClusterError::NotLeader {
                    leader: cluster::leader(&self.raft),
                });
            }
            if let Some(w) = workers::pick_worker(&self.sm.read().book, &self.registry, None) {
                return Ok(w);
            }
            if std::time::Instant::now() >= deadline {
                return Err(ClusterError::NoCapacity(
                    "every live worker is full (or none has reported yet); retry later".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(WORKER_POLL_MS)).await;
        }
    }

    async fn remove_here(&self, id: NodeId) -> Result<(), ClusterError> {
        cluster::remove_node(&self.raft, id).await?;
        let cmd = Command::new(now_ms(), Op::RemoveWorker { node_id: id });
        if let Ok((_, Response::WorkerRemoved { orphaned, .. })) = self.admit(cmd).await {
            tracing::info!(
                node = id,
                auctions = orphaned.len(),
                "removed node's worker unregistered; its auctions will be reassigned"
            );
        }
        Ok(())
    }

    /// Sends `req` to the leader this node knows. No leader (or this node, which has just
    /// stepped down) is `NotLeader` without one; a leader that cannot be reached is
    /// `NotLeader` naming it.
    async fn forward(&self, req: Forwarded, timeout_ms: u64) -> Result<Answer, ClusterError> {
        let leader = match cluster::leader(&self.raft) {
            Some(l) if l.id != self.config.node_id => l,
            _ => return Err(ClusterError::NotLeader { leader: None }),
        };
        match self.forward_to(&leader, &req, timeout_ms).await {
            // The node asked did nothing and names another leader (a hand-off just
            // happened): ask that one, once.
            Err(ClusterError::NotLeader { leader: Some(next) })
                if next.id != leader.id && next.id != self.config.node_id =>
            {
                self.forward_to(&next, &req, timeout_ms).await
            }
            done => done,
        }
    }

    /// Sends `req` to `leader`; a leader that cannot be reached is `NotLeader` naming it.
    async fn forward_to(&self, leader: &NodeAddr, req: &Forwarded, timeout_ms: u64) -> Result<Answer, ClusterError> {
        self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
        let answer: Result<Answer, ClusterError> = self
            .network
            .call_node(
                leader,
                crate::rpc::RPC_FORWARD_PATH,
                req,
                Duration::from_millis(timeout_ms),
            )
            .await
            .map_err(|e| {
                tracing::warn!(leader = leader.id, addr = %leader.addr, error = %e, "forwarding to the leader failed");
                ClusterError::NotLeader {
                    leader: Some(leader.clone()),
                }
            })?;
        answer
    }
}

fn unexpected(answer: Answer) -> ClusterError {
    ClusterError::Unavailable(format!("the leader gave an unexpected answer: {answer:?}"))
}
