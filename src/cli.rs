//! The command line: `gavel <command>`.
//!
//! Exit codes: 0 success; 1 the data checked is corrupt (a checksum, format or
//! continuity error was found); 2 anything else went wrong (missing files, a data dir in
//! use, bad arguments).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::tools;

#[derive(Debug, Parser)]
#[command(name = "gavel", version, about = "A distributed, durable auction service")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a stopped node's Raft log (offline, read-only).
    #[command(subcommand)]
    Log(LogCommand),
    /// Read snapshot files (offline, read-only).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
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
    /// Check a snapshot file, or every snapshot file in a directory.
    Verify(SnapshotArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// A snapshot file, a snapshots directory, or a node's data directory.
    pub path: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Log(LogCommand::Dump(args)) => tools::log_dump(&args),
        Command::Log(LogCommand::Verify(args)) => tools::log_verify(&args),
        Command::Snapshot(SnapshotCommand::Inspect(args)) => tools::snapshot_inspect(&args),
        Command::Snapshot(SnapshotCommand::Verify(args)) => tools::snapshot_verify(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gavel: {err:#}");
            let corrupt = err.chain().any(|e| {
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
