//! The Raft calls behind the front door ([`crate::front_door`]): one write, a read-index
//! barrier, membership changes, the leadership hand-off, with the errors the API maps to
//! HTTP statuses.
//!
//! Joining is two steps, as Raft requires: the new node is added as a learner and the
//! call waits until it has caught up (from the log, or a snapshot if the log behind it
//! was purged); then it is promoted to voter. Both steps are committed membership
//! entries, so a restart never repeats them. Every function here must run on the leader;
//! elsewhere it fails with [`ClusterError::NotLeader`] naming the leader, and the front
//! door sends the request there.

use openraft::async_runtime::watch::WatchReceiver as _;
use std::collections::BTreeSet;

use gavel_storage::TypeConfig;
use gavel_storage::{Command, LogId, Response};
use openraft::error::{ChangeMembershipError, ClientWriteError, ForwardToLeader, LinearizableReadError, RaftError};
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};

use crate::Raft;

/// Membership changes run one at a time on a node: openraft refuses a change while
/// another is in flight, and callers (joining nodes) should queue, not fail.
static MEMBERSHIP_CHANGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A node id and its HTTP/RPC address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeAddr {
    pub id: u64,
    pub addr: String,
}

/// Why a write, read barrier or membership change did not happen. It crosses node RPC
/// (bincode) when a follower's request ran on the leader.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum ClusterError {
    /// This node is not the leader; `leader` is who is, if known.
    #[error("this node is not the leader")]
    NotLeader { leader: Option<NodeAddr> },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Raft cannot make progress now (no quorum, shutting down); retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A learner did not acknowledge the log in time; it stays a learner.
    #[error("{0}")]
    NotCaughtUp(String),
    /// No live worker has room for a new auction.
    #[error("{0}")]
    NoCapacity(String),
    /// The leader stamps no command: its clock is `offset_ms` off the majority's, or no
    /// majority agrees on the time (`None`). See [`crate::clock`].
    #[error("{message}")]
    ClockSkew { offset_ms: Option<i64>, message: String },
}

fn forward(f: ForwardToLeader<TypeConfig>) -> ClusterError {
    let leader = match (f.leader_id, f.leader_node) {
        (Some(id), Some(node)) => Some(NodeAddr { id, addr: node.addr }),
        _ => None,
    };
    ClusterError::NotLeader { leader }
}

fn write_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => forward(f),
        // Leadership changed before the entry committed: it may or may not have. Callers
        // retry with their Idempotency-Key, which makes the retry exact.
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) => ClusterError::Unavailable(format!(
            "leadership changed before the write was known to commit; retry with the same \
             Idempotency-Key ({f})"
        )),
        RaftError::APIError(ClientWriteError::PreconditionFailed(e)) => ClusterError::Conflict(e.to_string()),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(e))) => {
            ClusterError::Unavailable(format!("another membership change is in progress; retry shortly ({e})"))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => ClusterError::Conflict(e.to_string()),
        RaftError::Fatal(f) => ClusterError::Unavailable(format!("raft stopped: {f}")),
    }
}

/// Proposes `cmd` as one entry, waits until it is committed and applied here, returns its
/// response. Everything else writes through [`crate::front_door::FrontDoor::write`].
pub(crate) async fn write(raft: &Raft, cmd: Command) -> Result<(LogId, Response), ClusterError> {
    let resp = raft.client_write(cmd).await.map_err(write_error)?;
    Ok((resp.log_id, resp.data))
}

/// A read-index barrier on the leader: confirms leadership with a quorum and waits until
/// this node has applied everything committed before the read. After it, local state is
/// linearizable. Returns the read index (what a follower must apply before it reads).
pub async fn read_barrier(raft: &Raft) -> Result<u64, ClusterError> {
    raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex)
        .await
        .map(|read| read.index())
        .map_err(|e| match e {
            RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => forward(f),
            RaftError::APIError(LinearizableReadError::QuorumNotEnough(q)) => ClusterError::Unavailable(q.to_string()),
            RaftError::Fatal(f) => ClusterError::Unavailable(format!("raft stopped: {f}")),
        })
}

/// The current leader as this node sees it.
pub fn leader(raft: &Raft) -> Option<NodeAddr> {
    let m = raft.metrics().borrow_watched().clone();
    let id = m.current_leader?;
    let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
    Some(NodeAddr { id, addr })
}

fn validate_addr(addr: &str) -> Result<(), ClusterError> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => Ok(()),
        _ => Err(ClusterError::InvalidInput(format!("addr {addr:?} is not host:port"))),
    }
}

/// Adds node `id` at `addr`: learner, wait for catch-up, voter. Adding a node that is
/// already a voter at the same address succeeds without change; adding one that is a
/// learner at that address resumes waiting for it.
///
/// Caught up means the learner has *acknowledged* the log up to the leader's last index
/// when the add began (its matched log id in the replication metrics), within
/// `catchup_timeout`. openraft 0.9's blocking `add_learner` instead accepts a learner
/// within `replication_lag_threshold` entries of the leader, even one that never
/// answered: a node that does not run (or an `--advertise` typo) became a voter at once
/// and could cost the cluster its quorum. A learner that does not catch up in time stays
/// a learner ([`ClusterError::NotCaughtUp`]) and can be removed.
pub async fn add_node(raft: &Raft, id: u64, addr: &str, catchup_timeout: Duration) -> Result<(), ClusterError> {
    if id == 0 {
        return Err(ClusterError::InvalidInput("node id must be >= 1".into()));
    }
    validate_addr(addr)?;
    let _one_at_a_time = MEMBERSHIP_CHANGE.lock().await;
    let membership = raft.metrics().borrow_watched().membership_config.clone();
    let membership = membership.membership();
    for (other, node) in membership.nodes() {
        if *other == id && node.addr != addr {
            return Err(ClusterError::Conflict(format!(
                "node {id} is already a member at {}",
                node.addr
            )));
        }
        if *other != id && node.addr == addr {
            return Err(ClusterError::Conflict(format!(
                "address {addr} already belongs to node {other}"
            )));
        }
    }
    if membership.voter_ids().any(|v| v == id) {
        tracing::info!(id, addr, "node is already a voter");
        return Ok(());
    }
    if membership.get_node(&id).is_none() {
        tracing::info!(id, addr, "adding node as a learner");
        raft.add_learner(id, BasicNode::new(addr), false)
            .await
            .map_err(write_error)?;
    }
    let target = raft.metrics().borrow_watched().last_log_index.unwrap_or(0);
    tracing::info!(id, addr, target, "waiting for the learner to acknowledge the log");
    let waited = raft
        .wait(Some(catchup_timeout))
        .metrics(
            |m| m.state != ServerState::Leader || matched_index(m, id).is_some_and(|i| i >= target),
            "learner caught up",
        )
        .await;
    let m = raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return Err(ClusterError::NotLeader { leader: leader(raft) });
    }
    if waited.is_err() {
        let matched = matched_index(&m, id);
        tracing::warn!(
            id,
            addr,
            ?matched,
            target,
            "learner did not catch up in time; it stays a learner"
        );
        let progress = match matched {
            None => "has not answered at all".to_string(),
            Some(i) => format!("has acknowledged up to index {i} of {target}"),
        };
        return Err(ClusterError::NotCaughtUp(format!(
            "node {id} at {addr} {progress} after {} ms; it stays a learner. Check that it runs \
             and that {addr} reaches it, then retry, or remove it (DELETE /v1/cluster/nodes/{id})",
            catchup_timeout.as_millis()
        )));
    }
    tracing::info!(id, addr, "learner acknowledged the log; promoting it to voter");
    raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(write_error)?;
    tracing::info!(id, addr, "node is a voter");
    Ok(())
}

/// On the leader: the newest index node `id` has acknowledged, if it ever answered.
fn matched_index(m: &openraft::RaftMetrics<TypeConfig>, id: u64) -> Option<u64> {
    m.replication.as_ref()?.get(&id)?.as_ref().map(|log_id| log_id.index)
}

/// On the leader, before it stops: hands the leadership to the voter that has
/// acknowledged the most of the log, and waits (up to `timeout`) until another node leads.
/// The cluster then writes on at once instead of waiting out an election timeout. A
/// follower, or a leader alone in its cluster, returns at once. Returns the new leader.
pub async fn hand_off_leadership(raft: &Raft, timeout: Duration) -> Option<u64> {
    let m = raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return None;
    }
    let me = m.id;
    let to = m
        .membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != me)
        .max_by_key(|id| matched_index(&m, *id))?;
    tracing::info!(to, "handing the leadership over before stopping");
    match transfer(raft, to, timeout).await {
        Ok(leader) => {
            tracing::info!(leader, "leadership handed over");
            Some(leader)
        }
        Err(e) => {
            tracing::warn!(error = %e, "the leadership was not handed over; stopping anyway");
            None
        }
    }
}

/// On the leader: asks voter `to` to take the leadership over, and waits (up to
/// `timeout`) until another node leads. Returns the leader then (usually `to`; a node
/// that cannot stamp commands, see [`crate::clock`], hands it on at once).
pub async fn move_leader(raft: &Raft, to: u64, timeout: Duration) -> Result<u64, ClusterError> {
    let m = raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return Err(ClusterError::NotLeader { leader: leader(raft) });
    }
    let membership = m.membership_config.membership();
    if membership.get_node(&to).is_none() {
        return Err(ClusterError::NotFound(format!("node {to} is not a member")));
    }
    if !membership.voter_ids().any(|v| v == to) {
        return Err(ClusterError::Conflict(format!(
            "node {to} is a learner; only a voter can lead"
        )));
    }
    if to == m.id {
        return Ok(to);
    }
    tracing::info!(to, "moving the leadership, as asked");
    transfer(raft, to, timeout).await
}

/// Triggers the transfer to `to` and waits until another node leads.
async fn transfer(raft: &Raft, to: u64, timeout: Duration) -> Result<u64, ClusterError> {
    let me = raft.metrics().borrow_watched().id;
    raft.trigger()
        .transfer_leader(to)
        .await
        .map_err(|e| ClusterError::Unavailable(format!("could not hand the leadership over: {e}")))?;
    let handed = raft
        .wait(Some(timeout))
        .metrics(
            |m| m.current_leader.is_some_and(|leader| leader != me),
            "another node leads",
        )
        .await;
    match handed {
        Ok(m) => Ok(m.current_leader.unwrap_or(to)),
        Err(e) => Err(ClusterError::Unavailable(format!(
            "node {to} did not take the leadership over within {} ms ({e}); retry",
            timeout.as_millis()
        ))),
    }
}

/// Removes node `id` (voter or learner) from the cluster.
pub async fn remove_node(raft: &Raft, id: u64) -> Result<(), ClusterError> {
    let _one_at_a_time = MEMBERSHIP_CHANGE.lock().await;
    let membership = raft.metrics().borrow_watched().membership_config.clone();
    let membership = membership.membership();
    if membership.get_node(&id).is_none() {
        return Err(ClusterError::NotFound(format!("node {id} is not a member")));
    }
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let change = if voters.contains(&id) {
        if voters.len() == 1 {
            return Err(ClusterError::Conflict(format!(
                "node {id} is the last voter and cannot be removed"
            )));
        }
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    tracing::info!(id, "removing node from the cluster");
    raft.change_membership(change, false).await.map_err(write_error)?;
    Ok(())
}

/// The committed log id as the Raft core knows it.
pub async fn committed(raft: &Raft) -> Option<LogId> {
    raft.with_raft_state(|st| st.local_committed().cloned())
        .await
        .ok()
        .flatten()
}
