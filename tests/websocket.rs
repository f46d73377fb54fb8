//! `GET /v1/auctions/{id}/ws` on a real node: events as SSE sends them, with resume; bids
//! over the socket with their request ids, the HTTP answer and its idempotency; another
//! socket sees a bid at once; a socket without a token only watches.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Stream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket with the messages received but not yet looked for: events and answers
/// arrive in either order.
struct Socket {
    ws: Stream,
    seen: Vec<Value>,
}

async fn open(c: &TestCluster, path: &str) -> Socket {
    let url = format!("ws://{}{path}", c.node(1).addr);
    let ws = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket connects")
        .0;
    Socket { ws, seen: Vec::new() }
}

/// The first message matching `want` (received earlier, or within a second).
async fn next_matching(socket: &mut Socket, want: impl Fn(&Value) -> bool) -> Value {
    if let Some(i) = socket.seen.iter().position(&want) {
        return socket.seen.remove(i);
    }
    tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match socket.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if want(&v) {
                        return v;
                    }
                    socket.seen.push(v);
                }
                Some(Ok(_)) => {}
                other => panic!("the socket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("the message came within 1 s")
}

async fn send(socket: &mut Socket, v: Value) {
    socket.ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn send_text(socket: &mut Socket, text: &str) {
    socket.ws.send(Message::Text(text.into())).await.unwrap();
}

#[tokio::test]
async fn bidding_and_watching_over_a_websocket() {
    let _serial = serial().await;
    let c = TestCluster::start(1, TEST_RAFT).await;
    let (status, a) = c.post(1, "/v1/auctions", &auction_body("lamp", 600), None).await;
    assert_eq!(status, 201, "{a}");
    let id = a["id"].as_u64().unwrap();
    let (ann, bob) = (c.token("ann").await.unwrap(), c.token("bob").await.unwrap());

    log("phase: a socket replays the retained events, then bids with request ids");
    let mut ann_ws = open(&c, &format!("/v1/auctions/{id}/ws?token={ann}")).await;
    let opened = next_matching(&mut ann_ws, |v| v["kind"] == "opened").await;
    assert_eq!(
        (opened["type"].as_str(), opened["seq"].as_u64()),
        (Some("event"), Some(2))
    );
    send(
        &mut ann_ws,
        json!({"type": "bid", "request_id": "r1", "amount": 1000, "idempotency_key": "ws-1"}),
    )
    .await;
    let result = next_matching(&mut ann_ws, |v| v["type"] == "bid_result").await;
    assert_eq!(result["request_id"], "r1");
    assert_eq!(
        (result["status"].as_u64(), result["body"]["leader"].as_str()),
        (Some(201), Some("ann")),
        "{result}"
    );
    let first_bid = result["body"]["bid_id"].clone();
    let event = next_matching(&mut ann_ws, |v| v["kind"] == "bid_accepted").await;
    assert_eq!(event["bid_id"], first_bid);

    log("phase: the same key again is the same bid, as over HTTP");
    send(
        &mut ann_ws,
        json!({"type": "bid", "request_id": "r2", "amount": 1000, "idempotency_key": "ws-1"}),
    )
    .await;
    let again = next_matching(&mut ann_ws, |v| v["type"] == "bid_result").await;
    assert_eq!(
        (again["request_id"].as_str(), &again["body"]["bid_id"]),
        (Some("r2"), &first_bid),
        "{again}"
    );

    log("phase: another socket's bid reaches this one within a second");
    let mut bob_ws = open(&c, &format!("/v1/auctions/{id}/ws?token={bob}&after=4")).await;
    send(&mut bob_ws, json!({"type": "bid", "request_id": "b1", "amount": 1100})).await;
    let mine = next_matching(&mut bob_ws, |v| v["type"] == "bid_result").await;
    assert_eq!(mine["status"], 201, "{mine}");
    let seen = next_matching(&mut ann_ws, |v| v["kind"] == "bid_accepted" && v["leader"] == "bob").await;
    assert_eq!(seen["price"], 1100);

    log("phase: a too-low bid gets the HTTP refusal; garbage gets an error message");
    send(&mut ann_ws, json!({"type": "bid", "request_id": "a3", "amount": 5})).await;
    let low = next_matching(&mut ann_ws, |v| v["type"] == "bid_result").await;
    assert_eq!(
        (low["status"].as_u64(), low["body"]["error"]["code"].as_str()),
        (Some(409), Some("bid_too_low"))
    );
    send_text(&mut bob_ws, "not json").await;
    let err = next_matching(&mut bob_ws, |v| v["type"] == "error").await;
    assert!(err["message"].as_str().unwrap().contains("invalid JSON"), "{err}");

    log("phase: resuming after a seq skips what was seen; without a token a socket only watches");
    let mut watcher = open(&c, &format!("/v1/auctions/{id}/ws?after=3")).await;
    let first = next_matching(&mut watcher, |v| v["type"] == "event").await;
    assert_eq!(first["seq"], 4, "{first}");
    send(&mut watcher, json!({"type": "bid", "request_id": "w1", "amount": 5000})).await;
    let refused = next_matching(&mut watcher, |v| v["type"] == "bid_result").await;
    assert_eq!(refused["status"], 401, "{refused}");

    log("phase: an unknown auction is refused before the upgrade");
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/v1/auctions/999/ws", c.node(1).addr)).await;
    assert!(refused.is_err());
}
