//! `gavel-bench run` against a real 3-node cluster: the run stays within its bounds, its
//! JSON report adds up, and the cluster holds exactly the bids the report says were
//! acknowledged (counted here independently, through the API).
//!
//! The cluster runs `GAVEL_BIN`, else the `gavel` binary of this build profile
//! (`target/debug/gavel`, which `cargo test --workspace` builds with the root package's
//! tests), built here if it is missing: see `tests/common`'s `gavel_bin`.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_stays_in_bounds_and_every_acknowledged_bid_is_stored() {
    let _serial = serial().await;
    tokio::task::spawn_blocking(build_gavel_if_missing).await.unwrap();
    let c = TestCluster::start(3, "").await;
    c.wait_live_workers(1, 3).await;
    let endpoints: Vec<String> = c.nodes.values().map(|n| n.addr.clone()).collect();
    let report_path = c.dir.path().join("report.json");
    const OPS: u64 = 400;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gavel-bench"));
    cmd.args(["run", "--endpoints", &endpoints.join(",")])
        .args(["--token", ADMIN_TOKEN])
        .args([
            "--clients",
            "8",
            "--auctions",
            "5",
            "--strategy",
            "mix",
            "--route",
            "spread",
        ])
        .args([
            "--duration-secs",
            "4",
            "--ops",
            &OPS.to_string(),
            "--progress-secs",
            "0",
            "--json",
        ])
        .arg("--out")
        .arg(&report_path);
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "gavel-bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let from_file: Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report, from_file, "--out writes what --json prints");

    let n = |k: &str| report[k].as_u64().unwrap_or_else(|| panic!("no {k} in {report}"));
    assert_eq!(n("errors"), 0, "{report}");
    assert!(n("bids") + n("errors") <= OPS, "the op bound holds: {report}");
    assert!(
        report["duration_secs"].as_f64().unwrap() < 4.5,
        "the time bound holds: {report}"
    );
    assert_eq!(n("accepted") + n("rejected"), n("bids"));
    let refused: u64 = report["refusals"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(refused, n("rejected"));
    assert!(n("accepted") > 0, "{report}");
    assert_eq!(report["verified"], true);
    let lat = &report["latency_ms"];
    let ms = |k: &str| lat[k].as_f64().unwrap();
    assert!(0.0 < ms("p50") && ms("p50") <= ms("p90") && ms("p90") <= ms("p99") && ms("p99") <= ms("max"));

    // Independently: the bids the cluster holds on the bench's auctions.
    let (status, list) = c.get(1, "/v1/auctions?limit=100").await;
    assert_eq!(status, 200, "{list}");
    let auctions = list["auctions"].as_array().unwrap();
    assert_eq!(auctions.len(), 5, "{list}");
    let mut stored = 0;
    for a in auctions {
        let id = a["id"].as_u64().unwrap();
        let (status, view) = c.get(1, &format!("/v1/auctions/{id}?consistency=linearizable")).await;
        assert_eq!(status, 200, "{view}");
        stored += view["bid_count"].as_u64().unwrap();
    }
    assert_eq!(stored, n("accepted"), "stored bids vs acknowledged: {report}");
}
