//! `GET /v1/auctions/{id}/ws`: one WebSocket per auction, for watching and bidding.
//!
//! - **Events.** The node pushes the auction's events as text messages,
//!   `{"type": "event", …}` with the same fields as an SSE event (`crate::sse::event_json`),
//!   from the newest retained event after `?after=SEQ` (default: all retained), then live.
//! - **Bids.** The client sends `{"type": "bid", "request_id": "r1", "amount": N,
//!   "max_amount": N, "idempotency_key": "k", "nonce": N, "signature": "…"}` (all but
//!   `type` and `request_id` optional, as in the HTTP bid). Each gets
//!   `{"type": "bid_result", "request_id": "r1", "status": 201, "body": {…}}` with the
//!   status and body the HTTP route `POST /v1/auctions/{id}/bids` would answer: the same
//!   code runs, with the same idempotency (the request digest is of the same method, path
//!   and body), as the account whose token was given at connect (`Authorization: Bearer`,
//!   or `?token=` since browsers cannot set headers on a WebSocket). Without a token the
//!   socket only watches; a bid gets the 401 answer.
//! - **Bounds.** Outgoing messages wait in a queue of [`WS_SEND_QUEUE_MAX`]. A client that
//!   lets it fill (it reads slower than the auction moves) is disconnected at once, which
//!   costs the node nothing more; it reconnects with `?after=` the last seq it saw. At most
//!   [`WS_BIDS_IN_FLIGHT_MAX`] bids of one socket run at once (more get a 429 answer), a
//!   message is at most [`WS_MESSAGE_MAX_BYTES`], and the node pings every
//!   [`WS_PING_INTERVAL_SECS`]; a client silent for [`WS_IDLE_TIMEOUT_SECS`] (no pong, no
//!   message) is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::error::ApiError;
use crate::json::{ApiPath, ApiQuery};
use crate::request::RawRequest;
use crate::sse::{event_json, Feed};
use crate::state::AppState;

/// Outgoing messages waiting for a slow client, at most.
pub const WS_SEND_QUEUE_MAX: usize = 256;
/// Bids of one socket running at once, at most.
pub const WS_BIDS_IN_FLIGHT_MAX: usize = 16;
/// Largest message a client may send.
pub const WS_MESSAGE_MAX_BYTES: usize = 16 * 1024;
pub const WS_PING_INTERVAL_SECS: u64 = 15;
/// A client that sends nothing (not even a pong) for this long is closed.
pub const WS_IDLE_TIMEOUT_SECS: u64 = 45;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WsParams {
    /// Send the retained events after this seq first (default: all retained).
    after: Option<u64>,
    /// The bidding account's token (browsers cannot set headers on a WebSocket);
    /// `Authorization: Bearer` works too. Without one the socket only watches.
    token: Option<String>,
}

/// A bid sent over the socket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BidMessage {
    request_id: String,
    amount: Option<u64>,
    max_amount: Option<u64>,
    idempotency_key: Option<String>,
    nonce: Option<u64>,
    signature: Option<String>,
}

/// Upgrades to a WebSocket for auction `id`.
#[utoipa::path(
    get,
    path = "/v1/auctions/{id}/ws",
    operation_id = "open_websocket",
    tag = "live",
    params(("id" = u64, Path, description = "The auction's id"), WsParams),
    security((), ("token" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol. The node sends `{\"type\":\"event\", …Event}` \
            messages; the client sends `{\"type\":\"bid\",\"request_id\",\"amount\",\"max_amount\",\"idempotency_key\", \
            \"nonce\",\"signature\"}` and gets `{\"type\":\"bid_result\",\"request_id\",\"status\",\"body\"}` with the \
            HTTP bid's status and body (docs/api.md, \"WebSocket\")"),
        (status = 400, description = "Not a WebSocket upgrade, or a bad query", body = crate::openapi::ErrorBody),
        (status = 404, description = "`unknown_auction`", body = crate::openapi::ErrorBody),
    )
)]
pub async fn connect(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(params): ApiQuery<WsParams>,
    headers: HeaderMap,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let after = params.after.unwrap_or(0);
    let feed = Feed::start(s.clone(), id, after)?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .or(params.token);
    let peer = peer.map(|axum::Extension(ConnectInfo(addr))| addr);
    Ok(ws
        .max_message_size(WS_MESSAGE_MAX_BYTES)
        .on_upgrade(move |socket| session(s, id, token, peer, feed, socket))
        .into_response())
}

async fn session(
    s: AppState,
    id: u64,
    token: Option<String>,
    peer: Option<SocketAddr>,
    mut feed: Feed,
    socket: WebSocket,
) {
    let _open = crate::metrics::OpenStream::new(crate::metrics::TRANSPORT_WEBSOCKET);
    let dropped = |reason: &str| crate::metrics::WS_DROPPED.with_label_values(&[reason]).inc();
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(WS_SEND_QUEUE_MAX);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let bids = Arc::new(Semaphore::new(WS_BIDS_IN_FLIGHT_MAX));
    let mut ping = tokio::time::interval(Duration::from_secs(WS_PING_INTERVAL_SECS));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    let mut feeding = true;
    loop {
        tokio::select! {
            event = feed.next(), if feeding => {
                let Some(event) = event else {
                    feeding = false;
                    continue;
                };
                let mut v = serde_json::to_value(event_json(&event)).expect("an event serializes");
                v["type"] = json!("event");
                if tx.try_send(Message::Text(v.to_string().into())).is_err() {
                    tracing::debug!(auction_id = id, seq = event.seq, "WebSocket client fell behind; closing it");
                    dropped(crate::metrics::WS_DROPPED_SEND_QUEUE_FULL);
                    writer.abort();
                    let _ = writer.await;
                    return;
                }
            }
            message = incoming.next() => {
                let Some(Ok(message)) = message else { break };
                heard = Instant::now();
                match message {
                    Message::Text(text) => {
                        let answer = match serde_json::from_str::<Value>(&text) {
                            Ok(v) if v["type"] == json!("bid") => {
                                let mut v = v;
                                v.as_object_mut().map(|o| o.remove("type"));
                                match serde_json::from_value::<BidMessage>(v) {
                                    Ok(bid) => {
                                        let Ok(permit) = bids.clone().try_acquire_owned() else {
                                            let busy = ApiError::RateLimited {
                                                message: format!("at most {WS_BIDS_IN_FLIGHT_MAX} bids of one socket at once"),
                                                retry_after_secs: 1,
                                            };
                                            let _ = tx.send(bid_result(&bid.request_id, busy.into_response()).await).await;
                                            continue;
                                        };
                                        let (s, tx, token) = (s.clone(), tx.clone(), token.clone());
                                        tokio::spawn(async move {
                                            let answer = place(&s, id, token.as_deref(), peer, &bid).await;
                                            let _ = tx.send(bid_result(&bid.request_id, answer).await).await;
                                            drop(permit);
                                        });
                                        continue;
                                    }
                                    Err(e) => error_message(&format!("invalid bid message: {e}")),
                                }
                            }
                            Ok(_) => error_message("send {\"type\": \"bid\", \"request_id\": …, \"amount\": …}"),
                            Err(e) => error_message(&format!("invalid JSON: {e}")),
                        };
                        if tx.try_send(answer).is_err() {
                            dropped(crate::metrics::WS_DROPPED_SEND_QUEUE_FULL);
                            break;
                        }
                    }
                    Message::Close(_) => break,
                    // Pongs (and pings, answered by the library) only show the client lives.
                    _ => {}
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > Duration::from_secs(WS_IDLE_TIMEOUT_SECS) {
                    tracing::debug!(auction_id = id, "WebSocket client silent; closing it");
                    dropped(crate::metrics::WS_DROPPED_IDLE);
                    break;
                }
                if tx.try_send(Message::Ping(Bytes::new())).is_err() {
                    dropped(crate::metrics::WS_DROPPED_SEND_QUEUE_FULL);
                    writer.abort();
                    let _ = writer.await;
                    return;
                }
            }
        }
    }
    let _ = tx.try_send(Message::Close(None));
    drop(tx);
    let _ = writer.await;
}

fn error_message(message: &str) -> Message {
    Message::Text(json!({ "type": "error", "message": message }).to_string().into())
}

/// The HTTP answer `answer` as a `bid_result` message.
async fn bid_result(request_id: &str, answer: Response) -> Message {
    let status = answer.status().as_u16();
    let body = axum::body::to_bytes(answer.into_body(), WS_MESSAGE_MAX_BYTES * 4)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    Message::Text(
        json!({ "type": "bid_result", "request_id": request_id, "status": status, "body": body })
            .to_string()
            .into(),
    )
}

/// Runs the HTTP bid route's code for `bid`, as the socket's account.
async fn place(s: &AppState, id: u64, token: Option<&str>, peer: Option<SocketAddr>, bid: &BidMessage) -> Response {
    if let Some(ip) = peer.map(|p| p.ip().to_canonical()) {
        if let Err(refused) = s.limits.check_address(ip) {
            return refused.into_response();
        }
    }
    let mut body = serde_json::Map::new();
    if let Some(amount) = bid.amount {
        body.insert("amount".into(), json!(amount));
    }
    if let Some(max) = bid.max_amount {
        body.insert("max_amount".into(), json!(max));
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut set = |name: &'static str, value: Option<String>| {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, v);
        }
    };
    set("authorization", token.map(|t| format!("Bearer {t}")));
    set(crate::auctions::IDEMPOTENCY_HEADER, bid.idempotency_key.clone());
    set(crate::auth::NONCE_HEADER, bid.nonce.map(|n| n.to_string()));
    set(crate::auth::SIGNATURE_HEADER, bid.signature.clone());
    let Ok(uri) = format!("/v1/auctions/{id}/bids").parse::<Uri>() else {
        return ApiError::Internal("bid path".into()).into_response();
    };
    let req = RawRequest {
        method: Method::POST,
        uri,
        headers,
        body: Bytes::from(Value::Object(body).to_string()),
        peer,
        peer_verified: false,
    };
    let started = Instant::now();
    let resp = match crate::bids::place_bid(State(s.clone()), ApiPath(id), req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    crate::metrics::observe_ws_bid(resp.status(), started.elapsed());
    resp
}
