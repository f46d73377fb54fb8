//! UDP subscriptions: `POST /v1/auctions/{id}/subscriptions` `{"udp": "ip:port",
//! "ttl_secs": 60}` (subscribe or renew), `DELETE` with `{"udp": …}` (unsubscribe), the
//! same as datagrams (`crate::udp`), and the proof that an address wants them.
//!
//! # Who and where
//!
//! Subscribing needs an account's token; a subscription belongs to that account (a quota
//! per account, and only it or an admin removes it). A *new* address must prove it wants
//! the datagrams before anything goes to it: the node sends it a challenge datagram with
//! a random cookie and answers `202 {"status": "pending"}`; when the same address sends
//! the cookie back (a confirm datagram) within [`PROOF_DEADLINE_MS`], the subscription is
//! committed (`Op::Subscribe`, with the account as caller). Until then the address gets
//! nothing but that one challenge, never larger than the request that caused it, and
//! nothing is written to Raft: an unproven subscription costs a map entry, bounded per
//! account ([`PENDING_PER_ACCOUNT_MAX`]) and in all ([`PENDING_MAX`]). Renewing an
//! address the account already holds needs no new proof.
//!
//! Any node takes subscriptions: the node that challenged the address receives the
//! confirm, and commits the subscription through the front door like any write (the
//! leader's `apply` checks the caller's token again).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gavel_storage::book::accounts::{hash_token, Caller};
use gavel_storage::{Command, Op, Rejection, Response as BookResponse};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::auctions::{propose, IdempotencyKey};
use crate::auth::{authenticate, Authenticated};
use crate::error::ApiError;
use crate::json::{parse_json, rfc3339, ApiPath};
use crate::openapi::ErrorBody;
use crate::request::RawRequest;
use crate::state::AppState;
use crate::udp::{Inbound, ProofFrame, Push, SubscribeFrame};

/// TTL used when a request gives none.
pub const SUBSCRIPTION_TTL_DEFAULT_SECS: u32 = 60;
/// Datagrams waiting to be handled; more are dropped (clients retry).
pub const DATAGRAM_REQUESTS_MAX: usize = 1024;
/// How long an address has to send its cookie back.
pub const PROOF_DEADLINE_MS: u64 = 10_000;
/// Unproven subscriptions one account may have waiting.
pub const PENDING_PER_ACCOUNT_MAX: usize = 16;
/// Unproven subscriptions waiting on this node in all.
pub const PENDING_MAX: usize = 4096;

struct Pending {
    caller: Caller,
    ttl_secs: u32,
    cookie: u64,
    deadline: Instant,
    /// Confirmed, its subscription being committed: a repeated request waits for that
    /// commit instead of starting another proof.
    committing: bool,
}

/// Unproven subscriptions on this node, by (address, auction). Node-local soft state.
#[derive(Default)]
pub struct Proofs {
    pending: Mutex<HashMap<(SocketAddr, u64), Pending>>,
}

impl Proofs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(SocketAddr, u64), Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a challenge for `addr` and returns its cookie (`None` when the proof is
    /// done and its commit under way: nothing to send), or why not.
    fn start(&self, addr: SocketAddr, auction_id: u64, caller: Caller, ttl_secs: u32) -> Result<Option<u64>, ApiError> {
        let mut pending = self.lock();
        let now = Instant::now();
        pending.retain(|_, p| p.deadline > now);
        // Asked again while a proof is under way: the same cookie, so that a confirm
        // already on its way still counts.
        if let Some(p) = pending.get(&(addr, auction_id)) {
            if p.caller.account == caller.account {
                return Ok((!p.committing).then_some(p.cookie));
            }
        }
        let mine = pending.values().filter(|p| p.caller.account == caller.account).count();
        if mine >= PENDING_PER_ACCOUNT_MAX && !pending.contains_key(&(addr, auction_id)) {
            return Err(ApiError::Rejected(Rejection::TooManySubscriptions {
                max: PENDING_PER_ACCOUNT_MAX as u32,
            }));
        }
        if pending.len() >= PENDING_MAX {
            return Err(ApiError::Unavailable(
                "too many subscriptions wait for their proof on this node; retry shortly".into(),
            ));
        }
        let mut cookie = [0u8; 8];
        getrandom::fill(&mut cookie).expect("the OS random source works");
        let cookie = u64::from_be_bytes(cookie);
        pending.insert(
            (addr, auction_id),
            Pending {
                caller,
                ttl_secs,
                cookie,
                deadline: now + Duration::from_millis(PROOF_DEADLINE_MS),
                committing: false,
            },
        );
        Ok(Some(cookie))
    }

    /// The caller and TTL of the pending subscription a confirm proves, now marked as
    /// committing; `None` for a wrong cookie, a late one, or a repeated confirm.
    fn confirm(&self, addr: SocketAddr, frame: &ProofFrame) -> Option<(Caller, u32)> {
        let mut pending = self.lock();
        match pending.get_mut(&(addr, frame.auction_id)) {
            Some(p) if !p.committing && p.cookie == frame.cookie && p.deadline > Instant::now() => {
                // A commit that hangs past a fresh deadline lets the address start over.
                p.committing = true;
                p.deadline = Instant::now() + Duration::from_millis(PROOF_DEADLINE_MS);
                Some((p.caller.clone(), p.ttl_secs))
            }
            _ => None,
        }
    }

    /// Forgets a proof: its commit failed, or its subscription is in place.
    fn finish(&self, addr: SocketAddr, auction_id: u64) {
        self.lock().remove(&(addr, auction_id));
    }
}

/// `POST /v1/auctions/{id}/subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    /// `ip:port` to send the auction's datagrams to; it must prove it wants them.
    #[schema(example = "127.0.0.1:9999")]
    udp: String,
    /// Lifetime in seconds (renew before it ends); default 300.
    ttl_secs: Option<u32>,
}

/// `DELETE /v1/auctions/{id}/subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unsubscribe {
    udp: String,
}

/// A UDP subscription: `pending` until the address echoes its challenge, then `active`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub auction_id: u64,
    pub udp: String,
    /// `pending` or `active`.
    pub status: &'static str,
    /// pending: how long the address has to answer the challenge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof_deadline_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
    /// active: when it lapses unless renewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

fn parse_udp(addr: &str) -> Result<SocketAddr, ApiError> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|_| ApiError::invalid(format!("udp {addr:?} is not an ip:port address")))?;
    if parsed.port() == 0 || parsed.ip().is_unspecified() {
        return Err(ApiError::invalid(format!("udp {addr:?} cannot receive datagrams")));
    }
    Ok(parsed)
}

/// Whether `account` already holds a live subscription of `addr` to `auction_id`.
fn holds(s: &AppState, auction_id: u64, addr: &SocketAddr, account: &str) -> bool {
    s.sm.read()
        .book
        .subscription_owner(auction_id, &addr.to_string(), s.now_ms())
        .is_some_and(|owner| owner == account)
}

/// Sends `addr` a challenge for `auction_id` on behalf of `auth`; `false` when its proof
/// is done already and the subscription on its way (nothing sent).
fn challenge(
    s: &AppState,
    auction_id: u64,
    addr: SocketAddr,
    auth: &Authenticated,
    ttl_secs: u32,
) -> Result<bool, ApiError> {
    let exists = {
        let st = s.sm.read();
        // An archived auction ended long ago.
        let archived = st.book.is_archived(auction_id).then_some(true);
        st.book.auction(auction_id).map(|a| a.status.is_final()).or(archived)
    };
    match exists {
        None => return Err(ApiError::unknown_auction(auction_id)),
        Some(true) => return Err(ApiError::Rejected(Rejection::AuctionClosed)),
        Some(false) => {}
    }
    if !(1..=gavel_storage::book::SUBSCRIPTION_TTL_MAX_SECS).contains(&ttl_secs) {
        return Err(ApiError::invalid(format!(
            "ttl_secs must be between 1 and {}",
            gavel_storage::book::SUBSCRIPTION_TTL_MAX_SECS
        )));
    }
    s.sm.read()
        .book
        .admits_subscription(auction_id, &addr.to_string(), auth.name(), s.now_ms())
        .map_err(ApiError::Rejected)?;
    let Some(cookie) = s.proofs.start(addr, auction_id, auth.caller.clone(), ttl_secs)? else {
        return Ok(false);
    };
    let frame = ProofFrame {
        confirm: false,
        auction_id,
        cookie,
    };
    s.udp.push(Push {
        frame: frame.encode().into(),
        targets: vec![addr],
    });
    Ok(true)
}

#[utoipa::path(
    post,
    path = "/v1/auctions/{id}/subscriptions",
    tag = "live",
    request_body = Subscribe,
    params(("id" = u64, Path, description = "The auction's id"), IdempotencyKey),
    security(("token" = [])),
    responses(
        (status = 201, description = "Active (the address had proved itself; renewed)", body = SubscriptionView),
        (status = 202, description = "Pending: a challenge datagram went to the address", body = SubscriptionView),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 404, description = "`unknown_auction`", body = ErrorBody),
        (status = 409, description = "`auction_closed`, `subscription_taken`", body = ErrorBody),
        (status = 429, description = "`too_many_subscribers`, `too_many_subscriptions`, `rate_limited`", body = ErrorBody),
    )
)]
pub async fn subscribe(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    let body: Subscribe = parse_json(&req.body)?;
    let addr = parse_udp(&body.udp)?;
    let ttl_secs = body.ttl_secs.unwrap_or(SUBSCRIPTION_TTL_DEFAULT_SECS);
    let auth = authenticate(&s, &req)?;
    if holds(&s, id, &addr, auth.name()) {
        s.proofs.finish(addr, id);
    } else {
        let message = if challenge(&s, id, addr, &auth, ttl_secs)? {
            "a challenge datagram went to the address; send its cookie back from there \
             (a confirm datagram, see docs/api.md) to start the subscription"
        } else {
            "the address proved itself; the subscription is being committed"
        };
        return Ok((
            StatusCode::ACCEPTED,
            Json(SubscriptionView {
                auction_id: id,
                udp: addr.to_string(),
                status: "pending",
                proof_deadline_ms: Some(PROOF_DEADLINE_MS),
                message: Some(message),
                expires_at: None,
            }),
        )
            .into_response());
    }
    let op = Op::Subscribe {
        auction_id: id,
        addr: addr.to_string(),
        ttl_secs,
    };
    match propose(&s, &req, |_, _| Ok(op)).await? {
        BookResponse::Subscribed {
            auction_id,
            addr,
            expires_at_ms,
        } => Ok((
            StatusCode::CREATED,
            Json(SubscriptionView {
                auction_id,
                udp: addr,
                status: "active",
                proof_deadline_ms: None,
                message: None,
                expires_at: Some(rfc3339(expires_at_ms)),
            }),
        )
            .into_response()),
        other => Err(ApiError::Internal(format!(
            "unexpected response to subscribe: {other:?}"
        ))),
    }
}

#[utoipa::path(
    delete,
    path = "/v1/auctions/{id}/subscriptions",
    tag = "live",
    request_body = Unsubscribe,
    params(("id" = u64, Path, description = "The auction's id"), IdempotencyKey),
    security(("token" = [])),
    responses(
        (status = 200, description = "Removed (or there was none)", body = crate::openapi::Done),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`identity_mismatch`: another account's subscription", body = ErrorBody),
    )
)]
pub async fn unsubscribe(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    let body: Unsubscribe = parse_json(&req.body)?;
    if let Ok(addr) = body.udp.parse() {
        s.proofs.finish(addr, id);
    }
    let op = Op::Unsubscribe {
        auction_id: id,
        addr: body.udp,
    };
    propose(&s, &req, |_, _| Ok(op)).await?;
    Ok(Json(crate::openapi::Done { ok: true }).into_response())
}

/// A proven (or renewed) subscription, or an unsubscribe (`ttl_secs` 0), with the
/// caller it is made for.
struct Change {
    auction_id: u64,
    addr: String,
    ttl_secs: u32,
    caller: Caller,
}

/// Commits a subscription change through the front door.
async fn commit(s: &AppState, change: Change) -> Result<(), String> {
    let op = if change.ttl_secs == 0 {
        Op::Unsubscribe {
            auction_id: change.auction_id,
            addr: change.addr,
        }
    } else {
        Op::Subscribe {
            auction_id: change.auction_id,
            addr: change.addr,
            ttl_secs: change.ttl_secs,
        }
    };
    match s
        .door
        .write(Command::new(s.now_ms(), op).with_caller(change.caller))
        .await
    {
        Ok(BookResponse::Rejected(r)) => Err(r.code().to_string()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Handles datagrams from the UDP port: subscribe requests (token inside) get a
/// challenge, or renew an address the account holds already; confirms with the right
/// cookie commit their subscription. Runs until `requests` closes.
pub async fn run_datagram_requests(s: AppState, mut requests: mpsc::Receiver<(Inbound, SocketAddr)>) {
    while let Some((inbound, from)) = requests.recv().await {
        let result = match inbound {
            Inbound::Subscribe(frame) => on_subscribe(&s, frame, from).await,
            Inbound::Confirm(frame) => match s.proofs.confirm(from, &frame) {
                Some((caller, ttl_secs)) => {
                    let change = Change {
                        auction_id: frame.auction_id,
                        addr: from.to_string(),
                        ttl_secs,
                        caller,
                    };
                    let committed = commit(&s, change).await;
                    // Once committed the entry stays until this node has applied the
                    // subscription (a request then finds it held) or its deadline passes,
                    // so that a request in between starts no second proof.
                    if committed.is_err() {
                        s.proofs.finish(from, frame.auction_id);
                    }
                    committed
                }
                None => Err("no pending subscription with that cookie".into()),
            },
        };
        match result {
            Ok(()) => tracing::debug!(%from, "datagram request handled"),
            Err(e) => tracing::debug!(%from, error = %e, "datagram request not handled"),
        }
    }
}

async fn on_subscribe(s: &AppState, frame: SubscribeFrame, from: SocketAddr) -> Result<(), String> {
    let token_hash = hash_token(&frame.token);
    let account = s.sm.read().book.account_by_token(&token_hash).cloned();
    // An unknown token gets no answer at all: nothing to reflect off this node.
    let account = account.ok_or("unknown token")?;
    let auth = Authenticated {
        caller: Caller {
            account: account.name.clone(),
            token_hash,
        },
        account,
    };
    let change = Change {
        auction_id: frame.auction_id,
        addr: from.to_string(),
        ttl_secs: if frame.subscribe { frame.ttl_secs } else { 0 },
        caller: auth.caller.clone(),
    };
    if !frame.subscribe {
        s.proofs.finish(from, frame.auction_id);
        return commit(s, change).await;
    }
    if holds(s, frame.auction_id, &from, auth.name()) {
        s.proofs.finish(from, frame.auction_id);
        // Renew only once less than half the TTL is left: frequent renewals cost nothing.
        let left_ms =
            s.sm.read()
                .book
                .subscribers(frame.auction_id, s.now_ms())
                .iter()
                .find(|(a, _)| *a == from.to_string())
                .map_or(0, |(_, expires)| expires.saturating_sub(s.now_ms()));
        if left_ms > u64::from(frame.ttl_secs) * 500 {
            return Ok(());
        }
        return commit(s, change).await;
    }
    challenge(s, frame.auction_id, from, &auth, frame.ttl_secs)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(account: &str) -> Caller {
        Caller {
            account: account.into(),
            token_hash: [7; 32],
        }
    }

    fn confirm_of(auction_id: u64, cookie: u64) -> ProofFrame {
        ProofFrame {
            confirm: true,
            auction_id,
            cookie,
        }
    }

    #[test]
    fn a_request_during_the_commit_starts_no_second_proof() {
        let proofs = Proofs::default();
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let cookie = proofs.start(addr, 1, caller("ann"), 60).unwrap().expect("a challenge");
        assert_eq!(
            proofs.start(addr, 1, caller("ann"), 60).unwrap(),
            Some(cookie),
            "same cookie"
        );
        assert!(
            proofs.confirm(addr, &confirm_of(1, cookie ^ 1)).is_none(),
            "wrong cookie"
        );
        let (who, ttl) = proofs.confirm(addr, &confirm_of(1, cookie)).expect("the right cookie");
        assert_eq!((who.account.as_str(), ttl), ("ann", 60));
        assert!(
            proofs.confirm(addr, &confirm_of(1, cookie)).is_none(),
            "confirmed once only"
        );
        assert_eq!(
            proofs.start(addr, 1, caller("ann"), 60).unwrap(),
            None,
            "commit under way"
        );
        proofs.finish(addr, 1);
        let again = proofs.start(addr, 1, caller("ann"), 60).unwrap().expect("a new proof");
        assert_ne!(again, cookie);
    }

    #[test]
    fn one_account_may_keep_only_so_many_proofs_waiting() {
        let proofs = Proofs::default();
        for port in 0..PENDING_PER_ACCOUNT_MAX as u16 {
            let addr = SocketAddr::from(([127, 0, 0, 1], 5000 + port));
            proofs.start(addr, 1, caller("ann"), 60).unwrap();
        }
        let one_more = SocketAddr::from(([127, 0, 0, 1], 6000));
        assert!(matches!(
            proofs.start(one_more, 1, caller("ann"), 60),
            Err(ApiError::Rejected(Rejection::TooManySubscriptions { .. }))
        ));
        assert!(
            proofs.start(one_more, 1, caller("bob"), 60).is_ok(),
            "another account is not held back"
        );
    }
}
