//! Hosting: every node, as a worker, runs the auctions the replicated book assigns to it.
//!
//! A worker's auctions are the non-final auctions whose `worker` is its node id in its own
//! copy of the book (every node has the whole book). It runs their clocks — proposes
//! `OpenAuction` at `starts_at` and `CloseAuction` at the (extended) end, checked every
//! [`WORKER_TICK_MS`] against cluster time (its own clock corrected by its sample of the
//! leader's, see `gavel_raft::clock`), through the front door like every other write — and hands each
//! applied event of theirs to [`crate::push`]. When the book moves an auction away the
//! worker drops it (logged). Every [`HEARTBEAT_INTERVAL_MS`], and at once when the leader
//! changes, it reports itself and what it hosts to the leader (see
//! `gavel_raft::workers`, which owns liveness and reassignment).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gavel_raft::cluster;
use gavel_raft::workers::{Heartbeat, HostedReport, HEARTBEAT_INTERVAL_MS};
use gavel_storage::{AuctionId, Command, NodeId, Op};
use tokio::sync::{broadcast, watch};

use crate::push::{catch_up, push_event};
use crate::state::AppState;

pub const WORKER_TICK_MS: u64 = 20;

/// This node as a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub node_id: NodeId,
    pub addr: String,
    pub udp_addr: String,
    pub max_auctions: u32,
    /// A worker silent this long loses its auctions.
    pub grace: Duration,
    /// Also push every hosted event here (a broadcast or multicast address).
    pub broadcast: Option<SocketAddr>,
}

/// The worker loop: hosting, clocks, heartbeats and pushes. Runs on every node.
pub async fn run_worker(s: AppState, mut stop: watch::Receiver<bool>) {
    let me = s.worker.node_id;
    let mut events = s.sm.subscribe_events();
    // Auctions hosted here → last seq pushed.
    let mut hosted: BTreeMap<AuctionId, u64> = BTreeMap::new();
    let mut last_leader: Option<NodeId> = None;
    let mut next_heartbeat = Instant::now();
    let in_flight: Arc<Mutex<BTreeSet<AuctionId>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_millis(WORKER_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            received = events.recv() => match received {
                Ok(event) => push_event(&s, &mut hosted, &event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "worker fell behind the applied events; catching up from the book");
                    catch_up(&s, &mut hosted);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if s.is_removed() {
                    // Not a member: no clocks, no heartbeats (the leader has moved its
                    // auctions elsewhere).
                    continue;
                }
                refresh_hosting(&s, &mut hosted);
                run_clocks(&s, &hosted, &in_flight);
                let leader = cluster::leader(&s.raft);
                let changed = leader.as_ref().map(|l| l.id) != last_leader;
                if changed {
                    if let Some(l) = &leader {
                        tracing::info!(leader = l.id, auctions = hosted.len(), "leader changed: re-registering and re-reporting hosted auctions");
                    }
                    last_leader = leader.as_ref().map(|l| l.id);
                }
                if let Some(leader) = leader.filter(|_| changed || Instant::now() >= next_heartbeat) {
                    next_heartbeat = Instant::now() + Duration::from_millis(HEARTBEAT_INTERVAL_MS);
                    let hb = Heartbeat {
                        node_id: me,
                        addr: s.worker.addr.clone(),
                        udp_addr: s.worker.udp_addr.clone(),
                        max_auctions: s.worker.max_auctions,
                        hosted: hosted.iter().map(|(id, seq)| HostedReport { auction_id: *id, last_pushed_seq: *seq }).collect(),
                    };
                    let door = s.door.clone();
                    tokio::spawn(async move {
                        if let Err(e) = door.heartbeat(hb).await {
                            tracing::debug!(leader = leader.id, error = %e, "heartbeat not delivered");
                        }
                    });
                }
            }
        }
    }
}

/// Re-reads which auctions this node hosts; logs gains and losses.
fn refresh_hosting(s: &AppState, hosted: &mut BTreeMap<AuctionId, u64>) {
    let me = s.worker.node_id;
    let st = s.sm.read();
    let now_mine: BTreeMap<AuctionId, u64> = st
        .book
        .hosted_by(me)
        .into_iter()
        .filter_map(|id| st.book.auction(id).map(|a| (id, a.seq)))
        .collect();
    hosted.retain(|id, _| {
        let keep = now_mine.contains_key(id);
        if !keep {
            match st.book.auction(*id) {
                Some(a) if a.status.is_final() => {}
                Some(a) => tracing::info!(
                    auction_id = *id,
                    now_on = a.worker,
                    "dropping auction: the book moved it to another worker"
                ),
                None => {}
            }
        }
        keep
    });
    for (id, seq) in now_mine {
        hosted.entry(id).or_insert_with(|| {
            tracing::info!(auction_id = id, "now hosting auction");
            pushed_before_gaining(&st.book.recent_events(id, 0), me, seq)
        });
    }
}

/// The seq to count as pushed when this worker finds it hosts an auction it did not:
/// just before the event that gave it the auction (its `reassigned`, or its creation),
/// so that event and the ones after it are still pushed when they come out of the
/// applied-event channel after this look at the book (the book is updated before its
/// event reaches the worker loop). Without that event among the auction's recent ones
/// (it is older), the current `seq`.
fn pushed_before_gaining(recent: &[gavel_storage::AuctionEvent], me: NodeId, seq: u64) -> u64 {
    use gavel_storage::EventKind;
    let gained = recent.iter().rev().find_map(|e| match e.kind {
        EventKind::Reassigned { worker } => Some((worker == Some(me)).then_some(e.seq)),
        EventKind::Created => Some(Some(e.seq)),
        _ => None,
    });
    match gained.flatten() {
        Some(at) => at.saturating_sub(1).min(seq),
        None => seq,
    }
}

/// Proposes the clock commands due for hosted auctions (one in flight per auction).
fn run_clocks(s: &AppState, hosted: &BTreeMap<AuctionId, u64>, in_flight: &Arc<Mutex<BTreeSet<AuctionId>>>) {
    if hosted.is_empty() {
        return;
    }
    // Cluster time, not this node's clock: a worker whose clock is off still closes on
    // time (see `gavel_raft::clock`).
    let now = s.now_ms();
    let due: Vec<Op> = {
        let st = s.sm.read();
        st.book
            .due(now)
            .into_iter()
            .filter(|op| hosted.contains_key(&clock_target(op)))
            .collect()
    };
    for op in due {
        let id = clock_target(&op);
        if !in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(id) {
            continue;
        }
        let (door, in_flight) = (s.door.clone(), in_flight.clone());
        tokio::spawn(async move {
            if let Err(e) = door.write(Command::new(door.cluster_now_ms(), op)).await {
                tracing::debug!(auction_id = id, error = %e, "clock command not delivered; retrying next tick");
            }
            in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        });
    }
}

fn clock_target(op: &Op) -> AuctionId {
    match op {
        Op::OpenAuction { auction_id } | Op::CloseAuction { auction_id } => *auction_id,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use gavel_storage::{AuctionEvent, EventKind};

    use super::pushed_before_gaining;

    fn event(seq: u64, kind: EventKind) -> AuctionEvent {
        AuctionEvent {
            auction_id: 7,
            seq,
            ts_ms: 1_000 + seq,
            kind,
        }
    }

    fn bid(seq: u64) -> AuctionEvent {
        event(
            seq,
            EventKind::BidAccepted {
                bid_id: seq,
                bidder: "ann".into(),
                price: 100 * seq,
                leader: "ann".into(),
            },
        )
    }

    #[test]
    fn a_worker_that_gains_an_auction_pushes_from_the_event_that_gave_it() {
        let moved = |to| event(4, EventKind::Reassigned { worker: Some(to) });
        let history = vec![event(1, EventKind::Created), bid(2), bid(3), moved(2), bid(5)];
        // Moved to worker 2 at seq 4: it pushes 4 and 5 when they reach its loop.
        assert_eq!(pushed_before_gaining(&history, 2, 5), 3);
        // Created on the worker: from the creation.
        assert_eq!(pushed_before_gaining(&history[..3], 1, 3), 0);
        // The latest move names another worker (this one's view is stale): nothing old.
        assert_eq!(pushed_before_gaining(&history, 3, 5), 5);
        // The gaining event is no longer among the recent ones: from the current seq.
        assert_eq!(pushed_before_gaining(&[bid(300), bid(301)], 2, 301), 301);
    }
}
