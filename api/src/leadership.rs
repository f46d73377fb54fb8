//! `POST /v1/cluster/leader`: moving the leadership to a chosen voter (what `etcdctl
//! move-leader` does), for maintenance and to test how a cluster treats a leader whose
//! clock is off. Admin only; any node takes it and the front door brings it to the leader.
//!
//! The new leader decides for itself whether it may lead: one whose clock is off the
//! majority's stamps no command and hands the leadership on at once (see
//! `gavel_raft::clock`), so the answer names whoever leads once the old leader has
//! stepped down.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::json::parse_json;
use crate::openapi::ErrorBody;
use crate::request::RawRequest;
use crate::state::AppState;

/// `POST /v1/cluster/leader`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveLeader {
    /// The voter to lead.
    id: u64,
}

/// Who leads after the move.
#[derive(Debug, Serialize, ToSchema)]
pub struct Moved {
    /// The node that leads once the previous leader stepped down: the voter asked for, or
    /// the one it handed the leadership to at once (its clock is off).
    pub leader: u64,
}

/// Moves the leadership to voter `id` and waits until another node leads.
#[utoipa::path(
    post,
    path = "/v1/cluster/leader",
    tag = "cluster",
    request_body = MoveLeader,
    security(("token" = [])),
    responses(
        (status = 200, description = "Moved (or the voter leads already)", body = Moved),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an admin's token is needed", body = ErrorBody),
        (status = 404, description = "`unknown_node`", body = ErrorBody),
        (status = 409, description = "`membership_conflict`: the node is a learner", body = ErrorBody),
        (status = 503, description = "`unavailable`: no other node took over in time; `no_leader`", body = ErrorBody),
    )
)]
pub async fn move_leader(State(s): State<AppState>, req: RawRequest) -> Result<Response, ApiError> {
    crate::auth::authenticate_admin(&s, &req)?;
    let body: MoveLeader = parse_json(&req.body)?;
    let leader = s.door.move_leader(body.id).await?;
    Ok(Json(Moved { leader }).into_response())
}
