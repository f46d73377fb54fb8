//! UDP subscriptions: `Subscribe` and `Unsubscribe`.
//!
//! A subscription is an `ip:port` address and an expiry in command time; subscribing
//! again renews it. They live in the replicated book so that whichever worker hosts an
//! auction — after a failover too — pushes to the same subscribers. Each auction keeps at
//! most [`SUBSCRIBERS_PER_AUCTION_MAX`] live subscribers; expired ones are dropped when
//! the auction's subscriptions change. Subscribing to an ended auction is refused.

use std::net::SocketAddr;

use super::{check_not_final, AuctionBook};
use crate::command::{Rejection, Response};
use crate::types::{AuctionId, TimestampMs};

/// Live UDP subscribers one auction may have.
pub const SUBSCRIBERS_PER_AUCTION_MAX: u32 = 4096;
/// Longest subscription; clients renew.
pub const SUBSCRIPTION_TTL_MAX_SECS: u32 = 3600;

impl AuctionBook {
    pub(super) fn subscribe(
        &mut self,
        id: AuctionId,
        addr: &str,
        ttl_secs: u32,
        now: TimestampMs,
    ) -> Result<Response, Rejection> {
        check_not_final(self.get(id)?)?;
        let invalid = |reason: String| Rejection::InvalidInput { reason };
        if ttl_secs == 0 || ttl_secs > SUBSCRIPTION_TTL_MAX_SECS {
            return Err(invalid(format!(
                "ttl_secs must be between 1 and {SUBSCRIPTION_TTL_MAX_SECS}"
            )));
        }
        let parsed: SocketAddr = addr
            .parse()
            .map_err(|_| invalid(format!("udp {addr:?} is not an ip:port address")))?;
        if parsed.port() == 0 || parsed.ip().is_unspecified() {
            return Err(invalid(format!("udp {addr:?} cannot receive datagrams")));
        }
        let addr = parsed.to_string();
        let subs = self.subscriptions.entry(id).or_default();
        subs.retain(|_, expires| *expires > now);
        if !subs.contains_key(&addr) && subs.len() >= SUBSCRIBERS_PER_AUCTION_MAX as usize {
            return Err(Rejection::TooManySubscribers {
                max: SUBSCRIBERS_PER_AUCTION_MAX,
            });
        }
        let expires_at_ms = now.saturating_add(u64::from(ttl_secs) * 1000);
        subs.insert(addr.clone(), expires_at_ms);
        Ok(Response::Subscribed {
            auction_id: id,
            addr,
            expires_at_ms,
        })
    }

    pub(super) fn unsubscribe(&mut self, id: AuctionId, addr: &str) -> Result<Response, Rejection> {
        self.get(id)?;
        let addr = addr
            .parse::<SocketAddr>()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| addr.to_string());
        if let Some(subs) = self.subscriptions.get_mut(&id) {
            subs.remove(&addr);
            if subs.is_empty() {
                self.subscriptions.remove(&id);
            }
        }
        Ok(Response::Unsubscribed { auction_id: id, addr })
    }

    /// The subscribers of an auction still live at `now`.
    pub fn subscribers(&self, id: AuctionId, now: TimestampMs) -> Vec<(String, TimestampMs)> {
        self.subscriptions
            .get(&id)
            .map(|subs| {
                subs.iter()
                    .filter(|(_, e)| **e > now)
                    .map(|(a, e)| (a.clone(), *e))
                    .collect()
            })
            .unwrap_or_default()
    }
}
