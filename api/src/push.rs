//! The UDP push of hosted auctions: each applied event of an auction this node hosts
//! goes, once, to every live UDP subscriber and the optional broadcast target (frames:
//! [`crate::udp`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use gavel_storage::{AuctionEvent, AuctionId};

use crate::state::AppState;
use crate::udp::{EventFrame, Push};

/// Pushes one applied event if this node hosts (or hosted, for the final event) its
/// auction and has not pushed that `seq` yet.
pub fn push_event(s: &AppState, hosted: &mut BTreeMap<AuctionId, u64>, event: &AuctionEvent) {
    let me = s.worker.node_id;
    let now = s.now_ms();
    let (ends_at, targets) = {
        let st = s.sm.read();
        let Some(a) = st.book.auction(event.auction_id) else {
            return;
        };
        if a.worker != Some(me) {
            return;
        }
        let targets: Vec<SocketAddr> = st
            .book
            .subscribers(a.id, now)
            .into_iter()
            .filter_map(|(addr, _)| addr.parse().ok())
            .collect();
        (a.ends_at_ms, targets)
    };
    let last = hosted.entry(event.auction_id).or_insert(0);
    if event.seq <= *last {
        return;
    }
    *last = event.seq;
    let mut targets = targets;
    if let Some(b) = s.worker.broadcast {
        targets.push(b);
    }
    if targets.is_empty() {
        return;
    }
    let frame = EventFrame::from_event(event, ends_at).encode();
    s.udp.push(Push {
        frame: frame.into(),
        targets,
    });
}

/// After missing applied events: push what the book still has after the last pushed seq.
pub fn catch_up(s: &AppState, hosted: &mut BTreeMap<AuctionId, u64>) {
    let pending: Vec<AuctionEvent> = {
        let st = s.sm.read();
        hosted
            .iter()
            .flat_map(|(id, last)| st.book.recent_events(*id, *last))
            .collect()
    };
    for event in pending {
        push_event(s, hosted, &event);
    }
}
