//! gavel-storage: everything a Gavel node keeps.
//!
//! - [`types`], [`command`]: the domain and the Raft payloads ([`TypeConfig`]).
//! - [`archive`]: closed auctions moved out of the book, in append-only files.
//! - [`book`]: [`AuctionBook`], the in-memory state with a pure, deterministic `apply`.
//! - [`codec`]: the framed record format `[len][crc32][bincode]` used for log records.
//! - [`log_store`]: openraft's `RaftLogStorage` on sled.
//! - [`snapshot`]: snapshot files (format, atomic write, fallback over broken files).
//! - [`state_machine`]: openraft's `RaftStateMachine` over the book and snapshot files.
//! - [`fsutil`]: durable writes (temp file, fsync, rename, fsync of the directory).
//! - [`inspect`]: read-only functions behind `gavel log` and `gavel snapshot`.

pub mod archive;
pub mod backup;
pub mod book;
pub mod codec;
pub mod command;
pub mod error;
pub mod fsutil;
pub mod inspect;
pub mod log_store;
pub mod metrics;
pub mod restore;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use book::{AuctionBook, BookCounts, IdempotencyLimits};
pub use command::{BidAccepted, Command, Op, Rejection, Response, TypeConfig};
pub use error::{Error, Result};
pub use log_store::{LogStore, LogStoreOptions};
pub use state_machine::StateMachineStore;
pub use types::*;

/// openraft's log entry for [`TypeConfig`].
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, openraft::BasicNode>;
pub type EntryPayload = openraft::alias::EntryPayloadOf<TypeConfig>;
pub type StorageError = openraft::StorageError<TypeConfig>;
/// openraft's leader id as log ids carry it (term and node).
pub type CommittedLeaderId = openraft::alias::CommittedLeaderIdOf<TypeConfig>;

/// The id of entry `index`, proposed in `term` by node `leader`.
pub fn log_id(term: u64, leader: NodeId, index: u64) -> LogId {
    LogId {
        leader_id: CommittedLeaderId { term, node_id: leader },
        index,
    }
}

/// bincode 2 configuration used for every on-disk and in-hash encoding: little-endian,
/// variable-length integers. Changing it changes the on-disk format version.
pub fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Decodes bincode written with [`bincode_config`], allocating at most `LIMIT` bytes.
///
/// Every decoder of bytes from outside the process (log records, snapshot files, RPC
/// bodies) goes through this: bincode otherwise trusts a length prefix and allocates it
/// before reading, so 9 bytes declaring a 2^62-byte string abort the process. With a
/// limit, a container whose declared size would pass it is an error before any
/// allocation. Returns the value and the number of bytes read.
pub fn decode_limited<T: serde::de::DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> std::result::Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode_config().with_limit::<LIMIT>())
}
