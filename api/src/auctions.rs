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
use gavel_storage::archive::ArchivedAuction;
use gavel_storage::book::formats::{dutch_ends_at, dutch_price, DutchSpec, Format};
use gavel_storage::book::idempotency;
use gavel_storage::book::rounds::{MultiRoundSpec, Rounds};
use gavel_storage::{
    Auction, AuctionSpec, AuctionStatus, Command, IncrementBand, IncrementRule, Op, Outcome, Response as BookResponse,
    SoftClose,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{authenticate_fresh, Authenticated};
use crate::error::ApiError;
use crate::json::{parse_json, parse_rfc3339, rfc3339};
use crate::openapi::ErrorBody;
use crate::request::RawRequest;
use crate::state::AppState;

/// Longest auction accepted.
pub const AUCTION_DURATION_MAX_SECS: u64 = 365 * 24 * 3600;
/// Default and largest page of `GET /v1/auctions`.
pub const LIST_LIMIT_DEFAULT: usize = 50;
pub const LIST_LIMIT_MAX: usize = 500;
/// Archived auctions one `GET /v1/auctions` may read from disk while filtering by status.
pub const LIST_ARCHIVE_READS_MAX: usize = 5_000;
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// A fixed step, or a table of price bands: the band with the greatest `from` at or below
/// the current price applies; the first band starts at 0, `from` strictly increases, at
/// most 64 bands.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum IncrementDto {
    Fixed(u64),
    Table(Vec<BandDto>),
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BandDto {
    pub from: u64,
    pub increment: u64,
}

/// Bids in the last `window_secs` push the end out by `extend_secs`, at most
/// `max_extensions` times.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SoftCloseDto {
    pub window_secs: u32,
    pub extend_secs: u32,
    pub max_extensions: u32,
}

/// `POST /v1/auctions`. Money fields are integer minor units. Which fields a format
/// takes: docs/formats.md; a field that does not fit the format is a 400 naming it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAuction {
    /// Optional: the caller's account is the seller; if given it must be that name.
    seller: Option<String>,
    title: String,
    /// `english` (the default), `sealed_first_price`, `sealed_second_price`, `dutch` or
    /// `multi_round_sealed`.
    #[schema(example = "english")]
    format: Option<String>,
    starting_price: u64,
    /// English only (required there).
    increment: Option<IncrementDto>,
    reserve_price: Option<u64>,
    /// RFC 3339; defaults to now.
    starts_at: Option<String>,
    /// RFC 3339; give this or `duration_secs` (English and sealed formats).
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
    let now = s.now_ms();
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

/// `POST /v1/auctions`: a seller creates an auction.
#[utoipa::path(
    post,
    path = "/v1/auctions",
    operation_id = "create_auction",
    tag = "auctions",
    request_body = CreateAuction,
    params(IdempotencyKey),
    security(("token" = [])),
    responses(
        (status = 201, description = "Created (as it stood when created, also on a retry)", body = AuctionView,
         headers(("Location" = String, description = "/v1/auctions/{id}"))),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden` (not a seller), `identity_mismatch`", body = ErrorBody),
        (status = 409, description = "`idempotency_key_reused`, `idempotency_key_expired`", body = ErrorBody),
        (status = 503, description = "`no_capacity`: no live worker has room", body = ErrorBody),
    )
)]
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
    // The answer is the auction as it was created, also for a retry answered from the
    // idempotency table after bids have come in (or after it was archived).
    let view = {
        let st = s.sm.read();
        st.book
            .auction(auction_id)
            .map(|a| auction_view(&as_created(a, seq), st.book.format(auction_id), None, a.created_at_ms))
    };
    let view = match view {
        Some(view) => view,
        None => {
            let record =
                archived(&s, auction_id)?.ok_or_else(|| ApiError::Internal("created auction missing".into()))?;
            let a = &record.auction;
            auction_view(&as_created(a, seq), record.format.as_ref(), None, a.created_at_ms)
        }
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/auctions/{auction_id}"))],
        Json(view),
    )
        .into_response())
}

/// The `Idempotency-Key` header every mutating request may carry.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// A retry with the same key (same account) returns the first answer and changes
    /// nothing; the same key on a different request is a 409. At most 255 visible ASCII
    /// characters; held 24 hours.
    #[param(rename = "Idempotency-Key")]
    #[allow(dead_code)]
    idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// `linearizable` (the default: the leader's read index) or `stale` (this node's
    /// state, no round trip).
    pub consistency: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `linearizable` (the default) or `stale`.
    consistency: Option<String>,
    /// `scheduled`, `open`, `closed` or `cancelled`.
    status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<usize>,
    /// Auctions with a greater id (the previous page's `next_after`).
    after: Option<u64>,
    /// `true`: only archived auctions; `false`: only those still in memory; absent: both.
    archived: Option<bool>,
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

/// `GET /v1/auctions/{id}`.
#[utoipa::path(
    get,
    path = "/v1/auctions/{id}",
    operation_id = "get_auction",
    tag = "auctions",
    params(("id" = u64, Path, description = "The auction's id"), ReadParams),
    responses(
        (status = 200, description = "The auction", body = AuctionView),
        (status = 404, description = "`unknown_auction`", body = ErrorBody),
    )
)]
pub async fn get(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> Result<Response, ApiError> {
    read_barrier(&s, params.consistency.as_deref()).await?;
    Ok(Json(view_of(&s, id)?).into_response())
}

/// `GET /v1/auctions`.
#[utoipa::path(
    get,
    path = "/v1/auctions",
    operation_id = "list_auctions",
    tag = "auctions",
    params(ListParams),
    responses((status = 200, description = "A page of auctions, by id", body = AuctionList))
)]
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
    let after = params.after.unwrap_or(0);
    // Live auctions first, from the book, at most one more than a page.
    let mut live: Vec<AuctionView> = Vec::new();
    if params.archived != Some(true) {
        let now = s.now_ms();
        let st = s.sm.read();
        for auction in st.book.auctions().filter(|a| a.id > after) {
            if status.is_some_and(|want| auction.status != want) {
                continue;
            }
            live.push(auction_view(
                auction,
                st.book.format(auction.id),
                st.book.rounds(auction.id),
                now,
            ));
            if live.len() > limit {
                break;
            }
        }
    }
    // Archived ones (closed or cancelled), read from disk within a budget: a page may
    // then hold fewer than `limit`; `next_after` goes on from where it stopped.
    let mut old: Vec<AuctionView> = Vec::new();
    let mut scanned_to = None;
    let final_wanted = status.is_none_or(|st| st.is_final());
    if params.archived != Some(false) && final_wanted {
        let stop_at = live.get(limit).map_or(u64::MAX, |v| v.id);
        let mut cursor = after;
        let mut budget = LIST_ARCHIVE_READS_MAX;
        'scan: while old.len() <= limit {
            let ids = s.sm.archive().ids_after(cursor, LIST_LIMIT_MAX);
            if ids.is_empty() {
                break;
            }
            for id in ids {
                if id > stop_at {
                    break 'scan;
                }
                if budget == 0 {
                    scanned_to = Some(cursor);
                    break 'scan;
                }
                budget -= 1;
                cursor = id;
                let Some(record) = archived(&s, id)? else { continue };
                if status.is_some_and(|want| record.auction.status != want) {
                    continue;
                }
                old.push(archived_view(&record));
                if old.len() > limit {
                    break 'scan;
                }
            }
        }
    }
    let mut items: Vec<AuctionView> = live.into_iter().chain(old).collect();
    items.sort_by_key(|v| v.id);
    if let Some(stopped) = scanned_to {
        items.retain(|v| v.id <= stopped);
    }
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|v| v.id)
    } else {
        scanned_to
    };
    Ok(Json(AuctionList {
        auctions: items,
        next_after: next,
    })
    .into_response())
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

/// How an auction ended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutcomeView {
    /// `sold`, `reserve_not_met`, `no_bids`, `cancelled`, `bought_now` or
    /// `not_enough_bidders`.
    pub outcome: &'static str,
    /// The winner or buyer (sold, bought_now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// What the winner pays (sold, bought_now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<u64>,
    /// reserve_not_met: who bid highest, and how much.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highest_bidder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highest_bid: Option<u64>,
    /// cancelled: `seller` or `admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<&'static str>,
    /// not_enough_bidders: how many had joined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined: Option<u32>,
}

pub fn outcome_view(outcome: &Outcome) -> OutcomeView {
    let mut v = OutcomeView {
        outcome: outcome.as_str(),
        winner: None,
        price: None,
        highest_bidder: None,
        highest_bid: None,
        cancelled_by: None,
        joined: None,
    };
    match outcome {
        Outcome::Sold { winner, price } | Outcome::BoughtNow { buyer: winner, price } => {
            v.winner = Some(winner.clone());
            v.price = Some(*price);
        }
        Outcome::ReserveNotMet {
            highest_bidder,
            highest_bid,
        } => {
            v.highest_bidder = Some(highest_bidder.clone());
            v.highest_bid = Some(*highest_bid);
        }
        Outcome::Cancelled { by } => {
            v.cancelled_by = Some(match by {
                gavel_storage::Actor::Seller(_) => "seller",
                gavel_storage::Actor::Admin => "admin",
            });
        }
        Outcome::NotEnoughBidders { joined } => v.joined = Some(*joined),
        Outcome::NoBids => {}
    }
    v
}

/// The leading bid of an English or Dutch auction.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HighestBid {
    pub bidder: String,
    pub amount: u64,
}

/// A bid of a revealed round (0: the participant did not bid).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoundBid {
    pub bidder: String,
    pub amount: u64,
}

/// A participant's cumulative total over the revealed rounds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Total {
    pub bidder: String,
    pub total: u64,
}

/// The public view of an auction. The reserve is never shown (only whether it is met),
/// nor are proxy maxima, nor sealed amounts before the close. Fields after `result`
/// appear only for the formats that have them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuctionView {
    pub id: u64,
    /// Whether it was moved out of the in-memory book to the archive (some time after it
    /// closed; `archive_after_secs`). Archived auctions answer every read as before.
    pub archived: bool,
    /// `english`, `sealed_first_price`, `sealed_second_price`, `dutch` or
    /// `multi_round_sealed`.
    pub format: &'static str,
    pub seller: String,
    pub title: String,
    /// `scheduled`, `open`, `open_for_joining` (multi-round), `closing` (its end has
    /// passed and the close is being committed), `closed` or `cancelled`.
    pub status: &'static str,
    pub starting_price: u64,
    /// English only (null for the other formats).
    pub increment: Option<IncrementDto>,
    pub has_reserve: bool,
    /// Whether the hidden reserve is met; null without a reserve.
    pub reserve_met: Option<bool>,
    pub buy_now_price: Option<u64>,
    pub starts_at: String,
    /// The current end (soft-close extensions included; a multi-round auction's current
    /// deadline).
    pub ends_at: String,
    /// The end the auction was created with (not for multi-round auctions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_ends_at: Option<String>,
    pub soft_close: Option<SoftCloseDto>,
    pub extensions: u32,
    /// null with no bids, and for sealed formats.
    pub highest_bid: Option<HighestBid>,
    /// The least a bid must be now; null once the auction has ended.
    pub min_next_bid: Option<u64>,
    pub bid_count: usize,
    /// The newest event's seq (gapless per auction).
    pub seq: u64,
    /// The node hosting the auction (its clock and live updates).
    pub worker: Option<u64>,
    pub created_at: String,
    pub closed_at: Option<String>,
    pub result: Option<OutcomeView>,
    /// Sealed formats: always true (amounts are hidden until the close).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed: Option<bool>,
    /// Dutch: the price now, the floor and how it falls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_price: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_price: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decrement: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decrement_every_secs: Option<u64>,
    /// Multi-round: the rules, the round under way (0 while joining), who takes part,
    /// how many have bid this round, the revealed rounds and the totals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_rounds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rounds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_bidders: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bids_this_round: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounds: Option<Vec<Vec<RoundBid>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<Vec<Total>>,
}

/// `GET /v1/auctions`: a page of auctions in id order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuctionList {
    pub auctions: Vec<AuctionView>,
    /// Pass as `?after=` for the next page; null on the last page. A page may hold fewer
    /// than `limit` auctions (archived ones are read within a budget) and still have a
    /// next page.
    pub next_after: Option<u64>,
}

/// The archived auction `id`, if it is archived (read from disk).
pub fn archived(s: &AppState, id: u64) -> Result<Option<ArchivedAuction>, ApiError> {
    s.sm.archive()
        .get(id)
        .map_err(|e| ApiError::Internal(format!("reading archived auction {id}: {e}")))
}

/// The view of an archived auction.
pub fn archived_view(record: &ArchivedAuction) -> AuctionView {
    let mut v = auction_view(
        &record.auction,
        record.format.as_ref(),
        record.rounds.as_ref(),
        record.archived_at_ms,
    );
    v.archived = true;
    v
}

/// The view of auction `id`, from the book or else the archive.
pub fn view_of(s: &AppState, id: u64) -> Result<AuctionView, ApiError> {
    {
        let st = s.sm.read();
        if let Some(a) = st.book.auction(id) {
            return Ok(auction_view(a, st.book.format(id), st.book.rounds(id), s.now_ms()));
        }
    }
    // Not in the book: archived (written under the book's write lock), or unknown.
    archived(s, id)?
        .map(|r| archived_view(&r))
        .ok_or_else(|| ApiError::unknown_auction(id))
}

/// The public view of an auction (see [`AuctionView`]).
pub fn auction_view(a: &Auction, format: Option<&Format>, rounds: Option<&Rounds>, now: u64) -> AuctionView {
    let increment = match &a.spec.increment {
        IncrementRule::Fixed(step) => IncrementDto::Fixed(*step),
        IncrementRule::Table(bands) => IncrementDto::Table(
            bands
                .iter()
                .map(|b| BandDto {
                    from: b.from,
                    increment: b.increment,
                })
                .collect(),
        ),
    };
    let mut v = AuctionView {
        id: a.id,
        archived: false,
        format: format.map_or("english", Format::name),
        seller: a.spec.seller.clone(),
        title: a.spec.title.clone(),
        status: status_name(a, now),
        starting_price: a.spec.starting_price,
        increment: Some(increment),
        has_reserve: a.spec.reserve_price.is_some(),
        reserve_met: a.spec.reserve_price.map(|_| a.reserve_met()),
        buy_now_price: a.spec.buy_now_price,
        starts_at: rfc3339(a.spec.starts_at_ms),
        ends_at: rfc3339(a.ends_at_ms),
        original_ends_at: Some(rfc3339(a.spec.ends_at_ms)),
        soft_close: a.spec.soft_close.map(|s| SoftCloseDto {
            window_secs: s.window_secs,
            extend_secs: s.extend_secs,
            max_extensions: s.max_extensions,
        }),
        extensions: a.extensions,
        highest_bid: a.leader.as_ref().map(|l| HighestBid {
            bidder: l.bidder.clone(),
            amount: a.price,
        }),
        min_next_bid: a.min_next_bid(),
        bid_count: a.bids.len(),
        seq: a.seq,
        worker: a.worker,
        created_at: rfc3339(a.created_at_ms),
        closed_at: a.closed_at_ms.map(rfc3339),
        result: a.outcome.as_ref().map(outcome_view),
        sealed: None,
        current_price: None,
        floor_price: None,
        decrement: None,
        decrement_every_secs: None,
        min_rounds: None,
        max_rounds: None,
        round_secs: None,
        min_bidders: None,
        join_secs: None,
        round: None,
        participants: None,
        bids_this_round: None,
        rounds: None,
        totals: None,
    };
    match format {
        Some(Format::Dutch(dutch)) => {
            let current = dutch_price(a.spec.starts_at_ms, a.spec.starting_price, dutch, now);
            v.current_price = Some(current);
            v.floor_price = Some(dutch.floor_price);
            v.decrement = Some(dutch.decrement);
            v.decrement_every_secs = Some(dutch.decrement_every_ms / 1000);
            v.increment = None;
            if !a.status.is_final() {
                v.min_next_bid = Some(current);
            }
        }
        Some(Format::MultiRound(spec)) => {
            let rounds = rounds.cloned().unwrap_or_default();
            if a.status == AuctionStatus::Open && rounds.round == 0 {
                v.status = "open_for_joining";
            }
            v.increment = None;
            v.min_next_bid = Some(a.spec.starting_price);
            v.min_rounds = Some(spec.min_rounds);
            v.max_rounds = Some(spec.max_rounds);
            v.round_secs = Some(spec.round_ms / 1000);
            v.min_bidders = Some(spec.min_bidders);
            v.join_secs = Some(spec.join_ms / 1000);
            v.original_ends_at = None;
            v.round = Some(rounds.round);
            v.participants = Some(rounds.participants.clone());
            v.bids_this_round = Some(rounds.current.len());
            v.rounds = Some(rounds_view(&rounds));
            v.totals = Some(totals_view(&rounds));
        }
        Some(sealed) if sealed.is_sealed() => {
            // Nothing of the bids before the close but how many bidders there are.
            v.sealed = Some(true);
            v.increment = None;
        }
        _ => {}
    }
    v
}

/// The revealed rounds of a multi-round auction, round by round, each in bid order (0:
/// no bid). The round under way is never in it.
pub fn rounds_view(rounds: &Rounds) -> Vec<Vec<RoundBid>> {
    rounds
        .revealed
        .iter()
        .map(|bids| {
            bids.iter()
                .map(|(bidder, amount)| RoundBid {
                    bidder: bidder.clone(),
                    amount: *amount,
                })
                .collect()
        })
        .collect()
}

/// Every participant's cumulative total over the revealed rounds, highest first (ties:
/// who reached it first).
pub fn totals_view(rounds: &Rounds) -> Vec<Total> {
    rounds
        .standings()
        .into_iter()
        .map(|(bidder, total)| Total { bidder, total })
        .collect()
}
