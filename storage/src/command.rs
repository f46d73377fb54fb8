//! What goes through Raft ([`Command`]) and what applying it returns ([`Response`]).
//!
//! A command carries the leader's wall-clock stamp `ts_ms`; `apply` uses
//! `max(ts_ms, last_ts_ms)` so time never runs backwards across leaders. A command may
//! carry an idempotency key: a retry with the same key and the same operation returns the
//! first response and changes nothing.

use serde::{Deserialize, Serialize};

use crate::book::accounts::{Account, Caller, Signed, TokenHash};
use crate::book::formats::Format;
use crate::book::idempotency::{Idempotency, IdempotencyLimits};
use crate::types::{Actor, AuctionEvent, AuctionId, AuctionSpec, Money, NodeId, Outcome, TimestampMs};

openraft::declare_raft_types!(
    /// openraft's type configuration for Gavel: `u64` node ids, `BasicNode` addresses,
    /// commands in, responses out, snapshots as whole files in memory.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
);

/// One log entry's application payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Leader's clock when it proposed this command.
    pub ts_ms: TimestampMs,
    /// For a client request with an `Idempotency-Key`: the key's digest, the request's
    /// digest and who sent it (see `book::idempotency`). `None` for internal commands.
    pub idempotency: Option<Idempotency>,
    /// The account a client command is sent as; `None` for the cluster's own commands
    /// (see `book::accounts`).
    pub caller: Option<Caller>,
    /// A signed request's nonce, signature and body (signed bids).
    pub signed: Option<Signed>,
    pub op: Op,
}

/// What openraft logs of an entry: the operation's name and its time, never its fields
/// (they may hold a proxy maximum or a sealed amount).
impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.op.name(), self.ts_ms)
    }
}

impl Command {
    pub fn new(ts_ms: TimestampMs, op: Op) -> Self {
        Command {
            ts_ms,
            idempotency: None,
            caller: None,
            signed: None,
            op,
        }
    }

    /// Keyed by `key`, with the operation itself as the request and the default client
    /// (tests and tools; the API uses [`Command::with_idempotency`]).
    pub fn with_key(self, key: &str) -> Self {
        let tag = Idempotency {
            key: crate::book::idempotency::key_digest(key),
            request: crate::book::idempotency::fingerprint(&self.op),
            client: 0,
        };
        self.with_idempotency(tag)
    }

    pub fn with_idempotency(mut self, tag: Idempotency) -> Self {
        self.idempotency = Some(tag);
        self
    }

    pub fn with_caller(mut self, caller: Caller) -> Self {
        self.caller = Some(caller);
        self
    }

    pub fn with_signature(mut self, signed: Signed) -> Self {
        self.signed = Some(signed);
        self
    }
}

/// The operations of the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create an auction. `worker` is the leader's choice of host (it knows liveness);
    /// `None` when no worker is registered yet.
    CreateAuction {
        spec: AuctionSpec,
        worker: Option<NodeId>,
    },
    /// Open a scheduled auction once `starts_at` has passed (proposed by its clock).
    OpenAuction {
        auction_id: AuctionId,
    },
    /// A bid. `amount` is what is bid in the open, `max_amount` the proxy ceiling. At
    /// least one is given; `amount: None` means "the minimum next bid at apply time";
    /// `max_amount: None` means `max_amount == amount` (a straight bid).
    PlaceBid {
        auction_id: AuctionId,
        bidder: String,
        amount: Option<Money>,
        max_amount: Option<Money>,
    },
    BuyNow {
        auction_id: AuctionId,
        buyer: String,
    },
    /// Close an auction whose (extended) end has passed (proposed by its clock).
    CloseAuction {
        auction_id: AuctionId,
    },
    CancelAuction {
        auction_id: AuctionId,
        by: Actor,
    },
    /// Register or update a worker (idempotent).
    RegisterWorker {
        node_id: NodeId,
        addr: String,
        udp_addr: String,
        max_auctions: u32,
    },
    /// Remove a worker; its auctions are left unassigned until reassigned.
    RemoveWorker {
        node_id: NodeId,
    },
    /// Move an auction to another worker (after its worker went silent).
    AssignAuction {
        auction_id: AuctionId,
        worker: NodeId,
    },
    /// Subscribe `addr` (an `ip:port` UDP address) to an auction's events for `ttl_secs`
    /// of command time; subscribing again renews.
    Subscribe {
        auction_id: AuctionId,
        addr: String,
        ttl_secs: u32,
    },
    Unsubscribe {
        auction_id: AuctionId,
        addr: String,
    },
    /// Several client commands committed as one log entry (group commit); applied in
    /// order, each with its own time and idempotency key. Batches do not nest.
    Batch(Vec<Command>),
    /// New bounds for the idempotency table (the leader proposes its configured ones).
    SetIdempotencyLimits(IdempotencyLimits),
    /// A new account (the stored copy is enabled, stamped, with no nonce used yet).
    CreateAccount(Account),
    /// Replace an account's token: the old one stops working at this index.
    RotateToken {
        name: String,
        token_hash: TokenHash,
    },
    /// Disable an account for good; its name is never reused.
    DisableAccount {
        name: String,
    },
    /// Create an auction of another format than English (see `book::formats`).
    CreateFormatAuction {
        spec: AuctionSpec,
        format: Format,
        worker: Option<NodeId>,
    },
    /// A bidder joins a multi-round auction while it is open for joining.
    JoinAuction {
        auction_id: AuctionId,
        bidder: String,
    },
    /// The seller starts a multi-round auction's first round.
    StartRounds {
        auction_id: AuctionId,
        seller: String,
    },
    /// The leader's periodic housekeeping: archive up to `archive_max` auctions closed (or
    /// cancelled) at or before `archive_closed_before_ms`, in id order; drop idempotency
    /// keys and UDP subscriptions that expired by command time. Only the cluster proposes
    /// it. See [`crate::archive`].
    Housekeeping {
        archive_closed_before_ms: TimestampMs,
        archive_max: u32,
    },
}

impl Op {
    /// Short stable name, for logs and the offline tools.
    pub fn name(&self) -> &'static str {
        match self {
            Op::CreateAuction { .. } => "create_auction",
            Op::OpenAuction { .. } => "open_auction",
            Op::PlaceBid { .. } => "place_bid",
            Op::BuyNow { .. } => "buy_now",
            Op::CloseAuction { .. } => "close_auction",
            Op::Housekeeping { .. } => "housekeeping",
            Op::CancelAuction { .. } => "cancel_auction",
            Op::RegisterWorker { .. } => "register_worker",
            Op::RemoveWorker { .. } => "remove_worker",
            Op::AssignAuction { .. } => "assign_auction",
            Op::Subscribe { .. } => "subscribe",
            Op::Unsubscribe { .. } => "unsubscribe",
            Op::Batch(_) => "batch",
            Op::SetIdempotencyLimits(_) => "set_idempotency_limits",
            Op::CreateAccount(_) => "create_account",
            Op::RotateToken { .. } => "rotate_token",
            Op::DisableAccount { .. } => "disable_account",
            Op::CreateFormatAuction { .. } => "create_format_auction",
            Op::JoinAuction { .. } => "join_auction",
            Op::StartRounds { .. } => "start_rounds",
        }
    }
}

/// The result of applying one entry. Deterministic: equal on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Blank and membership entries.
    None,
    AuctionCreated {
        auction_id: AuctionId,
        worker: Option<NodeId>,
        /// The auction's newest event `seq` once created (1, or 2 if it opened at once).
        seq: u64,
        events: Vec<AuctionEvent>,
    },
    AuctionOpened {
        auction_id: AuctionId,
        events: Vec<AuctionEvent>,
    },
    BidAccepted(BidAccepted),
    /// Buy-now, close and cancel all end an auction.
    AuctionEnded {
        auction_id: AuctionId,
        outcome: Outcome,
        events: Vec<AuctionEvent>,
    },
    WorkerRegistered {
        node_id: NodeId,
    },
    WorkerRemoved {
        node_id: NodeId,
        orphaned: Vec<AuctionId>,
    },
    AuctionAssigned {
        auction_id: AuctionId,
        worker: NodeId,
        events: Vec<AuctionEvent>,
    },
    Subscribed {
        auction_id: AuctionId,
        addr: String,
        expires_at_ms: TimestampMs,
    },
    Unsubscribed {
        auction_id: AuctionId,
        addr: String,
    },
    /// An account was created, its token rotated, or it was disabled.
    AccountChanged {
        name: String,
    },
    Rejected(Rejection),
    /// The responses to an `Op::Batch`, in order.
    Batch(Vec<Response>),
    /// A sealed bid was taken; it says nothing of any amount.
    SealedBidAccepted {
        auction_id: AuctionId,
        bid_id: u64,
        seq: u64,
        /// It replaced the bidder's earlier bid.
        replaced: bool,
        events: Vec<AuctionEvent>,
    },
    /// A multi-round auction moved on: a bidder joined, a round started or completed.
    RoundsChanged {
        auction_id: AuctionId,
        events: Vec<AuctionEvent>,
    },
    /// What a `Housekeeping` did; `more` if auctions were left for the next one.
    Housekept {
        archived: u32,
        more: bool,
        idempotency_keys_dropped: u64,
        subscriptions_dropped: u64,
    },
}

impl Response {
    /// Events this response produced, in `seq` order (for pushes to subscribers).
    pub fn events(&self) -> &[AuctionEvent] {
        match self {
            Response::AuctionCreated { events, .. }
            | Response::AuctionOpened { events, .. }
            | Response::AuctionEnded { events, .. }
            | Response::AuctionAssigned { events, .. }
            | Response::SealedBidAccepted { events, .. }
            | Response::RoundsChanged { events, .. } => events,
            Response::BidAccepted(b) => &b.events,
            _ => &[],
        }
    }

    /// The response as the idempotency table keeps it: without events (they only feed
    /// pushes, and a replay pushes nothing).
    pub fn without_events(&self) -> Response {
        let mut r = self.clone();
        match &mut r {
            Response::AuctionCreated { events, .. }
            | Response::AuctionOpened { events, .. }
            | Response::AuctionEnded { events, .. }
            | Response::AuctionAssigned { events, .. }
            | Response::SealedBidAccepted { events, .. }
            | Response::RoundsChanged { events, .. } => events.clear(),
            Response::BidAccepted(b) => b.events.clear(),
            Response::Batch(responses) => *responses = responses.iter().map(Response::without_events).collect(),
            _ => {}
        }
        r
    }

    /// Calls `f` for every event, including those inside a batch's responses.
    pub fn for_each_event(&self, f: &mut impl FnMut(&AuctionEvent)) {
        match self {
            Response::Batch(responses) => responses.iter().for_each(|r| r.for_each_event(f)),
            other => other.events().iter().for_each(f),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidAccepted {
    pub auction_id: AuctionId,
    pub bid_id: u64,
    /// Visible price after the bid (and any proxy response).
    pub price: Money,
    /// Who leads now: the bidder, or an earlier proxy whose maximum was not beaten.
    pub leader: String,
    pub leading: bool,
    pub min_next_bid: Money,
    pub ends_at_ms: TimestampMs,
    pub reserve_met: bool,
    /// The auction's newest event `seq` after this bid.
    pub seq: u64,
    /// Whether this bid extended the auction (soft close).
    pub extended: bool,
    pub events: Vec<AuctionEvent>,
}

/// Why a command changed nothing. Stable, and mapped to HTTP in one table by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    UnknownAuction {
        auction_id: AuctionId,
    },
    /// Before `starts_at`.
    AuctionNotOpen {
        starts_at_ms: TimestampMs,
    },
    /// At or after the (extended) end, or already closed.
    AuctionClosed,
    AuctionCancelled,
    BidTooLow {
        min_next_bid: Money,
    },
    /// The current leader tried to lower or keep their maximum. The maximum itself is
    /// never part of any answer.
    MaxNotRaised,
    SellerCannotBid,
    /// Amount zero, `amount > max_amount`, neither given, or arithmetic overflow.
    InvalidAmount {
        reason: String,
    },
    InvalidInput {
        reason: String,
    },
    /// Close proposed before the end (a clock ran early).
    NotYetEnded {
        ends_at_ms: TimestampMs,
    },
    /// Seller cancellation after the first bid.
    HasBids,
    /// Someone other than the seller (or admin) tried to cancel.
    NotSeller,
    BuyNowUnavailable,
    UnknownWorker {
        node_id: NodeId,
    },
    /// The chosen worker is full.
    NoCapacity {
        node_id: NodeId,
    },
    /// Same idempotency key, different operation.
    IdempotencyKeyReused,
    /// The key was let go before its 24 hours (the evicted-key filter knows it): the
    /// request is not executed again.
    IdempotencyKeyExpired,
    /// Storing this key would need an early eviction that this hour's evicted-key filter
    /// has no budget for; the request was not executed.
    IdempotencyCapacityExhausted,
    /// No caller, an unknown or disabled account, or a token that is not the account's
    /// current one.
    Unauthenticated,
    /// The caller's account lacks the role the operation needs.
    Forbidden {
        role: String,
    },
    /// A bidder, buyer or seller name that is not the caller's own account.
    IdentityMismatch,
    AccountExists,
    UnknownAccount {
        name: String,
    },
    /// A signed request whose signature does not verify (or is missing or unexpected).
    BadSignature {
        reason: String,
    },
    /// A nonce not greater than the account's last one.
    ReplayedNonce {
        last_nonce: u64,
    },
    /// The bid would take the account's exposure past its budget.
    OverBudget {
        exposure: Money,
        budget: Money,
    },
    /// The auction has as many live UDP subscribers as it may have.
    TooManySubscribers {
        max: u32,
    },
    /// The account holds as many live UDP subscriptions as it may.
    TooManySubscriptions {
        max: u32,
    },
    /// Another account's live subscription holds this address.
    SubscriptionTaken,
    /// A multi-round auction no longer takes joins (its rounds began or its window passed).
    JoiningClosed,
    AlreadyJoined,
    /// Starting a multi-round auction needs `needed` participants.
    NotEnoughBidders {
        joined: u32,
        needed: u32,
    },
    /// Only a participant may bid in a multi-round auction.
    NotAParticipant,
    /// The multi-round auction is still open for joining.
    RoundsNotStarted,
    /// One bid per participant per round.
    AlreadyBid {
        round: u32,
    },
}

impl Rejection {
    /// The stable snake_case error code.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::UnknownAuction { .. } => "unknown_auction",
            Rejection::AuctionNotOpen { .. } => "auction_not_open",
            Rejection::AuctionClosed => "auction_closed",
            Rejection::AuctionCancelled => "auction_cancelled",
            Rejection::BidTooLow { .. } => "bid_too_low",
            Rejection::MaxNotRaised => "max_not_raised",
            Rejection::SellerCannotBid => "seller_cannot_bid",
            Rejection::InvalidAmount { .. } => "invalid_amount",
            Rejection::InvalidInput { .. } => "invalid_input",
            Rejection::NotYetEnded { .. } => "not_yet_ended",
            Rejection::JoiningClosed => "joining_closed",
            Rejection::AlreadyJoined => "already_joined",
            Rejection::NotEnoughBidders { .. } => "not_enough_bidders",
            Rejection::NotAParticipant => "not_a_participant",
            Rejection::RoundsNotStarted => "rounds_not_started",
            Rejection::AlreadyBid { .. } => "already_bid",
            Rejection::HasBids => "auction_has_bids",
            Rejection::NotSeller => "not_seller",
            Rejection::BuyNowUnavailable => "buy_now_unavailable",
            Rejection::UnknownWorker { .. } => "unknown_worker",
            Rejection::NoCapacity { .. } => "no_capacity",
            Rejection::IdempotencyKeyReused => "idempotency_key_reused",
            Rejection::IdempotencyKeyExpired => "idempotency_key_expired",
            Rejection::IdempotencyCapacityExhausted => "idempotency_capacity_exhausted",
            Rejection::Unauthenticated => "unauthenticated",
            Rejection::Forbidden { .. } => "forbidden",
            Rejection::IdentityMismatch => "identity_mismatch",
            Rejection::AccountExists => "account_exists",
            Rejection::UnknownAccount { .. } => "unknown_account",
            Rejection::BadSignature { .. } => "bad_signature",
            Rejection::ReplayedNonce { .. } => "replayed_nonce",
            Rejection::OverBudget { .. } => "over_budget",
            Rejection::TooManySubscribers { .. } => "too_many_subscribers",
            Rejection::TooManySubscriptions { .. } => "too_many_subscriptions",
            Rejection::SubscriptionTaken => "subscription_taken",
        }
    }
}
