//! `gavel watch AUCTION_ID [--udp|--sse]`: prints an auction's live events and reports
//! every gap in `seq` (missed datagrams; the rest is at /v1/auctions/ID/bids).
//!
//! `--udp` (default) binds a local UDP socket, subscribes it over HTTP with the
//! account's token (`--token`/`GAVEL_TOKEN`), answers the node's challenge from that
//! socket to prove the address, and renews the subscription every third of its TTL. A
//! `--listen` address on every interface (`0.0.0.0:0`) is subscribed as the local
//! address the route to the node leaves from, so watching from another machine needs no
//! address typed in. `--broadcast ADDR` subscribes nothing: it receives what the workers
//! push to their `udp_broadcast` address (a subnet broadcast, or a multicast group it
//! joins). `--sse` reads the Server-Sent Events stream and reconnects with
//! `Last-Event-ID` if the connection drops. All stop after the closing event, or after
//! `--count` events. With `--json`, a UDP event also names the address it came from (the
//! worker that pushed it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::terminal::{safe, safe_json_line};
use gavel_api::udp::{kind_name, EventFrame, ProofFrame, KIND_CHALLENGE};

#[derive(Debug, Args)]
pub struct WatchArgs {
    pub auction_id: u64,
    /// Node to subscribe through (any node).
    #[arg(long, env = "GAVEL_NODE", default_value = "http://127.0.0.1:7070")]
    pub node: String,
    /// Receive UDP datagrams (the default).
    #[arg(long, conflicts_with = "sse")]
    pub udp: bool,
    /// Read the Server-Sent Events stream instead.
    #[arg(long)]
    pub sse: bool,
    /// Local UDP address to receive on; it must be reachable from the hosting worker.
    /// On every interface (`0.0.0.0:0`), the address subscribed is the one the route to
    /// the node leaves from.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Subscribe nothing: receive the datagrams workers push to their `udp_broadcast`
    /// address, this one (a subnet broadcast such as 10.0.0.255:7200, received on every
    /// interface, or a multicast group such as 239.255.7.1:7200, joined).
    #[arg(long, value_name = "ADDR", conflicts_with = "sse")]
    pub broadcast: Option<SocketAddr>,
    #[arg(long, default_value_t = 60)]
    pub ttl_secs: u32,
    /// API token of the account subscribing (UDP only; SSE is public).
    #[arg(long, env = "GAVEL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print one JSON object per event.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
}

/// Tracks `seq` and reports gaps and repeats.
struct Sequence {
    last: Option<u64>,
    gaps: u64,
}

impl Sequence {
    /// Returns false for a repeat (already seen).
    fn accept(&mut self, auction_id: u64, seq: u64) -> bool {
        match self.last {
            Some(last) if seq <= last => return false,
            Some(last) if seq > last + 1 => {
                self.gaps += 1;
                eprintln!(
                    "gap: missed seq {}..={} (fetch them from /v1/auctions/{auction_id}/bids)",
                    last + 1,
                    seq - 1
                );
            }
            _ => {}
        }
        self.last = Some(seq);
        true
    }
}

pub fn run(args: WatchArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        if args.sse {
            watch_sse(&args).await
        } else {
            watch_udp(&args).await
        }
    })
}

/// Prints one event: its JSON with `--json`, else `line`; never raw control characters.
fn print(args: &WatchArgs, v: &Value, line: String) {
    if args.json {
        println!("{}", safe_json_line(v));
    } else {
        println!("{}", safe(&line));
    }
}

async fn subscribe(http: &reqwest::Client, args: &WatchArgs, udp: &str) -> Result<()> {
    let url = format!(
        "{}/v1/auctions/{}/subscriptions",
        crate::client::base_url(&args.node),
        args.auction_id
    );
    let token = args
        .token
        .as_deref()
        .context("UDP subscriptions need an account's token: --token or GAVEL_TOKEN (or watch with --sse)")?;
    let resp = http
        .post(&url)
        .bearer_auth(token)
        .json(&json!({ "udp": udp, "ttl_secs": args.ttl_secs }))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.node))?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!(
            "subscribing failed ({status}): {}",
            safe(&resp.text().await.unwrap_or_default())
        );
    }
    Ok(())
}

/// A socket receiving what workers push to `target`: bound on every interface at its
/// port (a subnet broadcast reaches only such a socket), and a member of its group when
/// `target` is a multicast address.
async fn bind_broadcast(target: SocketAddr) -> Result<tokio::net::UdpSocket> {
    let any: IpAddr = match target {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = tokio::net::UdpSocket::bind((any, target.port()))
        .await
        .with_context(|| format!("binding UDP port {} to receive {target}", target.port()))?;
    match target.ip() {
        IpAddr::V4(group) if group.is_multicast() => socket
            .join_multicast_v4(group, Ipv4Addr::UNSPECIFIED)
            .with_context(|| format!("joining multicast group {group}"))?,
        IpAddr::V6(group) if group.is_multicast() => socket
            .join_multicast_v6(&group, 0)
            .with_context(|| format!("joining multicast group {group}"))?,
        _ => {}
    }
    Ok(socket)
}

/// The address to subscribe: the socket's own, or, for a socket bound on every
/// interface, the local address the route to the node leaves from (what the node will
/// see the confirm come from).
async fn subscribe_address(socket: &tokio::net::UdpSocket, node: &str) -> Result<SocketAddr> {
    let local = socket.local_addr()?;
    if !local.ip().is_unspecified() {
        return Ok(local);
    }
    let url = reqwest::Url::parse(&crate::client::base_url(node)).with_context(|| format!("--node {node:?}"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    // An IPv6 host comes bracketed; lookup_host takes IP literals and names alike.
    let host = url
        .host_str()
        .with_context(|| format!("--node {node:?} names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let node_addr = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let any: IpAddr = match node_addr {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    // Connecting a UDP socket sends nothing: it only picks the route and its source.
    let probe = tokio::net::UdpSocket::bind((any, 0)).await?;
    probe
        .connect(node_addr)
        .await
        .with_context(|| format!("no route to {node_addr}"))?;
    Ok(SocketAddr::new(probe.local_addr()?.ip(), local.port()))
}

async fn watch_udp(args: &WatchArgs) -> Result<ExitCode> {
    // Renewals come every third of the TTL: idle connections must go before the
    // server's keep-alive closes them.
    let http = reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_millis(
            gavel_raft::network::CLIENT_POOL_IDLE_MS,
        ))
        .build()?;
    // The subscribed address, when subscribing (renewed and proved below).
    let (socket, subscribed) = match args.broadcast {
        Some(target) => {
            let socket = bind_broadcast(target).await?;
            eprintln!("watching auction {} on the broadcast address {target}", args.auction_id);
            (socket, None)
        }
        None => {
            let socket = tokio::net::UdpSocket::bind(&args.listen)
                .await
                .with_context(|| format!("binding {}", args.listen))?;
            let local = subscribe_address(&socket, &args.node).await?.to_string();
            subscribe(&http, args, &local).await?;
            eprintln!("watching auction {} over UDP on {local}", args.auction_id);
            (socket, Some(local))
        }
    };
    let renew_every = Duration::from_secs(u64::from(args.ttl_secs.max(3)) / 3);
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
    let mut seq = Sequence { last: None, gaps: 0 };
    let mut seen = 0u64;
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            _ = renew.tick(), if subscribed.is_some() => {
                if let Some(local) = &subscribed {
                    if let Err(e) = subscribe(&http, args, local).await {
                        eprintln!("renewal failed: {e:#}");
                    }
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (n, from) = received?;
                if n == gavel_api::udp::PROOF_LEN && buf.get(3) == Some(&KIND_CHALLENGE) {
                    // The node asks this address to prove it wants the datagrams (only
                    // ever answered for a subscription this watch asked for).
                    if let (Some(_), Ok(challenge)) = (&subscribed, ProofFrame::decode(&buf[..n])) {
                        if challenge.auction_id == args.auction_id {
                            let confirm = ProofFrame { confirm: true, ..challenge };
                            socket.send_to(&confirm.encode(), from).await?;
                        }
                    }
                    continue;
                }
                let frame = match EventFrame::decode(&buf[..n]) {
                    Ok(f) if f.auction_id == args.auction_id => f,
                    Ok(_) => continue,
                    Err(reason) => {
                        eprintln!("ignored an invalid datagram ({reason:?})");
                        continue;
                    }
                };
                if !seq.accept(frame.auction_id, frame.seq) {
                    continue;
                }
                let v = json!({
                    "auction_id": frame.auction_id, "seq": frame.seq, "kind": kind_name(frame.kind), "ts_ms": frame.ts_ms,
                    "amount": frame.amount, "ends_at_ms": frame.ends_at_ms, "detail": frame.detail, "bidder": frame.bidder,
                    "from": from.to_string(),
                });
                let who = if frame.bidder.is_empty() { String::new() } else { format!(" {}", frame.bidder) };
                let line = match frame.kind {
                    // Round events: the round number rides in `detail`.
                    10 => format!("seq {:>5}  round {} started, ends at {} ms", frame.seq, frame.detail, frame.ends_at_ms),
                    11 => format!("seq {:>5}  round {} completed; highest bid {}{who}", frame.seq, frame.detail, frame.amount),
                    9 => format!("seq {:>5}  joined{who} ({} participants)", frame.seq, frame.amount),
                    8 => format!("seq {:>5}  sealed bid ({} bidders so far)", frame.seq, frame.amount),
                    _ => format!("seq {:>5}  {:<13} amount {:>10}{who}", frame.seq, kind_name(frame.kind), frame.amount),
                };
                print(args, &v, line);
                seen += 1;
                if matches!(frame.kind, 5 | 6) || args.count.is_some_and(|c| seen >= c) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
}

async fn watch_sse(args: &WatchArgs) -> Result<ExitCode> {
    // Renewals come every third of the TTL: idle connections must go before the
    // server's keep-alive closes them.
    let http = reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_millis(
            gavel_raft::network::CLIENT_POOL_IDLE_MS,
        ))
        .build()?;
    let url = format!(
        "{}/v1/auctions/{}/events",
        crate::client::base_url(&args.node),
        args.auction_id
    );
    let mut seq = Sequence { last: None, gaps: 0 };
    let mut seen = 0u64;
    let mut failures = 0u32;
    loop {
        let mut req = http.get(&url);
        if let Some(last) = seq.last {
            req = req.header("Last-Event-ID", last.to_string());
        }
        let mut resp = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if r.status().is_client_error() => {
                bail!(
                    "the node refused ({}): {}",
                    r.status(),
                    safe(&r.text().await.unwrap_or_default())
                )
            }
            other => {
                failures += 1;
                if failures > 20 {
                    bail!("cannot reach {}: {other:?}", args.node);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        failures = 0;
        let mut pending = String::new();
        let mut data = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find('\n') {
                let line = pending[..end].trim_end_matches('\r').to_string();
                pending.drain(..=end);
                if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                } else if line.is_empty() && !data.is_empty() {
                    let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                    data.clear();
                    let Some(s) = v["seq"].as_u64() else { continue };
                    if !seq.accept(args.auction_id, s) {
                        continue;
                    }
                    let line = match v["kind"].as_str() {
                        Some("round_completed") => {
                            let bids: Vec<String> = v["bids"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|b| format!("{} {}", b["bidder"].as_str().unwrap_or("?"), b["amount"]))
                                .collect();
                            safe(&format!(
                                "seq {s:>5}  round {} completed: {}",
                                v["round"],
                                bids.join(", ")
                            ))
                        }
                        Some("round_started") => safe(&format!(
                            "seq {s:>5}  round {} started, ends at {}",
                            v["round"], v["round_ends_at"]
                        )),
                        _ => format!("seq {s:>5}  {}", safe_json_line(&v)),
                    };
                    print(args, &v, line);
                    seen += 1;
                    if v.get("result").is_some()
                        || v.get("cancelled_by").is_some()
                        || args.count.is_some_and(|c| seen >= c)
                    {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
        }
        eprintln!("stream ended; reconnecting after seq {:?}", seq.last);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
