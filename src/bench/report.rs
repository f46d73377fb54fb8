//! Reports: one run as a table or JSON; several runs side by side as markdown and JSON,
//! with Gavel's ratios to the other systems and the targets checked per cell.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use comfy_table::{presets, Table};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ReportArgs, Strategy, System};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// One run of `gavel bench run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub system: System,
    pub label: String,
    pub strategy: Strategy,
    pub clients: usize,
    pub auctions: usize,
    pub endpoints: Vec<String>,
    pub duration_secs: f64,
    /// Answered bids: accepted plus rejected.
    pub bids: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Timeouts, 5xx, lost connections.
    pub errors: u64,
    /// etcd only: compare-and-set attempts lost to a concurrent bid.
    pub cas_retries: u64,
    pub bids_per_sec: f64,
    pub accepted_per_sec: f64,
    /// Of answered bids, in milliseconds.
    pub latency_ms: Latency,
    pub refusals: BTreeMap<String, u64>,
    pub error_samples: Vec<String>,
    /// Bids the system held after the run.
    pub stored_bids: u64,
    /// accepted <= stored_bids <= accepted + errors.
    pub verified: bool,
}

pub fn run_table(r: &RunReport) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    let refusals: Vec<String> = r.refusals.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let rows: Vec<(&str, String)> = vec![
        ("system", format!("{:?}", r.system).to_lowercase()),
        (
            "workload",
            format!("{} clients ({:?}), {} auctions", r.clients, r.strategy, r.auctions).to_lowercase(),
        ),
        ("duration", format!("{:.1} s", r.duration_secs)),
        ("bids answered", format!("{} ({:.0}/s)", r.bids, r.bids_per_sec)),
        ("accepted", format!("{} ({:.0}/s)", r.accepted, r.accepted_per_sec)),
        ("rejected", format!("{} [{}]", r.rejected, refusals.join(", "))),
        ("errors", r.errors.to_string()),
        ("cas retries", r.cas_retries.to_string()),
        (
            "latency ms",
            format!(
                "p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                r.latency_ms.p50, r.latency_ms.p90, r.latency_ms.p99, r.latency_ms.max
            ),
        ),
        (
            "stored bids",
            format!(
                "{} ({})",
                r.stored_bids,
                if r.verified { "verified" } else { "MISMATCH" }
            ),
        ),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    for e in &r.error_samples {
        t.add_row(vec!["error sample".to_string(), e.clone()]);
    }
    t.to_string()
}

/// One cell of the matrix: Gavel against one other system.
#[derive(Debug, Serialize)]
struct Comparison {
    auctions: usize,
    clients: usize,
    other: System,
    throughput_ratio: f64,
    p50_ratio: f64,
    p99_ratio: f64,
    /// The target for this cell, if it has one, and whether it held.
    target: Option<String>,
    target_met: Option<bool>,
}

fn compare(gavel: &RunReport, other: &RunReport) -> Comparison {
    let (target, met) = match (other.system, gavel.clients) {
        (System::Etcd, 64) => (
            Some("throughput >= 2x etcd and p99 <= etcd".to_string()),
            Some(gavel.bids_per_sec >= 2.0 * other.bids_per_sec && gavel.latency_ms.p99 <= other.latency_ms.p99),
        ),
        (System::Etcd, 1) => (
            Some("p50 <= etcd".to_string()),
            Some(gavel.latency_ms.p50 <= other.latency_ms.p50),
        ),
        _ => (None, None),
    };
    Comparison {
        auctions: gavel.auctions,
        clients: gavel.clients,
        other: other.system,
        throughput_ratio: gavel.bids_per_sec / other.bids_per_sec.max(f64::MIN_POSITIVE),
        p50_ratio: gavel.latency_ms.p50 / other.latency_ms.p50.max(f64::MIN_POSITIVE),
        p99_ratio: gavel.latency_ms.p99 / other.latency_ms.p99.max(f64::MIN_POSITIVE),
        target,
        target_met: met,
    }
}

fn markdown(runs: &[RunReport], comparisons: &[Comparison]) -> String {
    let mut out = String::new();
    out.push_str("| auctions | clients | system | bids/s | accepted/s | p50 ms | p90 ms | p99 ms | max ms | errors | verified |\n");
    out.push_str("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in runs {
        let system = format!("{:?}", r.system).to_lowercase();
        let _ = writeln!(
            out,
            "| {} | {} | {}{} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} |",
            r.auctions,
            r.clients,
            system,
            if r.label.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.label)
            },
            r.bids_per_sec,
            r.accepted_per_sec,
            r.latency_ms.p50,
            r.latency_ms.p90,
            r.latency_ms.p99,
            r.latency_ms.max,
            r.errors,
            if r.verified { "yes" } else { "**NO**" },
        );
    }
    if !comparisons.is_empty() {
        out.push_str("\n| auctions | clients | gavel vs | throughput | p50 | p99 | target | met |\n");
        out.push_str("|---:|---:|---|---:|---:|---:|---|---|\n");
        for c in comparisons {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2}x | {:.2}x | {:.2}x | {} | {} |",
                c.auctions,
                c.clients,
                format!("{:?}", c.other).to_lowercase(),
                c.throughput_ratio,
                c.p50_ratio,
                c.p99_ratio,
                c.target.as_deref().unwrap_or(""),
                match c.target_met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                },
            );
        }
    }
    out
}

pub fn write(args: &ReportArgs) -> Result<()> {
    let mut runs = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let run: RunReport = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        runs.push(run);
    }
    runs.sort_by_key(|r| (r.auctions, r.clients, r.system as u8));
    let mut comparisons = Vec::new();
    for gavel in runs.iter().filter(|r| r.system == System::Gavel) {
        for other in runs
            .iter()
            .filter(|r| r.system != System::Gavel && r.auctions == gavel.auctions && r.clients == gavel.clients)
        {
            comparisons.push(compare(gavel, other));
        }
    }
    let md = markdown(&runs, &comparisons);
    match &args.markdown {
        Some(path) => std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{md}"),
    }
    if let Some(path) = &args.json {
        let doc = json!({ "runs": runs, "comparisons": comparisons });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
