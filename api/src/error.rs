//! The one place where errors become HTTP statuses and stable error codes.
//!
//! Body: `{"error":{"code":"bid_too_low","message":"…", …details}}`. Codes are
//! snake_case and never change meaning. 503s carry `Retry-After`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use gavel_raft::ClusterError;
use gavel_storage::Rejection;
use serde_json::{json, Map, Value};

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a specific code (`invalid_input`, `invalid_amount`, `invalid_json`, …).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// A domain rule said no; mapped by [`rejection_status`].
    #[error("{}", rejection_message(.0))]
    Rejected(Rejection),
    /// No leader is known, or it cannot be reached.
    #[error("{0}")]
    NoLeader(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    NoCapacity(String),
    #[error("{0}")]
    Internal(String),
    #[error("{method} is not allowed on this route")]
    MethodNotAllowed { method: String },
    #[error("the request target is longer than {limit} bytes")]
    UriTooLong { limit: usize },
    #[error("the request headers exceed {limit_bytes} bytes or {limit_count} headers")]
    HeadersTooLarge { limit_bytes: usize, limit_count: usize },
    #[error("the request body did not arrive within {secs} s")]
    RequestTimeout { secs: u64 },
    /// A node being added did not acknowledge the log in time; it stays a learner.
    #[error("{0}")]
    LearnerNotCaughtUp(String),
    /// This node was removed from the cluster (or never joined it).
    #[error("{0}")]
    NotAMember(String),
    /// The disk holding the log is full; the message says what to do.
    #[error("{0}")]
    InsufficientStorage(String),
    /// Past a rate limit; retry after this many seconds.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    /// Any other error status (produced below the handlers), with its stable code.
    #[error("{message}")]
    Status {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl ApiError {
    pub fn unknown_auction(auction_id: u64) -> Self {
        ApiError::Rejected(Rejection::UnknownAuction { auction_id })
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code: "invalid_input",
            message: message.into(),
        }
    }

    /// The status and the stable code: the one table.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Rejected(r) => (rejection_status(r), r.code()),
            ApiError::NoLeader(_) => (StatusCode::SERVICE_UNAVAILABLE, "no_leader"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::NoCapacity(_) => (StatusCode::SERVICE_UNAVAILABLE, "no_capacity"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::UriTooLong { .. } => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            ApiError::HeadersTooLarge { .. } => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large"),
            ApiError::RequestTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::NotAMember(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_a_member"),
            ApiError::LearnerNotCaughtUp(_) => (StatusCode::SERVICE_UNAVAILABLE, "learner_not_caught_up"),
            ApiError::InsufficientStorage(_) => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Status { status, code, .. } => (*status, code),
        }
    }

    /// The error for a bare status produced outside the handlers (by axum or a layer),
    /// so that every error a client sees is JSON with a stable code.
    pub fn for_status(status: StatusCode) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "invalid_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::URI_TOO_LONG => "uri_too_long",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::INSUFFICIENT_STORAGE => "insufficient_storage",
            s if s.is_server_error() => "internal",
            _ => "http_error",
        };
        ApiError::Status {
            status,
            code,
            message: status.canonical_reason().unwrap_or("error").to_lowercase(),
        }
    }
}

/// HTTP status of each domain rejection.
pub fn rejection_status(r: &Rejection) -> StatusCode {
    match r {
        Rejection::UnknownAuction { .. } | Rejection::UnknownWorker { .. } | Rejection::UnknownAccount { .. } => {
            StatusCode::NOT_FOUND
        }
        Rejection::Unauthenticated | Rejection::BadSignature { .. } => StatusCode::UNAUTHORIZED,
        Rejection::Forbidden { .. } | Rejection::IdentityMismatch => StatusCode::FORBIDDEN,
        Rejection::AccountExists | Rejection::ReplayedNonce { .. } | Rejection::OverBudget { .. } => {
            StatusCode::CONFLICT
        }
        Rejection::InvalidAmount { .. } | Rejection::InvalidInput { .. } => StatusCode::BAD_REQUEST,
        Rejection::NotSeller => StatusCode::FORBIDDEN,
        Rejection::NoCapacity { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Rejection::TooManySubscribers { .. }
        | Rejection::TooManySubscriptions { .. }
        | Rejection::IdempotencyCapacityExhausted => StatusCode::TOO_MANY_REQUESTS,
        Rejection::AuctionNotOpen { .. }
        | Rejection::AuctionClosed
        | Rejection::AuctionCancelled
        | Rejection::BidTooLow { .. }
        | Rejection::MaxNotRaised
        | Rejection::SellerCannotBid
        | Rejection::NotYetEnded { .. }
        | Rejection::HasBids
        | Rejection::BuyNowUnavailable
        | Rejection::IdempotencyKeyReused
        | Rejection::IdempotencyKeyExpired
        | Rejection::SubscriptionTaken
        | Rejection::JoiningClosed
        | Rejection::AlreadyJoined
        | Rejection::NotEnoughBidders { .. }
        | Rejection::RoundsNotStarted
        | Rejection::AlreadyBid { .. } => StatusCode::CONFLICT,
        Rejection::NotAParticipant => StatusCode::FORBIDDEN,
    }
}

fn rejection_message(r: &Rejection) -> String {
    match r {
        Rejection::UnknownAuction { auction_id } => format!("auction {auction_id} does not exist"),
        Rejection::AuctionNotOpen { .. } => "the auction has not started yet".into(),
        Rejection::AuctionClosed => "the auction has ended".into(),
        Rejection::AuctionCancelled => "the auction was cancelled".into(),
        Rejection::BidTooLow { min_next_bid } => format!("the bid must be at least {min_next_bid}"),
        Rejection::MaxNotRaised => "you lead already; a new maximum must exceed your current one".into(),
        Rejection::SellerCannotBid => "the seller cannot bid on their own auction".into(),
        Rejection::InvalidAmount { reason } | Rejection::InvalidInput { reason } => reason.clone(),
        Rejection::NotYetEnded { .. } => "the auction has not reached its end".into(),
        Rejection::HasBids => "the seller cannot cancel an auction that has bids".into(),
        Rejection::NotSeller => "only the seller or an admin can cancel this auction".into(),
        Rejection::BuyNowUnavailable => "buy-now is not available for this auction".into(),
        Rejection::UnknownWorker { node_id } => format!("worker {node_id} is not registered"),
        Rejection::NoCapacity { node_id } => format!("worker {node_id} is full; no capacity for new auctions"),
        Rejection::IdempotencyKeyReused => "this Idempotency-Key was used for a different request".into(),
        Rejection::IdempotencyKeyExpired => "this Idempotency-Key was used within the last 24 hours but is no \
                                            longer held, so its first answer cannot be returned; the request \
                                            was not executed again. Check the outcome with a read, then use a \
                                            new key"
            .into(),
        Rejection::Unauthenticated => {
            "send a valid API token as Authorization: Bearer <token> (a missing, unknown, rotated or \
             disabled token is refused)"
                .into()
        }
        Rejection::Forbidden { role } => format!("this needs an account with the {role} role"),
        Rejection::IdentityMismatch => {
            "the bidder, buyer or seller named in the request must be the caller's own account".into()
        }
        Rejection::AccountExists => "an account with that name exists (disabled names are never reused)".into(),
        Rejection::UnknownAccount { name } => format!("there is no account named {name:?}"),
        Rejection::BadSignature { reason } => format!("bad signature: {reason}"),
        Rejection::ReplayedNonce { last_nonce } => {
            format!("this nonce was used already; nonces must exceed {last_nonce}")
        }
        Rejection::OverBudget { exposure, budget } => {
            format!("this would take the account's exposure to {exposure}, over its budget of {budget}")
        }
        Rejection::IdempotencyCapacityExhausted => "this client has more keyed requests in flight than the \
                                                    idempotency table can remember safely this hour; the \
                                                    request was not executed. Retry later"
            .into(),
        Rejection::TooManySubscribers { max } => format!("the auction already has {max} UDP subscribers"),
        Rejection::TooManySubscriptions { max } => {
            format!("this account holds (or waits for) {max} UDP subscriptions already")
        }
        Rejection::SubscriptionTaken => "another account's subscription holds this address".into(),
        Rejection::JoiningClosed => "the auction no longer takes participants: its rounds have begun".into(),
        Rejection::AlreadyJoined => "this bidder has joined the auction already".into(),
        Rejection::NotEnoughBidders { joined, needed } => {
            format!("{joined} bidders have joined; the rounds need {needed}")
        }
        Rejection::NotAParticipant => "only a participant who joined may bid in a multi-round auction".into(),
        Rejection::RoundsNotStarted => "the auction is open for joining; its first round has not started".into(),
        Rejection::AlreadyBid { round } => format!("this participant has bid in round {round} already"),
    }
}

/// The fields of a rejection (e.g. `min_next_bid`), as error details.
fn rejection_details(r: &Rejection) -> Map<String, Value> {
    match serde_json::to_value(r) {
        Ok(Value::Object(outer)) => match outer.into_iter().next() {
            Some((_, Value::Object(fields))) => fields.into_iter().filter(|(k, _)| k != "reason").collect(),
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::NotLeader { leader: None } => ApiError::NoLeader("no leader is known; retry shortly".into()),
            ClusterError::NotLeader { leader: Some(l) } => ApiError::NoLeader(format!(
                "node {} at {} leads, but the request could not be forwarded",
                l.id, l.addr
            )),
            ClusterError::InvalidInput(m) => ApiError::invalid(m),
            ClusterError::NotFound(m) => ApiError::NotFound {
                code: "unknown_node",
                message: m,
            },
            ClusterError::Conflict(m) => ApiError::Conflict {
                code: "membership_conflict",
                message: m,
            },
            ClusterError::Unavailable(m) => ApiError::Unavailable(m),
            ClusterError::NotCaughtUp(m) => ApiError::LearnerNotCaughtUp(m),
            ClusterError::NoCapacity(m) => ApiError::NoCapacity(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut error = Map::new();
        error.insert("code".into(), json!(code));
        error.insert("message".into(), json!(self.to_string()));
        match &self {
            ApiError::Rejected(r) => error.extend(rejection_details(r)),
            ApiError::PayloadTooLarge { limit } | ApiError::UriTooLong { limit } => {
                error.insert("limit_bytes".into(), json!(limit));
            }
            _ => {}
        }
        if status.is_server_error()
            && status != StatusCode::SERVICE_UNAVAILABLE
            && status != StatusCode::INSUFFICIENT_STORAGE
        {
            tracing::error!(%status, error = %self, "request failed");
        }
        let body = axum::Json(json!({ "error": error }));
        if status == StatusCode::UNAUTHORIZED {
            return (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
        }
        if let ApiError::RateLimited { retry_after_secs, .. } = &self {
            return (status, [(header::RETRY_AFTER, retry_after_secs.to_string())], body).into_response();
        }
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            (status, [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}
