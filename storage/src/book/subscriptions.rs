//! UDP subscriptions: `Subscribe` and `Unsubscribe`.
//!
//! A subscription is an `ip:port` address, an expiry in command time and the account
//! that made it; subscribing again renews it. They live in the replicated book so that
//! whichever worker hosts an auction — after a failover too — pushes to the same
//! subscribers. Only an address that proved it wants the datagrams reaches the book: the
//! API challenges it first (see `gavel_api::subscriptions`). Each auction keeps at most
//! [`SUBSCRIBERS_PER_AUCTION_MAX`] live subscribers and each account at most
//! [`SUBSCRIPTIONS_PER_ACCOUNT_MAX`] in all; expired ones are dropped when they are next
//! looked at. Subscribing to an ended auction is refused. Only the account that made a
//! subscription, or an admin, may remove it; another account may not take it over.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::accounts::{Caller, Role};
use super::{check_not_final, AuctionBook};
use crate::command::{Rejection, Response};
use crate::types::{AuctionId, TimestampMs};

/// Live UDP subscribers one auction may have.
pub const SUBSCRIBERS_PER_AUCTION_MAX: u32 = 4096;
/// Live UDP subscriptions one account may hold over all auctions.
pub const SUBSCRIPTIONS_PER_ACCOUNT_MAX: u32 = 64;
/// Longest subscription; clients renew.
pub const SUBSCRIPTION_TTL_MAX_SECS: u32 = 3600;
/// The owner recorded for a subscription the cluster itself made (tools, tests).
pub const CLUSTER_OWNER: &str = "";

/// One subscriber of an auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub expires_at_ms: TimestampMs,
    /// The account that made it ([`CLUSTER_OWNER`] for the cluster's own).
    pub owner: String,
}

impl AuctionBook {
    pub(super) fn subscribe(
        &mut self,
        id: AuctionId,
        addr: &str,
        ttl_secs: u32,
        caller: Option<&Caller>,
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
        let owner = caller.map_or(CLUSTER_OWNER, |c| c.account.as_str()).to_string();
        self.prune_subscriptions_of(&owner, now);
        let expired: Vec<String> = self
            .subscriptions
            .get(&id)
            .map(|subs| {
                subs.iter()
                    .filter(|(_, sub)| sub.expires_at_ms <= now)
                    .map(|(a, _)| a.clone())
                    .collect()
            })
            .unwrap_or_default();
        for old in expired {
            self.remove_subscription(id, &old);
        }
        self.admits_subscription(id, &addr, &owner, now)?;
        let expires_at_ms = now.saturating_add(u64::from(ttl_secs) * 1000);
        self.subscriptions.entry(id).or_default().insert(
            addr.clone(),
            Subscription {
                expires_at_ms,
                owner: owner.clone(),
            },
        );
        self.subscriptions_by_owner
            .entry(owner)
            .or_default()
            .insert((id, addr.clone()));
        Ok(Response::Subscribed {
            auction_id: id,
            addr,
            expires_at_ms,
        })
    }

    pub(super) fn unsubscribe(
        &mut self,
        id: AuctionId,
        addr: &str,
        caller: Option<&Caller>,
    ) -> Result<Response, Rejection> {
        self.get(id)?;
        let addr = addr
            .parse::<SocketAddr>()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| addr.to_string());
        if let Some(caller) = caller {
            let admin = self.accounts.get(&caller.account).is_some_and(|a| a.has(Role::Admin));
            let owner = self
                .subscriptions
                .get(&id)
                .and_then(|subs| subs.get(&addr))
                .map(|s| s.owner.clone());
            if owner.is_some_and(|owner| owner != caller.account) && !admin {
                return Err(Rejection::Forbidden {
                    role: "owner of this subscription".into(),
                });
            }
        }
        self.remove_subscription(id, &addr);
        Ok(Response::Unsubscribed { auction_id: id, addr })
    }

    pub(super) fn remove_subscription(&mut self, id: AuctionId, addr: &str) {
        let Some(subs) = self.subscriptions.get_mut(&id) else {
            return;
        };
        if let Some(sub) = subs.remove(addr) {
            if let Some(owned) = self.subscriptions_by_owner.get_mut(&sub.owner) {
                owned.remove(&(id, addr.to_string()));
                if owned.is_empty() {
                    self.subscriptions_by_owner.remove(&sub.owner);
                }
            }
        }
        if subs.is_empty() {
            self.subscriptions.remove(&id);
        }
    }

    /// Drops `owner`'s subscriptions that expired by `now` (or whose auction ended), so
    /// the quota counts live ones.
    fn prune_subscriptions_of(&mut self, owner: &str, now: TimestampMs) {
        let Some(owned) = self.subscriptions_by_owner.get(owner) else {
            return;
        };
        let over: Vec<(AuctionId, String)> = owned
            .iter()
            .filter(|(id, addr)| {
                let live = self
                    .subscriptions
                    .get(id)
                    .and_then(|subs| subs.get(addr))
                    .is_some_and(|s| s.expires_at_ms > now);
                let open = self.auctions.get(id).is_some_and(|a| !a.status.is_final());
                !(live && open)
            })
            .cloned()
            .collect();
        for (id, addr) in over {
            self.remove_subscription(id, &addr);
        }
    }

    /// Whether `owner` may subscribe `addr` to auction `id` at `now` as far as ownership
    /// and quotas go (expired subscriptions do not count). The API asks before it
    /// challenges an address, so a refusal reaches the client instead of a silent
    /// confirm; `subscribe` asks again in `apply`.
    pub fn admits_subscription(
        &self,
        id: AuctionId,
        addr: &str,
        owner: &str,
        now: TimestampMs,
    ) -> Result<(), Rejection> {
        let live_sub = |id: &AuctionId, addr: &str| {
            self.subscriptions
                .get(id)
                .and_then(|subs| subs.get(addr))
                .filter(|s| s.expires_at_ms > now)
        };
        match live_sub(&id, addr) {
            Some(sub) if sub.owner != owner => Err(Rejection::SubscriptionTaken),
            Some(_) => Ok(()),
            None => {
                let subscribers = self
                    .subscriptions
                    .get(&id)
                    .map_or(0, |subs| subs.values().filter(|s| s.expires_at_ms > now).count());
                if subscribers >= SUBSCRIBERS_PER_AUCTION_MAX as usize {
                    return Err(Rejection::TooManySubscribers {
                        max: SUBSCRIBERS_PER_AUCTION_MAX,
                    });
                }
                if owner == CLUSTER_OWNER {
                    return Ok(());
                }
                let held = self.subscriptions_by_owner.get(owner).map_or(0, |owned| {
                    owned
                        .iter()
                        .filter(|(id, addr)| {
                            live_sub(id, addr).is_some() && self.auctions.get(id).is_some_and(|a| !a.status.is_final())
                        })
                        .count()
                });
                if held >= SUBSCRIPTIONS_PER_ACCOUNT_MAX as usize {
                    return Err(Rejection::TooManySubscriptions {
                        max: SUBSCRIPTIONS_PER_ACCOUNT_MAX,
                    });
                }
                Ok(())
            }
        }
    }

    /// Who owns the live subscription of `addr` to auction `id`, if there is one.
    pub fn subscription_owner(&self, id: AuctionId, addr: &str, now: TimestampMs) -> Option<&str> {
        self.subscriptions
            .get(&id)?
            .get(addr)
            .filter(|s| s.expires_at_ms > now)
            .map(|s| s.owner.as_str())
    }

    /// The subscribers of an auction still live at `now`.
    pub fn subscribers(&self, id: AuctionId, now: TimestampMs) -> Vec<(String, TimestampMs)> {
        self.subscriptions
            .get(&id)
            .map(|subs| {
                subs.iter()
                    .filter(|(_, s)| s.expires_at_ms > now)
                    .map(|(a, s)| (a.clone(), s.expires_at_ms))
                    .collect()
            })
            .unwrap_or_default()
    }
}
