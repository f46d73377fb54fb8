//! Offline tools: `gavel log dump|verify` and `gavel snapshot inspect|verify`.
//! Read-only; tables for people, `--json` for scripts.

use std::process::ExitCode;

use anyhow::Result;
use comfy_table::{presets, Table};
use gavel_storage::inspect::{inspect_snapshot, scan_log, snapshot_files, LogReport, LogView, SnapshotReport};

use crate::cli::{LogArgs, LogDumpArgs, SnapshotArgs};
use crate::terminal::{safe, safe_json, safe_json_line};

pub const EXIT_CORRUPT: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header.iter().copied());
    t
}

fn kv_table(rows: Vec<(&str, String)>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    t
}

fn report_errors(what: &str, errors: &[String]) -> ExitCode {
    if errors.is_empty() {
        return ExitCode::SUCCESS;
    }
    for e in errors {
        eprintln!("gavel: {}", safe(e));
    }
    eprintln!("gavel: {what}: {} problem(s) found", errors.len());
    ExitCode::from(EXIT_CORRUPT)
}

pub fn log_dump(args: &LogDumpArgs) -> Result<ExitCode> {
    let view = LogView::open(&args.log.data_dir)?;
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut rows = table(&["index", "term", "leader", "kind", "ts_ms", "bytes", "detail"]);
    let report = scan_log(&view, |r| {
        if r.index < args.from || printed >= limit {
            return;
        }
        printed += 1;
        if args.log.json {
            // As the API writes them: times in RFC 3339, the operation as JSON.
            let line = serde_json::json!({
                "index": r.index,
                "term": r.term,
                "leader": r.leader,
                "kind": r.kind,
                "ts": r.ts_ms.map(gavel_api::json::rfc3339),
                "bytes": r.bytes,
                "op": r.op,
            });
            println!("{}", safe_json_line(&line));
        } else {
            rows.add_row(vec![
                r.index.to_string(),
                r.term.to_string(),
                r.leader.to_string(),
                r.kind.clone(),
                r.ts_ms.map(|t| t.to_string()).unwrap_or_default(),
                r.bytes.to_string(),
                safe(&r.detail),
            ]);
        }
    })?;
    if !args.log.json {
        println!("{rows}");
    }
    Ok(report_errors(
        &format!("log in {}", args.log.data_dir.display()),
        &report.errors,
    ))
}

pub fn log_verify(args: &LogArgs) -> Result<ExitCode> {
    let view = LogView::open(&args.data_dir)?;
    let report = scan_log(&view, |_| {})?;
    if args.json {
        println!("{}", safe_json(&serde_json::to_value(&report)?));
    } else {
        println!("{}", log_report_table(&report));
        if report.is_ok() {
            println!("OK: {} records verified", report.entries);
        }
    }
    Ok(report_errors(
        &format!("log in {}", args.data_dir.display()),
        &report.errors,
    ))
}

fn opt<T: std::fmt::Debug>(v: &Option<T>) -> String {
    v.as_ref().map(|v| format!("{v:?}")).unwrap_or_else(|| "-".into())
}

fn log_report_table(r: &LogReport) -> Table {
    let mut rows = vec![
        ("entries", r.entries.to_string()),
        ("first index", opt(&r.first_index)),
        ("last index", opt(&r.last_index)),
        ("last term", opt(&r.last_term)),
        ("record bytes", r.bytes.to_string()),
    ];
    if let Some(m) = &r.meta {
        rows.push(("vote", m.vote.map(|v| v.to_string()).unwrap_or_else(|| "-".into())));
        rows.push((
            "committed",
            m.committed.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
        ));
        rows.push((
            "last purged",
            m.last_purged.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
        ));
    }
    let kinds = r
        .by_kind
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    rows.push(("by kind", kinds));
    rows.push(("problems", r.errors.len().to_string()));
    kv_table(rows)
}

fn snapshot_table(r: &SnapshotReport) -> Table {
    let statuses = r
        .counts
        .auctions_by_status
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    let nodes = r
        .nodes
        .iter()
        .map(|(id, addr)| format!("{id}@{addr}"))
        .collect::<Vec<_>>()
        .join(" ");
    kv_table(vec![
        ("file", r.file.clone()),
        ("size", format!("{} bytes", r.size_bytes)),
        ("format version", r.format_version.to_string()),
        (
            "last log id",
            format!("term {} index {} (leader {})", r.term, r.index, r.leader),
        ),
        ("snapshot id", r.snapshot_id.clone()),
        ("voters", format!("{:?}", r.voters)),
        ("learners", format!("{:?}", r.learners)),
        ("nodes", nodes),
        ("auctions", statuses),
        ("bids", r.counts.bids.to_string()),
        ("workers", r.counts.workers.to_string()),
        ("idempotency keys", r.counts.idempotency_keys.to_string()),
        ("last command ts_ms", r.last_ts_ms.to_string()),
        ("state hash", r.state_hash.clone()),
        (
            "payload",
            format!("{} bytes, crc32 {}", r.payload_bytes, r.payload_crc32),
        ),
        ("header crc32", r.header_crc32.clone()),
    ])
}

pub fn snapshot_inspect(args: &SnapshotArgs) -> Result<ExitCode> {
    let files = snapshot_files(&args.path)?;
    let report = inspect_snapshot(&files[0])?;
    if args.json {
        println!("{}", safe_json(&serde_json::to_value(&report)?));
    } else {
        println!("{}", snapshot_table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn snapshot_verify(args: &SnapshotArgs) -> Result<ExitCode> {
    let files = snapshot_files(&args.path)?;
    let mut errors = Vec::new();
    let mut results = Vec::new();
    for file in &files {
        match inspect_snapshot(file) {
            Ok(r) => results.push(serde_json::json!({"file": r.file, "ok": true, "index": r.index, "term": r.term, "state_hash": r.state_hash})),
            Err(e) => {
                results.push(serde_json::json!({"file": file.display().to_string(), "ok": false, "error": e.to_string()}));
                errors.push(e.to_string());
            }
        }
    }
    if args.json {
        println!("{}", safe_json(&serde_json::to_value(&results)?));
    } else {
        let mut t = table(&["file", "result"]);
        for r in &results {
            let verdict = if r["ok"].as_bool() == Some(true) {
                format!("OK term {} index {}", r["term"], r["index"])
            } else {
                "CORRUPT".to_string()
            };
            t.add_row(vec![r["file"].as_str().unwrap_or_default().to_string(), verdict]);
        }
        println!("{t}");
    }
    Ok(report_errors("snapshot verify", &errors))
}
