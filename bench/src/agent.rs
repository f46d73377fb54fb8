//! Bidder agents: each benchmark client is one bidder with a strategy, choosing its next
//! bid from what the answers to its own earlier bids told it (no extra reads).

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// How a bidder decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// A straight bid of exactly the minimum next bid.
    Incremental,
    /// Quiet until the last seconds of the run (the auctions' end), then bids one
    /// increment over the minimum, which triggers soft close.
    Sniper,
    /// One maximum five increments over the minimum; raises it while leading.
    Proxy,
    /// The minimum plus -2..=8 increments, straight or proxy at random (about one bid in
    /// five is too low on purpose).
    Random,
    /// Client i takes incremental, sniper, proxy, random in turn.
    Mix,
}

impl Strategy {
    /// The strategy of client `index` under this choice.
    pub fn for_client(self, index: usize) -> Strategy {
        const TURN: [Strategy; 4] = [
            Strategy::Incremental,
            Strategy::Sniper,
            Strategy::Proxy,
            Strategy::Random,
        ];
        match self {
            Strategy::Mix => TURN[index % TURN.len()],
            other => other,
        }
    }
}

/// A bid an agent wants placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bid {
    pub auction: usize,
    /// Which of the client's bidders bids.
    pub bidder: usize,
    pub amount: Option<u64>,
    pub max_amount: Option<u64>,
}

/// A system's answer to a bid (transport failures are errors, not replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Accepted { leading: bool, min_next_bid: u64 },
    Refused { code: String, min_next_bid: Option<u64> },
}

/// The name of client `index`'s `k`-th bidder.
pub fn bidder_name(index: usize, k: usize) -> String {
    format!("c{index}-b{k}")
}

/// Bidder identities per client: a client is one connection placing bids for a few
/// bidders (as a web front end does), so that one client alone can keep outbidding.
pub const BIDDERS_PER_CLIENT: usize = 4;

pub struct Agent {
    pub strategy: Strategy,
    bidders: Vec<String>,
    increment: u64,
    /// Per auction: the minimum next bid as last seen.
    known_min: Vec<u64>,
    /// Per auction: which of our bidders leads, as last seen, with their maximum.
    leading: Vec<Option<(usize, u64)>>,
    rng: fastrand::Rng,
}

impl Agent {
    pub fn new(
        index: usize,
        strategy: Strategy,
        auctions: usize,
        starting_price: u64,
        increment: u64,
        seed: u64,
    ) -> Self {
        Agent {
            strategy: strategy.for_client(index),
            bidders: (0..BIDDERS_PER_CLIENT).map(|k| bidder_name(index, k)).collect(),
            increment,
            known_min: vec![starting_price; auctions],
            leading: vec![None; auctions],
            rng: fastrand::Rng::with_seed(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    pub fn bidder(&self, bid: &Bid) -> &str {
        &self.bidders[bid.bidder]
    }

    /// Whether the agent bids at all with `remaining` of the run left.
    pub fn active(&self, remaining_ms: u64, snipe_window_ms: u64) -> bool {
        self.strategy != Strategy::Sniper || remaining_ms <= snipe_window_ms
    }

    pub fn next_bid(&mut self) -> Bid {
        let auction = self.rng.usize(..self.known_min.len());
        let min = self.known_min[auction];
        let inc = self.increment;
        // Strategies other than random bid for one of our bidders who does not lead.
        let leader = self.leading[auction].map(|(k, _)| k);
        let challenger = match leader {
            Some(k) => (k + 1 + self.rng.usize(..self.bidders.len() - 1)) % self.bidders.len(),
            None => self.rng.usize(..self.bidders.len()),
        };
        let (bidder, amount, max_amount) = match self.strategy {
            Strategy::Incremental | Strategy::Mix => (challenger, Some(min), None),
            Strategy::Sniper => (challenger, Some(min.saturating_add(inc)), None),
            Strategy::Proxy => (challenger, None, Some(min.saturating_add(5 * inc))),
            Strategy::Random => {
                let steps = self.rng.i64(-2..=8);
                let amount = if steps < 0 {
                    min.saturating_sub(inc * steps.unsigned_abs()).max(1)
                } else {
                    min.saturating_add(inc * steps as u64)
                };
                let max = self.rng.bool().then(|| amount.saturating_add(inc * self.rng.u64(0..5)));
                (self.rng.usize(..self.bidders.len()), Some(amount), max)
            }
        };
        Bid {
            auction,
            bidder,
            amount,
            max_amount,
        }
    }

    /// Learns from the answer to `bid`.
    pub fn observe(&mut self, bid: &Bid, reply: &Reply) {
        let a = bid.auction;
        match reply {
            Reply::Accepted { leading, min_next_bid } => {
                self.known_min[a] = *min_next_bid;
                self.leading[a] = leading.then(|| (bid.bidder, bid.max_amount.or(bid.amount).unwrap_or(0)));
            }
            Reply::Refused { min_next_bid, .. } => {
                if let Some(min) = min_next_bid {
                    self.known_min[a] = self.known_min[a].max(*min);
                }
                self.leading[a] = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_gives_each_strategy_in_turn() {
        let got: Vec<Strategy> = (0..5).map(|i| Strategy::Mix.for_client(i)).collect();
        assert_eq!(
            got,
            [
                Strategy::Incremental,
                Strategy::Sniper,
                Strategy::Proxy,
                Strategy::Random,
                Strategy::Incremental
            ]
        );
    }

    #[test]
    fn an_incremental_bidder_follows_the_minimum_it_is_told() {
        let mut agent = Agent::new(0, Strategy::Incremental, 1, 1_000, 100, 7);
        let bid = agent.next_bid();
        assert_eq!(bid.amount, Some(1_000));
        let refused = Reply::Refused {
            code: "bid_too_low".into(),
            min_next_bid: Some(1_700),
        };
        agent.observe(&bid, &refused);
        assert_eq!(agent.next_bid().amount, Some(1_700));
    }

    #[test]
    fn a_lone_client_keeps_outbidding_itself_with_another_bidder() {
        let mut agent = Agent::new(0, Strategy::Incremental, 1, 1_000, 100, 7);
        for round in 0..20u64 {
            let bid = agent.next_bid();
            assert_eq!(bid.amount, Some(1_000 + 100 * round));
            if round > 0 {
                assert_ne!(
                    Some(bid.bidder),
                    agent.leading[0].map(|(k, _)| k),
                    "the leader does not bid"
                );
            }
            let min_next_bid = bid.amount.unwrap() + 100;
            agent.observe(
                &bid,
                &Reply::Accepted {
                    leading: true,
                    min_next_bid,
                },
            );
        }
    }

    #[test]
    fn a_sniper_waits_for_the_window() {
        let agent = Agent::new(1, Strategy::Mix, 1, 1_000, 100, 7);
        assert!(!agent.active(10_000, 3_000));
        assert!(agent.active(2_999, 3_000));
    }
}
