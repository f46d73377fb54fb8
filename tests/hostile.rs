//! Hostile clients: slow and idle connections, too many connections, oversized and
//! malformed requests, bodies that declare absurd lengths, out-of-range values, control
//! characters, and probes for hidden maxima. Every answer is JSON with a stable code,
//! nothing stored changes, and ordinary clients keep being served.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes on a new connection and returns the status and the body as JSON.
async fn raw(addr: &str, request: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no JSON error code>")
}

#[tokio::test]
async fn every_error_is_json_with_a_stable_code() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    let (status, _) = c.post(1, "/v1/auctions", &auction_body("lot", 600), None).await;
    assert_eq!(status, 201);
    let addr = c.node(1).addr.clone();
    let http = &c.http;
    let url = |p: &str| c.node(1).url(p);

    log("bad path and query parameters");
    for (path, want) in [
        ("/v1/auctions/abc", "invalid_input"),
        ("/v1/auctions/1?consistency=stale&bogus=1", "invalid_input"),
        ("/v1/auctions?limit=many", "invalid_input"),
        ("/v1/auctions/99999999999999999999999", "invalid_input"),
        ("/v1/nowhere", "not_found"),
    ] {
        let (status, body) = c.get(1, path).await;
        assert_eq!(
            (status, code(&body)),
            (if want == "not_found" { 404 } else { 400 }, want),
            "{path}: {body}"
        );
    }

    log("wrong method, long target, too many and too large headers");
    let resp = http.put(url("/v1/auctions")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(code(&resp.json().await.unwrap()), "method_not_allowed");
    let long = format!("/v1/auctions?after={}", "1".repeat(10_000));
    let resp = http.get(url(&long)).send().await.unwrap();
    assert_eq!(resp.status(), 414);
    assert_eq!(code(&resp.json().await.unwrap()), "uri_too_long");
    let mut req = http.get(url("/v1/auctions"));
    for i in 0..150 {
        req = req.header(format!("x-filler-{i}"), "x");
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 431);
    assert_eq!(code(&resp.json().await.unwrap()), "headers_too_large");
    let resp = http
        .get(url("/v1/auctions"))
        .header("x-big", "y".repeat(40_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    assert_eq!(code(&resp.json().await.unwrap()), "headers_too_large");
    let (status, body) = raw(
        &addr,
        b"GET /v1/auctions HTTP/1.1\r\nhost: x\r\ncontent-length: zzz\r\n\r\n",
    )
    .await;
    assert!(
        status == 400 || status == 0,
        "a malformed request is refused or dropped: {status} {body}"
    );

    log("node RPC: errors are JSON; a body declaring a 2^62-byte string does not kill the node");
    let resp = http.post(url("/raft/append")).body(vec![1, 2, 3]).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(code(&resp.json().await.unwrap()), "unauthorized");
    for body in [vec![0xFFu8; 64], vec![253, 0, 0, 0, 0, 0, 0, 0, 0x40], {
        // A vote, then a log id whose next field claims 2^62 bytes.
        let mut b = vec![1, 1, 0];
        b.extend_from_slice(&[253, 0, 0, 0, 0, 0, 0, 0, 0x40]);
        b
    }] {
        for path in ["/raft/append", "/raft/vote", "/raft/snapshot"] {
            let resp = http
                .post(url(path))
                .bearer_auth(SECRET)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 400, "{path}");
            assert_eq!(code(&resp.json().await.unwrap()), "invalid_rpc_body");
        }
    }
    assert_eq!(c.get(1, "/health").await.0, 200, "the node survived");
    c.wait_ready(1).await;
}

#[tokio::test]
async fn out_of_range_values_and_control_characters_are_refused() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    let base = || auction_body("lot", 600);
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    log("times, durations and amounts beyond their caps");
    let cases = [
        (
            "start in year 9999",
            with("starts_at", json!("9999-01-01T00:00:00Z")),
            "invalid_input",
        ),
        (
            "an extension of 2^32-1 s",
            with(
                "soft_close",
                json!({"window_secs": 60, "extend_secs": 4294967295u64, "max_extensions": 3}),
            ),
            "invalid_input",
        ),
        (
            "starting price u64::MAX",
            with("starting_price", json!(u64::MAX)),
            "invalid_input",
        ),
        (
            "increment u64::MAX",
            with("increment", json!(u64::MAX)),
            "invalid_input",
        ),
        (
            "reserve u64::MAX",
            with("reserve_price", json!(u64::MAX)),
            "invalid_input",
        ),
        (
            "a title with ESC",
            with("title", json!("lamp\u{1b}[2J")),
            "invalid_input",
        ),
        ("a title with NUL", with("title", json!("lamp\u{0}")), "invalid_input"),
    ];
    for (what, body, want) in cases {
        let (status, answer) = c.post(1, "/v1/auctions", &body, None).await;
        assert_eq!((status, code(&answer)), (400, want), "{what}: {answer}");
    }
    log("names are accounts: one with control, bidi or invisible characters cannot be made");
    for name in ["\u{202E}mas", "sam\u{200B}", "ann\u{1b}]0;x\u{7}", "ann\nbob"] {
        let (status, answer) = c
            .post_with(
                1,
                "/v1/accounts",
                &json!({"name": name, "roles": ["bidder"]}),
                None,
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_eq!((status, code(&answer)), (400, "invalid_input"), "{name:?}: {answer}");
    }
    let (status, _) = c.post(1, "/v1/auctions", &base(), None).await;
    assert_eq!(status, 201);
    for (what, bid, want) in [
        (
            "an amount over the cap",
            json!({"bidder": "ann", "amount": u64::MAX}),
            "invalid_amount",
        ),
        (
            "a maximum over the cap",
            json!({"bidder": "ann", "max_amount": u64::MAX}),
            "invalid_amount",
        ),
    ] {
        let (status, answer) = c.post(1, "/v1/auctions/1/bids", &bid, None).await;
        assert_eq!((status, code(&answer)), (400, want), "{what}: {answer}");
    }
    let ann = c.token("ann").await;
    let (status, answer) = c
        .post_with(
            1,
            "/v1/auctions/1/bids",
            &json!({"bidder": "ann\u{1b}", "amount": 1000}),
            None,
            ann.as_deref(),
        )
        .await;
    assert_eq!((status, code(&answer)), (403, "identity_mismatch"), "{answer}");
    let (_, bids) = c.get(1, "/v1/auctions/1/bids").await;
    assert_eq!(bids["bids"], json!([]), "nothing was stored");

    log("a proxy maximum is never shown, not even in the answer to its owner");
    let (status, _) = c
        .post(
            1,
            "/v1/auctions/1/bids",
            &json!({"bidder": "ann", "max_amount": 2345}),
            None,
        )
        .await;
    assert_eq!(status, 201);
    let resp = c
        .http
        .post(c.node(1).url("/v1/auctions/1/bids"))
        .bearer_auth(c.token("ann").await.unwrap())
        .json(&json!({"bidder": "ann", "max_amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let text = resp.text().await.unwrap();
    assert!(text.contains("max_not_raised"), "{text}");
    assert!(!text.contains("2345"), "the maximum leaked: {text}");
    for path in ["/v1/auctions/1", "/v1/auctions/1/bids", "/v1/auctions"] {
        let text = c
            .http
            .get(c.node(1).url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!text.contains("2345"), "{path} leaked the maximum: {text}");
    }
}

/// A fake node that answers every request with `body` (an auction whose strings hold
/// control characters, as a compromised or old server might send).
async fn fake_node(body: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.to_string();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_cli_never_prints_raw_control_characters() {
    let evil = "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202E}nna\u{85}";
    let auction = json!({
        "id": 1, "title": evil, "seller": evil, "status": "open",
        "highest_bid": {"bidder": evil, "amount": 1000}, "bids": [],
        "auction": {"id": 1, "title": evil}, "auctions": [{"id": 1, "title": evil}],
    });
    let addr = fake_node(auction).await;
    for args in [
        vec!["auction", "show", "1"],
        vec!["auction", "show", "1", "--json"],
        vec!["auction", "list"],
        vec!["auction", "list", "--json"],
    ] {
        let mut full = vec!["auction", "--node"];
        let node = format!("http://{addr}");
        full.push(&node);
        full.extend_from_slice(&args[1..]);
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
            .args(&full)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        let raw: Vec<char> = text
            .chars()
            .filter(|c| (c.is_control() && *c != '\n') || ('\u{202A}'..='\u{202E}').contains(c))
            .collect();
        assert!(
            raw.is_empty(),
            "{args:?} printed raw control characters {raw:?}: {text}"
        );
        assert!(text.contains("nna"), "{args:?} still shows the text, escaped: {text}");
    }
}

/// Opens a connection and sends a request's headers one byte per second, forever.
async fn slowloris(addr: String) -> Option<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(&addr).await.ok()?;
    let request = b"GET /v1/auctions HTTP/1.1\r\nhost: x\r\nx-slow: ";
    for byte in request.iter().chain(std::iter::repeat(&b'a')) {
        if s.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        // A closed connection shows as a read of 0 bytes.
        let mut probe = [0u8; 256];
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => return Some(started.elapsed()),
            Err(_) => {}
        }
        if started.elapsed() > Duration::from_secs(60) {
            return None;
        }
    }
    None
}

#[tokio::test]
async fn slow_and_idle_connections_do_not_starve_ordinary_clients() {
    const SLOW: usize = 2000;
    let _serial = serial().await;
    let c = TestCluster::start(1, &format!("{TEST_RAFT}[http]\nheader_read_timeout_ms = 3000\n")).await;
    let (status, _) = c.post(1, "/v1/auctions", &auction_body("lot", 600), None).await;
    assert_eq!(status, 201);
    let addr = c.node(1).addr.clone();

    log("2000 connections sending their headers a byte a second");
    let slow: Vec<_> = (0..SLOW).map(|_| tokio::spawn(slowloris(addr.clone()))).collect();
    // Let them all connect.
    c.wait_for("the slow connections to be open", DEADLINE, || async {
        (c.metric(1, "gavel_http_connections ").await >= SLOW as u64 / 2).then_some(())
    })
    .await;

    log("ordinary clients meanwhile: p99 under 1 s");
    let mut latencies = Vec::new();
    for i in 0..200u64 {
        let started = Instant::now();
        let (status, _) = if i % 4 == 0 {
            c.post(
                1,
                "/v1/auctions/1/bids",
                &json!({"bidder": format!("b{}", i % 2), "max_amount": 1000 + i * 10}),
                None,
            )
            .await
        } else {
            c.get(1, "/v1/auctions/1").await
        };
        latencies.push(started.elapsed());
        assert!(status == 200 || status == 201 || status == 409, "status {status}");
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    log(&format!("p50 {:?}, p99 {:?}", latencies[latencies.len() / 2], p99));
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");

    log("the server cuts the slow connections off after the header-read timeout");
    let mut cut = 0;
    for t in slow {
        if let Some(after) = t.await.unwrap() {
            assert!(after < Duration::from_secs(20), "a slow connection lasted {after:?}");
            cut += 1;
        }
    }
    assert_eq!(cut, SLOW, "every slow connection was closed by the server");

    log("an idle keep-alive connection is closed too");
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("an idle keep-alive connection stayed open 20 s"),
        }
    }
    assert!(got > 0, "the request was answered first");
    assert!(started.elapsed() >= Duration::from_secs(2), "closed only once idle");
}

#[tokio::test]
async fn connections_over_the_limit_get_a_clear_refusal() {
    let _serial = serial().await;
    let c = TestCluster::start(1, &format!("{TEST_RAFT}[http]\nmax_connections = 40\n")).await;
    let addr = c.node(1).addr.clone();
    log("fill every connection slot with idle connections");
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    let (status, body) = c
        .wait_for("a refusal once the slots are full", DEADLINE, || async {
            let answer = raw(&addr, b"GET /ready HTTP/1.1\r\nhost: x\r\n\r\n").await;
            (answer.0 == 503).then_some(answer)
        })
        .await;
    assert_eq!((status, code(&body)), (503, "too_many_connections"));
    log("once they go, clients are served again");
    drop(held);
    c.wait_ready(1).await;
    assert!(c.metric(1, "gavel_http_connections_total{outcome=\"refused\"}").await >= 1);
}
