//! The bid rule the comparison systems run, so that etcd and Redis do the same work as
//! Gavel's book: an English auction with a fixed increment, eBay-style proxy bidding and
//! soft close, with no reserve and no buy-now (the benchmark uses neither).
//!
//! [`BenchAuction::place_bid`] is checked against `gavel_storage`'s book by the tests
//! below; [`REDIS_BID_SCRIPT`] is the same rule in Lua, and `gavel-bench` checks after
//! every run that each system stored exactly the bids it acknowledged.

use serde::{Deserialize, Serialize};

/// One auction's state as etcd stores it (JSON) and Redis holds it (a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchAuction {
    pub starting_price: u64,
    pub increment: u64,
    /// The visible price; meaningless while there is no leader.
    pub price: u64,
    pub leader: Option<String>,
    pub leader_max: u64,
    pub ends_at_ms: u64,
    pub extensions: u32,
    pub window_ms: u64,
    pub extend_ms: u64,
    pub max_extensions: u32,
    /// Accepted bids so far: the sequence number of the next bid record is `bids + 1`.
    pub bids: u64,
}

/// What an accepted bid left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BidAccepted {
    pub price: u64,
    pub leading: bool,
    pub min_next_bid: u64,
}

/// Why a bid was refused; `code()` matches Gavel's API error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BidRefused {
    Closed,
    TooLow { min_next_bid: u64 },
    MaxNotRaised { current_max: u64 },
    Invalid,
}

impl BidRefused {
    pub fn code(&self) -> &'static str {
        match self {
            BidRefused::Closed => "auction_closed",
            BidRefused::TooLow { .. } => "bid_too_low",
            BidRefused::MaxNotRaised { .. } => "max_not_raised",
            BidRefused::Invalid => "invalid_amount",
        }
    }
}

impl BenchAuction {
    pub fn min_next_bid(&self) -> u64 {
        match self.leader {
            None => self.starting_price,
            Some(_) => self.price.saturating_add(self.increment),
        }
    }

    /// Gavel's rule (storage `plan_bid`, `check_biddable`, `extend_if_sniped`) for this
    /// auction shape. On refusal nothing changes.
    pub fn place_bid(
        &mut self,
        bidder: &str,
        amount: Option<u64>,
        max_amount: Option<u64>,
        now_ms: u64,
    ) -> Result<BidAccepted, BidRefused> {
        if now_ms >= self.ends_at_ms {
            return Err(BidRefused::Closed);
        }
        match (amount, max_amount) {
            (None, None) | (Some(0), _) | (_, Some(0)) => return Err(BidRefused::Invalid),
            (Some(a), Some(m)) if a > m => return Err(BidRefused::Invalid),
            _ => {}
        }
        if self.leader.as_deref() == Some(bidder) {
            let max = max_amount.or(amount).unwrap_or(0);
            if max <= self.leader_max {
                return Err(BidRefused::MaxNotRaised {
                    current_max: self.leader_max,
                });
            }
            self.leader_max = max;
        } else {
            let min = self.min_next_bid();
            let amount = amount.unwrap_or(min);
            let max = max_amount.unwrap_or(amount);
            if amount < min || max < min {
                return Err(BidRefused::TooLow { min_next_bid: min });
            }
            if self.leader.is_none() {
                self.price = amount;
                self.leader = Some(bidder.to_string());
                self.leader_max = max;
            } else if max > self.leader_max {
                let step = self.leader_max.saturating_add(self.increment);
                self.price = amount.max(step.min(max));
                self.leader = Some(bidder.to_string());
                self.leader_max = max;
            } else {
                let step = max.saturating_add(self.increment);
                self.price = amount.max(step.min(self.leader_max));
            }
        }
        self.bids += 1;
        let extended = now_ms.saturating_add(self.extend_ms);
        if self.ends_at_ms.saturating_sub(now_ms) <= self.window_ms
            && self.extensions < self.max_extensions
            && extended > self.ends_at_ms
        {
            self.ends_at_ms = extended;
            self.extensions += 1;
        }
        Ok(BidAccepted {
            price: self.price,
            leading: self.leader.as_deref() == Some(bidder),
            min_next_bid: self.min_next_bid(),
        })
    }
}

/// The rule in Lua, run atomically by Redis (`EVALSHA`), as the Go/Redis auction system
/// validates bids. KEYS[1]: the auction hash (fields as in [`BenchAuction`], `leader`
/// absent while there is none); KEYS[2]: the list of bid records. ARGV: bidder, amount,
/// max_amount ("" for none). Time is Redis's `TIME`. Returns
/// `{"ok", price, leading (0/1), min_next_bid}` or `{code, detail}`. Amounts travel as
/// strings and are compared as Lua numbers (doubles), exact below 2^53.
pub const REDIS_BID_SCRIPT: &str = r#"
local a = redis.call('HMGET', KEYS[1], 'starting_price', 'increment', 'price', 'leader', 'leader_max',
  'ends_at_ms', 'extensions', 'window_ms', 'extend_ms', 'max_extensions')
if not a[1] then return {'unknown_auction', '0'} end
local start, inc, price = tonumber(a[1]), tonumber(a[2]), tonumber(a[3])
local leader, lmax, ends = a[4], tonumber(a[5]), tonumber(a[6])
local ext, window, extend, maxext = tonumber(a[7]), tonumber(a[8]), tonumber(a[9]), tonumber(a[10])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= ends then return {'auction_closed', '0'} end
local bidder = ARGV[1]
local amount = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
if (amount == nil and max == nil) or amount == 0 or max == 0 or (amount and max and amount > max) then
  return {'invalid_amount', '0'}
end
if leader and leader == bidder then
  local m = max or amount
  if m <= lmax then return {'max_not_raised', tostring(lmax)} end
  lmax = m
else
  local min = start
  if leader then min = price + inc end
  amount = amount or min
  max = max or amount
  if amount < min or max < min then return {'bid_too_low', string.format('%d', min)} end
  if not leader then
    price, leader, lmax = amount, bidder, max
  elseif max > lmax then
    price = math.max(amount, math.min(lmax + inc, max))
    leader, lmax = bidder, max
  else
    price = math.max(amount, math.min(max + inc, lmax))
  end
end
local n = redis.call('HINCRBY', KEYS[1], 'bids', 1)
local extended = now + extend
if ends - now <= window and ext < maxext and extended > ends then
  ends, ext = extended, ext + 1
end
redis.call('HSET', KEYS[1], 'price', string.format('%d', price), 'leader', leader,
  'leader_max', string.format('%d', lmax), 'ends_at_ms', string.format('%d', ends), 'extensions', ext)
redis.call('RPUSH', KEYS[2], string.format('%d %s %s %s %d', n, bidder, ARGV[2], ARGV[3], now))
local leading = '0'
if leader == bidder then leading = '1' end
return {'ok', string.format('%d', price), leading, string.format('%d', price + inc)}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_storage::{AuctionBook, AuctionSpec, Command, IncrementRule, Op, Response, SoftClose};
    use proptest::prelude::*;

    const START: u64 = 1_000;
    const INC: u64 = 100;

    fn spec(ends_at_ms: u64) -> AuctionSpec {
        AuctionSpec {
            seller: "seller".into(),
            title: "t".into(),
            starting_price: START,
            increment: IncrementRule::Fixed(INC),
            reserve_price: None,
            starts_at_ms: 0,
            ends_at_ms,
            soft_close: Some(SoftClose {
                window_secs: 2,
                extend_secs: 3,
                max_extensions: 2,
            }),
            buy_now_price: None,
        }
    }

    fn bench_auction(ends_at_ms: u64) -> BenchAuction {
        BenchAuction {
            starting_price: START,
            increment: INC,
            price: 0,
            leader: None,
            leader_max: 0,
            ends_at_ms,
            extensions: 0,
            window_ms: 2_000,
            extend_ms: 3_000,
            max_extensions: 2,
            bids: 0,
        }
    }

    fn bid_strategy() -> impl Strategy<Value = (u8, Option<u64>, Option<u64>, u64)> {
        (
            0u8..3,
            proptest::option::of(900u64..2_500),
            proptest::option::of(900u64..2_500),
            0u64..700,
        )
    }

    proptest! {
        /// Any sequence of bids gets the same answers and the same price, leader and end
        /// from the bench rule as from Gavel's own book.
        #[test]
        fn the_bench_rule_agrees_with_the_book(bids in proptest::collection::vec(bid_strategy(), 1..40)) {
            let ends = 10_000;
            let mut book = AuctionBook::default();
            let create = Command::new(1, Op::CreateAuction { spec: spec(ends), worker: None });
            let created = matches!(book.apply(&create), Response::AuctionCreated { .. });
            prop_assert!(created);
            let mut ours = bench_auction(ends);
            let mut now = 1;
            for (who, amount, max, dt) in bids {
                now += dt;
                let bidder = format!("b{who}");
                let op = Op::PlaceBid { auction_id: 1, bidder: bidder.clone(), amount, max_amount: max };
                let theirs = book.apply(&Command::new(now, op));
                let mine = ours.place_bid(&bidder, amount, max, now);
                match (&theirs, &mine) {
                    (Response::BidAccepted(t), Ok(m)) => {
                        prop_assert_eq!(t.price, m.price);
                        prop_assert_eq!(t.leading, m.leading);
                        prop_assert_eq!(t.min_next_bid, m.min_next_bid);
                        prop_assert_eq!(t.ends_at_ms, ours.ends_at_ms);
                    }
                    (Response::Rejected(t), Err(m)) => prop_assert_eq!(t.code(), m.code()),
                    _ => prop_assert!(false, "book said {:?}, bench rule said {:?}", theirs, mine),
                }
            }
        }
    }
}
