//! Retries are never executed twice: a retried create returns its first answer (not the
//! auction's current state); a key let go early is answered 409 `idempotency_key_expired`
//! and not run again; one account's flood does not push out another's keys; keys belong
//! to their account, through any node.

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

/// A client acting as account `name`.
async fn client_as(c: &TestCluster, name: &str) -> reqwest::Client {
    let token = c.token(name).await.expect("an account");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

/// An auction body without a seller: the caller's account sells.
fn lot_of(title: &str) -> Value {
    let mut body = auction_body(title, 600);
    body.as_object_mut().unwrap().remove("seller");
    body
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
    let a = client_as(&c, "sam").await;
    let b = client_as(&c, "sue").await;
    let create = c.node(1).url("/v1/auctions");
    let lot = lot_of("lamp");

    log("a retried create answers the auction as created, even after bids");
    let (status, first) = keyed(&a, &create, &lot, "create-1").await;
    assert_eq!(status, 201, "{first}");
    let id = first["id"].as_u64().unwrap();
    let bids = c.node(1).url(&format!("/v1/auctions/{id}/bids"));
    let ann = client_as(&c, "ann").await;
    let (status, first_bid) = keyed(&ann, &bids, &json!({"amount": 1000}), "bid-1").await;
    assert_eq!(status, 201);
    let (status, again) = keyed(&a, &create, &lot, "create-1").await;
    assert_eq!(status, 201);
    assert_eq!(again, first, "the retry is the first answer, not the current state");
    assert_eq!(again["bid_count"], json!(0));

    log("account sue keeps a key while account sam sends more than its quota");
    let (status, theirs) = keyed(&b, &create, &lot_of("b's lot"), "b-1").await;
    assert_eq!(status, 201);
    for i in 0..12 {
        let (status, body) = keyed(&a, &create, &lot_of(&format!("flood {i}")), &format!("flood-{i}")).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, again) = keyed(&b, &create, &lot_of("b's lot"), "b-1").await;
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
    for i in 0..6u64 {
        let (status, body) = keyed(&ann, &bids, &json!({"amount": 2000 + i * 100}), &format!("push-{i}")).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = keyed(&ann, &bids, &json!({"amount": 1000}), "bid-1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("idempotency_key_expired")),
        "{body}"
    );
    let (_, after) = c.get(1, "/v1/auctions?limit=500").await;
    assert_eq!(after["auctions"].as_array().unwrap().len(), count, "no second auction");
    let (_, history) = c.get(1, &format!("/v1/auctions/{id}/bids")).await;
    let bid_ids: Vec<&Value> = history["bids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["bid_id"])
        .collect();
    assert_eq!(
        bid_ids.len(),
        7,
        "the first bid and the six pushes, no second run of the first"
    );
    assert_eq!(bid_ids[0], &first_bid["bid_id"]);
    assert!(c.metric(1, "gavel_idempotency_evicted_total").await >= 2);
}

#[tokio::test]
async fn keys_belong_to_their_account_through_any_node() {
    let _serial = serial().await;
    let c = TestCluster::start(3, &format!("{TEST_RAFT}{SMALL_TABLE}")).await;
    let leader = c.leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).unwrap();
    wait_small_table(&c, leader).await;
    let create = c.node(follower).url("/v1/auctions");
    let lot = lot_of("lot");

    log("two accounts use the same key through a follower: two auctions, two clients");
    let sam = client_as(&c, "sam").await;
    let sue = client_as(&c, "sue").await;
    let (s1, first) = keyed(&sam, &create, &lot, "same-key").await;
    let (s2, second) = keyed(&sue, &create, &lot, "same-key").await;
    assert_eq!((s1, s2), (201, 201), "{first} {second}");
    assert_ne!(first["id"], second["id"], "another account's key is not a replay");
    assert_eq!(c.metric(leader, "gavel_idempotency_clients").await, 2);

    log("each account's retry, through another node, gets its own first answer");
    let (_, again) = keyed(&sue, &c.node(leader).url("/v1/auctions"), &lot, "same-key").await;
    assert_eq!(again, second);
}
