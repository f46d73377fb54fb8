//! Cluster and operations endpoints: `/health`, `/ready`, `/metrics`, `/v1/cluster`,
//! `/v1/cluster/nodes`, `/v1/admin/snapshot`.
//!
//! Membership changes and admin actions need an admin account's token
//! (`Authorization: Bearer <token>`); adding a node also accepts the cluster secret, which
//! a joining node presents.

use openraft::async_runtime::watch::WatchReceiver as _;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::json::ApiPath;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gavel_raft::{cluster, secret_matches};
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::json::parse_json;
use crate::openapi::ErrorBody;
use crate::request::RawRequest;
use crate::state::AppState;

/// How long readiness waits for the Raft core to say what is committed.
pub const CORE_ANSWER_MS: u64 = 1_000;
/// How long `POST /v1/admin/snapshot` waits for the snapshot to be written.
pub const SNAPSHOT_WAIT_MS: u64 = 30_000;

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `stopped` (with `error`).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<HealthError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthError {
    pub code: &'static str,
    pub message: String,
    /// The status writes get meanwhile.
    pub status: u16,
}

/// 200 while the process can do its job; 503 once its Raft core has stopped (a full
/// disk, a storage error), so that a supervisor notices and restarts it.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "The process can do its job", body = Health),
        (status = 503, description = "Its Raft core has stopped; restart it", body = Health),
    )
)]
pub async fn health(State(s): State<AppState>) -> Response {
    match s.stopped() {
        None => Json(Health {
            status: "ok",
            error: None,
        })
        .into_response(),
        Some(problem) => {
            let (status, code) = problem.status_and_code();
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "stopped",
                    error: Some(HealthError {
                        code,
                        message: problem.to_string(),
                        status: status.as_u16(),
                    }),
                }),
            )
                .into_response()
        }
    }
}

/// On the leader: milliseconds since a quorum last acknowledged it.
fn quorum_ack_ms(m: &openraft::RaftMetrics<gavel_storage::TypeConfig>) -> Option<u64> {
    use openraft::Instant as _;
    m.last_quorum_acked.as_ref().map(|at| at.elapsed().as_millis() as u64)
}

/// `GET /ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
    /// false once this node was removed from the cluster.
    pub member: bool,
    pub leader: Option<u64>,
    /// On the leader: ms since a quorum last acknowledged it.
    pub quorum_ack_ms: Option<u64>,
    pub applied_index: Option<u64>,
    pub commit_index: Option<u64>,
    /// This node's clock minus cluster time, ms (on the leader: the time a majority of
    /// voters agree on; on a follower: the leader's); null while unknown.
    pub clock_skew_ms: Option<i64>,
    /// Cluster time is known here (see `clock_skew_ms`).
    pub clock_synchronized: bool,
    /// This node's clock is more than `max_clock_skew_ms` off: as leader it stamps no
    /// command (not ready) and hands its leadership over.
    pub clock_skewed: bool,
}

#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "A live leader is known and this node has applied what is committed", body = Ready),
        (status = 503, description = "Not ready (no live leader, catching up, removed, or a leader whose clock is off: see clock_skew_ms)", body = Ready),
    )
)]
pub async fn ready(State(s): State<AppState>) -> Response {
    let body = readiness(&s).await;
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// How far applying may trail the commit index on a node that has caught up once, and
/// still be ready. Entries committed a moment ago are normally being applied (under load
/// a follower is almost always a few entries behind): without this, `/ready` flickers to
/// 503 and a load balancer drops a healthy node. A node further behind is catching up.
pub const READY_APPLY_LAG_MAX: u64 = 256;

/// Whether this node is ready, and why (what `GET /ready`, the `gavel_ready` gauge and
/// the systemd readiness notification all use): a live leader is known, it is a member,
/// and it has applied everything it knows to be committed — once, after it started;
/// from then on, it stays within [`READY_APPLY_LAG_MAX`] entries of it.
pub async fn readiness(s: &AppState) -> Ready {
    let m = s.raft.metrics().borrow_watched().clone();
    // A core that does not answer in time is not ready (and does not hang the caller).
    let answer = tokio::time::timeout(Duration::from_millis(CORE_ANSWER_MS), cluster::committed(&s.raft)).await;
    let answered = answer.is_ok();
    let committed = answer.ok().flatten().map(|c| c.index);
    let applied = m.last_applied.map(|a| a.index);
    let has_leader = has_live_leader(s, &m);
    let member = !s.is_removed();
    // A leader that may not stamp commands takes no writes (see gavel_raft::clock).
    let clock = s.door.clock_view();
    let clock_ok = m.state != ServerState::Leader || clock.stamp().is_ok();
    let others_ok = answered && has_leader && member && clock_ok;
    let caught_up = if applied >= committed {
        if others_ok {
            s.caught_up_once.store(true, Ordering::Relaxed);
        }
        true
    } else {
        let behind = committed.unwrap_or(0).saturating_sub(applied.unwrap_or(0));
        s.caught_up_once.load(Ordering::Relaxed) && behind <= READY_APPLY_LAG_MAX
    };
    Ready {
        ready: others_ok && caught_up,
        member,
        leader: m.current_leader,
        quorum_ack_ms: quorum_ack_ms(&m),
        applied_index: applied,
        commit_index: committed,
        clock_skew_ms: clock.offset_ms(),
        clock_synchronized: clock.bounds_us.is_some(),
        clock_skewed: clock.skewed(),
    }
}

/// Whether a live leader is known and the Raft core runs. openraft restores
/// `current_leader` (even this node's own leadership) from the stored vote at start,
/// before any peer has answered, so "live" is checked: a leader must have heard from a
/// quorum, a follower from the leader, within an election timeout.
pub fn has_live_leader(s: &AppState, m: &openraft::RaftMetrics<gavel_storage::TypeConfig>) -> bool {
    let recent = |ms: Option<u64>| ms.is_some_and(|ms| ms <= s.raft.config().election_timeout_max);
    // A leader alone in its cluster is its own quorum: nothing acknowledges it while it
    // is idle, and nothing needs to.
    let alone = m.membership_config.membership().voter_ids().eq([m.id]);
    let leader_alive = match m.state {
        ServerState::Leader => alone || recent(quorum_ack_ms(m)),
        _ => recent(s.door.contact.elapsed_ms()),
    };
    m.current_leader.is_some() && leader_alive && m.running_state.is_ok()
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// One member of the cluster, as `GET /v1/cluster` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    pub id: u64,
    pub addr: String,
    /// `leader`, `follower` or `learner`.
    pub role: String,
    pub voter: bool,
    /// The newest log index known to be replicated to this member (the leader's view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<u64>,
    /// Entries this member is behind the leader's log (the leader's view; null when the
    /// leader is not known or did not answer).
    pub lag: Option<u64>,
}

/// `GET /v1/cluster`: the cluster as this node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterView {
    pub cluster_name: String,
    pub node_id: u64,
    /// This node's role: `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub leader: Option<gavel_raft::NodeAddr>,
    pub term: u64,
    pub commit_index: Option<u64>,
    pub last_log_index: Option<u64>,
    /// This node's applied index, and the hash of its state there.
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub state_hash: String,
    pub member: bool,
    pub membership_log_index: Option<u64>,
    pub members: Vec<Member>,
}

/// How long a follower waits for the leader's view of replication.
const LEADER_VIEW_TIMEOUT_MS: u64 = 1_000;

/// The replication view (matched index, lag) of each member: this node's own on the
/// leader, else the leader's, asked over HTTP (best effort).
async fn replication_view(s: &AppState, local: &[Member]) -> Vec<Member> {
    let m = s.raft.metrics().borrow_watched().clone();
    if m.state == ServerState::Leader {
        let last = m.last_log_index.unwrap_or(0);
        return local
            .iter()
            .cloned()
            .map(|mut member| {
                member.lag = member.matched_index.map(|i| last.saturating_sub(i));
                member
            })
            .collect();
    }
    let Some(leader) = cluster::leader(&s.raft) else {
        return local.to_vec();
    };
    let url = format!("{}://{}/v1/cluster", s.scheme, leader.addr);
    let ask = s
        .client
        .get(url)
        .timeout(Duration::from_millis(LEADER_VIEW_TIMEOUT_MS))
        .send();
    let theirs = match ask.await {
        Ok(resp) if resp.status().is_success() => resp.json::<ClusterView>().await.ok(),
        _ => None,
    };
    let Some(theirs) = theirs.filter(|v| v.role == "leader") else {
        return local.to_vec();
    };
    local
        .iter()
        .cloned()
        .map(|mut member| {
            if let Some(seen) = theirs.members.iter().find(|t| t.id == member.id) {
                member.matched_index = seen.matched_index;
                member.lag = seen.lag;
            }
            member
        })
        .collect()
}

/// `GET /v1/cluster`.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "cluster",
    responses((status = 200, description = "The cluster as this node sees it; lag is the leader's view", body = ClusterView))
)]
pub async fn cluster_info(State(s): State<AppState>) -> Json<ClusterView> {
    let view = local_view(&s).await;
    let members = replication_view(&s, &view.members).await;
    Json(ClusterView { members, ..view })
}

/// This node's own view, without asking the leader.
async fn local_view(s: &AppState) -> ClusterView {
    let m = s.raft.metrics().borrow_watched().clone();
    let committed = cluster::committed(&s.raft).await;
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let members: Vec<Member> = membership
        .nodes()
        .map(|(id, node)| {
            let voter = voters.contains(id);
            let role = if Some(*id) == m.current_leader {
                "leader"
            } else if voter {
                "follower"
            } else {
                "learner"
            };
            let matched_index = m
                .replication
                .as_ref()
                .and_then(|r| r.get(id))
                .and_then(|l| l.as_ref())
                .map(|l| l.index);
            Member {
                id: *id,
                addr: node.addr.clone(),
                role: role.to_string(),
                voter,
                matched_index,
                lag: None,
            }
        })
        .collect();
    let (state_hash, applied) = {
        let st = s.sm.read();
        (st.book.state_hash(), st.last_applied.map(|l| l.index))
    };
    ClusterView {
        cluster_name: s.cluster_name.clone(),
        node_id: s.node_id,
        role: role(m.state).to_string(),
        leader: cluster::leader(&s.raft),
        term: m.current_term,
        commit_index: committed.map(|c| c.index),
        last_log_index: m.last_log_index,
        applied_index: applied,
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        state_hash,
        member: !s.is_removed(),
        membership_log_index: m.membership_config.log_id().map(|l| l.index),
        members,
    }
}

/// Admin routes need an admin account's token.
fn require_admin(s: &AppState, req: &RawRequest) -> Result<(), ApiError> {
    crate::auth::authenticate_admin(s, req).map(|_| ())
}

/// Adding a node takes an admin token, or the cluster secret: a node started with
/// `--join` asks with the secret it shares with the cluster.
fn require_admin_or_secret(s: &AppState, req: &RawRequest) -> Result<(), ApiError> {
    if secret_matches(s.secret.as_deref(), &req.headers) {
        return Ok(());
    }
    require_admin(s, req)
}

/// `POST /v1/cluster/nodes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    id: u64,
    /// `host:port` of its HTTP/RPC listener.
    addr: String,
}

/// Adds a node: a learner, then a voter once it has caught up.
#[utoipa::path(
    post,
    path = "/v1/cluster/nodes",
    tag = "cluster",
    request_body = AddNode,
    security(("token" = [])),
    responses(
        (status = 200, description = "Added; the new membership", body = ClusterView),
        (status = 401, description = "`unauthenticated`, `unauthorized`: an admin's token or the cluster secret", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 409, description = "`membership_conflict`", body = ErrorBody),
        (status = 503, description = "`learner_not_caught_up`, `no_leader`", body = ErrorBody),
    )
)]
pub async fn add_node(State(s): State<AppState>, req: RawRequest) -> Result<Response, ApiError> {
    require_admin_or_secret(&s, &req)?;
    let body: AddNode = parse_json(&req.body)?;
    s.door.add_node(body.id, body.addr).await?;
    // The answer shows the new membership, also on a follower that relayed the change.
    s.door.read_index().await?;
    Ok(cluster_info(State(s)).await.into_response())
}

/// Removes a node; it stops being a worker too, and its auctions are reassigned at once.
#[utoipa::path(
    delete,
    path = "/v1/cluster/nodes/{id}",
    tag = "cluster",
    params(("id" = u64, Path, description = "The node's id")),
    security(("token" = [])),
    responses(
        (status = 200, description = "Removed", body = crate::openapi::Done),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`unknown_node`", body = ErrorBody),
        (status = 409, description = "`membership_conflict`", body = ErrorBody),
    )
)]
pub async fn remove_node(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    require_admin(&s, &req)?;
    s.door.remove_node(id).await?;
    Ok((StatusCode::OK, Json(crate::openapi::Done { ok: true })).into_response())
}

/// `POST /v1/admin/snapshot`: where the snapshot stands in the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotTaken {
    pub term: u64,
    pub index: u64,
}

/// Takes a snapshot of this node's state now and waits until it is on disk.
#[utoipa::path(
    post,
    path = "/v1/admin/snapshot",
    tag = "cluster",
    security(("token" = [])),
    responses(
        (status = 200, description = "Written", body = SnapshotTaken),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 409, description = "`nothing_to_snapshot`", body = ErrorBody),
    )
)]
pub async fn take_snapshot(State(s): State<AppState>, req: RawRequest) -> Result<Response, ApiError> {
    require_admin(&s, &req)?;
    let applied = s.raft.metrics().borrow_watched().last_applied;
    s.raft
        .trigger()
        .snapshot()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let Some(applied) = applied else {
        return Err(ApiError::Conflict {
            code: "nothing_to_snapshot",
            message: "nothing has been applied yet".into(),
        });
    };
    let m = s
        .raft
        .wait(Some(Duration::from_millis(SNAPSHOT_WAIT_MS)))
        .metrics(
            |m| m.snapshot.is_some_and(|snap| snap.index >= applied.index),
            "snapshot written",
        )
        .await
        .map_err(|e| ApiError::Unavailable(format!("snapshot not finished: {e}")))?;
    let snap = m.snapshot.expect("waited for a snapshot");
    Ok(Json(SnapshotTaken {
        term: snap.leader_id.term,
        index: snap.index,
    })
    .into_response())
}

/// Downloads the newest snapshot file, byte for byte (verifiable with
/// `gavel snapshot verify`).
#[utoipa::path(
    get,
    path = "/v1/admin/snapshot",
    tag = "cluster",
    security(("token" = [])),
    responses(
        (status = 200, description = "The snapshot file (docs/durability.md)", content_type = "application/octet-stream"),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`no_snapshot`", body = ErrorBody),
    )
)]
pub async fn download_snapshot(State(s): State<AppState>, req: RawRequest) -> Result<Response, ApiError> {
    require_admin(&s, &req)?;
    let sm = s.sm.clone();
    let found = tokio::task::spawn_blocking(move || sm.snapshot_dir().load_newest_valid())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some((path, bytes, _)) = found else {
        return Err(ApiError::NotFound {
            code: "no_snapshot",
            message: "this node has no snapshot yet; POST /v1/admin/snapshot takes one".into(),
        });
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("snapshot.snap")
        .to_string();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response())
}

/// Archive bytes a backup reads from disk at a time.
const BACKUP_CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// Chunks of a backup waiting for a slow client.
const BACKUP_QUEUE_CHUNKS: usize = 2;

/// A consistent online backup: a snapshot of this node's state at a linearizable point,
/// with the archive records it refers to, streamed as one file
/// (`gavel_storage::backup`). `gavel snapshot restore FILE` seeds a new cluster from it.
#[utoipa::path(
    get,
    path = "/v1/admin/backup",
    tag = "cluster",
    security(("token" = [])),
    responses(
        (status = 200, description = "The backup file (`GAVELBAK`, docs/operations.md, \"Backup and restore\"); \
            headers give its log index, state hash and archived auctions", content_type = "application/octet-stream",
         headers(
             ("Gavel-Backup-Index" = u64, description = "The log index the backup holds everything up to"),
             ("Gavel-Backup-State-Hash" = String, description = "The state hash at that index"),
             ("Gavel-Backup-Archived" = u64, description = "Archived auctions it carries"),
         )),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an admin's token is needed", body = ErrorBody),
        (status = 409, description = "`nothing_to_snapshot`", body = ErrorBody),
    )
)]
pub async fn backup(State(s): State<AppState>, req: RawRequest) -> Result<Response, ApiError> {
    require_admin(&s, &req)?;
    // Everything acknowledged before this request is applied here first.
    s.door.read_index().await?;
    let (meta, book) = s.sm.backup_point();
    let Some(last) = meta.last_log_id else {
        return Err(ApiError::Conflict {
            code: "nothing_to_snapshot",
            message: "nothing has been applied yet".into(),
        });
    };
    let (records, digest) = book.archive_ref();
    let (snapshot, state_hash) = tokio::task::spawn_blocking(move || {
        let bytes = gavel_storage::snapshot::encode_snapshot(&meta, &book.encode());
        (bytes, book.state_hash())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let snapshot = snapshot.map_err(|e| ApiError::Internal(e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(BACKUP_QUEUE_CHUNKS);
    let archive = s.sm.archive().clone();
    tokio::task::spawn_blocking(move || {
        let mut crc = crc32fast::Hasher::new();
        let head = gavel_storage::backup::encode_head(&snapshot, records);
        crc.update(&head);
        if tx.blocking_send(Ok(head)).is_err() {
            return;
        }
        let mut next = 1u64;
        while next <= records {
            let frames = match archive.frames_between(next, records, BACKUP_CHUNK_BYTES) {
                Ok(f) if !f.is_empty() => f,
                Ok(_) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(format!("archive record {next} is missing"))));
                    return;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            next += count_frames(&frames);
            crc.update(&frames);
            if tx.blocking_send(Ok(frames)).is_err() {
                return;
            }
        }
        let _ = tx.blocking_send(Ok(gavel_storage::backup::encode_trailer(&digest, crc)));
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    let name = format!("gavel-backup-{}-{}.bak", last.leader_id.term, last.index);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (
                header::HeaderName::from_static("gavel-backup-index"),
                last.index.to_string(),
            ),
            (header::HeaderName::from_static("gavel-backup-state-hash"), state_hash),
            (
                header::HeaderName::from_static("gavel-backup-archived"),
                records.to_string(),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// How many framed archive records `frames` holds.
fn count_frames(frames: &[u8]) -> u64 {
    let mut at = 0usize;
    let mut n = 0;
    while at + gavel_storage::archive::FRAME_HEADER_LEN <= frames.len() {
        let len = u32::from_le_bytes(frames[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += gavel_storage::archive::FRAME_HEADER_LEN + len;
        n += 1;
    }
    n
}

/// Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain"))
)]
pub async fn metrics(State(s): State<AppState>) -> Response {
    let m = s.raft.metrics().borrow_watched().clone();
    let (counts, idem, applied) = {
        let st = s.sm.read();
        (
            st.book.counts(),
            st.book.idempotency_stats(),
            st.last_applied.map(|l| l.index).unwrap_or(0),
        )
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    gauge("gavel_raft_term", "Current Raft term.", m.current_term);
    gauge(
        "gavel_raft_is_leader",
        "1 if this node is the leader.",
        u64::from(m.state == ServerState::Leader),
    );
    gauge(
        "gavel_raft_last_log_index",
        "Index of the last log entry.",
        m.last_log_index.unwrap_or(0),
    );
    gauge("gavel_raft_applied_index", "Index of the last applied entry.", applied);
    gauge(
        "gavel_raft_snapshot_index",
        "Index covered by the newest snapshot.",
        m.snapshot.map(|l| l.index).unwrap_or(0),
    );
    gauge(
        "gavel_raft_purged_index",
        "Log purged up to this index.",
        m.purged.map(|l| l.index).unwrap_or(0),
    );
    gauge(
        "gavel_raft_members",
        "Members in the configuration.",
        m.membership_config.membership().nodes().count() as u64,
    );
    gauge("gavel_bids", "Accepted bids in the book.", counts.bids);
    gauge(
        "gavel_sled_blob_files",
        "Files in sled's blobs/ directory; Gavel bounds its pages so there are none, and a power cut can empty them.",
        s.log.blob_files() as u64,
    );
    gauge("gavel_workers", "Registered workers.", counts.workers);
    let archive = s.sm.archive().stats();
    gauge(
        "gavel_archive_auctions",
        "Closed auctions moved from memory to the archive on disk.",
        archive.auctions,
    );
    gauge("gavel_archive_bytes", "Bytes of the archive's files.", archive.bytes);
    gauge("gavel_archive_segments", "Files of the archive.", archive.segments);
    gauge(
        "gavel_idempotency_keys",
        "Idempotency keys remembered.",
        counts.idempotency_keys,
    );
    gauge(
        "gavel_idempotency_clients",
        "Clients holding idempotency keys.",
        idem.clients,
    );
    gauge(
        "gavel_idempotency_keys_max",
        "Bound of the idempotency table (replicated).",
        idem.limits.keys_max,
    );
    gauge(
        "gavel_idempotency_keys_per_client",
        "Bound of one client's idempotency keys (replicated).",
        idem.limits.keys_per_client,
    );
    gauge(
        "gavel_idempotency_filter_bytes",
        "Memory of the evicted-key filter.",
        idem.filter_bytes,
    );
    let _ = writeln!(
        out,
        "# HELP gavel_idempotency_evicted_total Keys let go before their 24 hours (recorded in the evicted-key filter).\n# TYPE gavel_idempotency_evicted_total counter\ngavel_idempotency_evicted_total {}",
        idem.evicted_total
    );
    let _ = writeln!(
        out,
        "# HELP gavel_auctions Auctions by status.\n# TYPE gavel_auctions gauge"
    );
    for (status, n) in &counts.auctions_by_status {
        let _ = writeln!(out, "gavel_auctions{{status=\"{status}\"}} {n}");
    }
    let c = &s.counters;
    let _ = writeln!(
        out,
        "# HELP gavel_http_responses_total HTTP responses by status class.\n# TYPE gavel_http_responses_total counter"
    );
    for (class, v) in [("2xx", &c.http_2xx), ("4xx", &c.http_4xx), ("5xx", &c.http_5xx)] {
        let _ = writeln!(
            out,
            "gavel_http_responses_total{{class=\"{class}\"}} {}",
            v.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP gavel_http_forwarded_total Requests forwarded to the leader.\n# TYPE gavel_http_forwarded_total counter\ngavel_http_forwarded_total {}",
        s.door.counters.forwarded.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP gavel_bids_refused_early_total Unsigned, unkeyed bids the leader refused as too low without a Raft round.\n# TYPE gavel_bids_refused_early_total counter\ngavel_bids_refused_early_total {}",
        s.door.counters.refused_early.load(Ordering::Relaxed)
    );
    let u = &s.udp.counters;
    let _ = writeln!(
        out,
        "# HELP gavel_udp_datagrams_total UDP datagrams by outcome.\n# TYPE gavel_udp_datagrams_total counter"
    );
    for (what, v) in [
        ("sent", &u.sent),
        ("send_dropped", &u.send_dropped),
        ("queue_dropped", &u.queue_dropped),
        ("send_failed", &u.send_failed),
        ("inbound_valid", &u.inbound_valid),
        ("inbound_invalid", &u.inbound_invalid),
    ] {
        let _ = writeln!(
            out,
            "gavel_udp_datagrams_total{{outcome=\"{what}\"}} {}",
            v.load(Ordering::Relaxed)
        );
    }
    let conns = &s.connections;
    let _ = writeln!(
        out,
        "# HELP gavel_http_connections Client connections open now.\n# TYPE gavel_http_connections gauge\ngavel_http_connections {}",
        conns.open.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP gavel_http_connections_total Connections by what became of them.\n# TYPE gavel_http_connections_total counter"
    );
    for (what, v) in [
        ("accepted", &conns.accepted),
        ("refused", &conns.refused),
        ("idle_closed", &conns.idle_closed),
    ] {
        let _ = writeln!(
            out,
            "gavel_http_connections_total{{outcome=\"{what}\"}} {}",
            v.load(Ordering::Relaxed)
        );
    }
    let hosted = s.sm.read().book.hosted_by(s.node_id).len() as u64;
    let _ = writeln!(out, "# HELP gavel_worker_hosted_auctions Auctions this node hosts.\n# TYPE gavel_worker_hosted_auctions gauge\ngavel_worker_hosted_auctions {hosted}");
    let readiness = readiness(&s).await;
    let _ = writeln!(
        out,
        "# HELP gavel_ready 1 when GET /ready answers 200 (a live leader, caught up, a member).\n# TYPE gavel_ready gauge\ngavel_ready {}",
        u64::from(readiness.ready)
    );
    let _ = writeln!(
        out,
        "# HELP gavel_raft_has_leader 1 when this node knows a live leader (as GET /ready checks it).\n# TYPE gavel_raft_has_leader gauge\ngavel_raft_has_leader {}",
        u64::from(has_live_leader(&s, &m))
    );
    crate::metrics::refresh(&s);
    out.push_str(&crate::metrics::registry_text());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
