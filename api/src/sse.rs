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
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::json::rfc3339;
use crate::state::AppState;
use crate::udp::{kind_name, EventFrame};

pub const KEEP_ALIVE_SECS: u64 = 15;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    after: Option<u64>,
}

/// The JSON form of an event (shared with `gavel watch`).
pub fn event_json(e: &AuctionEvent) -> Value {
    let kind = kind_name(EventFrame::from_event(e, 0).kind);
    let mut v = json!({ "auction_id": e.auction_id, "seq": e.seq, "kind": kind, "ts": rfc3339(e.ts_ms) });
    match &e.kind {
        EventKind::BidAccepted {
            bid_id,
            bidder,
            price,
            leader,
        } => {
            v["bid_id"] = json!(bid_id);
            v["bidder"] = json!(bidder);
            v["price"] = json!(price);
            v["leader"] = json!(leader);
        }
        EventKind::Extended { ends_at_ms, extensions } => {
            v["ends_at"] = json!(rfc3339(*ends_at_ms));
            v["extensions"] = json!(extensions);
        }
        EventKind::Closed { outcome } => v["result"] = crate::auctions::outcome_view(outcome),
        EventKind::Cancelled { by } => {
            v["cancelled_by"] = json!(if matches!(by, Actor::Admin) { "admin" } else { "seller" })
        }
        EventKind::Reassigned { worker } => v["worker"] = json!(worker),
        EventKind::SealedBid { bid_count } => v["bid_count"] = json!(bid_count),
        EventKind::Joined { bidder, participants } => {
            v["bidder"] = json!(bidder);
            v["participants"] = json!(participants);
        }
        EventKind::RoundStarted { round, ends_at_ms } => {
            v["round"] = json!(round);
            v["round_ends_at"] = json!(rfc3339(*ends_at_ms));
        }
        EventKind::RoundCompleted { round, bids } => {
            v["round"] = json!(round);
            v["bids"] = json!(bids
                .iter()
                .map(|(bidder, amount)| json!({"bidder": bidder, "amount": amount}))
                .collect::<Vec<_>>());
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
            let auction = st.book.auction(id).ok_or_else(|| ApiError::unknown_auction(id))?;
            (
                st.book.recent_events(id, after),
                auction.status.is_final() && auction.seq <= after,
            )
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
    let stream = stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        let sse = Event::default()
            .id(event.seq.to_string())
            .event(kind_name(EventFrame::from_event(&event, 0).kind))
            .json_data(event_json(&event))
            .expect("event JSON serialises");
        Some((Ok::<_, Infallible>(sse), feed))
    });
    Ok(sse_response(stream))
}

fn sse_response(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(KEEP_ALIVE_SECS)))
        .into_response()
}
