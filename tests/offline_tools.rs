//! `gavel log dump|verify` and `gavel snapshot inspect|verify` on a data dir this test
//! produces with the real storage engine, then on corrupted copies of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;

use gavel_storage::snapshot::list_snapshot_files;
use gavel_storage::{AuctionSpec, Command, Entry, IncrementRule, LogStore, LogStoreOptions, Op, StateMachineStore};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, EntryPayload, Membership, Vote};

const T0: u64 = 1_800_000_000_000;

fn gavel(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(args)
        .output()
        .expect("run gavel")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn entry(index: u64, payload: gavel_storage::EntryPayload) -> Entry {
    Entry {
        log_id: gavel_storage::log_id(1, 1, index),
        payload,
    }
}

/// A data dir with a membership entry, a worker, an auction, bids and a snapshot in the
/// middle, written through the same code a node uses.
async fn produce_data_dir(dir: &Path) {
    let mut log = LogStore::open(dir.join("sled"), LogStoreOptions::default()).unwrap();
    let sm = StateMachineStore::open(dir.join("snapshots"), dir.join("archive")).unwrap();
    let membership = Membership::new(
        vec![BTreeSet::from([1])],
        BTreeMap::from([(1, BasicNode::new("127.0.0.1:7070"))]),
    )
    .unwrap();
    let spec = AuctionSpec {
        seller: "sam".into(),
        title: "Clock".into(),
        starting_price: 500,
        increment: IncrementRule::Fixed(50),
        reserve_price: None,
        starts_at_ms: T0,
        ends_at_ms: T0 + 60_000,
        soft_close: None,
        buy_now_price: None,
    };
    let mut entries = vec![
        entry(1, EntryPayload::Blank),
        entry(2, EntryPayload::Membership(membership)),
        entry(
            3,
            EntryPayload::Normal(Command::new(
                T0,
                Op::RegisterWorker {
                    node_id: 1,
                    addr: "127.0.0.1:7070".into(),
                    udp_addr: "127.0.0.1:7071".into(),
                    max_auctions: 5,
                },
            )),
        ),
        entry(
            4,
            EntryPayload::Normal(Command::new(T0 + 1, Op::CreateAuction { spec, worker: Some(1) })),
        ),
    ];
    for i in 0..6u64 {
        let bidder = if i % 2 == 0 { "ann" } else { "bob" };
        let op = Op::PlaceBid {
            auction_id: 1,
            bidder: bidder.into(),
            amount: Some(500 + i * 50),
            max_amount: None,
        };
        entries.push(entry(
            5 + i,
            EntryPayload::Normal(Command::new(T0 + 10 + i, op).with_key(&format!("k{i}"))),
        ));
    }
    log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    log.append_entries(entries[..7].to_vec()).await.unwrap();
    sm.apply_entries(entries[..7].to_vec()).unwrap();
    sm.build().await.unwrap();
    log.append_entries(entries[7..].to_vec()).await.unwrap();
    sm.apply_entries(entries[7..].to_vec()).unwrap();
    log.save_committed(Some(entries.last().unwrap().log_id)).await.unwrap();
    sm.build().await.unwrap();
    log.sync().await.unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn tools_read_a_sound_data_dir_and_reject_corrupted_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node1");
    produce_data_dir(&data).await;
    let data_s = data.to_str().unwrap();

    eprintln!("phase: log verify and dump on a sound data dir");
    let out = gavel(&["log", "verify", "--data-dir", data_s]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "verify failed: {stdout}\n{stderr}");
    assert!(stdout.contains("OK: 10 records verified"), "{stdout}");

    let out = gavel(&["log", "verify", "--data-dir", data_s, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verify --json is JSON");
    assert_eq!(report["entries"], 10);
    assert_eq!(report["last_index"], 10);
    assert_eq!(report["meta"]["committed"]["index"], 10);
    assert_eq!(report["by_kind"]["place_bid"], 6);

    let out = gavel(&[
        "log",
        "dump",
        "--data-dir",
        data_s,
        "--json",
        "--from",
        "4",
        "--limit",
        "2",
    ]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["index"], 4);
    assert_eq!(lines[0]["kind"], "create_auction");
    assert_eq!(lines[1]["kind"], "place_bid");
    let (table, _) = text(&gavel(&["log", "dump", "--data-dir", data_s]));
    assert!(
        table.contains("membership") && table.contains("register_worker"),
        "{table}"
    );

    eprintln!("phase: snapshot inspect and verify on a sound data dir");
    let out = gavel(&["snapshot", "inspect", data_s, "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snap["index"], 10);
    assert_eq!(snap["voters"], serde_json::json!([1]));
    assert_eq!(snap["counts"]["bids"], 6);
    assert_eq!(snap["counts"]["workers"], 1);
    assert_eq!(snap["counts"]["auctions_by_status"]["open"], 1);
    let sm = StateMachineStore::open(data.join("snapshots"), data.join("archive")).unwrap();
    assert_eq!(
        snap["state_hash"],
        sm.state_hash(),
        "inspect shows the state hash the node computes"
    );
    let out = gavel(&["snapshot", "verify", data_s]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0.matches("OK term").count(), 2);

    eprintln!("phase: a flipped byte in a log record fails log verify, naming the index");
    let bad = tmp.path().join("bad-log");
    copy_dir(&data, &bad);
    {
        let log = LogStore::open(bad.join("sled"), LogStoreOptions::default()).unwrap();
        let mut raw = log.raw_get(6).unwrap().unwrap();
        let at = raw.len() / 2 + 4;
        raw[at] ^= 0x01;
        log.raw_put(6, &raw).unwrap();
        let torn = log.raw_get(10).unwrap().unwrap();
        log.raw_put(10, &torn[..torn.len() - 1]).unwrap();
    }
    let out = gavel(&["log", "verify", "--data-dir", bad.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("log record at index 6") && stderr.contains("checksum mismatch"),
        "{stderr}"
    );
    assert!(
        stderr.contains("log record at index 10") && stderr.contains("torn"),
        "{stderr}"
    );
    assert_eq!(
        gavel(&["log", "dump", "--data-dir", bad.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );

    eprintln!("phase: a flipped byte and a truncation in snapshot files fail snapshot verify");
    let bad = tmp.path().join("bad-snap");
    copy_dir(&data, &bad);
    let files = list_snapshot_files(&bad.join("snapshots")).unwrap();
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0x80;
    std::fs::write(&files[0], &bytes).unwrap();
    let out = gavel(&["snapshot", "verify", bad.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(files[0].to_str().unwrap()) && stderr.contains("payload checksum mismatch"),
        "{stderr}"
    );
    assert!(
        stdout.contains("CORRUPT") && stdout.contains("OK term"),
        "the older file still verifies: {stdout}"
    );
    let out = gavel(&["snapshot", "inspect", files[0].to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let before = std::fs::read(&files[0]).unwrap();
    assert_eq!(before, bytes, "tools never modify what they read");

    let old = &files[1];
    let len = std::fs::metadata(old).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(old)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let out = gavel(&["snapshot", "verify", old.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v[0]["error"].as_str().unwrap().contains("truncated"), "{v}");

    eprintln!("phase: a data dir in use by a running node is refused, missing paths are clear");
    let _held = LogStore::open(data.join("sled"), LogStoreOptions::default()).unwrap();
    let out = gavel(&["log", "verify", "--data-dir", data_s]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("in use by a running node"), "{:?}", text(&out));
    let out = gavel(&["snapshot", "inspect", tmp.path().join("nope").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("does not exist"));
}
