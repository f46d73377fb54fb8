//! A Jepsen-style run: concurrent bidders over many auctions through any node, retrying
//! with `Idempotency-Key`, while a scheduler injects faults (kill -9 and restart of the
//! leader, a follower or an auction's hosting worker; SIGSTOP/SIGCONT pauses; kill -9 in
//! the middle of a snapshot; network partitions isolating the leader or a follower, cut by
//! a proxy in front of each node). Every operation is recorded (invoke, ok/fail/unknown,
//! times); at the end a checker tests the invariants of DESIGN §6 against the committed
//! state of every node.
//!
//! The auctions are a mix of formats: English, sealed first- and second-price, and Dutch.
//! Every view a bidder reads of a sealed auction before its close is kept, and the
//! checker verifies that none shows a bid amount, and that each outcome is the one the
//! committed bids decide under its format's rules.
//!
//! Quick mode (the normal test run): 3 nodes, ~35 s of load. Soak mode:
//! `GAVEL_CHAOS_SECS=600 cargo test --release --test chaos -- --nocapture` (also
//! `GAVEL_CHAOS_NODES=5`, `GAVEL_CHAOS_SEED=n`); it ends with a summary.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[derive(Debug, Clone)]
enum Result_ {
    Ok(Value),
    Fail(String),
    Unknown,
}

#[derive(Debug, Clone)]
struct Op {
    auction: u64,
    /// `Some((bidder, amount))` for a bid; `None` for a linearizable read.
    bid: Option<(String, u64)>,
    invoke_ms: u64,
    complete_ms: u64,
    result: Result_,
}

#[derive(Default)]
struct Shared {
    history: Mutex<Vec<Op>>,
    /// Open auctions: id → end (ms since epoch, before extensions).
    auctions: Mutex<BTreeMap<u64, u64>>,
    all_auctions: Mutex<Vec<u64>>,
    /// Sealed auctions as bidders saw them while open (id, the view's JSON).
    sealed_views: Mutex<Vec<(u64, Value)>>,
}

/// The formats the creator mixes, in turn.
const FORMATS: [&str; 4] = ["english", "sealed_first_price", "sealed_second_price", "dutch"];

fn now_epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn parse_ms(s: &str) -> u64 {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as u64
}

/// Sends a request to random nodes until one gives a definite answer.
async fn call(
    http: &reqwest::Client,
    urls: &[String],
    rng: &mut Rng,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    (key, token): (Option<&str>, Option<&str>),
) -> Result_ {
    for attempt in 0..6 {
        let url = format!("{}{path}", urls[rng.next(urls.len() as u64) as usize]);
        let mut req = http.request(method.clone(), url).timeout(Duration::from_secs(3));
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return Result_::Ok(r.json().await.unwrap_or(Value::Null)),
            Ok(r) if r.status().is_client_error() => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                return Result_::Fail(v["error"]["code"].as_str().unwrap_or("?").to_string());
            }
            _ => tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await,
        }
    }
    Result_::Unknown
}

/// A load task's HTTP client: idle connections go before the node's keep-alive ends.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_millis(gavel_raft::network::CLIENT_POOL_IDLE_MS))
        .build()
        .unwrap()
}

/// One bidder, `bidder-{id}`, acting with its account's `token`.
async fn client(
    id: usize,
    urls: Vec<String>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    t0: Instant,
    seed: u64,
    token: String,
) {
    let http = http_client();
    let mut rng = Rng(seed ^ (id as u64 + 1).wrapping_mul(0x9E3779B97F4A7C15));
    let bidder = format!("bidder-{id}");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let open: Vec<u64> = {
            let now = now_epoch_ms();
            shared
                .auctions
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, end)| **end > now + 200)
                .map(|(id, _)| *id)
                .collect()
        };
        if open.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let auction = open[rng.next(open.len() as u64) as usize];
        let invoke_ms = t0.elapsed().as_millis() as u64;
        if rng.next(5) == 0 {
            let result = call(
                &http,
                &urls,
                &mut rng,
                reqwest::Method::GET,
                &format!("/v1/auctions/{auction}"),
                None,
                (None, None),
            )
            .await;
            let complete_ms = t0.elapsed().as_millis() as u64;
            shared.history.lock().unwrap().push(Op {
                auction,
                bid: None,
                invoke_ms,
                complete_ms,
                result,
            });
            continue;
        }
        let view = call(
            &http,
            &urls,
            &mut rng,
            reqwest::Method::GET,
            &format!("/v1/auctions/{auction}?consistency=stale"),
            None,
            (None, None),
        )
        .await;
        let Result_::Ok(view) = view else { continue };
        let sealed = view["sealed"] == json!(true);
        if sealed && view["status"] != json!("closed") {
            shared.sealed_views.lock().unwrap().push((auction, view.clone()));
        }
        if view["highest_bid"]["bidder"] == json!(bidder) {
            continue;
        }
        let Some(min) = view["min_next_bid"].as_u64() else {
            continue;
        };
        // Sealed amounts are spread wide (and unlike any other number in a view), so
        // that one showing before the close would be noticed.
        let amount = if sealed {
            100_000 + rng.next(100_000)
        } else {
            min + rng.next(3) * 10
        };
        n += 1;
        let key = format!("c{id}-{n}");
        let invoke_ms = t0.elapsed().as_millis() as u64;
        let body = json!({ "bidder": bidder, "amount": amount });
        let result = call(
            &http,
            &urls,
            &mut rng,
            reqwest::Method::POST,
            &format!("/v1/auctions/{auction}/bids"),
            Some(&body),
            (Some(&key), Some(&token)),
        )
        .await;
        let complete_ms = t0.elapsed().as_millis() as u64;
        shared.history.lock().unwrap().push(Op {
            auction,
            bid: Some((bidder.clone(), amount)),
            invoke_ms,
            complete_ms,
            result,
        });
    }
}

/// Keeps `target` auctions open, creating new ones as old ones end.
async fn creator(
    urls: Vec<String>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    target: usize,
    seed: u64,
    token: String,
) {
    let http = http_client();
    let mut rng = Rng(seed ^ 0xC0FFEE);
    while !stop.load(Ordering::Relaxed) {
        let open = {
            shared
                .auctions
                .lock()
                .unwrap()
                .values()
                .filter(|e| **e > now_epoch_ms() + 3000)
                .count()
        };
        if open < target {
            let secs = 8 + rng.next(12);
            let format = FORMATS[rng.next(FORMATS.len() as u64) as usize];
            let mut body = match format {
                "english" => {
                    json!({ "seller": "sam", "title": "lot", "starting_price": 100, "increment": 10, "duration_secs": secs })
                }
                // From 100 down by 5 a second to 50: open for 11 s at most.
                "dutch" => json!({ "seller": "sam", "title": "lot", "format": format, "starting_price": 100,
                                   "decrement": 5, "decrement_every_secs": 1, "floor_price": 50 }),
                sealed => {
                    json!({ "seller": "sam", "title": "lot", "format": sealed, "starting_price": 100, "duration_secs": secs })
                }
            };
            if format == "english" && rng.next(2) == 0 {
                body["soft_close"] = json!({"window_secs": 2, "extend_secs": 2, "max_extensions": 3});
            }
            let key = format!("create-{}", rng.next(u64::MAX));
            if let Result_::Ok(a) = call(
                &http,
                &urls,
                &mut rng,
                reqwest::Method::POST,
                "/v1/auctions",
                Some(&body),
                (Some(&key), Some(&token)),
            )
            .await
            {
                let (id, end) = (a["id"].as_u64().unwrap(), parse_ms(a["ends_at"].as_str().unwrap()));
                shared.auctions.lock().unwrap().insert(id, end);
                shared.all_auctions.lock().unwrap().push(id);
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn restore(c: &mut TestCluster, id: u64) {
    if !c.node(id).is_running() {
        c.restart(id);
    }
    c.wait_ready(id).await;
}

/// Injects one fault and heals it; returns its kind.
async fn fault(c: &mut TestCluster, rng: &mut Rng, shared: &Shared) -> &'static str {
    let leader = c.leader().await;
    let others: Vec<u64> = c.running().into_iter().filter(|id| *id != leader).collect();
    let pause = Duration::from_millis(500 + rng.next(2000));
    match rng.next(7) {
        5 | 6 => {
            let (victim, kind) = if rng.next(2) == 0 {
                (leader, "partition_leader")
            } else {
                (others[rng.next(others.len() as u64) as usize], "partition_follower")
            };
            let rest: Vec<u64> = c.nodes.keys().copied().filter(|id| *id != victim).collect();
            let proxies = c.proxies.clone().expect("the chaos cluster is proxied");
            proxies.isolate(victim, &rest);
            tokio::time::sleep(pause + Duration::from_millis(1000)).await;
            let majority_leader = c.cluster(rest[0]).await["leader"]["id"].as_u64();
            proxies.heal();
            c.wait_ready(victim).await;
            if victim == leader && majority_leader.is_some_and(|l| l != leader) {
                "partition_leader (replaced)"
            } else {
                kind
            }
        }
        0 => {
            c.nodes.get_mut(&leader).unwrap().kill();
            tokio::time::sleep(pause).await;
            restore(c, leader).await;
            "kill_leader"
        }
        1 => {
            let f = others[rng.next(others.len() as u64) as usize];
            c.nodes.get_mut(&f).unwrap().kill();
            tokio::time::sleep(pause).await;
            restore(c, f).await;
            "kill_follower"
        }
        2 => {
            let open: Vec<u64> = shared.auctions.lock().unwrap().keys().copied().collect();
            let id = open.get(rng.next(open.len() as u64) as usize).copied().unwrap_or(1);
            let worker = c.get(leader, &format!("/v1/auctions/{id}?consistency=stale")).await.1["worker"]
                .as_u64()
                .unwrap_or(leader);
            let worker = if c.node(worker).is_running() { worker } else { leader };
            c.nodes.get_mut(&worker).unwrap().kill();
            tokio::time::sleep(pause).await;
            restore(c, worker).await;
            "kill_hosting_worker"
        }
        3 => {
            let n = c.running()[rng.next(c.running().len() as u64) as usize];
            c.node(n).signal("STOP");
            tokio::time::sleep(pause).await;
            c.node(n).signal("CONT");
            c.wait_ready(n).await;
            "pause"
        }
        _ => {
            let n = c.running()[rng.next(c.running().len() as u64) as usize];
            let req = c
                .http
                .post(c.node(n).url("/v1/admin/snapshot"))
                .bearer_auth(SECRET)
                .send();
            let _ = tokio::time::timeout(Duration::from_millis(rng.next(20)), req).await;
            c.nodes.get_mut(&n).unwrap().kill();
            tokio::time::sleep(pause).await;
            restore(c, n).await;
            "kill_during_snapshot"
        }
    }
}

#[derive(Default)]
struct Verdicts(BTreeMap<&'static str, Vec<String>>);
impl Verdicts {
    fn check(&mut self, invariant: &'static str, ok: bool, why: impl FnOnce() -> String) {
        let v = self.0.entry(invariant).or_default();
        if !ok {
            v.push(why());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run_keeps_every_invariant() {
    let _serial = serial().await;
    let secs: u64 = std::env::var("GAVEL_CHAOS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(35);
    let nodes: u64 = std::env::var("GAVEL_CHAOS_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("GAVEL_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| now_epoch_ms() | 1);
    log(&format!("phase: chaos run of {secs} s on {nodes} nodes, seed {seed}"));
    let config = format!(
        "worker_grace_ms = 1500\n{TEST_RAFT}snapshot_every_entries = 500\nkeep_behind_snapshot_entries = 100\n"
    );
    let mut c = TestCluster::start_with(nodes, &config, true).await;
    let urls: Vec<String> = c.nodes.values().map(|n| n.url("")).collect();
    let shared = Arc::new(Shared::default());
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let seller = c.token("sam").await.expect("the seller's account");
    let mut tasks = vec![tokio::spawn(creator(
        urls.clone(),
        shared.clone(),
        stop.clone(),
        8,
        seed,
        seller,
    ))];
    for i in 0..6 {
        let token = c.token(&format!("bidder-{i}")).await.expect("a bidder's account");
        tasks.push(tokio::spawn(client(
            i,
            urls.clone(),
            shared.clone(),
            stop.clone(),
            t0,
            seed,
            token,
        )));
    }

    let mut rng = Rng(seed);
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let end = t0 + Duration::from_secs(secs);
    while Instant::now() + Duration::from_secs(6) < end {
        tokio::time::sleep(Duration::from_millis(1500 + rng.next(2500))).await;
        let kind = fault(&mut c, &mut rng, &shared).await;
        *faults.entry(kind).or_default() += 1;
        if secs > 60 {
            log(&format!(
                "{:>4} s: {kind}; {} ops so far",
                t0.elapsed().as_secs(),
                shared.history.lock().unwrap().len()
            ));
        }
    }
    tokio::time::sleep(end.saturating_duration_since(Instant::now())).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    log("phase: heal, let every auction close, wait for the replicas to converge");
    for id in c.nodes.keys().copied().collect::<Vec<_>>() {
        restore(&mut c, id).await;
    }
    let ids: Vec<u64> = shared.all_auctions.lock().unwrap().clone();
    c.wait_for("every auction closed", Duration::from_secs(120), || async {
        for id in &ids {
            if c.get(1, &format!("/v1/auctions/{id}")).await.1["status"] != json!("closed") {
                return None;
            }
        }
        Some(())
    })
    .await;
    let (applied, hash) = c.wait_converged().await;

    log("phase: check the history against the committed state");
    let history = shared.history.lock().unwrap().clone();
    let mut v = Verdicts::default();
    v.check(
        "4. replicas agree (state hash at the same applied index)",
        true,
        String::new,
    );
    let mut committed: BTreeMap<u64, (Value, Vec<Value>)> = BTreeMap::new();
    for id in &ids {
        let a = c.get(1, &format!("/v1/auctions/{id}")).await.1;
        let bids = c.get(1, &format!("/v1/auctions/{id}/bids")).await.1["bids"]
            .as_array()
            .unwrap()
            .clone();
        committed.insert(*id, (a, bids));
    }
    for (id, (a, bids)) in &committed {
        let (start, end) = (
            parse_ms(a["starts_at"].as_str().unwrap()),
            parse_ms(a["ends_at"].as_str().unwrap()),
        );
        let result = &a["result"];
        let format = a["format"].as_str().unwrap_or("english");
        if format.starts_with("sealed") {
            // Each bidder's last bid stands; the highest wins (ties: the earlier bid).
            let mut ranked: Vec<&Value> = bids.iter().collect();
            ranked.sort_by_key(|b| (std::cmp::Reverse(b["amount"].as_u64()), b["bid_id"].as_u64()));
            let expected = match ranked.as_slice() {
                [] => json!({"outcome": "no_bids"}),
                [best, rest @ ..] => {
                    let price = match (format, rest.first()) {
                        ("sealed_second_price", Some(second)) => second["amount"].clone(),
                        _ => best["amount"].clone(),
                    };
                    json!({"outcome": "sold", "winner": best["bidder"], "price": price})
                }
            };
            v.check(
                "2. one outcome, decided by the committed bids",
                *result == expected,
                || format!("{format} auction {id}: {result}, expected {expected}"),
            );
            let mut bidders: Vec<&Value> = bids.iter().map(|b| &b["bidder"]).collect();
            bidders.sort_by_key(|b| b.to_string());
            let all = bidders.len();
            bidders.dedup();
            v.check(
                "2. one outcome, decided by the committed bids",
                bidders.len() == all,
                || format!("sealed auction {id} keeps two bids of one bidder"),
            );
            let amounts: Vec<u64> = bids.iter().filter_map(|b| b["amount"].as_u64()).collect();
            for (seen_id, view) in shared.sealed_views.lock().unwrap().iter().filter(|(a, _)| a == id) {
                let text = view.to_string();
                v.check(
                    "8. no sealed amount visible before the close",
                    !amounts.iter().any(|x| text.contains(&x.to_string())),
                    || format!("auction {seen_id} while open: {text}"),
                );
            }
        } else {
            match bids.last() {
                None => v.check(
                    "2. one outcome, decided by the committed bids",
                    *result == json!({"outcome": "no_bids"}),
                    || format!("auction {id}: {result}"),
                ),
                Some(last) => v.check(
                    "2. one outcome, decided by the committed bids",
                    *result == json!({"outcome": "sold", "winner": last["leader_after"], "price": last["price_after"]}),
                    || format!("auction {id}: {result} vs last bid {last}"),
                ),
            }
            for b in bids {
                let at = parse_ms(b["at"].as_str().unwrap());
                v.check("3. no bid outside its window", at >= start && at < end, || {
                    format!("auction {id}: bid {b} outside [{start}, {end})")
                });
            }
            let prices: Vec<u64> = bids.iter().map(|b| b["price_after"].as_u64().unwrap()).collect();
            v.check(
                "5. the highest bid never decreases",
                prices.windows(2).all(|w| w[0] <= w[1]),
                || format!("auction {id}: {prices:?}"),
            );
        }
    }
    let (mut acked, mut failed, mut unknown) = (0u64, BTreeMap::<String, u64>::new(), 0u64);
    for op in &history {
        let (_, bids) = &committed[&op.auction];
        match (&op.bid, &op.result) {
            (Some((bidder, _)), Result_::Ok(r)) if r["sealed"] == json!(true) => {
                acked += 1;
                // A sealed bid stands unless its bidder replaced it with a later one.
                let kept = bids.iter().find(|b| b["bidder"] == json!(bidder));
                v.check(
                    "1. every acknowledged bid is committed",
                    kept.is_some_and(|b| b["bid_id"].as_u64() >= r["bid_id"].as_u64()),
                    || {
                        format!(
                            "acked sealed bid {r} by {bidder} in auction {}: kept {kept:?}",
                            op.auction
                        )
                    },
                );
            }
            (Some((bidder, amount)), Result_::Ok(r)) => {
                acked += 1;
                let found = bids.iter().find(|b| b["bid_id"] == r["bid_id"]);
                // A bid by the current leader raises its own maximum; the history records it
                // at the unchanged visible price.
                let same = |b: &&Value| {
                    b["bidder"] == json!(bidder)
                        && (b["amount"] == json!(amount)
                            || (b["leader_after"] == json!(bidder) && b["amount"] == b["price_after"]))
                };
                v.check(
                    "1. every acknowledged bid is committed",
                    found.is_some_and(|b| same(&b)),
                    || format!("acked {r} (amount {amount}) not in auction {}: {found:?}", op.auction),
                );
                if let Some(b) = found {
                    v.check(
                        "6. acknowledgements match the committed bid",
                        b["price_after"] == r["price"] && b["leader_after"] == r["leader"],
                        || format!("ack {r} vs committed {b}"),
                    );
                }
            }
            (_, Result_::Fail(code)) => *failed.entry(code.clone()).or_default() += 1,
            (_, Result_::Unknown) => unknown += 1,
            (None, Result_::Ok(_)) => {}
        }
    }
    // Linearizability per auction: a read sees every bid acknowledged before it began,
    // and never less than a read that completed before it began. Per auction: sort by
    // time, keep running maxima, binary-search (O(n log n) for long soaks).
    /// Acknowledged bids (completed at, seq) and reads (invoked at, completed at, seq seen).
    type Observed = (Vec<(u64, u64)>, Vec<(u64, u64, u64)>);
    let mut per_auction: BTreeMap<u64, Observed> = BTreeMap::new();
    for op in &history {
        let Result_::Ok(r) = &op.result else { continue };
        let entry = per_auction.entry(op.auction).or_default();
        if op.bid.is_some() {
            let bids = &committed[&op.auction].1;
            let seq = bids
                .iter()
                .find(|b| b["bid_id"] == r["bid_id"])
                .and_then(|b| b["seq"].as_u64())
                .unwrap_or(0);
            entry.0.push((op.complete_ms, seq));
        } else {
            entry
                .1
                .push((op.invoke_ms, op.complete_ms, r["seq"].as_u64().unwrap_or(0)));
        }
    }
    /// Sorted by time, with the running maximum of the value.
    fn running_max(mut points: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
        points.sort();
        let mut max = 0;
        points
            .into_iter()
            .map(|(t, v)| {
                max = max.max(v);
                (t, max)
            })
            .collect()
    }
    fn max_before(points: &[(u64, u64)], t: u64) -> u64 {
        let n = points.partition_point(|(at, _)| *at < t);
        if n == 0 {
            0
        } else {
            points[n - 1].1
        }
    }
    for (auction, (writes, reads)) in per_auction {
        let acked = running_max(writes);
        let completed_reads = running_max(reads.iter().map(|(_, done, seen)| (*done, *seen)).collect());
        for (invoked, _, seen) in &reads {
            let must = max_before(&acked, *invoked);
            v.check("7. linearizable reads (per auction)", *seen >= must, || format!("read of auction {auction} at {invoked} ms saw seq {seen}, but a bid with seq {must} was acknowledged before it began"));
            let earlier = max_before(&completed_reads, *invoked);
            v.check("7. linearizable reads (per auction)", *seen >= earlier, || {
                format!("auction {auction}: a read at {invoked} ms saw seq {seen} after an earlier read saw {earlier}")
            });
        }
    }

    println!("\n===== chaos summary (seed {seed}) =====");
    println!(
        "duration {secs} s, {nodes} nodes, {} auctions, final applied index {applied}, state hash {}",
        ids.len(),
        &hash[..16]
    );
    println!(
        "operations {}: acknowledged bids {acked}, rejected {failed:?}, unknown {unknown}, reads {}",
        history.len(),
        history.iter().filter(|o| o.bid.is_none()).count()
    );
    println!("faults injected: {faults:?}");
    let mut formats: BTreeMap<&str, u64> = BTreeMap::new();
    for (a, _) in committed.values() {
        *formats.entry(a["format"].as_str().unwrap_or("?")).or_default() += 1;
    }
    println!(
        "auctions by format: {formats:?}; sealed views read while open: {}",
        shared.sealed_views.lock().unwrap().len()
    );
    let mut all_ok = true;
    for (invariant, violations) in &v.0 {
        println!(
            "{:<60} {}",
            invariant,
            if violations.is_empty() {
                "PASS".to_string()
            } else {
                format!("FAIL ({})", violations.len())
            }
        );
        for x in violations.iter().take(5) {
            println!("    {x}");
        }
        all_ok &= violations.is_empty();
    }
    assert!(acked > 20, "the run made progress: {acked} acknowledged bids");
    assert!(formats.len() >= 3, "the run mixed formats: {formats:?}");
    assert!(faults.values().sum::<u64>() >= 3, "faults were injected: {faults:?}");
    assert!(all_ok, "an invariant was violated (seed {seed})");
}
