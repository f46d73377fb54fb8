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
use serde_json::json;

use crate::error::ApiError;
use crate::json::parse_json;
use crate::request::RawRequest;
use crate::state::AppState;

/// How long `POST /v1/admin/snapshot` waits for the snapshot to be written.
pub const SNAPSHOT_WAIT_MS: u64 = 30_000;

/// 200 while the process can do its job; 503 once its Raft core has stopped (a full
/// disk, a storage error), so that a supervisor notices and restarts it.
pub async fn health(State(s): State<AppState>) -> Response {
    match s.stopped() {
        None => Json(json!({ "status": "ok" })).into_response(),
        Some(problem) => {
            let (status, code) = problem.status_and_code();
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "stopped",
                    "error": { "code": code, "message": problem.to_string(), "status": status.as_u16() },
                })),
            )
                .into_response()
        }
    }
}

/// Ready when a live leader is known and everything this node knows to be committed is
/// applied. openraft restores `current_leader` (even this node's own leadership)
/// from the stored vote at start, before any peer has answered, so "live" is checked:
/// a leader must have heard from a quorum, a follower from the leader, within an
/// election timeout.
/// On the leader: milliseconds since a quorum last acknowledged it.
fn quorum_ack_ms(m: &openraft::RaftMetrics<gavel_storage::TypeConfig>) -> Option<u64> {
    use openraft::Instant as _;
    m.last_quorum_acked.as_ref().map(|at| at.elapsed().as_millis() as u64)
}

pub async fn ready(State(s): State<AppState>) -> Response {
    let m = s.raft.metrics().borrow_watched().clone();
    let committed = cluster::committed(&s.raft).await.map(|c| c.index);
    let applied = m.last_applied.map(|a| a.index);
    let recent = |ms: Option<u64>| ms.is_some_and(|ms| ms <= s.raft.config().election_timeout_max);
    // A leader alone in its cluster is its own quorum: nothing acknowledges it while it
    // is idle, and nothing needs to.
    let alone = m.membership_config.membership().voter_ids().eq([m.id]);
    let leader_alive = match m.state {
        ServerState::Leader => alone || recent(quorum_ack_ms(&m)),
        _ => recent(s.door.contact.elapsed_ms()),
    };
    let has_leader = m.current_leader.is_some() && leader_alive && m.running_state.is_ok();
    let caught_up = applied >= committed;
    let member = !s.is_removed();
    let ready = has_leader && caught_up && member;
    let body = json!({
        "ready": ready,
        "member": member,
        "leader": m.current_leader,
        "quorum_ack_ms": quorum_ack_ms(&m),
        "applied_index": applied,
        "commit_index": committed,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
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

#[derive(Serialize)]
struct Member {
    id: u64,
    addr: String,
    role: &'static str,
    voter: bool,
    /// On the leader: the newest index known to be replicated to this member.
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_index: Option<u64>,
}

pub async fn cluster_info(State(s): State<AppState>) -> Json<serde_json::Value> {
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
                role,
                voter,
                matched_index,
            }
        })
        .collect();
    let (state_hash, applied) = {
        let st = s.sm.read();
        (st.book.state_hash(), st.last_applied.map(|l| l.index))
    };
    Json(json!({
        "cluster_name": s.cluster_name,
        "node_id": s.node_id,
        "role": role(m.state),
        "leader": cluster::leader(&s.raft),
        "term": m.current_term,
        "commit_index": committed.map(|c| c.index),
        "last_log_index": m.last_log_index,
        "applied_index": applied,
        "snapshot_index": m.snapshot.map(|l| l.index),
        "purged_index": m.purged.map(|l| l.index),
        "state_hash": state_hash,
        "member": !s.is_removed(),
        "membership_log_index": m.membership_config.log_id().map(|l| l.index),
        "members": members,
    }))
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNode {
    id: u64,
    addr: String,
}

pub async fn add_node(State(s): State<AppState>, req: RawRequest) -> Result<Response, ApiError> {
    require_admin_or_secret(&s, &req)?;
    let body: AddNode = parse_json(&req.body)?;
    s.door.add_node(body.id, body.addr).await?;
    // The answer shows the new membership, also on a follower that relayed the change.
    s.door.read_index().await?;
    Ok(cluster_info(State(s)).await.into_response())
}

/// Removes a node; it stops being a worker too, and its auctions are reassigned at once.
pub async fn remove_node(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    require_admin(&s, &req)?;
    s.door.remove_node(id).await?;
    Ok((StatusCode::OK, Json(json!({ "ok": true }))).into_response())
}

/// Takes a snapshot of this node's state now and waits until it is on disk.
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
    Ok(Json(json!({ "term": snap.leader_id.term, "index": snap.index })).into_response())
}

/// Downloads the newest snapshot file, byte for byte (verifiable with
/// `gavel snapshot verify`).
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

/// Prometheus text format.
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
