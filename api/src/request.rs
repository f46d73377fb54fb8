//! A client request kept whole: parsed here, and its exact bytes kept for what is
//! computed over them (the idempotency request digest, a signed bid's signature).
//! Writes and linearizable reads reaching a follower go to the leader through the front
//! door (`gavel_raft::front_door`) as typed requests, never as relayed HTTP.

use axum::body::Bytes;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::{HeaderMap, Method, Uri};

use crate::error::ApiError;

/// Largest request body a client may send.
pub const REQUEST_BODY_MAX_BYTES: usize = 64 * 1024;
/// A request body must arrive whole within this (slow senders get 408).
pub const BODY_READ_TIMEOUT_MS: u64 = 30_000;

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
}

/// The client's IP address: the TCP peer.
pub fn client_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical())
}
