//! Disk faults on one node of a 3-node cluster. A corrupted log record is detected at
//! start: the node refuses to start (it never serves damaged state) and names the record;
//! the documented recovery — remove it, wipe its data dir, add it again — brings it back
//! with its peers' state. A corrupted newest snapshot is renamed `.broken` and the node
//! recovers from the previous one plus the log.

mod common;

use std::time::Instant;

use common::*;
use gavel_storage::inspect::{sled_dir, snapshots_dir};
use gavel_storage::snapshot::list_snapshot_files;
use gavel_storage::{LogStore, LogStoreOptions};

async fn write_some(c: &TestCluster, node: u64, n: usize) {
    for i in 0..n {
        let (status, body) = c
            .post(node, "/v1/auctions", &auction_body(&format!("lot {i}"), 600), None)
            .await;
        assert_eq!(status, 201, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_log_record_stops_the_node_and_it_recovers_from_its_peers() {
    let _serial = serial().await;
    let mut c = TestCluster::start(3, TEST_RAFT).await;
    let leader = c.leader().await;
    write_some(&c, leader, 10).await;
    let victim = c.running().into_iter().find(|id| *id != leader).unwrap();
    c.wait_converged().await;

    log("phase: flip one byte of a record in a stopped follower's log");
    assert!(c.nodes.get_mut(&victim).unwrap().terminate().success());
    let index = {
        let log = LogStore::open(sled_dir(&c.node(victim).data_dir), LogStoreOptions::default()).unwrap();
        let index = 6;
        let mut raw = log.raw_get(index).unwrap().expect("record present");
        let at = raw.len() - 3;
        raw[at] ^= 0x04;
        log.raw_put(index, &raw).unwrap();
        index
    };

    log("phase: the node refuses to start, naming the record, and never answers");
    c.restart(victim);
    let node = c.nodes.get_mut(&victim).unwrap();
    let status = node.terminate_or_status();
    assert!(!status.success());
    let text = std::fs::read_to_string(&node.log_path).unwrap();
    assert!(
        text.contains("refusing to start") && text.contains(&format!("log record at index {index}")),
        "{}",
        node.log_tail()
    );
    assert_eq!(c.get(victim, "/health").await.0, 0, "it never served");

    log("phase: the cluster goes on with two nodes");
    write_some(&c, leader, 2).await;

    log("phase: recovery: remove the node, wipe its data dir, add it again");
    let resp = c
        .admin(reqwest::Method::DELETE, leader, &format!("/v1/cluster/nodes/{victim}"))
        .await;
    assert_eq!(resp.status(), 200);
    std::fs::remove_dir_all(&c.node(victim).data_dir).unwrap();
    let config = std::fs::read_to_string(&c.node(victim).config).unwrap();
    if !config.contains("join =") {
        std::fs::write(
            &c.node(victim).config,
            format!("{config}join = \"{}\"\n", c.node(leader).addr),
        )
        .unwrap();
    }
    c.restart(victim);
    c.wait_voters(leader, 3).await;
    // Every running node, the recovered one included, reaches one applied index and state
    // hash (a later entry, such as the node's worker registration, may follow it).
    assert!(c.running().contains(&victim));
    c.wait_converged().await;
    let (status, a) = c.get(victim, "/v1/auctions/12?consistency=stale").await;
    assert_eq!((status, a["title"].as_str()), (200, Some("lot 1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_snapshot_is_set_aside_and_the_node_recovers() {
    let _serial = serial().await;
    let mut c = TestCluster::start(3, TEST_RAFT).await;
    let leader = c.leader().await;
    let victim = c.running().into_iter().find(|id| *id != leader).unwrap();
    for _ in 0..2 {
        write_some(&c, leader, 5).await;
        c.wait_converged().await;
        let resp = c.admin(reqwest::Method::POST, victim, "/v1/admin/snapshot").await;
        assert_eq!(resp.status(), 200);
    }
    assert!(c.nodes.get_mut(&victim).unwrap().terminate().success());
    let snaps = snapshots_dir(&c.node(victim).data_dir);
    let files = list_snapshot_files(&snaps).unwrap();
    assert!(files.len() >= 2, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&files[0], bytes).unwrap();

    log("phase: the node starts, sets the broken snapshot aside, and catches up");
    let started = Instant::now();
    c.restart(victim);
    c.wait_ready(victim).await;
    write_some(&c, leader, 1).await;
    // The victim is among the running nodes that reach one applied index and hash.
    c.wait_converged().await;
    assert!(files[0].with_extension("snap.broken").exists(), "renamed .broken");
    let text = std::fs::read_to_string(&c.node(victim).log_path).unwrap();
    assert!(text.contains("snapshot failed its checks"), "the fallback is logged");
    log(&format!("recovered in {:?}", started.elapsed()));
}
