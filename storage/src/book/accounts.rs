//! Accounts: who may do what, with which key, within which budget.
//!
//! An account has a unique name, roles (`admin`, `seller`, `bidder`; any set), the hash
//! of its one current API token, optionally an ed25519 public key (then every bid it
//! places must be signed) and optionally a budget. Only token *hashes* are in the book,
//! the log and snapshots: a token is shown once, by the API that made it.
//!
//! # Who sent a command
//!
//! A client command carries a [`Caller`]: the account the API resolved from the bearer
//! token and the token's hash. `apply` checks it again, deterministically: the account
//! exists, is enabled, and the token is its current one (so a rotated token stops
//! working at the index of the rotation on every replica), the account has the role the
//! operation needs, and the names in the operation (bidder, buyer, seller) are its own.
//! A command without a caller comes from the cluster itself (clocks, workers, the first
//! admin at bootstrap, tools and tests) and is trusted; the API never proposes a client
//! operation without one.
//!
//! # Signed bids
//!
//! An account with a public key must sign its bids: the signed message is
//! `"{METHOD}\n{path}\n{nonce}\n{hex sha256 of the body}"`, the nonce strictly greater than
//! the account's last one. `apply` verifies the signature (ed25519 verification is
//! deterministic) and spends the nonce even if the bid is then refused, so a signed
//! request can never be replayed later; the bid record keeps the nonce, the signature and
//! the signed body, so `gavel audit verify` can check the history offline.
//!
//! # Budgets
//!
//! An account's exposure is the sum, over auctions not yet final that it leads, of its
//! maximum there: what it could be made to pay. A bid that would take the exposure past
//! the budget is refused (`OverBudget`); so is a buy-now whose price would.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuctionBook;
use crate::command::{Op, Rejection, Response};
use crate::types::{check_amount, check_name, Actor, AuctionId, Money, TimestampMs};

/// sha256 of an API token.
pub type TokenHash = [u8; 32];
/// An ed25519 public key.
pub type PublicKey = [u8; 32];
/// Most accounts a cluster holds.
pub const ACCOUNTS_MAX: usize = 1_000_000;
/// Bytes of an ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;
/// Largest signed body kept with a bid.
pub const SIGNED_BODY_MAX_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Admin,
    Seller,
    Bidder,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Seller, Role::Bidder];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Seller => "seller",
            Role::Bidder => "bidder",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub roles: BTreeSet<Role>,
    pub budget: Option<Money>,
    pub public_key: Option<PublicKey>,
    pub token_hash: TokenHash,
    pub disabled: bool,
    pub created_at_ms: TimestampMs,
    /// The highest nonce of a verified signature; the next must be greater.
    pub last_nonce: u64,
}

impl Account {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The account a client command is sent as, and the hash of the token presented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub account: String,
    pub token_hash: TokenHash,
}

/// A signed request: the nonce, the ed25519 signature and the exact body signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    pub nonce: u64,
    pub signature: Vec<u8>,
    pub body: Vec<u8>,
}

/// sha256 of a token, as the book stores it.
pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// The message a signed request signs.
pub fn signed_message(method: &str, path: &str, nonce: u64, body: &[u8]) -> String {
    format!("{method}\n{path}\n{nonce}\n{}", hex::encode(Sha256::digest(body)))
}

/// The path a signed bid on `auction_id` is sent to.
pub fn bid_path(auction_id: AuctionId) -> String {
    format!("/v1/auctions/{auction_id}/bids")
}

/// Whether `signature` is `key`'s ed25519 signature of `message`.
pub fn verify_signature(key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(key) else {
        return false;
    };
    let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &signature).is_ok()
}

/// Whether `key` is a usable ed25519 public key.
pub fn check_public_key(key: &PublicKey) -> Result<(), String> {
    ed25519_dalek::VerifyingKey::from_bytes(key)
        .map(|_| ())
        .map_err(|_| "public_key is not an ed25519 public key".to_string())
}

impl AuctionBook {
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.get(name)
    }

    /// The enabled account whose current token hashes to `hash`.
    pub fn account_by_token(&self, hash: &TokenHash) -> Option<&Account> {
        let name = self.accounts_by_token.get(hash)?;
        self.accounts.get(name).filter(|a| !a.disabled)
    }

    /// Whether any enabled account holds the admin role.
    pub fn has_admin(&self) -> bool {
        self.accounts.values().any(|a| !a.disabled && a.has(Role::Admin))
    }

    /// What `name` could be made to pay now: its maxima in the auctions it leads.
    pub fn exposure(&self, name: &str) -> Money {
        self.exposure.get(name).copied().unwrap_or(0)
    }

    /// Checks that `caller` may run `op` (see the module docs). `None` is the cluster.
    pub(super) fn authorize(&self, caller: Option<&Caller>, op: &Op) -> Result<(), Rejection> {
        let Some(caller) = caller else {
            return Ok(());
        };
        let account = self
            .accounts
            .get(&caller.account)
            .filter(|a| !a.disabled && a.token_hash == caller.token_hash)
            .ok_or(Rejection::Unauthenticated)?;
        let need = |role: Role| {
            if account.has(role) {
                Ok(())
            } else {
                Err(Rejection::Forbidden {
                    role: role.as_str().to_string(),
                })
            }
        };
        let own = |name: &str| {
            if name == account.name {
                Ok(())
            } else {
                Err(Rejection::IdentityMismatch)
            }
        };
        match op {
            Op::CreateAuction { spec, .. } | Op::CreateFormatAuction { spec, .. } => {
                need(Role::Seller)?;
                own(&spec.seller)
            }
            Op::PlaceBid { bidder, .. } | Op::JoinAuction { bidder, .. } => {
                need(Role::Bidder)?;
                own(bidder)
            }
            Op::BuyNow { buyer, .. } => {
                need(Role::Bidder)?;
                own(buyer)
            }
            Op::CancelAuction { by: Actor::Admin, .. } => need(Role::Admin),
            Op::CancelAuction {
                by: Actor::Seller(seller),
                ..
            }
            | Op::StartRounds { seller, .. } => own(seller),
            Op::CreateAccount { .. } | Op::DisableAccount { .. } => need(Role::Admin),
            Op::RotateToken { name, .. } if *name == account.name => Ok(()),
            Op::RotateToken { .. } => need(Role::Admin),
            Op::Subscribe { .. } | Op::Unsubscribe { .. } => Ok(()),
            // Clocks, workers, limits: only the cluster itself proposes these.
            _ => Err(Rejection::Forbidden {
                role: "node".to_string(),
            }),
        }
    }

    pub(super) fn create_account(&mut self, account: &Account, now: TimestampMs) -> Result<Response, Rejection> {
        let invalid = |reason: String| Rejection::InvalidInput { reason };
        check_name("name", &account.name).map_err(invalid)?;
        if account.roles.is_empty() {
            return Err(invalid("an account needs at least one role".into()));
        }
        if let Some(budget) = account.budget {
            check_amount("budget", budget).map_err(invalid)?;
        }
        if let Some(key) = &account.public_key {
            check_public_key(key).map_err(invalid)?;
        }
        if self.accounts.contains_key(&account.name) {
            return Err(Rejection::AccountExists);
        }
        if self.accounts_by_token.contains_key(&account.token_hash) {
            return Err(invalid("that token is already in use".into()));
        }
        if self.accounts.len() >= ACCOUNTS_MAX {
            return Err(invalid(format!("the cluster holds {ACCOUNTS_MAX} accounts already")));
        }
        let stored = Account {
            disabled: false,
            created_at_ms: now,
            last_nonce: 0,
            ..account.clone()
        };
        self.accounts_by_token.insert(stored.token_hash, stored.name.clone());
        self.accounts.insert(stored.name.clone(), stored);
        Ok(Response::AccountChanged {
            name: account.name.clone(),
        })
    }

    pub(super) fn rotate_token(&mut self, name: &str, token_hash: &TokenHash) -> Result<Response, Rejection> {
        if self.accounts_by_token.contains_key(token_hash) {
            return Err(Rejection::InvalidInput {
                reason: "that token is already in use".into(),
            });
        }
        let account = self
            .accounts
            .get_mut(name)
            .ok_or_else(|| Rejection::UnknownAccount { name: name.to_string() })?;
        if account.disabled {
            return Err(Rejection::UnknownAccount { name: name.to_string() });
        }
        self.accounts_by_token.remove(&account.token_hash);
        account.token_hash = *token_hash;
        self.accounts_by_token.insert(*token_hash, name.to_string());
        Ok(Response::AccountChanged { name: name.to_string() })
    }

    pub(super) fn disable_account(&mut self, name: &str) -> Result<Response, Rejection> {
        let account = self
            .accounts
            .get_mut(name)
            .ok_or_else(|| Rejection::UnknownAccount { name: name.to_string() })?;
        account.disabled = true;
        self.accounts_by_token.remove(&account.token_hash);
        Ok(Response::AccountChanged { name: name.to_string() })
    }

    /// For a bid by `bidder` on `auction_id`: a signature is required iff the account has
    /// a public key; a given one must verify and carry a fresh nonce. Returns the nonce to
    /// spend, if any.
    pub(super) fn check_signature(
        &self,
        bidder: &str,
        auction_id: AuctionId,
        signed: Option<&Signed>,
    ) -> Result<Option<u64>, Rejection> {
        let key = self.accounts.get(bidder).and_then(|a| a.public_key);
        let (key, signed) = match (key, signed) {
            (None, None) => return Ok(None),
            (None, Some(_)) => {
                return Err(Rejection::BadSignature {
                    reason: "this account has no public key; send the bid unsigned".into(),
                })
            }
            (Some(_), None) => {
                return Err(Rejection::BadSignature {
                    reason: "this account signs its bids: Gavel-Nonce and Gavel-Signature are required".into(),
                })
            }
            (Some(key), Some(signed)) => (key, signed),
        };
        let message = signed_message("POST", &bid_path(auction_id), signed.nonce, &signed.body);
        if signed.body.len() > SIGNED_BODY_MAX_BYTES || !verify_signature(&key, message.as_bytes(), &signed.signature) {
            return Err(Rejection::BadSignature {
                reason: "the signature does not verify with this account's public key".into(),
            });
        }
        let last = self.accounts.get(bidder).map_or(0, |a| a.last_nonce);
        if signed.nonce <= last {
            return Err(Rejection::ReplayedNonce { last_nonce: last });
        }
        Ok(Some(signed.nonce))
    }

    /// Records that `bidder` used `nonce`.
    pub(super) fn spend_nonce(&mut self, bidder: &str, nonce: u64) {
        if let Some(account) = self.accounts.get_mut(bidder) {
            account.last_nonce = account.last_nonce.max(nonce);
        }
    }

    /// Refuses a change of `name`'s exposure from its current value by `-released +
    /// added` that would pass its budget.
    pub(super) fn check_budget(&self, name: &str, released: Money, added: Money) -> Result<(), Rejection> {
        let Some(budget) = self.accounts.get(name).and_then(|a| a.budget) else {
            return Ok(());
        };
        let exposure = self.exposure(name).saturating_sub(released).saturating_add(added);
        if exposure > budget {
            return Err(Rejection::OverBudget { exposure, budget });
        }
        Ok(())
    }

    /// Moves exposure: `name` no longer risks `released`, and now risks `added`.
    pub(super) fn shift_exposure(&mut self, name: &str, released: Money, added: Money) {
        let entry = self.exposure.entry(name.to_string()).or_default();
        *entry = entry.saturating_sub(released).saturating_add(added);
        if *entry == 0 {
            self.exposure.remove(name);
        }
    }
}

/// Checks one signed bid of auction `auction_id` by `bidder` whose maximum was
/// `max_amount`: the signature verifies with `key`, and the signed body asks for that
/// maximum (or that amount, for a straight bid) and names no other bidder. The error
/// says what is wrong. Used by `gavel audit verify`.
pub fn check_signed_bid(
    key: &PublicKey,
    auction_id: AuctionId,
    bidder: &str,
    max_amount: Money,
    signed: &Signed,
) -> Result<(), String> {
    let message = signed_message("POST", &bid_path(auction_id), signed.nonce, &signed.body);
    if !verify_signature(key, message.as_bytes(), &signed.signature) {
        return Err("the signature does not verify with the bidder's public key".into());
    }
    let body: serde_json::Value =
        serde_json::from_slice(&signed.body).map_err(|e| format!("the signed body is not JSON: {e}"))?;
    let asked = body["max_amount"].as_u64().or_else(|| body["amount"].as_u64());
    if asked != Some(max_amount) {
        return Err(format!(
            "the signed body asks for {asked:?}, the record holds a maximum of {max_amount}"
        ));
    }
    if let Some(named) = body["bidder"].as_str() {
        if named != bidder {
            return Err(format!("the signed body names {named:?}, the record {bidder:?}"));
        }
    }
    Ok(())
}

/// [`check_signed_bid`] for a record of `book`, with the bidder's key from the book.
pub fn verify_bid_record(
    book: &AuctionBook,
    auction_id: AuctionId,
    record: &crate::types::BidRecord,
) -> Result<(), String> {
    let signed = record
        .signed
        .as_ref()
        .ok_or_else(|| "the bid is not signed".to_string())?;
    let key = book
        .account(&record.bidder)
        .and_then(|a| a.public_key)
        .ok_or_else(|| format!("account {:?} has no public key", record.bidder))?;
    check_signed_bid(&key, auction_id, &record.bidder, record.max_amount, signed)
}
