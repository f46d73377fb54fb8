//! Cluster measurements with real `gavel serve` processes (release build), bounded:
//!
//! 1. Failover: `kill -9` of the leader of a 3-node cluster → first successful write on
//!    the new leader, with the production Raft timings; 5 runs, median reported.
//! 2. Throughput of group commit: 64 clients creating auctions on 1 node and on a 3-node
//!    cluster.
//! 3. Restart to ready: a node holding N committed entries (auctions created over HTTP by
//!    one client, so one entry per write) is killed and restarted; time until `/ready` answers 200 and
//!    the node has applied everything — once replaying the whole log, once from a
//!    snapshot.
//!
//! Run: `cargo bench -p gavel-bench --bench cluster` (5 failovers, 100 000 entries) or
//! `cargo bench -p gavel-bench --bench cluster -- --quick` (1 failover, 5 000 entries).
//!
//! The server is `GAVEL_BIN`, else `target/release/gavel`: build it first with
//! `cargo build --release -p gavel` (the benchmark says so if it is missing).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Production timings, except snapshots only when asked for.
const NO_AUTO_SNAPSHOT: &str = "[raft]\nsnapshot_every_entries = 1000000000\n";

async fn failover_once(run: usize) -> Duration {
    let mut c = TestCluster::start(3, "").await;
    let leader = c.leader().await;
    for i in 0..10 {
        let (status, _) = c
            .post(leader, "/v1/auctions", &auction_body(&format!("warm {i}"), 600), None)
            .await;
        assert_eq!(status, 201);
    }
    let survivors: Vec<u64> = c.running().into_iter().filter(|id| *id != leader).collect();
    c.nodes.get_mut(&leader).unwrap().kill();
    let killed = Instant::now();
    let mut attempt = 0usize;
    loop {
        let target = survivors[attempt % survivors.len()];
        attempt += 1;
        let (status, _) = c
            .post(
                target,
                "/v1/auctions",
                &auction_body("after kill", 600),
                Some(&format!("fo-{run}")),
            )
            .await;
        if status == 201 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "no write accepted within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = killed.elapsed();
    println!(
        "failover run {run}: first write accepted {:.0} ms after kill -9 ({attempt} attempts)",
        took.as_secs_f64() * 1e3
    );
    took
}

/// Creates `entries` auctions with `clients` concurrent clients; returns the time taken.
/// With one client every write is its own log entry; with many, group commit batches
/// them.
async fn fill(c: &TestCluster, entries: usize, clients: usize) -> Duration {
    let started = Instant::now();
    let per = entries.div_ceil(clients);
    let url = Arc::new(c.node(1).url("/v1/auctions"));
    let seller = Arc::new(c.token("sam").await.expect("the seller's account"));
    let mut tasks = Vec::new();
    for w in 0..clients {
        let http = c.http.clone();
        let url = url.clone();
        let seller = seller.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let body = auction_body(&format!("lot {w}-{i}"), 3600);
                let resp = http
                    .post(url.as_str())
                    .bearer_auth(seller.as_str())
                    .json(&body)
                    .send()
                    .await
                    .expect("post");
                assert_eq!(resp.status(), 201);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

async fn restart_to_ready(c: &mut TestCluster) -> Duration {
    let applied = c.cluster(1).await["applied_index"].as_u64().unwrap();
    c.nodes.get_mut(&1).unwrap().kill();
    let started = Instant::now();
    c.restart(1);
    c.wait_for(
        "restarted node ready and caught up",
        Duration::from_secs(600),
        || async {
            let (status, _) = c.get(1, "/ready").await;
            let info = c.cluster(1).await;
            (status == 200 && info["applied_index"].as_u64() >= Some(applied)).then_some(())
        },
    )
    .await;
    started.elapsed()
}

async fn restart_case(entries: usize, snapshot: bool) {
    let mut c = TestCluster::start(1, NO_AUTO_SNAPSHOT).await;
    let took = fill(&c, entries, 1).await;
    let n = c.cluster(1).await["applied_index"].as_u64().unwrap();
    println!(
        "filled {n} log entries in {:.1} s ({:.0} writes/s, 1 client, 1 node)",
        took.as_secs_f64(),
        entries as f64 / took.as_secs_f64()
    );
    if snapshot {
        let resp = c.admin(reqwest::Method::POST, 1, "/v1/admin/snapshot").await;
        assert_eq!(resp.status(), 200);
    }
    let t = restart_to_ready(&mut c).await;
    let size: u64 = walk_size(&c.node(1).data_dir);
    println!(
        "restart to ready with {n} entries, {}: {:.0} ms (data dir {:.1} MiB)",
        if snapshot {
            "from a snapshot"
        } else {
            "replaying the log"
        },
        t.as_secs_f64() * 1e3,
        size as f64 / (1024.0 * 1024.0)
    );
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk_size(&e.path())
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Writes per second through group commit: 64 clients against one node and against a
/// 3-node cluster's leader.
async fn throughput_case(nodes: u64, writes: usize) {
    let c = TestCluster::start(nodes, NO_AUTO_SNAPSHOT).await;
    let leader = c.leader().await;
    let before = c.cluster(leader).await["applied_index"].as_u64().unwrap();
    let clients = 64;
    let per = writes.div_ceil(clients);
    let url = Arc::new(c.node(leader).url("/v1/auctions"));
    let seller = Arc::new(c.token("sam").await.expect("the seller's account"));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let (http, url, seller) = (c.http.clone(), url.clone(), seller.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let resp = http
                    .post(url.as_str())
                    .bearer_auth(seller.as_str())
                    .json(&auction_body(&format!("lot {w}-{i}"), 3600))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(resp.status(), 201);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    let entries = c.cluster(leader).await["applied_index"].as_u64().unwrap() - before;
    println!(
        "group commit, {nodes} node(s), 64 clients: {} writes in {took:.1} s = {:.0} writes/s in {entries} log entries ({:.1} writes per entry)",
        per * clients,
        (per * clients) as f64 / took,
        (per * clients) as f64 / entries.max(1) as f64
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    println!("server: {}", gavel_bin().display());
    let (runs, entries) = if quick { (1, 5_000) } else { (5, 100_000) };
    let mut times = Vec::new();
    for run in 1..=runs {
        times.push(failover_once(run).await);
    }
    times.sort();
    let ms: Vec<u64> = times.iter().map(|t| t.as_millis() as u64).collect();
    println!(
        "failover: median {} ms over {runs} runs (sorted: {ms:?} ms)",
        ms[ms.len() / 2]
    );
    throughput_case(1, entries / 5).await;
    throughput_case(3, entries / 5).await;
    restart_case(entries, false).await;
    restart_case(entries, true).await;
}
