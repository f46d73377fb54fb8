//! The idempotency table: what makes a retried request never run twice.
//!
//! # The guarantee
//!
//! A request carrying an `Idempotency-Key` is executed at most once within
//! [`IdempotencyLimits::ttl_ms`] (24 hours of leader-stamped command time) of its first
//! execution:
//!
//! - While its key is *held*, a retry with the same request gets the first answer back
//!   (whatever it was, a rejection included) and changes nothing; the same key with a
//!   different request is `IdempotencyKeyReused`.
//! - A key is held for the whole 24 hours unless it has to go early: its client (the
//!   source address, later the account) sent more than
//!   [`IdempotencyLimits::keys_per_client`] newer keyed requests (its own oldest key goes),
//!   or the table holds [`IdempotencyLimits::keys_max`] keys (the oldest key of the client
//!   holding the most goes). One client can therefore never push out another's keys
//!   while it holds more than they do.
//! - A key that went early is recorded in the evicted-key filter, and a retry with it is
//!   answered `IdempotencyKeyExpired`: refused, never executed again.
//! - The filter is a Bloom filter per hour of command time, kept for 24 hours past that
//!   hour. Each hour records up to [`EvictedFilter::capacity_per_hour`] early evictions
//!   with a false-positive rate of at most 0.1% (a *new* key refused as expired, never an
//!   old one forgotten). Once an hour's budget is spent, a keyed request that would need
//!   an early eviction is refused with `IdempotencyCapacityExhausted` (not executed, not
//!   recorded; the client may retry later) instead of forgetting anything.
//! - After 24 hours a key is forgotten (as at Stripe): the same key is then a new request.
//!
//! # Compact memory
//!
//! Keys are stored as the first 16 bytes of their sha256 ([`KeyDigest`]), requests as a
//! 16-byte digest ([`Fingerprint`]), clients as a 64-bit id ([`ClientId`]). The first
//! answer is kept without its events (which only feed pushes; a replay pushes nothing).
//!
//! # Determinism
//!
//! The table is part of the replicated state: every decision uses command time only, and
//! every collection is ordered. Command time never decreases within the book, so each
//! client's keys, kept in arrival order, are also in time order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::{Op, Rejection, Response};
use crate::types::TimestampMs;

/// Longest accepted key, in bytes (as Stripe); longer or empty keys are `InvalidInput`.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;
/// How long a key is remembered by default, in command-time milliseconds (24 hours).
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Default bound of the whole table.
pub const IDEMPOTENCY_KEYS_MAX: u64 = 200_000;
/// Default bound per client.
pub const IDEMPOTENCY_KEYS_PER_CLIENT: u64 = 10_000;
/// Default size of one hour's evicted-key filter, in bits (1 MiB).
pub const EVICTED_FILTER_BITS_PER_HOUR: u64 = 1 << 23;
/// Bits set per key in the evicted-key filter.
const FILTER_HASHES: u64 = 10;
/// Bits per recorded key that keep the false-positive rate at or under 0.1% with
/// [`FILTER_HASHES`] hashes: m/n = k / ln 2 ≈ 14.4.
const FILTER_BITS_PER_KEY: u64 = 15;
/// One hour of command time: the filter's generation.
const HOUR_MS: u64 = 60 * 60 * 1000;

/// First 16 bytes of the sha256 of an `Idempotency-Key`.
pub type KeyDigest = [u8; 16];
/// First 16 bytes of the sha256 of a request (method, path, body) or an operation.
pub type Fingerprint = [u8; 16];
/// Who sent a keyed request, for quotas: see [`client_id`].
pub type ClientId = u64;

/// The table's bounds. Part of the replicated state: they change only through a
/// committed command, so every replica evicts the same keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyLimits {
    pub keys_max: u64,
    pub keys_per_client: u64,
    pub ttl_ms: u64,
    /// Size of each hour's evicted-key filter; a power of two, at least 2^10.
    pub filter_bits_per_hour: u64,
}

impl Default for IdempotencyLimits {
    fn default() -> Self {
        IdempotencyLimits {
            keys_max: IDEMPOTENCY_KEYS_MAX,
            keys_per_client: IDEMPOTENCY_KEYS_PER_CLIENT,
            ttl_ms: IDEMPOTENCY_TTL_MS,
            filter_bits_per_hour: EVICTED_FILTER_BITS_PER_HOUR,
        }
    }
}

impl IdempotencyLimits {
    /// Checks the limits; the message names what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.keys_max == 0 || self.keys_per_client == 0 {
            return Err("idempotency keys_max and keys_per_client must be at least 1".into());
        }
        if self.keys_per_client > self.keys_max {
            return Err("idempotency keys_per_client must not exceed keys_max".into());
        }
        if self.ttl_ms == 0 {
            return Err("idempotency ttl must be > 0".into());
        }
        if !self.filter_bits_per_hour.is_power_of_two() || !(1 << 10..=1 << 32).contains(&self.filter_bits_per_hour) {
            return Err("idempotency filter_bits_per_hour must be a power of two from 2^10 to 2^32".into());
        }
        Ok(())
    }
}

/// What a keyed command carries: who sent it, under which key, and what the request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    pub key: KeyDigest,
    pub request: Fingerprint,
    pub client: ClientId,
}

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

fn digest16(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The digest under which a key is stored.
pub fn key_digest(key: &str) -> KeyDigest {
    digest16(&[b"key\0", key.as_bytes()])
}

/// The id of a client named `who` (`ip:<address>` today, `account:<name>` once accounts
/// exist): the first 8 bytes of a sha256.
pub fn client_id(who: &str) -> ClientId {
    let d = digest16(&[b"client\0", who.as_bytes()]);
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Digest of a client's request as it arrived (method, path, body): what the API puts in
/// [`Idempotency::request`] so that a retry is recognised even though the operation built
/// from it carries values the leader derives (its clock).
pub fn request_digest(method: &str, path: &str, body: &[u8]) -> Fingerprint {
    digest16(&[method.as_bytes(), b"\0", path.as_bytes(), b"\0", body])
}

/// What the operation is, independent of when it was sent (for commands made without a
/// request, such as tests and tools).
pub fn fingerprint(op: &Op) -> Fingerprint {
    // An `Op` is made of strings, integers, options, vectors and enums, which bincode
    // always encodes; the fallback only keeps this function total.
    let bytes = bincode::serde::encode_to_vec(op, crate::bincode_config()).unwrap_or_default();
    digest16(&[&bytes])
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) client: ClientId,
    /// Effective time of the command that stored this entry.
    pub(crate) ts_ms: TimestampMs,
    /// The first answer, without events, bincode-encoded: a few dozen bytes where the
    /// `Response` value itself would take its largest variant's size.
    pub(crate) response: Box<[u8]>,
}

impl Entry {
    fn response(&self) -> Response {
        crate::decode_limited::<Response, { 1 << 20 }>(&self.response)
            .map(|(r, _)| r)
            // Encoded by `insert` from a `Response`: decoding cannot fail short of memory
            // corruption, and even then the answer is a refusal, never a second execution.
            .unwrap_or_else(|e| {
                Response::Rejected(Rejection::InvalidInput {
                    reason: format!("stored first answer unreadable: {e}"),
                })
            })
    }
}

/// The answer of [`IdempotencyTable::lookup`].
pub(crate) enum Lookup {
    /// Not held, and not known to have gone early: admit, apply, insert.
    Miss,
    /// Held with the same request: answer with this and change nothing.
    Replay(Response),
    /// Held with a different request.
    Reused,
    /// Went before its 24 hours (the evicted-key filter knows it).
    Expired,
}

/// One hour's Bloom filter of keys evicted early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Generation {
    /// Command time / one hour.
    hour: u64,
    /// Keys recorded.
    count: u64,
    bits: Vec<u8>,
}

/// The evicted-key filter: see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvictedFilter {
    bits_per_hour: u64,
    /// Oldest first. Allocated when the first key of its hour is recorded.
    generations: VecDeque<Generation>,
}

impl EvictedFilter {
    fn new(bits_per_hour: u64) -> Self {
        EvictedFilter {
            bits_per_hour,
            generations: VecDeque::new(),
        }
    }

    /// Keys one hour records at most, keeping false positives at or under 0.1%.
    pub fn capacity_per_hour(&self) -> u64 {
        self.bits_per_hour / FILTER_BITS_PER_KEY
    }

    fn positions(&self, key: &KeyDigest) -> impl Iterator<Item = u64> {
        let h1 = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
        let h2 = u64::from_le_bytes(key[8..].try_into().expect("8 bytes")) | 1;
        let mask = self.bits_per_hour - 1;
        (0..FILTER_HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & mask)
    }

    /// Whether every key of generation `g` is past its 24 hours at `now`: a key evicted
    /// during hour h was stored before the end of that hour.
    fn is_over(g: &Generation, now: TimestampMs, ttl_ms: u64) -> bool {
        (g.hour + 1).saturating_mul(HOUR_MS).saturating_add(ttl_ms) <= now
    }

    /// Drops generations that are over at `now`.
    fn age(&mut self, now: TimestampMs, ttl_ms: u64) {
        while self.generations.front().is_some_and(|g| Self::is_over(g, now, ttl_ms)) {
            self.generations.pop_front();
        }
    }

    /// Whether `key` was recorded in a generation not yet over at `now`.
    fn contains(&self, key: &KeyDigest, now: TimestampMs, ttl_ms: u64) -> bool {
        let positions: Vec<u64> = self.positions(key).collect();
        self.generations
            .iter()
            .filter(|g| !Self::is_over(g, now, ttl_ms))
            .any(|g| {
                positions
                    .iter()
                    .all(|&p| g.bits[(p / 8) as usize] & (1 << (p % 8)) != 0)
            })
    }

    /// Whether the hour of `now` can record one more key within its budget.
    fn has_room(&self, now: TimestampMs) -> bool {
        match self.generations.back() {
            Some(g) if g.hour == now / HOUR_MS => g.count < self.capacity_per_hour(),
            _ => true,
        }
    }

    fn insert(&mut self, key: &KeyDigest, now: TimestampMs) {
        let hour = now / HOUR_MS;
        if self.generations.back().is_none_or(|g| g.hour != hour) {
            self.generations.push_back(Generation {
                hour,
                count: 0,
                bits: vec![0; (self.bits_per_hour / 8) as usize],
            });
        }
        let positions: Vec<u64> = self.positions(key).collect();
        let g = self.generations.back_mut().expect("just ensured");
        for p in positions {
            g.bits[(p / 8) as usize] |= 1 << (p % 8);
        }
        g.count += 1;
    }

    /// Keys recorded in the generations kept.
    pub fn recorded(&self) -> u64 {
        self.generations.iter().map(|g| g.count).sum()
    }

    /// Bytes of bit arrays held.
    pub fn bytes(&self) -> u64 {
        self.generations.iter().map(|g| g.bits.len() as u64).sum()
    }
}

/// The table. `entries` holds every key; `clients` each client's keys in time order;
/// `fronts` and `sizes` index the clients by their oldest key and by their number of keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IdempotencyTable {
    limits: IdempotencyLimits,
    entries: BTreeMap<KeyDigest, Entry>,
    clients: BTreeMap<ClientId, VecDeque<(TimestampMs, KeyDigest)>>,
    fronts: BTreeSet<(TimestampMs, ClientId)>,
    sizes: BTreeSet<(u64, ClientId)>,
    evicted: EvictedFilter,
    /// Keys let go before their 24 hours, ever.
    evicted_total: u64,
}

impl Default for IdempotencyTable {
    fn default() -> Self {
        Self::with_limits(IdempotencyLimits::default())
    }
}

impl IdempotencyTable {
    pub(crate) fn with_limits(limits: IdempotencyLimits) -> Self {
        IdempotencyTable {
            limits,
            entries: BTreeMap::new(),
            clients: BTreeMap::new(),
            fronts: BTreeSet::new(),
            sizes: BTreeSet::new(),
            evicted: EvictedFilter::new(limits.filter_bits_per_hour),
            evicted_total: 0,
        }
    }

    pub(crate) fn limits(&self) -> IdempotencyLimits {
        self.limits
    }

    /// Applies new limits. Keys over a lowered bound go at the next keyed command. A new
    /// filter size takes effect once the current filter has aged out (at most 25 hours):
    /// recorded keys cannot be re-hashed into another size.
    pub(crate) fn set_limits(&mut self, limits: IdempotencyLimits) {
        self.limits = limits;
        self.resize_filter_if_empty();
    }

    fn resize_filter_if_empty(&mut self) {
        if self.evicted.generations.is_empty() && self.evicted.bits_per_hour != self.limits.filter_bits_per_hour {
            self.evicted = EvictedFilter::new(self.limits.filter_bits_per_hour);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn stats(&self) -> IdempotencyStats {
        IdempotencyStats {
            keys: self.entries.len() as u64,
            clients: self.clients.len() as u64,
            evicted_total: self.evicted_total,
            evicted_recorded: self.evicted.recorded(),
            filter_bytes: self.evicted.bytes(),
            limits: self.limits,
        }
    }

    fn is_expired(&self, entry_ts_ms: TimestampMs, now: TimestampMs) -> bool {
        now >= entry_ts_ms.saturating_add(self.limits.ttl_ms)
    }

    /// Looks `key` up at time `now`, without changing anything.
    pub(crate) fn lookup(&self, key: &KeyDigest, fingerprint: &Fingerprint, now: TimestampMs) -> Lookup {
        match self.entries.get(key) {
            Some(entry) if !self.is_expired(entry.ts_ms, now) => {
                if entry.fingerprint == *fingerprint {
                    Lookup::Replay(entry.response())
                } else {
                    Lookup::Reused
                }
            }
            Some(_) => Lookup::Miss,
            None if self.evicted.contains(key, now, self.limits.ttl_ms) => Lookup::Expired,
            None => Lookup::Miss,
        }
    }

    /// Makes room for one more key of `client` at `now`: drops keys past their 24 hours,
    /// then, over a bound, lets the right key go early into the filter. Refuses (and
    /// changes nothing but expired keys) when that early eviction has no room in the
    /// filter.
    pub(crate) fn admit(&mut self, client: ClientId, now: TimestampMs) -> Result<(), Rejection> {
        self.drop_expired(now);
        self.evicted.age(now, self.limits.ttl_ms);
        self.resize_filter_if_empty();
        // Usually one key goes at most; after the bounds were lowered, several may.
        loop {
            let own = self.clients.get(&client).map_or(0, |keys| keys.len() as u64);
            let victim = if own >= self.limits.keys_per_client {
                client
            } else if self.entries.len() as u64 >= self.limits.keys_max {
                match self.sizes.last() {
                    Some((_, c)) => *c,
                    None => return Ok(()),
                }
            } else {
                return Ok(());
            };
            if !self.evicted.has_room(now) {
                return Err(Rejection::IdempotencyCapacityExhausted);
            }
            if let Some((_, key)) = self.pop_oldest_of(victim) {
                self.evicted.insert(&key, now);
                self.evicted_total += 1;
            }
        }
    }

    /// Stores the first answer under `key` (after [`IdempotencyTable::admit`]). An expired
    /// entry under the same key is replaced.
    pub(crate) fn insert(
        &mut self,
        key: KeyDigest,
        fingerprint: Fingerprint,
        client: ClientId,
        response: Response,
        now: TimestampMs,
    ) {
        if let Some(old) = self.entries.get(&key) {
            let (old_client, old_ts) = (old.client, old.ts_ms);
            self.remove_from_client(old_client, old_ts, &key);
            self.entries.remove(&key);
        }
        let keys = self.clients.entry(client).or_default();
        let before = keys.len() as u64;
        keys.push_back((now, key));
        let front = keys.front().map(|(ts, _)| *ts).expect("just pushed");
        if before == 0 {
            self.fronts.insert((front, client));
        } else {
            self.sizes.remove(&(before, client));
        }
        self.sizes.insert((before + 1, client));
        self.entries.insert(
            key,
            Entry {
                fingerprint,
                client,
                ts_ms: now,
                response: bincode::serde::encode_to_vec(response.without_events(), crate::bincode_config())
                    .unwrap_or_default()
                    .into_boxed_slice(),
            },
        );
    }

    /// Drops every key past its 24 hours at `now`; returns how many went.
    pub(crate) fn drop_expired_counting(&mut self, now: TimestampMs) -> u64 {
        let before = self.len() as u64;
        self.drop_expired(now);
        before - self.len() as u64
    }

    /// Whether some key is past its 24 hours at `now`.
    pub(crate) fn has_expired(&self, now: TimestampMs) -> bool {
        self.fronts.first().is_some_and(|&(ts, _)| self.is_expired(ts, now))
    }

    /// Drops every key past its 24 hours at `now` (no filter: they are simply over).
    fn drop_expired(&mut self, now: TimestampMs) {
        while let Some(&(ts, client)) = self.fronts.first() {
            if !self.is_expired(ts, now) {
                break;
            }
            self.pop_oldest_of(client);
        }
    }

    /// Removes `client`'s oldest key; keeps the indexes right.
    fn pop_oldest_of(&mut self, client: ClientId) -> Option<(TimestampMs, KeyDigest)> {
        let keys = self.clients.get_mut(&client)?;
        let before = keys.len() as u64;
        let (ts, key) = keys.pop_front()?;
        let next_front = keys.front().map(|(t, _)| *t);
        self.fronts.remove(&(ts, client));
        self.sizes.remove(&(before, client));
        match next_front {
            Some(front) => {
                self.fronts.insert((front, client));
                self.sizes.insert((before - 1, client));
            }
            None => {
                self.clients.remove(&client);
            }
        }
        self.entries.remove(&key);
        Some((ts, key))
    }

    /// Removes `key` (stored at `ts`) from `client`'s list, wherever it is.
    fn remove_from_client(&mut self, client: ClientId, ts: TimestampMs, key: &KeyDigest) {
        let Some(keys) = self.clients.get_mut(&client) else {
            return;
        };
        let Some(at) = keys.iter().position(|(t, k)| *t == ts && k == key) else {
            return;
        };
        if at == 0 {
            self.pop_oldest_of(client);
            return;
        }
        let before = keys.len() as u64;
        keys.remove(at);
        self.sizes.remove(&(before, client));
        self.sizes.insert((before - 1, client));
    }

    /// Checks that the indexes agree with the entries and the bounds hold.
    pub(crate) fn check(&self) -> Result<(), String> {
        let listed: usize = self.clients.values().map(VecDeque::len).sum();
        if listed != self.entries.len() {
            return Err("idempotency client lists and entries differ in size".into());
        }
        if self.fronts.len() != self.clients.len() || self.sizes.len() != self.clients.len() {
            return Err("idempotency client indexes are out of step".into());
        }
        for (client, keys) in &self.clients {
            let Some((front, _)) = keys.front() else {
                return Err(format!("idempotency client {client} has an empty list"));
            };
            if !self.fronts.contains(&(*front, *client)) || !self.sizes.contains(&(keys.len() as u64, *client)) {
                return Err(format!("idempotency client {client} is indexed wrongly"));
            }
            if keys.iter().zip(keys.iter().skip(1)).any(|(a, b)| a.0 > b.0) {
                return Err(format!("idempotency client {client}'s keys are out of time order"));
            }
            for (ts, key) in keys {
                match self.entries.get(key) {
                    Some(e) if e.ts_ms == *ts && e.client == *client => {}
                    _ => return Err(format!("idempotency client {client} lists a key it does not hold")),
                }
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(&key_digest(key))
    }
}

/// What the table holds, for metrics and the offline tools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyStats {
    pub keys: u64,
    pub clients: u64,
    pub evicted_total: u64,
    /// Early evictions the filter still records.
    pub evicted_recorded: u64,
    pub filter_bytes: u64,
    pub limits: IdempotencyLimits,
}
