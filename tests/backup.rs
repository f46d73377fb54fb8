//! Backup and restore, like `etcdutl snapshot restore`: a consistent online backup of a
//! live 3-node cluster under load (`GET /v1/admin/backup`, archive included), restored
//! with `gavel snapshot restore` into a fresh cluster elsewhere on the machine. The
//! restored state has the backup's state hash at its index, and holds every bid
//! acknowledged before the backup began, archived auctions included; two new nodes then
//! join the restored one and catch up.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn config() -> String {
    format!("archive_after_secs = 1\n{TEST_RAFT}")
}

fn gavel(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(args)
        .output()
        .expect("gavel runs")
}

/// `(auction, bid id)` of every acknowledged bid.
type Acked = Arc<Mutex<Vec<(u64, u64)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_into_a_new_cluster_with_every_acknowledged_bid() {
    let _serial = serial().await;
    let c = TestCluster::start(3, &config()).await;
    let (ann, bob) = (c.token("ann").await.unwrap(), c.token("bob").await.unwrap());

    log("phase: short auctions that close and are archived, long ones that keep taking bids");
    let mut short = Vec::new();
    for i in 0..4 {
        let (status, a) = c
            .post(1, "/v1/auctions", &auction_body(&format!("short {i}"), 1), None)
            .await;
        assert_eq!(status, 201, "{a}");
        short.push(a["id"].as_u64().unwrap());
    }
    let mut long = Vec::new();
    for i in 0..3 {
        let (status, a) = c
            .post(1, "/v1/auctions", &auction_body(&format!("long {i}"), 600), None)
            .await;
        assert_eq!(status, 201, "{a}");
        long.push(a["id"].as_u64().unwrap());
    }
    let acked: Acked = Arc::default();
    for (k, id) in short.iter().enumerate() {
        let (status, b) = c
            .post(
                2,
                &format!("/v1/auctions/{id}/bids"),
                &json!({"bidder": "ann", "amount": 1000 + k as u64}),
                None,
            )
            .await;
        assert_eq!(status, 201, "{b}");
        acked.lock().unwrap().push((*id, b["bid_id"].as_u64().unwrap()));
    }

    log("phase: bidders bid through every node while the backup is taken");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for (w, token) in [ann.clone(), bob.clone()].into_iter().enumerate() {
        let (http, urls, acked, stop, long) = (
            c.http.clone(),
            c.nodes.values().map(|n| n.url("")).collect::<Vec<_>>(),
            acked.clone(),
            stop.clone(),
            long.clone(),
        );
        load.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut i = 0u64;
            // Bounded: stops when told, or after 2 000 bids or 60 s.
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && i < 2_000
                && started.elapsed() < Duration::from_secs(60)
            {
                let id = long[(i as usize) % long.len()];
                let url = &urls[(i as usize + w) % urls.len()];
                let resp = http
                    .post(format!("{url}/v1/auctions/{id}/bids"))
                    .bearer_auth(&token)
                    .json(&json!({"max_amount": 1_000_000 + 1_000 * i + w as u64}))
                    .send()
                    .await;
                if let Ok(resp) = resp {
                    if resp.status() == 201 {
                        let b: Value = resp.json().await.unwrap();
                        acked.lock().unwrap().push((id, b["bid_id"].as_u64().unwrap()));
                    }
                }
                i += 1;
            }
        }));
    }
    c.wait_for("the short auctions archived", DEADLINE, || async {
        (c.metric(1, "gavel_archive_auctions").await >= short.len() as u64).then_some(())
    })
    .await;
    let before_backup: Vec<(u64, u64)> = acked.lock().unwrap().clone();
    let resp = c
        .http
        .get(c.node(2).url("/v1/admin/backup"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let header = |name: &str| resp.headers()[name].to_str().unwrap().to_string();
    let (index, state_hash, archived) = (
        header("gavel-backup-index").parse::<u64>().unwrap(),
        header("gavel-backup-state-hash"),
        header("gavel-backup-archived").parse::<u64>().unwrap(),
    );
    let file = c.dir.path().join("cluster.bak");
    std::fs::write(&file, resp.bytes().await.unwrap()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert!(
        archived >= short.len() as u64,
        "the backup carries the archive: {archived}"
    );
    log(&format!(
        "backup at index {index}: {} bids acknowledged before it, {} in all, {archived} archived auctions",
        before_backup.len(),
        acked.lock().unwrap().len()
    ));

    log("phase: the backup verifies offline and names the same index and state hash");
    let file_arg = file.to_str().unwrap();
    let out = gavel(&["snapshot", "verify", file_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = gavel(&["snapshot", "inspect", file_arg, "--json"]);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["index"].as_u64(), report["state_hash"].as_str()),
        (Some(index), Some(state_hash.as_str()))
    );
    let mut damaged = std::fs::read(&file).unwrap();
    let at = damaged.len() - 100;
    damaged[at] ^= 1;
    let damaged_file = c.dir.path().join("damaged.bak");
    std::fs::write(&damaged_file, damaged).unwrap();
    let out = gavel(&["snapshot", "verify", damaged_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a damaged backup is refused");

    log("phase: restore into a fresh one-node cluster and start it");
    let mut r = TestCluster::new(&config());
    r.adopt_tokens(&c);
    let mut restored = None;
    r.add_node_with(1, None, SECRET, |node| {
        let out = gavel(&[
            "snapshot",
            "restore",
            file_arg,
            "--data-dir",
            node.data_dir.to_str().unwrap(),
            "--id",
            "1",
            "--advertise",
            &node.addr,
            "--json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        restored = Some(serde_json::from_slice::<Value>(&out.stdout).unwrap());
    });
    let restored = restored.unwrap();
    assert_eq!(
        (restored["index"].as_u64(), restored["state_hash"].as_str()),
        (Some(index), Some(state_hash.as_str())),
        "the restored state is the backup's"
    );
    r.wait_ready(1).await;
    let info = r.cluster(1).await;
    assert_eq!(info["members"].as_array().unwrap().len(), 1, "{info}");
    assert!(info["applied_index"].as_u64() >= Some(index));

    log("phase: every bid acknowledged before the backup is in the restored cluster");
    let wanted: BTreeSet<(u64, u64)> = before_backup.iter().copied().collect();
    let mut found = BTreeSet::new();
    for id in short.iter().chain(&long) {
        let (status, bids) = r.get(1, &format!("/v1/auctions/{id}/bids")).await;
        assert_eq!(status, 200, "{bids}");
        for b in bids["bids"].as_array().unwrap() {
            found.insert((*id, b["bid_id"].as_u64().unwrap()));
        }
    }
    let missing: Vec<_> = wanted.difference(&found).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup but not restored: {missing:?}"
    );
    for id in &short {
        let (_, v) = r.get(1, &format!("/v1/auctions/{id}")).await;
        assert_eq!(v["archived"], true, "{v}");
    }

    log("phase: the restored cluster takes writes, and two new nodes join and catch up");
    let (status, b) = r
        .post(
            1,
            &format!("/v1/auctions/{}/bids", long[0]),
            &json!({"bidder": "bob", "max_amount": 9_000_000}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{b}");
    r.add_node(2, Some(1), SECRET);
    r.add_node(3, Some(1), SECRET);
    r.wait_voters(1, 3).await;
    let (_, hash) = r.wait_converged().await;
    log(&format!("restored cluster converged on state hash {hash}"));
    for node in [2, 3] {
        let (status, v) = r
            .get(node, &format!("/v1/auctions/{}?consistency=stale", short[0]))
            .await;
        assert_eq!((status, &v["archived"]), (200, &json!(true)), "node {node}: {v}");
    }
}
