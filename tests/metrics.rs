//! `GET /metrics` on a real 3-node cluster after real work (bids, a snapshot, live
//! streams, rate-limit refusals): the series operators alert on exist with plausible
//! values, every metric the alerting rules and the dashboard in `deploy/` use is
//! exported, and Prometheus' own linter (`promtool check metrics`) accepts the scrape.
//! promtool (Debian package `prometheus`) is optional here; CI requires it
//! (`GAVEL_REQUIRE_PROMTOOL=1`).

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::json;

/// Bids accepted in the work phase.
const BIDS: u64 = 20;
/// Requests sent at most to provoke a rate-limit refusal.
const LIMIT_PROBES_MAX: u64 = 200;

/// One sample line of a scrape.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// One scrape: its text and its samples.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (series, value) = line.rsplit_once(' ').expect("a sample line is `series value`");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label=value");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), Vec::new()),
            };
            samples.push(Sample { name, labels, value });
        }
        Scrape { text, samples }
    }

    /// Samples of `name` whose labels include `want`.
    fn find(&self, name: &str, want: &[(&str, &str)]) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && want
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
            .collect()
    }

    /// The one sample of `name` with labels `want`; panics if absent.
    fn value(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        let found = self.find(name, want);
        assert_eq!(found.len(), 1, "one series {name}{want:?} in the scrape");
        found[0]
    }

    /// Metric families (from `# TYPE` lines).
    fn families(&self) -> BTreeSet<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_string)
            .collect()
    }
}

async fn scrape(c: &TestCluster, id: u64) -> Scrape {
    let resp = c.http.get(c.node(id).url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    Scrape::parse(resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_operators_alert_on_are_exported_with_plausible_values() {
    let _serial = serial().await;
    // Per-account limits low enough for a burst to hit them; addresses unlimited (every
    // client here is 127.0.0.1).
    let config = format!(
        "{TEST_RAFT}snapshot_every_entries = 1000000\n[rate_limits]\nper_address_per_sec = 0\nper_account_per_sec = 5\nper_account_burst = 40\n"
    );
    let c = TestCluster::start(3, &config).await;
    let leader = c.leader().await;
    let followers: Vec<u64> = c.running().into_iter().filter(|id| *id != leader).collect();

    log("phase: before any work, every family is there (at zero where nothing happened)");
    let before = scrape(&c, leader).await;
    for family in [
        "gavel_raft_log_append_duration_seconds",
        "gavel_raft_log_fsync_duration_seconds",
        "gavel_raft_apply_duration_seconds",
        "gavel_snapshot_build_duration_seconds",
        "gavel_rate_limited_total",
        "gavel_live_streams",
        "gavel_websocket_dropped_total",
    ] {
        assert!(before.families().contains(family), "{family} is exported before use");
    }
    assert_eq!(before.value("gavel_snapshot_build_duration_seconds_count", &[]), 0.0);
    assert_eq!(before.value("gavel_rate_limited_total", &[("kind", "account")]), 0.0);

    log("phase: an auction and bids through the leader and a follower");
    let (status, auction) = c.post(leader, "/v1/auctions", &auction_body("lamp", 600), None).await;
    assert_eq!(status, 201, "{auction}");
    let id = auction["id"].as_u64().unwrap();
    let mut amount = 1000;
    for i in 0..BIDS {
        let via = if i % 2 == 0 { leader } else { followers[0] };
        let bidder = if i % 2 == 0 { "ann" } else { "bob" };
        let (status, body) = c
            .post(
                via,
                &format!("/v1/auctions/{id}/bids"),
                &json!({"bidder": bidder, "amount": amount}),
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
        amount = body["min_next_bid"].as_u64().unwrap();
    }

    log("phase: an SSE stream and a WebSocket are counted while open");
    let sse = c
        .http
        .get(c.node(leader).url(&format!("/v1/auctions/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/auctions/{id}/ws", c.node(leader).addr))
        .await
        .expect("WebSocket connects");
    c.wait_for("one SSE stream and one WebSocket counted", DEADLINE, || async {
        let s = scrape(&c, leader).await;
        (s.value("gavel_live_streams", &[("transport", "sse")]) == 1.0
            && s.value("gavel_live_streams", &[("transport", "websocket")]) == 1.0)
            .then_some(())
    })
    .await;
    drop(sse);
    drop(ws);
    c.wait_for("both streams counted as closed", DEADLINE, || async {
        let s = scrape(&c, leader).await;
        (s.value("gavel_live_streams", &[("transport", "sse")]) == 0.0
            && s.value("gavel_live_streams", &[("transport", "websocket")]) == 0.0)
            .then_some(())
    })
    .await;

    log("phase: a snapshot");
    let resp = c.admin(reqwest::Method::POST, leader, "/v1/admin/snapshot").await;
    assert_eq!(resp.status(), 200);

    log("phase: a burst from one account until the node refuses it with 429");
    let mut refused = 0;
    for _ in 0..LIMIT_PROBES_MAX {
        let (status, _) = c
            .post(
                leader,
                &format!("/v1/auctions/{id}/bids"),
                &json!({"bidder": "cid", "amount": 1}),
                None,
            )
            .await;
        if status == 429 {
            refused += 1;
            break;
        }
    }
    assert_eq!(refused, 1, "the account limit refused a request");

    log("phase: the leader's figures grew with the work");
    let after = scrape(&c, leader).await;
    for histogram in [
        "gavel_raft_log_append_duration_seconds",
        "gavel_raft_log_fsync_duration_seconds",
        "gavel_raft_apply_duration_seconds",
        "gavel_raft_apply_batch_entries",
        "gavel_raft_commit_duration_seconds",
        "gavel_proposer_batch_commands",
    ] {
        let count = format!("{histogram}_count");
        let (was, is) = (before.value(&count, &[]), after.value(&count, &[]));
        assert!(
            is >= was + BIDS as f64 / 2.0,
            "{count} grew with the bids: {was} -> {is}"
        );
        let inf = after.value(&format!("{histogram}_bucket"), &[("le", "+Inf")]);
        assert_eq!(inf, is, "{histogram}: the +Inf bucket holds every observation");
    }
    assert_eq!(after.value("gavel_snapshot_build_duration_seconds_count", &[]), 1.0);
    let snapshot_bytes = after.value("gavel_snapshot_size_bytes", &[]);
    let on_disk = std::fs::read_dir(c.node(leader).data_dir.join("snapshots"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .map(|e| e.metadata().unwrap().len())
        .max()
        .expect("a snapshot file");
    assert_eq!(snapshot_bytes, on_disk as f64, "the size gauge is the file's size");
    assert!(after.value("gavel_rate_limited_total", &[("kind", "account")]) >= 1.0);
    assert_eq!(after.value("gavel_rate_limited_total", &[("kind", "address")]), 0.0);
    let bids_201 = after.find(
        "gavel_http_request_duration_seconds_count",
        &[
            ("route", "/v1/auctions/{id}/bids"),
            ("method", "POST"),
            ("status", "201"),
        ],
    );
    assert_eq!(
        bids_201,
        [(BIDS / 2) as f64],
        "the leader answered half the bids itself"
    );
    assert_eq!(
        after.value("gavel_proposer_queue_commands", &[]),
        0.0,
        "idle: nothing queued"
    );
    assert_eq!(
        after.value("gavel_udp_send_queue_pushes", &[]),
        0.0,
        "idle: nothing queued"
    );
    let (free, size) = (
        after.value("gavel_disk_free_bytes", &[]),
        after.value("gavel_disk_size_bytes", &[]),
    );
    assert!(free > 0.0 && free <= size, "disk free {free} of {size}");

    log("phase: the leader reports each follower's lag, which drops to 0 once idle");
    c.wait_for("both followers caught up in the leader's view", DEADLINE, || async {
        let s = scrape(&c, leader).await;
        let lags: Vec<f64> = followers
            .iter()
            .map(|f| s.find("gavel_raft_replication_lag_entries", &[("follower", &f.to_string())]))
            .collect::<Vec<_>>()
            .concat();
        (lags == [0.0, 0.0]).then_some(())
    })
    .await;
    assert!(
        after
            .find(
                "gavel_raft_replication_lag_entries",
                &[("follower", &leader.to_string())]
            )
            .is_empty(),
        "no lag series for the leader itself"
    );

    log("phase: every node is ready, knows the leader, saw it elected, and applied every bid");
    for node in c.running() {
        let s = scrape(&c, node).await;
        assert_eq!(s.value("gavel_ready", &[]), 1.0, "node {node} ready");
        assert_eq!(s.value("gavel_raft_has_leader", &[]), 1.0, "node {node} has a leader");
        assert!(
            s.value("gavel_raft_leader_changes_total", &[]) >= 1.0,
            "node {node} saw a leader"
        );
        assert_eq!(
            s.value("gavel_applied_bids_total", &[]),
            BIDS as f64,
            "node {node} applied every bid"
        );
        if node != leader {
            assert!(
                s.find("gavel_raft_replication_lag_entries", &[]).is_empty(),
                "a follower reports no replication lag"
            );
        }
    }

    log("phase: the rules and the dashboard use only exported metrics");
    let mut exported = after.families();
    // Followers' scrapes have the same families; the lag series exist on the leader.
    for node in &followers {
        exported.extend(scrape(&c, *node).await.families());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["deploy/prometheus-rules.yml", "deploy/grafana-dashboard.json"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for name in metric_names(&text) {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| exported.contains(*f)))
                .unwrap_or(&name);
            assert!(exported.contains(family), "{file} uses {name}, which no node exports");
        }
    }

    log("phase: promtool accepts the scrape (format and lint)");
    promtool_check_metrics(&after.text);
}

/// Every `gavel_…` identifier in a rules or dashboard file.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("gavel_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // `gavel_…` inside a longer word (a file name, a uid) is not a metric.
        let before = rest[..at].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(_) if std::env::var_os("GAVEL_REQUIRE_PROMTOOL").is_none() => {
            eprintln!("SKIPPED: promtool not found (Debian: apt-get install prometheus)");
            return;
        }
        Err(e) => panic!("GAVEL_REQUIRE_PROMTOOL is set but promtool cannot run: {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics: {report}");
}
