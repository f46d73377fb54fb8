//! A full disk: writes are refused with 507, `/health` fails so a supervisor notices, the
//! log says what to do, and once space is freed and the node restarted every
//! acknowledged bid is there.
//!
//! The node's data dir is a small tmpfs mounted by the test, so it needs root (CI runs as
//! root); without it the test says so and does nothing.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Size of the file system the node's data dir lives on.
const DISK_MB: u64 = 192;
const LOAD_REQUESTS_MAX: u64 = 300_000;
const LOAD_SECS_MAX: u64 = 120;

fn available(path: &Path) -> u64 {
    gavel_storage::fsutil::available_bytes(path).unwrap()
}

#[tokio::test]
async fn a_full_disk_is_refused_with_507_reported_unhealthy_and_loses_nothing() {
    let _serial = serial().await;
    log("the log's own writes hit ENOSPC (no snapshot is due)");
    fill_the_disk(&format!("{TEST_RAFT}snapshot_every_entries = 1000000\n"), 16).await;
    log("a snapshot is due but there is no room for it: refused before writing");
    fill_the_disk(TEST_RAFT, 40).await;
}

/// Runs a node on a small tmpfs, fills it to `left_free_mb`, bids until refused.
async fn fill_the_disk(config: &str, left_free_mb: u64) {
    let left_free_bytes = left_free_mb * 1024 * 1024;
    let mut c = TestCluster::new(config);
    let data = c.dir.path().join("node1");
    let Some(mount) = Tmpfs::mount(&data, DISK_MB) else {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    c.add_node(1, None, SECRET);
    c.wait_ready(1).await;
    let (status, _) = c.post(1, "/v1/auctions", &auction_body("lot", 3600), None).await;
    assert_eq!(status, 201);

    log("fill the disk but for a few MiB");
    let filler = data.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1024 * 1024];
        while available(&data) > left_free_bytes + chunk.len() as u64 {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
    }

    log("bid until the disk is full: refusals are 507 insufficient_storage");
    let mut acked = Vec::new();
    let mut amount = 1000u64;
    let mut refused = None;
    let started = Instant::now();
    for i in 0..LOAD_REQUESTS_MAX {
        if started.elapsed() > Duration::from_secs(LOAD_SECS_MAX) {
            break;
        }
        let bidder = format!("{}-{}", i % 2, "x".repeat(100));
        let (status, body) = c
            .post(
                1,
                "/v1/auctions/1/bids",
                &json!({"bidder": bidder, "amount": amount}),
                None,
            )
            .await;
        match status {
            201 => {
                acked.push(body["bid_id"].as_u64().unwrap());
                amount = body["min_next_bid"].as_u64().unwrap();
            }
            507 => {
                refused = Some(body);
                break;
            }
            other => {
                // A write in flight when the core stopped may fail otherwise; the next
                // one must be a 507.
                log(&format!("answer {other}: {body}"));
            }
        }
    }
    let refused = refused.expect("the disk filled up and a write was refused with 507");
    assert_eq!(refused["error"]["code"], "insufficient_storage", "{refused}");
    log(&format!("{} bids acknowledged before the disk filled", acked.len()));
    assert!(!acked.is_empty());

    log("/health fails so that a supervisor restarts the node, and the log says why");
    c.wait_for("/health to fail", DEADLINE, || async {
        let (status, body) = c.get(1, "/health").await;
        (status == 503).then_some(body)
    })
    .await;
    let text = std::fs::read_to_string(&c.node(1).log_path).unwrap();
    assert!(text.contains("Free space"), "the log says what to do");

    log("free space, restart: every acknowledged bid is there and bidding goes on");
    std::fs::remove_file(&filler).unwrap();
    c.nodes.get_mut(&1).unwrap().kill();
    c.restart(1);
    c.wait_ready(1).await;
    let (_, bids) = c.get(1, "/v1/auctions/1/bids").await;
    let stored: std::collections::BTreeSet<u64> = bids["bids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bid_id"].as_u64().unwrap())
        .collect();
    let missing: Vec<_> = acked.iter().filter(|b| !stored.contains(b)).collect();
    assert!(missing.is_empty(), "acknowledged bids lost: {missing:?}");
    let (_, auction) = c.get(1, "/v1/auctions/1").await;
    let next = auction["min_next_bid"].as_u64().unwrap();
    let (status, body) = c
        .post(
            1,
            "/v1/auctions/1/bids",
            &json!({"bidder": "zed", "amount": next}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    c.nodes.get_mut(&1).unwrap().kill();
    drop(mount);
}
