//! Several hosts, for real. Every node runs in a network namespace of its own, with its
//! own address on a bridge this test creates (10.77.R.1–3, the test's own side of the
//! bridge is 10.77.R.254, R random so that runs side by side do not collide). The nodes
//! listen on every interface and advertise their bridge address, as the example config
//! does; nodes 2 and 3 join node 1 by its bridge address. A fourth namespace (10.77.R.100)
//! holds two `gavel watch` processes: one subscribed to the auction over HTTP (it proves
//! its address and reports `seq` gaps), one listening on the workers' `udp_broadcast`
//! address, 10.77.R.255.
//!
//! The test process, outside every namespace, bids through all three nodes at once while
//! it pulls the cable of one host (`ip link set <its end of the veth> down`): first the
//! follower hosting the auction (the leader moves the auction to a live worker), then the
//! leader (the others elect a new one; a client on the cut leader's own host gets a 503,
//! never an acknowledgement; back, the old leader follows the new one). After each cut
//! the link comes back and bids through that host must be acknowledged again. At the
//! end every node holds the same state at the same applied index, and every acknowledged
//! bid is in every node's history with its bidder, `seq` and the price its answer gave.
//!
//! What the UDP receivers must show, and why: datagrams travel once, from the worker
//! hosting the auction, so events committed while that worker's link is cut are lost to
//! them until the leader reassigns the auction (the new worker pushes from then on). So:
//! every event outside a cut (±[`CUT_SLACK_MS`]) reaches both receivers; every event
//! they missed is a bid in the HTTP history (a client fetches it there), and the gaps
//! `gavel watch` reports are exactly the missing events; and every datagram comes from
//! the UDP address of the worker hosting the auction at the time, which changes only at
//! a `reassigned` event (or a gap that may have swallowed it) — a node pushing from the
//! wrong address, or two workers pushing at once, fails here.
//!
//! Needs root and iproute2. Where namespaces cannot be made the test logs `SKIPPED: …`
//! and passes, unless `GAVEL_REQUIRE_NETNS` is set (CI sets it): then it fails.
//!
//! ```sh
//! cargo test --test multi_host -- --nocapture
//! ```

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};

const NODES: u64 = 3;
/// The last octet of the subscribers' namespace and of the test's side of the bridge.
const SUBSCRIBER_HOST: u8 = 100;
const BRIDGE_HOST: u8 = 254;
/// The workers' `udp_broadcast` port, on 10.77.R.255.
const BROADCAST_PORT: u16 = 7200;
/// Random subnets tried before giving up (another run, or the machine, may hold one).
const SUBNET_TRIES_MAX: u32 = 20;
/// A bid through a node unanswered within this counts as unanswered (a cut host).
const BID_TIMEOUT_MS: u64 = 2_000;
/// Bid attempts per bidder (one bidder per node), whatever the time.
const BIDS_PER_BIDDER_MAX: u64 = 5_000;
/// Bids acknowledged through the other nodes while a host is cut, before it comes back.
const ACKS_DURING_CUT_MIN: usize = 20;
/// Events stamped this close to a cut may be missed by UDP receivers: the cut worker
/// may not have applied them when its link went down.
const CUT_SLACK_MS: u64 = 500;
/// How long each phase may take (a whole run takes ~10 s on 2 cores).
const PHASE_DEADLINE: Duration = Duration::from_secs(20);
/// How long a read of a node's view may take (a cut node does not answer).
const VIEW_TIMEOUT_MS: u64 = 3_000;
/// A bid sent to the cut leader from its own host: it must never be acknowledged, nor
/// appear in any history (no bidder offers this much).
const PROBE_AMOUNT: u64 = 999_999_000;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}

/// Runs `ip ARGS`; the error says what failed and why.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no `ip` command (install iproute2)".to_string(),
        _ => format!("cannot run `ip`: {e}"),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The hosts: a bridge in the test's namespace and, joined to it by a veth pair each, a
/// namespace per node and one for the subscribers. Drop removes all of it (on a panic
/// too); drop it after every process running in it is stopped.
struct Hosts {
    r: u8,
    bridge: Option<String>,
    namespaces: Vec<String>,
    /// The veth ends on the bridge, by host suffix ("1".."3", "s").
    links: BTreeMap<String, String>,
}

impl Hosts {
    /// Makes the bridge and the namespaces, or says why it cannot.
    fn create(nodes: u64) -> Result<Hosts, String> {
        let mut hosts = Hosts {
            r: 0,
            bridge: None,
            namespaces: Vec::new(),
            links: BTreeMap::new(),
        };
        // The bridge's name claims R: creating it fails if another run holds it.
        for _ in 0..SUBNET_TRIES_MAX {
            let r = 1 + (random_u64() % 250) as u8;
            let taken = !ip(&["-o", "-4", "addr", "show", "to", &format!("10.77.{r}.0/24")])?
                .trim()
                .is_empty()
                || ip(&["netns", "list"])?.contains(&format!("gvn{r}-"));
            if taken {
                continue;
            }
            let bridge = format!("gvbr{r}");
            match ip(&["link", "add", &bridge, "type", "bridge"]) {
                Ok(_) => {
                    hosts.r = r;
                    hosts.bridge = Some(bridge);
                    break;
                }
                Err(e) if e.contains("File exists") => continue,
                Err(e) => return Err(e),
            }
        }
        let bridge = hosts
            .bridge
            .clone()
            .ok_or(format!("no free 10.77.R.0/24 subnet in {SUBNET_TRIES_MAX} tries"))?;
        ip(&["addr", "add", &hosts.cidr(BRIDGE_HOST), "brd", "+", "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 1..=nodes {
            hosts.add_host(&i.to_string(), i as u8)?;
        }
        hosts.add_host("s", SUBSCRIBER_HOST)?;
        Ok(hosts)
    }

    /// A namespace `gvnR-<suffix>` at 10.77.R.<octet>/24 (broadcast 10.77.R.255), its
    /// `lo` up, its `eth0` the peer of `gvhR-<suffix>` on the bridge.
    fn add_host(&mut self, suffix: &str, octet: u8) -> Result<(), String> {
        let ns = self.ns(suffix);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        let link = format!("gvh{}-{suffix}", self.r);
        ip(&[
            "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        self.links.insert(suffix.to_string(), link.clone());
        ip(&["link", "set", &link, "master", self.bridge.as_deref().unwrap(), "up"])?;
        ip(&["-n", &ns, "addr", "add", &self.cidr(octet), "brd", "+", "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn ns(&self, suffix: &str) -> String {
        format!("gvn{}-{suffix}", self.r)
    }

    fn cidr(&self, octet: u8) -> String {
        format!("10.77.{}.{octet}/24", self.r)
    }

    fn node_ip(&self, id: u64) -> String {
        format!("10.77.{}.{id}", self.r)
    }

    fn broadcast(&self) -> String {
        format!("10.77.{}.255:{BROADCAST_PORT}", self.r)
    }

    /// The command prefix that runs a program in namespace `suffix` (`ip netns exec`
    /// execs it: the child's PID is the program's).
    fn exec(&self, suffix: &str) -> Vec<String> {
        ["ip", "netns", "exec"]
            .iter()
            .map(|s| s.to_string())
            .chain([self.ns(suffix)])
            .collect()
    }

    /// Pulls the cable of node `id`'s host (its veth end on the bridge goes down).
    fn cut(&self, id: u64) {
        ip(&["link", "set", &self.links[&id.to_string()], "down"]).expect("cutting the link");
    }

    fn restore(&self, id: u64) {
        ip(&["link", "set", &self.links[&id.to_string()], "up"]).expect("restoring the link");
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
        // A veth pair goes with its namespace, but not always at once: delete our end.
        for link in self.links.values() {
            let _ = ip(&["link", "del", link]);
        }
        if let Some(bridge) = &self.bridge {
            if let Err(e) = ip(&["link", "del", bridge]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Waits until `pid` runs the gavel binary itself: `ip netns exec` enters the namespace,
/// then execs, so the PID is the same throughout and killing it stops gavel.
fn assert_runs_gavel(pid: u32) {
    let gavel = gavel_bin().canonicalize().unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the process's executable");
        if exe == gavel {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "PID {pid} runs {}, not {}",
            exe.display(),
            gavel.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `gavel watch --json` process in the subscribers' namespace, killed by PID on drop.
struct Watcher {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

/// One event as `gavel watch --json` printed it.
#[derive(Debug, Clone)]
struct Seen {
    seq: u64,
    kind: String,
    from: String,
}

impl Watcher {
    fn spawn(prefix: &[String], args: &[String], env: &[(&str, &str)], dir: &Path, name: &str) -> Watcher {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = Command::new(&prefix[0])
            .args(&prefix[1..])
            .arg(gavel_bin())
            .arg("watch")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn gavel watch");
        Watcher { child, out, err }
    }

    fn events(&self) -> Vec<Seen> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| Seen {
                seq: v["seq"].as_u64().unwrap(),
                kind: v["kind"].as_str().unwrap().to_string(),
                from: v["from"].as_str().unwrap().to_string(),
            })
            .collect()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// The seqs `gavel watch` reported missing ("gap: missed seq A..=B").
    fn reported_gaps(&self) -> BTreeSet<u64> {
        self.stderr()
            .lines()
            .filter_map(|l| l.strip_prefix("gap: missed seq "))
            .filter_map(|l| l.split_whitespace().next()?.split_once("..="))
            .flat_map(|(a, b)| a.parse::<u64>().unwrap()..=b.parse::<u64>().unwrap())
            .collect()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bid the cluster acknowledged.
#[derive(Debug, Clone)]
struct Ack {
    bid_id: u64,
    seq: u64,
    bidder: String,
    /// What the bidder offered (a leader raising its own maximum is recorded at the
    /// price: the maximum stays hidden).
    amount: u64,
    /// The visible price after the bid, as the answer gave it.
    price: u64,
    via: u64,
    at: Instant,
}

#[derive(Default)]
struct Tally {
    acks: Mutex<Vec<Ack>>,
    rejected: AtomicU64,
    unanswered: AtomicU64,
}

impl Tally {
    /// Bids acknowledged through one of `via` since `since`.
    fn acked(&self, via: &[u64], since: Instant) -> usize {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .filter(|a| via.contains(&a.via) && a.at >= since)
            .count()
    }
}

/// A client that gives up on a node quickly (a cut host answers nothing).
fn quick_client(timeout_ms: u64) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(timeout_ms))
        .connect_timeout(Duration::from_millis(timeout_ms))
        .pool_idle_timeout(Duration::from_millis(gavel_raft::network::CLIENT_POOL_IDLE_MS))
        .build()
        .unwrap()
}

/// Bids through node `via` as `bidder` until `stop` (bounded by [`BIDS_PER_BIDDER_MAX`]),
/// every amount above every earlier one (`next` is shared by all bidders).
#[allow(clippy::too_many_arguments)]
async fn bidder(
    via: u64,
    url: String,
    bidder: String,
    token: String,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let http = quick_client(BID_TIMEOUT_MS);
    for _ in 0..BIDS_PER_BIDDER_MAX {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let amount = 1_000 + 10 * next.fetch_add(1, Ordering::Relaxed);
        let resp = http
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({ "bidder": bidder, "amount": amount }))
            .send()
            .await;
        let answer = match resp {
            Ok(r) if r.status() == 201 => r.json::<Value>().await.ok(),
            Ok(r) if r.status().is_client_error() => {
                tally.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            _ => None,
        };
        match answer {
            Some(v) => tally.acks.lock().unwrap().push(Ack {
                bid_id: v["bid_id"].as_u64().unwrap(),
                seq: v["seq"].as_u64().unwrap(),
                bidder: bidder.clone(),
                amount,
                price: v["price"].as_u64().unwrap(),
                via,
                at: Instant::now(),
            }),
            None => {
                tally.unanswered.fetch_add(1, Ordering::Relaxed);
                // A node that does not answer (cut, or without a leader) is asked again
                // shortly; this paces the loop, it synchronises nothing.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// `GET path` from node `id`, `None` unless it answers 200 in time.
async fn view(http: &reqwest::Client, c: &TestCluster, id: u64, path: &str) -> Option<Value> {
    let resp = http.get(c.node(id).url(path)).send().await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    resp.json().await.ok()
}

/// The leader that every node of `among` names while ready (`/ready`: a live leader, all
/// committed entries applied), once it is one of them: its own `/ready` then says that
/// a quorum acknowledged it within an election timeout. (`/ready` asks no other node, so
/// a cut one does not slow the poll down.)
async fn agreed_leader(c: &TestCluster, http: &reqwest::Client, among: &[u64]) -> u64 {
    c.wait_for(
        &format!("a leader agreed by nodes {among:?}"),
        PHASE_DEADLINE,
        || async {
            let mut seen = BTreeSet::new();
            for id in among {
                seen.insert(view(http, c, *id, "/ready").await?["leader"].as_u64()?);
            }
            let leader = *seen.iter().next()?;
            (seen.len() == 1 && among.contains(&leader)).then_some(leader)
        },
    )
    .await
}

/// A link cut, in wall-clock ms (the clock the leader stamps events with).
struct CutWindow {
    node: u64,
    from_ms: u64,
    to_ms: u64,
}

/// What each receiver's stream is checked against (see the module doc).
struct Expected {
    /// The events to see: from the first the subscriber got to the auction's last.
    first: u64,
    last: u64,
    /// Bid seq → when the leader stamped it (ms), from the HTTP history.
    bids_at: BTreeMap<u64, u64>,
    cuts: Vec<CutWindow>,
    /// The UDP address of the worker that hosted the auction first.
    first_host: String,
    /// Every node's UDP address.
    node_udp: BTreeSet<String>,
}

impl Expected {
    /// Checks one receiver's stream; returns how many events it missed.
    fn check(&self, what: &str, seen: &[Seen], reported_gaps: &BTreeSet<u64>) -> usize {
        let range = self.first..=self.last;
        let seen: Vec<&Seen> = seen.iter().filter(|s| range.contains(&s.seq)).collect();
        let seqs: Vec<u64> = seen.iter().map(|s| s.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{what}: in seq order: {seqs:?}");
        let missing: BTreeSet<u64> = range.clone().filter(|s| !seqs.contains(s)).collect();
        for seq in &missing {
            let at = self.bids_at.get(seq).unwrap_or_else(|| {
                panic!("{what}: missed seq {seq}, which is not a bid in the HTTP history (a client could not fetch it)")
            });
            assert!(
                self.cuts
                    .iter()
                    .any(|c| *at + CUT_SLACK_MS >= c.from_ms && *at <= c.to_ms + CUT_SLACK_MS),
                "{what}: missed seq {seq} (a bid at {at} ms), outside every cut: {:?}",
                self.cuts
                    .iter()
                    .map(|c| (c.node, c.from_ms, c.to_ms))
                    .collect::<Vec<_>>()
            );
        }
        let reported: BTreeSet<u64> = reported_gaps.iter().copied().filter(|s| range.contains(s)).collect();
        assert_eq!(
            reported, missing,
            "{what}: the gaps gavel watch reported are the missed events"
        );
        // Every datagram comes from the worker hosting the auction: the host changes at a
        // `reassigned` event, or after a gap that may hold it.
        let mut host = self.first_host.as_str();
        let mut previous: Option<u64> = None;
        for s in seen {
            assert!(
                self.node_udp.contains(&s.from),
                "{what}: seq {} from {}, not a node's UDP address",
                s.seq,
                s.from
            );
            let after_gap = previous.is_some_and(|p| s.seq > p + 1);
            if s.from != host {
                assert!(
                    s.kind == "reassigned" || after_gap,
                    "{what}: seq {} ({}) came from {} while {host} hosted the auction",
                    s.seq,
                    s.kind,
                    s.from
                );
                host = &s.from;
            }
            previous = Some(s.seq);
        }
        missing.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_separate_hosts_keep_every_acknowledged_bid_and_push_across_hosts() {
    let _serial = serial().await;
    let started = Instant::now();
    let hosts = match Hosts::create(NODES) {
        Ok(hosts) => hosts,
        Err(reason) => {
            assert!(
                std::env::var_os("GAVEL_REQUIRE_NETNS").is_none(),
                "GAVEL_REQUIRE_NETNS is set but network namespaces cannot be made: {reason}"
            );
            log(&format!(
                "SKIPPED: network namespaces cannot be made here ({reason}); run as root with iproute2"
            ));
            return;
        }
    };
    let r = hosts.r;
    log(&format!(
        "phase: {NODES} nodes in namespaces gvn{r}-1..{NODES} at 10.77.{r}.1-{NODES} on bridge gvbr{r}; they join by those addresses"
    ));
    let config = format!(
        "udp_broadcast = \"{}\"\nworker_grace_ms = 1000\n{TEST_RAFT}",
        hosts.broadcast()
    );
    let mut c = TestCluster::new(&config);
    c.hosts = (1..=NODES)
        .map(|id| {
            let host = NodeHost {
                ip: hosts.node_ip(id),
                prefix: hosts.exec(&id.to_string()),
            };
            (id, host)
        })
        .collect();
    c.start_nodes(NODES).await;
    for node in c.nodes.values() {
        assert_runs_gavel(node.pid().unwrap());
    }
    let all: Vec<u64> = (1..=NODES).collect();
    let http = quick_client(VIEW_TIMEOUT_MS);
    let leader = agreed_leader(&c, &http, &all).await;
    c.wait_live_workers(leader, NODES as usize).await;

    log("phase: members and workers are known by their bridge addresses, UDP included");
    let node_udp: BTreeSet<String> = all
        .iter()
        .map(|id| format!("{}:{HOST_UDP_PORT}", hosts.node_ip(*id)))
        .collect();
    let members = c.cluster(leader).await["members"].clone();
    let workers = c.get(leader, "/v1/workers").await.1["workers"].clone();
    for id in &all {
        let addr = format!("{}:{HOST_HTTP_PORT}", hosts.node_ip(*id));
        let member = members
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == json!(id))
            .unwrap();
        assert_eq!(member["addr"], json!(addr), "member {id}: {members}");
        let worker = workers
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["node_id"] == json!(id))
            .unwrap();
        assert_eq!(worker["addr"], json!(addr), "worker {id}: {workers}");
        assert_eq!(
            worker["udp_addr"],
            json!(format!("{}:{HOST_UDP_PORT}", hosts.node_ip(*id))),
            "worker {id} registers the UDP address other hosts reach: {workers}"
        );
    }

    log("phase: an auction hosted by a follower; a subscriber and a broadcast listener in a fourth namespace");
    let bidders: Vec<String> = all.iter().map(|id| format!("bidder-{id}")).collect();
    let mut tokens = BTreeMap::new();
    for name in bidders.iter().map(String::as_str).chain(["watcher", "sam"]) {
        tokens.insert(name.to_string(), c.token(name).await.expect("an account"));
    }
    let mut auction = None;
    for _ in 0..10 {
        let (status, a) = c
            .post(leader, "/v1/auctions", &auction_body("lot across hosts", 600), None)
            .await;
        assert_eq!(status, 201, "{a}");
        if a["worker"].as_u64().is_some_and(|w| w != leader) {
            auction = Some(a);
            break;
        }
    }
    let auction = auction.expect("an auction placed on a follower in 10 tries");
    let id = auction["id"].as_u64().unwrap();
    let host = auction["worker"].as_u64().unwrap();
    let third = *all.iter().find(|n| **n != leader && **n != host).unwrap();
    log(&format!(
        "auction {id} on worker {host}; leader {leader}; subscribing through node {third}"
    ));
    let sub_prefix = hosts.exec("s");
    let subscriber = Watcher::spawn(
        &sub_prefix,
        &[
            id.to_string(),
            "--node".into(),
            format!("http://{}", c.node(third).addr),
            // Every interface: watch subscribes the address its route to the node uses.
            "--listen".into(),
            "0.0.0.0:0".into(),
            "--ttl-secs".into(),
            "120".into(),
            "--json".into(),
        ],
        &[("GAVEL_TOKEN", &tokens["watcher"])],
        c.dir.path(),
        "subscriber",
    );
    let listener = Watcher::spawn(
        &sub_prefix,
        &[id.to_string(), "--broadcast".into(), hosts.broadcast(), "--json".into()],
        &[],
        c.dir.path(),
        "broadcast",
    );
    let mut watchers = [subscriber, listener];
    for w in &watchers {
        assert_runs_gavel(w.child.id());
    }
    let sub_prefix_ip = format!("10.77.{r}.{SUBSCRIBER_HOST}:");
    let subscribed = c
        .wait_for("gavel watch subscribed and listening", PHASE_DEADLINE, || async {
            let line = watchers[0].stderr();
            let addr = line
                .lines()
                .find_map(|l| l.split(" over UDP on ").nth(1))?
                .trim()
                .to_string();
            watchers[1]
                .stderr()
                .contains("on the broadcast address")
                .then_some(addr)
        })
        .await;
    assert!(
        subscribed.starts_with(&sub_prefix_ip),
        "watch subscribed {subscribed}, its address on the bridge"
    );
    c.wait_for("the subscription proven and active", PHASE_DEADLINE, || async {
        let (status, _) = c
            .post_with(
                third,
                &format!("/v1/auctions/{id}/subscriptions"),
                &json!({ "udp": subscribed, "ttl_secs": 120 }),
                None,
                Some(&tokens["watcher"]),
            )
            .await;
        (status == 201).then_some(())
    })
    .await;

    log("phase: bids through all three nodes at once");
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (via, name) in all.iter().zip(&bidders) {
        tasks.push(tokio::spawn(bidder(
            *via,
            c.node(*via).url(&format!("/v1/auctions/{id}/bids")),
            name.clone(),
            tokens[name].clone(),
            next.clone(),
            stop.clone(),
            tally.clone(),
        )));
    }
    let t = Instant::now();
    c.wait_for("bids acknowledged through every node", PHASE_DEADLINE, || async {
        all.iter().all(|n| tally.acked(&[*n], t) >= 5).then_some(())
    })
    .await;
    c.wait_for("both receivers got the first bids", PHASE_DEADLINE, || async {
        watchers
            .iter()
            .all(|w| w.events().iter().any(|e| e.kind == "bid_accepted"))
            .then_some(())
    })
    .await;
    let first_seq = watchers[0].events()[0].seq;

    let mut cuts = Vec::new();
    let mut current_leader = leader;
    for (victim, why) in [(host, "the follower hosting the auction"), (leader, "the leader")] {
        let others: Vec<u64> = all.iter().copied().filter(|n| *n != victim).collect();
        log(&format!("phase: cut the link of node {victim}, {why}"));
        let from_ms = now_ms();
        let cut_at = Instant::now();
        hosts.cut(victim);
        if victim == current_leader {
            current_leader = agreed_leader(&c, &http, &others).await;
            log(&format!(
                "node {current_leader} leads without node {victim}, {} ms after the cut",
                cut_at.elapsed().as_millis()
            ));
            log("a client on the cut leader's host is refused, not acknowledged");
            let mut probe = Command::new(&hosts.exec(&victim.to_string())[0]);
            probe
                .args(&hosts.exec(&victim.to_string())[1..])
                .arg(gavel_bin())
                .args(["auction", "bid", &id.to_string(), "--amount", &PROBE_AMOUNT.to_string()])
                .args(["--node", &format!("http://{}", c.node(victim).addr)])
                .env("GAVEL_TOKEN", &tokens[&bidders[victim as usize - 1]])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut probe = probe.spawn().expect("gavel auction bid");
            let deadline = Instant::now() + PHASE_DEADLINE;
            let refused = loop {
                if let Some(status) = probe.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = probe.kill();
                    panic!("the bid on the cut leader's host got no answer in {PHASE_DEADLINE:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let mut said = String::new();
            std::io::Read::read_to_string(probe.stderr.as_mut().unwrap(), &mut said).unwrap();
            assert_eq!(refused.code(), Some(2), "a 503 from the cut leader: {said}");
            assert!(
                said.contains("error [no_leader] (503)"),
                "the cut leader says it leads no one (not that clocks disagree): {said}"
            );
            log(&format!("the cut leader answered: {}", said.trim()));
        }
        let moved = c
            .wait_for("the auction on a live worker", PHASE_DEADLINE, || async {
                let a = view(&http, &c, current_leader, &format!("/v1/auctions/{id}")).await?;
                a["worker"].as_u64().filter(|w| *w != victim)
            })
            .await;
        let moved_after_ms = cut_at.elapsed().as_millis();
        let since = Instant::now();
        c.wait_for("bids acknowledged through the other nodes", PHASE_DEADLINE, || async {
            (tally.acked(&others, since) >= ACKS_DURING_CUT_MIN).then_some(())
        })
        .await;
        log(&format!(
            "auction {id} on worker {moved} ({moved_after_ms} ms after the cut); {} bids acknowledged during the cut",
            tally.acked(&others, cut_at)
        ));
        hosts.restore(victim);
        let to_ms = now_ms();
        cuts.push(CutWindow {
            node: victim,
            from_ms,
            to_ms,
        });
        let restored = Instant::now();
        c.wait_for(
            &format!("a bid through node {victim} acknowledged again"),
            PHASE_DEADLINE,
            || async { (tally.acked(&[victim], restored) >= 1).then_some(()) },
        )
        .await;
        if victim == leader {
            let view = view(&http, &c, victim, "/v1/cluster")
                .await
                .expect("the old leader answers");
            assert_eq!(view["role"], "follower", "the cut leader follows again: {view}");
            assert_eq!(view["leader"]["id"], json!(current_leader), "{view}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let acks = tally.acks.lock().unwrap().clone();
    log(&format!(
        "{} bids acknowledged (through each node: {:?}), {} rejected, {} unanswered",
        acks.len(),
        all.iter()
            .map(|n| acks.iter().filter(|a| a.via == *n).count())
            .collect::<Vec<_>>(),
        tally.rejected.load(Ordering::Relaxed),
        tally.unanswered.load(Ordering::Relaxed)
    ));

    log("phase: every node converges, and holds every acknowledged bid");
    let (applied, hash) = c.wait_converged().await;
    log(&format!("all nodes at applied index {applied}, state hash {hash}"));
    let mut bids_at = BTreeMap::new();
    for n in &all {
        let history = view(&http, &c, *n, &format!("/v1/auctions/{id}/bids?consistency=stale"))
            .await
            .expect("the bid history");
        let by_id: BTreeMap<u64, &Value> = history["bids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["bid_id"].as_u64().unwrap(), b))
            .collect();
        for ack in &acks {
            let bid = by_id
                .get(&ack.bid_id)
                .unwrap_or_else(|| panic!("node {n} lost acknowledged bid {ack:?}"));
            assert_eq!(
                (bid["bidder"].as_str(), bid["seq"].as_u64(), bid["price_after"].as_u64()),
                (Some(ack.bidder.as_str()), Some(ack.seq), Some(ack.price)),
                "node {n}: bid {} as acknowledged",
                ack.bid_id
            );
            assert!(
                bid["amount"].as_u64().is_some_and(|a| a <= ack.amount),
                "node {n}: bid {} recorded at most at its offer: {bid} {ack:?}",
                ack.bid_id
            );
        }
        assert!(
            by_id.values().all(|b| b["amount"] != json!(PROBE_AMOUNT)),
            "node {n}: the bid sent to the cut leader was committed"
        );
        for b in by_id.values() {
            let at = time::OffsetDateTime::parse(
                b["at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            bids_at.insert(
                b["seq"].as_u64().unwrap(),
                (at.unix_timestamp_nanos() / 1_000_000) as u64,
            );
        }
    }

    log("phase: both receivers got every event outside the cuts, from the hosting worker's address");
    let final_view = view(&http, &c, current_leader, &format!("/v1/auctions/{id}"))
        .await
        .unwrap();
    let last_seq = final_view["seq"].as_u64().unwrap();
    let final_host = format!(
        "{}:{HOST_UDP_PORT}",
        hosts.node_ip(final_view["worker"].as_u64().unwrap())
    );
    c.wait_for("both receivers at the last event", PHASE_DEADLINE, || async {
        watchers
            .iter()
            .all(|w| w.events().last().is_some_and(|e| e.seq >= last_seq))
            .then_some(())
    })
    .await;
    for w in watchers.iter_mut() {
        assert!(w.exited().is_none(), "gavel watch still runs: {}", w.stderr());
    }
    let expected = Expected {
        first: first_seq,
        last: last_seq,
        bids_at,
        cuts,
        first_host: format!("{}:{HOST_UDP_PORT}", hosts.node_ip(host)),
        node_udp,
    };
    let mut missed = Vec::new();
    for (w, what) in watchers.iter().zip(["subscriber", "broadcast listener"]) {
        let seen = w.events();
        assert_eq!(
            seen.last().unwrap().from,
            final_host,
            "{what}: the last event from the final worker"
        );
        missed.push(expected.check(what, &seen, &w.reported_gaps()));
    }
    log(&format!(
        "events {first_seq}..={last_seq}: the subscriber missed {}, the broadcast listener {}; test took {:.1} s",
        missed[0],
        missed[1],
        started.elapsed().as_secs_f64()
    ));
    drop(watchers);
    drop(c);
    drop(hosts);
}
