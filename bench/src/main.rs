//! `gavel-bench`: a closed-loop load generator of bidder agents, for Gavel and, with the
//! same workload and rule, for etcd and Redis (see `bench/compare.sh`). It is its own
//! binary so that the server (`gavel`) carries none of it or its clients (Redis, etcd).
//!
//! `gavel-bench run` creates N auctions, runs M clients (each one bidder with a
//! [`Strategy`]) for a fixed time and at most a number of bids, then reads back how many
//! bids the system stored and checks that it is every acknowledged bid (and no more than
//! acknowledged plus failed). `gavel-bench report` puts several runs side by side.
//!
//! Exit codes: 0 success; 1 the system stored a different number of bids than the run's
//! answers allow; 2 anything else went wrong (bad arguments, a system unreachable).

mod agent;
mod report;
mod rule;
mod target;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use gavel_api::json::now_ms;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use agent::{Agent, Reply, Strategy};
use report::{Latency, RunReport};
use target::{Target, Workload};

#[derive(Debug, Parser)]
#[command(
    name = "gavel-bench",
    version,
    about = "Load-test Gavel (or etcd, Redis) with bidder agents; compare runs"
)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Run bidder agents against one system and report throughput and latency.
    Run(RunArgs),
    /// Put the JSON reports of several runs side by side (markdown and JSON).
    Report(ReportArgs),
}

/// The system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Gavel,
    Etcd,
    Redis,
}

/// How the benchmark talks to etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcdApi {
    /// etcd's native gRPC API, as its own clients (etcdctl, client libraries) use it.
    Grpc,
    /// etcd's JSON gateway (`/v3/kv/txn` over HTTP/1.1): slower, for comparison only.
    Gateway,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Leader,
    Spread,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The system under test.
    #[arg(long, value_enum, default_value = "gavel")]
    pub system: System,
    /// Comma-separated addresses (host:port or URLs); client i uses endpoint i mod n.
    /// Defaults: gavel 127.0.0.1:7070; etcd 127.0.0.1:2379; redis 127.0.0.1:6379.
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Where clients send bids: `leader` (all to the current leader, found once at the
    /// start; Gavel and etcd), or `spread` (client i to endpoint i mod n, so followers
    /// forward).
    #[arg(long, value_enum, default_value = "leader")]
    pub route: Route,
    /// Concurrent clients, each one bidder waiting for its answer before the next bid.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Auctions to spread the bids over uniformly (1: one hot auction).
    #[arg(long, default_value_t = 1)]
    pub auctions: usize,
    #[arg(long, value_enum, default_value = "mix")]
    pub strategy: Strategy,
    /// How long to bid.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Stop after this many bids in all (the duration still bounds the run).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Snipers bid only in the last this-many seconds. [default: min(3, duration / 3)]
    #[arg(long)]
    pub snipe_secs: Option<u64>,
    /// Print progress to stderr every this-many seconds (0: never).
    #[arg(long, default_value_t = 5)]
    pub progress_secs: u64,
    /// Per-request timeout.
    #[arg(long, default_value_t = 5_000)]
    pub timeout_ms: u64,
    /// Seed of the agents' choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A label for the report (e.g. which durability settings the system ran with).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Gavel: an admin's token; the run creates its seller and bidder accounts with it.
    #[arg(long, env = "GAVEL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Gavel: bidder accounts get an ed25519 key and sign every bid.
    #[arg(long)]
    pub sign: bool,
    /// etcd: bids through its gRPC API (default) or its JSON gateway.
    #[arg(long, value_enum, default_value = "grpc")]
    pub etcd_api: EtcdApi,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// JSON reports written by `gavel-bench run --out`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write the markdown table here (default: stdout).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write every run and the ratios as one JSON document here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The exit code of a run that could not be done (as `gavel`'s, and clap's for bad
/// arguments).
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gavel-bench: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn dispatch(cmd: BenchCommand) -> Result<ExitCode> {
    match cmd {
        BenchCommand::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(run_command(args))
        }
        BenchCommand::Report(args) => report::write(&args).map(|()| ExitCode::SUCCESS),
    }
}

async fn run_command(mut args: RunArgs) -> Result<ExitCode> {
    if args.endpoints.is_empty() {
        args.endpoints = vec![match args.system {
            System::Gavel => "127.0.0.1:7070".into(),
            System::Etcd => "127.0.0.1:2379".into(),
            System::Redis => "127.0.0.1:6379".into(),
        }];
    }
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(args.auctions >= 1, "--auctions must be at least 1");
    anyhow::ensure!(args.duration_secs >= 1, "--duration-secs must be at least 1");
    let report = run(&args).await?;
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.out {
        std::fs::write(path, format!("{text}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{text}");
    } else {
        println!("{}", report::run_table(&report));
    }
    if !report.verified {
        eprintln!(
            "error: the system stored {} bids, but {} were acknowledged and {} failed",
            report.stored_bids, report.accepted, report.errors
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Seconds after the run's end at which the auctions end (so none closes mid-run).
const CLOSE_GRACE_SECS: u64 = 2;

/// What one client counted.
struct ClientTally {
    latency_us: Histogram<u64>,
    accepted: u64,
    rejected: u64,
    errors: u64,
    retries: u64,
    refusals: BTreeMap<String, u64>,
    error_samples: Vec<String>,
    /// When this client's last answer came.
    last_answer: Option<Instant>,
}

impl ClientTally {
    fn new() -> Self {
        ClientTally {
            // 1 µs to 2 minutes, 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds"),
            accepted: 0,
            rejected: 0,
            errors: 0,
            retries: 0,
            refusals: BTreeMap::new(),
            error_samples: Vec::new(),
            last_answer: None,
        }
    }

    /// Counts one answered (or failed) bid that took `took`.
    fn record(&mut self, result: &Result<(Reply, u32)>, took: Duration, progress: &Progress) {
        self.last_answer = Some(Instant::now());
        progress.ops.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok((reply, retries)) => {
                self.latency_us.saturating_record((took.as_micros() as u64).max(1));
                self.retries += u64::from(*retries);
                match reply {
                    Reply::Accepted { .. } => {
                        self.accepted += 1;
                        progress.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Reply::Refused { code, .. } => {
                        self.rejected += 1;
                        *self.refusals.entry(code.clone()).or_default() += 1;
                    }
                }
            }
            Err(e) => {
                self.errors += 1;
                progress.errors.fetch_add(1, Ordering::Relaxed);
                if self.error_samples.len() < ERROR_SAMPLES_MAX {
                    self.error_samples.push(format!("{e:#}"));
                }
            }
        }
    }

    fn merge(&mut self, other: ClientTally) -> Result<()> {
        self.latency_us.add(&other.latency_us)?;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.errors += other.errors;
        self.retries += other.retries;
        self.last_answer = self.last_answer.max(other.last_answer);
        for (code, n) in other.refusals {
            *self.refusals.entry(code).or_default() += n;
        }
        let room = ERROR_SAMPLES_MAX.saturating_sub(self.error_samples.len());
        self.error_samples.extend(other.error_samples.into_iter().take(room));
        Ok(())
    }
}

/// Error messages kept for the report.
const ERROR_SAMPLES_MAX: usize = 3;

/// What every client of a run shares.
struct Shared {
    auctions: target::Auctions,
    progress: Progress,
    /// Bids started so far, against `max_ops`.
    budget: AtomicU64,
    max_ops: u64,
    /// Wakes waiting snipers once the budget is spent.
    spent: tokio::sync::Notify,
    deadline: Instant,
    snipe_window: Duration,
}

/// One client: bids as its agent decides until the deadline or the budget is reached.
async fn bid_until_done(mut agent: Agent, mut conn: target::Conn, run: Arc<Shared>) -> ClientTally {
    let mut tally = ClientTally::new();
    loop {
        let now = Instant::now();
        if now >= run.deadline {
            break;
        }
        let remaining_ms = (run.deadline - now).as_millis() as u64;
        if !agent.active(remaining_ms, run.snipe_window.as_millis() as u64) {
            let wake = run.deadline - run.snipe_window;
            tokio::select! {
                () = tokio::time::sleep_until(wake.max(now).into()) => {}
                () = run.spent.notified() => break,
            }
            continue;
        }
        if run.budget.fetch_add(1, Ordering::Relaxed) >= run.max_ops {
            run.spent.notify_waiters();
            break;
        }
        let bid = agent.next_bid();
        let sent = Instant::now();
        let result = conn.bid(&run.auctions, agent.bidder(&bid), &bid).await;
        tally.record(&result, sent.elapsed(), &run.progress);
        match &result {
            Ok((reply, _)) => agent.observe(&bid, reply),
            // A failing system must not be hammered in a tight loop.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    tally
}

/// Live counters for the progress line.
#[derive(Default)]
struct Progress {
    ops: AtomicU64,
    accepted: AtomicU64,
    errors: AtomicU64,
}

pub async fn run(args: &RunArgs) -> Result<RunReport> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let target = Arc::new(Target::new(
        args.system,
        &args.endpoints,
        timeout,
        args.token.as_deref(),
        args.sign,
        args.etcd_api,
    )?);
    let snipe_secs = args.snipe_secs.unwrap_or((args.duration_secs / 3).clamp(1, 3));
    let run_id = format!("{}-{}", now_ms(), std::process::id());
    let setup_started = Instant::now();
    let mut workload = Workload {
        auctions: args.auctions,
        starting_price: 1_000,
        increment: 100,
        ends_at_ms: 0,
        window_secs: snipe_secs as u32,
        extend_secs: snipe_secs as u32 + 2,
        max_extensions: 1_000,
        run_id,
    };
    // The auctions end CLOSE_GRACE_SECS after the run, so the snipers' window is the
    // auctions' last seconds. The end is fixed at creation, before setup time is known, so
    // setup gets an allowance; the run starts when it is used up (or at once, shorter, if
    // setup overran it).
    let setup_allowance_ms = 2_000 + args.auctions as u64 * 5;
    workload.ends_at_ms = now_ms() + setup_allowance_ms + (args.duration_secs + CLOSE_GRACE_SECS) * 1000;
    let auctions = target.prepare(&workload).await.context("setting up the auctions")?;
    let start_at_ms = workload.ends_at_ms - (args.duration_secs + CLOSE_GRACE_SECS) * 1000;
    let late_ms = now_ms().saturating_sub(start_at_ms);
    anyhow::ensure!(
        late_ms < args.duration_secs * 500,
        "setting up {} auctions took {:?}, over the {setup_allowance_ms} ms allowed by more than half the run",
        args.auctions,
        setup_started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(start_at_ms.saturating_sub(now_ms()))).await;

    let leader = match args.route {
        Route::Leader => target.leader_endpoint().await.context("finding the leader")?,
        Route::Spread => None,
    };
    let mut conns = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        conns.push(
            target
                .connect(i, leader.as_deref(), timeout)
                .await
                .context("connecting")?,
        );
    }
    let started = Instant::now();
    let shared = Arc::new(Shared {
        auctions,
        progress: Progress::default(),
        budget: AtomicU64::new(0),
        max_ops: args.ops.unwrap_or(u64::MAX),
        spent: tokio::sync::Notify::new(),
        deadline: started + Duration::from_millis((args.duration_secs * 1000).saturating_sub(late_ms)),
        snipe_window: Duration::from_secs(snipe_secs),
    });
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let agent = Agent::new(
                i,
                args.strategy,
                args.auctions,
                workload.starting_price,
                workload.increment,
                args.seed,
            );
            tokio::spawn(bid_until_done(agent, conn, shared.clone()))
        })
        .collect();

    let reporter = (args.progress_secs > 0).then(|| {
        let shared = shared.clone();
        let every = Duration::from_secs(args.progress_secs);
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(every).await;
                let progress = &shared.progress;
                let ops = progress.ops.load(Ordering::Relaxed);
                eprintln!(
                    "  {:>4.0} s  {ops} bids ({:.0}/s now), {} accepted, {} errors",
                    started.elapsed().as_secs_f64(),
                    (ops - last) as f64 / every.as_secs_f64(),
                    progress.accepted.load(Ordering::Relaxed),
                    progress.errors.load(Ordering::Relaxed),
                );
                last = ops;
            }
        })
    });

    let mut total = ClientTally::new();
    for task in tasks {
        total.merge(task.await.context("a client task failed")?)?;
    }
    // Up to the last answer: idle snipers waiting out the clock do not dilute the rate.
    let elapsed = total
        .last_answer
        .map_or_else(|| started.elapsed(), |at| at - started)
        .as_secs_f64()
        .max(1e-3);
    if let Some(r) = reporter {
        r.abort();
    }
    let stored_bids = target
        .stored_bids(&shared.auctions)
        .await
        .context("reading back the stored bids")?;
    let ops = total.accepted + total.rejected;
    let h = &total.latency_us;
    let ms = |us: u64| us as f64 / 1e3;
    Ok(RunReport {
        system: args.system,
        label: args.label.clone(),
        strategy: args.strategy,
        clients: args.clients,
        auctions: args.auctions,
        endpoints: args.endpoints.clone(),
        route: args.route,
        leader,
        duration_secs: elapsed,
        bids: ops,
        accepted: total.accepted,
        rejected: total.rejected,
        errors: total.errors,
        cas_retries: total.retries,
        bids_per_sec: ops as f64 / elapsed,
        accepted_per_sec: total.accepted as f64 / elapsed,
        latency_ms: Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1e3,
        },
        refusals: total.refusals,
        error_samples: total.error_samples,
        stored_bids,
        verified: total.accepted <= stored_bids && stored_bids <= total.accepted + total.errors,
    })
}
