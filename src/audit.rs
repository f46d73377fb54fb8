//! `gavel audit verify`: checks every signed bid against the bidders' public keys, in a
//! snapshot file, a stopped node's data dir (its snapshot plus the committed log), or
//! one auction through a running node's public API. A bid verifies when its signature is
//! the bidder's over the exact request (method, path, nonce, body) and the body asks for
//! what the record holds; each bidder's nonces must increase in bid order. Exit 0 when
//! every signed bid verifies, 1 when one does not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Args;
use gavel_storage::book::accounts::{check_signed_bid, verify_bid_record, Signed};
use gavel_storage::inspect::{book_from_snapshot, committed_book};
use serde_json::{json, Value};

use crate::terminal::{safe, safe_json};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// A snapshot file (or a snapshots directory: the newest file).
    #[arg(long, conflicts_with_all = ["data_dir", "node"])]
    pub snapshot: Option<PathBuf>,
    /// A stopped node's data dir: its newest snapshot plus the committed log after it.
    #[arg(long, conflicts_with = "node")]
    pub data_dir: Option<PathBuf>,
    /// A running node; needs --auction and an admin's token (signed bodies may hold
    /// proxy maxima, which only an admin sees).
    #[arg(long)]
    pub node: Option<String>,
    #[arg(long, env = "GAVEL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Only this auction.
    #[arg(long)]
    pub auction: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

/// One checked bid.
struct Checked {
    auction_id: u64,
    bid_id: u64,
    bidder: String,
    nonce: u64,
    problem: Option<String>,
}

pub fn verify(args: &AuditArgs) -> Result<ExitCode> {
    let mut checked = match (&args.snapshot, &args.data_dir, &args.node) {
        (Some(path), _, _) => offline(book_from_snapshot(path)?.0, args.auction),
        (_, Some(dir), _) => offline(committed_book(dir)?.0, args.auction),
        (_, _, Some(node)) => {
            let auction = args.auction.context("--node needs --auction ID")?;
            let token = args
                .token
                .as_deref()
                .context("--node needs an admin's --token (or GAVEL_TOKEN)")?;
            online(node, auction, token)?
        }
        _ => bail!("give --snapshot FILE, --data-dir DIR, or --node URL --auction ID"),
    };
    // Each bidder's nonces increase in bid order.
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    checked.sort_by_key(|c| c.bid_id);
    for c in &mut checked {
        let previous = last.insert(c.bidder.clone(), c.nonce);
        if c.problem.is_none() && previous.is_some_and(|p| c.nonce <= p) {
            c.problem = Some(format!(
                "nonce {} does not exceed the bidder's previous {}",
                c.nonce,
                previous.unwrap_or(0)
            ));
        }
    }
    let bad = checked.iter().filter(|c| c.problem.is_some()).count();
    if args.json {
        let rows: Vec<Value> = checked
            .iter()
            .map(|c| json!({"auction_id": c.auction_id, "bid_id": c.bid_id, "bidder": c.bidder, "nonce": c.nonce, "ok": c.problem.is_none(), "problem": c.problem}))
            .collect();
        println!(
            "{}",
            safe_json(&json!({ "signed_bids": checked.len(), "failed": bad, "bids": rows }))
        );
    } else {
        for c in checked.iter().filter(|c| c.problem.is_some()) {
            println!(
                "FAIL auction {} bid {} by {}: {}",
                c.auction_id,
                c.bid_id,
                safe(&c.bidder),
                safe(c.problem.as_deref().unwrap_or_default())
            );
        }
        println!("{} signed bids checked, {} failed", checked.len(), bad);
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::tools::EXIT_CORRUPT)
    })
}

fn offline(book: gavel_storage::AuctionBook, only: Option<u64>) -> Vec<Checked> {
    let mut out = Vec::new();
    for auction in book.auctions().filter(|a| only.is_none_or(|id| a.id == id)) {
        for record in auction.bids.iter().filter(|b| b.signed.is_some()) {
            out.push(Checked {
                auction_id: auction.id,
                bid_id: record.bid_id,
                bidder: record.bidder.clone(),
                nonce: record.signed.as_ref().map_or(0, |s| s.nonce),
                problem: verify_bid_record(&book, auction.id, record).err(),
            });
        }
    }
    out
}

fn online(node: &str, auction: u64, token: &str) -> Result<Vec<Checked>> {
    let base = crate::client::base_url(node);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let history: Value = http
            .get(format!("{base}/v1/auctions/{auction}/bids"))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?
            .error_for_status()?
            .json()
            .await?;
        let mut keys: BTreeMap<String, Option<[u8; 32]>> = BTreeMap::new();
        let mut out = Vec::new();
        for bid in history["bids"].as_array().into_iter().flatten() {
            let Some(signed) = bid["signed"].as_object() else {
                continue;
            };
            let bidder = bid["bidder"].as_str().unwrap_or_default().to_string();
            if !keys.contains_key(&bidder) {
                let v: Value = http
                    .get(format!("{base}/v1/accounts/{bidder}/key"))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let key = v["public_key"]
                    .as_str()
                    .and_then(|k| STANDARD.decode(k).ok())
                    .and_then(|b| <[u8; 32]>::try_from(b).ok());
                keys.insert(bidder.clone(), key);
            }
            let nonce = signed.get("nonce").and_then(Value::as_u64).unwrap_or(0);
            let signature = signed
                .get("signature")
                .and_then(Value::as_str)
                .and_then(|s| STANDARD.decode(s).ok())
                .unwrap_or_default();
            let body = signed
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .as_bytes()
                .to_vec();
            let max_amount = signed.get("max_amount").and_then(Value::as_u64);
            let problem = match (keys[&bidder], max_amount) {
                (None, _) => Some(format!("account {bidder:?} has no public key")),
                (_, None) => Some("the node did not show the signed body: is the token an admin's?".into()),
                (Some(key), Some(max)) => {
                    check_signed_bid(&key, auction, &bidder, max, &Signed { nonce, signature, body }).err()
                }
            };
            out.push(Checked {
                auction_id: auction,
                bid_id: bid["bid_id"].as_u64().unwrap_or(0),
                bidder,
                nonce,
                problem,
            });
        }
        Ok(out)
    })
}
