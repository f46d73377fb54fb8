//! Durability of the storage engine under a real (single-node) openraft: state survives
//! drop and reopen with an identical state hash, including when the log was purged behind
//! a snapshot; a snapshot installed elsewhere reproduces the state; corrupted and torn
//! log records are reported with their index.

use openraft::async_runtime::watch::WatchReceiver as _;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gavel_storage::{
    AuctionSpec, Command, IncrementRule, LogStore, LogStoreOptions, Op, Response, StateMachineStore, TypeConfig,
};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};

const T0: u64 = 1_800_000_000_000;
const WAIT: Duration = Duration::from_secs(10);

/// A network for a one-node cluster: there is never anyone to talk to.
struct NoNetwork;

fn unreachable() -> Unreachable<TypeConfig> {
    Unreachable::new(&io::Error::other("single-node test cluster"))
}

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoNetwork;
    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> NoNetwork {
        NoNetwork
    }
}

impl RaftNetworkV2<TypeConfig> for NoNetwork {
    type SnapshotData = std::io::Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }
    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }
    async fn full_snapshot(
        &mut self,
        _vote: gavel_storage::Vote,
        _snapshot: gavel_storage::state_machine::Snapshot,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(unreachable()))
    }
}

struct Node {
    raft: Raft<TypeConfig, StateMachineStore>,
    sm: StateMachineStore,
}

fn config() -> Arc<Config> {
    let config = Config {
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        // Purge everything a snapshot covers, so a restart must use the snapshot.
        max_in_snapshot_log_to_keep: 0,
        snapshot_policy: SnapshotPolicy::Never,
        ..Default::default()
    };
    Arc::new(config.validate().expect("valid raft config"))
}

/// Opens the stores, retrying while a just-dropped handle still holds sled's lock.
fn open_stores(dir: &Path) -> (LogStore, StateMachineStore) {
    let deadline = Instant::now() + WAIT;
    loop {
        match LogStore::open(dir.join("sled"), LogStoreOptions::default()) {
            Ok(log) => {
                return (
                    log,
                    StateMachineStore::open(dir.join("snapshots"), dir.join("archive")).expect("open state machine"),
                )
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("log store not yet released ({e}); retrying");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("reopen log store: {e}"),
        }
    }
}

async fn start(dir: &Path, initialize: bool) -> Node {
    let (log, sm) = open_stores(dir);
    let raft = Raft::new(1, config(), NoNetwork, log, sm.clone())
        .await
        .expect("raft starts");
    if initialize {
        raft.initialize(BTreeMap::from([(1, BasicNode::new("127.0.0.1:0"))]))
            .await
            .expect("initialize");
    }
    raft.wait(Some(WAIT))
        .current_leader(1, "node 1 leads")
        .await
        .expect("leader elected");
    Node { raft, sm }
}

async fn write(node: &Node, ts: u64, op: Op) -> Response {
    node.raft
        .client_write(Command::new(ts, op))
        .await
        .expect("client_write")
        .data
}

fn spec() -> AuctionSpec {
    AuctionSpec {
        seller: "sam".into(),
        title: "Lamp".into(),
        starting_price: 1_000,
        increment: IncrementRule::Fixed(100),
        reserve_price: Some(5_000),
        starts_at_ms: T0,
        ends_at_ms: T0 + 3_600_000,
        soft_close: None,
        buy_now_price: None,
    }
}

async fn bid(node: &Node, ts: u64, bidder: &str, amount: u64) -> Response {
    write(
        node,
        ts,
        Op::PlaceBid {
            auction_id: 1,
            bidder: bidder.into(),
            amount: Some(amount),
            max_amount: None,
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_snapshot_and_purge_gives_identical_state() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), true).await;

    eprintln!("phase: write, snapshot, purge, write more");
    write(
        &node,
        T0,
        Op::RegisterWorker {
            node_id: 1,
            addr: "127.0.0.1:7070".into(),
            udp_addr: "127.0.0.1:7071".into(),
            max_auctions: 10,
        },
    )
    .await;
    let created = write(
        &node,
        T0 + 1,
        Op::CreateAuction {
            spec: spec(),
            worker: Some(1),
        },
    )
    .await;
    assert!(
        matches!(created, Response::AuctionCreated { auction_id: 1, .. }),
        "{created:?}"
    );
    for i in 0..20u64 {
        let r = bid(
            &node,
            T0 + 10 + i,
            if i % 2 == 0 { "ann" } else { "bob" },
            1_000 + i * 100,
        )
        .await;
        assert!(matches!(r, Response::BidAccepted(_)), "bid {i}: {r:?}");
    }
    node.raft.trigger().snapshot().await.unwrap();
    let m = node
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.snapshot.is_some() && m.purged == m.snapshot,
            "snapshot built and log purged",
        )
        .await
        .unwrap();
    let snap_index = m.snapshot.unwrap().index;
    for i in 20..30u64 {
        bid(
            &node,
            T0 + 10 + i,
            if i % 2 == 0 { "ann" } else { "bob" },
            1_000 + i * 100,
        )
        .await;
    }
    let applied = node.raft.metrics().borrow_watched().last_applied.unwrap();
    let hash_before = node.sm.state_hash();
    assert!(applied.index > snap_index);

    eprintln!("phase: shut down, drop every handle, reopen");
    node.raft.shutdown().await.unwrap();
    drop(node);
    let node = start(dir.path(), false).await;
    node.raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(applied.index), "committed tail re-applied")
        .await
        .unwrap();
    assert_eq!(node.sm.state_hash(), hash_before, "state hash after reopen");
    let book_price = node.sm.read().book.auction(1).unwrap().price;
    assert_eq!(book_price, 3_900, "last bid survives");

    eprintln!("phase: the log below the snapshot stays purged; a new write still works");
    let purged = node.raft.metrics().borrow_watched().purged;
    assert!(purged.expect("purge point persisted").index >= snap_index);
    assert!(matches!(
        bid(&node, T0 + 100, "cat", 10_000).await,
        Response::BidAccepted(_)
    ));

    eprintln!("phase: installing this node's snapshot into an empty state machine reproduces its state");
    node.raft.trigger().snapshot().await.unwrap();
    let last = node.raft.metrics().borrow_watched().last_applied;
    let last = last.unwrap().index;
    node.raft
        .wait(Some(WAIT))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= last), "second snapshot")
        .await
        .unwrap();
    let (meta, bytes) = node.sm.current().unwrap().expect("a snapshot exists");
    let other_dir = tempfile::tempdir().unwrap();
    let other = StateMachineStore::open(other_dir.path().join("snapshots"), other_dir.path().join("archive")).unwrap();
    other.install(&meta, bytes).await.unwrap();
    assert_eq!(other.state_hash(), node.sm.state_hash());
    assert_eq!(other.last_applied(), meta.last_log_id);
    node.raft.shutdown().await.unwrap();
}

fn entries(n: u64) -> Vec<gavel_storage::Entry> {
    (1..=n)
        .map(|i| gavel_storage::Entry {
            log_id: gavel_storage::log_id(1, 1, i),
            payload: openraft::EntryPayload::Normal(Command::new(T0 + i, Op::OpenAuction { auction_id: i })),
        })
        .collect()
}

#[tokio::test]
async fn flipped_byte_in_a_log_record_names_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(dir.path().join("sled"), LogStoreOptions::default()).unwrap();
    log.append_entries(entries(10)).await.unwrap();
    assert_eq!(log.read_entries(1..=10).unwrap().len(), 10);

    let mut raw = log.raw_get(5).unwrap().unwrap();
    let at = raw.len() - 2;
    raw[at] ^= 0x10;
    log.raw_put(5, &raw).unwrap();

    let err = log.read_entries(1..=10).unwrap_err().to_string();
    assert!(err.contains("index 5") && err.contains("checksum"), "{err}");
    let err = log.try_get_log_entries_checked(4..6).await;
    assert!(err.contains("index 5"), "{err}");
    // The records around it still read.
    assert_eq!(log.read_entries(6..=10).unwrap().len(), 5);
}

#[tokio::test]
async fn torn_last_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(dir.path().join("sled"), LogStoreOptions::default()).unwrap();
    log.append_entries(entries(10)).await.unwrap();
    let raw = log.raw_get(10).unwrap().unwrap();
    log.raw_put(10, &raw[..raw.len() - 3]).unwrap();
    let err = log.get_log_state().await.unwrap_err().to_string();
    assert!(err.contains("index 10") && err.contains("torn"), "{err}");
}

trait CheckedRead {
    async fn try_get_log_entries_checked(&mut self, range: std::ops::Range<u64>) -> String;
}

impl CheckedRead for LogStore {
    async fn try_get_log_entries_checked(&mut self, range: std::ops::Range<u64>) -> String {
        use openraft::RaftLogReader;
        match self.try_get_log_entries(range).await {
            Ok(v) => format!("unexpectedly read {} entries", v.len()),
            Err(e) => format!("{e:?}"),
        }
    }
}
