//! `gavel account create|show|rotate|disable`: accounts through a node's HTTP API, with
//! an admin's token (`--token`/`GAVEL_TOKEN`; showing or rotating one's own account needs
//! only its own token).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::{base_url, refused, Client};
use crate::terminal::{safe, safe_json};

#[derive(Debug, Args)]
pub struct AccountArgs {
    /// Node to talk to (any node).
    #[arg(long, env = "GAVEL_NODE", default_value = "http://127.0.0.1:7070", global = true)]
    pub node: String,
    #[arg(long, env = "GAVEL_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the API's JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AccountCommand,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account; its token is printed once.
    Create {
        name: String,
        /// admin, seller or bidder; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Most the account may risk in open auctions, in minor units.
        #[arg(long)]
        budget: Option<u64>,
        /// ed25519 public key (base64, from `gavel key generate`): its bids must be signed.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Show an account (never its token).
    Show { name: String },
    /// Replace the account's token; the old one stops working at once.
    Rotate { name: String },
    /// Disable the account for good.
    Disable { name: String },
}

pub fn run(args: AccountArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = Client {
            http: reqwest::Client::new(),
            base: base_url(&args.node),
            token: args.token.clone(),
        };
        let answer = match &args.command {
            AccountCommand::Create {
                name,
                roles,
                budget,
                public_key,
            } => {
                let mut body = json!({ "name": name, "roles": roles });
                if let Some(b) = budget {
                    body["budget"] = json!(b);
                }
                if let Some(k) = public_key {
                    body["public_key"] = json!(k);
                }
                client.post("/v1/accounts", body, None).await?
            }
            AccountCommand::Show { name } => client.get(&format!("/v1/accounts/{name}")).await?,
            AccountCommand::Rotate { name } => {
                client
                    .post(&format!("/v1/accounts/{name}/tokens"), json!({}), None)
                    .await?
            }
            AccountCommand::Disable { name } => client.delete(&format!("/v1/accounts/{name}")).await?,
        };
        if let Some(code) = refused(&answer) {
            return Ok(code);
        }
        if args.json {
            println!("{}", safe_json(&answer.body));
            return Ok(ExitCode::SUCCESS);
        }
        let text = |v: &Value| match v {
            Value::Null => "-".to_string(),
            Value::String(s) => safe(s),
            other => safe(&other.to_string()),
        };
        let b = &answer.body;
        for field in [
            "name",
            "roles",
            "budget",
            "exposure",
            "public_key",
            "disabled",
            "created_at",
        ] {
            println!("{field:<11} {}", text(&b[field]));
        }
        if let Some(token) = b["token"].as_str() {
            println!("token       {}", safe(token));
            eprintln!("the token is shown only this once: keep it (GAVEL_TOKEN=…)");
        }
        Ok(ExitCode::SUCCESS)
    })
}
