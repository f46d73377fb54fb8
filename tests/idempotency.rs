//! Retries are never executed twice: a retried create returns its first answer (not the
//! auction's current state); a key let go early is answered 409 `idempotency_key_expired`
//! and not run again; one client's flood does not push out another's keys; a request
//! forwarded by a follower counts against the original client, which cannot forge it.

mod common;

use common::*;
use serde_json::{json, Value};

const SMALL_TABLE: &str = "[idempotency]\nkeys_max = 40\nkeys_per_client = 5\nfilter_bits_per_hour = 4096\n";

/// Waits until the leader has applied the configured (small) table bounds.
async fn wait_small_table(c: &TestCluster, id: u64) {
    c.wait_for("the configured idempotency bounds to be applied", DEADLINE, || async {
        (c.metric(id, "gavel_idempotency_keys_per_client").await == 5).then_some(())
    })
    .await;
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address works on Linux).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

async fn keyed(http: &reqwest::Client, url: &str, body: &Value, key: &str) -> (u16, Value) {
    let resp = http
        .post(url)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn retries_get_the_first_answer_or_a_clear_refusal_never_a_second_execution() {
    let _serial = serial().await;
    let c = TestCluster::start(1, &format!("{TEST_RAFT}{SMALL_TABLE}")).await;
    wait_small_table(&c, 1).await;
    let a = client_from("127.0.0.2");
    let b = client_from("127.0.0.3");
    let create = c.node(1).url("/v1/auctions");
    let lot = auction_body("lamp", 600);

    log("a retried create answers the auction as created, even after bids");
    let (status, first) = keyed(&a, &create, &lot, "create-1").await;
    assert_eq!(status, 201, "{first}");
    let id = first["id"].as_u64().unwrap();
    let bids = c.node(1).url(&format!("/v1/auctions/{id}/bids"));
    let (status, first_bid) = keyed(&a, &bids, &json!({"bidder": "ann", "amount": 1000}), "bid-1").await;
    assert_eq!(status, 201);
    let (status, again) = keyed(&a, &create, &lot, "create-1").await;
    assert_eq!(status, 201);
    assert_eq!(again, first, "the retry is the first answer, not the current state");
    assert_eq!(again["bid_count"], json!(0));

    log("client b keeps a key while client a sends more than its quota");
    let (status, theirs) = keyed(&b, &create, &auction_body("b's lot", 600), "b-1").await;
    assert_eq!(status, 201);
    for i in 0..12 {
        let (status, body) = keyed(
            &a,
            &create,
            &auction_body(&format!("flood {i}"), 600),
            &format!("flood-{i}"),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, again) = keyed(&b, &create, &auction_body("b's lot", 600), "b-1").await;
    assert_eq!((status, &again), (201, &theirs), "b's key survived a's flood");

    log("a's early keys went: their retries are refused as expired and not run again");
    let (_, before) = c.get(1, "/v1/auctions?limit=500").await;
    let count = before["auctions"].as_array().unwrap().len();
    let (status, body) = keyed(&a, &create, &lot, "create-1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("idempotency_key_expired")),
        "{body}"
    );
    let (status, body) = keyed(&a, &bids, &json!({"bidder": "ann", "amount": 1000}), "bid-1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("idempotency_key_expired")),
        "{body}"
    );
    let (_, after) = c.get(1, "/v1/auctions?limit=500").await;
    assert_eq!(after["auctions"].as_array().unwrap().len(), count, "no second auction");
    let (_, history) = c.get(1, &format!("/v1/auctions/{id}/bids")).await;
    assert_eq!(history["bids"].as_array().unwrap().len(), 1, "no second bid");
    assert_eq!(history["bids"][0]["bid_id"], first_bid["bid_id"]);
    assert!(c.metric(1, "gavel_idempotency_evicted_total").await >= 2);
}

#[tokio::test]
async fn a_forwarded_request_counts_against_its_client_who_cannot_forge_that() {
    let _serial = serial().await;
    let c = TestCluster::start(3, &format!("{TEST_RAFT}{SMALL_TABLE}")).await;
    let leader = c.leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).unwrap();
    wait_small_table(&c, leader).await;
    let create = c.node(follower).url("/v1/auctions");
    let clients_before = c.metric(leader, "gavel_idempotency_clients").await;
    assert_eq!(clients_before, 0);

    log("two clients write through a follower: the leader sees two clients, not the follower");
    for (ip, key) in [("127.0.0.2", "k-a"), ("127.0.0.3", "k-b")] {
        let (status, body) = keyed(&client_from(ip), &create, &auction_body("lot", 600), key).await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(c.metric(leader, "gavel_idempotency_clients").await, 2);

    log("a client claiming to be a forwarding node is taken for itself");
    let resp = client_from("127.0.0.4")
        .post(c.node(leader).url("/v1/auctions"))
        .header("Idempotency-Key", "k-forged")
        .header("x-gavel-forwarded-by", "2")
        .header("x-gavel-client-addr", "127.0.0.2")
        .header("x-gavel-forward-secret", "not-the-secret")
        .json(&auction_body("lot", 600))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(c.metric(leader, "gavel_idempotency_clients").await, 3);
}
