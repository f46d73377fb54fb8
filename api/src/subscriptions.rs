//! UDP subscriptions: `POST /v1/auctions/{id}/subscriptions` `{"udp": "ip:port",
//! "ttl_secs": 60}` (subscribe or renew), `DELETE` with `{"udp": …}` (unsubscribe), and
//! the task that turns subscribe datagrams into the same requests.
//!
//! Subscriptions are replicated (`Op::Subscribe`), so they survive the hosting worker's
//! failure. A datagram renewal is only proposed once less than half of the existing
//! subscription's TTL is left, so a client renewing often costs no Raft writes.

use std::net::SocketAddr;

use crate::json::ApiPath;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gavel_storage::{Op, Response as BookResponse};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::auctions::propose;
use crate::error::ApiError;
use crate::forward::RawRequest;
use crate::json::{now_ms, parse_json, rfc3339};
use crate::state::AppState;
use crate::udp::SubscribeFrame;

/// TTL used when a request gives none.
pub const SUBSCRIPTION_TTL_DEFAULT_SECS: u32 = 60;
/// Subscribe datagrams waiting to be proposed; more are dropped (clients renew).
pub const DATAGRAM_REQUESTS_MAX: usize = 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscribe {
    udp: String,
    ttl_secs: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Unsubscribe {
    udp: String,
}

pub async fn subscribe(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    let body: Subscribe = parse_json(&req.body)?;
    let op = Op::Subscribe {
        auction_id: id,
        addr: body.udp,
        ttl_secs: body.ttl_secs.unwrap_or(SUBSCRIPTION_TTL_DEFAULT_SECS),
    };
    match propose(&s, &req, |_, _| Ok(op)).await? {
        Err(forwarded) => Ok(forwarded),
        Ok(BookResponse::Subscribed {
            auction_id,
            addr,
            expires_at_ms,
        }) => Ok((
            StatusCode::CREATED,
            Json(json!({ "auction_id": auction_id, "udp": addr, "expires_at": rfc3339(expires_at_ms) })),
        )
            .into_response()),
        Ok(other) => Err(ApiError::Internal(format!(
            "unexpected response to subscribe: {other:?}"
        ))),
    }
}

pub async fn unsubscribe(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    let body: Unsubscribe = parse_json(&req.body)?;
    let op = Op::Unsubscribe {
        auction_id: id,
        addr: body.udp,
    };
    match propose(&s, &req, |_, _| Ok(op)).await? {
        Err(forwarded) => Ok(forwarded),
        Ok(_) => Ok(Json(json!({ "ok": true })).into_response()),
    }
}

/// Turns subscribe datagrams into subscription requests to this node's own API (which
/// forwards them to the leader). Runs until `requests` closes.
pub async fn run_datagram_requests(s: AppState, mut requests: mpsc::Receiver<(SubscribeFrame, SocketAddr)>) {
    while let Some((frame, from)) = requests.recv().await {
        let addr = from.to_string();
        if frame.subscribe {
            let ttl_ms = u64::from(frame.ttl_secs) * 1000;
            let fresh =
                s.sm.read()
                    .book
                    .subscribers(frame.auction_id, now_ms())
                    .iter()
                    .any(|(a, expires)| *a == addr && expires.saturating_sub(now_ms()) > ttl_ms / 2);
            if fresh {
                continue;
            }
        }
        let (method, body) = if frame.subscribe {
            (
                reqwest::Method::POST,
                json!({ "udp": addr, "ttl_secs": frame.ttl_secs }),
            )
        } else {
            (reqwest::Method::DELETE, json!({ "udp": addr }))
        };
        let url = format!(
            "http://{}/v1/auctions/{}/subscriptions",
            s.advertise(),
            frame.auction_id
        );
        match s.client.request(method, url).json(&body).send().await {
            Ok(resp) if resp.status().is_success() => {
                tracing::debug!(auction_id = frame.auction_id, %from, subscribe = frame.subscribe, "datagram subscription applied")
            }
            Ok(resp) => {
                tracing::debug!(auction_id = frame.auction_id, %from, status = %resp.status(), "datagram subscription refused")
            }
            Err(e) => tracing::debug!(error = %e, "datagram subscription not delivered"),
        }
    }
}
