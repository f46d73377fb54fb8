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
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auctions::{auction_view, propose, read_barrier, ReadParams};
use crate::error::ApiError;
use crate::json::{now_ms, parse_json, rfc3339};
use crate::request::RawRequest;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceBid {
    /// Optional: the caller's account bids; if given it must be that name.
    bidder: Option<String>,
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
    match answer {
        BookResponse::BidAccepted(b) => Ok((
            StatusCode::CREATED,
            Json(json!({
                "bid_id": b.bid_id,
                "auction_id": b.auction_id,
                "price": b.price,
                "leader": b.leader,
                "leading": b.leading,
                // None once the bid ended the auction (a Dutch sale).
                "min_next_bid": (b.min_next_bid != u64::MAX).then_some(b.min_next_bid),
                "reserve_met": has_reserve.then_some(b.reserve_met),
                "ends_at": rfc3339(b.ends_at_ms),
                "extended": b.extended,
                "seq": b.seq,
            })),
        )
            .into_response()),
        BookResponse::SealedBidAccepted {
            auction_id,
            bid_id,
            seq,
            replaced,
            ..
        } => Ok((
            StatusCode::CREATED,
            Json(json!({
                "bid_id": bid_id,
                "auction_id": auction_id,
                "sealed": true,
                "replaced": replaced,
                "seq": seq,
            })),
        )
            .into_response()),
        other => Err(ApiError::Internal(format!("unexpected response to a bid: {other:?}"))),
    }
}

/// Bid history in commit order. Proxy maxima are not shown.
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
    if matches!(st.book.format(id), Some(Format::MultiRound(_))) {
        // Completed rounds are revealed to everyone; the round under way is sealed.
        let rounds = st.book.rounds(id).cloned().unwrap_or_default();
        return Ok(Json(json!({
            "auction_id": id,
            "round": rounds.round,
            "rounds": crate::auctions::rounds_view(&rounds),
            "bids_this_round": rounds.current.len(),
            "bids": [],
        }))
        .into_response());
    }
    if st.book.is_sealed_open(id) {
        // Sealed until the close, for everyone: only how many have bid.
        return Ok(Json(json!({
            "auction_id": id,
            "sealed": true,
            "bid_count": auction.bids.len(),
            "bids": [],
        }))
        .into_response());
    }
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
                // The nonce and signature are public; the signed body may hold a proxy
                // maximum, so only an admin (the operator, for audits) sees it.
                "signed": b.signed.as_ref().map(|s| {
                    let mut v = json!({
                        "nonce": s.nonce,
                        "signature": base64::engine::general_purpose::STANDARD.encode(&s.signature),
                    });
                    if admin {
                        v["body"] = json!(String::from_utf8_lossy(&s.body));
                        v["max_amount"] = json!(b.max_amount);
                    }
                    v
                }),
            })
        })
        .collect();
    Ok(Json(json!({ "auction_id": id, "bids": bids })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuyNow {
    /// Optional: the caller's account buys; if given it must be that name.
    buyer: Option<String>,
}

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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Cancel {
    seller: Option<String>,
}

/// The seller may cancel before the first bid; an admin any time before the end. Who
/// cancels is the caller's account: its own auction as the seller, else as an admin.
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
                .map(|a| auction_view(a, st.book.format(id), st.book.rounds(id), now_ms()));
            let winner = match &outcome {
                Outcome::BoughtNow { buyer, price } => json!({ "buyer": buyer, "price": price }),
                _ => Value::Null,
            };
            Ok(Json(json!({ "outcome": outcome.as_str(), "purchase": winner, "auction": view })).into_response())
        }
        other => Err(ApiError::Internal(format!("unexpected response: {other:?}"))),
    }
}

/// `GET /v1/auctions/{id}/result`: the caller's own result once the auction has ended:
/// `won` with the price they pay, or `lost` with the winning price (if it sold). The
/// seller and admins see the outcome; anyone else who did not bid gets 404.
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
    let mut v = json!({
        "auction_id": id,
        "format": st.book.format(id).map_or("english", |f| f.name()),
        "outcome": outcome.as_str(),
    });
    let rounds = st.book.rounds(id);
    let bid = bid || rounds.is_some_and(|r| r.participants.iter().any(|p| p == me));
    if let Some(rounds) = rounds {
        v["totals"] = crate::auctions::totals_view(rounds);
    }
    match sold {
        Some((winner, price)) if winner == me => {
            v["result"] = json!("won");
            v["price"] = json!(price);
        }
        _ if bid => {
            v["result"] = json!("lost");
            v["winning_price"] = json!(sold.map(|(_, price)| price));
        }
        _ if me == auction.spec.seller || auth.has(gavel_storage::book::accounts::Role::Admin) => {
            v["result"] = json!("not_a_bidder");
            v["detail"] = crate::auctions::outcome_view(outcome);
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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Join {
    bidder: Option<String>,
}

/// `POST /v1/auctions/{id}/join`: the caller joins a multi-round auction while it is
/// open for joining.
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
                .map(|a| auction_view(a, st.book.format(id), st.book.rounds(id), now_ms()));
            Ok(Json(view.unwrap_or(Value::Null)).into_response())
        }
        other => Err(ApiError::Internal(format!("unexpected response: {other:?}"))),
    }
}
