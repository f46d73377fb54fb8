//! Domain types of an auction: what a seller specifies, what the book keeps, what a
//! closed auction decided.
//!
//! Money is an integer count of minor units ([`Money`]); times are milliseconds since the
//! Unix epoch ([`TimestampMs`]) and inside the book always come from commands, never
//! from a clock. Every collection is ordered (`BTreeMap`/`Vec`) so that serialising the
//! book gives the same bytes on every replica.

use serde::{Deserialize, Serialize};

/// Integer minor units (cents). Never a float.
pub type Money = u64;
/// Milliseconds since the Unix epoch, stamped by the Raft leader.
pub type TimestampMs = u64;
pub type AuctionId = u64;
/// Raft node id; every node is also a worker with the same id.
pub type NodeId = u64;

/// Longest seller, bidder or buyer name, in bytes.
pub const NAME_MAX_BYTES: usize = 128;
/// Longest auction title, in bytes.
pub const TITLE_MAX_BYTES: usize = 256;
/// Most bands an [`IncrementRule::Table`] may have.
pub const INCREMENT_BANDS_MAX: usize = 64;
/// Longest an auction may run, `ends_at - starts_at`, in milliseconds (365 days). Soft
/// close never extends an auction past `starts_at` + this.
pub const AUCTION_DURATION_MAX_MS: u64 = 365 * 24 * 60 * 60 * 1000;
/// Furthest ahead an auction may start, from the time it is created (365 days).
pub const START_AHEAD_MAX_MS: u64 = 365 * 24 * 60 * 60 * 1000;
/// Largest amount of money anywhere (prices, increments, reserves, bids, maxima): 10^15
/// minor units. Sums of two amounts cannot overflow, and every amount is exact in a
/// JSON number read as an IEEE double (JavaScript).
pub const AMOUNT_MAX: Money = 1_000_000_000_000_000;
/// Soft close bounds: the window and the extension at most a day, at most 1000 extensions.
pub const SOFT_CLOSE_WINDOW_MAX_SECS: u32 = 24 * 60 * 60;
pub const SOFT_CLOSE_EXTEND_MAX_SECS: u32 = 24 * 60 * 60;
pub const SOFT_CLOSE_EXTENSIONS_MAX: u32 = 1_000;

/// Characters no name or title may hold: C0/C1 controls (NUL, ESC, newline, DEL, …),
/// which terminals and logs act on, and the Unicode bidirectional controls, which make
/// text display in another order than it is stored.
fn is_forbidden_in_text(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters a name may not hold beyond those of [`is_forbidden_in_text`]: invisible
/// ones (zero-width spaces and joiners, word joiner, byte-order mark), with which two
/// names look the same.
fn is_forbidden_in_name(c: char) -> bool {
    is_forbidden_in_text(c) || matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Checks a seller, bidder or buyer name: not empty, at most [`NAME_MAX_BYTES`], no
/// control, bidirectional or invisible characters, no surrounding whitespace.
pub fn check_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if name.len() > NAME_MAX_BYTES {
        return Err(format!("{field} is longer than {NAME_MAX_BYTES} bytes"));
    }
    if let Some(c) = name.chars().find(|c| is_forbidden_in_name(*c)) {
        return Err(format!(
            "{field} contains the control or invisible character U+{:04X}",
            u32::from(c)
        ));
    }
    if name.trim() != name {
        return Err(format!("{field} must not start or end with whitespace"));
    }
    Ok(())
}

/// Checks a title: not empty, at most [`TITLE_MAX_BYTES`], no control or bidirectional
/// characters.
pub fn check_title(title: &str) -> Result<(), String> {
    if title.trim().is_empty() {
        return Err("title must not be empty".into());
    }
    if title.len() > TITLE_MAX_BYTES {
        return Err(format!("title is longer than {TITLE_MAX_BYTES} bytes"));
    }
    if let Some(c) = title.chars().find(|c| is_forbidden_in_text(*c)) {
        return Err(format!("title contains the control character U+{:04X}", u32::from(c)));
    }
    Ok(())
}

/// Checks an amount of money against [`AMOUNT_MAX`].
pub fn check_amount(field: &str, amount: Money) -> Result<(), String> {
    if amount > AMOUNT_MAX {
        return Err(format!("{field} must be at most {AMOUNT_MAX}"));
    }
    Ok(())
}

/// How much a new bid must exceed the current price by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncrementRule {
    /// The same step at every price.
    Fixed(Money),
    /// Steps by price band: the band with the greatest `from` that is `<=` the current
    /// price applies. Bands are sorted by `from`, the first starts at 0, steps are > 0.
    Table(Vec<IncrementBand>),
}

impl IncrementRule {
    /// The step that applies at `price`. On a valid rule this is always > 0; on an
    /// unvalidated table with no band `<= price` it falls back to the first band, and to
    /// 1 for an empty table, so that it never panics.
    pub fn increment_at(&self, price: Money) -> Money {
        match self {
            IncrementRule::Fixed(step) => *step,
            IncrementRule::Table(bands) => bands
                .iter()
                .rev()
                .find(|band| band.from <= price)
                .or_else(|| bands.first())
                .map_or(1, |band| band.increment),
        }
    }

    /// Checks the rule: a fixed step > 0, or a non-empty table of at most
    /// [`INCREMENT_BANDS_MAX`] bands whose first starts at 0, whose `from`s strictly
    /// increase and whose steps are all > 0.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            IncrementRule::Fixed(0) => Err("increment must be greater than 0".into()),
            IncrementRule::Fixed(step) => check_amount("increment", *step),
            IncrementRule::Table(bands) => {
                let Some(first) = bands.first() else {
                    return Err("increment table must have at least one band".into());
                };
                if bands.len() > INCREMENT_BANDS_MAX {
                    return Err(format!("increment table has more than {INCREMENT_BANDS_MAX} bands"));
                }
                if first.from != 0 {
                    return Err("the first increment band must start at 0".into());
                }
                if bands.windows(2).any(|pair| pair[0].from >= pair[1].from) {
                    return Err("increment bands must be sorted by strictly increasing `from`".into());
                }
                if bands.iter().any(|band| band.increment == 0) {
                    return Err("every increment must be greater than 0".into());
                }
                for band in bands {
                    check_amount("increment.from", band.from)?;
                    check_amount("increment.increment", band.increment)?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementBand {
    pub from: Money,
    pub increment: Money,
}

/// Anti-sniping: a bid accepted within `window_secs` of the end moves the end to
/// `bid time + extend_secs` (never earlier than it was), at most `max_extensions` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftClose {
    pub window_secs: u32,
    pub extend_secs: u32,
    pub max_extensions: u32,
}

/// What a seller asks for. Validated by [`AuctionSpec::validate`] in `apply` (and by the
/// API before proposing, so that bad input never reaches the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionSpec {
    pub seller: String,
    pub title: String,
    pub starting_price: Money,
    pub increment: IncrementRule,
    /// Hidden: only whether it is met is ever shown.
    pub reserve_price: Option<Money>,
    pub starts_at_ms: TimestampMs,
    pub ends_at_ms: TimestampMs,
    pub soft_close: Option<SoftClose>,
    pub buy_now_price: Option<Money>,
}

impl AuctionSpec {
    /// Checks everything about a spec that does not depend on the time it is applied at
    /// (the book also rejects an `ends_at` that has already passed). The error is a
    /// human-readable reason for `Rejection::InvalidInput`.
    pub fn validate(&self) -> Result<(), String> {
        check_name("seller", &self.seller)?;
        check_title(&self.title)?;
        if self.starting_price == 0 {
            return Err("starting_price must be at least 1".into());
        }
        check_amount("starting_price", self.starting_price)?;
        for (field, amount) in [
            ("reserve_price", self.reserve_price),
            ("buy_now_price", self.buy_now_price),
        ] {
            if let Some(amount) = amount {
                check_amount(field, amount)?;
            }
        }
        self.increment.validate()?;
        if self.ends_at_ms <= self.starts_at_ms {
            return Err("ends_at must be after starts_at".into());
        }
        if self.ends_at_ms - self.starts_at_ms > AUCTION_DURATION_MAX_MS {
            return Err("an auction may run for at most 365 days".into());
        }
        if let Some(reserve) = self.reserve_price {
            if reserve < self.starting_price {
                return Err("reserve_price must be at least starting_price".into());
            }
        }
        if let Some(buy_now) = self.buy_now_price {
            if buy_now < self.starting_price {
                return Err("buy_now_price must be at least starting_price".into());
            }
            if self.reserve_price.is_some_and(|reserve| buy_now < reserve) {
                return Err("buy_now_price must be at least reserve_price".into());
            }
        }
        if let Some(soft_close) = self.soft_close {
            if soft_close.window_secs == 0 {
                return Err("soft_close.window_secs must be greater than 0".into());
            }
            if soft_close.extend_secs == 0 {
                return Err("soft_close.extend_secs must be greater than 0".into());
            }
            if soft_close.window_secs > SOFT_CLOSE_WINDOW_MAX_SECS {
                return Err(format!(
                    "soft_close.window_secs must be at most {SOFT_CLOSE_WINDOW_MAX_SECS}"
                ));
            }
            if soft_close.extend_secs > SOFT_CLOSE_EXTEND_MAX_SECS {
                return Err(format!(
                    "soft_close.extend_secs must be at most {SOFT_CLOSE_EXTEND_MAX_SECS}"
                ));
            }
            if soft_close.max_extensions > SOFT_CLOSE_EXTENSIONS_MAX {
                return Err(format!(
                    "soft_close.max_extensions must be at most {SOFT_CLOSE_EXTENSIONS_MAX}"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AuctionStatus {
    /// Created, `starts_at` not reached (or not yet opened by a command).
    Scheduled,
    Open,
    Closed,
    Cancelled,
}

impl AuctionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AuctionStatus::Scheduled => "scheduled",
            AuctionStatus::Open => "open",
            AuctionStatus::Closed => "closed",
            AuctionStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, AuctionStatus::Closed | AuctionStatus::Cancelled)
    }
}

/// How an auction ended. At most one per auction (invariant 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Sold {
        winner: String,
        price: Money,
    },
    ReserveNotMet {
        highest_bidder: String,
        highest_bid: Money,
    },
    NoBids,
    Cancelled {
        by: Actor,
    },
    BoughtNow {
        buyer: String,
        price: Money,
    },
    /// A multi-round auction's joining window passed with fewer than `min_bidders`.
    NotEnoughBidders {
        joined: u32,
    },
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Sold { .. } => "sold",
            Outcome::ReserveNotMet { .. } => "reserve_not_met",
            Outcome::NoBids => "no_bids",
            Outcome::Cancelled { .. } => "cancelled",
            Outcome::BoughtNow { .. } => "bought_now",
            Outcome::NotEnoughBidders { .. } => "not_enough_bidders",
        }
    }
}

/// Who asked for a cancellation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    Seller(String),
    Admin,
}

/// One accepted bid, in commit order. `max_amount` is the bidder's proxy ceiling and is
/// never shown to others while the auction runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidRecord {
    pub bid_id: u64,
    /// The auction event `seq` this bid produced.
    pub seq: u64,
    pub bidder: String,
    /// What the bidder bid in the open (for a pure proxy bid: the minimum at that time).
    pub amount: Money,
    pub max_amount: Money,
    pub ts_ms: TimestampMs,
    /// Visible price right after this bid.
    pub price_after: Money,
    /// Who led right after this bid.
    pub leader_after: String,
    /// For a signed bid: the nonce, signature and body the bidder signed.
    pub signed: Option<crate::book::accounts::Signed>,
}

/// The current leader of an English auction and the proxy ceiling the book bids up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub bidder: String,
    pub max_amount: Money,
    pub bid_id: u64,
}

/// An auction event; `seq` is per auction, gapless, starting at 1 with `Created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionEvent {
    pub auction_id: AuctionId,
    pub seq: u64,
    pub ts_ms: TimestampMs,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Created,
    Opened,
    BidAccepted {
        bid_id: u64,
        bidder: String,
        price: Money,
        leader: String,
    },
    Extended {
        ends_at_ms: TimestampMs,
        extensions: u32,
    },
    Closed {
        outcome: Outcome,
    },
    Cancelled {
        by: Actor,
    },
    Reassigned {
        worker: Option<NodeId>,
    },
    /// A sealed bid arrived (or replaced the bidder's earlier one). It carries only how
    /// many bidders have bid: no amount, no name.
    SealedBid {
        bid_count: u64,
    },
    /// A bidder joined a multi-round auction.
    Joined {
        bidder: String,
        participants: u32,
    },
    /// A round of a multi-round auction began; it completes by `ends_at_ms`.
    RoundStarted {
        round: u32,
        ends_at_ms: TimestampMs,
    },
    /// A round completed: its bids, revealed (0: no bid), in bid order.
    RoundCompleted {
        round: u32,
        bids: Vec<(String, Money)>,
    },
}

/// The state of one auction in the book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    pub id: AuctionId,
    pub spec: AuctionSpec,
    pub created_at_ms: TimestampMs,
    pub status: AuctionStatus,
    /// The visible price: 0 and meaningless while there is no leader.
    pub price: Money,
    pub leader: Option<Leader>,
    /// Current end, after soft-close extensions.
    pub ends_at_ms: TimestampMs,
    pub extensions: u32,
    /// Seq of the newest event of this auction.
    pub seq: u64,
    pub bids: Vec<BidRecord>,
    /// The worker hosting this auction's clock and pushes.
    pub worker: Option<NodeId>,
    pub outcome: Option<Outcome>,
    pub closed_at_ms: Option<TimestampMs>,
}

impl Auction {
    /// The lowest amount a new (non-leading) bidder may bid: the starting price while
    /// there is no leader, else the price plus the increment of the band containing it.
    /// `None` if that overflows, or once the auction is closed or cancelled.
    pub fn min_next_bid(&self) -> Option<Money> {
        if self.status.is_final() {
            return None;
        }
        match self.leader {
            None => Some(self.spec.starting_price),
            Some(_) => self.price.checked_add(self.spec.increment.increment_at(self.price)),
        }
    }

    /// Whether the hidden reserve is met: always with no reserve, else once there is a
    /// leader and the visible price has reached it.
    pub fn reserve_met(&self) -> bool {
        match self.spec.reserve_price {
            None => true,
            Some(reserve) => self.leader.is_some() && self.price >= reserve,
        }
    }
}

/// A node's registration as a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub node_id: NodeId,
    /// HTTP/RPC address.
    pub addr: String,
    /// UDP fast-path address.
    pub udp_addr: String,
    pub max_auctions: u32,
    pub registered_at_ms: TimestampMs,
}
