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
    /// The leader stamps no command: its clock is `offset_ms` off the majority's, or the
    /// voters do not agree on the time (`None`).
    #[error("{message}")]
    ClockSkew { offset_ms: Option<i64>, message: String },
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

/// One stable error code: the status it comes with and what it means.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode {
    pub code: &'static str,
    pub status: u16,
    pub meaning: &'static str,
}

const fn code(code: &'static str, status: u16, meaning: &'static str) -> ErrorCode {
    ErrorCode { code, status, meaning }
}

/// Every error code a client can see, with its status (the OpenAPI description lists
/// them; a test checks every code in the source is here).
pub const ERROR_CODES: &[ErrorCode] = &[
    code("invalid_json", 400, "The body is not JSON, or is empty"),
    code(
        "invalid_input",
        400,
        "A field, the path or the query is wrong; the message names it",
    ),
    code(
        "invalid_amount",
        400,
        "A money field is not a non-negative integer of minor units",
    ),
    code("invalid_request", 400, "The request could not be read"),
    code(
        "unauthenticated",
        401,
        "No valid API token (missing, unknown, rotated or disabled)",
    ),
    code("unauthorized", 401, "The cluster secret or an admin token is needed"),
    code(
        "bad_signature",
        401,
        "The account signs its bids and this signature does not verify",
    ),
    code("forbidden", 403, "The account lacks the role this needs"),
    code(
        "identity_mismatch",
        403,
        "The request names another account than the caller's",
    ),
    code("not_seller", 403, "Only the seller or an admin may do this"),
    code(
        "not_a_participant",
        403,
        "Only a participant may bid in a multi-round auction (404 on a result: the caller did not bid)",
    ),
    code("not_found", 404, "No such route or file"),
    code("unknown_auction", 404, "No such auction"),
    code("unknown_account", 404, "No such account"),
    code("unknown_worker", 404, "No such worker"),
    code("unknown_node", 404, "No such cluster member"),
    code("no_snapshot", 404, "This node has no snapshot yet"),
    code("method_not_allowed", 405, "The route does not take this method"),
    code("request_timeout", 408, "The request body did not arrive in time"),
    code("auction_not_open", 409, "The auction has not started"),
    code("auction_closed", 409, "The auction has ended"),
    code("auction_cancelled", 409, "The auction was cancelled"),
    code(
        "bid_too_low",
        409,
        "The bid is under the minimum next bid (given as min_next_bid)",
    ),
    code(
        "max_not_raised",
        409,
        "The leader's new maximum must exceed the current one",
    ),
    code("seller_cannot_bid", 409, "The seller cannot bid on their own auction"),
    code("not_yet_ended", 409, "The auction has not reached its end"),
    code("auction_not_ended", 409, "The result is known only at the close"),
    code(
        "auction_has_bids",
        409,
        "The seller cannot cancel an auction that has bids",
    ),
    code("buy_now_unavailable", 409, "Buy-now is not available for this auction"),
    code("account_exists", 409, "An account with that name exists"),
    code("replayed_nonce", 409, "A signed bid's nonce was used already"),
    code("over_budget", 409, "The bid would take the account over its budget"),
    code(
        "idempotency_key_reused",
        409,
        "The Idempotency-Key was used for a different request",
    ),
    code(
        "idempotency_key_expired",
        409,
        "The Idempotency-Key's first answer is no longer held",
    ),
    code(
        "subscription_taken",
        409,
        "Another account's UDP subscription holds this address",
    ),
    code("joining_closed", 409, "The multi-round auction's rounds have begun"),
    code("already_joined", 409, "The bidder has joined already"),
    code(
        "not_enough_bidders",
        409,
        "Fewer bidders have joined than the rounds need",
    ),
    code(
        "rounds_not_started",
        409,
        "The multi-round auction is still open for joining",
    ),
    code("already_bid", 409, "The participant has bid in this round already"),
    code(
        "membership_conflict",
        409,
        "A membership change conflicts with the current one",
    ),
    code("nothing_to_snapshot", 409, "Nothing has been applied yet"),
    code(
        "payload_too_large",
        413,
        "The body is over the limit (given as limit_bytes)",
    ),
    code("uri_too_long", 414, "The request target is over 8 KiB"),
    code("unsupported_media_type", 415, "The body's content type is not accepted"),
    code("headers_too_large", 431, "Headers over 32 KiB or 100 headers"),
    code("rate_limited", 429, "Past a rate limit; see Retry-After"),
    code(
        "idempotency_capacity_exhausted",
        429,
        "The client holds too many keyed requests this hour",
    ),
    code(
        "too_many_subscribers",
        429,
        "The auction has as many UDP subscribers as it may",
    ),
    code(
        "too_many_subscriptions",
        429,
        "The account holds as many UDP subscriptions as it may",
    ),
    code("invalid_rpc_body", 400, "Node RPC: the bincode body does not decode"),
    code("internal", 500, "An internal error; the node's log says more"),
    code("http_error", 500, "Any other error status produced below the handlers"),
    code(
        "no_leader",
        503,
        "No leader is known or reachable; retry after Retry-After",
    ),
    code(
        "unavailable",
        503,
        "The node cannot serve this now; retry after Retry-After",
    ),
    code("no_capacity", 503, "No live worker has room for a new auction"),
    code(
        "clock_skew",
        503,
        "The leader's clock is off the majority's (or the voters disagree on the time); it stamps no command while leadership moves",
    ),
    code(
        "not_a_member",
        503,
        "This node was removed from the cluster; use another node",
    ),
    code(
        "learner_not_caught_up",
        503,
        "The node being added did not catch up in time; it stays a learner",
    ),
    code(
        "too_many_connections",
        503,
        "The node serves as many connections as it may",
    ),
    code(
        "insufficient_storage",
        507,
        "The node's disk is full; its Raft core stopped",
    ),
];

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
            ApiError::ClockSkew { .. } => (StatusCode::SERVICE_UNAVAILABLE, "clock_skew"),
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
            ClusterError::ClockSkew { offset_ms, message } => ApiError::ClockSkew { offset_ms, message },
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
            ApiError::ClockSkew { offset_ms, .. } => {
                error.insert("clock_offset_ms".into(), json!(offset_ms));
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

#[cfg(test)]
mod code_table_tests {
    use super::ERROR_CODES;

    /// Every error code the source can produce, found by reading it: `code: "…"` fields,
    /// `"code":"…"` in literal bodies, `=> "…"` arms of the code tables, and the codes
    /// node RPC answers with.
    fn codes_in_source() -> Vec<String> {
        let sources = [
            include_str!("accounts.rs"),
            include_str!("auctions.rs"),
            include_str!("auth.rs"),
            include_str!("bids.rs"),
            include_str!("cluster.rs"),
            include_str!("error.rs"),
            include_str!("json.rs"),
            include_str!("lib.rs"),
            include_str!("limits.rs"),
            include_str!("server.rs"),
            include_str!("sse.rs"),
            include_str!("subscriptions.rs"),
            include_str!("web.rs"),
            include_str!("ws.rs"),
            include_str!("../../raft/src/rpc.rs"),
        ];
        let mut found = Vec::new();
        let mut take = |text: &str, marker: &str| {
            for part in text.split(marker).skip(1) {
                let code: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !code.is_empty() && part[code.len()..].starts_with('"') {
                    found.push(code);
                }
            }
        };
        for text in sources {
            let text = text.split("mod code_table_tests").next().unwrap_or(text);
            take(text, "code: \"");
            take(text, "\"code\":\"");
            take(text, "StatusCode::UNAUTHORIZED,\n            \"");
            take(text, "StatusCode::BAD_REQUEST,\n                \"");
        }
        // The tables: status_and_code, for_status, and the domain's rejection codes.
        let error = include_str!("error.rs");
        let tables = error.split("fn rejection_status").next().unwrap_or(error);
        take(tables, "=> \"");
        take(tables, ", \"");
        let command = include_str!("../../storage/src/command.rs");
        let rejections = command.split("pub fn code(&self)").nth(1).expect("Rejection::code");
        take(rejections.split("\n}\n").next().unwrap_or(rejections), "=> \"");
        found.sort();
        found.dedup();
        found
    }

    #[test]
    fn every_code_in_the_source_is_in_the_table() {
        let found = codes_in_source();
        assert!(found.len() > 40, "the scan found only {found:?}");
        let missing: Vec<&String> = found
            .iter()
            .filter(|c| !ERROR_CODES.iter().any(|e| e.code == c.as_str()))
            .collect();
        assert!(missing.is_empty(), "codes missing from ERROR_CODES: {missing:?}");
    }

    #[test]
    fn the_table_has_each_code_once_with_an_error_status() {
        let mut seen = std::collections::BTreeSet::new();
        for c in ERROR_CODES {
            assert!(seen.insert(c.code), "{} twice", c.code);
            assert!((400..600).contains(&c.status), "{}: {}", c.code, c.status);
            assert!(!c.meaning.is_empty());
        }
    }
}
