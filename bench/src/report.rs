//! Reports: one run as a table or JSON; several runs side by side as markdown and JSON,
//! with Gavel's ratios to the other systems and the targets checked per cell.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use comfy_table::{presets, Table};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ReportArgs, Route, Strategy, System};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// One run of `gavel-bench run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub system: System,
    pub label: String,
    pub strategy: Strategy,
    pub clients: usize,
    pub auctions: usize,
    pub endpoints: Vec<String>,
    pub route: Route,
    /// The endpoint every client used, with `route: leader`.
    pub leader: Option<String>,
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

/// One system in one cell of the matrix: the median over its repeated runs.
#[derive(Debug, Clone, Serialize)]
struct Cell {
    system: System,
    label: String,
    auctions: usize,
    clients: usize,
    runs: usize,
    bids_per_sec: f64,
    accepted_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    verified: bool,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn cells(runs: &[RunReport]) -> Vec<Cell> {
    let mut groups: BTreeMap<(usize, usize, u8, String), Vec<&RunReport>> = BTreeMap::new();
    for r in runs {
        groups
            .entry((r.auctions, r.clients, r.system as u8, r.label.clone()))
            .or_default()
            .push(r);
    }
    groups
        .into_values()
        .map(|g| {
            let m = |f: fn(&RunReport) -> f64| median(g.iter().map(|r| f(r)).collect());
            Cell {
                system: g[0].system,
                label: g[0].label.clone(),
                auctions: g[0].auctions,
                clients: g[0].clients,
                runs: g.len(),
                bids_per_sec: m(|r| r.bids_per_sec),
                accepted_per_sec: m(|r| r.accepted_per_sec),
                p50_ms: m(|r| r.latency_ms.p50),
                p90_ms: m(|r| r.latency_ms.p90),
                p99_ms: m(|r| r.latency_ms.p99),
                max_ms: m(|r| r.latency_ms.max),
                errors: g.iter().map(|r| r.errors).sum(),
                verified: g.iter().all(|r| r.verified),
            }
        })
        .collect()
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

fn compare(gavel: &Cell, other: &Cell) -> Comparison {
    let (target, met) = match (other.system, gavel.clients) {
        (System::Etcd, 64) => (
            Some("throughput >= 3x etcd and p99 <= etcd".to_string()),
            Some(gavel.bids_per_sec >= 3.0 * other.bids_per_sec && gavel.p99_ms <= other.p99_ms),
        ),
        (System::Etcd, 16) => (
            Some("throughput >= 1.5x etcd".to_string()),
            Some(gavel.bids_per_sec >= 1.5 * other.bids_per_sec),
        ),
        (System::Etcd, 1) => (Some("p50 <= etcd".to_string()), Some(gavel.p50_ms <= other.p50_ms)),
        _ => (None, None),
    };
    let ratio = |a: f64, b: f64| a / b.max(f64::MIN_POSITIVE);
    Comparison {
        auctions: gavel.auctions,
        clients: gavel.clients,
        other: other.system,
        throughput_ratio: ratio(gavel.bids_per_sec, other.bids_per_sec),
        p50_ratio: ratio(gavel.p50_ms, other.p50_ms),
        p99_ratio: ratio(gavel.p99_ms, other.p99_ms),
        target,
        target_met: met,
    }
}

fn name(system: System) -> String {
    format!("{system:?}").to_lowercase()
}

fn markdown(cells: &[Cell], comparisons: &[Comparison]) -> String {
    let mut out = String::new();
    out.push_str("| auctions | clients | system | runs | bids/s | accepted/s | p50 ms | p90 ms | p99 ms | max ms | errors | verified |\n");
    out.push_str("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for c in cells {
        let _ = writeln!(
            out,
            "| {} | {} | {}{} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} |",
            c.auctions,
            c.clients,
            name(c.system),
            if c.label.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.label)
            },
            c.runs,
            c.bids_per_sec,
            c.accepted_per_sec,
            c.p50_ms,
            c.p90_ms,
            c.p99_ms,
            c.max_ms,
            c.errors,
            if c.verified { "yes" } else { "**NO**" },
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
                name(c.other),
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
    let cells = cells(&runs);
    let mut comparisons = Vec::new();
    for gavel in cells.iter().filter(|c| c.system == System::Gavel) {
        for other in cells
            .iter()
            .filter(|c| c.system != System::Gavel && c.auctions == gavel.auctions && c.clients == gavel.clients)
        {
            comparisons.push(compare(gavel, other));
        }
    }
    let md = markdown(&cells, &comparisons);
    match &args.markdown {
        Some(path) => std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{md}"),
    }
    if let Some(path) = &args.json {
        let doc = json!({ "cells": cells, "comparisons": comparisons, "runs": runs });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
    }
}
