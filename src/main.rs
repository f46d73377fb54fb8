//! The `gavel` binary: parses the command line and hands over to one function.

mod accounts_cli;
mod audit;
mod cli;
mod client;
mod config;
mod keys;
mod node;
mod terminal;
mod tools;
mod watch;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    cli::run(cli)
}
