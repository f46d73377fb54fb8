//! Power loss: every file a node needs at start is written durably, and a cut under heavy
//! load leaves every node able to start with every acknowledged bid.
//!
//! A real power cut keeps only what was fsynced. These tests simulate it two ways:
//! - `node_files_are_written_durably` traces a node's first start with `strace` and
//!   checks the order of system calls: `node-id` is written to a temp file, fsynced,
//!   renamed, and its directory fsynced; sled's `conf` is fsynced.
//! - `a_power_cut_under_heavy_load_leaves_every_node_able_to_start` drives 256 bidders
//!   with the longest keys and names (the largest group-commit entries), kills every
//!   node with SIGKILL, empties every file Gavel does not fsync itself (sled's blob files
//!   and its `conf`), and requires all three nodes to start and hold every acknowledged
//!   bid. Before the fix sled put pages in blob files and every node panicked at start.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{log, serial, TestCluster, DEADLINE};
use serde_json::{json, Value};

/// Concurrent bidders, as in the report that found the problem.
const BIDDERS: usize = 256;
/// The load phase runs until this many bids are acknowledged (a busy CI machine needs
/// longer than a quiet one), within the bounds below.
const ACKED_WANTED: usize = 2_000;
/// Bounds of the load phase.
const LOAD_SECS_MAX: u64 = 90;
const LOAD_REQUESTS_MAX: usize = 40_000;

#[tokio::test]
async fn a_power_cut_under_heavy_load_leaves_every_node_able_to_start() {
    let _serial = serial().await;
    let mut cluster = TestCluster::start(3, "").await;
    let leader = cluster.leader().await;
    cluster.wait_live_workers(leader, 3).await;

    log("256 bidders, 255-byte keys, 128-byte names: the largest group-commit entries");
    let mut auctions = Vec::new();
    for i in 0..BIDDERS {
        let (status, body) = cluster
            .post(
                leader,
                "/v1/auctions",
                &common::auction_body(&format!("lot {i}"), 600),
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
        auctions.push(body["id"].as_u64().unwrap());
    }
    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::<(u64, u64)>::new()));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = cluster.node(leader).url("");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(BIDDERS)
        .build()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(LOAD_SECS_MAX);
    let mut tasks = Vec::new();
    let mut names_and_tokens = Vec::new();
    for client in 0..BIDDERS {
        let mut pair = Vec::new();
        for b in 0..2 {
            let name = format!("{client:04}-{b}-{}", "n".repeat(120));
            let token = cluster.token(&name).await.expect("a bidder account");
            pair.push((name, token));
        }
        names_and_tokens.push(pair);
    }
    for (client, auction) in auctions.iter().copied().enumerate() {
        let (http, url, acked, sent) = (http.clone(), url.clone(), acked.clone(), sent.clone());
        let pair = names_and_tokens[client].clone();
        tasks.push(tokio::spawn(async move {
            // Two bidders per auction take turns, each bidding the minimum.
            let mut amount = 1000u64;
            let mut turn = 0usize;
            while Instant::now() < end
                && acked.lock().unwrap().len() < ACKED_WANTED
                && sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < LOAD_REQUESTS_MAX
            {
                let key = format!("{client:04}-{turn:08}-{}", "k".repeat(240));
                let (name, token) = &pair[turn % 2];
                let resp = http
                    .post(format!("{url}/v1/auctions/{auction}/bids"))
                    .header("Idempotency-Key", &key)
                    .bearer_auth(token)
                    .json(&json!({ "bidder": name, "amount": amount }))
                    .send()
                    .await;
                let Ok(resp) = resp else { continue };
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                if status == 201 {
                    acked
                        .lock()
                        .unwrap()
                        .insert((auction, body["bid_id"].as_u64().expect("bid_id")));
                    amount = body["min_next_bid"].as_u64().expect("min_next_bid");
                } else if let Some(min) = body["error"]["min_next_bid"].as_u64() {
                    amount = min;
                }
                turn += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    log(&format!("{} bids acknowledged", acked.len()));
    assert!(
        acked.len() >= ACKED_WANTED,
        "the load phase made too little progress in {LOAD_SECS_MAX} s"
    );

    for id in [1, 2, 3] {
        let blobs = blob_files(&cluster.node(id).data_dir);
        assert!(blobs.is_empty(), "node {id} has sled blob files: {blobs:?}");
    }

    log("power cut: SIGKILL every node, then empty every file Gavel does not fsync itself");
    for id in [1, 2, 3] {
        cluster.nodes.get_mut(&id).unwrap().kill();
    }
    for id in [1, 2, 3] {
        let sled = cluster.node(id).data_dir.join("sled");
        for file in blob_files(&cluster.node(id).data_dir)
            .into_iter()
            .chain([sled.join("conf")])
        {
            std::fs::File::create(&file).unwrap();
        }
    }

    log("every node starts again and holds every acknowledged bid");
    for id in [1, 2, 3] {
        cluster.restart(id);
    }
    for id in [1, 2, 3] {
        cluster.wait_ready(id).await;
    }
    cluster.wait_converged().await;
    let mut by_auction: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (auction, bid) in &acked {
        by_auction.entry(*auction).or_default().insert(*bid);
    }
    for id in [1, 2, 3] {
        for (auction, bids) in &by_auction {
            let (status, body) = cluster
                .get(id, &format!("/v1/auctions/{auction}/bids?consistency=stale"))
                .await;
            assert_eq!(status, 200, "{body}");
            let stored: BTreeSet<u64> = body["bids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["bid_id"].as_u64().unwrap())
                .collect();
            let missing: Vec<_> = bids.difference(&stored).collect();
            assert!(
                missing.is_empty(),
                "node {id}, auction {auction}: acknowledged bids missing: {missing:?}"
            );
        }
    }
}

fn blob_files(data_dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(data_dir.join("sled").join("blobs"))
        .map(|it| it.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// One traced system call: the process, the call's name, its text and its result.
struct Call {
    pid: String,
    name: String,
    text: String,
    result: String,
}

fn parse_trace(text: &str) -> Vec<Call> {
    text.lines()
        .filter_map(|line| {
            let (pid, rest) = line.split_once(' ')?;
            let name = rest.split('(').next()?.trim().to_string();
            let result = rest.rsplit_once(" = ")?.1.split_whitespace().next()?.to_string();
            Some(Call {
                pid: pid.to_string(),
                name,
                text: rest.to_string(),
                result,
            })
        })
        .collect()
}

/// Index of the first call at or after `from` matching `pred`.
fn find(calls: &[Call], from: usize, pred: impl Fn(&Call) -> bool) -> Option<usize> {
    calls.iter().skip(from).position(pred).map(|i| i + from)
}

/// Index of the `fsync`/`fdatasync` of the file opened at `open`, in the same process.
fn fsync_of(calls: &[Call], open: usize) -> Option<usize> {
    let fd = &calls[open].result;
    let pid = &calls[open].pid;
    find(calls, open + 1, |c| {
        &c.pid == pid && (c.name == "fsync" || c.name == "fdatasync") && c.text.contains(&format!("({fd})"))
    })
}

fn opens(path: &Path) -> impl Fn(&Call) -> bool + '_ {
    move |c: &Call| c.name == "openat" && c.text.contains(&format!("\"{}\"", path.display()))
}

#[tokio::test]
async fn node_files_are_written_durably() {
    if Command::new("strace").arg("-V").output().is_err() {
        panic!("this test needs strace (apt-get install strace)");
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh").join("data");
    let trace = dir.path().join("trace.txt");
    let port = common::free_port();
    let udp = common::free_udp_port();
    log("trace a node's first start: how node-id and sled's files reach the disk");
    let mut strace = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=openat,fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat",
            "-o",
        ])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_gavel"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--udp",
            &format!("127.0.0.1:{udp}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let ready = format!("http://127.0.0.1:{port}/ready");
    loop {
        let ok = reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "traced node never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stop the traced node (strace's child) by its PID; strace exits with it.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", strace.id())).unwrap();
    let gavel_pid = children
        .split_whitespace()
        .next()
        .expect("strace has a child")
        .to_string();
    Command::new("kill").args(["-TERM", &gavel_pid]).status().unwrap();
    let status = strace.wait().unwrap();
    assert!(status.success(), "traced node exited with {status}");

    let calls = parse_trace(&std::fs::read_to_string(&trace).unwrap());
    let node_id = data.join("node-id");
    let tmp = data.join("node-id.tmp");
    let open = find(&calls, 0, opens(&tmp)).expect("node-id is written to node-id.tmp first");
    let synced = fsync_of(&calls, open).expect("node-id.tmp is fsynced");
    let renamed = find(&calls, 0, |c| {
        c.name.starts_with("rename")
            && c.text.contains(&format!("\"{}\"", tmp.display()))
            && c.text.contains(&format!("\"{}\"", node_id.display()))
    })
    .expect("node-id.tmp is renamed to node-id");
    assert!(synced < renamed, "node-id.tmp must be fsynced before the rename");
    let dir_open = find(&calls, renamed, opens(&data)).expect("the data dir is opened after the rename");
    fsync_of(&calls, dir_open).expect("the data dir is fsynced after the rename");

    log("the data dir's own entry, and sled's conf, are durable too");
    let made = find(&calls, 0, |c| {
        c.name.starts_with("mkdir") && c.text.contains(&format!("\"{}\"", data.display()))
    })
    .expect("the data dir is created");
    let parent_open = find(&calls, made, opens(data.parent().unwrap())).expect("its parent is opened");
    fsync_of(&calls, parent_open).expect("its parent is fsynced");
    let conf = data.join("sled").join("conf");
    let conf_synced = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| opens(&conf)(c))
        .any(|(i, _)| fsync_of(&calls, i).is_some());
    assert!(conf_synced, "sled's conf is fsynced");
}

/// A data dir whose log has sled blob files, as an older Gavel (sled's default 512 KiB
/// segment) wrote under heavy load, with every blob file emptied as a power cut leaves
/// it.
async fn data_dir_with_emptied_blobs(dir: &Path) {
    use gavel_storage::{Command as Cmd, Entry, LogStore, LogStoreOptions, Op};
    use openraft::EntryPayload;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("node-id"), "1\n").unwrap();
    let store = LogStore::open(
        dir.join("sled"),
        LogStoreOptions {
            segment_size_bytes: 512 * 1024,
            ..Default::default()
        },
    )
    .unwrap();
    for start in (1..=200u64).step_by(8) {
        let batch: Vec<Entry> = (start..start + 8)
            .map(|i| Entry {
                log_id: gavel_storage::log_id(1, 1, i),
                payload: EntryPayload::Normal(Cmd::new(
                    i,
                    Op::PlaceBid {
                        auction_id: 1,
                        bidder: format!("{i:06}{}", "b".repeat(64 * 1024)),
                        amount: Some(i),
                        max_amount: None,
                    },
                )),
            })
            .collect();
        store.append_entries(batch).await.unwrap();
    }
    drop(store);
    let blobs = blob_files(dir);
    assert!(!blobs.is_empty(), "the old segment size made blob files");
    for blob in blobs {
        std::fs::File::create(blob).unwrap();
    }
}

/// Whether sled panics opening a copy of `dir`'s log (it does in most runs; in the
/// others its recovery rolls back instead).
fn sled_panics_on(dir: &Path) -> bool {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.join("sled")).unwrap() {
        let entry = entry.unwrap();
        let to = copy.path().join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir(&to).unwrap();
            for inner in std::fs::read_dir(entry.path()).unwrap() {
                let inner = inner.unwrap();
                std::fs::copy(inner.path(), to.join(inner.file_name())).unwrap();
            }
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    let opened = gavel_storage::LogStore::open(copy.path(), Default::default()).and_then(|s| s.verify());
    matches!(opened, Err(gavel_storage::Error::Unopenable { .. }))
}

#[tokio::test]
async fn a_log_sled_cannot_open_is_a_clear_error_not_an_abort() {
    let tmp = tempfile::tempdir().unwrap();
    let mut data = tmp.path().join("data-0");
    for attempt in 1..=6 {
        data_dir_with_emptied_blobs(&data).await;
        if sled_panics_on(&data) {
            break;
        }
        assert!(attempt < 6, "sled never panicked on an emptied blob in 6 attempts");
        data = tmp.path().join(format!("data-{attempt}"));
    }

    log("gavel log verify names the data dir and the way out, and exits 1");
    let out = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["log", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("the log in {} cannot be opened", data.display())),
        "{err}"
    );
    assert!(err.contains("Recovering a node from its peers"), "{err}");
    assert!(!err.contains("panicked at"), "no raw panic message: {err}");

    log("gavel serve refuses to start with the same message");
    let out = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--udp", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "exits, not aborts: {:?}",
        out.status
    );
    assert!(
        err.contains(&format!("the log in {} cannot be opened", data.display())),
        "{err}"
    );
    assert!(err.contains("Recovering a node from its peers"), "{err}");
}

#[tokio::test]
async fn a_data_dir_whose_log_vanished_is_not_taken_for_a_new_node() {
    let _serial = serial().await;
    let mut c = TestCluster::start(1, common::TEST_RAFT).await;
    let data = c.node(1).data_dir.clone();
    c.wait_for("the node to mark its data dir as a Raft member's", DEADLINE, || async {
        data.join("raft-started").exists().then_some(())
    })
    .await;
    log("the log and snapshots vanish (as after sled rolled its recovery back to nothing)");
    c.nodes.get_mut(&1).unwrap().kill();
    std::fs::remove_dir_all(data.join("sled")).unwrap();
    std::fs::remove_dir_all(data.join("snapshots")).unwrap();
    c.restart(1);
    let status = c.nodes.get_mut(&1).unwrap().terminate_or_status();
    assert!(!status.success(), "the node must refuse, not bootstrap a new cluster");
    let text = std::fs::read_to_string(&c.node(1).log_path).unwrap();
    assert!(text.contains("its state was lost"), "{}", c.node(1).log_tail());
}
