//! Offline tools: `gavel log dump|verify`, `gavel snapshot inspect|verify` and
//! `gavel archive verify|dump`.
//! Read-only; tables for people, `--json` for scripts.

use std::process::ExitCode;

use anyhow::Result;
use comfy_table::{presets, Table};
use gavel_storage::inspect::{inspect_snapshot, scan_log, snapshot_files, LogReport, LogView, SnapshotReport};

use crate::cli::{ArchiveArgs, ArchiveDumpArgs, LogArgs, LogDumpArgs, SnapshotArgs, SnapshotRestoreArgs};
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
        ("archived auctions", r.archived_auctions.to_string()),
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
        match gavel_storage::inspect::inspect_snapshot_or_backup(file, true) {
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

/// The archive directory `path` names: a data dir's `archive/`, or the directory itself.
fn archive_at(path: &std::path::Path) -> Result<gavel_storage::archive::Archive> {
    let dir = gavel_storage::inspect::archive_dir(path);
    let dir = if dir.is_dir() { dir } else { path.to_path_buf() };
    Ok(gavel_storage::archive::Archive::open_read_only(&dir)?)
}

fn archive_line(seq: u64, r: &gavel_storage::archive::ArchivedAuction, full: bool) -> serde_json::Value {
    let a = &r.auction;
    let mut v = serde_json::json!({
        "seq": seq,
        "auction_id": a.id,
        "title": a.spec.title,
        "seller": a.spec.seller,
        "format": r.format.as_ref().map_or("english", |f| f.name()),
        "status": a.status.as_str(),
        "outcome": a.outcome.as_ref().map(|o| o.as_str()),
        "result": a.outcome.as_ref().map(gavel_api::auctions::outcome_view),
        "bid_count": a.bids.len(),
        "created_at": gavel_api::json::rfc3339(a.created_at_ms),
        "closed_at": a.closed_at_ms.map(gavel_api::json::rfc3339),
        "archived_at": gavel_api::json::rfc3339(r.archived_at_ms),
    });
    if full {
        v["bids"] = serde_json::json!(a
            .bids
            .iter()
            .map(|b| serde_json::json!({
                "bid_id": b.bid_id,
                "seq": b.seq,
                "bidder": b.bidder,
                "amount": b.amount,
                "price_after": b.price_after,
                "leader_after": b.leader_after,
                "at": gavel_api::json::rfc3339(b.ts_ms),
            }))
            .collect::<Vec<_>>());
    }
    v
}

pub fn archive_verify(args: &ArchiveArgs) -> Result<ExitCode> {
    let archive = archive_at(&args.data_dir)?;
    match archive.verify(|_, _| {}) {
        Ok(stats) => {
            if args.json {
                println!(
                    "{}",
                    safe_json(&serde_json::json!({
                        "ok": true,
                        "records": stats.records,
                        "auctions": stats.auctions,
                        "bytes": stats.bytes,
                        "segments": stats.segments,
                        "digest": hex::encode(stats.digest),
                    }))
                );
            } else {
                println!(
                    "{}",
                    kv_table(vec![
                        ("records", stats.records.to_string()),
                        ("auctions", stats.auctions.to_string()),
                        ("bytes", stats.bytes.to_string()),
                        ("segments", stats.segments.to_string()),
                        ("digest", hex::encode(stats.digest)),
                    ])
                );
                println!("OK: {} records verified", stats.records);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report_errors(
            &format!("archive in {}", archive.dir().display()),
            &[e.to_string()],
        )),
    }
}

pub fn archive_dump(args: &ArchiveDumpArgs) -> Result<ExitCode> {
    let archive = archive_at(&args.archive.data_dir)?;
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut rows = table(&["seq", "auction", "title", "status", "outcome", "bids", "closed_at"]);
    let result = archive.verify(|seq, record| {
        if printed >= limit || args.auction.is_some_and(|id| id != record.auction.id) {
            return;
        }
        printed += 1;
        if args.archive.json {
            println!("{}", safe_json_line(&archive_line(seq, record, args.full)));
        } else {
            let a = &record.auction;
            rows.add_row(vec![
                seq.to_string(),
                a.id.to_string(),
                safe(&a.spec.title),
                a.status.as_str().to_string(),
                a.outcome.as_ref().map(|o| o.as_str()).unwrap_or("").to_string(),
                a.bids.len().to_string(),
                a.closed_at_ms.map(gavel_api::json::rfc3339).unwrap_or_default(),
            ]);
        }
    });
    if !args.archive.json {
        println!("{rows}");
    }
    Ok(match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => report_errors(&format!("archive in {}", archive.dir().display()), &[e.to_string()]),
    })
}

pub fn snapshot_restore(args: &SnapshotRestoreArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let restored = runtime.block_on(gavel_storage::restore::restore(
        &args.file,
        &args.data_dir,
        args.id,
        &args.advertise,
    ))?;
    if args.json {
        println!("{}", safe_json(&serde_json::to_value(&restored)?));
    } else {
        println!(
            "{}",
            kv_table(vec![
                ("data dir", restored.data_dir.display().to_string()),
                ("node id", restored.node_id.to_string()),
                ("address", restored.addr.clone()),
                ("term", restored.term.to_string()),
                ("index", restored.index.to_string()),
                ("state hash", restored.state_hash.clone()),
                ("archived auctions", restored.archived_auctions.to_string()),
            ])
        );
        println!(
            "Restored. Start it as a one-node cluster with\n  gavel serve --id {} --data-dir {} --listen {}\n\
             (the same cluster secret as the nodes that will join it), then start the others with --join {}.",
            restored.node_id,
            restored.data_dir.display(),
            restored.addr,
            restored.addr
        );
    }
    Ok(ExitCode::SUCCESS)
}
