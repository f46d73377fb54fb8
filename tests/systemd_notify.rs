//! systemd's notify protocol, with a test `NOTIFY_SOCKET` (a Unix datagram socket the test
//! binds) standing in for systemd: `READY=1` only once `/ready` answers 200, `WATCHDOG=1`
//! at half of `WATCHDOG_USEC` while the Raft core is alive, the start timeout extended
//! while the node waits for its peers, `STOPPING=1` on SIGTERM before a clean exit, and no
//! more pings once a full disk stopped the Raft core (that phase mounts a tmpfs, so it
//! needs root, as CI has; without it the phase says SKIPPED).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::net::UnixDatagram;

/// The watchdog timeout given to the nodes: pings every second.
const WATCHDOG_USEC: u64 = 2_000_000;
const TICK: Duration = Duration::from_micros(WATCHDOG_USEC / 2);
/// Size of the disk the last phase fills.
const DISK_MB: u64 = 64;
/// Space left free before bidding fills the rest.
const LEFT_FREE_BYTES: u64 = 512 * 1024;
const LOAD_REQUESTS_MAX: u64 = 100_000;
const LOAD_SECS_MAX: u64 = 60;

/// The notify socket, as systemd would hold it.
struct Notifications {
    socket: UnixDatagram,
}

/// One datagram: its lines, and when it arrived.
#[derive(Debug, Clone)]
struct Notice {
    lines: Vec<String>,
    at: Instant,
}

impl Notice {
    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    fn starting(&self, prefix: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| l.strip_prefix(prefix))
    }
}

impl Notifications {
    fn bind(path: &Path) -> Notifications {
        Notifications {
            socket: UnixDatagram::bind(path).expect("bind the notify socket"),
        }
    }

    /// The next datagram, or `None` if none comes within `within`.
    async fn next(&self, within: Duration) -> Option<Notice> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(within, self.socket.recv(&mut buf))
            .await
            .ok()?
            .unwrap();
        let text = String::from_utf8(buf[..n].to_vec()).expect("notifications are text");
        Some(Notice {
            lines: text.lines().map(str::to_string).collect(),
            at: Instant::now(),
        })
    }

    /// Datagrams until one satisfies `want` (returned last), within `deadline`.
    async fn until(&self, what: &str, deadline: Duration, mut want: impl FnMut(&Notice) -> bool) -> Vec<Notice> {
        let end = Instant::now() + deadline;
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let Some(notice) = self.next(left).await else {
                panic!("no notification {what} within {deadline:?}; got {seen:?}");
            };
            let done = want(&notice);
            seen.push(notice);
            if done {
                return seen;
            }
        }
    }

    /// Every datagram that arrives within `window`.
    async fn during(&self, window: Duration) -> Vec<Notice> {
        let end = Instant::now() + window;
        let mut seen = Vec::new();
        while let Some(notice) = self.next(end.saturating_duration_since(Instant::now())).await {
            seen.push(notice);
        }
        seen
    }
}

/// Waits for `n` more watchdog pings; returns the datagrams up to the last of them.
async fn pings(socket: &Notifications, n: usize) -> Vec<Notice> {
    let mut count = 0;
    socket
        .until(&format!("with {n} watchdog pings"), DEADLINE, |notice| {
            count += usize::from(notice.has("WATCHDOG=1"));
            count == n
        })
        .await
}

/// The longest time between two consecutive pings.
fn longest_gap(notices: &[Notice]) -> Duration {
    let at: Vec<Instant> = notices.iter().filter(|n| n.has("WATCHDOG=1")).map(|n| n.at).collect();
    at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

fn notify_env(socket: &Path) -> Vec<(String, String)> {
    vec![
        ("NOTIFY_SOCKET".into(), socket.to_str().unwrap().into()),
        ("WATCHDOG_USEC".into(), WATCHDOG_USEC.to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_speaks_systemds_notify_protocol() {
    let _serial = serial().await;
    let mut c = TestCluster::new(TEST_RAFT);

    log("phase: a node that cannot reach its cluster pings the watchdog and extends its start, but is not ready");
    let path = c.dir.path().join("waiting.sock");
    let waiting = Notifications::bind(&path);
    c.env = notify_env(&path);
    c.extra_config = format!("join = \"127.0.0.1:{}\"\n{TEST_RAFT}", free_port());
    c.add_node(7, None, SECRET);
    let seen = pings(&waiting, 3).await;
    assert!(
        !seen.iter().any(|n| n.has("READY=1")),
        "not ready, so no READY=1: {seen:?}"
    );
    for ping in seen.iter().filter(|n| n.has("WATCHDOG=1")) {
        let extend: u64 = ping
            .starting("EXTEND_TIMEOUT_USEC=")
            .expect("the start timeout is extended with each ping until ready")
            .parse()
            .unwrap();
        assert!(extend > WATCHDOG_USEC, "the extension outlasts a tick: {extend} µs");
    }
    assert!(longest_gap(&seen) < Duration::from_micros(WATCHDOG_USEC), "{seen:?}");
    assert_eq!(c.get(7, "/ready").await.0, 503);
    assert!(c.nodes.get_mut(&7).unwrap().terminate().success());
    waiting.until("STOPPING=1", DEADLINE, |n| n.has("STOPPING=1")).await;

    log("phase: a bootstrapping node sends READY=1 once /ready answers 200, and only then");
    let path = c.dir.path().join("node1.sock");
    let notify = Notifications::bind(&path);
    c.env = notify_env(&path);
    c.extra_config = TEST_RAFT.to_string();
    c.add_node(1, None, SECRET);
    let before_ready = notify.until("READY=1", DEADLINE, |n| n.has("READY=1")).await;
    let (status, body) = c.get(1, "/ready").await;
    assert_eq!(status, 200, "READY=1 came while /ready said {body}");
    let ready = before_ready.last().unwrap();
    let status_line = ready.starting("STATUS=").expect("READY=1 comes with a status line");
    assert!(
        status_line.contains("leader") && status_line.contains("ready"),
        "{status_line}"
    );

    log("phase: the watchdog keeps being fed at half of WATCHDOG_USEC; no second READY, no more extensions");
    let after_ready = pings(&notify, 4).await;
    assert!(!after_ready.iter().any(|n| n.has("READY=1")), "READY=1 is sent once");
    assert!(
        !after_ready.iter().any(|n| n.starting("EXTEND_TIMEOUT_USEC=").is_some()),
        "no start-timeout extension once started"
    );
    let gap = longest_gap(&after_ready);
    assert!(
        gap < Duration::from_micros(WATCHDOG_USEC) && gap > TICK / 2,
        "pings every {TICK:?}, longest gap {gap:?}"
    );
    for notice in after_ready.iter().filter(|n| n.has("WATCHDOG=1")) {
        let line = notice.starting("STATUS=").expect("every ping carries a status line");
        assert!(line.starts_with("leader (term "), "{line}");
    }

    log("phase: SIGTERM: STOPPING=1, then a clean exit");
    let exit = c.nodes.get_mut(&1).unwrap().terminate();
    assert!(exit.success(), "exit status {exit}");
    let stopping = notify.until("STOPPING=1", DEADLINE, |n| n.has("STOPPING=1")).await;
    assert_eq!(stopping.last().unwrap().starting("STATUS="), Some("stopping"));

    log("phase: a full disk stops the Raft core, and the watchdog pings stop with it");
    let data = c.dir.path().join("node3");
    let Some(mount) = Tmpfs::mount(&data, DISK_MB) else {
        eprintln!("SKIPPED (phase): mounting a tmpfs needs root");
        return;
    };
    let path = c.dir.path().join("node3.sock");
    let notify = Notifications::bind(&path);
    c.env = notify_env(&path);
    // No snapshot is due: the log's own writes hit the full disk.
    c.extra_config = format!("{TEST_RAFT}snapshot_every_entries = 1000000\n");
    c.add_node(3, None, SECRET);
    notify.until("READY=1", DEADLINE, |n| n.has("READY=1")).await;
    c.wait_ready(3).await;
    let (status, auction) = c.post(3, "/v1/auctions", &auction_body("lot", 3600), None).await;
    assert_eq!(status, 201, "{auction}");
    let id = auction["id"].as_u64().unwrap();
    // The bidders' accounts exist before the disk fills (creating one is a write too).
    let bidders: Vec<String> = (0..2).map(|i| format!("{i}-{}", "x".repeat(100))).collect();
    for bidder in &bidders {
        c.token(bidder).await.expect("bidder account");
    }
    fill(&data);
    let mut amount = 1000u64;
    let started = Instant::now();
    let mut full = false;
    for i in 0..LOAD_REQUESTS_MAX {
        if started.elapsed() > Duration::from_secs(LOAD_SECS_MAX) {
            break;
        }
        let bidder = &bidders[(i % 2) as usize];
        let (status, body) = c
            .post(
                3,
                &format!("/v1/auctions/{id}/bids"),
                &json!({"bidder": bidder, "amount": amount}),
                None,
            )
            .await;
        match status {
            201 => amount = body["min_next_bid"].as_u64().unwrap(),
            507 => {
                full = true;
                break;
            }
            // A write in flight when the core stopped may fail otherwise.
            _ => {}
        }
    }
    assert!(full, "the disk filled up and a write was refused with 507");
    let seen = notify
        .until("saying the Raft core stopped", DEADLINE, |n| {
            n.starting("STATUS=")
                .is_some_and(|s| s.starts_with("the Raft core stopped"))
        })
        .await;
    log(&format!("the core stopped: {:?}", seen.last().unwrap().lines));
    let quiet = notify.during(TICK * 3).await;
    assert!(
        !quiet.iter().any(|n| n.has("WATCHDOG=1")),
        "no watchdog ping once the core stopped: {quiet:?}"
    );
    assert!(!quiet.is_empty(), "status lines go on meanwhile");
    assert_eq!(c.get(3, "/health").await.0, 503);
    c.nodes.get_mut(&3).unwrap().kill();
    drop(mount);
}

/// Fills the disk holding `dir` until [`LEFT_FREE_BYTES`] are left.
fn fill(dir: &Path) {
    use std::io::Write;
    let available = || gavel_storage::fsutil::available_bytes(dir).unwrap();
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while available() > LEFT_FREE_BYTES + chunk.len() as u64 {
        f.write_all(&chunk).unwrap();
    }
    f.sync_all().unwrap();
}
