//! What a newcomer trips over first: a second node on a data dir in use, offline tools on
//! a fresh node, JSON that looks like the API's, log files without colour codes, and
//! answers that say nothing misleading.

mod common;

use common::*;
use serde_json::{json, Value};

fn gavel(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn first_steps_get_clear_answers() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    let dir = data_dir_of(c.node(1)).to_str().unwrap().to_string();

    log("phase: a one-node cluster stays ready while idle, past an election timeout");
    // Idleness is the condition under test: nothing else happens in these 2 s.
    tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
    let (status, ready) = c.get(1, "/ready").await;
    assert_eq!(status, 200, "{ready}");

    log("phase: a second node on a data dir in use says so, once, and exits non-zero");
    let out = gavel(&[
        "serve",
        "--data-dir",
        &dir,
        "--listen",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.1:0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is in use by another running gavel"), "{err}");
    assert_eq!(err.matches("could not acquire lock").count(), 0, "{err}");

    log("phase: snapshot inspect on a node that has no snapshot yet says why and what to do");
    let out = gavel(&["snapshot", "inspect", &dir]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("POST /v1/admin/snapshot"),
        "{err}"
    );

    log("phase: a bid on an auction without a reserve does not claim a met reserve");
    let (status, a) = c.post(1, "/v1/auctions", &auction_body("lamp", 600), None).await;
    assert_eq!(status, 201, "{a}");
    let (status, bid) = c
        .post(
            1,
            "/v1/auctions/1/bids",
            &json!({"bidder": "ann", "amount": 1000}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{bid}");
    assert_eq!(bid["reserve_met"], Value::Null, "{bid}");

    log("phase: a node whose log goes to a file writes no terminal colour codes");
    let other = tempfile::tempdir().unwrap();
    let log_file = other.path().join("node.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args([
            "serve",
            "--log-format",
            "pretty",
            "--listen",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(other.path().join("data"))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(other.path().join("out")).unwrap())
        .stderr(std::fs::File::create(&log_file).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while !std::fs::read_to_string(&log_file)
        .unwrap_or_default()
        .contains("serving HTTP API")
    {
        assert!(std::time::Instant::now() < deadline, "the node did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log_file).unwrap();
    assert!(!text.contains('\u{1b}'), "ANSI escapes in a log file: {text}");

    log("phase: log dump --json writes RFC 3339 times and the operation as JSON");
    let mut c = c;
    assert!(c.nodes.get_mut(&1).unwrap().terminate().success());
    let out = gavel(&["log", "dump", "--data-dir", &dir, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let bid = lines
        .iter()
        .find(|l| l["kind"] == "place_bid")
        .expect("the bid is in the log");
    assert!(
        bid["ts"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')),
        "{bid}"
    );
    assert_eq!(bid["op"]["PlaceBid"]["amount"], 1000, "{bid}");
}
