//! Node-to-node RPC, server side: the `/raft/*` routes on the node's HTTP port.
//!
//! Every route requires the cluster secret (`Authorization: Bearer <secret>`); a request
//! without it, or with a wrong one, gets 401 and never reaches Raft. Bodies are bincode
//! (see [`crate::network`]); an undecodable body gets 400. Every answer carries this
//! node's wall clock, and a leader's also its cluster time (headers
//! [`crate::clock::CLOCK_HEADER`], [`crate::clock::CLUSTER_TIME_HEADER`]): the caller's
//! clock samples.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use gavel_storage::{bincode_config, TypeConfig};
use gavel_storage::{SnapshotMeta, Vote};
use openraft::async_runtime::watch::WatchReceiver as _;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, TransferLeaderRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::front_door::{Answer, Forwarded, FrontDoor};
use crate::{secret_matches, ClusterError, Raft};

pub const RPC_APPEND_PATH: &str = "/raft/append";
pub const RPC_VOTE_PATH: &str = "/raft/vote";
pub const RPC_PRE_VOTE_PATH: &str = "/raft/pre-vote";
pub const RPC_SNAPSHOT_PATH: &str = "/raft/snapshot";
pub const RPC_TRANSFER_LEADER_PATH: &str = "/raft/transfer-leader";
/// A follower's request to the leader (see [`crate::front_door`]).
pub const RPC_FORWARD_PATH: &str = "/raft/forward";
/// A node installing a snapshot fetches the archive records it lacks (see [`fetch_archive`]).
pub const RPC_ARCHIVE_PATH: &str = "/raft/archive";
/// Bytes of archive records one `/raft/archive` answer carries, about.
pub const ARCHIVE_FETCH_BYTES: usize = 8 * 1024 * 1024;
/// How long one `/raft/archive` request may take.
pub const ARCHIVE_FETCH_TIMEOUT_MS: u64 = 30_000;
/// Largest forwarded request: a command is at most `proposer::COMMAND_BYTES_MAX`, a
/// heartbeat lists the worker's hosted auctions.
pub const RPC_FORWARD_BODY_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Largest RPC body accepted, but for a snapshot: a batch of entries.
pub const RPC_BODY_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Largest snapshot body: the largest snapshot file and its meta.
pub const RPC_SNAPSHOT_BODY_MAX_BYTES: usize = gavel_storage::snapshot::SNAPSHOT_FILE_MAX_BYTES as usize + 64 * 1024;

/// What `/raft/snapshot` carries: the leader's vote, the snapshot's meta, the whole file.
pub type SnapshotTransfer = (Vote, SnapshotMeta, Vec<u8>);
/// Most bytes decoding one RPC body (or answer) may allocate; see
/// `gavel_storage::decode_limited`. Strings count once, containers transiently.
pub const RPC_DECODE_MAX_BYTES: usize = 2 * RPC_BODY_MAX_BYTES;
/// The same for a snapshot transfer, whose one large field is the file itself.
pub const RPC_SNAPSHOT_DECODE_MAX_BYTES: usize = RPC_SNAPSHOT_BODY_MAX_BYTES + RPC_BODY_MAX_BYTES;

/// Decodes an RPC body or answer (bincode, serde mode) within [`RPC_DECODE_MAX_BYTES`].
pub fn decode_rpc<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    gavel_storage::decode_limited::<T, RPC_DECODE_MAX_BYTES>(bytes)
        .map(|(value, _)| value)
        .map_err(|e| e.to_string())
}

fn decode_snapshot_rpc<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    gavel_storage::decode_limited::<T, RPC_SNAPSHOT_DECODE_MAX_BYTES>(bytes)
        .map(|(value, _)| value)
        .map_err(|e| e.to_string())
}

/// An RPC error answer: `{"error":{"code","message"}}`, like every other route.
fn rpc_error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// When this node last accepted an AppendEntries from a leader. openraft restores
/// `current_leader` from the stored vote at start, so "a leader is known" alone does not
/// mean one is alive; readiness asks this instead.
#[derive(Debug)]
pub struct LeaderContact {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last contact, plus one; 0 = never.
    last_ms: AtomicU64,
}

impl Default for LeaderContact {
    fn default() -> Self {
        LeaderContact {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl LeaderContact {
    pub fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Milliseconds since the last contact, `None` if there was none.
    pub fn elapsed_ms(&self) -> Option<u64> {
        match self.last_ms.load(Ordering::Relaxed) {
            0 => None,
            last => Some((self.epoch.elapsed().as_millis() as u64 + 1).saturating_sub(last)),
        }
    }
}

#[derive(Clone)]
struct RpcState {
    raft: Raft,
    contact: Arc<LeaderContact>,
    door: FrontDoor,
}

/// The `/raft/*` routes. `secret` is the cluster secret; `None` refuses every request.
/// With `require_peer_cert`, a connection whose client certificate did not verify
/// against the peer CA is refused too (see [`crate::tls`]).
pub fn router(door: FrontDoor, secret: Option<Arc<str>>, require_peer_cert: bool) -> Router {
    Router::new()
        .route(RPC_APPEND_PATH, post(append))
        .route(RPC_VOTE_PATH, post(vote))
        .route(RPC_PRE_VOTE_PATH, post(pre_vote))
        .route(RPC_TRANSFER_LEADER_PATH, post(transfer_leader))
        .layer(DefaultBodyLimit::max(RPC_BODY_MAX_BYTES))
        .route(
            RPC_SNAPSHOT_PATH,
            post(snapshot).layer(DefaultBodyLimit::max(RPC_SNAPSHOT_BODY_MAX_BYTES)),
        )
        .route(
            RPC_FORWARD_PATH,
            post(forward).layer(DefaultBodyLimit::max(RPC_FORWARD_BODY_MAX_BYTES)),
        )
        .route(RPC_ARCHIVE_PATH, post(archive))
        .layer(middleware::from_fn_with_state(
            (secret, require_peer_cert),
            require_secret,
        ))
        .layer(middleware::from_fn_with_state(door.clone(), stamp_clock))
        .with_state(RpcState {
            raft: door.raft.clone(),
            contact: door.contact.clone(),
            door,
        })
}

/// The OpenAPI description of the `/raft/*` routes (merged into the node's; a test
/// checks it names exactly the routes of [`router`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa_axum::{router::OpenApiRouter, routes};
    let (_, spec) = OpenApiRouter::<RpcState>::new()
        .routes(routes!(append))
        .routes(routes!(vote))
        .routes(routes!(pre_vote))
        .routes(routes!(transfer_leader))
        .routes(routes!(forward))
        .routes(routes!(snapshot))
        .routes(routes!(archive))
        .split_for_parts();
    spec
}

/// Adds this node's clock (and a leader's cluster time) to every answer, read as the
/// answer leaves: the caller's round trip brackets that moment.
async fn stamp_clock(State(door): State<FrontDoor>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let (local_us, cluster_us) = match door.is_leader() {
        true => {
            let view = door.clock_view();
            (view.local_us, view.advertised_us())
        }
        false => (crate::clock::wall_us(), None),
    };
    let headers = response.headers_mut();
    headers.insert(crate::clock::CLOCK_HEADER, local_us.into());
    if let Some(cluster_us) = cluster_us {
        headers.insert(crate::clock::CLUSTER_TIME_HEADER, cluster_us.into());
    }
    response
}

async fn require_secret(
    State((secret, require_peer_cert)): State<(Option<Arc<str>>, bool)>,
    request: Request,
    next: Next,
) -> Response {
    let verified = request
        .extensions()
        .get::<crate::tls::PeerVerified>()
        .is_some_and(|v| v.0);
    if require_peer_cert && !verified {
        tracing::warn!(path = %request.uri().path(), "node RPC refused: no verified peer certificate");
        return rpc_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "node RPC needs a client certificate signed by the peer CA".into(),
        );
    }
    if !secret_matches(secret.as_deref(), request.headers()) {
        tracing::warn!(path = %request.uri().path(), "node RPC refused: missing or wrong cluster secret");
        return rpc_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong cluster secret".into(),
        );
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
    handle_with(decode_rpc(&body), call).await
}

async fn handle_with<Req, Resp, Fut>(decoded: Result<Req, String>, call: impl FnOnce(Req) -> Fut) -> Response
where
    Resp: Serialize,
    Fut: std::future::Future<Output = Resp>,
{
    let req = match decoded {
        Ok(req) => req,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                "invalid_rpc_body",
                format!("undecodable RPC body: {e}"),
            )
        }
    };
    match bincode::serde::encode_to_vec(call(req).await, bincode_config()) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => rpc_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("encode RPC response: {e}"),
        ),
    }
}

#[utoipa::path(
    post,
    path = "/raft/append",
    tag = "node-rpc",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "openraft's AppendEntriesRequest (bincode)"),
    security(("cluster_secret" = [])),
    responses(
        (status = 200, description = "The answer (bincode)", content_type = "application/octet-stream"),
        (status = 400, description = "`invalid_rpc_body`"),
        (status = 401, description = "`unauthorized`: no or a wrong cluster secret, or no verified peer certificate"),
    )
)]
async fn append(State(s): State<RpcState>, body: Bytes) -> Response {
    handle(body, |req: AppendEntriesRequest<TypeConfig>| async move {
        let result = s.raft.append_entries(req).await;
        if matches!(result, Ok(ref r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            s.contact.touch();
        }
        result
    })
    .await
}

#[utoipa::path(
    post,
    path = "/raft/vote",
    tag = "node-rpc",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "openraft's VoteRequest (bincode)"),
    security(("cluster_secret" = [])),
    responses(
        (status = 200, description = "The answer (bincode)", content_type = "application/octet-stream"),
        (status = 400, description = "`invalid_rpc_body`"),
        (status = 401, description = "`unauthorized`: no or a wrong cluster secret, or no verified peer certificate"),
    )
)]
async fn vote(State(s): State<RpcState>, body: Bytes) -> Response {
    handle(
        body,
        |req: VoteRequest<TypeConfig>| async move { s.raft.vote(req).await },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/raft/pre-vote",
    tag = "node-rpc",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "openraft's VoteRequest, as a pre-vote (bincode)"),
    security(("cluster_secret" = [])),
    responses(
        (status = 200, description = "The answer (bincode)", content_type = "application/octet-stream"),
        (status = 400, description = "`invalid_rpc_body`"),
        (status = 401, description = "`unauthorized`: no or a wrong cluster secret, or no verified peer certificate"),
    )
)]
async fn pre_vote(State(s): State<RpcState>, body: Bytes) -> Response {
    handle(body, |req: VoteRequest<TypeConfig>| async move {
        s.raft.pre_vote(req).await
    })
    .await
}

#[utoipa::path(
    post,
    path = "/raft/transfer-leader",
    tag = "node-rpc",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "openraft's TransferLeaderRequest (bincode)"),
    security(("cluster_secret" = [])),
    responses(
        (status = 200, description = "The answer (bincode)", content_type = "application/octet-stream"),
        (status = 400, description = "`invalid_rpc_body`"),
        (status = 401, description = "`unauthorized`: no or a wrong cluster secret, or no verified peer certificate"),
    )
)]
async fn transfer_leader(State(s): State<RpcState>, body: Bytes) -> Response {
    handle(body, |req: TransferLeaderRequest<TypeConfig>| async move {
        s.raft.handle_transfer_leader(req).await
    })
    .await
}

#[utoipa::path(
    post,
    path = "/raft/forward",
    tag = "node-rpc",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "A follower's typed request to the leader (a command, a read index, a heartbeat, a membership change) (bincode)"),
    security(("cluster_secret" = [])),
    responses(
        (status = 200, description = "The answer (bincode)", content_type = "application/octet-stream"),
        (status = 400, description = "`invalid_rpc_body`"),
        (status = 401, description = "`unauthorized`: no or a wrong cluster secret, or no verified peer certificate"),
    )
)]
async fn forward(State(s): State<RpcState>, body: Bytes) -> Response {
    handle(body, |req: Forwarded| async move {
        let answer: Result<Answer, ClusterError> = s.door.serve(req).await;
        answer
    })
    .await
}

#[utoipa::path(
    post,
    path = "/raft/snapshot",
    tag = "node-rpc",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The leader's vote, the snapshot's meta and the whole snapshot file (bincode)"),
    security(("cluster_secret" = [])),
    responses(
        (status = 200, description = "The answer (bincode)", content_type = "application/octet-stream"),
        (status = 400, description = "`invalid_rpc_body`"),
        (status = 401, description = "`unauthorized`: no or a wrong cluster secret, or no verified peer certificate"),
    )
)]
async fn snapshot(State(s): State<RpcState>, body: Bytes) -> Response {
    let decoded: Result<SnapshotTransfer, String> = decode_snapshot_rpc(&body);
    // The snapshot refers to archive records this node may not have yet: fetch them from
    // the leader first. If that fails the leader hears 503 and sends the snapshot again
    // later; what was fetched stays.
    if let Ok((vote, meta, bytes)) = &decoded {
        let leader = vote.leader_id().node_id;
        if let Err(e) = fetch_archive(&s, leader, meta, bytes).await {
            tracing::warn!(leader, error = %e, "could not fetch the archive the snapshot refers to");
            return rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("fetching the archive the snapshot refers to: {e}"),
            );
        }
    }
    handle_with(decoded, |(vote, meta, bytes): SnapshotTransfer| async move {
        let snapshot = gavel_storage::state_machine::Snapshot {
            meta,
            snapshot: std::io::Cursor::new(bytes),
        };
        let result = s.raft.install_full_snapshot(vote, snapshot).await;
        if result.is_ok() {
            s.contact.touch();
        }
        result
    })
    .await
}

/// What `/raft/archive` is asked: framed archive records from number `from` on.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ArchiveFetch {
    pub from: u64,
    pub max_bytes: u64,
}

#[utoipa::path(
    post,
    path = "/raft/archive",
    tag = "node-rpc",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "An ArchiveFetch: the first record wanted and a byte budget (bincode)"),
    security(("cluster_secret" = [])),
    responses(
        (status = 200, description = "Framed archive records from that number on, whole records only (bincode)", content_type = "application/octet-stream"),
        (status = 400, description = "`invalid_rpc_body`"),
        (status = 401, description = "`unauthorized`: no or a wrong cluster secret, or no verified peer certificate"),
    )
)]
async fn archive(State(s): State<RpcState>, body: Bytes) -> Response {
    handle(body, |req: ArchiveFetch| async move {
        let archive = s.door.sm.archive().clone();
        let max = (req.max_bytes as usize).min(ARCHIVE_FETCH_BYTES);
        tokio::task::spawn_blocking(move || archive.frames_from(req.from, max).map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
    })
    .await
}

/// Fetches from node `leader` the archive records the snapshot file `bytes` refers to
/// and this node lacks, appends them, and makes them durable.
async fn fetch_archive(s: &RpcState, leader: u64, meta: &SnapshotMeta, bytes: &[u8]) -> Result<(), String> {
    let file = gavel_storage::snapshot::decode_snapshot(bytes, "snapshot received").map_err(|e| e.to_string())?;
    let book = gavel_storage::AuctionBook::decode(file.payload(bytes)).map_err(|e| e.to_string())?;
    let (needed, _) = book.archive_ref();
    drop(book);
    let archive = s.door.sm.archive().clone();
    if archive.count() >= needed {
        return Ok(());
    }
    // A node joining has no membership of its own yet: the snapshot's names the leader.
    let addr = meta
        .last_membership
        .membership()
        .get_node(&leader)
        .map(|n| n.addr.clone())
        .or_else(|| {
            s.raft
                .metrics()
                .borrow_watched()
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|n| n.addr.clone())
        })
        .ok_or_else(|| format!("node {leader} is in neither the snapshot's membership nor this node's"))?;
    let to = crate::NodeAddr { id: leader, addr };
    let started = archive.count();
    while archive.count() < needed {
        let req = ArchiveFetch {
            from: archive.count() + 1,
            max_bytes: ARCHIVE_FETCH_BYTES as u64,
        };
        let answer: Result<Vec<u8>, String> = s
            .door
            .network
            .call_node(
                &to,
                RPC_ARCHIVE_PATH,
                &req,
                std::time::Duration::from_millis(ARCHIVE_FETCH_TIMEOUT_MS),
            )
            .await?;
        let frames = answer?;
        if frames.is_empty() {
            return Err(format!(
                "node {leader} has no archive records from {} on; the snapshot needs {needed}",
                req.from
            ));
        }
        let archive = archive.clone();
        tokio::task::spawn_blocking(move || archive.append_frames(&frames).map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())??;
    }
    let synced = archive.clone();
    tokio::task::spawn_blocking(move || synced.sync().map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())??;
    tracing::info!(
        leader,
        fetched = archive.count() - started,
        records = archive.count(),
        "fetched the archive records a snapshot refers to"
    );
    Ok(())
}

#[cfg(test)]
mod openapi_tests {
    #[test]
    fn the_description_names_every_rpc_route() {
        let spec = super::openapi();
        let mut described: Vec<&str> = spec.paths.paths.keys().map(String::as_str).collect();
        described.sort_unstable();
        let mut served = [
            super::RPC_APPEND_PATH,
            super::RPC_VOTE_PATH,
            super::RPC_PRE_VOTE_PATH,
            super::RPC_SNAPSHOT_PATH,
            super::RPC_TRANSFER_LEADER_PATH,
            super::RPC_FORWARD_PATH,
            super::RPC_ARCHIVE_PATH,
        ];
        served.sort_unstable();
        assert_eq!(described, served);
    }
}
