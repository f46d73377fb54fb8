//! Rate limits: token buckets per source address (every client request) and per account
//! (every write), node-local soft state (`governor`). Past a limit the answer is 429
//! `rate_limited` with `Retry-After`, at once: a flooding client costs the others one
//! bucket lookup per request, never a queue. Node-to-node routes (`/raft/*`,
//! `/v1/internal/*`) are not limited. The buckets forget idle keys every
//! [`FORGET_IDLE_SECS`], so their memory follows the clients active lately.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// How often idle keys are dropped from the buckets.
pub const FORGET_IDLE_SECS: u64 = 60;

/// Limits in requests per second with a burst; 0 per second turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub per_address_per_sec: u32,
    pub per_address_burst: u32,
    pub per_account_per_sec: u32,
    pub per_account_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_address_per_sec: 5_000,
            per_address_burst: 10_000,
            per_account_per_sec: 200,
            per_account_burst: 400,
        }
    }
}

fn quota(per_sec: u32, burst: u32) -> Option<Quota> {
    let per_sec = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst.max(per_sec.get())).unwrap_or(per_sec);
    Some(Quota::per_second(per_sec).allow_burst(burst))
}

/// The buckets of one node.
pub struct RateLimits {
    addresses: Option<DefaultKeyedRateLimiter<IpAddr>>,
    accounts: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(config: RateLimitConfig) -> Arc<Self> {
        Arc::new(RateLimits {
            addresses: quota(config.per_address_per_sec, config.per_address_burst).map(RateLimiter::keyed),
            accounts: quota(config.per_account_per_sec, config.per_account_burst).map(RateLimiter::keyed),
            clock: DefaultClock::default(),
        })
    }

    /// The 429 for a request refused by the `kind` bucket (counted in
    /// `gavel_rate_limited_total`).
    fn refusal(
        &self,
        kind: &'static str,
        what: &str,
        not_before: governor::NotUntil<<DefaultClock as Clock>::Instant>,
    ) -> ApiError {
        crate::metrics::RATE_LIMITED.with_label_values(&[kind]).inc();
        let wait = not_before.wait_time_from(self.clock.now());
        ApiError::RateLimited {
            message: format!("{what} sends requests faster than this node allows; slow down"),
            retry_after_secs: wait.as_secs().max(1),
        }
    }

    /// One request from `addr`.
    pub fn check_address(&self, addr: IpAddr) -> Result<(), ApiError> {
        match &self.addresses {
            Some(limiter) => limiter
                .check_key(&addr)
                .map_err(|not_before| self.refusal(crate::metrics::LIMIT_ADDRESS, "this address", not_before)),
            None => Ok(()),
        }
    }

    /// One write by `account`.
    pub fn check_account(&self, account: &str) -> Result<(), ApiError> {
        match &self.accounts {
            Some(limiter) => limiter
                .check_key(&account.to_string())
                .map_err(|not_before| self.refusal(crate::metrics::LIMIT_ACCOUNT, "this account", not_before)),
            None => Ok(()),
        }
    }

    /// Drops the buckets of keys idle long enough to be full again.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.addresses {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.accounts {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// Forgets idle keys every [`FORGET_IDLE_SECS`] until `stop`.
pub async fn run_forgetting(limits: Arc<RateLimits>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(FORGET_IDLE_SECS));
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => limits.forget_idle(),
        }
    }
}
