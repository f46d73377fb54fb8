//! `GET /v1/workers`: every registered worker with its capacity, the auctions the book
//! gives it, and its liveness as the leader sees it (liveness is the leader's soft state,
//! so a follower asks the leader through the front door).

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

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
            json!({
                "node_id": w.node_id,
                "addr": w.addr,
                "udp_addr": w.udp_addr,
                "max_auctions": w.max_auctions,
                "hosted": auctions.len(),
                "auctions": auctions,
                "live": seen.is_some_and(|l| l.live),
                "last_seen_ms_ago": seen.and_then(|l| l.last_seen_ms_ago),
                "reported": seen.and_then(|l| l.reported),
            })
        })
        .collect();
    Ok(Json(json!({ "workers": workers })).into_response())
}
