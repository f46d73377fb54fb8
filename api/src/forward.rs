//! Writes (and linearizable reads) that reach a follower are sent on to the leader, so a
//! client never has to find it. The leader re-parses the request and stamps its own
//! time. A forwarded request carries `x-gavel-forwarded-by`; a node that receives one and
//! is not the leader answers 503 `no_leader` instead of forwarding again (no loops while
//! an election is under way).

use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderName, Method, Uri};
use axum::response::{IntoResponse, Response};
use gavel_raft::NodeAddr;

use crate::error::ApiError;
use crate::state::AppState;

pub const FORWARDED_BY: HeaderName = HeaderName::from_static("x-gavel-forwarded-by");
/// The address of the client a forwarded request came from (for per-client quotas).
pub const CLIENT_ADDR: HeaderName = HeaderName::from_static("x-gavel-client-addr");
/// The cluster secret, proving that [`CLIENT_ADDR`] was set by a node, not a client.
pub const FORWARD_SECRET: HeaderName = HeaderName::from_static("x-gavel-forward-secret");
/// Largest request body a client may send.
pub const REQUEST_BODY_MAX_BYTES: usize = 64 * 1024;
/// A request body must arrive whole within this (slow senders get 408).
pub const BODY_READ_TIMEOUT_MS: u64 = 30_000;

/// Headers worth carrying to the leader.
const FORWARDED_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::AUTHORIZATION,
    header::ACCEPT,
    HeaderName::from_static("idempotency-key"),
];

/// A request kept whole so it can be parsed here or forwarded as it came.
pub struct RawRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The TCP peer (`None` only where no server put it there, as in unit tests).
    pub peer: Option<SocketAddr>,
    /// Whether the connection's client certificate verified against the peer CA.
    pub peer_verified: bool,
}

impl<S: Send + Sync> FromRequest<S> for RawRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let read = axum::body::to_bytes(body, REQUEST_BODY_MAX_BYTES);
        let body = tokio::time::timeout(std::time::Duration::from_millis(BODY_READ_TIMEOUT_MS), read)
            .await
            .map_err(|_| ApiError::RequestTimeout {
                secs: BODY_READ_TIMEOUT_MS / 1000,
            })?
            .map_err(|_| ApiError::PayloadTooLarge {
                limit: REQUEST_BODY_MAX_BYTES,
            })?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr);
        let peer_verified = parts
            .extensions
            .get::<gavel_raft::tls::PeerVerified>()
            .is_some_and(|v| v.0);
        Ok(RawRequest {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            peer,
            peer_verified,
        })
    }
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The client's IP address (see [`client_ip`]).
    pub fn client_ip(&self, secret: Option<&str>) -> Option<IpAddr> {
        let forwarded = forwarded_client(&self.headers, secret);
        forwarded.or(self.peer.map(|p| p.ip().to_canonical()))
    }
}

/// The client address a forwarding node of this cluster vouches for (it sends the
/// cluster secret with it); `None` on a request that came straight from a client.
fn forwarded_client(headers: &HeaderMap, secret: Option<&str>) -> Option<IpAddr> {
    let vouched = headers.contains_key(FORWARDED_BY)
        && secret.is_some_and(|secret| {
            let given = headers.get(&FORWARD_SECRET).map(|v| v.as_bytes()).unwrap_or_default();
            constant_time_eq::constant_time_eq(given, secret.as_bytes())
        });
    if !vouched {
        return None;
    }
    headers.get(&CLIENT_ADDR)?.to_str().ok()?.parse().ok()
}

/// The client's IP address: the TCP peer, or for a request forwarded by another node of
/// this cluster, the address that node saw.
pub fn client_ip(headers: &HeaderMap, extensions: &axum::http::Extensions, secret: Option<&str>) -> Option<IpAddr> {
    forwarded_client(headers, secret).or_else(|| {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_canonical())
    })
}

/// Sends `req` to `leader` and relays its answer.
pub async fn forward(state: &AppState, leader: Option<NodeAddr>, req: &RawRequest) -> Response {
    let leader = match leader {
        Some(l) if l.id != state.node_id && !req.headers.contains_key(FORWARDED_BY) => l,
        _ => return ApiError::NoLeader("no leader is known; retry shortly".into()).into_response(),
    };
    state.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    let path = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut outgoing = state
        .client
        .request(req.method.clone(), format!("{}://{}{path}", state.scheme, leader.addr))
        .body(req.body.clone());
    for name in FORWARDED_HEADERS {
        if let Some(v) = req.headers.get(&name) {
            outgoing = outgoing.header(name, v);
        }
    }
    outgoing = outgoing.header(FORWARDED_BY, state.node_id.to_string());
    if let (Some(secret), Some(ip)) = (state.secret.as_deref(), req.client_ip(state.secret.as_deref())) {
        outgoing = outgoing
            .header(CLIENT_ADDR, ip.to_string())
            .header(FORWARD_SECRET, secret);
    }
    match outgoing.send().await {
        Ok(resp) => {
            let status = resp.status();
            let mut headers = HeaderMap::new();
            for name in [header::CONTENT_TYPE, header::RETRY_AFTER, header::CONTENT_DISPOSITION] {
                if let Some(v) = resp.headers().get(&name) {
                    headers.insert(name, v.clone());
                }
            }
            match resp.bytes().await {
                Ok(body) => (status, headers, Body::from(body)).into_response(),
                Err(e) => ApiError::Unavailable(format!("leader {} stopped answering: {e}", leader.id)).into_response(),
            }
        }
        Err(e) => {
            tracing::warn!(leader = leader.id, addr = %leader.addr, error = %e, "forwarding to the leader failed");
            ApiError::NoLeader(format!(
                "the leader (node {}) could not be reached; retry shortly",
                leader.id
            ))
            .into_response()
        }
    }
}
