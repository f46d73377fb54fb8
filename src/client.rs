//! `gavel auction …`: a command-line client of the HTTP API. Tables for people,
//! `--json` prints the API's JSON as it came. API errors are printed as
//! `error [code]: message` and exit non-zero (1 for a 4xx refusal, 2 when the node
//! cannot be reached or fails).

use std::process::ExitCode;

use crate::terminal::{safe, safe_json};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use comfy_table::{presets, Table};
use serde_json::{json, Value};

/// Exit code for a request the API refused (4xx).
const EXIT_REFUSED: u8 = 1;

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Node to talk to (any node: writes are forwarded to the leader). `http://` is
    /// assumed when no scheme is given.
    #[arg(long, env = "GAVEL_NODE", default_value = "http://127.0.0.1:7070", global = true)]
    pub node: String,
    /// API token of the account acting (`POST /v1/accounts` shows it once).
    #[arg(long, env = "GAVEL_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// The account's signing key file (`gavel key generate`): bids are signed with it.
    #[arg(long = "key", value_name = "FILE", env = "GAVEL_KEY", global = true)]
    pub key_file: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AuctionCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuctionCommand {
    /// Create an auction of any format (English unless --format says otherwise).
    Create(Box<CreateArgs>),
    /// Join a multi-round auction as the token's account, while it is open for joining.
    Join {
        id: u64,
        /// Idempotency-Key of the request.
        #[arg(long = "idempotency-key")]
        key: Option<String>,
    },
    /// Start a multi-round auction's first round, as its seller.
    Start { id: u64 },
    /// List auctions.
    List {
        /// scheduled, open, closed or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        /// Show auctions with ids after this one (the previous page's `next_after`).
        #[arg(long)]
        after: Option<u64>,
    },
    /// Show one auction and its bids.
    Show { id: u64 },
    /// Place a bid as the token's account: a straight bid (--amount), a proxy bid
    /// (--max-amount), or both. With --key FILE the bid is signed.
    Bid {
        id: u64,
        #[arg(long)]
        amount: Option<u64>,
        #[arg(long)]
        max_amount: Option<u64>,
        /// Idempotency-Key: a retry with the same key is not a second bid.
        #[arg(long = "idempotency-key")]
        key: Option<String>,
        /// Nonce of a signed bid (default: the time in microseconds, which increases).
        #[arg(long)]
        nonce: Option<u64>,
    },
    /// Buy now, as the token's account.
    Buy {
        id: u64,
        /// Idempotency-Key of the request.
        #[arg(long = "idempotency-key")]
        key: Option<String>,
    },
    /// Cancel: the token's account as the seller (before the first bid), or as an admin.
    Cancel { id: u64 },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    title: String,
    /// In minor units (cents).
    #[arg(long)]
    starting_price: u64,
    /// english (default), sealed_first_price, sealed_second_price, dutch or
    /// multi_round_sealed.
    #[arg(long, default_value = "english", value_parser = ["english", "sealed_first_price", "sealed_second_price", "dutch", "multi_round_sealed"])]
    format: String,
    /// English: a fixed step in minor units.
    #[arg(long)]
    increment: Option<u64>,
    /// Dutch: the price falls by this much ...
    #[arg(long)]
    decrement: Option<u64>,
    /// Dutch: ... every this many seconds ...
    #[arg(long)]
    decrement_every_secs: Option<u64>,
    /// Dutch: ... down to this price.
    #[arg(long)]
    floor_price: Option<u64>,
    /// Multi-round: rounds at least, and at most.
    #[arg(long)]
    min_rounds: Option<u32>,
    #[arg(long)]
    max_rounds: Option<u32>,
    /// Multi-round: each round's deadline, in seconds.
    #[arg(long)]
    round_secs: Option<u64>,
    /// Multi-round: participants needed to start.
    #[arg(long)]
    min_bidders: Option<u32>,
    /// Multi-round: how long it takes participants.
    #[arg(long)]
    join_secs: Option<u64>,
    #[arg(long)]
    reserve_price: Option<u64>,
    #[arg(long)]
    buy_now_price: Option<u64>,
    /// RFC 3339; default now.
    #[arg(long)]
    starts_at: Option<String>,
    /// RFC 3339 (or use --duration-secs).
    #[arg(long, conflicts_with = "duration_secs")]
    ends_at: Option<String>,
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Soft close as WINDOW_SECS,EXTEND_SECS,MAX_EXTENSIONS.
    #[arg(long, value_parser = parse_soft_close)]
    soft_close: Option<(u32, u32, u32)>,
    /// Idempotency-Key of the request.
    #[arg(long = "idempotency-key")]
    key: Option<String>,
}

fn parse_soft_close(s: &str) -> Result<(u32, u32, u32), String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [w, e, m] = parts.as_slice() else {
        return Err("expected WINDOW_SECS,EXTEND_SECS,MAX_EXTENSIONS".into());
    };
    let n = |v: &str| v.trim().parse::<u32>().map_err(|e| format!("{v:?}: {e}"));
    Ok((n(w)?, n(e)?, n(m)?))
}

pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: Option<String>,
}

/// `node` as a base URL: `http://` unless a scheme is given, no trailing slash.
pub(crate) fn base_url(node: &str) -> String {
    let node = node.trim().trim_end_matches('/');
    if node.contains("://") {
        node.to_string()
    } else {
        format!("http://{node}")
    }
}

/// An API answer: status and JSON body.
pub(crate) struct Answer {
    pub(crate) status: reqwest::StatusCode,
    pub(crate) body: Value,
}

impl Client {
    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> Result<Answer> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.context("reading the answer")?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Answer> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value, key: Option<&str>) -> Result<Answer> {
        self.post_signed(path, body, key, None).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<Answer> {
        self.send(self.http.delete(format!("{}{path}", self.base))).await
    }

    /// POSTs `body`; with `signer` (key, nonce) the exact bytes sent are signed.
    async fn post_signed(
        &self,
        path: &str,
        body: Value,
        key: Option<&str>,
        signer: Option<(&ed25519_dalek::SigningKey, u64)>,
    ) -> Result<Answer> {
        let bytes = serde_json::to_vec(&body)?;
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some((signing_key, nonce)) = signer {
            use base64::Engine;
            use ed25519_dalek::Signer;
            let message = gavel_storage::book::accounts::signed_message("POST", path, nonce, &bytes);
            let signature = signing_key.sign(message.as_bytes());
            req = req.header("Gavel-Nonce", nonce.to_string()).header(
                "Gavel-Signature",
                base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
            );
        }
        self.send(req.body(bytes)).await
    }
}

pub fn run(args: ClientArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: ClientArgs) -> Result<ExitCode> {
    let client = Client {
        http: reqwest::Client::new(),
        base: base_url(&args.node),
        token: args.token.clone(),
    };
    let answer = match &args.command {
        AuctionCommand::Create(c) => {
            let mut body = json!({
                "title": c.title, "starting_price": c.starting_price, "format": c.format,
            });
            for (k, v) in [
                ("increment", c.increment.map(Value::from)),
                ("decrement", c.decrement.map(Value::from)),
                ("decrement_every_secs", c.decrement_every_secs.map(Value::from)),
                ("floor_price", c.floor_price.map(Value::from)),
                ("min_rounds", c.min_rounds.map(Value::from)),
                ("max_rounds", c.max_rounds.map(Value::from)),
                ("round_secs", c.round_secs.map(Value::from)),
                ("min_bidders", c.min_bidders.map(Value::from)),
                ("join_secs", c.join_secs.map(Value::from)),
                ("reserve_price", c.reserve_price.map(Value::from)),
                ("buy_now_price", c.buy_now_price.map(Value::from)),
                ("starts_at", c.starts_at.clone().map(Value::from)),
                ("ends_at", c.ends_at.clone().map(Value::from)),
                ("duration_secs", c.duration_secs.map(Value::from)),
            ] {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            if let Some((w, e, m)) = c.soft_close {
                body["soft_close"] = json!({"window_secs": w, "extend_secs": e, "max_extensions": m});
            }
            client.post("/v1/auctions", body, c.key.as_deref()).await?
        }
        AuctionCommand::List { status, limit, after } => {
            let mut query = Vec::new();
            if let Some(s) = status {
                query.push(format!("status={s}"));
            }
            if let Some(l) = limit {
                query.push(format!("limit={l}"));
            }
            if let Some(a) = after {
                query.push(format!("after={a}"));
            }
            client.get(&format!("/v1/auctions?{}", query.join("&"))).await?
        }
        AuctionCommand::Show { id } => {
            let auction = client.get(&format!("/v1/auctions/{id}")).await?;
            if auction.status.is_success() {
                let bids = client.get(&format!("/v1/auctions/{id}/bids")).await?;
                Answer {
                    status: auction.status,
                    body: json!({ "auction": auction.body, "bids": bids.body["bids"] }),
                }
            } else {
                auction
            }
        }
        AuctionCommand::Bid {
            id,
            amount,
            max_amount,
            key,
            nonce,
        } => {
            let mut body = json!({});
            if let Some(a) = amount {
                body["amount"] = json!(a);
            }
            if let Some(m) = max_amount {
                body["max_amount"] = json!(m);
            }
            let signing_key = args
                .key_file
                .as_deref()
                .map(crate::keys::read_signing_key)
                .transpose()?;
            let nonce = nonce.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or(1)
            });
            client
                .post_signed(
                    &format!("/v1/auctions/{id}/bids"),
                    body,
                    key.as_deref(),
                    signing_key.as_ref().map(|k| (k, nonce)),
                )
                .await?
        }
        AuctionCommand::Buy { id, key } => {
            client
                .post(&format!("/v1/auctions/{id}/buy"), json!({}), key.as_deref())
                .await?
        }
        AuctionCommand::Cancel { id } => {
            client
                .post(&format!("/v1/auctions/{id}/cancel"), json!({}), None)
                .await?
        }
        AuctionCommand::Join { id, key } => {
            client
                .post(&format!("/v1/auctions/{id}/join"), json!({}), key.as_deref())
                .await?
        }
        AuctionCommand::Start { id } => {
            client
                .post(&format!("/v1/auctions/{id}/start"), json!({}), None)
                .await?
        }
    };
    if let Some(code) = refused(&answer) {
        return Ok(code);
    }
    if args.json {
        println!("{}", safe_json(&answer.body));
        return Ok(ExitCode::SUCCESS);
    }
    match &args.command {
        AuctionCommand::List { .. } => {
            let mut t = table(&["id", "title", "status", "price", "leader", "min next", "ends at"]);
            for a in answer.body["auctions"].as_array().into_iter().flatten() {
                t.add_row(vec![
                    a["id"].to_string(),
                    text(&a["title"]),
                    text(&a["status"]),
                    text(&a["highest_bid"]["amount"]),
                    text(&a["highest_bid"]["bidder"]),
                    text(&a["min_next_bid"]),
                    text(&a["ends_at"]),
                ]);
            }
            println!("{t}");
            if let Some(next) = answer.body["next_after"].as_u64() {
                println!("more: --after {next}");
            }
        }
        AuctionCommand::Show { .. } => {
            println!("{}", auction_table(&answer.body["auction"]));
            print_rounds(&answer.body["auction"]);
            let mut t = table(&["bid", "bidder", "amount", "price after", "leader after", "at"]);
            for b in answer.body["bids"].as_array().into_iter().flatten() {
                t.add_row(vec![
                    b["bid_id"].to_string(),
                    text(&b["bidder"]),
                    text(&b["amount"]),
                    text(&b["price_after"]),
                    text(&b["leader_after"]),
                    text(&b["at"]),
                ]);
            }
            println!("\n{t}");
        }
        AuctionCommand::Bid { .. } if answer.body["sealed"] == json!(true) => {
            let b = &answer.body;
            let replaced = if b["replaced"] == json!(true) {
                ", replacing your earlier bid"
            } else {
                ""
            };
            println!(
                "sealed bid {} accepted{replaced}; amounts are revealed at the close",
                b["bid_id"]
            );
        }
        AuctionCommand::Bid { .. } => {
            let b = &answer.body;
            let verdict = if b["leading"] == json!(true) {
                "you lead"
            } else {
                "outbid by a proxy maximum"
            };
            println!(
                "bid {} accepted: {verdict}; price {} (leader {}), minimum next bid {}, ends at {}{}",
                b["bid_id"],
                b["price"],
                text(&b["leader"]),
                b["min_next_bid"],
                text(&b["ends_at"]),
                if b["extended"] == json!(true) {
                    " (extended)"
                } else {
                    ""
                }
            );
        }
        AuctionCommand::Create(_) | AuctionCommand::Join { .. } | AuctionCommand::Start { .. } => {
            println!("{}", auction_table(&answer.body));
            print_rounds(&answer.body);
        }
        AuctionCommand::Cancel { .. } | AuctionCommand::Buy { .. } => {
            println!("{}", auction_table(&answer.body["auction"]))
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// For an error answer: prints `error [code] (status): message` and returns the exit
/// code (1 for a 4xx refusal, 2 otherwise).
pub(crate) fn refused(answer: &Answer) -> Option<ExitCode> {
    if answer.status.is_success() {
        return None;
    }
    let code = answer.body["error"]["code"].as_str().unwrap_or("http_error");
    let message = answer.body["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| answer.body.to_string());
    let mut line = format!(
        "error [{}] ({}): {}",
        safe(code),
        answer.status.as_u16(),
        safe(&message)
    );
    if let Some(min) = answer.body["error"]["min_next_bid"].as_u64() {
        line.push_str(&format!(" — the minimum next bid is {min}"));
    }
    eprintln!("{line}");
    Some(ExitCode::from(if answer.status.is_client_error() {
        EXIT_REFUSED
    } else {
        crate::tools::EXIT_ERROR
    }))
}

/// A JSON value as table text; strings are made safe for a terminal.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => safe(s),
        other => safe(&other.to_string()),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header.iter().copied());
    t
}

/// A multi-round auction's participants, revealed rounds and totals.
fn print_rounds(a: &Value) {
    if a["format"] != json!("multi_round_sealed") {
        return;
    }
    let names: Vec<String> = a["participants"].as_array().into_iter().flatten().map(text).collect();
    println!(
        "\nround {} of {}-{}; participants: {}",
        text(&a["round"]),
        text(&a["min_rounds"]),
        text(&a["max_rounds"]),
        names.join(", ")
    );
    for (i, round) in a["rounds"].as_array().into_iter().flatten().enumerate() {
        let bids: Vec<String> = round
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| format!("{} {}", text(&b["bidder"]), text(&b["amount"])))
            .collect();
        println!("round {}: {}", i + 1, bids.join(", "));
    }
    let totals: Vec<String> = a["totals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| format!("{} {}", text(&t["bidder"]), text(&t["total"])))
        .collect();
    if !totals.is_empty() {
        println!("totals: {}", totals.join(", "));
    }
}

fn auction_table(a: &Value) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    let result = match &a["result"] {
        Value::Null => "-".to_string(),
        r => r
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{}={}", safe(k), text(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
    };
    for (k, v) in [
        ("id", text(&a["id"])),
        ("title", text(&a["title"])),
        ("format", text(&a["format"])),
        ("seller", text(&a["seller"])),
        ("status", text(&a["status"])),
        ("price", text(&a["highest_bid"]["amount"])),
        ("leader", text(&a["highest_bid"]["bidder"])),
        ("min next bid", text(&a["min_next_bid"])),
        ("reserve met", text(&a["reserve_met"])),
        ("buy now", text(&a["buy_now_price"])),
        ("starts at", text(&a["starts_at"])),
        ("ends at", text(&a["ends_at"])),
        ("extensions", text(&a["extensions"])),
        ("bids", text(&a["bid_count"])),
        ("result", result),
    ] {
        t.add_row(vec![k.to_string(), v]);
    }
    t
}
