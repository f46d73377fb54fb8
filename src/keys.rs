//! `gavel key generate`: an ed25519 signing key for signed bids, and reading it back.
//!
//! A key file holds the 32-byte secret seed as base64 on one line, mode 0600. The public
//! key (base64) is what `POST /v1/accounts {"public_key"}` takes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Args;
use ed25519_dalek::SigningKey;

#[derive(Debug, Args)]
pub struct KeyGenerateArgs {
    /// Where to write the secret key (refused if it exists).
    #[arg(long)]
    pub out: PathBuf,
}

/// Reads a key file written by `gavel key generate`.
pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let seed = STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| format!("{} does not hold a base64 ed25519 seed of 32 bytes", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

pub fn generate(args: &KeyGenerateArgs) -> Result<ExitCode> {
    if args.out.exists() {
        bail!("{} exists; not overwriting a key", args.out.display());
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("reading the OS random source: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    gavel_storage::fsutil::write_durably_private(&args.out, format!("{}\n", STANDARD.encode(seed)).as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("secret key written to {} (keep it; mode 0600)", args.out.display());
    println!("{}", STANDARD.encode(key.verifying_key().to_bytes()));
    Ok(ExitCode::SUCCESS)
}
