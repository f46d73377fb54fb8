//! Writes through Raft, linearizable read barriers, and membership changes, with the
//! errors the API maps to HTTP statuses.
//!
//! Joining is two steps, as Raft requires: the new node is added as a learner and the
//! call waits until it has caught up (from the log, or a snapshot if the log behind it
//! was purged); then it is promoted to voter. Both steps are committed membership
//! entries, so a restart never repeats them. Every function here must run on the leader;
//! elsewhere it fails with [`ClusterError::NotLeader`] naming the leader, and the API
//! forwards the request there.

use std::collections::BTreeSet;

use gavel_storage::{Command, LogId, Response};
use openraft::error::{ChangeMembershipError, CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::Serialize;

use crate::Raft;

/// Membership changes run one at a time on a node: openraft refuses a change while
/// another is in flight, and callers (joining nodes) should queue, not fail.
static MEMBERSHIP_CHANGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A node id and its HTTP/RPC address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeAddr {
    pub id: u64,
    pub addr: String,
}

#[derive(Debug, thiserror::Error)]
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
}

fn forward(f: ForwardToLeader<u64, BasicNode>) -> ClusterError {
    let leader = match (f.leader_id, f.leader_node) {
        (Some(id), Some(node)) => Some(NodeAddr { id, addr: node.addr }),
        _ => None,
    };
    ClusterError::NotLeader { leader }
}

fn write_error(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => forward(f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(e))) => {
            ClusterError::Unavailable(format!("another membership change is in progress; retry shortly ({e})"))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => ClusterError::Conflict(e.to_string()),
        RaftError::Fatal(f) => ClusterError::Unavailable(format!("raft stopped: {f}")),
    }
}

/// Proposes `cmd`, waits until it is committed and applied here, returns its response.
pub async fn write(raft: &Raft, cmd: Command) -> Result<(LogId, Response), ClusterError> {
    let resp = raft.client_write(cmd).await.map_err(write_error)?;
    Ok((resp.log_id, resp.data))
}

/// A read-index barrier: confirms leadership with a quorum and waits until this node has
/// applied everything committed before the read. After it, local state is linearizable.
pub async fn read_barrier(raft: &Raft) -> Result<(), ClusterError> {
    raft.ensure_linearizable().await.map(|_| ()).map_err(|e| match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => forward(f),
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => ClusterError::Unavailable(q.to_string()),
        RaftError::Fatal(f) => ClusterError::Unavailable(format!("raft stopped: {f}")),
    })
}

/// The current leader as this node sees it.
pub fn leader(raft: &Raft) -> Option<NodeAddr> {
    let m = raft.metrics().borrow().clone();
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
/// already a voter at the same address succeeds without change.
pub async fn add_node(raft: &Raft, id: u64, addr: &str) -> Result<(), ClusterError> {
    if id == 0 {
        return Err(ClusterError::InvalidInput("node id must be >= 1".into()));
    }
    validate_addr(addr)?;
    let _one_at_a_time = MEMBERSHIP_CHANGE.lock().await;
    let membership = raft.metrics().borrow().membership_config.clone();
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
    tracing::info!(id, addr, "adding node as a learner and waiting for it to catch up");
    raft.add_learner(id, BasicNode::new(addr), true)
        .await
        .map_err(write_error)?;
    tracing::info!(id, addr, "node caught up; promoting it to voter");
    raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(write_error)?;
    tracing::info!(id, addr, "node is a voter");
    Ok(())
}

/// Removes node `id` (voter or learner) from the cluster.
pub async fn remove_node(raft: &Raft, id: u64) -> Result<(), ClusterError> {
    let _one_at_a_time = MEMBERSHIP_CHANGE.lock().await;
    let membership = raft.metrics().borrow().membership_config.clone();
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
    raft.with_raft_state(|st| st.committed).await.ok().flatten()
}
