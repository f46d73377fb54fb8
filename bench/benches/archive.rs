//! Memory over months: a node that has taken millions of bids, with the closed auctions
//! archived, measured against the targets.
//!
//! One `gavel serve` (release build, fsync on, production Raft timings, snapshots every
//! 10 000 entries as in production, `archive_after_secs = 1`). 64 clients each create an
//! auction that runs 2 s, bid on it `BIDS_PER_AUCTION` times (two bidders taking turns),
//! and go on to the next, until `auctions` auctions and `auctions × 10` bids are
//! acknowledged. Then, once every auction is archived:
//!
//! - RSS of the node (`VmRSS`) once it has been idle 15 s, target ≤ 150 MB; also as
//!   the last auction was archived, and the peak (`VmHWM`) during the load;
//! - the newest snapshot's size after `POST /v1/admin/snapshot`, target ≤ 20 MB;
//! - restart to ready after `kill -9`, target ≤ 1 s;
//! - p99 of `GET /v1/auctions/{id}` on archived auctions (2 000 random ones, one client),
//!   target ≤ 5 ms; and that every one answers `"archived": true` with its 10 bids.
//!
//! Run: `cargo bench -p gavel-bench --bench archive` (200 000 auctions, 2 000 000 bids: about 10 minutes
//! on 2 cores) or `cargo bench -p gavel-bench --bench archive -- --quick` (2 000 auctions, 20 000 bids).
//! `--auctions N` overrides the count; `--hold SECS` pauses before the restart to look at
//! the loaded node (its pid is printed).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const BIDS_PER_AUCTION: u64 = 10;
const CLIENTS: u64 = 64;
const READS: usize = 2_000;
/// Idle time before the memory is read, after the last auction is archived.
const SETTLE_SECS: u64 = 15;
const RSS_TARGET_MB: f64 = 150.0;
const SNAPSHOT_TARGET_MB: f64 = 20.0;
const RESTART_TARGET_MS: f64 = 1_000.0;
const READ_P99_TARGET_MS: f64 = 5.0;
/// Bound on the whole load phase.
const LOAD_DEADLINE: Duration = Duration::from_secs(3_600);

fn config() -> String {
    "archive_after_secs = 1\n".to_string()
}

/// `VmRSS` and `VmHWM` of a process, in MB.
fn memory_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the node's /proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn newest_snapshot_mb(c: &TestCluster) -> f64 {
    let dir = c.node(1).data_dir.join("snapshots");
    std::fs::read_dir(&dir)
        .expect("the snapshots directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .max_by_key(|e| e.file_name())
        .map(|e| e.metadata().unwrap().len() as f64 / 1_048_576.0)
        .unwrap_or(0.0)
}

/// Every client creates auctions and bids on each; returns the acknowledged bids.
async fn load(c: &TestCluster, auctions: u64) -> u64 {
    let sam = Arc::new(c.token("sam").await.unwrap());
    let bidders = Arc::new([c.token("ann").await.unwrap(), c.token("bob").await.unwrap()]);
    let base = Arc::new(c.node(1).url(""));
    let next = Arc::new(AtomicU64::new(0));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (http, sam, bidders, base, next, acknowledged) = (
            c.http.clone(),
            sam.clone(),
            bidders.clone(),
            base.clone(),
            next.clone(),
            acknowledged.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < auctions {
                assert!(started.elapsed() < LOAD_DEADLINE, "the load ran past its deadline");
                let body = json!({"title": "lot", "starting_price": 1000, "increment": 100, "duration_secs": 2});
                let resp = http
                    .post(format!("{base}/v1/auctions"))
                    .bearer_auth(sam.as_str())
                    .json(&body)
                    .send()
                    .await
                    .expect("create");
                assert_eq!(resp.status(), 201);
                let id = resp.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
                for k in 0..BIDS_PER_AUCTION {
                    let resp = http
                        .post(format!("{base}/v1/auctions/{id}/bids"))
                        .bearer_auth(bidders[(k % 2) as usize].as_str())
                        .json(&json!({"amount": 1000 + 100 * k}))
                        .send()
                        .await
                        .expect("bid");
                    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut last_report = Instant::now();
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            let bids = acknowledged.load(Ordering::Relaxed);
            println!(
                "  {:.0} s: {bids} bids ({:.0}/s), RSS {:.0} MB",
                started.elapsed().as_secs_f64(),
                bids as f64 / started.elapsed().as_secs_f64(),
                memory_mb(c.node(1).pid().unwrap()).0
            );
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let bids = acknowledged.load(Ordering::Relaxed);
    println!(
        "load: {auctions} auctions, {bids} bids acknowledged in {:.0} s ({:.0} bids/s)",
        started.elapsed().as_secs_f64(),
        bids as f64 / started.elapsed().as_secs_f64()
    );
    bids
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT MET"
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let auctions: u64 = args
        .iter()
        .position(|a| a == "--auctions")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 2_000 } else { 200_000 });
    println!("archive bench: {auctions} auctions × {BIDS_PER_AUCTION} bids, {CLIENTS} clients, one node");
    let mut c = TestCluster::start(1, &config()).await;
    let bids = load(&c, auctions).await;
    assert_eq!(bids, auctions * BIDS_PER_AUCTION);

    let started = Instant::now();
    c.wait_for("every auction archived", Duration::from_secs(600), || async {
        (c.metric(1, "gavel_archive_auctions").await >= auctions).then_some(())
    })
    .await;
    println!(
        "archived: all {auctions} within {:.1} s of the last bid",
        started.elapsed().as_secs_f64()
    );

    let resp = c.admin(reqwest::Method::POST, 1, "/v1/admin/snapshot").await;
    assert_eq!(resp.status(), 200);
    let snapshot_mb = newest_snapshot_mb(&c);
    let (rss_at_once_mb, peak_mb) = memory_mb(c.node(1).pid().unwrap());
    // The allocator hands pages freed by the load back within seconds: the node's
    // memory once it holds just its state.
    tokio::time::sleep(Duration::from_secs(SETTLE_SECS)).await;
    let (rss_mb, _) = memory_mb(c.node(1).pid().unwrap());
    let archive_mb = c.metric(1, "gavel_archive_bytes").await as f64 / 1_048_576.0;
    // `--hold SECS`: time to look at the loaded node (pid printed) before it restarts.
    if let Some(secs) = args
        .iter()
        .position(|a| a == "--hold")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<u64>().ok())
    {
        println!("holding {secs} s; node pid {}", c.node(1).pid().unwrap());
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    let applied = c.cluster(1).await["applied_index"].as_u64().unwrap();
    c.nodes.get_mut(&1).unwrap().kill();
    let killed = Instant::now();
    c.restart(1);
    c.wait_for("ready after the restart", Duration::from_secs(120), || async {
        let (status, _) = c.get(1, "/ready").await;
        let info = c.cluster(1).await;
        (status == 200 && info["applied_index"].as_u64() >= Some(applied)).then_some(())
    })
    .await;
    let restart_ms = killed.elapsed().as_secs_f64() * 1e3;
    let (rss_after_restart_mb, _) = memory_mb(c.node(1).pid().unwrap());

    let mut latencies = Vec::with_capacity(READS);
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..READS {
        let id = rng.u64(1..=auctions);
        let t = Instant::now();
        let (status, v) = c.get(1, &format!("/v1/auctions/{id}")).await;
        latencies.push(t.elapsed());
        assert_eq!((status, &v["archived"]), (200, &json!(true)), "auction {id}: {v}");
        assert_eq!(v["bid_count"], BIDS_PER_AUCTION, "auction {id}");
    }
    latencies.sort();
    let p50_ms = latencies[READS / 2].as_secs_f64() * 1e3;
    let p99_ms = latencies[READS * 99 / 100].as_secs_f64() * 1e3;

    println!("\n| measure | value | target | |");
    println!("|---|---|---|---|");
    println!(
        "| RSS after load, archived, {SETTLE_SECS} s idle | {rss_mb:.0} MB | ≤ {RSS_TARGET_MB:.0} MB | {} |",
        verdict(rss_mb <= RSS_TARGET_MB)
    );
    println!(
        "| RSS as the last auction was archived | {rss_at_once_mb:.0} MB (peak during the load {peak_mb:.0} MB) | | |"
    );
    println!("| RSS after restart | {rss_after_restart_mb:.0} MB | | |");
    println!(
        "| newest snapshot | {snapshot_mb:.2} MB | ≤ {SNAPSHOT_TARGET_MB:.0} MB | {} |",
        verdict(snapshot_mb <= SNAPSHOT_TARGET_MB)
    );
    println!("| archive on disk | {archive_mb:.0} MB | | |");
    println!(
        "| restart to ready (kill -9) | {restart_ms:.0} ms | ≤ {RESTART_TARGET_MS:.0} ms | {} |",
        verdict(restart_ms <= RESTART_TARGET_MS)
    );
    println!(
        "| archived read p99 ({READS} reads) | {p99_ms:.2} ms (p50 {p50_ms:.2}) | ≤ {READ_P99_TARGET_MS:.0} ms | {} |",
        verdict(p99_ms <= READ_P99_TARGET_MS)
    );
    println!(
        "{}",
        json!({
            "bench": "archive", "auctions": auctions, "bids": bids,
            "rss_mb": rss_mb, "rss_at_once_mb": rss_at_once_mb, "peak_rss_mb": peak_mb, "rss_after_restart_mb": rss_after_restart_mb,
            "snapshot_mb": snapshot_mb, "archive_mb": archive_mb, "restart_ms": restart_ms,
            "read_p50_ms": p50_ms, "read_p99_ms": p99_ms,
        })
    );
}
