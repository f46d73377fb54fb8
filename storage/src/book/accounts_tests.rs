//! Accounts in the book: who may run what, rotation and disabling, signed bids with
//! nonces, budgets. Each attack from the identity issue is a case here, refused with its
//! code; the HTTP tests check the same through the API.

use std::collections::BTreeSet;

use ed25519_dalek::{Signer, SigningKey};

use super::accounts::{bid_path, hash_token, signed_message, Account, Caller, Role, Signed};
use super::*;
use crate::types::{Actor, AuctionSpec, IncrementRule};

const T0: TimestampMs = 10_000;

fn account(name: &str, roles: &[Role], token: &str) -> Account {
    Account {
        name: name.into(),
        roles: roles.iter().copied().collect::<BTreeSet<_>>(),
        budget: None,
        public_key: None,
        token_hash: hash_token(token),
        disabled: false,
        created_at_ms: 0,
        last_nonce: 0,
    }
}

fn spec(seller: &str) -> AuctionSpec {
    AuctionSpec {
        seller: seller.into(),
        title: "lamp".into(),
        starting_price: 100,
        increment: IncrementRule::Fixed(10),
        reserve_price: None,
        starts_at_ms: T0,
        ends_at_ms: T0 + 1_000_000,
        soft_close: None,
        buy_now_price: Some(10_000),
    }
}

fn as_(name: &str, token: &str, op: Op) -> Command {
    Command::new(T0, op).with_caller(Caller {
        account: name.into(),
        token_hash: hash_token(token),
    })
}

fn bid(auction_id: AuctionId, bidder: &str, amount: Money) -> Op {
    Op::PlaceBid {
        auction_id,
        bidder: bidder.into(),
        amount: Some(amount),
        max_amount: None,
    }
}

fn proxy(auction_id: AuctionId, bidder: &str, max: Money) -> Op {
    Op::PlaceBid {
        auction_id,
        bidder: bidder.into(),
        amount: None,
        max_amount: Some(max),
    }
}

fn code(r: &Response) -> &'static str {
    match r {
        Response::Rejected(rejection) => rejection.code(),
        _ => "ok",
    }
}

/// A book with an admin, sellers alice and sam, bidders ann and bob, and auction 1 by
/// alice.
fn book() -> AuctionBook {
    let mut book = AuctionBook::new();
    for (name, roles) in [
        ("root", &[Role::Admin][..]),
        ("alice", &[Role::Seller]),
        ("sam", &[Role::Seller, Role::Bidder]),
        ("ann", &[Role::Bidder]),
        ("bob", &[Role::Bidder]),
    ] {
        let r = book.apply(&Command::new(
            T0,
            Op::CreateAccount(account(name, roles, &format!("tok-{name}"))),
        ));
        assert_eq!(code(&r), "ok", "{name}");
    }
    let r = book.apply(&as_(
        "alice",
        "tok-alice",
        Op::CreateAuction {
            spec: spec("alice"),
            worker: None,
        },
    ));
    assert_eq!(code(&r), "ok");
    book
}

#[test]
fn every_impersonation_from_the_issue_is_refused() {
    let mut b = book();
    let hash = b.state_hash();
    let cases: Vec<(&str, Command, &str)> = vec![
        (
            "bob bids as ann",
            as_("bob", "tok-bob", bid(1, "ann", 100)),
            "identity_mismatch",
        ),
        (
            "bob raises ann's maximum",
            as_("bob", "tok-bob", proxy(1, "ann", 100_000)),
            "identity_mismatch",
        ),
        (
            "bob buys now as carol",
            as_(
                "bob",
                "tok-bob",
                Op::BuyNow {
                    auction_id: 1,
                    buyer: "carol".into(),
                },
            ),
            "identity_mismatch",
        ),
        (
            "ann creates an auction as alice",
            as_(
                "ann",
                "tok-ann",
                Op::CreateAuction {
                    spec: spec("alice"),
                    worker: None,
                },
            ),
            "forbidden",
        ),
        (
            "sam creates an auction as alice",
            as_(
                "sam",
                "tok-sam",
                Op::CreateAuction {
                    spec: spec("alice"),
                    worker: None,
                },
            ),
            "identity_mismatch",
        ),
        (
            "ann cancels alice's auction as alice",
            as_(
                "ann",
                "tok-ann",
                Op::CancelAuction {
                    auction_id: 1,
                    by: Actor::Seller("alice".into()),
                },
            ),
            "identity_mismatch",
        ),
        (
            "ann cancels as an admin",
            as_(
                "ann",
                "tok-ann",
                Op::CancelAuction {
                    auction_id: 1,
                    by: Actor::Admin,
                },
            ),
            "forbidden",
        ),
        (
            "a wrong token",
            as_("ann", "tok-bob", bid(1, "ann", 100)),
            "unauthenticated",
        ),
        (
            "an unknown account",
            as_("eve", "tok-eve", bid(1, "eve", 100)),
            "unauthenticated",
        ),
        (
            "a bidder creates an account",
            as_(
                "ann",
                "tok-ann",
                Op::CreateAccount(account("eve", &[Role::Admin], "tok-eve")),
            ),
            "forbidden",
        ),
        (
            "a client proposes a clock",
            as_("ann", "tok-ann", Op::CloseAuction { auction_id: 1 }),
            "forbidden",
        ),
    ];
    for (what, cmd, want) in cases {
        assert_eq!(code(&b.apply(&cmd)), want, "{what}");
    }
    assert_eq!(b.state_hash(), hash, "no refused command changed anything but time");
    // The seller cannot bid on her own auction under any name: the account decides.
    let r = b.apply(&as_("alice", "tok-alice", bid(1, "alice", 100)));
    assert_eq!(code(&r), "forbidden", "alice holds no bidder role");
    let mut b2 = book();
    b2.apply(&as_(
        "sam",
        "tok-sam",
        Op::CreateAuction {
            spec: spec("sam"),
            worker: None,
        },
    ));
    let r = b2.apply(&as_("sam", "tok-sam", bid(2, "sam", 100)));
    assert_eq!(code(&r), "seller_cannot_bid");
    let r = b2.apply(&as_("sam", "tok-sam", bid(2, "sam\u{200b}", 100)));
    assert_eq!(code(&r), "identity_mismatch");
}

#[test]
fn a_rotated_token_stops_working_at_once_and_a_disabled_account_for_good() {
    let mut b = book();
    assert_eq!(code(&b.apply(&as_("ann", "tok-ann", bid(1, "ann", 100)))), "ok");
    let rotate = Op::RotateToken {
        name: "ann".into(),
        token_hash: hash_token("tok-ann-2"),
    };
    assert_eq!(code(&b.apply(&as_("ann", "tok-ann", rotate))), "ok");
    assert_eq!(
        code(&b.apply(&as_("ann", "tok-ann", bid(1, "ann", 200)))),
        "unauthenticated"
    );
    assert_eq!(code(&b.apply(&as_("ann", "tok-ann-2", bid(1, "ann", 200)))), "ok");
    assert!(b.account_by_token(&hash_token("tok-ann")).is_none());
    assert_eq!(b.account_by_token(&hash_token("tok-ann-2")).unwrap().name, "ann");
    // Only an admin rotates someone else's token or disables an account.
    let steal = Op::RotateToken {
        name: "ann".into(),
        token_hash: hash_token("mine"),
    };
    assert_eq!(code(&b.apply(&as_("bob", "tok-bob", steal))), "forbidden");
    let disable = Op::DisableAccount { name: "ann".into() };
    assert_eq!(code(&b.apply(&as_("root", "tok-root", disable))), "ok");
    assert_eq!(
        code(&b.apply(&as_("ann", "tok-ann-2", bid(1, "ann", 300)))),
        "unauthenticated"
    );
    let again = Op::CreateAccount(account("ann", &[Role::Bidder], "tok-new"));
    assert_eq!(code(&b.apply(&as_("root", "tok-root", again))), "account_exists");
    b.check_invariants().unwrap();
    assert_eq!(AuctionBook::decode(&b.encode()).unwrap(), b);
}

fn with_key(b: &mut AuctionBook, name: &str) -> SigningKey {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let mut a = account(name, &[Role::Bidder], &format!("tok-{name}"));
    a.public_key = Some(key.verifying_key().to_bytes());
    assert_eq!(code(&b.apply(&Command::new(T0, Op::CreateAccount(a)))), "ok");
    key
}

fn signed_bid(key: &SigningKey, name: &str, auction_id: AuctionId, amount: Money, nonce: u64) -> Command {
    let body = format!(r#"{{"amount":{amount}}}"#).into_bytes();
    let message = signed_message("POST", &bid_path(auction_id), nonce, &body);
    let signature = key.sign(message.as_bytes()).to_bytes().to_vec();
    as_(name, &format!("tok-{name}"), bid(auction_id, name, amount)).with_signature(Signed { nonce, signature, body })
}

#[test]
fn signed_bids_verify_nonces_increase_and_replays_are_refused() {
    let mut b = book();
    let key = with_key(&mut b, "carl");
    let unsigned = as_("carl", "tok-carl", bid(1, "carl", 100));
    assert_eq!(code(&b.apply(&unsigned)), "bad_signature", "a keyed account must sign");
    let first = signed_bid(&key, "carl", 1, 100, 5);
    assert_eq!(code(&b.apply(&first)), "ok");
    assert_eq!(code(&b.apply(&first)), "replayed_nonce", "the same request again");
    assert_eq!(
        code(&b.apply(&signed_bid(&key, "carl", 1, 200, 4))),
        "replayed_nonce",
        "an older nonce"
    );
    let other = SigningKey::from_bytes(&[9u8; 32]);
    assert_eq!(code(&b.apply(&signed_bid(&other, "carl", 1, 200, 6))), "bad_signature");
    let mut tampered = signed_bid(&key, "carl", 1, 200, 7);
    if let Some(s) = tampered.signed.as_mut() {
        s.body = br#"{"amount":900}"#.to_vec();
    }
    assert_eq!(code(&b.apply(&tampered)), "bad_signature", "a changed body");
    // A verified nonce is spent even when the bid itself is refused.
    assert_eq!(code(&b.apply(&as_("bob", "tok-bob", bid(1, "bob", 200)))), "ok");
    let too_low = signed_bid(&key, "carl", 1, 1, 8);
    assert_eq!(code(&b.apply(&too_low)), "bid_too_low");
    assert_eq!(code(&b.apply(&too_low)), "replayed_nonce");
    assert_eq!(b.account("carl").unwrap().last_nonce, 8);
    let ok = signed_bid(&key, "carl", 1, 300, 9);
    assert_eq!(code(&b.apply(&ok)), "ok");
    let record = b.auction(1).unwrap().bids.last().unwrap();
    let signed = record.signed.as_ref().expect("the record keeps the signature");
    assert_eq!((signed.nonce, signed.body.as_slice()), (9, &br#"{"amount":300}"#[..]));
    b.check_invariants().unwrap();
}

#[test]
fn a_budget_caps_what_an_account_could_be_made_to_pay() {
    let mut b = book();
    let mut dora = account("dora", &[Role::Bidder], "tok-dora");
    dora.budget = Some(1_000);
    assert_eq!(code(&b.apply(&Command::new(T0, Op::CreateAccount(dora)))), "ok");
    for _ in 0..2 {
        b.apply(&as_(
            "alice",
            "tok-alice",
            Op::CreateAuction {
                spec: spec("alice"),
                worker: None,
            },
        ));
    }
    // A leading maximum counts in full.
    assert_eq!(code(&b.apply(&as_("dora", "tok-dora", proxy(1, "dora", 600)))), "ok");
    assert_eq!(b.exposure("dora"), 600);
    let r = b.apply(&as_("dora", "tok-dora", proxy(2, "dora", 500)));
    assert_eq!(
        r,
        Response::Rejected(Rejection::OverBudget {
            exposure: 1_100,
            budget: 1_000
        })
    );
    assert_eq!(code(&b.apply(&as_("dora", "tok-dora", proxy(2, "dora", 400)))), "ok");
    // Raising her own maximum counts only the difference.
    assert_eq!(
        code(&b.apply(&as_("dora", "tok-dora", proxy(1, "dora", 650)))),
        "over_budget"
    );
    assert_eq!(
        code(&b.apply(&as_("dora", "tok-dora", proxy(1, "dora", 600)))),
        "max_not_raised"
    );
    // Outbid, she risks nothing there any more.
    assert_eq!(code(&b.apply(&as_("bob", "tok-bob", proxy(1, "bob", 5_000)))), "ok");
    assert_eq!(b.exposure("dora"), 400);
    assert_eq!(code(&b.apply(&as_("dora", "tok-dora", proxy(3, "dora", 600)))), "ok");
    // A closed auction releases its leader's exposure.
    b.apply(&Command::new(T0 + 1_000_000, Op::CloseAuction { auction_id: 2 }));
    assert_eq!(b.exposure("dora"), 600);
    b.check_invariants().unwrap();
}
