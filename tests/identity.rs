//! Who is bidding, over HTTP with real processes: every attack of the identity issue is
//! refused with its code; tokens are shown once, rotate and disable at once, and never
//! reach the disk; signed bids verify, replays are refused, and `gavel audit verify`
//! checks the history offline and online; budgets cap exposure; rate limits keep one
//! account's or address's flood from slowing the others; UDP subscriptions cannot be
//! pointed at an address that did not ask for them.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use tokio::net::UdpSocket;

/// What an attack is, where it goes, its body and token, and the status and code expected.
type Attack<'a> = (&'a str, &'a str, Value, Option<&'a str>, u16, &'a str);

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

async fn create_account(c: &TestCluster, body: Value) -> (u16, Value) {
    c.post_with(1, "/v1/accounts", &body, None, Some(ADMIN_TOKEN)).await
}

#[tokio::test]
async fn every_impersonation_is_refused_with_its_code() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    let alice = c.token("alice").await.unwrap();
    let bob = c.token("bob").await.unwrap();
    let ann = c.token("ann").await.unwrap();
    let sam = c.token("sam").await.unwrap();
    let lot = json!({"title": "lamp", "starting_price": 1000, "increment": 100, "duration_secs": 600, "buy_now_price": 50000});
    let (status, a) = c.post_with(1, "/v1/auctions", &lot, None, Some(&alice)).await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(a["seller"], "alice", "the token decides the seller");
    let (status, _) = c
        .post_with(1, "/v1/auctions/1/bids", &json!({"max_amount": 2000}), None, Some(&ann))
        .await;
    assert_eq!(status, 201);
    let before = c.get(1, "/v1/auctions/1").await.1;

    log("each attack from the issue, and its code");
    let bids = "/v1/auctions/1/bids";
    let cases: Vec<Attack> = vec![
        (
            "anyone bids as ann",
            bids,
            json!({"bidder": "ann", "amount": 5000}),
            None,
            401,
            "unauthenticated",
        ),
        (
            "bob bids as ann",
            bids,
            json!({"bidder": "ann", "amount": 5000}),
            Some(&bob),
            403,
            "identity_mismatch",
        ),
        (
            "bob raises ann's maximum",
            bids,
            json!({"bidder": "ann", "max_amount": 100000}),
            Some(&bob),
            403,
            "identity_mismatch",
        ),
        (
            "bob buys now as carol",
            "/v1/auctions/1/buy",
            json!({"buyer": "carol"}),
            Some(&bob),
            403,
            "identity_mismatch",
        ),
        (
            "bob creates an auction as alice",
            "/v1/auctions",
            json!({"seller": "alice", "title": "x", "starting_price": 1, "increment": 1, "duration_secs": 60}),
            Some(&bob),
            403,
            "identity_mismatch",
        ),
        (
            "bob cancels alice's auction as alice",
            "/v1/auctions/1/cancel",
            json!({"seller": "alice"}),
            Some(&bob),
            403,
            "identity_mismatch",
        ),
        (
            "bob cancels without naming anyone",
            "/v1/auctions/1/cancel",
            json!({}),
            Some(&bob),
            403,
            "not_seller",
        ),
        (
            "sam shill-bids as \"sam\\u200b\"",
            bids,
            json!({"bidder": "sam\u{200b}", "amount": 5000}),
            Some(&sam),
            403,
            "identity_mismatch",
        ),
        (
            "a made-up token",
            bids,
            json!({"amount": 5000}),
            Some("gvl_not-a-token"),
            401,
            "unauthenticated",
        ),
        (
            "a bidder creates an account",
            "/v1/accounts",
            json!({"name": "eve", "roles": ["admin"]}),
            Some(&bob),
            403,
            "forbidden",
        ),
    ];
    for (what, path, body, token, want_status, want_code) in cases {
        let (status, answer) = c.post_with(1, path, &body, None, token).await;
        assert_eq!((status, code(&answer)), (want_status, want_code), "{what}: {answer}");
    }
    let (status, answer) = c
        .post_with(1, "/v1/auctions/1/bids", &json!({"amount": 5000}), None, Some(&alice))
        .await;
    assert_eq!(
        (status, code(&answer)),
        (409, "seller_cannot_bid"),
        "the seller's own account: {answer}"
    );
    assert_eq!(c.get(1, "/v1/auctions/1").await.1, before, "nothing changed");

    log("admin routes need an admin's token");
    for (method, path) in [
        (reqwest::Method::POST, "/v1/admin/snapshot"),
        (reqwest::Method::GET, "/v1/admin/snapshot"),
        (reqwest::Method::DELETE, "/v1/cluster/nodes/1"),
    ] {
        for token in [None, Some(bob.as_str())] {
            let mut req = c.http.request(method.clone(), c.node(1).url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            let want = if token.is_some() { 403 } else { 401 };
            assert_eq!(resp.status().as_u16(), want, "{method} {path} with {token:?}");
        }
    }
}

#[tokio::test]
async fn tokens_are_shown_once_rotate_and_disable_at_once_and_never_reach_the_disk() {
    let _serial = serial().await;
    let mut c = TestCluster::start(1, TEST_RAFT).await;
    let (status, created) = create_account(
        &c,
        json!({"name": "kim", "roles": ["bidder", "seller"], "budget": 9000}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("gvl_"));
    let (status, shown) = c.get(1, "/v1/accounts/kim").await;
    assert_eq!(status, 401, "an account is not public: {shown}");
    let shown: Value = c
        .http
        .get(c.node(1).url("/v1/accounts/kim"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (shown["name"].as_str(), shown["budget"].as_u64()),
        (Some("kim"), Some(9000))
    );
    assert!(shown.get("token").is_none() && !shown.to_string().contains(&token));

    log("rotation: the old token stops working at once, the new one works");
    let rotated: Value = c
        .http
        .post(c.node(1).url("/v1/accounts/kim/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = rotated["token"].as_str().unwrap().to_string();
    assert_ne!(new, token);
    let lot = json!({"title": "t", "starting_price": 1, "increment": 1, "duration_secs": 60});
    assert_eq!(c.post_with(1, "/v1/auctions", &lot, None, Some(&token)).await.0, 401);
    assert_eq!(c.post_with(1, "/v1/auctions", &lot, None, Some(&new)).await.0, 201);

    log("disabling: the account's token stops working, its name is never reused");
    let resp = c
        .http
        .delete(c.node(1).url("/v1/accounts/kim"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(c.post_with(1, "/v1/auctions", &lot, None, Some(&new)).await.0, 401);
    let (status, answer) = create_account(&c, json!({"name": "kim", "roles": ["bidder"]})).await;
    assert_eq!((status, code(&answer)), (409, "account_exists"));

    log("the log and the snapshot hold token hashes only");
    let resp = c.admin(reqwest::Method::POST, 1, "/v1/admin/snapshot").await;
    assert_eq!(resp.status(), 200);
    c.nodes.get_mut(&1).unwrap().terminate();
    let mut found = Vec::new();
    for entry in walk(&c.node(1).data_dir) {
        let bytes = std::fs::read(&entry).unwrap();
        for t in [&token, &new] {
            if bytes.windows(t.len()).any(|w| w == t.as_bytes()) {
                found.push(entry.display().to_string());
            }
        }
    }
    assert!(found.is_empty(), "a token was stored in {found:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.file_name().is_some_and(|n| n != "admin.token") {
            out.push(path);
        }
    }
    out
}

fn sign(key: &SigningKey, path: &str, nonce: u64, body: &[u8]) -> String {
    let message = gavel_storage::book::accounts::signed_message("POST", path, nonce, body);
    base64::engine::general_purpose::STANDARD.encode(key.sign(message.as_bytes()).to_bytes())
}

async fn signed_post(
    c: &TestCluster,
    token: &str,
    path: &str,
    body: &Value,
    nonce: u64,
    signature: &str,
) -> (u16, Value) {
    let resp = c
        .http
        .post(c.node(1).url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("Gavel-Nonce", nonce.to_string())
        .header("Gavel-Signature", signature)
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn signed_bids_replays_budgets_and_the_audit() {
    let _serial = serial().await;
    let mut c = TestCluster::start(1, TEST_RAFT).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("lee.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["key", "generate", "--out"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let seed = base64::engine::general_purpose::STANDARD
        .decode(std::fs::read_to_string(&key_file).unwrap().trim())
        .unwrap();
    let key = SigningKey::from_bytes(&seed.try_into().unwrap());
    let (status, lee) = create_account(
        &c,
        json!({"name": "lee", "roles": ["bidder"], "public_key": public, "budget": 5000}),
    )
    .await;
    assert_eq!(status, 201, "{lee}");
    let lee = lee["token"].as_str().unwrap().to_string();
    let (status, _) = c.post(1, "/v1/auctions", &auction_body("lot", 600), None).await;
    assert_eq!(status, 201);
    let path = "/v1/auctions/1/bids";

    log("a keyed account must sign; a good signature passes; a replay or old nonce does not");
    let (status, answer) = c.post_with(1, path, &json!({"amount": 1000}), None, Some(&lee)).await;
    assert_eq!((status, code(&answer)), (401, "bad_signature"), "{answer}");
    let body = json!({"max_amount": 2000});
    let bytes = serde_json::to_vec(&body).unwrap();
    let signature = sign(&key, path, 10, &bytes);
    let (status, answer) = signed_post(&c, &lee, path, &body, 10, &signature).await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = signed_post(&c, &lee, path, &body, 10, &signature).await;
    assert_eq!((status, code(&answer)), (409, "replayed_nonce"), "{answer}");
    let other = serde_json::to_vec(&json!({"max_amount": 3000})).unwrap();
    let (status, answer) = signed_post(
        &c,
        &lee,
        path,
        &json!({"max_amount": 3000}),
        11,
        &sign(&key, path, 11, &bytes),
    )
    .await;
    assert_eq!(
        (status, code(&answer)),
        (401, "bad_signature"),
        "a signature over another body: {answer}"
    );
    assert_eq!(other.len(), bytes.len());

    log("the budget: a maximum that would pass it is refused with the exposure");
    let body = json!({"max_amount": 6000});
    let bytes = serde_json::to_vec(&body).unwrap();
    let (status, answer) = signed_post(&c, &lee, path, &body, 12, &sign(&key, path, 12, &bytes)).await;
    assert_eq!((status, code(&answer)), (409, "over_budget"), "{answer}");
    assert_eq!(
        (answer["error"]["exposure"].as_u64(), answer["error"]["budget"].as_u64()),
        (Some(6000), Some(5000))
    );

    log("the CLI signs with --key FILE");
    let node = c.node(1).addr.clone();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["auction", "--node", &node, "--token", &lee, "--key"])
        .arg(&key_file)
        .args(["bid", "1", "--max-amount", "4000", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    log("the history shows nonces and signatures, never the signed body (it may hold a maximum)");
    let (_, history) = c.get(1, path).await;
    let signed: Vec<&Value> = history["bids"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| !b["signed"].is_null())
        .collect();
    assert_eq!(signed.len(), 2, "{history}");
    assert!(signed
        .iter()
        .all(|b| b["signed"]["nonce"].is_u64() && b["signed"].get("body").is_none()));
    assert!(!history.to_string().contains("4000"));

    log("gavel audit verify: through the node (admin), then offline on the data dir");
    let audit = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
            .arg("audit")
            .arg("verify")
            .args(args)
            .output()
            .unwrap()
    };
    let out = audit(&["--node", &node, "--auction", "1", "--token", ADMIN_TOKEN]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("2 signed bids checked, 0 failed"),
        "{text}"
    );
    c.nodes.get_mut(&1).unwrap().terminate();
    let data = c.node(1).data_dir.to_str().unwrap().to_string();
    let out = audit(&["--data-dir", &data]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("2 signed bids checked, 0 failed"),
        "{text}"
    );
}

#[tokio::test]
async fn a_flooding_account_or_address_does_not_slow_the_others() {
    let _serial = serial().await;
    let config = format!(
        "{TEST_RAFT}[rate_limits]\nper_address_per_sec = 300\nper_address_burst = 300\nper_account_per_sec = 20\nper_account_burst = 20\n"
    );
    let c = TestCluster::start(1, &config).await;
    let (status, _) = c.post(1, "/v1/auctions", &auction_body("lot", 600), None).await;
    assert_eq!(status, 201);
    let flood = c.token("flood").await.unwrap();
    let calm = c.token("calm").await.unwrap();

    log("one account bids 200 times at once: past its bucket it gets 429 with Retry-After");
    let url = c.node(1).url("/v1/auctions/1/bids");
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let (http, url, flood) = (c.http.clone(), url.clone(), flood.clone());
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(&url)
                .bearer_auth(&flood)
                .json(&json!({"max_amount": 1000 + i}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry = resp.headers().get("retry-after").is_some();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, code(&body).to_string(), retry)
        }));
    }
    log("meanwhile another account bids, never limited, promptly");
    let mut latencies = Vec::new();
    for i in 0..10u64 {
        let started = Instant::now();
        let (status, body) = c
            .post_with(
                1,
                "/v1/auctions/1/bids",
                &json!({"max_amount": 100_000 + i * 1000}),
                None,
                Some(&calm),
            )
            .await;
        latencies.push(started.elapsed());
        assert!(status == 201 || code(&body) == "max_not_raised", "{status} {body}");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut limited = 0;
    for t in tasks {
        let (status, code, retry) = t.await.unwrap();
        if status == 429 {
            assert_eq!(code, "rate_limited");
            assert!(retry, "a 429 says when to retry");
            limited += 1;
        }
    }
    assert!(limited >= 100, "the flood was limited: {limited} of 200");
    latencies.sort();
    assert!(
        latencies[9] < Duration::from_secs(1),
        "the other account waited {:?}",
        latencies[9]
    );

    log("one address reads 600 times at once: past its bucket, 429; another address is served");
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let noisy = from("127.0.0.2");
    let mut tasks = Vec::new();
    for _ in 0..600 {
        let (http, url) = (noisy.clone(), c.node(1).url("/v1/auctions/1?consistency=stale"));
        tasks.push(tokio::spawn(async move {
            http.get(&url).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        }));
    }
    let quiet = from("127.0.0.3");
    let status = quiet
        .get(c.node(1).url("/v1/auctions/1"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let mut limited = 0;
    for t in tasks {
        if t.await.unwrap() == 429 {
            limited += 1;
        }
    }
    assert!(limited > 0, "the address flood was limited");
}

#[tokio::test]
async fn udp_updates_go_only_to_an_address_that_proved_it_wants_them() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    let (status, _) = c.post(1, "/v1/auctions", &auction_body("lot", 600), None).await;
    assert_eq!(status, 201);
    let mallory = c.token("mallory").await.unwrap();
    let victim = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let path = "/v1/auctions/1/subscriptions";
    let body = json!({"udp": victim.local_addr().unwrap().to_string(), "ttl_secs": 3600});

    log("subscribing without a token is refused; with one, the address gets one challenge");
    assert_eq!(c.post_with(1, path, &body, None, None).await.0, 401);
    let (status, answer) = c.post_with(1, path, &body, None, Some(&mallory)).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("pending")));
    log("the victim never answers: bids bring it nothing more");
    for amount in [1000, 1100, 1200] {
        assert_eq!(
            c.post(
                1,
                "/v1/auctions/1/bids",
                &json!({"bidder": "ann", "max_amount": amount}),
                None
            )
            .await
            .0,
            201
        );
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(1500), victim.recv_from(&mut buf)).await {
        got.push(n);
    }
    assert_eq!(
        got,
        vec![gavel_api::udp::PROOF_LEN],
        "one challenge of 24 bytes and nothing else"
    );

    log("a subscribe datagram with an unknown token gets no answer; a real one, a smaller challenge");
    let node_udp = c.node(1).udp_addr();
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let forged = gavel_api::udp::SubscribeFrame {
        subscribe: true,
        auction_id: 1,
        ttl_secs: 60,
        token: "gvl_this-is-not-anyones-token".into(),
    }
    .encode();
    attacker.send_to(&forged, &node_udp).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(800), attacker.recv_from(&mut buf))
            .await
            .is_err(),
        "no answer to an unknown token"
    );
    let real = gavel_api::udp::SubscribeFrame {
        subscribe: true,
        auction_id: 1,
        ttl_secs: 60,
        token: mallory.clone(),
    }
    .encode();
    attacker.send_to(&real, &node_udp).await.unwrap();
    let (n, _) = tokio::time::timeout(DEADLINE, attacker.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        n <= real.len(),
        "amplification at most 1x: {n} bytes for {}",
        real.len()
    );

    log("another account cannot delete a subscription it does not own");
    let owner = c.token("owner").await.unwrap();
    let sub = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mine = json!({"udp": sub.local_addr().unwrap().to_string(), "ttl_secs": 60});
    assert_eq!(c.post_with(1, path, &mine, None, Some(&owner)).await.0, 202);
    let (n, from) = tokio::time::timeout(DEADLINE, sub.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let challenge = gavel_api::udp::ProofFrame::decode(&buf[..n]).unwrap();
    let confirm = gavel_api::udp::ProofFrame {
        confirm: true,
        ..challenge
    };
    sub.send_to(&confirm.encode(), from).await.unwrap();
    c.wait_for("the owner's subscription to be active", DEADLINE, || async {
        (c.post_with(1, path, &mine, None, Some(&owner)).await.0 == 201).then_some(())
    })
    .await;
    // A poll that reached the node before the confirm datagram re-sends the same challenge
    // (in case the first was lost): anything that came meanwhile is that challenge again.
    while let Ok(got) = tokio::time::timeout(Duration::from_millis(300), sub.recv_from(&mut buf)).await {
        let (n, _) = got.unwrap();
        assert_eq!(
            gavel_api::udp::ProofFrame::decode(&buf[..n]).map(|f| f.cookie).ok(),
            Some(challenge.cookie),
            "only the same challenge may come again while the proof is pending"
        );
    }

    log("another account asking for the same address is refused at once, and sends it nothing");
    let (status, answer) = c.post_with(1, path, &mine, None, Some(&mallory)).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("subscription_taken")),
        "{answer}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(800), sub.recv_from(&mut buf))
            .await
            .is_err(),
        "the refused request sent the address nothing"
    );
    let resp = c
        .http
        .delete(c.node(1).url(path))
        .bearer_auth(&mallory)
        .json(&json!({"udp": mine["udp"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = c
        .http
        .delete(c.node(1).url(path))
        .bearer_auth(&owner)
        .json(&json!({"udp": mine["udp"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_node_started_without_a_secret_makes_one_and_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let udp = free_udp_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--udp",
            &format!("127.0.0.1:{udp}"),
        ])
        .env_remove("GAVEL_CLUSTER_SECRET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + DEADLINE;
    while !http
        .get(format!("{base}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "the node never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    use std::os::unix::fs::PermissionsExt;
    for file in ["cluster.secret", "admin.token"] {
        let meta = std::fs::metadata(data.join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file} is private");
    }
    for (method, path) in [
        (reqwest::Method::POST, "/v1/admin/snapshot"),
        (reqwest::Method::GET, "/v1/admin/snapshot"),
        (reqwest::Method::DELETE, "/v1/cluster/nodes/1"),
    ] {
        let status = http
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401, "{method} {path} is not open");
    }
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = http
            .post(format!("{base}/v1/admin/snapshot"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first admin's token never worked: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
