//! Bidding and ending auctions over HTTP: `POST /v1/auctions/{id}/bids`,
//! `GET /v1/auctions/{id}/bids`, `POST /v1/auctions/{id}/buy`,
//! `POST /v1/auctions/{id}/cancel`.
//!
//! A bid is `{"bidder", "amount"}` (a straight bid), `{"bidder", "max_amount"}` (a proxy
//! bid: the book bids for you up to the maximum, eBay rules), or both (bid `amount` now,
//! up to `max_amount`). It is acknowledged only once committed on a majority and applied;
//! the answer says who leads at what visible price. Maxima are never shown to anyone.

use crate::json::{ApiPath, ApiQuery};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use gavel_storage::book::accounts::Role;
use gavel_storage::book::formats::Format;
use gavel_storage::{Actor, Op, Outcome, Response as BookResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auctions::{
    auction_view, propose, read_barrier, AuctionView, IdempotencyKey, OutcomeView, ReadParams, RoundBid, Total,
};
use crate::error::ApiError;
use crate::json::{parse_json, rfc3339};
use crate::openapi::ErrorBody;
use crate::request::RawRequest;
use crate::state::AppState;

/// A bid: `amount` (a straight bid), `max_amount` (a proxy bid, English only: the book
/// bids for you up to it, eBay rules), or both. Accounts with a public key sign the body
/// (headers `Gavel-Nonce`, `Gavel-Signature`; docs/identity.md).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceBid {
    /// Optional: the caller's account bids; if given it must be that name.
    bidder: Option<String>,
    amount: Option<u64>,
    max_amount: Option<u64>,
}

/// An accepted bid on an English or Dutch auction.
#[derive(Debug, Serialize, ToSchema)]
pub struct BidAnswer {
    pub bid_id: u64,
    pub auction_id: u64,
    /// The visible price after the bid (proxy bidding may have answered it).
    pub price: u64,
    pub leader: String,
    /// Whether the caller leads now.
    pub leading: bool,
    /// null once the bid ended the auction (a Dutch sale).
    pub min_next_bid: Option<u64>,
    /// null without a reserve.
    pub reserve_met: Option<bool>,
    pub ends_at: String,
    /// Whether this bid extended the end (soft close).
    pub extended: bool,
    pub seq: u64,
}

/// An accepted sealed bid: no price, no leader.
#[derive(Debug, Serialize, ToSchema)]
pub struct SealedBidAnswer {
    pub bid_id: u64,
    pub auction_id: u64,
    /// Always true.
    pub sealed: bool,
    /// Whether it replaced the caller's earlier bid.
    pub replaced: bool,
    pub seq: u64,
}

/// A bid's answer: open formats, or sealed ones.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BidResult {
    Open(BidAnswer),
    Sealed(SealedBidAnswer),
}

/// A bid's signature, as the history shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedView {
    pub nonce: u64,
    /// Base64 of the Ed25519 signature.
    pub signature: String,
    /// Admins only: the signed body, and the proxy maximum it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_amount: Option<u64>,
}

/// One bid of the history. Proxy maxima are never shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct BidView {
    pub bid_id: u64,
    pub seq: u64,
    pub bidder: String,
    pub amount: u64,
    /// The visible price and the leader once this bid was applied.
    pub price_after: u64,
    pub leader_after: String,
    pub at: String,
    pub signed: Option<SignedView>,
}

/// `GET /v1/auctions/{id}/bids`. A sealed auction shows only how many bid until the
/// close; a multi-round auction shows its revealed rounds.
#[derive(Debug, Serialize, ToSchema)]
pub struct BidHistory {
    pub auction_id: u64,
    /// In commit order; empty while bids are sealed.
    pub bids: Vec<BidView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounds: Option<Vec<Vec<RoundBid>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bids_this_round: Option<usize>,
}

/// A purchase at the buy-now price.
#[derive(Debug, Serialize, ToSchema)]
pub struct Purchase {
    pub buyer: String,
    pub price: u64,
}

/// The answer to a buy-now or a cancel: the outcome and the auction after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ended {
    pub outcome: &'static str,
    /// A buy-now's buyer and price (null for a cancel).
    pub purchase: Option<Purchase>,
    pub auction: Option<AuctionView>,
}

/// `GET /v1/auctions/{id}/result`: the caller's own result.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultView {
    pub auction_id: u64,
    pub format: &'static str,
    pub outcome: &'static str,
    /// `won`, `lost` or (the seller, an admin) `not_a_bidder`.
    pub result: &'static str,
    /// won: what the caller pays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<u64>,
    /// lost: the winning price (null if it did not sell).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winning_price: Option<Option<u64>>,
    /// not_a_bidder: the outcome in full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<OutcomeView>,
    /// Multi-round: every participant's total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<Vec<Total>>,
}

/// The `Gavel-Nonce` and `Gavel-Signature` headers of a signed bid.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct SignatureHeaders {
    /// Signed bids: a number greater than the account's last nonce.
    #[param(rename = "Gavel-Nonce")]
    gavel_nonce: Option<u64>,
    /// Signed bids: base64 Ed25519 signature over the nonce and the body
    /// (docs/identity.md).
    #[param(rename = "Gavel-Signature")]
    gavel_signature: Option<String>,
}

const ID: &str = "The auction's id";

/// `POST /v1/auctions/{id}/bids`.
#[utoipa::path(
    post,
    path = "/v1/auctions/{id}/bids",
    tag = "bids",
    request_body = PlaceBid,
    params(("id" = u64, Path, description = ID), IdempotencyKey, SignatureHeaders),
    security(("token" = [])),
    responses(
        (status = 201, description = "Accepted: committed on a majority and applied", body = BidResult),
        (status = 401, description = "`unauthenticated`, `bad_signature`", body = ErrorBody),
        (status = 403, description = "`forbidden`, `identity_mismatch`, `not_a_participant`", body = ErrorBody),
        (status = 404, description = "`unknown_auction`", body = ErrorBody),
        (status = 409, description = "`bid_too_low` (with `min_next_bid`), `auction_not_open`, `auction_closed`, \
            `auction_cancelled`, `seller_cannot_bid`, `max_not_raised`, `over_budget`, `replayed_nonce`, \
            `rounds_not_started`, `already_bid`, `idempotency_key_reused`, `idempotency_key_expired`", body = ErrorBody),
    )
)]
pub async fn place_bid(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    let body: PlaceBid = parse_json(&req.body)?;
    if body.amount.is_none() && body.max_amount.is_none() {
        return Err(ApiError::BadRequest {
            code: "invalid_amount",
            message: "give amount, max_amount, or both".into(),
        });
    }
    let build = |_, auth: &crate::auth::Authenticated| {
        Ok(Op::PlaceBid {
            auction_id: id,
            bidder: auth.own_name(body.bidder)?,
            amount: body.amount,
            max_amount: body.max_amount,
        })
    };
    let answer = propose(&s, &req, build).await?;
    // Whether a reserve is met means nothing on an auction without one.
    let has_reserve =
        s.sm.read()
            .book
            .auction(id)
            .is_some_and(|a| a.spec.reserve_price.is_some());
    let body = match answer {
        BookResponse::BidAccepted(b) => BidResult::Open(BidAnswer {
            bid_id: b.bid_id,
            auction_id: b.auction_id,
            price: b.price,
            leader: b.leader,
            leading: b.leading,
            // None once the bid ended the auction (a Dutch sale).
            min_next_bid: (b.min_next_bid != u64::MAX).then_some(b.min_next_bid),
            reserve_met: has_reserve.then_some(b.reserve_met),
            ends_at: rfc3339(b.ends_at_ms),
            extended: b.extended,
            seq: b.seq,
        }),
        BookResponse::SealedBidAccepted {
            auction_id,
            bid_id,
            seq,
            replaced,
            ..
        } => BidResult::Sealed(SealedBidAnswer {
            bid_id,
            auction_id,
            sealed: true,
            replaced,
            seq,
        }),
        other => return Err(ApiError::Internal(format!("unexpected response to a bid: {other:?}"))),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/auctions/{id}/bids`: the history in commit order. Proxy maxima are not shown.
#[utoipa::path(
    get,
    path = "/v1/auctions/{id}/bids",
    tag = "bids",
    params(("id" = u64, Path, description = ID), ReadParams),
    responses(
        (status = 200, description = "The bids (sealed until the close)", body = BidHistory),
        (status = 404, description = "`unknown_auction`", body = ErrorBody),
    )
)]
pub async fn list_bids(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(params): ApiQuery<ReadParams>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    read_barrier(&s, params.consistency.as_deref()).await?;
    let admin = crate::auth::authenticate_admin(&s, &req).is_ok();
    let st = s.sm.read();
    let auction = st.book.auction(id).ok_or_else(|| ApiError::unknown_auction(id))?;
    let mut history = BidHistory {
        auction_id: id,
        bids: Vec::new(),
        sealed: None,
        bid_count: None,
        round: None,
        rounds: None,
        bids_this_round: None,
    };
    if matches!(st.book.format(id), Some(Format::MultiRound(_))) {
        // Completed rounds are revealed to everyone; the round under way is sealed.
        let rounds = st.book.rounds(id).cloned().unwrap_or_default();
        history.round = Some(rounds.round);
        history.rounds = Some(crate::auctions::rounds_view(&rounds));
        history.bids_this_round = Some(rounds.current.len());
        return Ok(Json(history).into_response());
    }
    if st.book.is_sealed_open(id) {
        // Sealed until the close, for everyone: only how many have bid.
        history.sealed = Some(true);
        history.bid_count = Some(auction.bids.len());
        return Ok(Json(history).into_response());
    }
    history.bids = auction
        .bids
        .iter()
        .map(|b| BidView {
            bid_id: b.bid_id,
            seq: b.seq,
            bidder: b.bidder.clone(),
            amount: b.amount,
            price_after: b.price_after,
            leader_after: b.leader_after.clone(),
            at: rfc3339(b.ts_ms),
            // The nonce and signature are public; the signed body may hold a proxy
            // maximum, so only an admin (the operator, for audits) sees it.
            signed: b.signed.as_ref().map(|s| SignedView {
                nonce: s.nonce,
                signature: base64::engine::general_purpose::STANDARD.encode(&s.signature),
                body: admin.then(|| String::from_utf8_lossy(&s.body).into_owned()),
                max_amount: admin.then_some(b.max_amount),
            }),
        })
        .collect();
    Ok(Json(history).into_response())
}

/// `POST /v1/auctions/{id}/buy` (the body may be empty).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuyNow {
    /// Optional: the caller's account buys; if given it must be that name.
    buyer: Option<String>,
}

/// `POST /v1/auctions/{id}/buy`.
#[utoipa::path(
    post,
    path = "/v1/auctions/{id}/buy",
    tag = "bids",
    request_body(content = Option<BuyNow>, description = "Optional; may be empty"),
    params(("id" = u64, Path, description = ID), IdempotencyKey),
    security(("token" = [])),
    responses(
        (status = 200, description = "Bought: the auction is closed", body = Ended),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`, `identity_mismatch`", body = ErrorBody),
        (status = 404, description = "`unknown_auction`", body = ErrorBody),
        (status = 409, description = "`buy_now_unavailable`, `auction_closed`, `seller_cannot_bid`, `over_budget`", body = ErrorBody),
    )
)]
pub async fn buy_now(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    let body: BuyNow = if req.body.iter().all(u8::is_ascii_whitespace) {
        BuyNow { buyer: None }
    } else {
        parse_json(&req.body)?
    };
    let build = |_, auth: &crate::auth::Authenticated| {
        Ok(Op::BuyNow {
            auction_id: id,
            buyer: auth.own_name(body.buyer)?,
        })
    };
    ended(&s, id, propose(&s, &req, build).await?)
}

/// `POST /v1/auctions/{id}/cancel` (the body may be empty).
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    seller: Option<String>,
}

/// The seller may cancel before the first bid; an admin any time before the end. Who
/// cancels is the caller's account: its own auction as the seller, else as an admin.
#[utoipa::path(
    post,
    path = "/v1/auctions/{id}/cancel",
    operation_id = "cancel_auction",
    tag = "bids",
    request_body(content = Option<Cancel>, description = "Optional; may be empty"),
    params(("id" = u64, Path, description = ID), IdempotencyKey),
    security(("token" = [])),
    responses(
        (status = 200, description = "Cancelled", body = Ended),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`not_seller`, `identity_mismatch`", body = ErrorBody),
        (status = 404, description = "`unknown_auction`", body = ErrorBody),
        (status = 409, description = "`auction_has_bids`, `auction_closed`, `auction_cancelled`", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    let body: Cancel = if req.body.iter().all(u8::is_ascii_whitespace) {
        Cancel::default()
    } else {
        parse_json(&req.body)?
    };
    let build = |_, auth: &crate::auth::Authenticated| {
        let seller = s.sm.read().book.auction(id).map(|a| a.spec.seller.clone());
        let by = match (body.seller, seller) {
            (Some(given), _) => Actor::Seller(auth.own_name(Some(given))?),
            (None, Some(seller)) if seller == auth.name() => Actor::Seller(seller),
            (None, _) if auth.has(Role::Admin) => Actor::Admin,
            (None, _) => return Err(ApiError::Rejected(gavel_storage::Rejection::NotSeller)),
        };
        Ok(Op::CancelAuction { auction_id: id, by })
    };
    ended(&s, id, propose(&s, &req, build).await?)
}

fn ended(s: &AppState, id: u64, resp: BookResponse) -> Result<Response, ApiError> {
    match resp {
        BookResponse::AuctionEnded { outcome, .. } => {
            let st = s.sm.read();
            let view = st
                .book
                .auction(id)
                .map(|a| auction_view(a, st.book.format(id), st.book.rounds(id), s.now_ms()));
            let purchase = match &outcome {
                Outcome::BoughtNow { buyer, price } => Some(Purchase {
                    buyer: buyer.clone(),
                    price: *price,
                }),
                _ => None,
            };
            Ok(Json(Ended {
                outcome: outcome.as_str(),
                purchase,
                auction: view,
            })
            .into_response())
        }
        other => Err(ApiError::Internal(format!("unexpected response: {other:?}"))),
    }
}

/// `GET /v1/auctions/{id}/result`: the caller's own result once the auction has ended:
/// `won` with the price they pay, or `lost` with the winning price (if it sold). The
/// seller and admins see the outcome; anyone else who did not bid gets 404.
#[utoipa::path(
    get,
    path = "/v1/auctions/{id}/result",
    operation_id = "get_result",
    tag = "bids",
    params(("id" = u64, Path, description = ID), ReadParams),
    security(("token" = [])),
    responses(
        (status = 200, description = "The caller's result", body = ResultView),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 404, description = "`unknown_auction`, `not_a_participant` (the caller did not bid)", body = ErrorBody),
        (status = 409, description = "`auction_not_ended`", body = ErrorBody),
    )
)]
pub async fn result(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(params): ApiQuery<ReadParams>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    read_barrier(&s, params.consistency.as_deref()).await?;
    let auth = crate::auth::authenticate(&s, &req)?;
    let st = s.sm.read();
    let auction = st.book.auction(id).ok_or_else(|| ApiError::unknown_auction(id))?;
    let Some(outcome) = &auction.outcome else {
        return Err(ApiError::Conflict {
            code: "auction_not_ended",
            message: format!("auction {id} has not ended; its result is known at the close"),
        });
    };
    let sold = match outcome {
        Outcome::Sold { winner, price } | Outcome::BoughtNow { buyer: winner, price } => Some((winner, *price)),
        _ => None,
    };
    let me = auth.name();
    let bid = auction.bids.iter().any(|b| b.bidder == me);
    let rounds = st.book.rounds(id);
    let bid = bid || rounds.is_some_and(|r| r.participants.iter().any(|p| p == me));
    let mut v = ResultView {
        auction_id: id,
        format: st.book.format(id).map_or("english", |f| f.name()),
        outcome: outcome.as_str(),
        result: "",
        price: None,
        winning_price: None,
        detail: None,
        totals: rounds.map(crate::auctions::totals_view),
    };
    match sold {
        Some((winner, price)) if winner == me => {
            v.result = "won";
            v.price = Some(price);
        }
        _ if bid => {
            v.result = "lost";
            v.winning_price = Some(sold.map(|(_, price)| price));
        }
        _ if me == auction.spec.seller || auth.has(gavel_storage::book::accounts::Role::Admin) => {
            v.result = "not_a_bidder";
            v.detail = Some(crate::auctions::outcome_view(outcome));
        }
        _ => {
            return Err(ApiError::NotFound {
                code: "not_a_participant",
                message: format!("{me} did not bid in auction {id}"),
            })
        }
    }
    Ok(Json(v).into_response())
}

/// `POST /v1/auctions/{id}/join` (the body may be empty).
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Join {
    bidder: Option<String>,
}

/// `POST /v1/auctions/{id}/join`: the caller joins a multi-round auction while it is
/// open for joining.
#[utoipa::path(
    post,
    path = "/v1/auctions/{id}/join",
    operation_id = "join_auction",
    tag = "bids",
    request_body(content = Option<Join>, description = "Optional; may be empty"),
    params(("id" = u64, Path, description = ID), IdempotencyKey),
    security(("token" = [])),
    responses(
        (status = 200, description = "Joined: the auction after it", body = AuctionView),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`, `identity_mismatch`", body = ErrorBody),
        (status = 404, description = "`unknown_auction`", body = ErrorBody),
        (status = 409, description = "`joining_closed`, `already_joined`, `seller_cannot_bid`", body = ErrorBody),
    )
)]
pub async fn join(State(s): State<AppState>, ApiPath(id): ApiPath<u64>, req: RawRequest) -> Result<Response, ApiError> {
    let body: Join = if req.body.iter().all(u8::is_ascii_whitespace) {
        Join::default()
    } else {
        parse_json(&req.body)?
    };
    let build = |_, auth: &crate::auth::Authenticated| {
        Ok(Op::JoinAuction {
            auction_id: id,
            bidder: auth.own_name(body.bidder)?,
        })
    };
    rounds_answer(&s, id, propose(&s, &req, build).await?)
}

/// `POST /v1/auctions/{id}/start`: the seller starts round 1 once enough have joined.
#[utoipa::path(
    post,
    path = "/v1/auctions/{id}/start",
    operation_id = "start_rounds",
    tag = "bids",
    params(("id" = u64, Path, description = ID), IdempotencyKey),
    security(("token" = [])),
    responses(
        (status = 200, description = "Round 1 has begun: the auction after it", body = AuctionView),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`not_seller`", body = ErrorBody),
        (status = 404, description = "`unknown_auction`", body = ErrorBody),
        (status = 409, description = "`not_enough_bidders`, `joining_closed`", body = ErrorBody),
    )
)]
pub async fn start(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    let build = |_, auth: &crate::auth::Authenticated| {
        Ok(Op::StartRounds {
            auction_id: id,
            seller: auth.name().to_string(),
        })
    };
    rounds_answer(&s, id, propose(&s, &req, build).await?)
}

/// The multi-round auction after a join or a start.
fn rounds_answer(s: &AppState, id: u64, resp: BookResponse) -> Result<Response, ApiError> {
    match resp {
        BookResponse::RoundsChanged { .. } => {
            let st = s.sm.read();
            let view = st
                .book
                .auction(id)
                .map(|a| auction_view(a, st.book.format(id), st.book.rounds(id), s.now_ms()));
            Ok(Json(view).into_response())
        }
        other => Err(ApiError::Internal(format!("unexpected response: {other:?}"))),
    }
}
