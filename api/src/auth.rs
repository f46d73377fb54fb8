//! Who is calling: `Authorization: Bearer <token>` resolved to an account, and the
//! signature headers of a signed bid.
//!
//! Tokens are `gvl_` and 43 base64url characters (32 random bytes). Only their sha256 is
//! stored. A request is authenticated against this node's applied state; the leader's
//! `apply` then checks the caller again against the state at the command's index (see
//! `gavel_storage::book::accounts`), so a token rotated a moment ago is refused even if
//! this node has not applied the rotation yet. A write is authenticated on the node the
//! client reached; the typed command it becomes names the caller, and the leader takes it
//! from a follower only over node RPC with the cluster secret.

use axum::http::header;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use gavel_storage::book::accounts::{hash_token, Account, Caller, Role, Signed, SIGNATURE_BYTES};
use gavel_storage::Rejection;

use crate::error::ApiError;
use crate::request::RawRequest;
use crate::state::AppState;

/// Prefix of every API token (recognisable in logs and secret scanners).
pub const TOKEN_PREFIX: &str = "gvl_";
pub const NONCE_HEADER: &str = "gavel-nonce";
pub const SIGNATURE_HEADER: &str = "gavel-signature";

/// A new random API token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The caller's account, resolved from its bearer token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub account: Account,
    pub caller: Caller,
}

impl Authenticated {
    pub fn name(&self) -> &str {
        &self.account.name
    }

    pub fn has(&self, role: Role) -> bool {
        self.account.has(role)
    }

    /// `given` (a bidder, buyer or seller field) must be this account's name, if given.
    pub fn own_name(&self, given: Option<String>) -> Result<String, ApiError> {
        match given {
            Some(name) if name != self.account.name => Err(ApiError::Rejected(Rejection::IdentityMismatch)),
            _ => Ok(self.account.name.clone()),
        }
    }

    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.has(role) {
            Ok(())
        } else {
            Err(ApiError::Rejected(Rejection::Forbidden {
                role: role.as_str().to_string(),
            }))
        }
    }
}

/// The bearer token of a request, if any.
pub fn bearer(req: &RawRequest) -> Option<&str> {
    req.headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Resolves the request's token to an enabled account here, or 401 `unauthenticated`.
pub fn authenticate(s: &AppState, req: &RawRequest) -> Result<Authenticated, ApiError> {
    let token = bearer(req).ok_or(ApiError::Rejected(Rejection::Unauthenticated))?;
    let token_hash = hash_token(token);
    let account =
        s.sm.read()
            .book
            .account_by_token(&token_hash)
            .cloned()
            .ok_or(ApiError::Rejected(Rejection::Unauthenticated))?;
    Ok(Authenticated {
        caller: Caller {
            account: account.name.clone(),
            token_hash,
        },
        account,
    })
}

/// Like [`authenticate`], for a write. A token this follower does not know may belong to
/// an account the leader has just committed: before refusing it, the follower catches up
/// to the leader's read index once, so a client never sees its new token refused.
pub async fn authenticate_fresh(s: &AppState, req: &RawRequest) -> Result<Authenticated, ApiError> {
    match authenticate(s, req) {
        Err(ApiError::Rejected(Rejection::Unauthenticated))
            if bearer(req).is_some_and(|t| t.starts_with(TOKEN_PREFIX)) && !s.door.is_leader() =>
        {
            s.door.read_index().await?;
            authenticate(s, req)
        }
        done => done,
    }
}

/// Like [`authenticate`], and the account must be an admin (403 `forbidden`).
pub fn authenticate_admin(s: &AppState, req: &RawRequest) -> Result<Authenticated, ApiError> {
    let auth = authenticate(s, req)?;
    auth.require(Role::Admin)?;
    Ok(auth)
}

/// The `Gavel-Nonce` and `Gavel-Signature` headers with the body they sign, if the
/// request carries them (both or neither). The signature is checked in `apply`.
pub fn signature(req: &RawRequest) -> Result<Option<Signed>, ApiError> {
    let nonce = req.header(NONCE_HEADER);
    let signature = req.header(SIGNATURE_HEADER);
    let (nonce, signature) = match (nonce, signature) {
        (None, None) => return Ok(None),
        (Some(n), Some(s)) => (n, s),
        _ => {
            return Err(ApiError::Rejected(Rejection::BadSignature {
                reason: "send both Gavel-Nonce and Gavel-Signature".into(),
            }))
        }
    };
    let bad = |reason: &str| {
        ApiError::Rejected(Rejection::BadSignature {
            reason: reason.to_string(),
        })
    };
    let nonce: u64 = nonce
        .trim()
        .parse()
        .map_err(|_| bad("Gavel-Nonce must be an unsigned integer"))?;
    let signature = STANDARD
        .decode(signature.trim())
        .map_err(|_| bad("Gavel-Signature must be base64"))?;
    if signature.len() != SIGNATURE_BYTES {
        return Err(bad("Gavel-Signature must hold a 64-byte ed25519 signature"));
    }
    Ok(Some(Signed {
        nonce,
        signature,
        body: req.body.to_vec(),
    }))
}

/// Parses a public key given as base64 (standard or URL-safe) or hex of 32 bytes.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], ApiError> {
    let text = text.trim();
    let bytes = hex::decode(text)
        .ok()
        .filter(|b| b.len() == 32)
        .or_else(|| STANDARD.decode(text).ok())
        .or_else(|| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok())
        .ok_or_else(|| ApiError::invalid("public_key: give 32 bytes as base64 or hex"))?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| ApiError::invalid("public_key: an ed25519 public key is 32 bytes"))?;
    gavel_storage::book::accounts::check_public_key(&key).map_err(ApiError::invalid)?;
    Ok(key)
}
