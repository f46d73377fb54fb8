//! Cluster time: how a node knows whether its wall clock agrees with the cluster's, and
//! what time it is in the cluster when it does not.
//!
//! Command time (`ts_ms`, the only clock `apply` sees) is stamped by the leader. A leader
//! whose clock runs fast closes auctions early in real time, and once it is replaced
//! time stands still until real time catches up (apply keeps time monotonic). So, as
//! TigerBeetle does (`src/vsr/clock.zig`, `marzullo.zig`):
//!
//! - **Samples.** Every node-to-node RPC answer carries the answering node's wall clock
//!   (header [`CLOCK_HEADER`], microseconds since the Unix epoch, read as the answer
//!   leaves). The caller notes its own clock before sending (`t_send`) and when the answer
//!   arrives (`t_recv`): the peer's offset (`peer − self`) then lies in
//!   `[t_peer − t_recv, t_peer − t_send]`, whatever the network did. The leader gets such
//!   a sample of every voter from each AppendEntries round trip (every heartbeat), a
//!   candidate from its (pre-)vote requests (so a node that has just won an election
//!   already knows its voters' clocks), and a follower of its leader from the worker
//!   heartbeat it forwards every 200 ms. [`ClockSamples`] keeps the newest
//!   [`SAMPLES_PER_PEER_MAX`] samples of each peer and uses the narrowest (the shortest
//!   round trip) no older than [`SAMPLE_MAX_AGE_MS`]. Ages are measured on the monotonic
//!   clock, so a wall clock step cannot keep a stale sample alive.
//! - **Agreement (the leader).** [`agreement`] runs Marzullo's algorithm ([`marzullo`])
//!   over the leader's own clock (`[0, 0]`) and each voter's offset interval, all widened
//!   by a tolerance: it starts at `max_clock_skew_ms` and halves the tolerance while a
//!   majority of the voters still agree, keeping the tightest interval a majority agrees
//!   on. That interval is `cluster time − this clock`. No majority even at the full
//!   tolerance (too few fresh samples, or the clocks disagree) means the cluster has no
//!   agreed time: see [`Basis::Unknown`].
//! - **The leader stamps cluster time.** Its own clock, clamped into the agreed interval
//!   (so a clock that agrees is used as it is). If the agreed interval lies more than
//!   `max_clock_skew_ms` from its clock, or there is no agreed interval, it stamps
//!   nothing: writes wait briefly and then get 503 `clock_skew`, and the leadership moves
//!   to a voter whose clock agrees ([`run_clock_watch`]). A single voter is its own
//!   majority.
//! - **Followers use the leader's cluster time.** A leader that has an agreed interval
//!   also sends its cluster time ([`CLUSTER_TIME_HEADER`]); a follower's clock for
//!   comparing with auction times (the hosting clock that closes auctions, views) is its
//!   own, clamped into its sample of that: so a worker 2 s slow closes on time, and one
//!   2 s fast does not propose closes that the leader refuses.
//!
//! Everything here that decides is a pure function of the samples ([`marzullo`],
//! [`agreement`], [`evaluate`], [`pick_handoff`]) with table tests below.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gavel_storage::NodeId;
use openraft::async_runtime::watch::WatchReceiver as _;
use openraft::ServerState;
use tokio::sync::watch;

use crate::front_door::FrontDoor;

/// Response header of every node RPC: the answering node's wall clock, µs since the
/// Unix epoch.
pub const CLOCK_HEADER: &str = "gavel-clock-us";
/// Response header of a node RPC answered by a leader with an agreed cluster time: that
/// time, µs since the Unix epoch, read at the same moment as [`CLOCK_HEADER`].
pub const CLUSTER_TIME_HEADER: &str = "gavel-cluster-time-us";
/// Samples kept per peer (the newest).
pub const SAMPLES_PER_PEER_MAX: usize = 16;
/// A sample older than this is not used.
pub const SAMPLE_MAX_AGE_MS: u64 = 5_000;
/// Rounds of halving the tolerance (from `max_clock_skew_ms` in µs, 2^19 > 500 000 µs).
pub const TOLERANCE_ROUNDS_MAX: usize = 32;
/// How often [`run_clock_watch`] looks at this node's clock.
pub const CLOCK_CHECK_INTERVAL_MS: u64 = 100;
/// How long a skewed leader waits between two attempts to hand its leadership over.
pub const HANDOFF_RETRY_MS: u64 = 1_000;
/// How long a leader may be without an agreed time before the log says so.
pub const UNKNOWN_WARN_AFTER_MS: u64 = 2_000;

/// Microseconds since the Unix epoch by this node's wall clock.
pub fn wall_us() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// An interval of offsets (µs) and how many sources agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub lo_us: i64,
    pub hi_us: i64,
    pub sources: usize,
}

impl Interval {
    pub fn midpoint_us(&self) -> i64 {
        self.lo_us + (self.hi_us - self.lo_us) / 2
    }

    /// How far 0 (this node's own clock) lies outside the interval; 0 inside it.
    pub fn distance_from_zero_us(&self) -> i64 {
        if self.lo_us > 0 {
            self.lo_us
        } else if self.hi_us < 0 {
            -self.hi_us
        } else {
            0
        }
    }
}

/// Marzullo's algorithm: the interval covered by the most of `intervals` (closed,
/// `lo <= hi`; others are ignored); among equally covered ones the narrowest, then the
/// lowest. `None` without intervals.
pub fn marzullo(intervals: &[(i64, i64)]) -> Option<Interval> {
    // (offset, kind): a start (0) sorts before an end (1) at the same offset, so intervals
    // that touch count as overlapping there.
    let mut edges: Vec<(i64, u8)> = intervals
        .iter()
        .filter(|(lo, hi)| lo <= hi)
        .flat_map(|&(lo, hi)| [(lo, 0), (hi, 1)])
        .collect();
    edges.sort_unstable();
    let mut best: Option<Interval> = None;
    let mut covering = 0usize;
    for (i, &(offset, kind)) in edges.iter().enumerate() {
        if kind == 1 {
            covering -= 1;
            continue;
        }
        covering += 1;
        // Until the next edge, exactly `covering` intervals cover [offset, next]. Every
        // start has its end after it, so there is a next edge.
        let next = edges[i + 1].0;
        let better =
            best.is_none_or(|b| covering > b.sources || (covering == b.sources && next - offset < b.hi_us - b.lo_us));
        if better {
            best = Some(Interval {
                lo_us: offset,
                hi_us: next,
                sources: covering,
            });
        }
    }
    best
}

/// The tightest interval of `cluster time − this clock` that a majority of `voters`
/// agree on: this node's clock (`[0, 0]`) and each peer's offset interval (`peers`, one
/// per voter with a sample), all widened by a tolerance that starts at
/// `tolerance_max_us` and halves while a majority still agrees. `None` if no majority
/// agrees even at `tolerance_max_us` (including when fewer than a majority have samples).
pub fn agreement(peers: &[(i64, i64)], voters: usize, tolerance_max_us: i64) -> Option<Interval> {
    let mut agreed = None;
    let mut tolerance = tolerance_max_us.max(0);
    for _ in 0..TOLERANCE_ROUNDS_MAX {
        let widened: Vec<(i64, i64)> = std::iter::once(&(0, 0))
            .chain(peers)
            .map(|&(lo, hi)| (lo.saturating_sub(tolerance), hi.saturating_add(tolerance)))
            .collect();
        match marzullo(&widened) {
            Some(found) if found.sources * 2 > voters => agreed = Some(found),
            _ => break,
        }
        if tolerance == 0 {
            break;
        }
        tolerance /= 2;
    }
    agreed
}

/// One round trip to a peer: its offset (`peer − self`, µs) lies in `[lo_us, hi_us]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: Instant,
    pub lo_us: i64,
    pub hi_us: i64,
    /// The peer's cluster time minus its clock, when it sent one (a leader with an
    /// agreed time).
    pub correction_us: Option<i64>,
}

impl Sample {
    /// The offset interval of the peer's cluster time (its clock if it sent none).
    pub fn cluster_interval(&self) -> (i64, i64) {
        let c = self.correction_us.unwrap_or(0);
        (self.lo_us.saturating_add(c), self.hi_us.saturating_add(c))
    }

    pub fn midpoint_us(&self) -> i64 {
        self.lo_us + (self.hi_us - self.lo_us) / 2
    }
}

/// The newest samples of each peer's clock; one per node, shared by its network client
/// (which records) and its front door (which reads).
#[derive(Debug, Default)]
pub struct ClockSamples {
    peers: Mutex<HashMap<NodeId, VecDeque<Sample>>>,
}

impl ClockSamples {
    /// Records one round trip to `peer`: sent at `t_send_us`, answered at `t_recv_us`
    /// (this node's clock), with the peer's clock `t_peer_us` and its cluster time, if it
    /// sent one. A round trip during which this clock went backwards is dropped.
    pub fn record(&self, peer: NodeId, t_send_us: i64, t_recv_us: i64, t_peer_us: i64, cluster_us: Option<i64>) {
        if t_recv_us < t_send_us {
            return;
        }
        let sample = Sample {
            at: Instant::now(),
            lo_us: t_peer_us.saturating_sub(t_recv_us),
            hi_us: t_peer_us.saturating_sub(t_send_us),
            correction_us: cluster_us.map(|c| c.saturating_sub(t_peer_us)),
        };
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let kept = peers.entry(peer).or_default();
        if kept.len() == SAMPLES_PER_PEER_MAX {
            kept.pop_front();
        }
        kept.push_back(sample);
    }

    /// The narrowest fresh sample of `peer`; among equally narrow ones the newest.
    pub fn best(&self, peer: NodeId) -> Option<Sample> {
        let max_age = Duration::from_millis(SAMPLE_MAX_AGE_MS);
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers
            .get(&peer)?
            .iter()
            .rev()
            .filter(|s| s.at.elapsed() <= max_age)
            .min_by_key(|s| s.hi_us - s.lo_us)
            .copied()
    }
}

/// What this node's idea of cluster time rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The only voter: its clock is the cluster's.
    Alone,
    /// It leads, and a majority of the voters agree on the interval.
    Majority,
    /// It follows: its sample of the leader's cluster time.
    Leader(NodeId),
    /// No agreed time: too few fresh samples, no majority agreeing, or no leader.
    Unknown,
}

/// This node's clock against the cluster's, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockView {
    pub basis: Basis,
    /// `cluster time − this clock` lies in `[lo, hi]` µs (none with [`Basis::Unknown`]).
    pub bounds_us: Option<(i64, i64)>,
    pub max_skew_us: i64,
    /// This node's wall clock when the view was taken, µs.
    pub local_us: i64,
}

impl ClockView {
    /// This node's clock minus cluster time, ms (the interval's midpoint).
    pub fn offset_ms(&self) -> Option<i64> {
        let (lo, hi) = self.bounds_us?;
        let mid_us = lo + (hi - lo) / 2;
        Some(-((mid_us as f64) / 1000.0).round() as i64)
    }

    /// How far this clock is, beyond doubt, from cluster time, µs.
    pub fn skew_us(&self) -> Option<i64> {
        let (lo, hi) = self.bounds_us?;
        Some(
            Interval {
                lo_us: lo,
                hi_us: hi,
                sources: 0,
            }
            .distance_from_zero_us(),
        )
    }

    /// This clock is more than `max_clock_skew_ms` from cluster time.
    pub fn skewed(&self) -> bool {
        self.skew_us().is_some_and(|s| s > self.max_skew_us)
    }

    /// Cluster time, µs: this clock clamped into the bounds (unchanged without bounds).
    pub fn now_us(&self) -> i64 {
        match self.bounds_us {
            Some((lo, hi)) => self
                .local_us
                .clamp(self.local_us.saturating_add(lo), self.local_us.saturating_add(hi)),
            None => self.local_us,
        }
    }

    /// Cluster time, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.now_us() / 1000).unwrap_or(0)
    }

    /// The time a leader stamps on a command, or why it may not stamp one.
    pub fn stamp(&self) -> Result<u64, ClockProblem> {
        match self.basis {
            Basis::Alone => Ok(self.now_ms()),
            Basis::Majority if !self.skewed() => Ok(self.now_ms()),
            Basis::Majority => Err(ClockProblem::Skewed {
                offset_ms: self.offset_ms().unwrap_or(0),
            }),
            Basis::Leader(_) | Basis::Unknown => Err(ClockProblem::NoAgreedTime),
        }
    }

    /// The cluster time a leader tells its followers, if it has an agreed one.
    pub fn advertised_us(&self) -> Option<i64> {
        matches!(self.basis, Basis::Alone | Basis::Majority).then(|| self.now_us())
    }
}

/// Why a leader stamps no command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockProblem {
    /// Its clock is this far (ms, its clock minus the majority's) from the majority's.
    Skewed { offset_ms: i64 },
    /// No majority of voters agrees on the time within `max_clock_skew_ms` (or too few
    /// have answered yet).
    NoAgreedTime,
}

impl ClockProblem {
    pub fn offset_ms(&self) -> Option<i64> {
        match self {
            ClockProblem::Skewed { offset_ms } => Some(*offset_ms),
            ClockProblem::NoAgreedTime => None,
        }
    }

    /// For the client: what is wrong and what to do.
    pub fn message(&self, max_skew_ms: u64) -> String {
        match self {
            ClockProblem::Skewed { offset_ms } => format!(
                "the leader's clock is {} ms {} the cluster's (more than max_clock_skew_ms = {max_skew_ms}); \
                 it stamps no command and is handing its leadership over. Retry shortly; the operator \
                 must fix that node's time sync (docs/operations.md, \"Clocks\")",
                offset_ms.abs(),
                if *offset_ms > 0 { "ahead of" } else { "behind" },
            ),
            ClockProblem::NoAgreedTime => format!(
                "no majority of the voters agrees on the time within max_clock_skew_ms = {max_skew_ms} \
                 (or the leader has not heard from enough of them yet); no command can be stamped. \
                 Retry shortly; if it persists, check the nodes' time sync (docs/operations.md, \"Clocks\")"
            ),
        }
    }
}

/// This node's clock view from its samples. `leader` is who leads as this node sees
/// it, `voters` the voters of the membership.
pub fn evaluate(
    samples: &ClockSamples,
    me: NodeId,
    voters: &BTreeSet<NodeId>,
    leader: Option<NodeId>,
    max_skew_ms: u64,
) -> ClockView {
    let max_skew_us = i64::try_from(max_skew_ms.saturating_mul(1000)).unwrap_or(i64::MAX);
    let local_us = wall_us();
    let (basis, bounds_us) = match leader {
        Some(l) if l == me => {
            if voters.iter().all(|v| *v == me) {
                (Basis::Alone, Some((0, 0)))
            } else {
                let peers: Vec<(i64, i64)> = voters
                    .iter()
                    .filter(|v| **v != me)
                    .filter_map(|v| samples.best(*v))
                    .map(|s| (s.lo_us, s.hi_us))
                    .collect();
                match agreement(&peers, voters.len(), max_skew_us) {
                    Some(agreed) => (Basis::Majority, Some((agreed.lo_us, agreed.hi_us))),
                    None => (Basis::Unknown, None),
                }
            }
        }
        Some(l) => match samples.best(l) {
            Some(s) => (Basis::Leader(l), Some(s.cluster_interval())),
            None => (Basis::Unknown, None),
        },
        None => (Basis::Unknown, None),
    };
    ClockView {
        basis,
        bounds_us,
        max_skew_us,
        local_us,
    }
}

/// The voter a skewed leader hands its leadership to: of `peers` (id, the midpoint of
/// its offset sample, the log index it has acknowledged), one whose clock is within half
/// of `max_skew_us` of cluster time (`cluster_mid_us`, relative to this clock), the most
/// caught-up first (ties: the lowest id).
pub fn pick_handoff(peers: &[(NodeId, i64, Option<u64>)], cluster_mid_us: i64, max_skew_us: i64) -> Option<NodeId> {
    peers
        .iter()
        .filter(|(_, mid, _)| (mid - cluster_mid_us).abs() <= max_skew_us / 2)
        .max_by_key(|(id, _, matched)| (*matched, std::cmp::Reverse(*id)))
        .map(|(id, _, _)| *id)
}

/// Watches this node's clock: keeps the `gavel_clock_*` gauges current, logs each change
/// of state once, and, while this node leads with a skewed clock, hands the leadership to
/// a voter whose clock agrees. Runs on every node.
pub async fn run_clock_watch(door: FrontDoor, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(CLOCK_CHECK_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut was_skewed = false;
    let mut unknown_since: Option<Instant> = None;
    let mut warned_unknown = false;
    let mut last_handoff: Option<Instant> = None;
    // Wakes at once when this node becomes leader: a skewed node that wins an election
    // hands over without waiting for a tick (its vote round has sampled the voters).
    let mut server = door.raft.server_metrics();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = server.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        let view = door.clock_view();
        let leading = door.raft.metrics().borrow_watched().state == ServerState::Leader;
        crate::metrics::CLOCK_OFFSET_SECONDS.set(view.offset_ms().unwrap_or(0) as f64 / 1000.0);
        crate::metrics::CLOCK_SKEWED.set(i64::from(view.skewed()));
        crate::metrics::CLOCK_SYNCHRONIZED.set(i64::from(view.bounds_us.is_some()));
        let max_skew_ms = door.config.max_clock_skew_ms;
        let skewed = view.skewed();
        if skewed != was_skewed {
            let offset_ms = view.offset_ms().unwrap_or(0);
            if skewed {
                let against = match view.basis {
                    Basis::Leader(l) => format!("the leader's (node {l})"),
                    _ => "the majority of the voters'".into(),
                };
                tracing::warn!(
                    offset_ms,
                    max_clock_skew_ms = max_skew_ms,
                    leading,
                    "this node's clock is {} ms {} {against}, more than max_clock_skew_ms: while it leads it \
                     stamps no command (writes get 503 clock_skew) and it hands its leadership over. Fix its \
                     time sync (docs/operations.md, \"Clocks\")",
                    offset_ms.abs(),
                    if offset_ms > 0 { "ahead of" } else { "behind" },
                );
            } else {
                tracing::info!(offset_ms, "this node's clock agrees with the cluster's again");
            }
            was_skewed = skewed;
        }
        let unknown = leading && view.basis == Basis::Unknown;
        match (unknown, unknown_since) {
            (true, None) => unknown_since = Some(Instant::now()),
            (true, Some(since))
                if !warned_unknown && since.elapsed() >= Duration::from_millis(UNKNOWN_WARN_AFTER_MS) =>
            {
                tracing::warn!(
                    max_clock_skew_ms = max_skew_ms,
                    "this node leads but no majority of the voters agrees on the time within max_clock_skew_ms: \
                     it stamps no command (writes get 503 clock_skew). Check every node's time sync \
                     (docs/operations.md, \"Clocks\")"
                );
                warned_unknown = true;
            }
            (false, Some(_)) => {
                if warned_unknown {
                    tracing::info!("the voters agree on the time again");
                }
                unknown_since = None;
                warned_unknown = false;
            }
            _ => {}
        }
        let due = last_handoff.is_none_or(|at| at.elapsed() >= Duration::from_millis(HANDOFF_RETRY_MS));
        if leading && skewed && due {
            last_handoff = Some(Instant::now());
            hand_off(&door, &view).await;
        }
    }
}

/// A skewed leader hands its leadership to a voter whose clock agrees with the cluster.
async fn hand_off(door: &FrontDoor, view: &ClockView) {
    let Some((lo, hi)) = view.bounds_us else { return };
    let cluster_mid_us = lo + (hi - lo) / 2;
    let m = door.raft.metrics().borrow_watched().clone();
    let peers: Vec<(NodeId, i64, Option<u64>)> = m
        .membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != m.id)
        .filter_map(|id| {
            let sample = door.clock.best(id)?;
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id))
                .and_then(|l| l.as_ref())
                .map(|l| l.index);
            Some((id, sample.midpoint_us(), matched))
        })
        .collect();
    let Some(to) = pick_handoff(&peers, cluster_mid_us, view.max_skew_us) else {
        tracing::warn!("no voter's clock agrees with the cluster's well enough to hand the leadership to");
        return;
    };
    tracing::warn!(
        to,
        offset_ms = view.offset_ms().unwrap_or(0),
        "handing the leadership to a voter whose clock agrees with the cluster's"
    );
    if let Err(e) = door.raft.trigger().transfer_leader(to).await {
        tracing::warn!(error = %e, "could not hand the leadership over");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1000;
    const MAX_SKEW_US: i64 = 500 * MS;

    fn iv(lo_us: i64, hi_us: i64, sources: usize) -> Option<Interval> {
        Some(Interval { lo_us, hi_us, sources })
    }

    #[test]
    fn marzullo_finds_the_smallest_interval_most_sources_agree_on() {
        type Case<'a> = (&'a str, &'a [(i64, i64)], Option<Interval>);
        let cases: &[Case] = &[
            ("nothing", &[], None),
            ("one", &[(3, 7)], iv(3, 7, 1)),
            ("all overlap", &[(8, 12), (11, 13), (10, 12)], iv(11, 12, 3)),
            ("two of three", &[(8, 12), (11, 13), (14, 15)], iv(11, 12, 2)),
            // Two disjoint pairs tie: the narrower wins.
            (
                "tie, narrower",
                &[(0, 10), (5, 15), (100, 110), (109, 112)],
                iv(109, 110, 2),
            ),
            // Equally narrow: the lower wins.
            ("tie, lower", &[(0, 10), (9, 15), (100, 110), (109, 112)], iv(9, 10, 2)),
            ("touching ends overlap", &[(0, 5), (5, 9)], iv(5, 5, 2)),
            ("a point inside", &[(0, 10), (4, 4)], iv(4, 4, 2)),
            ("invalid ignored", &[(5, 1), (0, 2)], iv(0, 2, 1)),
            ("disjoint", &[(0, 1), (5, 6), (10, 11)], iv(0, 1, 1)),
        ];
        for (name, intervals, want) in cases {
            assert_eq!(marzullo(intervals), *want, "{name}");
        }
    }

    /// Offset samples as a leader measures them: `peer − self` ± `rtt`/2 around `offset`.
    fn around(offset_ms: i64) -> (i64, i64) {
        (offset_ms * MS - 200, offset_ms * MS + 200)
    }

    #[test]
    fn agreement_needs_a_majority_of_the_voters_within_the_tolerance() {
        type Case = (&'static str, Vec<(i64, i64)>, usize, Option<(i64, i64)>);
        let cases: Vec<Case> = vec![
            ("alone in a 3-voter cluster: no majority", vec![], 3, None),
            ("3 good", vec![around(0), around(1)], 3, Some((0, 0))),
            (
                "3: one peer +2 s, one good",
                vec![around(2000), around(0)],
                3,
                Some((0, 0)),
            ),
            // From the fast node's side: both others are 2 s behind it.
            (
                "3: this node +2 s",
                vec![around(-2000), around(-2000)],
                3,
                Some((-2000, -2000)),
            ),
            (
                "3: +2 s and -2 s: no two agree",
                vec![around(2000), around(-2000)],
                3,
                None,
            ),
            (
                "3: one peer missing, the other agrees",
                vec![around(0)],
                3,
                Some((0, 0)),
            ),
            ("3: one peer missing, the other 2 s off", vec![around(2000)], 3, None),
            // 5 voters: 3 good, one +2 s, one -2 s, seen from each kind of node.
            (
                "5: a good node",
                vec![around(0), around(0), around(2000), around(-2000)],
                5,
                Some((0, 0)),
            ),
            (
                "5: the +2 s node",
                vec![around(-2000), around(-2000), around(-2000), around(-4000)],
                5,
                Some((-2000, -2000)),
            ),
            (
                "5: the -2 s node",
                vec![around(2000), around(2000), around(2000), around(4000)],
                5,
                Some((2000, 2000)),
            ),
            (
                "5: two good and two missing",
                vec![around(0), around(0)],
                5,
                Some((0, 0)),
            ),
            (
                "5: only one good answers",
                vec![around(0), around(2000), around(-2000)],
                5,
                None,
            ),
            // Within the tolerance two clocks 0.9 s apart still agree (each is <= 0.5 s
            // from the interval): the bound is per node, not per pair.
            ("3: 0.9 s apart", vec![around(900)], 3, Some((400, 500))),
            ("2 voters disagree", vec![around(2000)], 2, None),
            ("2 voters agree", vec![around(3)], 2, Some((1, 2))),
        ];
        for (name, peers, voters, want) in cases {
            let got = agreement(&peers, voters, MAX_SKEW_US);
            match (got, want) {
                (None, None) => {}
                (Some(got), Some((lo_ms, hi_ms))) => {
                    assert!(got.sources * 2 > voters, "{name}: {got:?}");
                    // Within a round trip (and a halved tolerance) of the expected interval.
                    let near = |a: i64, b: i64| (a - b).abs() <= 1000;
                    assert!(
                        near(got.lo_us, lo_ms * MS) && near(got.hi_us, hi_ms * MS),
                        "{name}: {got:?}, want [{lo_ms}, {hi_ms}] ms"
                    );
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn view(basis: Basis, bounds_ms: Option<(i64, i64)>) -> ClockView {
        ClockView {
            basis,
            bounds_us: bounds_ms.map(|(lo, hi)| (lo * MS, hi * MS)),
            max_skew_us: MAX_SKEW_US,
            local_us: 1_000_000 * MS,
        }
    }

    #[test]
    fn a_leader_stamps_cluster_time_only_when_its_clock_agrees() {
        let cases: &[(&str, ClockView, Result<u64, ClockProblem>)] = &[
            ("alone", view(Basis::Alone, Some((0, 0))), Ok(1_000_000)),
            ("agrees", view(Basis::Majority, Some((-1, 1))), Ok(1_000_000)),
            // Off by less than the bound: clamped into the majority's interval.
            ("300 ms behind", view(Basis::Majority, Some((300, 301))), Ok(1_000_300)),
            ("300 ms ahead", view(Basis::Majority, Some((-301, -300))), Ok(999_700)),
            (
                "2 s ahead",
                view(Basis::Majority, Some((-2001, -1999))),
                Err(ClockProblem::Skewed { offset_ms: 2000 }),
            ),
            (
                "2 s behind",
                view(Basis::Majority, Some((1999, 2001))),
                Err(ClockProblem::Skewed { offset_ms: -2000 }),
            ),
            (
                "no majority",
                view(Basis::Unknown, None),
                Err(ClockProblem::NoAgreedTime),
            ),
        ];
        for (name, v, want) in cases {
            assert_eq!(v.stamp(), *want, "{name}");
        }
    }

    #[test]
    fn a_follower_uses_the_leaders_cluster_time() {
        let samples = ClockSamples::default();
        let voters = BTreeSet::from([1, 2, 3]);
        let now = wall_us();
        // Node 2 is this node's leader, 2 s ahead of this clock, and says cluster time is
        // 2 s behind its own clock: cluster time is this node's.
        samples.record(2, now, now + 400, now + 2_000_000, Some(now + 200));
        let v = evaluate(&samples, 1, &voters, Some(2), 500);
        assert_eq!(v.basis, Basis::Leader(2));
        assert!(!v.skewed(), "{v:?}");
        assert!(v.offset_ms().unwrap().abs() <= 1, "{v:?}");
        // Node 3 leads without an agreed time: its own clock, 2 s ahead, is the reference.
        samples.record(3, now, now + 400, now + 2_000_000, None);
        let v = evaluate(&samples, 1, &voters, Some(3), 500);
        assert!(v.skewed(), "{v:?}");
        assert_eq!(v.offset_ms(), Some(-2000));
        assert!((v.now_us() - v.local_us - 2_000_000).abs() <= 1000, "{v:?}");
        // No sample of the leader: no reference, this clock as it is.
        let v = evaluate(&samples, 1, &BTreeSet::from([1, 2, 3, 4]), Some(4), 500);
        assert_eq!((v.basis, v.bounds_us, v.skewed()), (Basis::Unknown, None, false));
        assert_eq!(v.now_us(), v.local_us);
    }

    #[test]
    fn a_leader_needs_a_majority_of_fresh_samples() {
        let samples = ClockSamples::default();
        let voters = BTreeSet::from([1, 2, 3, 4, 5]);
        let now = wall_us();
        let v = evaluate(&samples, 1, &voters, Some(1), 500);
        assert_eq!(v.basis, Basis::Unknown, "a new leader without samples stamps nothing");
        assert_eq!(v.stamp(), Err(ClockProblem::NoAgreedTime));
        samples.record(2, now, now + 300, now + 100, None);
        let v = evaluate(&samples, 1, &voters, Some(1), 500);
        assert_eq!(v.basis, Basis::Unknown, "2 of 5 is no majority");
        samples.record(4, now, now + 300, now + 2_000_100, None);
        samples.record(5, now, now + 300, now - 1_999_900, None);
        let v = evaluate(&samples, 1, &voters, Some(1), 500);
        assert_eq!(v.basis, Basis::Unknown, "+2 s and -2 s do not agree with the other two");
        samples.record(3, now, now + 300, now + 50, None);
        let v = evaluate(&samples, 1, &voters, Some(1), 500);
        assert_eq!(v.basis, Basis::Majority, "{v:?}");
        assert!(v.stamp().is_ok(), "{v:?}");
        assert_eq!(
            evaluate(&samples, 1, &BTreeSet::from([1]), Some(1), 500).basis,
            Basis::Alone
        );
    }

    #[test]
    fn the_narrowest_fresh_sample_is_used_and_old_ones_drop_out() {
        let samples = ClockSamples::default();
        let now = wall_us();
        samples.record(2, now, now + 10_000, now + 5_000, None);
        samples.record(2, now, now + 100, now + 50, None);
        samples.record(2, now, now + 5_000, now + 2_000, None);
        samples.record(2, now + 10, now, now, None); // this clock went back: dropped
        let best = samples.best(2).unwrap();
        assert_eq!((best.lo_us, best.hi_us), (-50, 50));
        for i in 0..SAMPLES_PER_PEER_MAX as i64 {
            samples.record(2, now, now + 1_000, now + 500 + i, None);
        }
        let best = samples.best(2).unwrap();
        assert_eq!(best.hi_us - best.lo_us, 1_000, "the narrow sample was pushed out");
        assert!(samples.best(3).is_none());
    }

    #[test]
    fn the_handoff_goes_to_a_caught_up_voter_whose_clock_agrees() {
        let cluster = -2_000 * MS; // this leader is 2 s fast
        let peers = [
            (2, -2_000 * MS, Some(10)),
            (3, -2_001 * MS, Some(12)),
            (4, 0, Some(20)),           // as fast as this leader: not a target
            (5, -4_000 * MS, Some(30)), // 2 s slow
            (6, -2_100 * MS, Some(12)),
        ];
        assert_eq!(pick_handoff(&peers, cluster, MAX_SKEW_US), Some(3));
        assert_eq!(pick_handoff(&peers[2..4], cluster, MAX_SKEW_US), None);
    }
}
