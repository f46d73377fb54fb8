//! Workers and live updates with real processes: UDP subscribers get every event in
//! `seq` order; `kill -9` of a hosting worker moves its auctions and pushes continue from
//! the new worker; `kill -9` of the leader leaves live workers' auctions where they are;
//! SSE resumes without gaps or repeats; garbage datagrams are counted and ignored.

mod common;

use std::time::Instant;

use common::*;
use gavel_api::udp::{EventFrame, ProofFrame, SubscribeFrame, PROOF_LEN};
use serde_json::{json, Value};
use tokio::net::UdpSocket;

fn live_config() -> String {
    format!("worker_grace_ms = 1000\n{TEST_RAFT}")
}

struct Subscriber {
    socket: UdpSocket,
    frames: Vec<EventFrame>,
}

impl Subscriber {
    async fn new() -> Self {
        Subscriber {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            frames: Vec::new(),
        }
    }

    fn addr(&self) -> String {
        self.socket.local_addr().unwrap().to_string()
    }

    /// Receives until `done` holds for the frames so far, or the deadline passes.
    async fn until(&mut self, what: &str, done: impl Fn(&[EventFrame]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        let mut buf = [0u8; 512];
        while !done(&self.frames) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; got seqs {:?}",
                self.seqs()
            );
            if let Ok(Ok((n, from))) = tokio::time::timeout(left, self.socket.recv_from(&mut buf)).await {
                if n == PROOF_LEN {
                    answer_challenge(&self.socket, &buf[..n], from).await;
                    continue;
                }
                self.frames.push(EventFrame::decode(&buf[..n]).expect("a valid frame"));
            }
        }
    }

    fn seqs(&self) -> Vec<u64> {
        self.frames.iter().map(|f| f.seq).collect()
    }
}

/// Sends the confirm for a challenge datagram back to where it came from.
async fn answer_challenge(socket: &UdpSocket, datagram: &[u8], from: std::net::SocketAddr) {
    let challenge = ProofFrame::decode(datagram).expect("a valid challenge");
    assert!(!challenge.confirm);
    let confirm = ProofFrame {
        confirm: true,
        ..challenge
    };
    socket.send_to(&confirm.encode(), from).await.unwrap();
}

/// Waits for the node's challenge on `socket` and answers it.
async fn prove(socket: &UdpSocket) {
    let mut buf = [0u8; 512];
    let (n, from) = tokio::time::timeout(DEADLINE, socket.recv_from(&mut buf))
        .await
        .expect("a challenge arrives")
        .unwrap();
    assert_eq!(n, PROOF_LEN, "the first datagram is the challenge");
    answer_challenge(socket, &buf[..n], from).await;
}

/// Subscribes `s` over HTTP as the account "watcher": the node challenges the address,
/// the subscriber answers, and renewing then answers 201 (active).
async fn subscribe(c: &TestCluster, node: u64, id: u64, s: &Subscriber) {
    let path = format!("/v1/auctions/{id}/subscriptions");
    let body = json!({"udp": s.addr(), "ttl_secs": 120});
    let token = c.token("watcher").await;
    let (status, answer) = c.post_with(node, &path, &body, None, token.as_deref()).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("pending")), "{answer}");
    prove(&s.socket).await;
    c.wait_for("the proven subscription to be active", DEADLINE, || async {
        let (status, answer) = c.post_with(node, &path, &body, None, token.as_deref()).await;
        (status == 201 && answer["status"] == "active").then_some(())
    })
    .await;
}

async fn create(c: &TestCluster, node: u64, secs: u64) -> Value {
    let (status, body) = c
        .post(
            node,
            "/v1/auctions",
            &json!({"seller": "sam", "title": "lot", "starting_price": 100, "increment": 10, "duration_secs": secs}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn bid(c: &TestCluster, node: u64, id: u64, bidder: &str, amount: u64) -> u16 {
    c.post(
        node,
        &format!("/v1/auctions/{id}/bids"),
        &json!({"bidder": bidder, "amount": amount}),
        None,
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_subscribers_get_every_event_in_order_and_sse_resumes_exactly() {
    let _serial = serial().await;
    let c = TestCluster::start(1, &live_config()).await;
    let a = create(&c, 1, 3).await;
    let id = a["id"].as_u64().unwrap();
    assert_eq!(a["worker"], 1);

    log("phase: one subscriber over HTTP, one by a subscribe datagram");
    let mut http_sub = Subscriber::new().await;
    subscribe(&c, 1, id, &http_sub).await;
    let mut dgram_sub = Subscriber::new().await;
    let udp_port = c.node(1).udp_addr();
    let watcher = c.token("watcher").await.unwrap();
    let frame = SubscribeFrame {
        subscribe: true,
        auction_id: id,
        ttl_secs: 120,
        token: watcher.clone(),
    }
    .encode();
    dgram_sub.socket.send_to(&frame, &udp_port).await.unwrap();
    prove(&dgram_sub.socket).await;
    c.wait_for("the proven datagram subscription to be active", DEADLINE, || async {
        let (status, _) = c
            .post_with(
                1,
                &format!("/v1/auctions/{id}/subscriptions"),
                &json!({"udp": dgram_sub.addr(), "ttl_secs": 120}),
                None,
                Some(&watcher),
            )
            .await;
        (status == 201).then_some(())
    })
    .await;
    // The subscription is a Raft write: wait until a bid's datagram reaches it.
    let start_seq = a["seq"].as_u64().unwrap();
    for (i, amount) in (0..10u64).map(|i| (i, 100 + i * 10)) {
        assert_eq!(
            bid(&c, 1, id, if i % 2 == 0 { "ann" } else { "bob" }, amount).await,
            201
        );
        if i == 0 {
            dgram_sub
                .until("the first datagram to the datagram subscriber", |f| !f.is_empty())
                .await;
        }
    }

    log("phase: every event after subscribing, in seq order, through the close");
    let closed = |f: &[EventFrame]| f.last().is_some_and(|l| l.kind == 5);
    http_sub.until("the closing datagram", closed).await;
    dgram_sub.until("the closing datagram", closed).await;
    let want: Vec<u64> = (start_seq + 1..=start_seq + 11).collect();
    assert_eq!(http_sub.seqs(), want, "bids then the close, no gaps, no repeats");
    assert_eq!(dgram_sub.seqs(), want[..].to_vec());
    let last = http_sub.frames.last().unwrap();
    assert_eq!(
        (last.amount, last.bidder.as_str(), last.detail),
        (190, "bob", 1),
        "closed: sold to bob at 190"
    );
    let late_ms = last.ts_ms.saturating_sub(last.ends_at_ms);
    log(&format!("closed {late_ms} ms after its end"));
    assert!(
        last.ts_ms >= last.ends_at_ms && late_ms <= 100,
        "a healthy worker closes within 100 ms of the end: {late_ms} ms"
    );
    let bid_frame = &http_sub.frames[3];
    assert_eq!((bid_frame.kind, bid_frame.amount), (3, 130));

    log("phase: SSE from the start, then resumed with Last-Event-ID, gets exactly the rest");
    let all = sse_seqs(&c, id, None).await;
    assert_eq!(all, (1..=start_seq + 11).collect::<Vec<_>>());
    let resumed = sse_seqs(&c, id, Some(start_seq + 4)).await;
    assert_eq!(resumed, (start_seq + 5..=start_seq + 11).collect::<Vec<_>>());
    let resp = c
        .http
        .get(
            c.node(1)
                .url(&format!("/v1/auctions/{id}/events?after={}", start_seq + 9)),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.text().await.unwrap().contains(&format!("id: {}", start_seq + 11)));

    log("phase: random bytes, truncated frames and bad checksums are counted and ignored");
    let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let good = SubscribeFrame {
        subscribe: true,
        auction_id: id,
        ttl_secs: 30,
        token: watcher.clone(),
    }
    .encode();
    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0u8; 1],
        b"hello".to_vec(),
        good[..12].to_vec(),
        bad_crc,
        vec![0xAB; 1500],
        vec![b'G', b'V', 9, 0x81],
    ];
    let before = c
        .metric(1, "gavel_udp_datagrams_total{outcome=\"inbound_invalid\"}")
        .await;
    for g in &garbage {
        junk.send_to(g, &udp_port).await.unwrap();
    }
    c.wait_for("every bad datagram counted", DEADLINE, || async {
        (c.metric(1, "gavel_udp_datagrams_total{outcome=\"inbound_invalid\"}")
            .await
            == before + garbage.len() as u64)
            .then_some(())
    })
    .await;
    assert_eq!(c.get(1, "/health").await.0, 200);
}

async fn sse_seqs(c: &TestCluster, id: u64, last_event_id: Option<u64>) -> Vec<u64> {
    let mut req = c.http.get(c.node(1).url(&format!("/v1/auctions/{id}/events")));
    if let Some(l) = last_event_id {
        req = req.header("Last-Event-ID", l.to_string());
    }
    let text = req.send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|s| s.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_its_auction_and_pushes_continue_from_the_new_one() {
    let _serial = serial().await;
    let mut c = TestCluster::start(3, &live_config()).await;
    let leader = c.leader().await;
    c.wait_live_workers(leader, 3).await;

    log("phase: auctions spread over the workers; pick one hosted by a follower");
    let mut target = None;
    let mut placed = Vec::new();
    // Placement spreads by spare capacity; with a 1 s grace a follower can briefly look
    // silent on a loaded machine, so keep creating (bounded) until one lands elsewhere.
    for _ in 0..10 {
        let a = create(&c, leader, 8).await;
        placed.push(a["worker"].clone());
        if a["worker"].as_u64() != Some(leader) {
            target = Some(a);
            break;
        }
    }
    let workers = c.get(leader, "/v1/workers").await.1;
    let a = target.unwrap_or_else(|| {
        panic!("no auction on a follower: placed on {placed:?}, leader {leader}, workers {workers}")
    });
    let (id, victim) = (a["id"].as_u64().unwrap(), a["worker"].as_u64().unwrap());
    let ends_at = a["ends_at"].as_str().unwrap().to_string();
    let mut sub = Subscriber::new().await;
    subscribe(&c, leader, id, &sub).await;
    assert_eq!(bid(&c, leader, id, "ann", 100).await, 201);
    sub.until("the first bid from the original worker", |f| {
        f.iter().any(|f| f.kind == 3)
    })
    .await;

    log(&format!(
        "phase: kill -9 worker {victim}; its auction moves to a live worker"
    ));
    c.nodes.get_mut(&victim).unwrap().kill();
    let new_worker = c
        .wait_for("auction reassigned", DEADLINE, || async {
            let (_, a) = c.get(leader, &format!("/v1/auctions/{id}")).await;
            a["worker"].as_u64().filter(|w| *w != victim)
        })
        .await;
    assert_ne!(new_worker, victim);
    assert_eq!(bid(&c, leader, id, "bob", 200).await, 201);
    sub.until("a bid pushed by the new worker", |f| {
        f.iter().any(|f| f.kind == 3 && f.amount == 200)
    })
    .await;

    log("phase: the auction still closes on time (within grace + 1 s of its end)");
    sub.until("the close", |f| f.iter().any(|f| f.kind == 5)).await;
    let close = sub.frames.iter().find(|f| f.kind == 5).unwrap();
    let end_ms = time::OffsetDateTime::parse(&ends_at, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp_nanos() as u64
        / 1_000_000;
    assert!(
        close.ts_ms >= end_ms && close.ts_ms <= end_ms + 2_000,
        "closed at {} for an end at {end_ms}",
        close.ts_ms
    );
    assert_eq!((close.amount, close.bidder.as_str()), (200, "bob"));
    let seqs = sub.seqs();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, no repeats: {seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_kill_keeps_live_workers_auctions_in_place() {
    let _serial = serial().await;
    let mut c = TestCluster::start(3, &live_config()).await;
    let leader = c.leader().await;
    c.wait_live_workers(leader, 3).await;
    let mut placed = Vec::new();
    for i in 0..6u64 {
        let a = create(&c, leader, 600).await;
        let id = a["id"].as_u64().unwrap();
        assert_eq!(bid(&c, leader, id, "ann", 100 + i).await, 201);
        placed.push((id, a["worker"].as_u64().unwrap()));
    }
    assert!(
        placed
            .iter()
            .map(|p| p.1)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 3,
        "spread: {placed:?}"
    );

    log("phase: kill -9 the leader; workers re-report to the new leader");
    c.nodes.get_mut(&leader).unwrap().kill();
    let new_leader = c.leader().await;
    c.wait_for("both survivors re-reported", DEADLINE, || async {
        let (_, w) = c.get(new_leader, "/v1/workers").await;
        let live: Vec<u64> = w["workers"]
            .as_array()?
            .iter()
            .filter(|w| w["live"] == json!(true))
            .filter_map(|w| w["node_id"].as_u64())
            .collect();
        (live.len() == 2 && !live.contains(&leader)).then_some(())
    })
    .await;

    log("phase: after the grace period only the dead leader's auctions moved");
    c.wait_for("the dead leader's auctions reassigned", DEADLINE, || async {
        for (id, _) in &placed {
            let (_, a) = c.get(new_leader, &format!("/v1/auctions/{id}")).await;
            if a["worker"].as_u64()? == leader {
                return None;
            }
        }
        Some(())
    })
    .await;
    for (id, worker) in &placed {
        let (_, a) = c.get(new_leader, &format!("/v1/auctions/{id}")).await;
        if *worker != leader {
            assert_eq!(
                a["worker"].as_u64(),
                Some(*worker),
                "auction {id} stayed on live worker {worker}"
            );
        }
        assert_eq!(a["bid_count"], 1, "auction {id} kept its bid");
    }
    let log_text = std::fs::read_to_string(&c.node(new_leader).log_path).unwrap();
    assert!(
        log_text.contains("worker reported to this leader"),
        "the re-report is visible in the log"
    );
    assert!(log_text.contains("reassigning auction from a silent worker"));
}
