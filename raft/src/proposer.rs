//! Group commit: the one queue every write of a node passes through on the leader.
//!
//! openraft appends each `client_write` as its own entry; under concurrency the log's
//! flush rate would cap throughput. The proposer hands commands to Raft as they come while
//! fewer than [`PROPOSALS_IN_FLIGHT_MAX`] proposals are in flight; beyond that, commands
//! queue and the next proposal carries all of them (up to [`BATCH_COMMANDS_MAX`] commands
//! and [`BATCH_BYTES_MAX`] bytes) as one `Op::Batch` entry: one append, one fsync, one
//! replication round. A single client sees no added latency. Only
//! [`crate::front_door::FrontDoor`] calls it.

use gavel_storage::{Command, LogId, Response};

use crate::cluster::{write, ClusterError};
use crate::Raft;
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

/// The group commit (see the module's documentation).
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

    /// Commands waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
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
    crate::metrics::BATCH_COMMANDS.observe(batch.len() as f64);
    let _timer = crate::metrics::COMMIT_SECONDS.start_timer();
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
