//! `/v1/auctions`: create, read and list auctions.
//!
//! Writes are validated and authenticated here, on whichever node the client reached
//! (so bad input never reaches the log), handed to the front door as a typed command
//! (the leader admits it, a follower sends it there), and answered from the committed
//! result. Reads are linearizable by default (the leader's read index, applied here
//! before reading); `?consistency=stale` answers from this node at once.

use crate::json::{ApiPath, ApiQuery};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gavel_storage::book::formats::{dutch_ends_at, dutch_price, DutchSpec, Format};
use gavel_storage::book::idempotency;
use gavel_storage::book::rounds::{MultiRoundSpec, Rounds};
use gavel_storage::{
    Auction, AuctionSpec, AuctionStatus, Command, IncrementBand, IncrementRule, Op, Outcome, Response as BookResponse,
    SoftClose,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::{authenticate_fresh, Authenticated};
use crate::error::ApiError;
use crate::json::{now_ms, parse_json, parse_rfc3339, rfc3339};
use crate::request::RawRequest;
use crate::state::AppState;

/// Longest auction accepted.
pub const AUCTION_DURATION_MAX_SECS: u64 = 365 * 24 * 3600;
/// Default and largest page of `GET /v1/auctions`.
pub const LIST_LIMIT_DEFAULT: usize = 50;
pub const LIST_LIMIT_MAX: usize = 500;
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IncrementDto {
    Fixed(u64),
    Table(Vec<BandDto>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BandDto {
    from: u64,
    increment: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SoftCloseDto {
    window_secs: u32,
    extend_secs: u32,
    max_extensions: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAuction {
    /// Optional: the caller's account is the seller; if given it must be that name.
    seller: Option<String>,
    title: String,
    /// `english` (the default), `sealed_first_price`, `sealed_second_price` or `dutch`.
    format: Option<String>,
    starting_price: u64,
    /// English only (required there).
    increment: Option<IncrementDto>,
    reserve_price: Option<u64>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    duration_secs: Option<u64>,
    soft_close: Option<SoftCloseDto>,
    buy_now_price: Option<u64>,
    /// Dutch only (all three required there).
    decrement: Option<u64>,
    decrement_every_secs: Option<u64>,
    floor_price: Option<u64>,
    /// multi_round_sealed only (all but `join_secs` required there).
    min_rounds: Option<u32>,
    max_rounds: Option<u32>,
    round_secs: Option<u64>,
    min_bidders: Option<u32>,
    join_secs: Option<u64>,
}

/// How long a multi-round auction takes participants when `join_secs` is not given.
pub const JOIN_SECS_DEFAULT: u64 = 600;

/// The formats `POST /v1/auctions` runs.
const FORMATS: [&str; 5] = [
    "english",
    "sealed_first_price",
    "sealed_second_price",
    "dutch",
    "multi_round_sealed",
];

impl CreateAuction {
    /// Refuses the fields that do not fit `format`, naming the first.
    fn refuse_fields(&self, format: &str, fields: &[(&str, bool)]) -> Result<(), ApiError> {
        match fields.iter().find(|(_, given)| *given) {
            Some((field, _)) => Err(ApiError::invalid(format!("{field} does not fit a {format} auction"))),
            None => Ok(()),
        }
    }

    /// The spec and, for another format than English, the format.
    fn into_spec(self, now: u64, seller: String) -> Result<(AuctionSpec, Option<Format>), ApiError> {
        let name = self.format.as_deref().unwrap_or("english");
        if !FORMATS.contains(&name) {
            return Err(ApiError::invalid(format!(
                "format must be one of {}, not {name:?}",
                FORMATS.join(", ")
            )));
        }
        let dutch_fields = [
            ("decrement", self.decrement.is_some()),
            ("decrement_every_secs", self.decrement_every_secs.is_some()),
            ("floor_price", self.floor_price.is_some()),
        ];
        let english_fields = [
            ("increment", self.increment.is_some()),
            ("soft_close", self.soft_close.is_some()),
            ("buy_now_price", self.buy_now_price.is_some()),
        ];
        let round_fields = [
            ("min_rounds", self.min_rounds.is_some()),
            ("max_rounds", self.max_rounds.is_some()),
            ("round_secs", self.round_secs.is_some()),
            ("min_bidders", self.min_bidders.is_some()),
            ("join_secs", self.join_secs.is_some()),
        ];
        let starts_at_ms = match &self.starts_at {
            Some(s) => parse_rfc3339("starts_at", s)?,
            None => now,
        };
        let format = match name {
            "english" => {
                self.refuse_fields(name, &dutch_fields)?;
                self.refuse_fields(name, &round_fields)?;
                None
            }
            "multi_round_sealed" => {
                self.refuse_fields(name, &english_fields)?;
                self.refuse_fields(name, &dutch_fields)?;
                self.refuse_fields(
                    name,
                    &[
                        ("ends_at", self.ends_at.is_some()),
                        ("duration_secs", self.duration_secs.is_some()),
                    ],
                )?;
                let need = |field: &str, v: Option<u64>| {
                    v.ok_or_else(|| ApiError::invalid(format!("a multi_round_sealed auction needs {field}")))
                };
                let small = |field: &str, v: Option<u32>| need(field, v.map(u64::from)).map(|v| v as u32);
                Some(Format::MultiRound(MultiRoundSpec {
                    min_rounds: small("min_rounds", self.min_rounds)?,
                    max_rounds: small("max_rounds", self.max_rounds)?,
                    round_ms: need("round_secs", self.round_secs)?.saturating_mul(1000),
                    min_bidders: small("min_bidders", self.min_bidders)?,
                    join_ms: self.join_secs.unwrap_or(JOIN_SECS_DEFAULT).saturating_mul(1000),
                }))
            }
            "dutch" => {
                self.refuse_fields(name, &english_fields)?;
                self.refuse_fields(name, &round_fields)?;
                self.refuse_fields(
                    name,
                    &[
                        ("reserve_price", self.reserve_price.is_some()),
                        ("ends_at", self.ends_at.is_some()),
                        ("duration_secs", self.duration_secs.is_some()),
                    ],
                )?;
                let need = |field: &str, v: Option<u64>| {
                    v.ok_or_else(|| ApiError::invalid(format!("a dutch auction needs {field}")))
                };
                Some(Format::Dutch(DutchSpec {
                    decrement: need("decrement", self.decrement)?,
                    decrement_every_ms: need("decrement_every_secs", self.decrement_every_secs)?.saturating_mul(1000),
                    floor_price: need("floor_price", self.floor_price)?,
                }))
            }
            sealed => {
                self.refuse_fields(name, &english_fields)?;
                self.refuse_fields(name, &dutch_fields)?;
                self.refuse_fields(name, &round_fields)?;
                Some(if sealed == "sealed_first_price" {
                    Format::SealedFirstPrice
                } else {
                    Format::SealedSecondPrice
                })
            }
        };
        let ends_at_ms = match (&self.ends_at, self.duration_secs) {
            _ if matches!(format, Some(Format::Dutch(_))) => {
                let Some(Format::Dutch(dutch)) = &format else {
                    unreachable!()
                };
                dutch_ends_at(starts_at_ms, self.starting_price, dutch).unwrap_or(u64::MAX)
            }
            // A multi-round auction's first deadline is the end of its joining window.
            _ if matches!(format, Some(Format::MultiRound(_))) => {
                let Some(Format::MultiRound(rounds)) = &format else {
                    unreachable!()
                };
                starts_at_ms.saturating_add(rounds.join_ms)
            }
            (Some(_), Some(_)) => return Err(ApiError::invalid("give ends_at or duration_secs, not both")),
            (None, None) => return Err(ApiError::invalid("give ends_at or duration_secs")),
            (Some(e), None) => parse_rfc3339("ends_at", e)?,
            (None, Some(0)) => return Err(ApiError::invalid("duration_secs must be > 0")),
            (None, Some(d)) if d > AUCTION_DURATION_MAX_SECS => {
                return Err(ApiError::invalid(format!(
                    "duration_secs must be at most {AUCTION_DURATION_MAX_SECS} (a year)"
                )))
            }
            (None, Some(d)) => starts_at_ms.saturating_add(d * 1000),
        };
        if ends_at_ms <= now {
            return Err(ApiError::invalid("ends_at is in the past"));
        }
        let increment = match self.increment {
            // Only English auctions step up; the others keep a step of 1, unused.
            None if format.is_some() => IncrementRule::Fixed(1),
            None => return Err(ApiError::invalid("an english auction needs increment")),
            Some(IncrementDto::Fixed(step)) => IncrementRule::Fixed(step),
            Some(IncrementDto::Table(bands)) => IncrementRule::Table(
                bands
                    .into_iter()
                    .map(|b| IncrementBand {
                        from: b.from,
                        increment: b.increment,
                    })
                    .collect(),
            ),
        };
        let spec = AuctionSpec {
            seller,
            title: self.title,
            starting_price: self.starting_price,
            increment,
            reserve_price: self.reserve_price,
            starts_at_ms,
            ends_at_ms,
            soft_close: self.soft_close.map(|s| SoftClose {
                window_secs: s.window_secs,
                extend_secs: s.extend_secs,
                max_extensions: s.max_extensions,
            }),
            buy_now_price: self.buy_now_price,
        };
        spec.validate().map_err(ApiError::invalid)?;
        if let Some(format) = &format {
            format.validate(&spec).map_err(ApiError::invalid)?;
        }
        Ok((spec, format))
    }
}

/// Attaches the request's `Idempotency-Key`, if any, after checking it, with the digest
/// of the request as the client sent it: a retry is the same request, even though the
/// leader stamps a new time into the command. Keys are the caller's own: the digest is
/// of the account name and the key, and the account is the client the table's quota
/// counts against.
pub fn with_idempotency_key(cmd: Command, req: &RawRequest, auth: &Authenticated) -> Result<Command, ApiError> {
    let Some(raw) = req.headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(cmd);
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| k.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .ok_or_else(|| ApiError::invalid("Idempotency-Key must be visible ASCII"))?;
    idempotency::check_key(key).map_err(|m| ApiError::invalid(format!("Idempotency-Key: {m}")))?;
    Ok(cmd.with_idempotency(idempotency::Idempotency {
        key: idempotency::key_digest(&format!("{}\0{key}", auth.name())),
        request: idempotency::request_digest(req.method.as_str(), req.uri.path(), &req.body),
        client: idempotency::client_id(&format!("account:{}", auth.name())),
    }))
}

/// Proposes a command built from the request, as the caller its token names, through
/// the front door; a committed rejection becomes an error response.
pub async fn propose(
    s: &AppState,
    req: &RawRequest,
    build: impl FnOnce(u64, &Authenticated) -> Result<Op, ApiError>,
) -> Result<BookResponse, ApiError> {
    if let Some(problem) = s.stopped() {
        return Err(problem);
    }
    let auth = authenticate_fresh(s, req).await?;
    s.limits.check_account(auth.name())?;
    let now = now_ms();
    let op = build(now, &auth)?;
    let signed = match op {
        Op::PlaceBid { .. } => crate::auth::signature(req)?,
        _ => None,
    };
    let mut cmd = with_idempotency_key(Command::new(now, op).with_caller(auth.caller.clone()), req, &auth)?;
    if let Some(signed) = signed {
        cmd = cmd.with_signature(signed);
    }
    match s.door.write(cmd).await {
        Ok(BookResponse::Rejected(r)) => Err(ApiError::Rejected(r)),
        Ok(resp) => Ok(resp),
        Err(e) => Err(s.stopped().unwrap_or_else(|| e.into())),
    }
}

pub async fn create(State(s): State<AppState>, req: RawRequest) -> Result<Response, ApiError> {
    let body: CreateAuction = parse_json(&req.body)?;
    // The leader places the auction on a live worker when it admits the command.
    let resp = propose(&s, &req, |now, auth| {
        let seller = auth.own_name(body.seller.clone())?;
        Ok(match body.into_spec(now, seller)? {
            (spec, None) => Op::CreateAuction { spec, worker: None },
            (spec, Some(format)) => Op::CreateFormatAuction {
                spec,
                format,
                worker: None,
            },
        })
    })
    .await?;
    let (auction_id, seq) = match resp {
        BookResponse::AuctionCreated { auction_id, seq, .. } => (auction_id, seq),
        other => return Err(ApiError::Internal(format!("unexpected response to create: {other:?}"))),
    };
    let st = s.sm.read();
    let auction = st
        .book
        .auction(auction_id)
        .ok_or_else(|| ApiError::Internal("created auction missing".into()))?;
    // The answer is the auction as it was created, also for a retry answered from the
    // idempotency table after bids have come in.
    let view = auction_view(
        &as_created(auction, seq),
        st.book.format(auction_id),
        None,
        auction.created_at_ms,
    );
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/auctions/{auction_id}"))],
        Json(view),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    pub consistency: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    consistency: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    after: Option<u64>,
}

/// Waits for the leader's read index unless the client asked for a stale read.
pub async fn read_barrier(s: &AppState, consistency: Option<&str>) -> Result<(), ApiError> {
    match consistency {
        Some("stale") => Ok(()),
        None | Some("linearizable") => Ok(s.door.read_index().await?),
        Some(other) => Err(ApiError::invalid(format!(
            "consistency must be linearizable or stale, not {other:?}"
        ))),
    }
}

pub async fn get(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> Result<Response, ApiError> {
    read_barrier(&s, params.consistency.as_deref()).await?;
    let st = s.sm.read();
    let auction = st.book.auction(id).ok_or_else(|| ApiError::unknown_auction(id))?;
    Ok(Json(auction_view(auction, st.book.format(id), st.book.rounds(id), now_ms())).into_response())
}

pub async fn list(State(s): State<AppState>, ApiQuery(params): ApiQuery<ListParams>) -> Result<Response, ApiError> {
    let status = match params.status.as_deref() {
        None => None,
        Some(name) => Some(
            [
                AuctionStatus::Scheduled,
                AuctionStatus::Open,
                AuctionStatus::Closed,
                AuctionStatus::Cancelled,
            ]
            .into_iter()
            .find(|st| st.as_str() == name)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "status must be scheduled, open, closed or cancelled, not {name:?}"
                ))
            })?,
        ),
    };
    let limit = params.limit.unwrap_or(LIST_LIMIT_DEFAULT);
    if limit == 0 || limit > LIST_LIMIT_MAX {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {LIST_LIMIT_MAX}"
        )));
    }
    read_barrier(&s, params.consistency.as_deref()).await?;
    let now = now_ms();
    let st = s.sm.read();
    let mut items: Vec<Value> = Vec::new();
    let mut next = None;
    for auction in st
        .book
        .auctions()
        .filter(|a| params.after.is_none_or(|after| a.id > after))
    {
        if status.is_some_and(|want| auction.status != want) {
            continue;
        }
        if items.len() == limit {
            next = items.last().and_then(|v| v["id"].as_u64());
            break;
        }
        items.push(auction_view(
            auction,
            st.book.format(auction.id),
            st.book.rounds(auction.id),
            now,
        ));
    }
    Ok(Json(json!({ "auctions": items, "next_after": next })).into_response())
}

/// `a` as it stood right after it was created (with newest event `seq`): no bids,
/// original end.
pub fn as_created(a: &Auction, seq: u64) -> Auction {
    Auction {
        status: if a.created_at_ms >= a.spec.starts_at_ms {
            AuctionStatus::Open
        } else {
            AuctionStatus::Scheduled
        },
        price: 0,
        leader: None,
        ends_at_ms: a.spec.ends_at_ms,
        extensions: 0,
        seq,
        bids: Vec::new(),
        outcome: None,
        closed_at_ms: None,
        ..a.clone()
    }
}

fn status_name(auction: &Auction, now: u64) -> &'static str {
    match auction.status {
        s if s.is_final() => s.as_str(),
        _ if now >= auction.ends_at_ms => "closing",
        AuctionStatus::Scheduled if now >= auction.spec.starts_at_ms => "open",
        s => s.as_str(),
    }
}

pub fn outcome_view(outcome: &Outcome) -> Value {
    let mut v = json!({ "outcome": outcome.as_str() });
    match outcome {
        Outcome::Sold { winner, price } => {
            v["winner"] = json!(winner);
            v["price"] = json!(price);
        }
        Outcome::BoughtNow { buyer, price } => {
            v["winner"] = json!(buyer);
            v["price"] = json!(price);
        }
        Outcome::ReserveNotMet {
            highest_bidder,
            highest_bid,
        } => {
            v["highest_bidder"] = json!(highest_bidder);
            v["highest_bid"] = json!(highest_bid);
        }
        Outcome::Cancelled { by } => {
            v["cancelled_by"] = json!(match by {
                gavel_storage::Actor::Seller(_) => "seller",
                gavel_storage::Actor::Admin => "admin",
            });
        }
        Outcome::NotEnoughBidders { joined } => v["joined"] = json!(joined),
        Outcome::NoBids => {}
    }
    v
}

/// The public view of an auction: the reserve is never shown, only whether it is met;
/// proxy maxima are never shown.
pub fn auction_view(a: &Auction, format: Option<&Format>, rounds: Option<&Rounds>, now: u64) -> Value {
    let increment = match &a.spec.increment {
        IncrementRule::Fixed(step) => json!(step),
        IncrementRule::Table(bands) => {
            json!(bands
                .iter()
                .map(|b| json!({"from": b.from, "increment": b.increment}))
                .collect::<Vec<_>>())
        }
    };
    let mut v = json!({
     "id": a.id,
     "format": format.map_or("english", Format::name),
     "seller": a.spec.seller,
     "title": a.spec.title,
     "status": status_name(a, now),
     "starting_price": a.spec.starting_price,
     "increment": increment,
     "has_reserve": a.spec.reserve_price.is_some(),
     "reserve_met": a.spec.reserve_price.map(|_| a.reserve_met()),
     "buy_now_price": a.spec.buy_now_price,
     "starts_at": rfc3339(a.spec.starts_at_ms),
     "ends_at": rfc3339(a.ends_at_ms),
     "original_ends_at": rfc3339(a.spec.ends_at_ms),
     "soft_close": a.spec.soft_close.map(|s| SoftCloseDto { window_secs: s.window_secs, extend_secs: s.extend_secs, max_extensions: s.max_extensions }),
     "extensions": a.extensions,
     "highest_bid": a.leader.as_ref().map(|l| json!({ "bidder": l.bidder, "amount": a.price })),
     "min_next_bid": a.min_next_bid(),
     "bid_count": a.bids.len(),
     "seq": a.seq,
     "worker": a.worker,
     "created_at": rfc3339(a.created_at_ms),
     "closed_at": a.closed_at_ms.map(rfc3339),
     "result": a.outcome.as_ref().map(outcome_view),
    });
    match format {
        Some(Format::Dutch(dutch)) => {
            v["current_price"] = json!(dutch_price(a.spec.starts_at_ms, a.spec.starting_price, dutch, now));
            v["floor_price"] = json!(dutch.floor_price);
            v["decrement"] = json!(dutch.decrement);
            v["decrement_every_secs"] = json!(dutch.decrement_every_ms / 1000);
            v["increment"] = Value::Null;
            if !a.status.is_final() {
                v["min_next_bid"] = v["current_price"].clone();
            }
        }
        Some(Format::MultiRound(spec)) => {
            let rounds = rounds.cloned().unwrap_or_default();
            if a.status == AuctionStatus::Open && rounds.round == 0 {
                v["status"] = json!("open_for_joining");
            }
            v["increment"] = Value::Null;
            v["min_next_bid"] = json!(a.spec.starting_price);
            v["min_rounds"] = json!(spec.min_rounds);
            v["max_rounds"] = json!(spec.max_rounds);
            v["round_secs"] = json!(spec.round_ms / 1000);
            v["min_bidders"] = json!(spec.min_bidders);
            v["join_secs"] = json!(spec.join_ms / 1000);
            v.as_object_mut().map(|o| o.remove("original_ends_at"));
            v["round"] = json!(rounds.round);
            v["participants"] = json!(rounds.participants);
            v["bids_this_round"] = json!(rounds.current.len());
            v["rounds"] = rounds_view(&rounds);
            v["totals"] = totals_view(&rounds);
        }
        Some(sealed) if sealed.is_sealed() => {
            // Nothing of the bids before the close but how many bidders there are.
            v["sealed"] = json!(true);
            v["increment"] = Value::Null;
        }
        _ => {}
    }
    v
}

/// The revealed rounds of a multi-round auction: `[[{"bidder", "amount"}]]`, round by
/// round, each in bid order (0: no bid). The round under way is never in it.
pub fn rounds_view(rounds: &Rounds) -> Value {
    json!(rounds
        .revealed
        .iter()
        .map(|bids| bids
            .iter()
            .map(|(bidder, amount)| json!({"bidder": bidder, "amount": amount}))
            .collect::<Vec<_>>())
        .collect::<Vec<_>>())
}

/// Every participant's cumulative total over the revealed rounds, highest first (ties:
/// who reached it first).
pub fn totals_view(rounds: &Rounds) -> Value {
    json!(rounds
        .standings()
        .into_iter()
        .map(|(bidder, total)| json!({"bidder": bidder, "total": total}))
        .collect::<Vec<_>>())
}
