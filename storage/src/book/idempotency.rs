//! The idempotency table: `Idempotency-Key` → (fingerprint of the operation, first
//! response, command time).
//!
//! Stripe semantics: the first response under a key is remembered whatever it was, a
//! rejection included; a retry with the same operation gets exactly that response back;
//! the same key with a different operation is rejected. The table is part of the
//! replicated state, so it is bounded and expires by *command* time, never by a clock:
//!
//! - an entry stored at `ts` answers retries while `now < ts + ttl_ms`;
//! - on every keyed command that is not answered from the table, expired entries are
//!   evicted first, then the oldest (by `(ts, key)`, so ties break by key) until there is
//!   room for one more under `max_keys`, then the new entry is stored.
//!
//! `by_time` indexes `entries` by `(ts, key)`; both always hold the same keys.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::{Op, Response};
use crate::types::TimestampMs;

/// Most keys the table holds; beyond it the oldest are evicted.
pub const IDEMPOTENCY_KEYS_MAX: u64 = 100_000;
/// How long a key is remembered, in command-time milliseconds (24 hours).
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Longest accepted key, in bytes (as Stripe); longer or empty keys are `InvalidInput`.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;

/// First 16 bytes of the sha256 of the operation's bincode encoding.
pub type Fingerprint = [u8; 16];

/// Rejects an empty key or one longer than [`IDEMPOTENCY_KEY_MAX_BYTES`].
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("idempotency key must not be empty".into());
    }
    if key.len() > IDEMPOTENCY_KEY_MAX_BYTES {
        return Err(format!(
            "idempotency key is longer than {IDEMPOTENCY_KEY_MAX_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Digest of a client's request as it arrived (method, path, body): what an API
/// stores in [`Command::request_digest`](crate::Command) so that a retry is recognised
/// even though the operation built from it carries values the leader derives (its clock).
pub fn request_digest(method: &str, path: &str, body: &[u8]) -> Fingerprint {
    let mut hasher = Sha256::new();
    for part in [method.as_bytes(), b"\0", path.as_bytes(), b"\0", body] {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut fingerprint = [0u8; 16];
    fingerprint.copy_from_slice(&digest[..16]);
    fingerprint
}

/// What the operation under a key is, independent of when it was sent; used when a
/// command carries no request digest.
pub fn fingerprint(op: &Op) -> Fingerprint {
    // An `Op` is made of strings, integers, options, vectors and enums, which bincode
    // always encodes; the fallback only keeps this function total.
    let bytes = bincode::serde::encode_to_vec(op, crate::bincode_config()).unwrap_or_default();
    let digest = Sha256::digest(bytes);
    let mut fingerprint = [0u8; 16];
    fingerprint.copy_from_slice(&digest[..16]);
    fingerprint
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) response: Response,
    /// Effective time of the command that stored this entry.
    pub(crate) ts_ms: TimestampMs,
}

/// The answer of [`IdempotencyTable::lookup`].
pub(crate) enum Lookup<'a> {
    /// Not held (or expired): apply the command and [`IdempotencyTable::insert`].
    Miss,
    /// Held with the same operation: answer with this and change nothing.
    Replay(&'a Response),
    /// Held with a different operation.
    Reused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IdempotencyTable {
    max_keys: u64,
    ttl_ms: u64,
    entries: BTreeMap<String, Entry>,
    by_time: BTreeSet<(TimestampMs, String)>,
}

impl Default for IdempotencyTable {
    fn default() -> Self {
        Self::with_limits(IDEMPOTENCY_KEYS_MAX, IDEMPOTENCY_TTL_MS)
    }
}

impl IdempotencyTable {
    /// `max_keys` is raised to 1: a table that cannot hold the key just applied would
    /// never answer a retry.
    pub(crate) fn with_limits(max_keys: u64, ttl_ms: u64) -> Self {
        IdempotencyTable {
            max_keys: max_keys.max(1),
            ttl_ms,
            entries: BTreeMap::new(),
            by_time: BTreeSet::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_expired(&self, entry_ts_ms: TimestampMs, now: TimestampMs) -> bool {
        now >= entry_ts_ms.saturating_add(self.ttl_ms)
    }

    /// Looks `key` up at time `now`, without changing anything.
    pub(crate) fn lookup(&self, key: &str, fingerprint: &Fingerprint, now: TimestampMs) -> Lookup<'_> {
        match self.entries.get(key) {
            Some(entry) if !self.is_expired(entry.ts_ms, now) => {
                if entry.fingerprint == *fingerprint {
                    Lookup::Replay(&entry.response)
                } else {
                    Lookup::Reused
                }
            }
            _ => Lookup::Miss,
        }
    }

    /// Stores the first response under `key`, evicting expired entries, then the oldest,
    /// so that the table holds at most `max_keys` keys afterwards.
    pub(crate) fn insert(&mut self, key: &str, fingerprint: Fingerprint, response: Response, now: TimestampMs) {
        while let Some((ts_ms, _)) = self.by_time.first() {
            if !self.is_expired(*ts_ms, now) {
                break;
            }
            self.evict_oldest();
        }
        if let Some(old) = self.entries.remove(key) {
            self.by_time.remove(&(old.ts_ms, key.to_string()));
        }
        while self.entries.len() as u64 >= self.max_keys && self.evict_oldest() {}
        self.by_time.insert((now, key.to_string()));
        self.entries.insert(
            key.to_string(),
            Entry {
                fingerprint,
                response,
                ts_ms: now,
            },
        );
    }

    /// Removes the entry with the smallest `(ts, key)`; `false` if the table was empty.
    fn evict_oldest(&mut self) -> bool {
        match self.by_time.pop_first() {
            Some((_, key)) => {
                self.entries.remove(&key);
                true
            }
            None => false,
        }
    }

    /// Checks that `entries` and `by_time` agree and the bound holds.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.entries.len() != self.by_time.len() {
            return Err("idempotency index and entries differ in size".into());
        }
        if self.entries.len() as u64 > self.max_keys {
            return Err("idempotency table holds more keys than its bound".into());
        }
        for (ts_ms, key) in &self.by_time {
            match self.entries.get(key) {
                Some(entry) if entry.ts_ms == *ts_ms => {}
                _ => return Err(format!("idempotency index entry {key:?} has no matching entry")),
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }
}
