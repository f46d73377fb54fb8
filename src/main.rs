//! The `gavel` binary: parses the command line and hands over to one function.

mod accounts_cli;
mod audit;
mod cli;
mod client;
mod config;
mod keys;
mod node;
mod systemd;
mod terminal;
mod tools;
mod watch;

use clap::Parser;

/// jemalloc, which gives memory freed after a busy moment back to the system (see the
/// workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    cli::run(cli)
}
