//! Append throughput of the sled log store: single entries vs batches of 64, with and
//! without the power-loss `fsync`. Bounded by entry count and time.
//!
//! Run: `cargo bench -p gavel-storage --bench append` (full: 5000 entries or 20 s per
//! case) or with `-- --quick` (1000 entries or 5 s per case). Writes into a temp dir under
//! `./target` (on the project's disk, not a tmpfs).

use std::time::{Duration, Instant};

use gavel_storage::{Command, Entry, LogStore, LogStoreOptions, Op};
use openraft::EntryPayload;

fn entry(index: u64) -> Entry {
    let op = Op::PlaceBid {
        auction_id: index % 100 + 1,
        bidder: format!("bidder-{}", index % 37),
        amount: Some(1_000 + index),
        max_amount: None,
    };
    Entry {
        log_id: gavel_storage::log_id(1, 1, index),
        payload: EntryPayload::Normal(Command::new(1_700_000_000_000 + index, op).with_key(&format!("key-{index}"))),
    }
}

struct CaseResult {
    name: String,
    entries: u64,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

impl CaseResult {
    fn print(&self) {
        let rate = self.entries as f64 / self.secs;
        println!(
            "{:<20} {:>9} {:>12.0} {:>14.0} {:>14.0} {:>12.0}",
            self.name, self.entries, rate, self.p50_us, self.p99_us, self.max_us
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

async fn run_case(name: &str, fsync: bool, batch: u64, max_entries: u64, max_time: Duration) -> CaseResult {
    std::fs::create_dir_all("target").expect("target dir");
    let dir = tempfile::tempdir_in("target").expect("temp dir");
    let store = LogStore::open(
        dir.path().join("sled"),
        LogStoreOptions {
            fsync,
            ..Default::default()
        },
    )
    .expect("open");
    let mut latencies = Vec::new();
    let mut next = 1u64;
    let start = Instant::now();
    while next <= max_entries && start.elapsed() < max_time {
        let entries: Vec<Entry> = (next..next + batch).map(entry).collect();
        let t = Instant::now();
        store.append_entries(entries).await.expect("append");
        latencies.push(t.elapsed());
        next += batch;
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort();
    CaseResult {
        name: name.to_string(),
        entries: next - 1,
        secs,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        max_us: percentile(&latencies, 1.0),
    }
}

/// Baseline: sled alone, one insert + one flush per entry, no framing, no fsync, no
/// thread hop. Shows how much of the single-entry cost is sled's flush itself.
fn raw_sled_case(max_entries: u64, max_time: Duration) -> CaseResult {
    let dir = tempfile::tempdir_in("target").expect("temp dir");
    let db = sled::open(dir.path()).expect("open sled");
    let value = vec![7u8; 120];
    let mut latencies = Vec::new();
    let start = Instant::now();
    let mut n = 0;
    while n < max_entries && start.elapsed() < max_time {
        let t = Instant::now();
        db.insert(n.to_be_bytes(), value.as_slice()).expect("insert");
        db.flush().expect("flush");
        latencies.push(t.elapsed());
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort();
    CaseResult {
        name: "raw sled, single".into(),
        entries: n,
        secs,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        max_us: percentile(&latencies, 1.0),
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (max_entries, max_time) = if quick {
        (1_000, Duration::from_secs(5))
    } else {
        (5_000, Duration::from_secs(20))
    };
    let cases = [
        ("single, fsync", true, 1),
        ("batch 64, fsync", true, 64),
        ("single, no fsync", false, 1),
        ("batch 64, no fsync", false, 64),
    ];
    println!(
        "{:<20} {:>9} {:>12} {:>14} {:>14} {:>12}",
        "case", "entries", "entries/s", "p50 flush µs", "p99 flush µs", "max µs"
    );
    let mut results = Vec::new();
    for (name, fsync, batch) in cases {
        let r = run_case(name, fsync, batch, max_entries, max_time).await;
        r.print();
        results.push(r);
    }
    let r = raw_sled_case(max_entries, max_time);
    r.print();
    results.push(r);
    let rate = |i: usize| results[i].entries as f64 / results[i].secs;
    println!(
        "batch/single with fsync: {:.1}x; fsync cost (single): {:.2}x slower; fsync cost (batch 64): {:.2}x slower",
        rate(1) / rate(0),
        rate(2) / rate(0),
        rate(3) / rate(1)
    );
}
