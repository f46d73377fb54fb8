//! The systems a benchmark drives, each doing the same work for a bid:
//!
//! - **gavel**: `POST /v1/auctions/{id}/bids`; the book validates and prices the bid.
//! - **etcd**: the auction is one key holding [`BenchAuction`] as JSON. A bid is
//!   optimistic compare-and-set through etcd's gRPC API, the way its users call it (or,
//!   with `--etcd-api gateway`, its JSON gateway): the client applies the rule to its
//!   cached copy and sends one `Txn` (compare `mod_revision`, put the auction and a bid
//!   record); on a lost race the txn returns the fresh copy and the client tries again.
//!   A refusal from a cached copy is confirmed by a fresh (linearizable) read. Setting up
//!   and counting afterwards go through the gateway in both cases.
//! - **redis**: the auction is a hash; a bid is one `EVALSHA` of [`REDIS_BID_SCRIPT`],
//!   which validates, prices and appends the bid record atomically.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::agent::{Bid, Reply};
use super::rule::{BenchAuction, BidRefused, REDIS_BID_SCRIPT};

/// The auctions a run bids on, as every system is set up with them.
#[derive(Debug, Clone)]
pub struct Workload {
    pub auctions: usize,
    pub starting_price: u64,
    pub increment: u64,
    pub ends_at_ms: u64,
    pub window_secs: u32,
    pub extend_secs: u32,
    pub max_extensions: u32,
    /// Distinguishes this run's keys in etcd and Redis.
    pub run_id: String,
}

impl Workload {
    fn bench_auction(&self) -> BenchAuction {
        BenchAuction {
            starting_price: self.starting_price,
            increment: self.increment,
            price: 0,
            leader: None,
            leader_max: 0,
            ends_at_ms: self.ends_at_ms,
            extensions: 0,
            window_ms: u64::from(self.window_secs) * 1000,
            extend_ms: u64::from(self.extend_secs) * 1000,
            max_extensions: self.max_extensions,
            bids: 0,
        }
    }
}

/// Concurrent requests while setting up and checking.
const SETUP_CONCURRENCY: usize = 32;
/// Compare-and-set attempts per etcd bid before it counts as an error.
const CAS_ATTEMPTS_MAX: u32 = 100;

pub enum Target {
    Gavel {
        endpoints: Vec<String>,
        http: reqwest::Client,
        /// An admin's token: the run creates its seller and bidder accounts with it.
        admin_token: String,
        /// Prefix of the run's account names (accounts are never reused).
        accounts: String,
        /// The run's seller account's token, once made.
        seller_token: std::sync::OnceLock<String>,
        /// Bidder accounts get a public key and sign every bid.
        sign: bool,
    },
    Etcd {
        endpoints: Vec<String>,
        http: reqwest::Client,
        api: super::EtcdApi,
    },
    Redis {
        client: redis::Client,
    },
}

/// One benchmark client's connection.
pub enum Conn {
    Gavel {
        http: reqwest::Client,
        base: String,
        /// The tokens of this client's bidder accounts, by bidder name.
        tokens: HashMap<String, String>,
        /// With signing: each bidder's key and last nonce.
        keys: HashMap<String, (ed25519_dalek::SigningKey, u64)>,
        /// Prefix of the run's account names.
        accounts: String,
    },
    Etcd {
        http: reqwest::Client,
        base: String,
        /// Per auction: our copy and its mod_revision.
        cache: HashMap<usize, (BenchAuction, i64)>,
    },
    #[cfg(feature = "etcd-grpc")]
    EtcdGrpc {
        /// One gRPC channel (HTTP/2 connection) per benchmark client.
        kv: Box<etcd_client::KvClient>,
        /// Per auction: our copy and its mod_revision.
        cache: HashMap<usize, (BenchAuction, i64)>,
    },
    Redis {
        conn: redis::aio::MultiplexedConnection,
        script: redis::Script,
    },
}

/// The keys (etcd, Redis) or ids (Gavel) of a run's auctions.
pub type Auctions = Vec<String>;

fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(4)
        // Under the server's keep-alive: the setup connections idle through the run.
        .pool_idle_timeout(Duration::from_millis(gavel_raft::network::CLIENT_POOL_IDLE_MS))
        .build()?)
}

/// The key prefix of an auction's bid records in etcd.
fn etcd_bid_prefix(auction_key: &str) -> String {
    format!("{}/", auction_key.replacen("/a/", "/b/", 1))
}

impl Target {
    pub fn new(
        kind: super::System,
        endpoints: &[String],
        timeout: Duration,
        admin_token: Option<&str>,
        sign: bool,
        etcd_api: super::EtcdApi,
    ) -> Result<Self> {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| {
                let e = e.trim_end_matches('/');
                if e.contains("://") {
                    e.to_string()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        if endpoints.is_empty() {
            bail!("give at least one endpoint");
        }
        Ok(match kind {
            super::System::Gavel => Target::Gavel {
                endpoints,
                http: http_client(timeout)?,
                admin_token: admin_token
                    .context("the gavel target needs an admin's token: --token or GAVEL_TOKEN")?
                    .to_string(),
                accounts: format!("bench-{:x}", super::now_ms()),
                seller_token: std::sync::OnceLock::new(),
                sign,
            },
            super::System::Etcd => Target::Etcd {
                endpoints,
                http: http_client(timeout)?,
                api: etcd_api,
            },
            super::System::Redis => {
                let url = endpoints[0].replacen("http://", "redis://", 1);
                Target::Redis {
                    client: redis::Client::open(url.as_str())?,
                }
            }
        })
    }

    /// Creates the run's auctions; returns their ids or keys, in order.
    pub async fn prepare(&self, w: &Workload) -> Result<Auctions> {
        match self {
            Target::Gavel {
                endpoints,
                http,
                admin_token,
                accounts,
                seller_token,
                ..
            } => {
                let ends_at = gavel_api::json::rfc3339(w.ends_at_ms);
                let seller = create_account(
                    http,
                    &endpoints[0],
                    admin_token,
                    &format!("{accounts}-seller"),
                    "seller",
                    None,
                )
                .await?;
                let seller = seller_token.get_or_init(|| seller).clone();
                let seller = &seller;
                stream::iter(0..w.auctions)
                    .map(|i| {
                        let body = json!({
                            "title": format!("bench {} #{i}", w.run_id),
                            "starting_price": w.starting_price,
                            "increment": w.increment,
                            "ends_at": ends_at,
                            "soft_close": {
                                "window_secs": w.window_secs,
                                "extend_secs": w.extend_secs,
                                "max_extensions": w.max_extensions,
                            },
                        });
                        let url = format!("{}/v1/auctions", endpoints[i % endpoints.len()]);
                        async move {
                            let resp = http.post(&url).bearer_auth(seller).json(&body).send().await?;
                            let status = resp.status();
                            let v: Value = resp.json().await?;
                            if status != reqwest::StatusCode::CREATED {
                                bail!("creating an auction at {url}: {status} {v}");
                            }
                            v["id"]
                                .as_u64()
                                .map(|id| id.to_string())
                                .ok_or_else(|| anyhow!("no id in {v}"))
                        }
                    })
                    .buffered(SETUP_CONCURRENCY)
                    .try_collect()
                    .await
            }
            Target::Etcd { endpoints, http, .. } => {
                let value = serde_json::to_vec(&w.bench_auction())?;
                stream::iter(0..w.auctions)
                    .map(|i| {
                        let key = format!("gavel-bench/{}/a/{i}", w.run_id);
                        let url = format!("{}/v3/kv/put", endpoints[i % endpoints.len()]);
                        let body = json!({ "key": B64.encode(&key), "value": B64.encode(&value) });
                        async move {
                            etcd_call(http, &url, &body).await?;
                            Ok::<_, anyhow::Error>(key)
                        }
                    })
                    .buffered(SETUP_CONCURRENCY)
                    .try_collect()
                    .await
            }
            Target::Redis { client } => {
                let mut conn = client.get_multiplexed_async_connection().await?;
                let a = w.bench_auction();
                let mut keys = Vec::with_capacity(w.auctions);
                for chunk in (0..w.auctions).collect::<Vec<_>>().chunks(256) {
                    let mut pipe = redis::pipe();
                    for i in chunk {
                        let key = format!("gavel-bench:{}:a:{i}", w.run_id);
                        pipe.del(&key).ignore().del(format!("{key}:bids")).ignore();
                        pipe.hset_multiple(
                            &key,
                            &[
                                ("starting_price", a.starting_price),
                                ("increment", a.increment),
                                ("price", 0),
                                ("leader_max", 0),
                                ("ends_at_ms", a.ends_at_ms),
                                ("extensions", 0),
                                ("window_ms", a.window_ms),
                                ("extend_ms", a.extend_ms),
                                ("max_extensions", u64::from(a.max_extensions)),
                                ("bids", 0),
                            ],
                        )
                        .ignore();
                        keys.push(key);
                    }
                    pipe.query_async::<()>(&mut conn).await?;
                }
                Ok(keys)
            }
        }
    }

    /// The endpoint that leads now (Gavel: the cluster's leader, from `/v1/cluster`;
    /// etcd: the member whose id every member's status names as leader), or `None` for
    /// Redis, which has one.
    pub async fn leader_endpoint(&self) -> Result<Option<String>> {
        match self {
            Target::Gavel { endpoints, http, .. } => {
                let url = format!("{}/v1/cluster", endpoints[0]);
                let v: Value = http.get(&url).send().await?.error_for_status()?.json().await?;
                let addr = v["leader"]["addr"]
                    .as_str()
                    .ok_or_else(|| anyhow!("{url} names no leader: {v}"))?;
                Ok(Some(format!("http://{addr}")))
            }
            Target::Etcd { endpoints, http, .. } => {
                for e in endpoints {
                    let v = etcd_call(http, &format!("{e}/v3/maintenance/status"), &json!({})).await?;
                    if json_u64(&v["header"]["member_id"]) == json_u64(&v["leader"]) {
                        return Ok(Some(e.clone()));
                    }
                }
                bail!("no etcd endpoint is the leader")
            }
            Target::Redis { .. } => Ok(None),
        }
    }

    /// A connection for client `index`: to `leader` if given, else to the endpoints in
    /// turn.
    pub async fn connect(&self, index: usize, leader: Option<&str>, timeout: Duration) -> Result<Conn> {
        let pick = |endpoints: &[String]| {
            leader
                .map(str::to_string)
                .unwrap_or_else(|| endpoints[index % endpoints.len()].clone())
        };
        Ok(match self {
            Target::Gavel {
                endpoints,
                http,
                admin_token,
                accounts,
                sign,
                ..
            } => {
                // The client's bidder accounts, made before the run so that the run
                // measures bids only.
                let mut tokens = HashMap::new();
                let mut keys = HashMap::new();
                for k in 0..super::agent::BIDDERS_PER_CLIENT {
                    let bidder = super::agent::bidder_name(index, k);
                    let name = format!("{accounts}-{bidder}");
                    let key = sign.then(|| {
                        let mut seed = [0u8; 32];
                        seed[..8].copy_from_slice(&(index as u64).to_le_bytes());
                        seed[8..16].copy_from_slice(&(k as u64).to_le_bytes());
                        seed[16..24].copy_from_slice(&super::now_ms().to_le_bytes());
                        ed25519_dalek::SigningKey::from_bytes(&seed)
                    });
                    let public = key.as_ref().map(|k| B64.encode(k.verifying_key().to_bytes()));
                    let token = create_account(http, &endpoints[0], admin_token, &name, "bidder", public).await?;
                    tokens.insert(bidder.clone(), token);
                    if let Some(key) = key {
                        keys.insert(bidder, (key, 0));
                    }
                }
                Conn::Gavel {
                    http: http_client(timeout)?,
                    base: pick(endpoints),
                    tokens,
                    keys,
                    accounts: accounts.clone(),
                }
            }
            Target::Etcd {
                endpoints,
                api: super::EtcdApi::Gateway,
                ..
            } => Conn::Etcd {
                http: http_client(timeout)?,
                base: pick(endpoints),
                cache: HashMap::new(),
            },
            #[cfg(not(feature = "etcd-grpc"))]
            Target::Etcd {
                api: super::EtcdApi::Grpc,
                ..
            } => bail!(
                "this gavel-bench was built without etcd's gRPC client: build it with `cargo build \
                 --release -p gavel-bench --features etcd-grpc` (needs protoc, Debian package \
                 protobuf-compiler), or pass --etcd-api gateway"
            ),
            #[cfg(feature = "etcd-grpc")]
            Target::Etcd {
                endpoints,
                api: super::EtcdApi::Grpc,
                ..
            } => {
                let options = etcd_client::ConnectOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(timeout);
                let client = etcd_client::Client::connect([pick(endpoints)], Some(options))
                    .await
                    .context("connecting to etcd over gRPC")?;
                Conn::EtcdGrpc {
                    kv: Box::new(client.kv_client()),
                    cache: HashMap::new(),
                }
            }
            Target::Redis { client } => Conn::Redis {
                conn: client.get_multiplexed_async_connection().await?,
                script: redis::Script::new(REDIS_BID_SCRIPT),
            },
        })
    }

    /// How many bids the system holds for these auctions, read after the run.
    pub async fn stored_bids(&self, auctions: &Auctions) -> Result<u64> {
        match self {
            Target::Gavel { endpoints, http, .. } => {
                let counts: Vec<u64> = stream::iter(auctions.iter())
                    .map(|id| async move {
                        let url = format!("{}/v1/auctions/{id}?consistency=linearizable", endpoints[0]);
                        let v: Value = http.get(&url).send().await?.error_for_status()?.json().await?;
                        v["bid_count"].as_u64().ok_or_else(|| anyhow!("no bid_count in {v}"))
                    })
                    .buffered(SETUP_CONCURRENCY)
                    .try_collect()
                    .await?;
                Ok(counts.iter().sum())
            }
            Target::Etcd { endpoints, http, .. } => {
                let url = format!("{}/v3/kv/range", endpoints[0]);
                let mut total = 0;
                for key in auctions {
                    let (auction, _) = etcd_get(http, &url, key).await?;
                    let prefix = etcd_bid_prefix(key);
                    let v = etcd_call(
                        http,
                        &url,
                        &json!({ "key": B64.encode(&prefix), "range_end": B64.encode(prefix_end(&prefix)), "count_only": true }),
                    )
                    .await?;
                    let records = json_u64(&v["count"]);
                    if records != auction.bids {
                        bail!(
                            "{key}: state says {} bids but {records} bid records are stored",
                            auction.bids
                        );
                    }
                    total += records;
                }
                Ok(total)
            }
            Target::Redis { client } => {
                let mut conn = client.get_multiplexed_async_connection().await?;
                let mut total = 0;
                for key in auctions {
                    let (bids, records): (u64, u64) = redis::pipe()
                        .hget(key, "bids")
                        .llen(format!("{key}:bids"))
                        .query_async(&mut conn)
                        .await?;
                    if records != bids {
                        bail!("{key}: hash says {bids} bids but {records} bid records are stored");
                    }
                    total += records;
                }
                Ok(total)
            }
        }
    }
}

impl Conn {
    /// Places one bid. `Ok((reply, retries))`; `Err` is a failure of the system or the
    /// transport (timeouts, 5xx, lost connections), which the run counts as an error.
    pub async fn bid(&mut self, auctions: &Auctions, bidder: &str, bid: &Bid) -> Result<(Reply, u32)> {
        let key = &auctions[bid.auction];
        match self {
            Conn::Gavel {
                http,
                base,
                tokens,
                keys,
                accounts,
            } => {
                let url = format!("{base}/v1/auctions/{key}/bids");
                let token = tokens
                    .get(bidder)
                    .ok_or_else(|| anyhow!("no account for bidder {bidder}"))?;
                let mut body = json!({ "bidder": format!("{accounts}-{bidder}") });
                if let Some(a) = bid.amount {
                    body["amount"] = json!(a);
                }
                if let Some(m) = bid.max_amount {
                    body["max_amount"] = json!(m);
                }
                let payload = serde_json::to_vec(&body)?;
                let mut req = http
                    .post(&url)
                    .bearer_auth(token)
                    .header(reqwest::header::CONTENT_TYPE, "application/json");
                if let Some((signing_key, nonce)) = keys.get_mut(bidder) {
                    use ed25519_dalek::Signer;
                    *nonce += 1;
                    let path = format!("/v1/auctions/{key}/bids");
                    let message = gavel_storage::book::accounts::signed_message("POST", &path, *nonce, &payload);
                    let signature = signing_key.sign(message.as_bytes());
                    req = req
                        .header("Gavel-Nonce", nonce.to_string())
                        .header("Gavel-Signature", B64.encode(signature.to_bytes()));
                }
                let resp = req.body(payload).send().await?;
                let status = resp.status();
                let bytes = resp.bytes().await?;
                if status == reqwest::StatusCode::CREATED {
                    let a: GavelAccepted = serde_json::from_slice(&bytes)?;
                    return Ok((
                        Reply::Accepted {
                            leading: a.leading,
                            min_next_bid: a.min_next_bid,
                        },
                        0,
                    ));
                }
                if status.is_client_error() {
                    let e: GavelError = serde_json::from_slice(&bytes)
                        .with_context(|| format!("{status}: {}", String::from_utf8_lossy(&bytes)))?;
                    return Ok((
                        Reply::Refused {
                            code: e.error.code,
                            min_next_bid: e.error.min_next_bid,
                        },
                        0,
                    ));
                }
                bail!("{status}: {}", String::from_utf8_lossy(&bytes))
            }
            Conn::Etcd { http, base, cache } => etcd_bid(http, base, cache, key, bidder, bid).await,
            #[cfg(feature = "etcd-grpc")]
            Conn::EtcdGrpc { kv, cache } => etcd_grpc_bid(kv, cache, key, bidder, bid).await,
            Conn::Redis { conn, script } => {
                let out: Vec<String> = script
                    .key(key)
                    .key(format!("{key}:bids"))
                    .arg(bidder)
                    .arg(bid.amount.map(|a| a.to_string()).unwrap_or_default())
                    .arg(bid.max_amount.map(|a| a.to_string()).unwrap_or_default())
                    .invoke_async(conn)
                    .await?;
                let num = |i: usize| -> Result<u64> {
                    out.get(i)
                        .ok_or_else(|| anyhow!("short script answer {out:?}"))?
                        .parse::<u64>()
                        .with_context(|| format!("script answer {out:?}"))
                };
                match out.first().map(String::as_str) {
                    Some("ok") => Ok((
                        Reply::Accepted {
                            leading: num(2)? == 1,
                            min_next_bid: num(3)?,
                        },
                        0,
                    )),
                    Some(code) => Ok((
                        Reply::Refused {
                            code: code.to_string(),
                            min_next_bid: (code == "bid_too_low").then(|| num(1)).transpose()?,
                        },
                        0,
                    )),
                    None => bail!("empty script answer"),
                }
            }
        }
    }
}

/// Creates account `name` with one role through `base` with an admin's token; returns
/// its token. Retries for a while: right after a cluster starts its first admin may not
/// exist yet.
async fn create_account(
    http: &reqwest::Client,
    base: &str,
    admin_token: &str,
    name: &str,
    role: &str,
    public_key: Option<String>,
) -> Result<String> {
    let url = format!("{base}/v1/accounts");
    let mut body = json!({ "name": name, "roles": [role] });
    if let Some(key) = public_key {
        body["public_key"] = json!(key);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(ACCOUNT_SETUP_SECS);
    loop {
        let resp = http.post(&url).bearer_auth(admin_token).json(&body).send().await?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::CREATED {
            return v["token"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("no token in {v}"));
        }
        if std::time::Instant::now() > deadline || status == reqwest::StatusCode::CONFLICT {
            bail!("creating account {name} at {url}: {status} {v}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long setting up an account may keep retrying.
const ACCOUNT_SETUP_SECS: u64 = 15;

#[derive(Deserialize)]
struct GavelAccepted {
    leading: bool,
    min_next_bid: u64,
}

#[derive(Deserialize)]
struct GavelError {
    error: GavelErrorBody,
}

#[derive(Deserialize)]
struct GavelErrorBody {
    code: String,
    min_next_bid: Option<u64>,
}

/// The etcd gateway writes int64 as JSON strings and leaves out zero values.
fn json_u64(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

async fn etcd_call(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value> {
    let resp = http.post(url).json(body).send().await?;
    let status = resp.status();
    let v: Value = resp.json().await?;
    if !status.is_success() {
        bail!("etcd {url}: {status} {v}");
    }
    Ok(v)
}

/// Decodes the auction in a range answer's first kv.
fn etcd_auction(kvs: &Value, key: &str) -> Result<(BenchAuction, i64)> {
    let kv = kvs.get(0).ok_or_else(|| anyhow!("etcd has no key {key}"))?;
    let raw = B64.decode(kv["value"].as_str().unwrap_or_default())?;
    Ok((serde_json::from_slice(&raw)?, json_u64(&kv["mod_revision"]) as i64))
}

async fn etcd_get(http: &reqwest::Client, url: &str, key: &str) -> Result<(BenchAuction, i64)> {
    let v = etcd_call(http, url, &json!({ "key": B64.encode(key) })).await?;
    etcd_auction(&v["kvs"], key)
}

/// One compare-and-set attempt planned from the cached copy (both etcd APIs use it).
enum CasStep {
    /// The answer: a refusal, confirmed on a fresh copy.
    Done(Reply),
    /// The cached copy refuses the bid: read a fresh one and try again.
    Reload,
    /// Put `next` and the bid `record` under `record_key` if the auction's mod_revision
    /// is still `rev`; if it is, the answer is `reply`.
    Put {
        next: BenchAuction,
        rev: i64,
        record_key: String,
        record: String,
        reply: Reply,
    },
}

fn cas_step(
    cache: &HashMap<usize, (BenchAuction, i64)>,
    key: &str,
    bidder: &str,
    bid: &Bid,
    fresh: bool,
) -> Result<CasStep> {
    let (mut next, rev) = cache
        .get(&bid.auction)
        .cloned()
        .ok_or_else(|| anyhow!("no cached copy"))?;
    let now = gavel_api::json::now_ms();
    Ok(match next.place_bid(bidder, bid.amount, bid.max_amount, now) {
        Err(refused) if fresh => CasStep::Done(Reply::Refused {
            code: refused.code().to_string(),
            min_next_bid: match refused {
                BidRefused::TooLow { min_next_bid } => Some(min_next_bid),
                _ => None,
            },
        }),
        Err(_) => CasStep::Reload,
        Ok(accepted) => CasStep::Put {
            record_key: format!("{}{:012}", etcd_bid_prefix(key), next.bids),
            record: json!({ "bidder": bidder, "amount": bid.amount, "max_amount": bid.max_amount, "at_ms": now })
                .to_string(),
            next,
            rev,
            reply: Reply::Accepted {
                leading: accepted.leading,
                min_next_bid: accepted.min_next_bid,
            },
        },
    })
}

async fn etcd_bid(
    http: &reqwest::Client,
    base: &str,
    cache: &mut HashMap<usize, (BenchAuction, i64)>,
    key: &str,
    bidder: &str,
    bid: &Bid,
) -> Result<(Reply, u32)> {
    let range_url = format!("{base}/v3/kv/range");
    let txn_url = format!("{base}/v3/kv/txn");
    let mut fresh = false;
    if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(bid.auction) {
        slot.insert(etcd_get(http, &range_url, key).await?);
        fresh = true;
    }
    for attempt in 0..CAS_ATTEMPTS_MAX {
        match cas_step(cache, key, bidder, bid, fresh)? {
            CasStep::Done(reply) => return Ok((reply, attempt)),
            CasStep::Reload => {
                cache.insert(bid.auction, etcd_get(http, &range_url, key).await?);
                fresh = true;
            }
            CasStep::Put {
                next,
                rev,
                record_key,
                record,
                reply,
            } => {
                let body = json!({
                    "compare": [{ "key": B64.encode(key), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string() }],
                    "success": [
                        { "request_put": { "key": B64.encode(key), "value": B64.encode(serde_json::to_vec(&next)?) } },
                        { "request_put": { "key": B64.encode(&record_key), "value": B64.encode(record) } },
                    ],
                    "failure": [{ "request_range": { "key": B64.encode(key) } }],
                });
                let v = etcd_call(http, &txn_url, &body).await?;
                if v["succeeded"].as_bool() == Some(true) {
                    let revision = json_u64(&v["header"]["revision"]) as i64;
                    cache.insert(bid.auction, (next, revision));
                    return Ok((reply, attempt));
                }
                let kvs = &v["responses"][0]["response_range"]["kvs"];
                cache.insert(bid.auction, etcd_auction(kvs, key)?);
                fresh = true;
            }
        }
    }
    bail!("no compare-and-set succeeded in {CAS_ATTEMPTS_MAX} attempts")
}

/// The auction stored at `key`, and its mod_revision, read linearizably over gRPC.
#[cfg(feature = "etcd-grpc")]
async fn etcd_grpc_get(kv: &mut etcd_client::KvClient, key: &str) -> Result<(BenchAuction, i64)> {
    let resp = kv.get(key, None).await?;
    grpc_auction(resp.kvs(), key)
}

#[cfg(feature = "etcd-grpc")]
fn grpc_auction(kvs: &[etcd_client::KeyValue], key: &str) -> Result<(BenchAuction, i64)> {
    let kv = kvs.first().ok_or_else(|| anyhow!("etcd has no key {key}"))?;
    Ok((serde_json::from_slice(kv.value())?, kv.mod_revision()))
}

/// [`etcd_bid`] over etcd's gRPC API: the same rule, cache and transaction.
#[cfg(feature = "etcd-grpc")]
async fn etcd_grpc_bid(
    kv: &mut etcd_client::KvClient,
    cache: &mut HashMap<usize, (BenchAuction, i64)>,
    key: &str,
    bidder: &str,
    bid: &Bid,
) -> Result<(Reply, u32)> {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
    let mut fresh = false;
    if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(bid.auction) {
        slot.insert(etcd_grpc_get(kv, key).await?);
        fresh = true;
    }
    for attempt in 0..CAS_ATTEMPTS_MAX {
        match cas_step(cache, key, bidder, bid, fresh)? {
            CasStep::Done(reply) => return Ok((reply, attempt)),
            CasStep::Reload => {
                cache.insert(bid.auction, etcd_grpc_get(kv, key).await?);
                fresh = true;
            }
            CasStep::Put {
                next,
                rev,
                record_key,
                record,
                reply,
            } => {
                let txn = Txn::new()
                    .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                    .and_then([
                        TxnOp::put(key, serde_json::to_vec(&next)?, None),
                        TxnOp::put(record_key, record, None),
                    ])
                    .or_else([TxnOp::get(key, None)]);
                let resp = kv.txn(txn).await?;
                if resp.succeeded() {
                    let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
                    cache.insert(bid.auction, (next, revision));
                    return Ok((reply, attempt));
                }
                let fresh_copy = match resp.op_responses().into_iter().next() {
                    Some(TxnOpResponse::Get(get)) => grpc_auction(get.kvs(), key)?,
                    _ => bail!("etcd txn failed without the auction's fresh copy"),
                };
                cache.insert(bid.auction, fresh_copy);
                fresh = true;
            }
        }
    }
    bail!("no compare-and-set succeeded in {CAS_ATTEMPTS_MAX} attempts")
}
