//! Node-to-node RPC, server side: the `/raft/*` routes on the node's HTTP port.
//!
//! Every route requires the cluster secret (`Authorization: Bearer <secret>`); a request
//! without it, or with a wrong one, gets 401 and never reaches Raft. Bodies are bincode
//! (see [`crate::network`]); an undecodable body gets 400.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use gavel_storage::{bincode_config, TypeConfig};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{secret_matches, Raft};

pub const RPC_APPEND_PATH: &str = "/raft/append";
pub const RPC_VOTE_PATH: &str = "/raft/vote";
pub const RPC_SNAPSHOT_PATH: &str = "/raft/snapshot";
/// Largest RPC body accepted: a batch of entries or one snapshot chunk (3 MiB by default).
pub const RPC_BODY_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The `/raft/*` routes. `secret` is the cluster secret; `None` refuses every request.
pub fn router(raft: Raft, secret: Option<Arc<str>>) -> Router {
    Router::new()
        .route(RPC_APPEND_PATH, post(append))
        .route(RPC_VOTE_PATH, post(vote))
        .route(RPC_SNAPSHOT_PATH, post(snapshot))
        .layer(middleware::from_fn_with_state(secret, require_secret))
        .layer(DefaultBodyLimit::max(RPC_BODY_MAX_BYTES))
        .with_state(raft)
}

async fn require_secret(State(secret): State<Option<Arc<str>>>, request: Request, next: Next) -> Response {
    if !secret_matches(secret.as_deref(), request.headers()) {
        tracing::warn!(path = %request.uri().path(), "node RPC refused: missing or wrong cluster secret");
        return (StatusCode::UNAUTHORIZED, "missing or wrong cluster secret").into_response();
    }
    next.run(request).await
}

/// Decodes the request, runs `call`, encodes its result; an undecodable body is a 400.
async fn handle<Req, Resp, Fut>(body: Bytes, call: impl FnOnce(Req) -> Fut) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    Fut: std::future::Future<Output = Resp>,
{
    let req = match bincode::serde::decode_from_slice(&body, bincode_config()) {
        Ok((req, _)) => req,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("undecodable RPC body: {e}")).into_response(),
    };
    match bincode::serde::encode_to_vec(call(req).await, bincode_config()) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encode RPC response: {e}")).into_response(),
    }
}

async fn append(State(raft): State<Raft>, body: Bytes) -> Response {
    handle(body, |req: AppendEntriesRequest<TypeConfig>| async move {
        raft.append_entries(req).await
    })
    .await
}

async fn vote(State(raft): State<Raft>, body: Bytes) -> Response {
    handle(body, |req: VoteRequest<u64>| async move { raft.vote(req).await }).await
}

async fn snapshot(State(raft): State<Raft>, body: Bytes) -> Response {
    handle(body, |req: InstallSnapshotRequest<TypeConfig>| async move {
        raft.install_snapshot(req).await
    })
    .await
}
