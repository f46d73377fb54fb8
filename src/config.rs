//! The node's configuration: one struct, filled from defaults, then a TOML file
//! (`--config`), then `GAVEL_*` environment variables, then flags (clap merges the last
//! two: a flag wins over its variable). [`Config::validate`] runs before anything starts.
//! `deploy/gavel.example.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gavel_raft::RaftTimings;
use serde::{Deserialize, Serialize};

use crate::cli::ServeArgs;

/// Shortest cluster secret accepted.
pub const CLUSTER_SECRET_MIN_BYTES: usize = 16;
/// Bounds of `max_clock_skew_ms`: under the lower one, a loaded machine's round trips
/// alone would make clocks look skewed; over the upper one, auctions could close a
/// minute off.
pub const MAX_CLOCK_SKEW_MIN_MS: u64 = 50;
pub const MAX_CLOCK_SKEW_MAX_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Raft node id, >= 1, unique in the cluster and fixed for the data dir's life.
    pub id: u64,
    pub data_dir: PathBuf,
    /// HTTP API and node RPC.
    pub listen: String,
    /// Address peers and forwarded clients use; defaults to the bound listen address.
    pub advertise: Option<String>,
    /// UDP fast path.
    pub udp: String,
    /// Local address for outgoing connections to peers (multi-homed hosts); default: the
    /// system's choice.
    pub source_ip: Option<std::net::IpAddr>,
    /// A member's address to ask for admission when this node starts with an empty data
    /// dir.
    pub join: Option<String>,
    /// How many auctions this node hosts as a worker.
    pub max_auctions: u32,
    /// A worker silent this long (no heartbeat to the leader) loses its auctions.
    pub worker_grace_ms: u64,
    /// An auction closed (or cancelled) this long ago moves from memory to the archive
    /// on disk (the leader's housekeeping; docs/operations.md, "Archive").
    pub archive_after_secs: u64,
    /// A leader whose clock is further than this from the time a majority of the voters
    /// agree on stamps no command and hands its leadership over (docs/operations.md,
    /// "Clocks").
    pub max_clock_skew_ms: u64,
    /// Also push every hosted auction event to this broadcast or multicast address.
    pub udp_broadcast: Option<String>,
    /// Shared by every node; required on node RPC and admin routes. Without it the node
    /// runs alone.
    pub cluster_secret: Option<String>,
    pub cluster_name: String,
    pub log_format: LogFormat,
    /// fsync sled's data file after each flush (power-loss durability). Leave on.
    pub fsync: bool,
    /// sled's page cache for the log, in MiB (it counts in the node's memory).
    pub log_cache_mb: u64,
    pub raft: RaftTimings,
    /// Bounds on client connections.
    pub http: HttpLimits,
    /// Bounds of the idempotency table (replicated: the leader's apply to the cluster).
    pub idempotency: IdempotencyConfig,
    /// A file holding the first admin's token, used when this node bootstraps a cluster
    /// (default: a new token written to `<data_dir>/admin.token`).
    pub admin_token_file: Option<PathBuf>,
    /// Token buckets per client address and per account.
    pub rate_limits: RateLimits,
    /// PEM certificate chain and key: serve HTTPS (API and node RPC).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA that signed every node's certificate: nodes verify each other with it.
    pub peer_ca: Option<PathBuf>,
}

/// `[rate_limits]`: requests per second and bursts; 0 per second turns a limit off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Every request from one client address (reads included).
    pub per_address_per_sec: u32,
    pub per_address_burst: u32,
    /// Every write by one account.
    pub per_account_per_sec: u32,
    pub per_account_burst: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        let d = gavel_api::limits::RateLimitConfig::default();
        RateLimits {
            per_address_per_sec: d.per_address_per_sec,
            per_address_burst: d.per_address_burst,
            per_account_per_sec: d.per_account_per_sec,
            per_account_burst: d.per_account_burst,
        }
    }
}

impl RateLimits {
    pub fn to_api(&self) -> gavel_api::limits::RateLimitConfig {
        gavel_api::limits::RateLimitConfig {
            per_address_per_sec: self.per_address_per_sec,
            per_address_burst: self.per_address_burst,
            per_account_per_sec: self.per_account_per_sec,
            per_account_burst: self.per_account_burst,
        }
    }
}

/// `[idempotency]`: how many keys are remembered, per client and in all, for how long,
/// and how many early evictions an hour the evicted-key filter records (see
/// docs/operations.md, "Retries and idempotency").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyConfig {
    pub keys_max: u64,
    pub keys_per_client: u64,
    pub ttl_secs: u64,
    pub filter_bits_per_hour: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        let d = gavel_storage::IdempotencyLimits::default();
        IdempotencyConfig {
            keys_max: d.keys_max,
            keys_per_client: d.keys_per_client,
            ttl_secs: d.ttl_ms / 1000,
            filter_bits_per_hour: d.filter_bits_per_hour,
        }
    }
}

impl IdempotencyConfig {
    pub fn to_limits(&self) -> gavel_storage::IdempotencyLimits {
        gavel_storage::IdempotencyLimits {
            keys_max: self.keys_max,
            keys_per_client: self.keys_per_client,
            ttl_ms: self.ttl_secs.saturating_mul(1000),
            filter_bits_per_hour: self.filter_bits_per_hour,
        }
    }
}

/// `[http]`: how many connections a node serves and how long it waits for slow ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Connections served at once; one more is answered 503 `too_many_connections`.
    pub max_connections: usize,
    /// A request's headers must arrive within this (also the keep-alive timeout).
    pub header_read_timeout_ms: u64,
    /// A connection that moves no byte for this long is closed.
    pub idle_timeout_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        let d = gavel_api::server::ServerLimits::default();
        HttpLimits {
            max_connections: d.max_connections,
            header_read_timeout_ms: d.header_read_timeout.as_millis() as u64,
            idle_timeout_ms: d.idle_timeout.as_millis() as u64,
        }
    }
}

impl HttpLimits {
    pub fn to_server_limits(&self) -> gavel_api::server::ServerLimits {
        gavel_api::server::ServerLimits {
            max_connections: self.max_connections,
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: std::time::Duration::from_millis(self.idle_timeout_ms),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("id", &self.id)
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("udp", &self.udp)
            .field("source_ip", &self.source_ip)
            .field("join", &self.join)
            .field("max_auctions", &self.max_auctions)
            .field("worker_grace_ms", &self.worker_grace_ms)
            .field("log_cache_mb", &self.log_cache_mb)
            .field("archive_after_secs", &self.archive_after_secs)
            .field("max_clock_skew_ms", &self.max_clock_skew_ms)
            .field("udp_broadcast", &self.udp_broadcast)
            .field("cluster_secret", &self.cluster_secret.as_ref().map(|_| "<set>"))
            .field("cluster_name", &self.cluster_name)
            .field("fsync", &self.fsync)
            .field("raft", &self.raft)
            .field("http", &self.http)
            .field("idempotency", &self.idempotency)
            .field("admin_token_file", &self.admin_token_file)
            .field("rate_limits", &self.rate_limits)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("peer_ca", &self.peer_ca)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: 1,
            data_dir: PathBuf::from("./gavel-data"),
            listen: "127.0.0.1:7070".into(),
            advertise: None,
            udp: "127.0.0.1:7071".into(),
            source_ip: None,
            join: None,
            max_auctions: 10_000,
            worker_grace_ms: 1_000,
            log_cache_mb: gavel_storage::log_store::LOG_CACHE_BYTES_DEFAULT / (1024 * 1024),
            archive_after_secs: 24 * 3600,
            max_clock_skew_ms: 500,
            udp_broadcast: None,
            cluster_secret: None,
            cluster_name: "gavel".into(),
            log_format: LogFormat::Pretty,
            fsync: true,
            raft: RaftTimings::default(),
            http: HttpLimits::default(),
            idempotency: IdempotencyConfig::default(),
            admin_token_file: None,
            rate_limits: RateLimits::default(),
            tls_cert: None,
            tls_key: None,
            peer_ca: None,
        }
    }
}

impl Config {
    /// The TLS files, when the node serves HTTPS.
    pub fn tls_files(&self) -> Option<gavel_raft::tls::TlsFiles> {
        Some(gavel_raft::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            peer_ca: self.peer_ca.clone(),
        })
    }

    /// Defaults, then the file, then env and flags.
    pub fn load(args: &ServeArgs) -> Result<Config> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! overlay {
            ($($field:ident),*) => { $( if let Some(v) = &args.$field { config.$field = v.clone().into(); } )* };
        }
        overlay!(
            id,
            data_dir,
            listen,
            udp,
            max_auctions,
            max_clock_skew_ms,
            cluster_name,
            log_format
        );
        if let Some(v) = &args.advertise {
            config.advertise = Some(v.clone());
        }
        if let Some(v) = &args.join {
            config.join = Some(v.clone());
        }
        if let Some(v) = args.rate_per_address {
            config.rate_limits.per_address_per_sec = v;
            config.rate_limits.per_address_burst = v.saturating_mul(2);
        }
        if let Some(v) = args.rate_per_account {
            config.rate_limits.per_account_per_sec = v;
            config.rate_limits.per_account_burst = v.saturating_mul(2);
        }
        for (field, value) in [
            (&mut config.tls_cert, &args.tls_cert),
            (&mut config.tls_key, &args.tls_key),
            (&mut config.peer_ca, &args.peer_ca),
        ] {
            if let Some(v) = value {
                *field = Some(v.clone());
            }
        }
        if let Some(v) = &args.admin_token_file {
            config.admin_token_file = Some(v.clone());
        }
        if let Some(v) = &args.cluster_secret {
            config.cluster_secret = Some(v.clone());
        }
        if args.no_fsync {
            config.fsync = false;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Checks everything that can be checked before starting; messages say what to fix.
    pub fn validate(&self) -> Result<()> {
        if self.id == 0 {
            bail!("id must be >= 1");
        }
        let listen: SocketAddr = self
            .listen
            .parse()
            .with_context(|| format!("listen {:?} is not an IP:port address", self.listen))?;
        self.udp
            .parse::<SocketAddr>()
            .with_context(|| format!("udp {:?} is not an IP:port address", self.udp))?;
        if let Some(adv) = &self.advertise {
            check_host_port("advertise", adv)?;
        } else if listen.ip().is_unspecified() {
            bail!(
                "listen {} accepts on every interface; set advertise to the address peers should use",
                self.listen
            );
        }
        if let Some(join) = &self.join {
            check_host_port("join", join)?;
            if self.cluster_secret.is_none() {
                bail!("join needs cluster_secret (--cluster-secret or GAVEL_CLUSTER_SECRET), the same on every node");
            }
        }
        if let Some(secret) = &self.cluster_secret {
            if secret.len() < CLUSTER_SECRET_MIN_BYTES {
                bail!("cluster_secret must be at least {CLUSTER_SECRET_MIN_BYTES} bytes");
            }
        }
        if self.log_cache_mb == 0 {
            bail!("log_cache_mb must be at least 1");
        }
        if self.archive_after_secs == 0 {
            bail!("archive_after_secs must be at least 1");
        }
        if self.worker_grace_ms < 2 * gavel_raft::workers::HEARTBEAT_INTERVAL_MS {
            bail!(
                "worker_grace_ms ({}) must be at least twice the worker heartbeat ({} ms)",
                self.worker_grace_ms,
                gavel_raft::workers::HEARTBEAT_INTERVAL_MS
            );
        }
        if !(MAX_CLOCK_SKEW_MIN_MS..=MAX_CLOCK_SKEW_MAX_MS).contains(&self.max_clock_skew_ms) {
            bail!(
                "max_clock_skew_ms ({}) must be between {MAX_CLOCK_SKEW_MIN_MS} and {MAX_CLOCK_SKEW_MAX_MS}",
                self.max_clock_skew_ms
            );
        }
        if let Some(b) = &self.udp_broadcast {
            b.parse::<SocketAddr>()
                .with_context(|| format!("udp_broadcast {b:?} is not an IP:port address"))?;
        }
        if self.cluster_name.is_empty() {
            bail!("cluster_name must not be empty");
        }
        self.raft.validate().map_err(anyhow::Error::msg)?;
        self.idempotency
            .to_limits()
            .validate()
            .map_err(|e| anyhow::anyhow!("[idempotency]: {e}"))?;
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => bail!("tls_cert and tls_key go together"),
            _ => {}
        }
        if self.peer_ca.is_some() && self.tls_cert.is_none() {
            bail!("peer_ca needs tls_cert and tls_key: a node presents its own certificate to its peers");
        }
        if self.http.max_connections == 0 {
            bail!("http.max_connections must be at least 1");
        }
        if self.http.header_read_timeout_ms == 0 || self.http.idle_timeout_ms == 0 {
            bail!("http.header_read_timeout_ms and http.idle_timeout_ms must be > 0");
        }
        if self.http.idle_timeout_ms <= gavel_api::sse::KEEP_ALIVE_SECS * 1000 {
            bail!(
                "http.idle_timeout_ms must exceed the SSE keep-alive interval ({} s)",
                gavel_api::sse::KEEP_ALIVE_SECS
            );
        }
        Ok(())
    }
}

fn check_host_port(what: &str, value: &str) -> Result<()> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => Ok(()),
        _ => bail!("{what} {value:?} is not host:port"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/gavel.example.toml");
        let config = Config::from_file(&path).unwrap();
        config.validate().unwrap();
        assert_eq!(config.id, 1);
        assert!(config.cluster_secret.is_some());
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        type Change = fn(&mut Config);
        let cases: [(&str, Change); 8] = [
            ("id must be", |c| c.id = 0),
            ("not an IP:port", |c| c.listen = "localhost".into()),
            ("set advertise", |c| c.listen = "0.0.0.0:7070".into()),
            ("join needs cluster_secret", |c| c.join = Some("127.0.0.1:7070".into())),
            ("at least 16 bytes", |c| c.cluster_secret = Some("short".into())),
            ("twice raft.heartbeat", |c| c.raft.election_timeout_min_ms = 10),
            ("max_clock_skew_ms (0)", |c| c.max_clock_skew_ms = 0),
            ("max_clock_skew_ms (60001)", |c| c.max_clock_skew_ms = 60_001),
        ];
        for (want, change) in cases {
            let mut c = Config::default();
            change(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        assert!(toml::from_str::<Config>("idd = 3").is_err(), "unknown keys are refused");
    }
}
