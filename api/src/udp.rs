//! The UDP fast path: the wire format, the one task that sends, and the one that
//! receives subscribe datagrams.
//!
//! # Event datagram (node → subscriber), integers big-endian
//!
//! ```text
//! offset  size  field
//! 0       2     magic       0x47 0x56 ("GV")
//! 2       1     version     1
//! 3       1     kind        1 created, 2 opened, 3 bid_accepted, 4 extended, 5 closed,
//!                           6 cancelled, 7 reassigned, 8 sealed_bid, 9 joined,
//!                           10 round_started, 11 round_completed
//! 4       8     auction_id
//! 12      8     seq         per-auction, gapless: a gap means datagrams were missed
//! 20      8     ts_ms       command time, ms since the Unix epoch
//! 28      8     amount      bid_accepted: visible price; closed: final price (0 if none);
//!                           sealed_bid: how many bidders have bid (never an amount);
//!                           joined: participants; round_completed: the round's highest
//!                           bid (the whole reveal is over SSE and HTTP)
//! 36      8     ends_at_ms  the auction's current end (after extensions)
//! 44      1     detail      closed: outcome (1 sold, 2 reserve_not_met, 3 no_bids,
//!                           4 cancelled, 5 bought_now, 6 not_enough_bidders); extended:
//!                           extensions (max 255); round_started/completed: the round;
//!                           reassigned: 0; else 0
//! 45      1     bidder_len  N <= 128
//! 46      N     bidder      UTF-8: bid_accepted: the leader; closed: the winner; joined:
//!                           who joined; round_completed: who bid highest
//! 46+N    4     crc32       CRC-32 (IEEE) of bytes [0, 46+N)
//! ```
//! At most 178 bytes. Encoded once per event, sent to every live subscriber.
//!
//! # Subscribing over UDP, and proving the address (integers big-endian)
//!
//! A subscription reaches an address only once that address has shown it wants it:
//! the node sends a *challenge* with a random cookie, and the subscription is made when
//! the same address sends the cookie back in a *confirm*. Until then nothing else goes
//! to the address, and a challenge is never larger than what asked for it, so a forged
//! source address gains an attacker no amplification.
//!
//! ```text
//! subscribe / unsubscribe (client → node), 21 + N bytes:
//! 0 2 magic "GV" | 2 1 version 2 | 3 1 kind 0x81 subscribe, 0x82 unsubscribe
//! 4 8 auction_id | 12 4 ttl_secs (0 for unsubscribe) | 16 1 token_len N (16..=128)
//! 17 N the account's API token | 17+N 4 crc32 of bytes [0, 17+N)
//!
//! challenge (node → client, kind 0x83) and confirm (client → node, kind 0x84), 24 bytes:
//! 0 2 magic | 2 1 version 2 | 3 1 kind | 4 8 auction_id | 12 8 cookie | 20 4 crc32
//! ```
//! A subscribe datagram's source address is the subscriber. A subscription asked for
//! over HTTP is challenged the same way. Anything else arriving on the port — short,
//! long, wrong magic, version, kind or checksum — is dropped and counted.
//!
//! # Sending
//!
//! One task owns the socket and is fed by a bounded queue. It never waits on a
//! subscriber: `try_send_to` either hands the datagram to the kernel or fails at once
//! (full send buffer: counted as dropped), so a dead or slow subscriber costs the others
//! nothing. A full queue drops the newest push (counted); subscribers see a `seq` gap and
//! fetch the rest over HTTP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gavel_storage::{AuctionEvent, EventKind, Outcome};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub const MAGIC: [u8; 2] = *b"GV";
/// 2: subscribe datagrams carry a token; challenge and confirm datagrams.
pub const VERSION: u8 = 2;
pub const BIDDER_MAX_BYTES: usize = 128;
pub const EVENT_HEADER_LEN: usize = 46;
pub const EVENT_MAX_LEN: usize = EVENT_HEADER_LEN + BIDDER_MAX_BYTES + 4;
pub const KIND_SUBSCRIBE: u8 = 0x81;
pub const KIND_UNSUBSCRIBE: u8 = 0x82;
pub const KIND_CHALLENGE: u8 = 0x83;
pub const KIND_CONFIRM: u8 = 0x84;
/// Token bytes a subscribe datagram carries: at least 16, so that it is never smaller than
/// the challenge it may cause.
pub const TOKEN_MIN_BYTES: usize = 16;
pub const TOKEN_MAX_BYTES: usize = 128;
/// Bytes of a subscribe datagram before its token.
const SUBSCRIBE_HEADER_LEN: usize = 17;
/// Bytes of a challenge or confirm datagram.
pub const PROOF_LEN: usize = 24;
/// Pushes waiting for the sender task.
pub const PUSH_QUEUE_MAX: usize = 4096;
/// Largest datagram read from the socket (anything longer is invalid anyway).
const RECV_BUFFER_BYTES: usize = 2048;

/// A decoded event datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFrame {
    pub kind: u8,
    pub auction_id: u64,
    pub seq: u64,
    pub ts_ms: u64,
    pub amount: u64,
    pub ends_at_ms: u64,
    pub detail: u8,
    pub bidder: String,
}

/// Why a datagram was not accepted. Small and cheap: this is the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Length,
    Magic,
    Version,
    Kind,
    Checksum,
    Utf8,
}

pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        1 => "created",
        2 => "opened",
        3 => "bid_accepted",
        4 => "extended",
        5 => "closed",
        6 => "cancelled",
        7 => "reassigned",
        8 => "sealed_bid",
        9 => "joined",
        10 => "round_started",
        11 => "round_completed",
        _ => "unknown",
    }
}

pub fn outcome_code(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Sold { .. } => 1,
        Outcome::ReserveNotMet { .. } => 2,
        Outcome::NoBids => 3,
        Outcome::Cancelled { .. } => 4,
        Outcome::BoughtNow { .. } => 5,
        Outcome::NotEnoughBidders { .. } => 6,
    }
}

impl EventFrame {
    /// The frame for an applied event; `ends_at_ms` is the auction's current end.
    pub fn from_event(event: &AuctionEvent, ends_at_ms: u64) -> Self {
        let (kind, amount, detail, bidder) = match &event.kind {
            EventKind::Created => (1, 0, 0, String::new()),
            EventKind::Opened => (2, 0, 0, String::new()),
            EventKind::BidAccepted { price, leader, .. } => (3, *price, 0, leader.clone()),
            EventKind::Extended { extensions, .. } => (4, 0, (*extensions).min(255) as u8, String::new()),
            EventKind::Closed { outcome } => {
                let (amount, who) = match outcome {
                    Outcome::Sold { winner, price } => (*price, winner.clone()),
                    Outcome::BoughtNow { buyer, price } => (*price, buyer.clone()),
                    _ => (0, String::new()),
                };
                (5, amount, outcome_code(outcome), who)
            }
            EventKind::Cancelled { .. } => (6, 0, 4, String::new()),
            EventKind::Reassigned { .. } => (7, 0, 0, String::new()),
            EventKind::SealedBid { bid_count } => (8, *bid_count, 0, String::new()),
            EventKind::Joined { bidder, participants } => (9, u64::from(*participants), 0, bidder.clone()),
            EventKind::RoundStarted { round, .. } => (10, 0, (*round).min(255) as u8, String::new()),
            EventKind::RoundCompleted { round, bids } => {
                // The round's highest bid (the whole reveal is over SSE and HTTP).
                let (bidder, amount) = bids
                    .iter()
                    .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                    .cloned()
                    .unwrap_or_default();
                (11, amount, (*round).min(255) as u8, bidder)
            }
        };
        let ends_at_ms = match &event.kind {
            EventKind::Extended { ends_at_ms, .. } | EventKind::RoundStarted { ends_at_ms, .. } => *ends_at_ms,
            _ => ends_at_ms,
        };
        EventFrame {
            kind,
            auction_id: event.auction_id,
            seq: event.seq,
            ts_ms: event.ts_ms,
            amount,
            ends_at_ms,
            detail,
            bidder,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bidder = self.bidder.as_bytes();
        if bidder.len() > BIDDER_MAX_BYTES {
            let mut cut = BIDDER_MAX_BYTES;
            while !self.bidder.is_char_boundary(cut) {
                cut -= 1;
            }
            bidder = &bidder[..cut];
        }
        let mut out = Vec::with_capacity(EVENT_HEADER_LEN + bidder.len() + 4);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind);
        for v in [self.auction_id, self.seq, self.ts_ms, self.amount, self.ends_at_ms] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.push(self.detail);
        out.push(bidder.len() as u8);
        out.extend_from_slice(bidder);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Invalid> {
        if bytes.len() < EVENT_HEADER_LEN + 4 || bytes.len() > EVENT_MAX_LEN {
            return Err(Invalid::Length);
        }
        check_envelope(bytes)?;
        let kind = bytes[3];
        if !(1..=7).contains(&kind) {
            return Err(Invalid::Kind);
        }
        let n = bytes[45] as usize;
        if n > BIDDER_MAX_BYTES || bytes.len() != EVENT_HEADER_LEN + n + 4 {
            return Err(Invalid::Length);
        }
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let bidder = std::str::from_utf8(&bytes[EVENT_HEADER_LEN..EVENT_HEADER_LEN + n]).map_err(|_| Invalid::Utf8)?;
        Ok(EventFrame {
            kind,
            auction_id: u64_at(4),
            seq: u64_at(12),
            ts_ms: u64_at(20),
            amount: u64_at(28),
            ends_at_ms: u64_at(36),
            detail: bytes[44],
            bidder: bidder.to_string(),
        })
    }
}

/// Magic, version and the trailing crc32 over everything before it.
fn check_envelope(bytes: &[u8]) -> Result<(), Invalid> {
    if bytes[0..2] != MAGIC {
        return Err(Invalid::Magic);
    }
    if bytes[2] != VERSION {
        return Err(Invalid::Version);
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_be_bytes(crc.try_into().expect("4 bytes")) {
        return Err(Invalid::Checksum);
    }
    Ok(())
}

/// A subscribe or unsubscribe datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFrame {
    pub subscribe: bool,
    pub auction_id: u64,
    pub ttl_secs: u32,
    pub token: String,
}

impl SubscribeFrame {
    pub fn encode(&self) -> Vec<u8> {
        let token = &self.token.as_bytes()[..self.token.len().min(TOKEN_MAX_BYTES)];
        let mut out = Vec::with_capacity(SUBSCRIBE_HEADER_LEN + token.len() + 4);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(if self.subscribe {
            KIND_SUBSCRIBE
        } else {
            KIND_UNSUBSCRIBE
        });
        out.extend_from_slice(&self.auction_id.to_be_bytes());
        out.extend_from_slice(&self.ttl_secs.to_be_bytes());
        out.push(token.len() as u8);
        out.extend_from_slice(token);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Invalid> {
        if bytes.len() < SUBSCRIBE_HEADER_LEN + TOKEN_MIN_BYTES + 4 {
            return Err(Invalid::Length);
        }
        let token_len = bytes[16] as usize;
        if !(TOKEN_MIN_BYTES..=TOKEN_MAX_BYTES).contains(&token_len)
            || bytes.len() != SUBSCRIBE_HEADER_LEN + token_len + 4
        {
            return Err(Invalid::Length);
        }
        check_envelope(bytes)?;
        let subscribe = match bytes[3] {
            KIND_SUBSCRIBE => true,
            KIND_UNSUBSCRIBE => false,
            _ => return Err(Invalid::Kind),
        };
        let token = std::str::from_utf8(&bytes[SUBSCRIBE_HEADER_LEN..SUBSCRIBE_HEADER_LEN + token_len])
            .map_err(|_| Invalid::Utf8)?
            .to_string();
        Ok(SubscribeFrame {
            subscribe,
            auction_id: u64::from_be_bytes(bytes[4..12].try_into().expect("8 bytes")),
            ttl_secs: u32::from_be_bytes(bytes[12..16].try_into().expect("4 bytes")),
            token,
        })
    }
}

/// A challenge (node → client) or its confirm (client → node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofFrame {
    /// `false`: a challenge; `true`: a confirm.
    pub confirm: bool,
    pub auction_id: u64,
    pub cookie: u64,
}

impl ProofFrame {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PROOF_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(if self.confirm { KIND_CONFIRM } else { KIND_CHALLENGE });
        out.extend_from_slice(&self.auction_id.to_be_bytes());
        out.extend_from_slice(&self.cookie.to_be_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Invalid> {
        if bytes.len() != PROOF_LEN {
            return Err(Invalid::Length);
        }
        check_envelope(bytes)?;
        let confirm = match bytes[3] {
            KIND_CHALLENGE => false,
            KIND_CONFIRM => true,
            _ => return Err(Invalid::Kind),
        };
        Ok(ProofFrame {
            confirm,
            auction_id: u64::from_be_bytes(bytes[4..12].try_into().expect("8 bytes")),
            cookie: u64::from_be_bytes(bytes[12..20].try_into().expect("8 bytes")),
        })
    }
}

/// What a client may send to a node's UDP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Subscribe(SubscribeFrame),
    Confirm(ProofFrame),
}

impl Inbound {
    pub fn decode(bytes: &[u8]) -> Result<Self, Invalid> {
        if bytes.len() == PROOF_LEN {
            match ProofFrame::decode(bytes)? {
                frame @ ProofFrame { confirm: true, .. } => return Ok(Inbound::Confirm(frame)),
                ProofFrame { confirm: false, .. } => return Err(Invalid::Kind),
            }
        }
        SubscribeFrame::decode(bytes).map(Inbound::Subscribe)
    }
}

/// UDP counters for `/metrics`.
#[derive(Debug, Default)]
pub struct UdpCounters {
    pub sent: AtomicU64,
    /// Kernel send buffer full: not sent.
    pub send_dropped: AtomicU64,
    /// Push queue full: the whole push was dropped.
    pub queue_dropped: AtomicU64,
    /// The kernel refused (e.g. ICMP unreachable from a dead subscriber).
    pub send_failed: AtomicU64,
    pub inbound_valid: AtomicU64,
    pub inbound_invalid: AtomicU64,
}

/// One datagram for many targets.
pub struct Push {
    pub frame: Arc<[u8]>,
    pub targets: Vec<SocketAddr>,
}

/// The handle the rest of the node uses to send.
#[derive(Clone)]
pub struct UdpSender {
    queue: mpsc::Sender<Push>,
    pub counters: Arc<UdpCounters>,
}

impl UdpSender {
    /// Pushes waiting for the sender task now.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Queues a push; never waits. A full queue drops it (counted).
    pub fn push(&self, push: Push) {
        if self.queue.try_send(push).is_err() {
            self.counters.queue_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the sender task on `socket`; it ends when every `UdpSender` is dropped.
pub fn start_sender(socket: Arc<UdpSocket>, counters: Arc<UdpCounters>) -> UdpSender {
    let (queue, mut rx) = mpsc::channel::<Push>(PUSH_QUEUE_MAX);
    let task_counters = counters.clone();
    tokio::spawn(async move {
        while let Some(push) = rx.recv().await {
            for target in &push.targets {
                match socket.try_send_to(&push.frame, *target) {
                    Ok(_) => task_counters.sent.fetch_add(1, Ordering::Relaxed),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        task_counters.send_dropped.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => task_counters.send_failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    });
    UdpSender { queue, counters }
}

/// Receives datagrams on `socket`: valid subscribe and confirm frames go to `requests`
/// (with the source address), everything else is counted and dropped. Ends when
/// `requests` closes.
pub async fn receive(
    socket: Arc<UdpSocket>,
    counters: Arc<UdpCounters>,
    requests: mpsc::Sender<(Inbound, SocketAddr)>,
) {
    let mut buf = vec![0u8; RECV_BUFFER_BYTES];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP errors from earlier sends surface here on some systems; keep going.
            Err(_) => continue,
        };
        match Inbound::decode(&buf[..n]) {
            Ok(frame) => {
                counters.inbound_valid.fetch_add(1, Ordering::Relaxed);
                if requests.is_closed() {
                    return;
                }
                // A full queue drops the request; the client renews anyway.
                let _ = requests.try_send((frame, from));
            }
            Err(reason) => {
                counters.inbound_invalid.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, ?reason, bytes = n, "dropped an invalid datagram");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> EventFrame {
        EventFrame {
            kind: 3,
            auction_id: 7,
            seq: 42,
            ts_ms: 1_800_000_000_000,
            amount: 1500,
            ends_at_ms: 1_800_000_060_000,
            detail: 0,
            bidder: "ann".into(),
        }
    }

    #[test]
    fn event_frames_round_trip_and_stay_small() {
        let f = frame();
        let bytes = f.encode();
        assert_eq!(bytes.len(), EVENT_HEADER_LEN + 3 + 4);
        assert_eq!(EventFrame::decode(&bytes), Ok(f));
        let long = EventFrame {
            bidder: "é".repeat(100),
            ..frame()
        };
        let bytes = long.encode();
        assert!(bytes.len() <= EVENT_MAX_LEN && bytes.len() < 512);
        assert!(EventFrame::decode(&bytes).unwrap().bidder.len() <= BIDDER_MAX_BYTES);
    }

    #[test]
    fn every_corruption_of_a_frame_is_rejected() {
        let bytes = frame().encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert!(EventFrame::decode(&bad).is_err(), "flip at {i}");
        }
        for cut in 0..bytes.len() {
            assert!(EventFrame::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let sub = SubscribeFrame {
            subscribe: true,
            auction_id: 9,
            ttl_secs: 60,
            token: "gvl_0123456789abcdefghij".into(),
        }
        .encode();
        assert_eq!(
            SubscribeFrame::decode(&sub),
            Ok(SubscribeFrame {
                subscribe: true,
                auction_id: 9,
                ttl_secs: 60,
                token: "gvl_0123456789abcdefghij".into(),
            })
        );
        for i in 0..sub.len() {
            let mut bad = sub.clone();
            bad[i] ^= 0x01;
            assert!(SubscribeFrame::decode(&bad).is_err(), "flip at {i}");
        }
        let challenge = ProofFrame {
            confirm: false,
            auction_id: 9,
            cookie: 42,
        }
        .encode();
        assert!(
            challenge.len() <= sub.len(),
            "a challenge is never larger than a subscribe"
        );
        assert_eq!(
            Inbound::decode(&challenge),
            Err(Invalid::Kind),
            "a node takes no challenges"
        );
        let confirm = ProofFrame {
            confirm: true,
            auction_id: 9,
            cookie: 42,
        };
        assert_eq!(Inbound::decode(&confirm.encode()), Ok(Inbound::Confirm(confirm)));
        assert_eq!(SubscribeFrame::decode(&bytes), Err(Invalid::Length));
    }

    proptest::proptest! {
        /// Random datagrams, and valid frames with bytes replaced (crc fixed up so the
        /// decoder's own checks are reached): an error or a frame, never a panic. Longer:
        /// `PROPTEST_CASES=200000 cargo test --release -p gavel-api udp`.
        #[test]
        fn random_datagrams_never_panic_a_decoder(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = EventFrame::decode(&bytes);
            let _ = SubscribeFrame::decode(&bytes);
            let _ = Inbound::decode(&bytes);
        }

        #[test]
        fn mutated_frames_with_valid_checksums_never_panic(
            flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 1..8)
        ) {
            let mut bytes = frame().encode();
            let body = bytes.len() - 4;
            for (i, b) in flips {
                let at = i.index(body);
                bytes[at] = b;
            }
            let crc = crc32fast::hash(&bytes[..body]);
            bytes[body..].copy_from_slice(&crc.to_be_bytes());
            let _ = EventFrame::decode(&bytes);
        }
    }
}
