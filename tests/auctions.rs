//! The English-auction API over HTTP with real processes: every outcome and every
//! rejection with its status and code; many concurrent bidders through all nodes of a
//! 3-node cluster; an idempotent retry across a leader change.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn iso_in(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

async fn create(c: &TestCluster, node: u64, extra: Value) -> u64 {
    let mut body =
        json!({ "seller": "sam", "title": "lot", "starting_price": 1000, "increment": 100, "duration_secs": 600 });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    if body.get("ends_at").is_some() {
        body.as_object_mut().unwrap().remove("duration_secs");
    }
    let (status, resp) = c.post(node, "/v1/auctions", &body, None).await;
    assert_eq!(status, 201, "{resp}");
    resp["id"].as_u64().unwrap()
}

async fn bid(c: &TestCluster, node: u64, id: u64, body: Value) -> (u16, Value) {
    c.post(node, &format!("/v1/auctions/{id}/bids"), &body, None).await
}

async fn wait_closed(c: &TestCluster, id: u64) -> Value {
    c.wait_for(&format!("auction {id} closed"), DEADLINE, || async move {
        let (_, a) = c.get(1, &format!("/v1/auctions/{id}")).await;
        (a["status"] == "closed").then_some(a)
    })
    .await
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_through_the_api() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;

    log("phase: sold — highest bid above the reserve wins at its visible price");
    let sold = create(&c, 1, json!({"reserve_price": 1500, "duration_secs": 2})).await;
    assert_eq!(bid(&c, 1, sold, json!({"bidder": "ann", "amount": 1200})).await.0, 201);
    let (_, b) = bid(&c, 1, sold, json!({"bidder": "bob", "max_amount": 3000})).await;
    assert_eq!(
        (b["leader"].as_str(), b["price"].as_u64(), b["reserve_met"].as_bool()),
        (Some("bob"), Some(1500), Some(true)),
        "{b}"
    );

    log("phase: reserve_not_met — the best bid stays under the hidden reserve");
    let unmet = create(&c, 1, json!({"reserve_price": 9000, "duration_secs": 2})).await;
    let (_, b) = bid(&c, 1, unmet, json!({"bidder": "ann", "amount": 2000})).await;
    assert_eq!(b["reserve_met"], false);
    let (_, view) = c.get(1, &format!("/v1/auctions/{unmet}")).await;
    assert!(
        view.get("reserve_price").is_none(),
        "the reserve is never shown: {view}"
    );

    log("phase: no_bids, cancelled, bought_now");
    let none = create(&c, 1, json!({"duration_secs": 2})).await;
    let cancelled = create(&c, 1, json!({})).await;
    let (status, r) = c
        .post(
            1,
            &format!("/v1/auctions/{cancelled}/cancel"),
            &json!({"seller": "sam"}),
            None,
        )
        .await;
    assert_eq!((status, r["outcome"].as_str()), (200, Some("cancelled")), "{r}");
    let bought = create(&c, 1, json!({"buy_now_price": 5000})).await;
    let (status, r) = c
        .post(1, &format!("/v1/auctions/{bought}/buy"), &json!({"buyer": "cat"}), None)
        .await;
    assert_eq!(
        (status, r["outcome"].as_str(), r["purchase"]["price"].as_u64()),
        (200, Some("bought_now"), Some(5000)),
        "{r}"
    );

    log("phase: the clock closes the timed auctions with the right outcomes");
    let a = wait_closed(&c, sold).await;
    assert_eq!(a["result"], json!({"outcome": "sold", "winner": "bob", "price": 1500}));
    let a = wait_closed(&c, unmet).await;
    assert_eq!(
        a["result"],
        json!({"outcome": "reserve_not_met", "highest_bidder": "ann", "highest_bid": 2000})
    );
    let a = wait_closed(&c, none).await;
    assert_eq!(a["result"], json!({"outcome": "no_bids"}));
    let (_, a) = c.get(1, &format!("/v1/auctions/{cancelled}")).await;
    assert_eq!(
        (a["status"].as_str(), a["result"]["outcome"].as_str()),
        (Some("cancelled"), Some("cancelled"))
    );
    let (_, a) = c.get(1, &format!("/v1/auctions/{bought}")).await;
    assert_eq!(
        a["result"],
        json!({"outcome": "bought_now", "winner": "cat", "price": 5000})
    );

    log("phase: the soft close extends an auction bid on in its last seconds");
    let snipe = create(
        &c,
        1,
        json!({"duration_secs": 2, "soft_close": {"window_secs": 5, "extend_secs": 3, "max_extensions": 1}}),
    )
    .await;
    let (status, b) = bid(&c, 1, snipe, json!({"bidder": "ann", "amount": 1000})).await;
    assert_eq!((status, b["extended"].as_bool()), (201, Some(true)), "{b}");
    let (_, a) = c.get(1, &format!("/v1/auctions/{snipe}")).await;
    assert_eq!(a["extensions"], 1);
    assert_ne!(a["ends_at"], a["original_ends_at"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_has_its_status_and_code() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    let open = create(&c, 1, json!({"reserve_price": 5000, "buy_now_price": 9000})).await;
    assert_eq!(
        bid(
            &c,
            1,
            open,
            json!({"bidder": "ann", "amount": 1000, "max_amount": 1500})
        )
        .await
        .0,
        201
    );
    let later = create(&c, 1, json!({"starts_at": iso_in(3600), "ends_at": iso_in(7200)})).await;
    let ended = create(&c, 1, json!({"duration_secs": 1})).await;
    wait_closed(&c, ended).await;
    let gone = create(&c, 1, json!({})).await;
    assert_eq!(
        c.post(
            1,
            &format!("/v1/auctions/{gone}/cancel"),
            &json!({"seller": "sam"}),
            None
        )
        .await
        .0,
        200
    );
    let big = "x".repeat(70 * 1024);

    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "bid below the minimum",
            format!("/v1/auctions/{open}/bids"),
            json!({"bidder": "bob", "amount": 1050}),
            409,
            "bid_too_low",
        ),
        (
            "bid before the start",
            format!("/v1/auctions/{later}/bids"),
            json!({"bidder": "bob", "amount": 1000}),
            409,
            "auction_not_open",
        ),
        (
            "bid after the end",
            format!("/v1/auctions/{ended}/bids"),
            json!({"bidder": "bob", "amount": 5000}),
            409,
            "auction_closed",
        ),
        (
            "bid on a cancelled auction",
            format!("/v1/auctions/{gone}/bids"),
            json!({"bidder": "bob", "amount": 5000}),
            409,
            "auction_cancelled",
        ),
        (
            "the seller bids",
            format!("/v1/auctions/{open}/bids"),
            json!({"bidder": "sam", "amount": 4000}),
            409,
            "seller_cannot_bid",
        ),
        (
            "the leader lowers their maximum",
            format!("/v1/auctions/{open}/bids"),
            json!({"bidder": "ann", "max_amount": 1200}),
            409,
            "max_not_raised",
        ),
        (
            "unknown auction",
            "/v1/auctions/999/bids".into(),
            json!({"bidder": "bob", "amount": 5000}),
            404,
            "unknown_auction",
        ),
        (
            "float amount",
            format!("/v1/auctions/{open}/bids"),
            json!({"bidder": "bob", "amount": 1500.5}),
            400,
            "invalid_amount",
        ),
        (
            "negative amount",
            format!("/v1/auctions/{open}/bids"),
            json!({"bidder": "bob", "amount": -1500}),
            400,
            "invalid_amount",
        ),
        (
            "overflowing amount",
            format!("/v1/auctions/{open}/bids"),
            json!({"bidder": "bob", "amount": 1e30}),
            400,
            "invalid_amount",
        ),
        (
            "zero amount",
            format!("/v1/auctions/{open}/bids"),
            json!({"bidder": "bob", "amount": 0}),
            400,
            "invalid_amount",
        ),
        (
            "amount above max",
            format!("/v1/auctions/{open}/bids"),
            json!({"bidder": "bob", "amount": 3000, "max_amount": 2000}),
            400,
            "invalid_amount",
        ),
        (
            "no amount at all",
            format!("/v1/auctions/{open}/bids"),
            json!({"bidder": "bob"}),
            400,
            "invalid_amount",
        ),
        (
            "unknown field",
            format!("/v1/auctions/{open}/bids"),
            json!({"bidder": "bob", "amount": 3000, "colour": "red"}),
            400,
            "invalid_input",
        ),
        (
            "a name no account can have (sent without a token)",
            format!("/v1/auctions/{open}/bids"),
            json!({"bidder": "", "amount": 3000}),
            401,
            "unauthenticated",
        ),
        (
            "buy-now after a bid below the reserve is fine, by the seller is not",
            format!("/v1/auctions/{open}/buy"),
            json!({"buyer": "sam"}),
            409,
            "seller_cannot_bid",
        ),
        (
            "cancel by someone else",
            format!("/v1/auctions/{open}/cancel"),
            json!({"seller": "eve"}),
            403,
            "not_seller",
        ),
        (
            "seller cancels after a bid",
            format!("/v1/auctions/{open}/cancel"),
            json!({"seller": "sam"}),
            409,
            "auction_has_bids",
        ),
        (
            "buy-now without a buy-now price",
            format!("/v1/auctions/{later}/buy"),
            json!({"buyer": "bob"}),
            409,
            "auction_not_open",
        ),
        (
            "ends_at in the past",
            "/v1/auctions".into(),
            json!({"seller": "s", "title": "t", "starting_price": 1, "increment": 1, "ends_at": iso_in(-60)}),
            400,
            "invalid_input",
        ),
        (
            "absurd duration",
            "/v1/auctions".into(),
            json!({"seller": "s", "title": "t", "starting_price": 1, "increment": 1, "duration_secs": 10u64.pow(12)}),
            400,
            "invalid_input",
        ),
        (
            "bad time",
            "/v1/auctions".into(),
            json!({"seller": "s", "title": "t", "starting_price": 1, "increment": 1, "ends_at": "tomorrow"}),
            400,
            "invalid_input",
        ),
        (
            "float price",
            "/v1/auctions".into(),
            json!({"seller": "s", "title": "t", "starting_price": 9.99, "increment": 1, "duration_secs": 60}),
            400,
            "invalid_amount",
        ),
        (
            "zero increment",
            "/v1/auctions".into(),
            json!({"seller": "s", "title": "t", "starting_price": 1, "increment": 0, "duration_secs": 60}),
            400,
            "invalid_input",
        ),
        (
            "reserve below start",
            "/v1/auctions".into(),
            json!({"seller": "s", "title": "t", "starting_price": 100, "increment": 1, "reserve_price": 50, "duration_secs": 60}),
            400,
            "invalid_input",
        ),
        (
            "too large",
            "/v1/auctions".into(),
            json!({"seller": "s", "title": big, "starting_price": 1, "increment": 1, "duration_secs": 60}),
            413,
            "payload_too_large",
        ),
    ];
    let before = c.get(1, "/v1/auctions").await.1;
    for (what, path, body, want_status, want_code) in &cases {
        let (status, resp) = c.post(1, path, body, None).await;
        assert_eq!((status, code(&resp)), (*want_status, *want_code), "{what}: {resp}");
        assert!(
            resp["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: message"
        );
    }
    let (_, resp) = bid(&c, 1, open, json!({"bidder": "bob", "amount": 1050})).await;
    assert_eq!(
        resp["error"]["min_next_bid"], 1100,
        "bid_too_low says the minimum: {resp}"
    );

    log("phase: malformed JSON and a key reused for another request");
    let resp = c
        .http
        .post(c.node(1).url(&format!("/v1/auctions/{open}/bids")))
        .body("{\"bidder\":")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(code(&resp.json().await.unwrap()), "invalid_json");
    let (s1, _) = c
        .post(
            1,
            &format!("/v1/auctions/{open}/bids"),
            &json!({"bidder": "bob", "amount": 2000}),
            Some("same"),
        )
        .await;
    let (s2, r2) = c
        .post(
            1,
            &format!("/v1/auctions/{open}/bids"),
            &json!({"bidder": "bob", "amount": 2100}),
            Some("same"),
        )
        .await;
    assert_eq!((s1, s2, code(&r2)), (201, 409, "idempotency_key_reused"));
    let resp = c.http.get(c.node(1).url("/v1/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);

    log("phase: refused requests changed nothing visible");
    let after = c.get(1, "/v1/auctions").await.1;
    let strip = |v: &Value| -> Vec<(Value, Value)> {
        v["auctions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["id"] != json!(open))
            .map(|a| (a["id"].clone(), a["seq"].clone()))
            .collect()
    };
    assert_eq!(strip(&before), strip(&after));
}

/// A tiny deterministic generator for bid jitter.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bidders_on_a_three_node_cluster() {
    let _serial = serial().await;
    let mut c = TestCluster::start(3, TEST_RAFT).await;
    let id = create(
        &c,
        2,
        json!({"starting_price": 100, "increment": 1, "duration_secs": 6}),
    )
    .await;

    log("phase: 12 bidders bid concurrently through all three nodes until the auction ends");
    let mut tasks = Vec::new();
    for b in 0..12u64 {
        let node = b % 3 + 1;
        let url = c.node(node).url(&format!("/v1/auctions/{id}"));
        let http = c.http.clone();
        let bidder = format!("bidder-{b}");
        let token = c.token(&bidder).await.expect("an account for the bidder");
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(b + 1);
            let mut accepted = Vec::new();
            let mut my_last_seq = 0;
            let stop = Instant::now() + Duration::from_secs(20);
            for n in 0..200 {
                if Instant::now() > stop {
                    break;
                }
                let view: Value = http
                    .get(format!("{url}?consistency=stale"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let Some(min) = view["min_next_bid"].as_u64() else {
                    break;
                };
                // A real bidder does not outbid themselves: skip while leading, or while
                // this node's view does not yet include our own last bid.
                if view["highest_bid"]["bidder"] == json!(bidder) || view["seq"].as_u64() < Some(my_last_seq) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let amount = min + rng.next(4);
                let resp = http
                    .post(format!("{url}/bids"))
                    .header("Idempotency-Key", format!("{bidder}-{n}"))
                    .bearer_auth(&token)
                    .json(&json!({"bidder": bidder, "amount": amount}))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap();
                match (status, code(&body)) {
                    (201, _) => {
                        my_last_seq = body["seq"].as_u64().unwrap();
                        accepted.push((body["bid_id"].as_u64().unwrap(), amount));
                    }
                    (409, "bid_too_low") | (409, "max_not_raised") => {}
                    (409, "auction_closed") => break,
                    (503, _) => tokio::time::sleep(Duration::from_millis(20)).await,
                    other => panic!("unexpected answer {other:?}: {body}"),
                }
            }
            accepted
        }));
    }
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(acked.len() > 12, "bidders got bids in: {}", acked.len());

    log("phase: exactly the highest accepted bid wins; amounts rise strictly in commit order");
    let a = wait_closed(&c, id).await;
    let (_, history) = c.get(3, &format!("/v1/auctions/{id}/bids")).await;
    let bids = history["bids"].as_array().unwrap();
    let amounts: Vec<u64> = bids.iter().map(|b| b["amount"].as_u64().unwrap()).collect();
    assert!(
        amounts.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {amounts:?}"
    );
    for (bid_id, amount) in &acked {
        let found = bids
            .iter()
            .find(|b| b["bid_id"] == json!(bid_id))
            .unwrap_or_else(|| panic!("acknowledged bid {bid_id} is lost"));
        assert_eq!(found["amount"], json!(amount));
    }
    assert_eq!(
        bids.len(),
        acked.len(),
        "every committed bid was acknowledged to someone"
    );
    let top = bids.last().unwrap();
    assert_eq!(
        a["result"],
        json!({"outcome": "sold", "winner": top["bidder"], "price": top["amount"]})
    );
    assert_eq!(top["amount"].as_u64(), acked.values().max().copied());
    c.wait_converged().await;

    log("phase: an idempotent retry after a leader change returns the same bid");
    let second = create(&c, 1, json!({})).await;
    let body = json!({"bidder": "zoe", "amount": 1000});
    let (status, first) = c
        .post(1, &format!("/v1/auctions/{second}/bids"), &body, Some("zoe-1"))
        .await;
    assert_eq!(status, 201);
    let leader = c.leader().await;
    c.nodes.get_mut(&leader).unwrap().kill();
    let survivor = c.running()[0];
    let retry = c
        .wait_for("retry accepted by the new leader", DEADLINE, || async {
            let (status, r) = c
                .post(survivor, &format!("/v1/auctions/{second}/bids"), &body, Some("zoe-1"))
                .await;
            (status == 201).then_some(r)
        })
        .await;
    assert_eq!(retry["bid_id"], first["bid_id"], "the retry is the same bid");
    let (_, history) = c.get(survivor, &format!("/v1/auctions/{second}/bids")).await;
    assert_eq!(history["bids"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_filters_and_the_cli_client() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    for _ in 0..5 {
        create(
            &c,
            1,
            json!({"increment": [{"from": 0, "increment": 50}, {"from": 2000, "increment": 250}]}),
        )
        .await;
    }
    assert_eq!(
        c.post(1, "/v1/auctions/2/cancel", &json!({"seller": "sam"}), None)
            .await
            .0,
        200
    );

    log("phase: status filter and cursor paging");
    let (_, page) = c.get(1, "/v1/auctions?status=open&limit=2").await;
    let ids: Vec<u64> = page["auctions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    assert_eq!((ids, page["next_after"].as_u64()), (vec![1, 3], Some(3)));
    let (_, page) = c.get(1, "/v1/auctions?status=open&limit=2&after=3").await;
    let ids: Vec<u64> = page["auctions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    assert_eq!((ids, page["next_after"].as_u64()), (vec![4, 5], None));
    let (status, body) = c.get(1, "/v1/auctions?status=sold").await;
    assert_eq!((status, code(&body)), (400, "invalid_input"));
    let (status, body) = c.get(1, "/v1/auctions?limit=0").await;
    assert_eq!((status, code(&body)), (400, "invalid_input"));

    log("phase: the increment table applies by price band");
    assert_eq!(bid(&c, 1, 1, json!({"bidder": "ann", "amount": 1950})).await.0, 201);
    let (_, a) = c.get(1, "/v1/auctions/1").await;
    assert_eq!(a["min_next_bid"], 2000);
    assert_eq!(bid(&c, 1, 1, json!({"bidder": "bob", "amount": 2000})).await.0, 201);
    let (_, a) = c.get(1, "/v1/auctions/1").await;
    assert_eq!(a["min_next_bid"], 2250);

    log("phase: gavel auction bid/show/list from the command line");
    let cat = c.token("cat").await.unwrap();
    let dan = c.token("dan").await.unwrap();
    let cli = |args: &[&str]| {
        let node = c.node(1).addr.clone();
        let mut full = vec!["auction", "--node", node.as_str()];
        full.extend_from_slice(args);
        std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
            .args(&full)
            .output()
            .unwrap()
    };
    let out = cli(&["bid", "1", "--token", &cat, "--amount", "2250", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["leader"].as_str(), v["price"].as_u64()), (Some("cat"), Some(2250)));
    let out = cli(&["bid", "1", "--token", &dan, "--amount", "2300"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bid_too_low") && err.contains("2500"), "{err}");
    let out = cli(&["show", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("cat") && text.contains("2250"),
        "{text}"
    );
    let out = cli(&["list", "--status", "cancelled", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["auctions"][0]["id"], 2);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["auction", "--node", "http://127.0.0.1:9", "show", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}
