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
use gavel_raft::secret_matches;
use gavel_storage::{Actor, Op, Outcome, Response as BookResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auctions::{auction_view, propose, read_barrier, ReadParams};
use crate::error::ApiError;
use crate::forward::RawRequest;
use crate::json::{now_ms, parse_json, rfc3339};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceBid {
    bidder: String,
    amount: Option<u64>,
    max_amount: Option<u64>,
}

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
    let op = Op::PlaceBid {
        auction_id: id,
        bidder: body.bidder,
        amount: body.amount,
        max_amount: body.max_amount,
    };
    match propose(&s, &req, |_| Ok(op)).await? {
        Err(forwarded) => Ok(forwarded),
        Ok(BookResponse::BidAccepted(b)) => Ok((
            StatusCode::CREATED,
            Json(json!({
                "bid_id": b.bid_id,
                "auction_id": b.auction_id,
                "price": b.price,
                "leader": b.leader,
                "leading": b.leading,
                "min_next_bid": b.min_next_bid,
                "reserve_met": b.reserve_met,
                "ends_at": rfc3339(b.ends_at_ms),
                "extended": b.extended,
                "seq": b.seq,
            })),
        )
            .into_response()),
        Ok(other) => Err(ApiError::Internal(format!("unexpected response to a bid: {other:?}"))),
    }
}

/// Bid history in commit order. Proxy maxima are not shown.
pub async fn list_bids(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(params): ApiQuery<ReadParams>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    if let Some(forwarded) = read_barrier(&s, params.consistency.as_deref(), &req).await? {
        return Ok(forwarded);
    }
    let st = s.sm.read();
    let auction = st.book.auction(id).ok_or_else(|| ApiError::unknown_auction(id))?;
    let bids: Vec<Value> = auction
        .bids
        .iter()
        .map(|b| {
            json!({
                "bid_id": b.bid_id,
                "seq": b.seq,
                "bidder": b.bidder,
                "amount": b.amount,
                "price_after": b.price_after,
                "leader_after": b.leader_after,
                "at": rfc3339(b.ts_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "auction_id": id, "bids": bids })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuyNow {
    buyer: String,
}

pub async fn buy_now(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    let body: BuyNow = parse_json(&req.body)?;
    let op = Op::BuyNow {
        auction_id: id,
        buyer: body.buyer,
    };
    ended(&s, id, propose(&s, &req, |_| Ok(op)).await?)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Cancel {
    seller: Option<String>,
}

/// The seller may cancel before the first bid (`{"seller": "…"}`); an admin (the
/// cluster secret as `Authorization: Bearer …`) any time before the end.
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
    let admin = req.headers.contains_key(axum::http::header::AUTHORIZATION);
    let by = match (admin, body.seller) {
        (true, _) if secret_matches(s.secret.as_deref(), &req.headers) => Actor::Admin,
        (true, _) => return Err(ApiError::Unauthorized("wrong admin credentials".into())),
        (false, Some(seller)) => Actor::Seller(seller),
        (false, None) => {
            return Err(ApiError::invalid(
                "give {\"seller\": \"…\"}, or the admin secret as Authorization: Bearer …",
            ))
        }
    };
    let op = Op::CancelAuction { auction_id: id, by };
    ended(&s, id, propose(&s, &req, |_| Ok(op)).await?)
}

fn ended(s: &AppState, id: u64, resp: Result<BookResponse, Response>) -> Result<Response, ApiError> {
    match resp {
        Err(forwarded) => Ok(forwarded),
        Ok(BookResponse::AuctionEnded { outcome, .. }) => {
            let st = s.sm.read();
            let view = st.book.auction(id).map(|a| auction_view(a, now_ms()));
            let winner = match &outcome {
                Outcome::BoughtNow { buyer, price } => json!({ "buyer": buyer, "price": price }),
                _ => Value::Null,
            };
            Ok(Json(json!({ "outcome": outcome.as_str(), "purchase": winner, "auction": view })).into_response())
        }
        Ok(other) => Err(ApiError::Internal(format!("unexpected response: {other:?}"))),
    }
}
