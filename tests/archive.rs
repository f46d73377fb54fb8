//! The archive on real nodes: closed auctions leave memory for the archive files, every
//! read still answers for them (`"archived": true`), nodes that catch up through a
//! snapshot fetch the archive and serve it too, a restart keeps it, and the offline tool
//! verifies it while the node runs.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{json, Value};

/// Archive one second after the close; keep no log behind a snapshot, so a new node
/// must catch up through the snapshot (and fetch the archive).
fn config() -> String {
    format!("archive_after_secs = 1\n{TEST_RAFT}keep_behind_snapshot_entries = 0\n")
}

fn gavel(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(args)
        .output()
        .expect("gavel runs")
}

#[tokio::test]
async fn closed_auctions_move_to_the_archive_and_every_node_still_serves_them() {
    let _serial = serial().await;
    let mut c = TestCluster::start(1, &config()).await;

    log("phase: auctions of two formats close with bids, one stays open");
    let mut ids = Vec::new();
    for i in 0..6u64 {
        let body = if i % 2 == 0 {
            auction_body(&format!("lot {i}"), 2)
        } else {
            json!({"seller": "sam", "title": format!("tender {i}"), "format": "sealed_first_price",
                   "starting_price": 100, "duration_secs": 2})
        };
        let (status, a) = c.post(1, "/v1/auctions", &body, None).await;
        assert_eq!(status, 201, "{a}");
        ids.push(a["id"].as_u64().unwrap());
    }
    let (status, open) = c.post(1, "/v1/auctions", &auction_body("still open", 600), None).await;
    assert_eq!(status, 201);
    let open_id = open["id"].as_u64().unwrap();
    for (n, id) in ids.iter().enumerate() {
        for (k, bidder) in ["ann", "bob"].iter().enumerate() {
            let amount = 1_000 + 100 * (n as u64 + k as u64);
            let (status, b) = c
                .post(
                    1,
                    &format!("/v1/auctions/{id}/bids"),
                    &json!({"bidder": bidder, "amount": amount}),
                    None,
                )
                .await;
            assert_eq!(status, 201, "{b}");
        }
    }

    log("phase: each one is archived a second after its close, and reads the same");
    let mut before: BTreeMap<u64, (Value, Value)> = BTreeMap::new();
    for id in &ids {
        let (view, bids) = c
            .wait_for("the close", DEADLINE, || async {
                let (_, v) = c.get(1, &format!("/v1/auctions/{id}")).await;
                if v["status"] != "closed" {
                    return None;
                }
                let (_, b) = c.get(1, &format!("/v1/auctions/{id}/bids")).await;
                Some((v, b))
            })
            .await;
        before.insert(*id, (view, bids));
    }
    for id in &ids {
        let view = c
            .wait_for("the archive", DEADLINE, || async {
                let (_, v) = c.get(1, &format!("/v1/auctions/{id}")).await;
                (v["archived"] == true).then_some(v)
            })
            .await;
        let (old_view, old_bids) = &before[id];
        assert_eq!(view["result"], old_view["result"], "auction {id}");
        assert_eq!(view["bid_count"], old_view["bid_count"]);
        let (status, bids) = c.get(1, &format!("/v1/auctions/{id}/bids")).await;
        assert_eq!(status, 200);
        assert_eq!(&bids["bids"], &old_bids["bids"], "auction {id}: the same history");
        assert_eq!(bids["bids"].as_array().unwrap().len(), 2);
    }
    let (_, open_view) = c.get(1, &format!("/v1/auctions/{open_id}")).await;
    assert_eq!(open_view["archived"], false);
    assert_eq!(c.metric(1, "gavel_archive_auctions").await, ids.len() as u64);

    log("phase: results, listings by archived, and a bid on an archived auction");
    let ann = c.token("ann").await.unwrap();
    let resp = c
        .http
        .get(c.node(1).url(&format!("/v1/auctions/{}/result", ids[0])))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let result: Value = resp.json().await.unwrap();
    assert_eq!(result["result"], "lost", "bob outbid ann: {result}");
    let (_, page) = c.get(1, "/v1/auctions?archived=true&limit=500").await;
    let listed: Vec<u64> = page["auctions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, ids);
    let (_, page) = c.get(1, "/v1/auctions?archived=false").await;
    let listed: Vec<u64> = page["auctions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, vec![open_id]);
    let (_, page) = c.get(1, "/v1/auctions?limit=3").await;
    assert_eq!(page["auctions"].as_array().unwrap().len(), 3);
    assert_eq!(page["next_after"], ids[2], "pages run across the archive: {page}");
    let (status, refused) = c
        .post(
            1,
            &format!("/v1/auctions/{}/bids", ids[1]),
            &json!({"bidder": "ann", "amount": 99_999}),
            None,
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("auction_closed"))
    );
    let resp = c
        .http
        .get(c.node(1).url(&format!("/v1/auctions/{}/events", ids[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        "",
        "an archived auction's stream is over at once"
    );

    log("phase: a snapshot purges the log; nodes 2 and 3 join and fetch the archive");
    let resp = c.admin(reqwest::Method::POST, 1, "/v1/admin/snapshot").await;
    assert_eq!(resp.status(), 200);
    let snap: Value = resp.json().await.unwrap();
    let snap_index = snap["index"].as_u64().unwrap();
    c.wait_for("the log purged behind the snapshot", DEADLINE, || async {
        (c.cluster(1).await["purged_index"].as_u64() >= Some(snap_index)).then_some(())
    })
    .await;
    c.add_node(2, Some(1), SECRET);
    c.add_node(3, Some(1), SECRET);
    let joined = tokio::time::timeout(DEADLINE, c.wait_voters(1, 3)).await;
    assert!(
        joined.is_ok(),
        "nodes 2 and 3 did not join; node 2:\n{}",
        c.node(2).log_tail()
    );
    c.wait_converged().await;
    for node in [2, 3] {
        assert!(
            c.cluster(node).await["snapshot_index"].as_u64() >= Some(snap_index),
            "node {node} caught up through the snapshot"
        );
        for id in &ids {
            let (status, v) = c.get(node, &format!("/v1/auctions/{id}?consistency=stale")).await;
            assert_eq!(
                (status, &v["archived"]),
                (200, &json!(true)),
                "node {node}, auction {id}: {v}"
            );
            let (_, bids) = c.get(node, &format!("/v1/auctions/{id}/bids?consistency=stale")).await;
            assert_eq!(&bids["bids"], &before[id].1["bids"]);
        }
        assert_eq!(c.metric(node, "gavel_archive_auctions").await, ids.len() as u64);
    }

    log("phase: the offline tool verifies a running node's archive and dumps it");
    let dir = c.node(2).data_dir.to_str().unwrap().to_string();
    let out = gavel(&["archive", "verify", "--data-dir", &dir, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], ids.len());
    let out = gavel(&["archive", "dump", "--data-dir", &dir, "--json", "--full"]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["auction_id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(lines[0]["bids"].as_array().unwrap().len(), 2);

    log("phase: a node killed and restarted still serves the archive");
    c.nodes.get_mut(&2).unwrap().kill();
    c.restart(2);
    c.wait_ready(2).await;
    for id in &ids {
        let (status, v) = c.get(2, &format!("/v1/auctions/{id}")).await;
        assert_eq!((status, &v["archived"]), (200, &json!(true)));
    }
    c.wait_converged().await;

    log("phase: damage to a sealed record is found by the tool, which exits 1");
    let seg = std::fs::read_dir(c.node(3).data_dir.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    c.nodes.get_mut(&3).unwrap().kill();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[30] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let dir = c.node(3).data_dir.to_str().unwrap().to_string();
    let out = gavel(&["archive", "verify", "--data-dir", &dir]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"));
}
