//! Membership changes that must never cost quorum or leave a stray node serving:
//! - a node that is not running (or an address typo) stays a learner when added, and can
//!   be removed; a one-node cluster keeps its quorum, even across a restart;
//! - a removed node stops being ready and answers clients with 503 `not_a_member`, also
//!   after a restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn member(info: &Value, id: u64) -> Option<&Value> {
    info["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"].as_u64() == Some(id))
}

#[tokio::test]
async fn adding_a_node_that_does_not_run_leaves_it_a_learner_and_keeps_quorum() {
    let _serial = serial().await;
    let config = format!("{TEST_RAFT}learner_catchup_timeout_ms = 2000\n");
    let mut c = TestCluster::start(1, &config).await;
    let nobody = format!("127.0.0.1:{}", free_port());

    log("add node 4 at an address where nothing runs: refused after the catch-up deadline");
    let started = Instant::now();
    let resp = c
        .http
        .post(c.node(1).url("/v1/cluster/nodes"))
        .bearer_auth(SECRET)
        .json(&json!({ "id": 4, "addr": nobody }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "learner_not_caught_up", "{body}");
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "it waited for the learner"
    );
    let info = c.cluster(1).await;
    let four = member(&info, 4).expect("node 4 is listed");
    assert_eq!(
        (four["voter"].clone(), four["role"].clone()),
        (json!(false), json!("learner")),
        "{info}"
    );

    log("the one-node cluster still has its quorum, also after a restart");
    let (status, _) = c.post(1, "/v1/auctions", &auction_body("lot", 600), None).await;
    assert_eq!(status, 201);
    c.nodes.get_mut(&1).unwrap().kill();
    c.restart(1);
    c.wait_ready(1).await;
    let (status, _) = c.post(1, "/v1/auctions", &auction_body("lot 2", 600), None).await;
    assert_eq!(status, 201);

    log("the unreachable learner can be removed");
    let resp = c.admin(reqwest::Method::DELETE, 1, "/v1/cluster/nodes/4").await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let info = c.cluster(1).await;
    assert!(member(&info, 4).is_none(), "{info}");
}

#[tokio::test]
async fn a_removed_node_stops_serving_clients() {
    let _serial = serial().await;
    let mut c = TestCluster::start(3, TEST_RAFT).await;
    let leader = c.leader().await;
    let victim = c.running().into_iter().find(|id| *id != leader).unwrap();
    let (status, _) = c.post(leader, "/v1/auctions", &auction_body("lot", 600), None).await;
    assert_eq!(status, 201);
    c.wait_converged().await;

    log("remove a follower; the others go on");
    let resp = c
        .admin(reqwest::Method::DELETE, leader, &format!("/v1/cluster/nodes/{victim}"))
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    c.wait_voters(leader, 2).await;

    log("the removed node is not ready and answers clients with 503 not_a_member");
    c.wait_for("the removed node to know it", DEADLINE, || async {
        let (status, body) = c.get(victim, "/ready").await;
        (status == 503 && body["member"] == json!(false)).then_some(())
    })
    .await;
    for (status, body) in [
        c.get(victim, "/v1/auctions/1").await,
        c.get(victim, "/v1/auctions/1?consistency=stale").await,
        c.post(
            victim,
            "/v1/auctions/1/bids",
            &json!({"bidder": "ann", "amount": 1000}),
            None,
        )
        .await,
    ] {
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("not_a_member")),
            "{body}"
        );
    }
    assert_eq!(c.cluster(victim).await["member"], json!(false));
    let text = std::fs::read_to_string(&c.node(victim).log_path).unwrap();
    assert!(text.contains("no longer a member"), "the log says so");

    log("the cluster did not take the stray node's bid; after a restart it stays out");
    let (_, bids) = c.get(leader, "/v1/auctions/1/bids").await;
    assert_eq!(bids["bids"], json!([]));
    c.nodes.get_mut(&victim).unwrap().kill();
    c.restart(victim);
    c.wait_for("the restarted node to answer", DEADLINE, || async {
        let (status, _) = c.get(victim, "/health").await;
        (status == 200).then_some(())
    })
    .await;
    let (status, body) = c.get(victim, "/v1/auctions/1?consistency=stale").await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("not_a_member")));
    assert_eq!(c.get(victim, "/ready").await.0, 503);
}
