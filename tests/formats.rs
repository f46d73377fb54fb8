//! Auction formats through the HTTP API of a real node: sealed bids stay sealed in every
//! read until the close, each bidder's result, a Dutch auction's falling price and its
//! first taker, and fields that do not fit a format.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Every read a client can make of auction `id`, as text: the auction, the list, the
/// history (also as the admin).
async fn every_read(c: &TestCluster, id: u64) -> String {
    let mut text = String::new();
    for path in [
        format!("/v1/auctions/{id}"),
        "/v1/auctions".to_string(),
        format!("/v1/auctions/{id}/bids"),
        format!("/v1/auctions/{id}?consistency=stale"),
    ] {
        text.push_str(&c.get(1, &path).await.1.to_string());
    }
    let admin = c
        .http
        .get(c.node(1).url(&format!("/v1/auctions/{id}/bids")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    text.push_str(&admin.text().await.unwrap());
    text
}

async fn wait_closed(c: &TestCluster, id: u64) -> Value {
    c.wait_for("the auction closes", Duration::from_secs(20), || async {
        let (_, a) = c.get(1, &format!("/v1/auctions/{id}")).await;
        (a["status"] == "closed").then_some(a)
    })
    .await
}

async fn result_of(c: &TestCluster, id: u64, name: &str) -> (u16, Value) {
    let token = c.token(name).await.unwrap();
    let resp = c
        .http
        .get(c.node(1).url(&format!("/v1/auctions/{id}/result")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn sealed_bids_stay_sealed_until_the_close_and_each_bidder_learns_their_result() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    // Amounts differ per auction, so that one auction's revealed result is not mistaken
    // for another's sealed bid.
    for (round, format) in [(0u64, "sealed_first_price"), (1, "sealed_second_price")] {
        let bids = [
            ("ann", 5_432_198 - round),
            ("bob", 7_654_321 - round),
            ("cy", 6_543_219 - round),
        ];
        let price_paid = if round == 0 { bids[1].1 } else { bids[2].1 };
        log(&format!(
            "phase: {format}: three sealed bids with amounts found nowhere else"
        ));
        let (status, created) = c
            .post(
                1,
                "/v1/auctions",
                &json!({"seller": "sam", "title": format, "format": format, "starting_price": 1000, "duration_secs": 5}),
                None,
            )
            .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["format"], format);
        let id = created["id"].as_u64().unwrap();
        for (bidder, amount) in bids {
            let (status, answer) = c
                .post(
                    1,
                    &format!("/v1/auctions/{id}/bids"),
                    &json!({"bidder": bidder, "amount": amount}),
                    None,
                )
                .await;
            assert_eq!(status, 201, "{answer}");
            assert_eq!(answer["sealed"], true, "{answer}");
            assert!(
                answer.get("price").is_none() && answer.get("leader").is_none(),
                "{answer}"
            );
        }
        let reads = every_read(&c, id).await;
        for (bidder, amount) in bids {
            assert!(
                !reads.contains(&amount.to_string()),
                "{bidder}'s amount is visible before the close: {reads}"
            );
        }
        let (_, view) = c.get(1, &format!("/v1/auctions/{id}")).await;
        assert_eq!(
            (view["bid_count"].as_u64(), view["sealed"].as_bool()),
            (Some(3), Some(true)),
            "{view}"
        );
        let (status, early) = result_of(&c, id, "ann").await;
        assert_eq!(
            (status, early["error"]["code"].as_str()),
            (409, Some("auction_not_ended"))
        );

        log(&format!(
            "phase: {format}: at the close the highest bid wins and every bid is revealed"
        ));
        let closed = wait_closed(&c, id).await;
        assert_eq!(closed["result"]["winner"], "bob", "{closed}");
        assert_eq!(closed["result"]["price"].as_u64(), Some(price_paid), "{closed}");
        let (_, history) = c.get(1, &format!("/v1/auctions/{id}/bids")).await;
        let revealed: Vec<u64> = history["bids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["amount"].as_u64().unwrap())
            .collect();
        assert_eq!(revealed, bids.map(|(_, amount)| amount), "{history}");
        let (status, won) = result_of(&c, id, "bob").await;
        assert_eq!(
            (status, won["result"].as_str(), won["price"].as_u64()),
            (200, Some("won"), Some(price_paid))
        );
        let (status, lost) = result_of(&c, id, "ann").await;
        assert_eq!(
            (status, lost["result"].as_str(), lost["winning_price"].as_u64()),
            (200, Some("lost"), Some(price_paid))
        );
        let (status, _) = result_of(&c, id, "dee").await;
        assert_eq!(status, 404, "someone who did not bid has no result");
    }
}

#[tokio::test]
async fn a_dutch_auction_falls_and_sells_to_its_first_taker_and_misfit_fields_are_refused() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    log("phase: fields that do not fit the format are 400 invalid_input naming the field");
    let misfits = [
        (
            json!({"format": "sealed_first_price", "increment": 10, "duration_secs": 60}),
            "increment",
        ),
        (
            json!({"format": "dutch", "decrement": 10, "decrement_every_secs": 1, "floor_price": 500, "reserve_price": 600}),
            "reserve_price",
        ),
        (
            json!({"format": "dutch", "decrement": 10, "decrement_every_secs": 1, "floor_price": 500, "duration_secs": 60}),
            "duration_secs",
        ),
        (
            json!({"format": "english", "increment": 10, "duration_secs": 60, "floor_price": 5}),
            "floor_price",
        ),
        (
            json!({"format": "dutch", "decrement_every_secs": 1, "floor_price": 500}),
            "decrement",
        ),
        (
            json!({"format": "swedish", "increment": 10, "duration_secs": 60}),
            "format",
        ),
    ];
    for (fields, named) in misfits {
        let mut body = json!({"seller": "sam", "title": "misfit", "starting_price": 1000});
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = c.post(1, "/v1/auctions", &body, None).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_input", "{answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(named),
            "{named}: {answer}"
        );
    }

    log("phase: a dutch auction's price falls every second; the first bid at the price wins it");
    let (status, created) = c
        .post(
            1,
            "/v1/auctions",
            &json!({"seller": "sam", "title": "tulips", "format": "dutch", "starting_price": 10_000,
                    "decrement": 100, "decrement_every_secs": 1, "floor_price": 5_000}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_u64().unwrap();
    let fallen = c
        .wait_for("the price falls", Duration::from_secs(10), || async {
            let (_, a) = c.get(1, &format!("/v1/auctions/{id}")).await;
            a["current_price"].as_u64().filter(|p| *p < 10_000)
        })
        .await;
    let (status, low) = c
        .post(
            1,
            &format!("/v1/auctions/{id}/bids"),
            &json!({"bidder": "ann", "amount": 4_000}),
            None,
        )
        .await;
    assert_eq!(
        (status, low["error"]["code"].as_str()),
        (409, Some("bid_too_low")),
        "{low}"
    );
    let (status, taken) = c
        .post(
            1,
            &format!("/v1/auctions/{id}/bids"),
            &json!({"bidder": "bob", "amount": 10_000}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{taken}");
    let price = taken["price"].as_u64().unwrap();
    assert!(
        price <= fallen && price >= 5_000,
        "sold at the current price {price}, not the bid"
    );
    let (_, a) = c.get(1, &format!("/v1/auctions/{id}")).await;
    assert_eq!(
        (a["status"].as_str(), a["result"]["winner"].as_str()),
        (Some("closed"), Some("bob")),
        "{a}"
    );
    let (status, won) = result_of(&c, id, "bob").await;
    assert_eq!(
        (status, won["result"].as_str(), won["price"].as_u64()),
        (200, Some("won"), Some(price))
    );
}

#[tokio::test]
async fn a_multi_round_auction_runs_joins_rounds_reveals_and_cumulative_totals() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    log("phase: a multi-round auction opens for joining");
    let (status, created) = c
        .post(
            1,
            "/v1/auctions",
            &json!({"seller": "sam", "title": "fishing rights", "format": "multi_round_sealed", "starting_price": 1000,
                    "min_rounds": 1, "max_rounds": 2, "round_secs": 30, "min_bidders": 2, "join_secs": 60}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_u64().unwrap();
    assert_eq!(created["status"], "open_for_joining", "{created}");
    let post = |who: &'static str, path: String, body: Value| {
        let c = &c;
        async move {
            let token = c.token(who).await.unwrap();
            c.post_with(1, &path, &body, None, Some(&token)).await
        }
    };
    let (status, early) = post("sam", format!("/v1/auctions/{id}/start"), json!({})).await;
    assert_eq!(
        (status, early["error"]["code"].as_str()),
        (409, Some("not_enough_bidders")),
        "{early}"
    );
    for who in ["ann", "bob", "cy"] {
        let (status, joined) = post(who, format!("/v1/auctions/{id}/join"), json!({})).await;
        assert_eq!(status, 200, "{joined}");
    }
    let (status, started) = post("sam", format!("/v1/auctions/{id}/start"), json!({})).await;
    assert_eq!((status, started["round"].as_u64()), (200, Some(1)), "{started}");
    let (status, late) = post("dee", format!("/v1/auctions/{id}/join"), json!({})).await;
    assert_eq!(
        (status, late["error"]["code"].as_str()),
        (409, Some("joining_closed")),
        "{late}"
    );

    log("phase: round 1 bids stay sealed until the last one is in");
    let bid = |who: &'static str, amount: u64| post(who, format!("/v1/auctions/{id}/bids"), json!({"amount": amount}));
    assert_eq!(bid("ann", 3_001).await.0, 201);
    assert_eq!(bid("bob", 2_002).await.0, 201);
    let (status, twice) = bid("bob", 2_500).await;
    assert_eq!(
        (status, twice["error"]["code"].as_str()),
        (409, Some("already_bid")),
        "{twice}"
    );
    let reads = every_read(&c, id).await;
    assert!(
        !reads.contains("3001") && !reads.contains("2002"),
        "a round-1 amount is visible: {reads}"
    );
    assert_eq!(bid("cy", 1_003).await.0, 201);
    let (_, view) = c.get(1, &format!("/v1/auctions/{id}")).await;
    assert_eq!(
        view["round"].as_u64(),
        Some(2),
        "the last bid completed round 1: {view}"
    );
    assert_eq!(view["rounds"][0][0], json!({"bidder": "ann", "amount": 3001}), "{view}");
    assert_eq!(view["totals"][0], json!({"bidder": "ann", "total": 3001}), "{view}");

    log("phase: round 2 (the last) decides by cumulative total");
    assert_eq!(bid("ann", 1_000).await.0, 201);
    assert_eq!(bid("bob", 2_500).await.0, 201);
    assert_eq!(bid("cy", 1_000).await.0, 201);
    let (_, closed) = c.get(1, &format!("/v1/auctions/{id}")).await;
    assert_eq!(closed["status"], "closed", "{closed}");
    assert_eq!(
        closed["result"],
        json!({"outcome": "sold", "winner": "bob", "price": 4502}),
        "{closed}"
    );
    let (status, won) = result_of(&c, id, "bob").await;
    assert_eq!(
        (status, won["result"].as_str(), won["price"].as_u64()),
        (200, Some("won"), Some(4502)),
        "{won}"
    );
    let (status, lost) = result_of(&c, id, "cy").await;
    assert_eq!((status, lost["result"].as_str()), (200, Some("lost")), "{lost}");
    assert_eq!(
        lost["totals"].as_array().map(Vec::len),
        Some(3),
        "every participant's total: {lost}"
    );

    log("phase: the event stream tells the whole story");
    let text = c
        .http
        .get(c.node(1).url(&format!("/v1/auctions/{id}/events")))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for kind in ["joined", "round_started", "sealed_bid", "round_completed", "closed"] {
        assert!(
            text.contains(&format!("\"kind\":\"{kind}\"")),
            "no {kind} event: {text}"
        );
    }
}

#[tokio::test]
async fn the_command_line_creates_joins_starts_and_bids_in_every_format() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    let node = c.node(1).addr.clone();
    let cli = |token: &str, args: &[&str]| {
        let mut full = vec!["auction", "--node", node.as_str(), "--token", token];
        full.extend_from_slice(args);
        std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
            .args(&full)
            .output()
            .unwrap()
    };
    let json_of = |out: &std::process::Output| -> Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (sam, ann, bob) = (
        c.token("sam").await.unwrap(),
        c.token("ann").await.unwrap(),
        c.token("bob").await.unwrap(),
    );

    log("phase: a sealed auction from the command line");
    let sealed = json_of(&cli(
        &sam,
        &[
            "create",
            "--title",
            "tender",
            "--format",
            "sealed_second_price",
            "--starting-price",
            "100",
            "--duration-secs",
            "600",
            "--json",
        ],
    ));
    let id = sealed["id"].to_string();
    let out = cli(&ann, &["bid", &id, "--amount", "500"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sealed bid"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    log("phase: a dutch auction from the command line");
    let dutch = json_of(&cli(
        &sam,
        &[
            "create",
            "--title",
            "tulips",
            "--format",
            "dutch",
            "--starting-price",
            "1000",
            "--decrement",
            "10",
            "--decrement-every-secs",
            "60",
            "--floor-price",
            "500",
            "--json",
        ],
    ));
    assert_eq!(dutch["current_price"].as_u64(), Some(1000), "{dutch}");
    let taken = json_of(&cli(
        &bob,
        &["bid", &dutch["id"].to_string(), "--amount", "1000", "--json"],
    ));
    assert_eq!(
        (taken["leader"].as_str(), taken["price"].as_u64()),
        (Some("bob"), Some(1000))
    );

    log("phase: a multi-round auction: create, join, start, bid, show");
    let rounds = json_of(&cli(
        &sam,
        &[
            "create",
            "--title",
            "rights",
            "--format",
            "multi_round_sealed",
            "--starting-price",
            "100",
            "--min-rounds",
            "1",
            "--max-rounds",
            "1",
            "--round-secs",
            "60",
            "--min-bidders",
            "2",
            "--json",
        ],
    ));
    let id = rounds["id"].to_string();
    assert_eq!(rounds["status"], "open_for_joining", "{rounds}");
    for token in [&ann, &bob] {
        json_of(&cli(token, &["join", &id, "--json"]));
    }
    assert_eq!(
        json_of(&cli(&sam, &["start", &id, "--json"]))["round"].as_u64(),
        Some(1)
    );
    json_of(&cli(&ann, &["bid", &id, "--amount", "300", "--json"]));
    json_of(&cli(&bob, &["bid", &id, "--amount", "200", "--json"]));
    let out = cli(&ann, &["show", &id]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && shown.contains("round 1: ann 300, bob 200"),
        "{shown}"
    );
    assert!(shown.contains("totals: ann 300, bob 200"), "{shown}");
}
