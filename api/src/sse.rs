//! `GET /v1/auctions/{id}/events`: the auction's events as Server-Sent Events.
//!
//! Each event has `id: <seq>`, `event: <kind>` and a JSON `data` line. A client resumes
//! with `Last-Event-ID: <seq>` (browsers send it on reconnect) or `?after=<seq>`: it gets
//! every retained event after that seq, then live ones, without gaps or repeats. The book
//! retains the newest 256 events per auction; a client further behind sees the gap in
//! `seq` and reads the rest from `/v1/auctions/{id}/bids`. Any node serves the stream
//! from its own applied state. The stream ends after the closing event.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use crate::json::{ApiPath, ApiQuery};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use gavel_storage::{Actor, AuctionEvent, EventKind};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::json::rfc3339;
use crate::state::AppState;
use crate::udp::{kind_name, EventFrame};

pub const KEEP_ALIVE_SECS: u64 = 15;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Resume after this seq (`Last-Event-ID` wins if both are given).
    after: Option<u64>,
}

/// A bid revealed when its round completes.
pub use crate::auctions::RoundBid;

/// An auction event as SSE and the WebSocket carry it. Fields after `ts` depend on the
/// kind.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    pub auction_id: u64,
    /// Gapless per auction: a gap means events were missed.
    pub seq: u64,
    /// `created`, `opened`, `bid_accepted`, `extended`, `closed`, `cancelled`,
    /// `reassigned`, `sealed_bid`, `joined`, `round_started` or `round_completed`.
    pub kind: &'static str,
    pub ts: String,
    /// bid_accepted: the bid, the bidder, the visible price and leader after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid_id: Option<u64>,
    /// bid_accepted, joined: who.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bidder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// extended: the new end and how many extensions so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<u32>,
    /// closed: the outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<crate::auctions::OutcomeView>,
    /// cancelled: `seller` or `admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<&'static str>,
    /// reassigned: the new hosting worker (null: none is live).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<Option<u64>>,
    /// sealed_bid: how many have bid (never an amount).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid_count: Option<u64>,
    /// joined: the participants so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participants: Option<u32>,
    /// round_started, round_completed: the round; its deadline; its revealed bids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_ends_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bids: Option<Vec<RoundBid>>,
}

/// The JSON form of an event (shared with the WebSocket).
pub fn event_json(e: &AuctionEvent) -> EventView {
    let mut v = EventView {
        auction_id: e.auction_id,
        seq: e.seq,
        kind: kind_name(EventFrame::from_event(e, 0).kind),
        ts: rfc3339(e.ts_ms),
        bid_id: None,
        bidder: None,
        price: None,
        leader: None,
        ends_at: None,
        extensions: None,
        result: None,
        cancelled_by: None,
        worker: None,
        bid_count: None,
        participants: None,
        round: None,
        round_ends_at: None,
        bids: None,
    };
    match &e.kind {
        EventKind::BidAccepted {
            bid_id,
            bidder,
            price,
            leader,
        } => {
            v.bid_id = Some(*bid_id);
            v.bidder = Some(bidder.clone());
            v.price = Some(*price);
            v.leader = Some(leader.clone());
        }
        EventKind::Extended { ends_at_ms, extensions } => {
            v.ends_at = Some(rfc3339(*ends_at_ms));
            v.extensions = Some(*extensions);
        }
        EventKind::Closed { outcome } => v.result = Some(crate::auctions::outcome_view(outcome)),
        EventKind::Cancelled { by } => {
            v.cancelled_by = Some(if matches!(by, Actor::Admin) { "admin" } else { "seller" })
        }
        EventKind::Reassigned { worker } => v.worker = Some(*worker),
        EventKind::SealedBid { bid_count } => v.bid_count = Some(*bid_count),
        EventKind::Joined { bidder, participants } => {
            v.bidder = Some(bidder.clone());
            v.participants = Some(*participants);
        }
        EventKind::RoundStarted { round, ends_at_ms } => {
            v.round = Some(*round);
            v.round_ends_at = Some(rfc3339(*ends_at_ms));
        }
        EventKind::RoundCompleted { round, bids } => {
            v.round = Some(*round);
            v.bids = Some(
                bids.iter()
                    .map(|(bidder, amount)| RoundBid {
                        bidder: bidder.clone(),
                        amount: *amount,
                    })
                    .collect(),
            );
        }
        EventKind::Created | EventKind::Opened => {}
    }
    v
}

fn is_final(e: &AuctionEvent) -> bool {
    matches!(e.kind, EventKind::Closed { .. } | EventKind::Cancelled { .. })
}

/// An auction's events after a seq: the retained ones, then live ones, until the final
/// event (shared with `crate::ws`).
pub struct Feed {
    s: AppState,
    id: u64,
    replay: VecDeque<AuctionEvent>,
    live: broadcast::Receiver<AuctionEvent>,
    last: u64,
    done: bool,
}

impl Feed {
    /// The events of auction `id` after `after`. Subscribes to live events before reading
    /// the book, so nothing applied in between is missed.
    pub fn start(s: AppState, id: u64, after: u64) -> Result<Feed, ApiError> {
        let live = s.sm.subscribe_events();
        let (replay, ended) = {
            let st = s.sm.read();
            match st.book.auction(id) {
                Some(auction) => (
                    st.book.recent_events(id, after),
                    auction.status.is_final() && auction.seq <= after,
                ),
                // An archived auction ended long ago: its stream is over at once (its
                // history is at /v1/auctions/{id}/bids).
                None if st.book.is_archived(id) => (Vec::new(), true),
                None => return Err(ApiError::unknown_auction(id)),
            }
        };
        Ok(Feed {
            s,
            id,
            replay: replay.into(),
            live,
            last: after,
            done: ended,
        })
    }

    /// The next event; `None` after the final one.
    pub async fn next(&mut self) -> Option<AuctionEvent> {
        if self.done {
            return None;
        }
        loop {
            let event = match self.replay.pop_front() {
                Some(e) => e,
                None => match self.live.recv().await {
                    Ok(e) if e.auction_id == self.id => e,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.replay = self.s.sm.read().book.recent_events(self.id, self.last).into();
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            if event.seq <= self.last {
                continue;
            }
            self.last = event.seq;
            self.done = is_final(&event);
            return Some(event);
        }
    }
}

/// `GET /v1/auctions/{id}/events`: Server-Sent Events.
#[utoipa::path(
    get,
    path = "/v1/auctions/{id}/events",
    operation_id = "stream_events",
    tag = "live",
    params(
        ("id" = u64, Path, description = "The auction's id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this seq (browsers send it on reconnect)"),
        EventParams,
    ),
    responses(
        (status = 200, description = "A stream of `text/event-stream` events: `id` is the seq, `event` the kind, \
            `data` an Event as JSON; it ends after the closing event", content_type = "text/event-stream", body = EventView),
        (status = 404, description = "`unknown_auction`", body = crate::openapi::ErrorBody),
    )
)]
pub async fn events(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(params): ApiQuery<EventParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let from_header = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid("Last-Event-ID must be an event seq (an integer)"))?,
        ),
        None => None,
    };
    let after = from_header.or(params.after).unwrap_or(0);
    let feed = Feed::start(s, id, after)?;
    // The stream holds the count of open SSE streams until it ends or the client goes.
    let open = crate::metrics::OpenStream::new(crate::metrics::TRANSPORT_SSE);
    let stream = stream::unfold((feed, open), |(mut feed, open)| async move {
        let event = feed.next().await?;
        let sse = Event::default()
            .id(event.seq.to_string())
            .event(kind_name(EventFrame::from_event(&event, 0).kind))
            .json_data(event_json(&event))
            .expect("event JSON serialises");
        Some((Ok::<_, Infallible>(sse), (feed, open)))
    });
    Ok(sse_response(stream))
}

fn sse_response(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(KEEP_ALIVE_SECS)))
        .into_response()
}
