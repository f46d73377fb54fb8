//! UDP fast-path measurements with a real 3-node cluster (release build), bounded:
//!
//! 1. Bid acknowledged → datagram received, with 1 and with 100 subscribers: bids are
//!    placed one at a time through the leader; each subscriber socket timestamps the
//!    datagram of that bid's `seq`. Reported: p50/p99 of (datagram received − HTTP answer
//!    received); negative means the datagram arrived before the answer. Also from the
//!    bid being sent.
//! 2. Datagrams per second one node sends to 1000 subscribers while 16 clients bid as fast
//!    as they can (from the hosting worker's counters), and how many arrived.
//!
//! Run: `cargo bench -p gavel-bench --bench live` (300 bids per case, 10 s of fan-out) or
//! `cargo bench -p gavel-bench --bench live -- --quick` (50 bids, 3 s).
//!
//! The server is `GAVEL_BIN`, else `target/release/gavel`: build it first with
//! `cargo build --release -p gavel` (the benchmark says so if it is missing).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gavel_api::udp::{EventFrame, ProofFrame};
use serde_json::json;
use tokio::net::UdpSocket;

type Arrivals = Arc<Mutex<HashMap<u64, Vec<Instant>>>>;

/// Subscribers per watcher account (under the per-account quota of 64).
const SUBSCRIBERS_PER_ACCOUNT: usize = 50;

/// Binds `n` subscriber sockets, subscribes them (each answers the node's challenge, as
/// `gavel watch` does), and records arrival times by seq.
async fn subscribers(c: &TestCluster, node: u64, id: u64, n: usize, arrivals: Arrivals, count: Arc<AtomicU64>) {
    let path = format!("/v1/auctions/{id}/subscriptions");
    for i in 0..n {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        let token = c.token(&format!("watcher-{id}-{}", i / SUBSCRIBERS_PER_ACCOUNT)).await;
        let body = json!({"udp": addr, "ttl_secs": 3600});
        let (status, answer) = c.post_with(node, &path, &body, None, token.as_deref()).await;
        assert_eq!(status, 202, "{answer}");
        let mut buf = [0u8; 64];
        let (len, from) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buf))
            .await
            .expect("a challenge")
            .unwrap();
        let challenge = ProofFrame::decode(&buf[..len]).expect("a challenge");
        let confirm = ProofFrame {
            confirm: true,
            ..challenge
        };
        socket.send_to(&confirm.encode(), from).await.unwrap();
        c.wait_for("the subscription to be active", Duration::from_secs(10), || async {
            let (status, answer) = c.post_with(node, &path, &body, None, token.as_deref()).await;
            assert!(status == 201 || status == 202, "{status} {answer}");
            (status == 201).then_some(())
        })
        .await;
        let (arrivals, count) = (arrivals.clone(), count.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((len, _)) = socket.recv_from(&mut buf).await {
                let at = Instant::now();
                count.fetch_add(1, Ordering::Relaxed);
                if let Ok(f) = EventFrame::decode(&buf[..len]) {
                    arrivals.lock().unwrap().entry(f.seq).or_default().push(at);
                }
            }
        });
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn latency_case(c: &TestCluster, leader: u64, n_subs: usize, bids: u64) {
    let (status, a) = c
        .post(
            leader,
            "/v1/auctions",
            &json!({"seller": "s", "title": "t", "starting_price": 1, "increment": 1, "duration_secs": 3600}),
            None,
        )
        .await;
    assert_eq!(status, 201);
    let id = a["id"].as_u64().unwrap();
    let worker = a["worker"].as_u64().unwrap();
    let arrivals: Arrivals = Arc::default();
    subscribers(c, leader, id, n_subs, arrivals.clone(), Arc::default()).await;
    let (mut from_ack, mut from_send) = (Vec::new(), Vec::new());
    for i in 0..bids {
        let sent = Instant::now();
        let bidder = format!("b{}", i % 7);
        let token = c.token(&bidder).await.expect("a bidder's account");
        let resp = c
            .http
            .post(c.node(leader).url(&format!("/v1/auctions/{id}/bids")))
            .bearer_auth(token)
            .json(&json!({"bidder": bidder, "amount": 1 + i}))
            .send()
            .await
            .unwrap();
        let acked = Instant::now();
        let body: serde_json::Value = resp.json().await.unwrap();
        let seq = body["seq"].as_u64().expect("bid accepted");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = arrivals.lock().unwrap().get(&seq).map(|v| v.len()).unwrap_or(0);
            if got >= n_subs || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        for at in arrivals.lock().unwrap().remove(&seq).unwrap_or_default() {
            let signed = |a: Instant, b: Instant| {
                if a >= b {
                    (a - b).as_secs_f64()
                } else {
                    -(b - a).as_secs_f64()
                }
            };
            from_ack.push(signed(at, acked) * 1e3);
            from_send.push(signed(at, sent) * 1e3);
        }
    }
    from_ack.sort_by(f64::total_cmp);
    from_send.sort_by(f64::total_cmp);
    let expected = (bids as usize) * n_subs;
    println!(
        "{n_subs:>4} subscriber(s), worker {worker} ({}): ack→datagram p50 {:.2} ms p99 {:.2} ms; send→datagram p50 {:.2} ms p99 {:.2} ms; received {}/{expected}",
        if worker == leader { "the leader" } else { "a follower" },
        pct(&from_ack, 0.5),
        pct(&from_ack, 0.99),
        pct(&from_send, 0.5),
        pct(&from_send, 0.99),
        from_ack.len()
    );
}

async fn fanout_case(c: &TestCluster, leader: u64, secs: u64) {
    let (status, a) = c
        .post(
            leader,
            "/v1/auctions",
            &json!({"seller": "s", "title": "fan-out", "starting_price": 1, "increment": 1, "duration_secs": 3600}),
            None,
        )
        .await;
    assert_eq!(status, 201);
    let id = a["id"].as_u64().unwrap();
    let worker = a["worker"].as_u64().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    subscribers(c, leader, id, 1000, Arc::default(), received.clone()).await;
    let sent_name = "gavel_udp_datagrams_total{outcome=\"sent\"}";
    let sent0 = c.metric(worker, sent_name).await;
    let dropped0 = c
        .metric(worker, "gavel_udp_datagrams_total{outcome=\"send_dropped\"}")
        .await
        + c.metric(worker, "gavel_udp_datagrams_total{outcome=\"queue_dropped\"}")
            .await;
    let recv0 = received.load(Ordering::Relaxed);
    let started = Instant::now();
    let stop = started + Duration::from_secs(secs);
    let next = Arc::new(AtomicU64::new(1));
    let bids = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for b in 0..16 {
        let token = c.token(&format!("b{b}")).await.expect("a bidder's account");
        let (http, url, next, bids) = (
            c.http.clone(),
            c.node(leader).url(&format!("/v1/auctions/{id}/bids")),
            next.clone(),
            bids.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let amount = next.fetch_add(1, Ordering::Relaxed);
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"bidder": format!("b{b}"), "amount": amount}))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 201 {
                    bids.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = c.metric(worker, sent_name).await - sent0;
    let dropped = c
        .metric(worker, "gavel_udp_datagrams_total{outcome=\"send_dropped\"}")
        .await
        + c.metric(worker, "gavel_udp_datagrams_total{outcome=\"queue_dropped\"}")
            .await
        - dropped0;
    let got = received.load(Ordering::Relaxed) - recv0;
    let accepted = bids.load(Ordering::Relaxed);
    println!(
        "fan-out to 1000 subscribers (worker {worker}): {accepted} bids in {elapsed:.1} s ({:.0} bids/s) → {:.0} datagrams/s sent, {dropped} dropped at the sender, {:.1}% of sent received",
        accepted as f64 / elapsed,
        sent as f64 / elapsed,
        100.0 * got as f64 / sent.max(1) as f64
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    println!("server: {}", gavel_bin().display());
    let (bids, secs) = if quick { (50, 3) } else { (300, 10) };
    let c = TestCluster::start(3, "").await;
    let leader = c.leader().await;
    c.wait_live_workers(leader, 3).await;
    latency_case(&c, leader, 1, bids).await;
    latency_case(&c, leader, 100, bids).await;
    fanout_case(&c, leader, secs).await;
}
