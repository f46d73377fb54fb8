//! The command line: `gavel <command>`.
//!
//! Exit codes: 0 success; 1 the data checked is corrupt (a checksum, format or
//! continuity error was found); 2 anything else went wrong (missing files, a data dir in
//! use, bad arguments).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, LogFormat};
use crate::tools;

#[derive(Debug, Parser)]
#[command(name = "gavel", version, about = "A distributed, durable auction service")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node. With an empty data dir and no --join it bootstraps a one-node cluster.
    Serve(ServeArgs),
    /// Create, list, show, bid on and cancel auctions through a node's HTTP API.
    Auction(crate::client::ClientArgs),
    /// Create, show, rotate and disable accounts through a node's HTTP API.
    Account(crate::accounts_cli::AccountArgs),
    /// Signing keys for signed bids.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Check signed bids against the bidders' public keys.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print an auction's live events (UDP or SSE) and report gaps in seq.
    Watch(crate::watch::WatchArgs),
    /// Read a stopped node's Raft log (offline, read-only).
    #[command(subcommand)]
    Log(LogCommand),
    /// Read snapshot files (offline, read-only).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Read a node's archive of closed auctions (read-only; safe while the node runs).
    #[command(subcommand)]
    Archive(ArchiveCommand),
}

/// `gavel serve` flags. Each also comes from `GAVEL_*` and the config file; a flag wins
/// over its variable, which wins over the file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (see deploy/gavel.example.toml).
    #[arg(long, env = "GAVEL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Node id (>= 1), unique in the cluster. [default: 1]
    #[arg(long, env = "GAVEL_ID")]
    pub id: Option<u64>,
    /// Data directory. [default: ./gavel-data]
    #[arg(long, env = "GAVEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP API and node RPC address. [default: 127.0.0.1:7070]
    #[arg(long, env = "GAVEL_LISTEN")]
    pub listen: Option<String>,
    /// Address peers and clients use to reach this node. [default: the listen address]
    #[arg(long, env = "GAVEL_ADVERTISE")]
    pub advertise: Option<String>,
    /// UDP fast-path address. [default: 127.0.0.1:7071]
    #[arg(long, env = "GAVEL_UDP")]
    pub udp: Option<String>,
    /// Ask the member at this address to add this node (first start only).
    #[arg(long, env = "GAVEL_JOIN")]
    pub join: Option<String>,
    /// Auctions this node hosts as a worker. [default: 10000]
    #[arg(long, env = "GAVEL_MAX_AUCTIONS")]
    pub max_auctions: Option<u32>,
    /// A leader whose clock is further than this (ms) from the time a majority of the
    /// voters agree on stamps no command and hands its leadership over. [default: 500]
    #[arg(long, env = "GAVEL_MAX_CLOCK_SKEW_MS")]
    pub max_clock_skew_ms: Option<u64>,
    /// Shared secret of the cluster (>= 16 bytes), required on node RPC and admin routes.
    #[arg(long, env = "GAVEL_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// File holding the first admin's token, for a node that bootstraps a cluster.
    /// [default: a new token written to <data-dir>/admin.token]
    #[arg(long, env = "GAVEL_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Requests per second one client address may send (burst: twice that; 0: no
    /// limit). [default: 5000]
    #[arg(long, env = "GAVEL_RATE_PER_ADDRESS")]
    pub rate_per_address: Option<u32>,
    /// Writes per second one account may send (burst: twice that; 0: no limit).
    /// [default: 200]
    #[arg(long, env = "GAVEL_RATE_PER_ACCOUNT")]
    pub rate_per_account: Option<u32>,
    /// PEM certificate chain: serve HTTPS (API and node RPC). With --tls-key.
    #[arg(long, env = "GAVEL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "GAVEL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA that signed every node's certificate: nodes reach each other over HTTPS
    /// and verify each other's certificates with it.
    #[arg(long, env = "GAVEL_PEER_CA")]
    pub peer_ca: Option<PathBuf>,
    /// Cluster name. [default: gavel]
    #[arg(long, env = "GAVEL_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Log format. [default: pretty]
    #[arg(long, env = "GAVEL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Skip the fsync after each log flush (survives process crashes, not power loss).
    #[arg(long, env = "GAVEL_NO_FSYNC")]
    pub no_fsync: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify every signed bid: of a snapshot file, a stopped node's data dir, or one
    /// auction through a node.
    Verify(crate::audit::AuditArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new ed25519 secret key to a file (mode 0600) and print its public key.
    Generate(crate::keys::KeyGenerateArgs),
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Print every record: index, term, kind, time, size, command.
    Dump(LogDumpArgs),
    /// Check every record's checksum, the index sequence and the log pointers.
    Verify(LogArgs),
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// The node's data directory (holds `sled/` and `snapshots/`).
    #[arg(long, env = "GAVEL_DATA_DIR", default_value = "./gavel-data")]
    pub data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogDumpArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// First index to print.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Print at most this many records.
    #[arg(long)]
    pub limit: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Show a snapshot's meta (term, index, membership), counts, state hash, checksums.
    /// Given a directory, shows the newest snapshot in it.
    Inspect(SnapshotArgs),
    /// Check a snapshot file, or every snapshot file in a directory. A backup file is
    /// checked whole: its snapshot, every archive record, its digest and checksum.
    Verify(SnapshotArgs),
    /// Seed a new one-node cluster from a backup file (`GET /v1/admin/backup`) or a
    /// snapshot file: writes DIR for node N at ADDR; start it, then join others to it.
    Restore(SnapshotRestoreArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotRestoreArgs {
    /// A backup file (or a snapshot file of a cluster with nothing archived).
    pub file: PathBuf,
    /// The new node's data directory; must not exist, or be empty.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The new node's id.
    #[arg(long)]
    pub id: u64,
    /// The address the new node will listen on (host:port), as peers and clients reach it.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub advertise: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// A snapshot file, a snapshots directory, or a node's data directory.
    pub path: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Check every record: frame checksums, numbering, the segment indexes and the digest
    /// chain. Exit 1 on any problem.
    Verify(ArchiveArgs),
    /// Print the archived auctions, one JSON object per line (or a table).
    Dump(ArchiveDumpArgs),
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The node's data directory (holds `archive/`), or an archive directory.
    #[arg(long, env = "GAVEL_DATA_DIR", default_value = "./gavel-data")]
    pub data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ArchiveDumpArgs {
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// Only this auction.
    #[arg(long)]
    pub auction: Option<u64>,
    /// At most this many records.
    #[arg(long)]
    pub limit: Option<u64>,
    /// With every bid (JSON only).
    #[arg(long)]
    pub full: bool,
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Auction(args) => crate::client::run(args),
        Command::Account(args) => crate::accounts_cli::run(args),
        Command::Key(KeyCommand::Generate(args)) => crate::keys::generate(&args),
        Command::Audit(AuditCommand::Verify(args)) => crate::audit::verify(&args),
        Command::Watch(args) => crate::watch::run(args),
        Command::Log(LogCommand::Dump(args)) => tools::log_dump(&args),
        Command::Log(LogCommand::Verify(args)) => tools::log_verify(&args),
        Command::Snapshot(SnapshotCommand::Inspect(args)) => tools::snapshot_inspect(&args),
        Command::Snapshot(SnapshotCommand::Verify(args)) => tools::snapshot_verify(&args),
        Command::Snapshot(SnapshotCommand::Restore(args)) => tools::snapshot_restore(&args),
        Command::Archive(ArchiveCommand::Verify(args)) => tools::archive_verify(&args),
        Command::Archive(ArchiveCommand::Dump(args)) => tools::archive_dump(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            let unopenable = err.chain().any(|e| {
                matches!(
                    e.downcast_ref::<gavel_storage::Error>(),
                    Some(gavel_storage::Error::Unopenable { .. })
                )
            });
            if unopenable {
                eprintln!("gavel: {err:#}; {}", crate::node::RECOVER_FROM_PEERS);
            } else {
                eprintln!("gavel: {err:#}");
            }
            let corrupt = unopenable
                || err.chain().any(|e| {
                    matches!(
                        e.downcast_ref::<gavel_storage::Error>(),
                        Some(gavel_storage::Error::Corrupt { .. })
                    )
                });
            ExitCode::from(if corrupt {
                tools::EXIT_CORRUPT
            } else {
                tools::EXIT_ERROR
            })
        }
    }
}

fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args)?;
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(crate::node::run(config))?;
    Ok(ExitCode::SUCCESS)
}

/// `RUST_LOG` filters; the default keeps openraft's and sled's chatter at warnings.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn"));
    // Colours only on a terminal: a log file or the journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
