//! `TestCluster`: real `gavel serve` processes on 127.0.0.1 with temporary data dirs,
//! free ports, fast Raft timings, and helpers that wait on conditions with deadlines.
//! A node given a [`NodeHost`] runs elsewhere instead: under a command prefix (`ip netns
//! exec NS`), listening on every interface and advertising the host's address.
//! Every process started here is killed by PID when the cluster is dropped.
//! The root package's tests use it, and so do `gavel-bench`'s benchmarks and test
//! (through `#[path]`), which find the server with [`gavel_bin`].

#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const SECRET: &str = "test-cluster-secret-0123456789";
/// The first admin's token in every test cluster (given to node 1 as its
/// `admin_token_file`).
pub const ADMIN_TOKEN: &str = "gvl_test-admin-token-0123456789abcdefghijkl";
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Cluster tests share two cores: run them one at a time (tokio's mutex works across
/// the tests' separate runtimes and is not poisoned by a failed test).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

pub fn log(msg: &str) {
    eprintln!("[test {:?}] {msg}", std::thread::current().name().unwrap_or("?"));
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Raft timings for tests: quicker than production so failover tests stay short.
pub const TEST_RAFT: &str =
    "[raft]\nheartbeat_interval_ms = 100\nelection_timeout_min_ms = 500\nelection_timeout_max_ms = 1500\n";

/// A tmpfs mounted for a test (a small disk to fill), unmounted when dropped. Mounting
/// needs root (CI runs as root): without it, `mount` returns `None`.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size_mb: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A node that runs on a host of its own (a network namespace the test made), not on
/// 127.0.0.1.
#[derive(Debug, Clone)]
pub struct NodeHost {
    /// The host's address: the node listens on every interface (`0.0.0.0:7070` for HTTP
    /// and node RPC, `0.0.0.0:7071` for UDP, as `deploy/gavel.example.toml` does) and
    /// advertises `ip:7070`.
    pub ip: String,
    /// What the node's command runs under, e.g. `["ip", "netns", "exec", "gvn7-1"]`; it
    /// must exec the command (not fork it) so that the child's PID is the node's.
    pub prefix: Vec<String>,
}

/// Ports of a node on its own host (nothing else listens there).
pub const HOST_HTTP_PORT: u16 = 7070;
pub const HOST_UDP_PORT: u16 = 7071;

pub struct TestNode {
    pub id: u64,
    pub addr: String,
    pub udp: String,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub log_path: PathBuf,
    /// `http`, or `https` in a cluster started with TLS.
    pub scheme: &'static str,
    /// Extra environment of the process (e.g. libfaketime's, a `GAVEL_*` override).
    pub env: Vec<(String, String)>,
    /// What the process runs under (empty: the binary itself), see [`NodeHost::prefix`].
    pub prefix: Vec<String>,
    child: Option<Child>,
}

impl TestNode {
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub fn udp_addr(&self) -> String {
        self.udp.clone()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT`, …) to the running process.
    pub fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            Command::new("kill")
                .args([&format!("-{sig}"), &pid.to_string()])
                .status()
                .expect("kill");
        }
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node is running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node {} did not stop after SIGTERM", self.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself and returns its status.
    pub fn terminate_or_status(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node was started");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node {} did not exit", self.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct TestCluster {
    /// When set, every node sits behind a proxy the test controls (partitions).
    pub proxies: Option<proxy::Proxies>,
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, TestNode>,
    pub http: reqwest::Client,
    pub extra_config: String,
    /// API tokens of the accounts this harness created, by name.
    tokens: std::sync::Mutex<BTreeMap<String, String>>,
    /// `http`, or `https` for a cluster started with [`TestCluster::start_tls`].
    pub scheme: &'static str,
    /// Extra environment for the nodes added from now on.
    pub env: Vec<(String, String)>,
    /// Extra environment of each node's process, by node id.
    pub node_env: BTreeMap<u64, Vec<(String, String)>>,
    /// Nodes that run on hosts of their own, by node id (others run on 127.0.0.1).
    pub hosts: BTreeMap<u64, NodeHost>,
}

impl TestCluster {
    pub fn new(extra_config: &str) -> Self {
        TestCluster {
            proxies: None,
            dir: tempfile::tempdir().unwrap(),
            nodes: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .pool_idle_timeout(Duration::from_millis(gavel_raft::network::CLIENT_POOL_IDLE_MS))
                .build()
                .unwrap(),
            extra_config: extra_config.to_string(),
            tokens: Default::default(),
            scheme: "http",
            env: Vec::new(),
            node_env: BTreeMap::new(),
            hosts: BTreeMap::new(),
        }
    }

    /// Starts node 1 alone (bootstrap), then `n - 1` nodes joining it, and waits until all
    /// are voters.
    pub async fn start(n: u64, extra_config: &str) -> Self {
        Self::start_with(n, extra_config, false).await
    }

    /// Like [`TestCluster::start`], each node's process with the extra environment
    /// `node_env` gives it (by node id).
    pub async fn start_with_env(n: u64, extra_config: &str, node_env: BTreeMap<u64, Vec<(String, String)>>) -> Self {
        let mut c = TestCluster::new(extra_config);
        c.node_env = node_env;
        c.start_nodes(n).await;
        c
    }

    /// Like [`TestCluster::start`]; with `proxied`, every node sits behind a proxy.
    pub async fn start_with(n: u64, extra_config: &str, proxied: bool) -> Self {
        let mut c = TestCluster::new(extra_config);
        if proxied {
            c.proxies = Some(proxy::Proxies::default());
        }
        c.start_nodes(n).await;
        c
    }

    /// Like [`TestCluster::start`], every node serving HTTPS; `extra_config` names the
    /// TLS files and the harness's client trusts `ca_pem`.
    pub async fn start_tls(n: u64, extra_config: &str, ca_pem: &[u8]) -> Self {
        let mut c = TestCluster::new(extra_config);
        c.scheme = "https";
        c.http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .pool_idle_timeout(Duration::from_millis(gavel_raft::network::CLIENT_POOL_IDLE_MS))
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
            .build()
            .unwrap();
        c.start_nodes(n).await;
        c
    }

    /// Bootstraps node 1, waits for it and its first admin, and joins nodes 2..=n.
    pub async fn start_nodes(&mut self, n: u64) {
        let c = self;
        c.add_node(1, None, SECRET);
        c.wait_ready(1).await;
        c.wait_for("the first admin account", DEADLINE, || async {
            let resp = c
                .http
                .get(c.node(1).url("/v1/accounts/admin"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .ok()?;
            (resp.status() == 200).then_some(())
        })
        .await;
        for id in 2..=n {
            c.add_node(id, Some(1), SECRET);
        }
        c.wait_voters(1, n as usize).await;
    }

    /// Writes the config and spawns node `id`; `join` names a node to join.
    pub fn add_node(&mut self, id: u64, join: Option<u64>, secret: &str) -> &mut TestNode {
        self.add_node_with(id, join, secret, |_| {})
    }

    /// Like [`TestCluster::add_node`], running `prepare` with the node (its address and
    /// data dir chosen, its config written) before it is spawned.
    pub fn add_node_with(
        &mut self,
        id: u64,
        join: Option<u64>,
        secret: &str,
        prepare: impl FnOnce(&TestNode),
    ) -> &mut TestNode {
        let host = self.hosts.get(&id).cloned();
        let listen = match &host {
            Some(_) => format!("0.0.0.0:{HOST_HTTP_PORT}"),
            None => format!("127.0.0.1:{}", free_port()),
        };
        // Behind a proxy, the node advertises the proxy and dials out from its own source
        // address so the proxy can tell links apart. On a host of its own, it advertises
        // that host's address.
        let (addr, routing) = match (&host, &self.proxies) {
            (Some(h), _) => {
                let addr = format!("{}:{HOST_HTTP_PORT}", h.ip);
                (addr.clone(), format!("advertise = \"{addr}\"\n"))
            }
            (None, Some(p)) => {
                let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = front.local_addr().unwrap().to_string();
                p.spawn(id, front, listen.clone());
                (
                    addr.clone(),
                    format!("advertise = \"{addr}\"\nsource_ip = \"{}\"\n", proxy::source_ip(id)),
                )
            }
            (None, None) => (listen.clone(), String::new()),
        };
        let data_dir = self.dir.path().join(format!("node{id}"));
        let config = self.dir.path().join(format!("node{id}.toml"));
        let (udp_bind, udp) = match &host {
            Some(h) => (format!("0.0.0.0:{HOST_UDP_PORT}"), format!("{}:{HOST_UDP_PORT}", h.ip)),
            None => {
                let udp = format!("127.0.0.1:{}", free_udp_port());
                (udp.clone(), udp)
            }
        };
        let admin_token_file = self.dir.path().join("admin.token");
        std::fs::write(&admin_token_file, ADMIN_TOKEN).unwrap();
        let mut text = format!(
            "id = {id}\ndata_dir = {:?}\nlisten = \"{listen}\"\nudp = \"{udp_bind}\"\ncluster_secret = \"{secret}\"\nlog_format = \"json\"\nadmin_token_file = {:?}\n{routing}",
            data_dir.to_str().unwrap(),
            admin_token_file.to_str().unwrap(),
        );
        if let Some(j) = join {
            text.push_str(&format!("join = \"{}\"\n", self.nodes[&j].addr));
        }
        text.push_str(&self.extra_config);
        // Every test client connects from 127.0.0.1 and bursts: no rate limits unless a
        // test sets its own.
        if !self.extra_config.contains("[rate_limits]") {
            text.push_str("\n[rate_limits]\nper_address_per_sec = 0\nper_account_per_sec = 0\n");
        }
        std::fs::write(&config, text).unwrap();
        let log_path = self.dir.path().join(format!("node{id}.log"));
        let mut node = TestNode {
            id,
            addr,
            udp,
            data_dir,
            config,
            log_path,
            scheme: self.scheme,
            env: self
                .env
                .iter()
                .chain(self.node_env.get(&id).into_iter().flatten())
                .cloned()
                .collect(),
            prefix: host.map(|h| h.prefix).unwrap_or_default(),
            child: None,
        };
        prepare(&node);
        spawn(&mut node);
        self.nodes.insert(id, node);
        self.nodes.get_mut(&id).unwrap()
    }

    /// Uses the account tokens `other` made (a cluster restored from `other`'s backup
    /// holds the same accounts).
    pub fn adopt_tokens(&self, other: &TestCluster) {
        let theirs = other.tokens.lock().unwrap().clone();
        self.tokens.lock().unwrap().extend(theirs);
    }

    /// Starts a stopped node again with the same config and data dir.
    pub fn restart(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        assert!(!node.is_running());
        spawn(node);
    }

    pub fn node(&self, id: u64) -> &TestNode {
        &self.nodes[&id]
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes.values().filter(|n| n.is_running()).map(|n| n.id).collect()
    }

    pub async fn get(&self, id: u64, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.node(id).url(path)).send().await;
        match resp {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    /// POSTs `body` to node `id` as the account its `bidder`, `buyer` or `seller` field
    /// names (created with the seller and bidder roles on first use), else as the admin.
    pub async fn post(&self, id: u64, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
        let name = ["bidder", "buyer", "seller"]
            .iter()
            .find_map(|f| body[*f].as_str())
            .map(str::to_string);
        let token = match name {
            Some(name) => self.token(&name).await,
            None => Some(ADMIN_TOKEN.to_string()),
        };
        self.post_with(id, path, body, key, token.as_deref()).await
    }

    /// POSTs `body` to node `id` with `token` (none: unauthenticated).
    pub async fn post_with(
        &self,
        id: u64,
        path: &str,
        body: &Value,
        key: Option<&str>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.post(self.node(id).url(path)).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    /// The token of account `name`, created (seller and bidder) through any running node
    /// on first use; `None` if the cluster refuses the name.
    pub async fn token(&self, name: &str) -> Option<String> {
        if let Some(t) = self.tokens.lock().unwrap().get(name) {
            return Some(t.clone());
        }
        let body = serde_json::json!({ "name": name, "roles": ["seller", "bidder"] });
        for _ in 0..100 {
            for id in self.running() {
                let resp = self
                    .http
                    .post(self.node(id).url("/v1/accounts"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await;
                let Ok(resp) = resp else { continue };
                let status = resp.status().as_u16();
                let answer: Value = resp.json().await.unwrap_or(Value::Null);
                match status {
                    201 => {
                        let token = answer["token"].as_str()?.to_string();
                        self.tokens.lock().unwrap().insert(name.to_string(), token.clone());
                        return Some(token);
                    }
                    400 | 403 | 409 => return None,
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// A request to node `id` carrying the admin's token (membership and admin routes).
    pub async fn admin(&self, method: reqwest::Method, id: u64, path: &str) -> reqwest::Response {
        self.http
            .request(method, self.node(id).url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin request")
    }

    /// Sends raw bytes; returns the status and the body as text.
    pub async fn send_bytes(&self, id: u64, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, String) {
        let resp = self
            .http
            .request(method, self.node(id).url(path))
            .body(body)
            .send()
            .await
            .expect("request");
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }

    /// One value from a node's `/metrics` (the line starting with `name`), 0 if absent.
    pub async fn metric(&self, id: u64, name: &str) -> u64 {
        let text = self
            .http
            .get(self.node(id).url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub async fn cluster(&self, id: u64) -> Value {
        self.get(id, "/v1/cluster").await.1
    }

    /// Polls `check` until it returns `Some` or the deadline passes.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, deadline: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let end = Instant::now() + deadline;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() > end {
                for n in self.nodes.values() {
                    eprintln!("--- node {} log tail ---\n{}", n.id, n.log_tail());
                }
                panic!("timed out waiting for: {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_ready(&self, id: u64) {
        self.wait_for(&format!("node {id} ready"), DEADLINE, || async move {
            (self.get(id, "/ready").await.0 == 200).then_some(())
        })
        .await
    }

    /// Waits until node `id` sees `n` voters and a leader.
    pub async fn wait_voters(&self, id: u64, n: usize) {
        self.wait_for(&format!("{n} voters seen by node {id}"), DEADLINE, || async move {
            let c = self.cluster(id).await;
            let voters = c["members"]
                .as_array()?
                .iter()
                .filter(|m| m["voter"] == json!(true))
                .count();
            (voters == n && !c["leader"].is_null()).then_some(())
        })
        .await
    }

    /// Waits until node `via` (the leader) lists `n` live workers.
    pub async fn wait_live_workers(&self, via: u64, n: usize) {
        self.wait_for(&format!("{n} live workers"), DEADLINE, || async move {
            let (_, w) = self.get(via, "/v1/workers").await;
            (w["workers"]
                .as_array()?
                .iter()
                .filter(|w| w["live"] == json!(true))
                .count()
                == n)
                .then_some(())
        })
        .await
    }

    /// The leader's id as the running nodes agree on it.
    pub async fn leader(&self) -> u64 {
        self.wait_for("an agreed leader", DEADLINE, || async move {
            let mut seen = None;
            for id in self.running() {
                let l = self.cluster(id).await["leader"]["id"].as_u64()?;
                if seen.is_some_and(|s| s != l) {
                    return None;
                }
                seen = Some(l);
            }
            seen.filter(|l| self.running().contains(l))
        })
        .await
    }

    /// Waits until every running node reports the same applied index and state hash.
    pub async fn wait_converged(&self) -> (u64, String) {
        self.wait_for(
            "all running nodes at the same applied index and state hash",
            DEADLINE,
            || async move {
                let mut seen: Option<(u64, String)> = None;
                for id in self.running() {
                    let c = self.cluster(id).await;
                    let here = (c["applied_index"].as_u64()?, c["state_hash"].as_str()?.to_string());
                    if seen.as_ref().is_some_and(|s| *s != here) {
                        return None;
                    }
                    seen = Some(here);
                }
                seen
            },
        )
        .await
    }
}

fn spawn(node: &mut TestNode) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log_path)
        .unwrap();
    let mut command = match node.prefix.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(gavel_bin());
            c
        }
        None => Command::new(gavel_bin()),
    };
    let child = command
        .args(["serve", "--config", node.config.to_str().unwrap()])
        .env("RUST_LOG", "info,openraft=warn,sled=warn")
        .envs(node.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn gavel serve");
    node.child = Some(child);
}

/// The `gavel` binary the cluster runs.
///
/// The root package's tests run the one cargo built for them (`CARGO_BIN_EXE_gavel`).
/// Another package's tests and benchmarks (`gavel-bench`) cannot depend on a binary, so
/// they take `GAVEL_BIN`, else the `gavel` of their own build profile: the executable
/// runs from `<target>/<profile>/deps/`, and `<target>/<profile>/gavel` is where
/// `cargo build [--release] -p gavel` puts it (`target/release/gavel` for `cargo bench`,
/// `target/debug/gavel` for `cargo test`, which builds it for the whole workspace).
/// Panics with the command to run when it is missing.
pub fn gavel_bin() -> PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_gavel") {
        return PathBuf::from(bin);
    }
    if let Some(bin) = std::env::var_os("GAVEL_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "GAVEL_BIN={} is not a file", bin.display());
        return bin;
    }
    let profile_dir = profile_dir();
    let bin = profile_dir.join(format!("gavel{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        let release = if profile_dir.ends_with("debug") {
            ""
        } else {
            " --release"
        };
        panic!(
            "no gavel binary at {}: build it first with `cargo build{release} -p gavel` \
             (or point GAVEL_BIN at one)",
            bin.display()
        );
    }
    bin
}

/// For a test outside the root package: builds `gavel` in this test's profile with cargo
/// when there is neither `GAVEL_BIN` nor the profile's binary — `cargo test -p
/// gavel-bench` on a fresh target dir (`cargo test --workspace` builds it with the root
/// package's tests). A binary that is there is used as it is, even if older than the
/// source: after changing the server, `cargo build -p gavel` (or test the workspace).
pub fn build_gavel_if_missing() {
    if option_env!("CARGO_BIN_EXE_gavel").is_some() || std::env::var_os("GAVEL_BIN").is_some() {
        return;
    }
    let profile_dir = profile_dir();
    if profile_dir
        .join(format!("gavel{}", std::env::consts::EXE_SUFFIX))
        .is_file()
    {
        return;
    }
    // Cargo tells the tests it runs where it is.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "gavel"]);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
        None => panic!("no build profile in {}", profile_dir.display()),
    }
    log(&format!("no gavel binary in {}: {cmd:?}", profile_dir.display()));
    let status = cmd.status().expect("running cargo");
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// `<target>/<profile>`, the directory of this test or benchmark's build profile.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running executable");
    let deps = exe.parent().expect("the executable's directory");
    // Tests and benchmarks run from `<target>/<profile>/deps/`.
    let dir = if deps.ends_with("deps") {
        deps.parent().unwrap()
    } else {
        deps
    };
    dir.to_path_buf()
}

/// An auction body that starts now and runs `secs` seconds.
pub fn auction_body(title: &str, secs: u64) -> Value {
    json!({ "seller": "sam", "title": title, "starting_price": 1000, "increment": 100, "duration_secs": secs })
}

pub fn data_dir_of(node: &TestNode) -> &Path {
    &node.data_dir
}
