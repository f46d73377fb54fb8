//! Clocks that lie (DESIGN.md invariant 10): five real nodes, three with good clocks, node
//! 4 running 2 s fast and node 5 running 2 s slow under libfaketime (Debian's `faketime`
//! package; `FAKETIME_DONT_FAKE_MONOTONIC=1` keeps tokio's timers on the real monotonic
//! clock). Five, because with three nodes a +2 s and a −2 s clock leave no two within
//! 0.5 s of each other, and no majority agrees on the time at all (the last phase shows
//! what the cluster does then).
//!
//! - Each skewed node in turn is made leader (`POST /v1/cluster/leader`): it must stamp
//!   nothing, hand the leadership to a good node at once, and writes meanwhile may be
//!   held or refused (`clock_skew`) only briefly.
//! - Auctions hosted by the skewed nodes (workers) end around each hand-off; each must
//!   close within 0.5 s after its `ends_at` by the test's real clock, never before it.
//! - A bidder keeps bidding through every node the whole time; every acknowledged bid is
//!   in the history at the end.
//! - With two good nodes paused, the leader has no majority agreeing on the time: it
//!   answers writes 503 `clock_skew` and `/ready` 503, and recovers when they return.
//!
//! Without libfaketime the test is skipped with a message, unless `GAVEL_REQUIRE_FAKETIME`
//! is set (CI sets it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const FAST: u64 = 4;
const SLOW: u64 = 5;
const GOOD: [u64; 3] = [1, 2, 3];
const SKEW_MS: i64 = 2_000;
/// Invariant 10: no auction closes further than this from its `ends_at` in real time.
const CLOSE_BOUND_MS: i64 = 500;
/// How late the test may see a close beyond that: it polls every [`POLL_MS`] through a
/// node that may be taking the leadership over at that moment. The close itself is
/// checked strictly, by its command time (`closed_at`, stamped by a good leader, whose
/// clock is the test's).
const OBSERVE_SLACK_MS: i64 = 300;
/// When each phase's auctions end, after the phase starts: around the hand-off.
const ENDS_AFTER_MS: [i64; 4] = [700, 1_200, 1_800, 2_600];
/// The longest a single bid may go unacknowledged while leadership moves.
const BID_STALL_MAX_MS: u128 = 2_500;
/// Bounds of the bidder.
const BIDS_MAX: u64 = 5_000;
const BIDDING_MAX: Duration = Duration::from_secs(90);
/// How often the test looks at the auctions it waits to close.
const POLL_MS: u64 = 20;

fn real_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn parse_ms(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn faketime(offset: &str) -> Vec<(String, String)> {
    [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME", offset),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        // The skewed nodes get every new auction: they have the most spare capacity.
        ("GAVEL_MAX_AUCTIONS", "100000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A node's `/ready` body and status.
async fn ready(c: &TestCluster, id: u64) -> (u16, Value) {
    c.get(id, "/ready").await
}

/// One signed gauge from a node's `/metrics`.
async fn gauge(c: &TestCluster, id: u64, name: &str) -> Option<i64> {
    gauge_f64(c, id, name).await.map(|v| v as i64)
}

async fn gauge_f64(c: &TestCluster, id: u64, name: &str) -> Option<f64> {
    let text = c
        .http
        .get(c.node(id).url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// What the bidder saw.
#[derive(Default, Debug)]
struct Bidding {
    acked: Vec<u64>,
    /// 503 answers by code.
    refused: BTreeMap<String, u64>,
    /// The longest one bid waited for its acknowledgement, retries included.
    longest_ms: u128,
}

/// Bids on `auction` through every node in turn, each bid retried with its
/// Idempotency-Key until acknowledged, until `stop`.
async fn bidder(c: Arc<TestCluster>, auction: u64, stop: Arc<AtomicBool>) -> Bidding {
    let mut seen = Bidding::default();
    let started = Instant::now();
    let mut amount = 1_000;
    for i in 0..BIDS_MAX {
        if stop.load(Ordering::Relaxed) || started.elapsed() > BIDDING_MAX {
            break;
        }
        let via = 1 + i % 5;
        let bidder = if i % 2 == 0 { "ann" } else { "bob" };
        let body = json!({ "bidder": bidder, "amount": amount });
        let key = format!("clock-bid-{i}");
        let first = Instant::now();
        loop {
            let (status, answer) = c
                .post(via, &format!("/v1/auctions/{auction}/bids"), &body, Some(&key))
                .await;
            match status {
                201 => {
                    seen.acked.push(answer["bid_id"].as_u64().expect("bid_id"));
                    break;
                }
                503 | 0 => {
                    let code = answer["error"]["code"].as_str().unwrap_or("no answer").to_string();
                    *seen.refused.entry(code).or_default() += 1;
                    assert!(
                        first.elapsed() < Duration::from_secs(20),
                        "bid {i} via node {via} unacknowledged for 20 s: {answer}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("bid {i} via node {via}: {other} {answer}"),
            }
        }
        seen.longest_ms = seen.longest_ms.max(first.elapsed().as_millis());
        amount += 100;
    }
    seen
}

/// Creates one auction per entry of [`ENDS_AFTER_MS`], ending that long after now by the
/// test's clock. Returns (id, ends_at ms, worker).
async fn create_auctions(c: &TestCluster, phase: &str) -> Vec<(u64, i64, u64)> {
    let start = real_now_ms();
    let mut made = Vec::new();
    for (i, after) in ENDS_AFTER_MS.iter().enumerate() {
        let ends_at = start + after;
        let body = json!({
            "seller": "sam", "title": format!("{phase} {i}"), "starting_price": 100,
            "increment": 10, "ends_at": rfc3339(ends_at),
        });
        let (status, a) = c.post(1, "/v1/auctions", &body, Some(&format!("{phase}-{i}"))).await;
        assert_eq!(status, 201, "{a}");
        assert_eq!(parse_ms(a["ends_at"].as_str().unwrap()), ends_at, "{a}");
        made.push((a["id"].as_u64().unwrap(), ends_at, a["worker"].as_u64().unwrap()));
    }
    let workers: BTreeSet<u64> = made.iter().map(|(_, _, w)| *w).collect();
    assert_eq!(
        workers,
        BTreeSet::from([FAST, SLOW]),
        "the skewed nodes host the auctions: {made:?}"
    );
    made
}

/// Waits for each auction to close and checks when: by command time at most
/// [`CLOSE_BOUND_MS`] after `ends_at`; by the test's real clock never before it (a fast
/// leader's stamp would close it early) and at most [`CLOSE_BOUND_MS`] plus
/// [`OBSERVE_SLACK_MS`] after it.
async fn check_closes(c: &TestCluster, auctions: &[(u64, i64, u64)]) {
    log(&format!(
        "phase: the auctions hosted by the skewed nodes close within {CLOSE_BOUND_MS} ms after ends_at"
    ));
    let mut open: Vec<(u64, i64, u64)> = auctions.to_vec();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "auctions never closed: {open:?}");
        let mut still = Vec::new();
        for (id, ends_at, worker) in open {
            let (_, a) = c.get(1, &format!("/v1/auctions/{id}?consistency=stale")).await;
            if a["status"] != "closed" {
                still.push((id, ends_at, worker));
                continue;
            }
            let seen_ms = real_now_ms() - ends_at;
            let closed_ms = parse_ms(a["closed_at"].as_str().unwrap()) - ends_at;
            log(&format!(
                "auction {id} on node {worker}: closed_at is ends_at + {closed_ms} ms, seen closed at ends_at + {seen_ms} ms"
            ));
            assert!(
                (0..=CLOSE_BOUND_MS).contains(&closed_ms),
                "auction {id} (worker {worker}) closed at ends_at + {closed_ms} ms in command time: {a}"
            );
            assert!(
                (0..=CLOSE_BOUND_MS + OBSERVE_SLACK_MS).contains(&seen_ms),
                "auction {id} (worker {worker}) was seen closed at ends_at + {seen_ms} ms in real time: {a}"
            );
        }
        open = still;
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// Makes `skewed` leader and checks it hands the leadership to a good node.
async fn skewed_leader_hands_over(c: &TestCluster, skewed: u64) {
    let term_before = c.cluster(1).await["term"].as_u64().unwrap();
    let started = Instant::now();
    let resp = c
        .http
        .post(c.node(1).url("/v1/cluster/leader"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "id": skewed }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let moved: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{moved}");
    log(&format!(
        "moved the leadership to node {skewed}; the answer names {}",
        moved["leader"]
    ));
    let leader = c
        .wait_for("a good node leads", Duration::from_secs(10), || async move {
            let leader = c.leader().await;
            GOOD.contains(&leader).then_some(leader)
        })
        .await;
    let term_after = c.cluster(leader).await["term"].as_u64().unwrap();
    assert!(
        term_after >= term_before + 2,
        "two elections (to node {skewed}, then away): term {term_before} -> {term_after}"
    );
    let text = std::fs::read_to_string(&c.node(skewed).log_path).unwrap();
    assert!(
        text.contains("handing the leadership to a voter whose clock agrees"),
        "node {skewed} led and handed over because of its clock:\n{}",
        c.node(skewed).log_tail()
    );
    log(&format!(
        "node {leader} leads now (term {term_after}), {} ms after the move was asked for",
        started.elapsed().as_millis()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auctions_close_on_time_and_nothing_is_lost_when_a_nodes_clock_is_off() {
    if !std::path::Path::new(LIBFAKETIME).exists() {
        assert!(
            std::env::var_os("GAVEL_REQUIRE_FAKETIME").is_none(),
            "GAVEL_REQUIRE_FAKETIME is set but {LIBFAKETIME} is missing: apt-get install faketime"
        );
        eprintln!("SKIPPED: {LIBFAKETIME} is missing (Debian: apt-get install faketime)");
        return;
    }
    let _serial = serial().await;
    log("phase: 5 nodes, node 4 runs 2 s fast and node 5 2 s slow (libfaketime)");
    let env = BTreeMap::from([(FAST, faketime("+2s")), (SLOW, faketime("-2s"))]);
    let shared = Arc::new(TestCluster::start_with_env(5, TEST_RAFT, env).await);
    let c: &TestCluster = &shared;
    let leader = c.leader().await;
    assert!(GOOD.contains(&leader), "node {leader} bootstrapped or took over");
    c.wait_live_workers(leader, 5).await;

    log("phase: each node sees its own clock's offset from the leader's");
    for (id, want) in [(1, 0), (2, 0), (3, 0), (FAST, SKEW_MS), (SLOW, -SKEW_MS)] {
        let (status, body) = c
            .wait_for(&format!("node {id}'s clock offset"), DEADLINE, || async move {
                let (status, body) = ready(c, id).await;
                let skew = body["clock_skew_ms"].as_i64()?;
                // A follower with a skewed clock is ready too: it runs its auctions on the
                // leader's time and sends its writes there.
                (status == 200 && (skew - want).abs() <= 200).then_some((status, body))
            })
            .await;
        assert_eq!(status, 200, "node {id}: {body}");
        assert_eq!(body["clock_skewed"], json!(want != 0), "node {id}: {body}");
        assert_eq!(body["clock_synchronized"], json!(true), "node {id}: {body}");
        let skewed = gauge(c, id, "gavel_clock_skewed").await;
        assert_eq!(skewed, Some(i64::from(want != 0)), "node {id}'s gavel_clock_skewed");
        let offset = gauge_f64(c, id, "gavel_clock_offset_seconds").await.unwrap();
        assert!(
            (offset * 1000.0 - want as f64).abs() <= 200.0,
            "node {id}'s gavel_clock_offset_seconds: {offset}"
        );
    }

    log("phase: a bidder bids through every node for the rest of the test");
    let (status, bid_auction) = c
        .post(1, "/v1/auctions", &auction_body("bids", 600), Some("bids"))
        .await;
    assert_eq!(status, 201, "{bid_auction}");
    let bid_auction = bid_auction["id"].as_u64().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let bidding = tokio::spawn(bidder(shared.clone(), bid_auction, stop.clone()));

    for (skewed, name) in [(FAST, "fast"), (SLOW, "slow")] {
        log(&format!(
            "phase: the {name} node {skewed} is made leader while its auctions end: it stamps nothing and hands over"
        ));
        let auctions = create_auctions(c, name).await;
        // Watched from now on, while the leadership moves.
        tokio::join!(skewed_leader_hands_over(c, skewed), check_closes(c, &auctions));
    }

    log("phase: the bidder stops; every acknowledged bid is in the history");
    stop.store(true, Ordering::Relaxed);
    let seen = bidding.await.unwrap();
    log(&format!(
        "bidder: {} bids acknowledged, 503s by code {:?}, longest wait for one bid {} ms",
        seen.acked.len(),
        seen.refused,
        seen.longest_ms
    ));
    assert!(seen.acked.len() >= 10, "the bidder got through: {seen:?}");
    assert!(
        seen.longest_ms <= BID_STALL_MAX_MS,
        "writes were held or refused only briefly: {seen:?}"
    );
    let (_, history) = c.get(1, &format!("/v1/auctions/{bid_auction}/bids")).await;
    let stored: BTreeSet<u64> = history["bids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bid_id"].as_u64().unwrap())
        .collect();
    let lost: Vec<&u64> = seen.acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged bids missing from the history: {lost:?}");
    assert_eq!(stored.len(), seen.acked.len(), "one bid per acknowledgement");

    log("phase: with two good nodes paused no majority agrees on the time: writes get 503 clock_skew");
    let leader = c.leader().await;
    assert!(GOOD.contains(&leader));
    let paused: Vec<u64> = GOOD.into_iter().filter(|id| *id != leader).collect();
    for id in &paused {
        c.node(*id).signal("STOP");
    }
    // The paused nodes' clock samples age out (5 s); Raft still has a quorum of 3.
    let body = c
        .wait_for(
            "the leader without an agreed time",
            Duration::from_secs(15),
            || async move {
                let (status, body) = ready(c, leader).await;
                (status == 503 && body["clock_synchronized"] == json!(false)).then_some(body)
            },
        )
        .await;
    assert_eq!(body["leader"], json!(leader), "{body}");
    let resp = c
        .http
        .post(c.node(FAST).url("/v1/auctions"))
        .bearer_auth(c.token("sam").await.unwrap())
        .json(&auction_body("no agreed time", 60))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").cloned();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "clock_skew", "{answer}");
    assert_eq!(answer["error"]["clock_offset_ms"], Value::Null, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("no majority"),
        "{answer}"
    );
    assert!(retry_after.is_some(), "503 carries Retry-After");

    log("phase: the paused nodes return; writes go through again and the replicas agree");
    for id in &paused {
        c.node(*id).signal("CONT");
    }
    c.wait_for("a write after the pause", Duration::from_secs(15), || async move {
        let (status, _) = c
            .post(
                1,
                "/v1/auctions",
                &auction_body("after the pause", 60),
                Some("after-pause"),
            )
            .await;
        (status == 201).then_some(())
    })
    .await;
    c.wait_converged().await;
}
