//! `GET /v1/workers` and the internal routes workers use to reach the leader
//! (`/v1/internal/heartbeat`, `/v1/internal/clock`; cluster secret required).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gavel_raft::{cluster, secret_matches};
use openraft::async_runtime::watch::WatchReceiver as _;
use openraft::ServerState;
use serde_json::json;

use crate::error::ApiError;
use crate::forward::{forward, RawRequest};
use crate::json::parse_json;
use crate::state::AppState;
use crate::worker::{handle_clock, handle_heartbeat, ClockRequest, Heartbeat};

fn leading(s: &AppState) -> bool {
    s.raft.metrics().borrow_watched().state == ServerState::Leader
}

/// Workers with capacity, hosted auctions and liveness. Liveness is the leader's
/// knowledge, so a follower forwards this read to the leader.
pub async fn list(State(s): State<AppState>, req: RawRequest) -> Response {
    if !leading(&s) {
        return forward(&s, cluster::leader(&s.raft), &req).await;
    }
    let st = s.sm.read();
    let workers: Vec<_> = st
        .book
        .workers()
        .values()
        .map(|w| {
            let auctions = st.book.hosted_by(w.node_id);
            json!({
                "node_id": w.node_id,
                "addr": w.addr,
                "udp_addr": w.udp_addr,
                "max_auctions": w.max_auctions,
                "hosted": auctions.len(),
                "auctions": auctions,
                "live": s.registry.is_live(w.node_id),
                "last_seen_ms_ago": s.registry.last_seen_ms(w.node_id),
                "reported": s.registry.reported(w.node_id).map(|r| r.len()),
            })
        })
        .collect();
    Json(json!({ "workers": workers })).into_response()
}

/// Internal routes need the cluster secret and run on the leader.
pub fn internal_guard(s: &AppState, req: &RawRequest) -> Result<(), ApiError> {
    if !secret_matches(s.secret.as_deref(), &req.headers) {
        return Err(ApiError::Unauthorized("missing or wrong cluster secret".into()));
    }
    if s.tls.as_ref().is_some_and(|t| t.require_peer_cert) && !req.peer_verified {
        return Err(ApiError::Unauthorized(
            "node routes need a client certificate signed by the peer CA".into(),
        ));
    }
    if !leading(s) {
        return Err(ApiError::NoLeader("this node is not the leader".into()));
    }
    Ok(())
}

pub async fn heartbeat(State(s): State<AppState>, req: RawRequest) -> Result<Response, ApiError> {
    internal_guard(&s, &req)?;
    let hb: Heartbeat = parse_json(&req.body)?;
    handle_heartbeat(&s, hb).await?;
    Ok(Json(json!({ "ok": true })).into_response())
}

pub async fn clock(State(s): State<AppState>, req: RawRequest) -> Result<Response, ApiError> {
    internal_guard(&s, &req)?;
    let body: ClockRequest = parse_json(&req.body)?;
    let resp = handle_clock(&s, body).await?;
    Ok(Json(json!({ "ok": true, "rejected": matches!(resp, gavel_storage::Response::Rejected(_)) })).into_response())
}
