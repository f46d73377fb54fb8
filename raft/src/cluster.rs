//! Writes through Raft, linearizable read barriers, and membership changes, with the
//! errors the API maps to HTTP statuses.
//!
//! Joining is two steps, as Raft requires: the new node is added as a learner and the
//! call waits until it has caught up (from the log, or a snapshot if the log behind it
//! was purged); then it is promoted to voter. Both steps are committed membership
//! entries, so a restart never repeats them. Every function here must run on the leader;
//! elsewhere it fails with [`ClusterError::NotLeader`] naming the leader, and the API
//! forwards the request there.

use openraft::async_runtime::watch::WatchReceiver as _;
use std::collections::BTreeSet;

use gavel_storage::TypeConfig;
use gavel_storage::{Command, LogId, Response};
use openraft::error::{ChangeMembershipError, ClientWriteError, ForwardToLeader, LinearizableReadError, RaftError};
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, ServerState};
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

#[derive(Debug, Clone, thiserror::Error)]
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

/// Proposes `cmd`, waits until it is committed and applied here, returns its response.
pub async fn write(raft: &Raft, cmd: Command) -> Result<(LogId, Response), ClusterError> {
    let resp = raft.client_write(cmd).await.map_err(write_error)?;
    Ok((resp.log_id, resp.data))
}

/// Commands gathered into one log entry at most.
pub const BATCH_COMMANDS_MAX: usize = 256;
/// Encoded bytes of the commands gathered into one log entry at most (a single larger
/// command still goes alone). sled stores a value over 128 KiB (a quarter of its segment)
/// in a separate blob file that it never fsyncs, so entries stay well under that.
pub const BATCH_BYTES_MAX: usize = 64 * 1024;
/// Encoded bytes of one client command at most. Requests are bounded far below this
/// (64 KiB bodies, 128-byte names, 256-byte titles, 64 increment bands); the check keeps
/// every log entry under `gavel_storage::log_store::ENTRY_BYTES_MAX` whatever comes in.
pub const COMMAND_BYTES_MAX: usize = 32 * 1024;
const _: () = assert!(BATCH_BYTES_MAX + COMMAND_BYTES_MAX < gavel_storage::log_store::ENTRY_BYTES_MAX);
/// Proposals (entries) in flight at once; while they are, new commands queue up and form
/// the next batch.
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 4;
/// Commands waiting for a proposal slot.
pub const PROPOSER_QUEUE_MAX: usize = 8192;

type Reply = tokio::sync::oneshot::Sender<Result<(LogId, Response), ClusterError>>;

/// Group commit for client writes. openraft 0.9 appends (and fsyncs) each client write
/// on its own, so under concurrency the log's flush rate caps throughput. The proposer
/// hands commands to Raft as they come while fewer than [`PROPOSALS_IN_FLIGHT_MAX`]
/// proposals are in flight; beyond that, commands queue and the next proposal carries all
/// of them (up to [`BATCH_COMMANDS_MAX`]) as one `Op::Batch` entry: one append, one fsync,
/// one replication round. A single client sees no added latency.
#[derive(Clone)]
pub struct Proposer {
    tx: tokio::sync::mpsc::Sender<(Command, Reply)>,
}

impl Proposer {
    pub fn start(raft: Raft) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Command, Reply)>(PROPOSER_QUEUE_MAX);
        tokio::spawn(async move {
            let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(PROPOSALS_IN_FLIGHT_MAX));
            // A command taken from the queue that did not fit the previous batch.
            let mut carry = None;
            loop {
                let first = match carry.take() {
                    Some(first) => first,
                    None => match rx.recv().await {
                        Some(first) => first,
                        None => return,
                    },
                };
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (batch, rest) = gather(first, &mut rx);
                carry = rest;
                let raft = raft.clone();
                tokio::spawn(async move {
                    propose_batch(&raft, batch).await;
                    drop(slot);
                });
            }
        });
        Proposer { tx }
    }

    /// Like [`write`], through the group commit. A command whose encoding exceeds
    /// [`COMMAND_BYTES_MAX`] is refused before it reaches the log.
    pub async fn write(&self, cmd: Command) -> Result<(LogId, Response), ClusterError> {
        let len = encoded_len(&cmd);
        if len > COMMAND_BYTES_MAX {
            return Err(ClusterError::InvalidInput(format!(
                "the command is {len} bytes encoded, over the {COMMAND_BYTES_MAX}-byte limit"
            )));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send((cmd, reply))
            .await
            .map_err(|_| ClusterError::Unavailable("the proposer stopped".into()))?;
        answer
            .await
            .map_err(|_| ClusterError::Unavailable("the proposal was dropped".into()))?
    }
}

/// A command waiting in the proposer's queue, with whatever answers it.
type Queued<T> = (Command, T);

/// Encoded size of a command, as the log stores it.
fn encoded_len(cmd: &Command) -> usize {
    gavel_storage::codec::encoded_record_len(cmd).unwrap_or(usize::MAX)
}

/// `first` and whatever is queued behind it, up to [`BATCH_COMMANDS_MAX`] commands and
/// [`BATCH_BYTES_MAX`] encoded bytes; also the command taken that did not fit, if any.
fn gather<T>(first: Queued<T>, rx: &mut tokio::sync::mpsc::Receiver<Queued<T>>) -> (Vec<Queued<T>>, Option<Queued<T>>) {
    let mut bytes = encoded_len(&first.0);
    let mut batch = vec![first];
    while batch.len() < BATCH_COMMANDS_MAX {
        let Ok(next) = rx.try_recv() else {
            return (batch, None);
        };
        let len = encoded_len(&next.0);
        if bytes.saturating_add(len) > BATCH_BYTES_MAX {
            return (batch, Some(next));
        }
        bytes += len;
        batch.push(next);
    }
    (batch, None)
}

async fn propose_batch(raft: &Raft, mut batch: Vec<(Command, Reply)>) {
    if batch.len() == 1 {
        let (cmd, reply) = batch.pop().expect("one command");
        let _ = reply.send(write(raft, cmd).await);
        return;
    }
    let ts = batch.iter().map(|(c, _)| c.ts_ms).max().unwrap_or(0);
    let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
    match write(raft, Command::new(ts, gavel_storage::Op::Batch(commands))).await {
        Ok((log_id, Response::Batch(responses))) if responses.len() == replies.len() => {
            for (response, reply) in responses.into_iter().zip(replies) {
                let _ = reply.send(Ok((log_id, response)));
            }
        }
        Ok((_, other)) => {
            for reply in replies {
                let _ = reply.send(Err(ClusterError::Unavailable(format!(
                    "unexpected batch response: {other:?}"
                ))));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// A read-index barrier: confirms leadership with a quorum and waits until this node has
/// applied everything committed before the read. After it, local state is linearizable.
pub async fn read_barrier(raft: &Raft) -> Result<(), ClusterError> {
    raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex)
        .await
        .map(|_| ())
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
    if let Err(e) = raft.trigger().transfer_leader(to).await {
        tracing::warn!(error = %e, "could not hand the leadership over");
        return None;
    }
    let handed = raft
        .wait(Some(timeout))
        .metrics(
            |m| m.current_leader.is_some_and(|leader| leader != me),
            "another node leads",
        )
        .await;
    match handed {
        Ok(m) => {
            tracing::info!(leader = ?m.current_leader, "leadership handed over");
            m.current_leader
        }
        Err(e) => {
            tracing::warn!(error = %e, "the leadership was not handed over in time; stopping anyway");
            None
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_storage::Op;

    fn bid(n: usize, bidder_len: usize) -> Command {
        Command::new(
            n as u64,
            Op::PlaceBid {
                auction_id: 1,
                bidder: format!("{}{n}", "b".repeat(bidder_len)),
                amount: Some(1_000 + n as u64),
                max_amount: None,
            },
        )
    }

    /// Drains the queue the way the proposer does; returns the batches.
    fn drain(commands: Vec<Command>) -> Vec<Vec<Command>> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(commands.len().max(1));
        for c in commands {
            tx.try_send((c, ())).unwrap();
        }
        drop(tx);
        let mut batches = Vec::new();
        let mut carry = None;
        while let Some(first) = carry.take().or_else(|| rx.try_recv().ok()) {
            let (batch, rest) = gather(first, &mut rx);
            carry = rest;
            batches.push(batch.into_iter().map(|(c, ())| c).collect());
        }
        batches
    }

    #[test]
    fn batches_stay_under_the_byte_bound_and_keep_every_command_in_order() {
        // 300 commands of ~1 KiB: the byte bound, not the count, splits them.
        let commands: Vec<Command> = (0..300).map(|n| bid(n, 1_000)).collect();
        let batches = drain(commands.clone());
        assert!(batches.len() >= 5, "{} batches", batches.len());
        for b in &batches {
            let bytes: usize = b.iter().map(encoded_len).sum();
            assert!(bytes <= BATCH_BYTES_MAX, "a batch of {bytes} bytes");
        }
        assert_eq!(batches.concat(), commands);
    }

    #[test]
    fn small_commands_are_bounded_by_count() {
        let commands: Vec<Command> = (0..600).map(|n| bid(n, 4)).collect();
        let batches = drain(commands.clone());
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [256, 256, 88]);
        assert_eq!(batches.concat(), commands);
    }

    #[test]
    fn a_command_over_the_byte_bound_goes_alone() {
        let commands = vec![bid(0, 4), bid(1, BATCH_BYTES_MAX + 1), bid(2, 4)];
        let batches = drain(commands.clone());
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
        assert_eq!(batches.concat(), commands);
    }
}
