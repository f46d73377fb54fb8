//! `GET /v1/workers`: every registered worker with its capacity, the auctions the book
//! gives it, and its liveness as the leader sees it (liveness is the leader's soft state,
//! so a follower asks the leader through the front door).

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// A worker: its capacity, the auctions the book gives it, and its liveness as the
/// leader sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    pub node_id: u64,
    pub addr: String,
    pub udp_addr: String,
    pub max_auctions: u32,
    pub hosted: usize,
    pub auctions: Vec<u64>,
    /// Whether it heartbeat the leader within its grace period.
    pub live: bool,
    pub last_seen_ms_ago: Option<u64>,
    /// How many auctions it reported hosting in its last heartbeat.
    pub reported: Option<usize>,
}

/// `GET /v1/workers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Workers {
    pub workers: Vec<WorkerView>,
}

#[utoipa::path(
    get,
    path = "/v1/workers",
    operation_id = "list_workers",
    tag = "cluster",
    responses(
        (status = 200, description = "Every registered worker", body = Workers),
    )
)]
pub async fn list(State(s): State<AppState>) -> Result<Response, ApiError> {
    let liveness: HashMap<u64, _> = s.door.workers().await?.into_iter().map(|l| (l.node_id, l)).collect();
    let st = s.sm.read();
    let workers: Vec<_> = st
        .book
        .workers()
        .values()
        .map(|w| {
            let auctions = st.book.hosted_by(w.node_id);
            let seen = liveness.get(&w.node_id);
            WorkerView {
                node_id: w.node_id,
                addr: w.addr.clone(),
                udp_addr: w.udp_addr.clone(),
                max_auctions: w.max_auctions,
                hosted: auctions.len(),
                live: seen.is_some_and(|l| l.live),
                last_seen_ms_ago: seen.and_then(|l| l.last_seen_ms_ago),
                reported: seen.and_then(|l| l.reported),
                auctions,
            }
        })
        .collect();
    Ok(Json(Workers { workers }).into_response())
}
