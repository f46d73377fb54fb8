//! Assembling and running one node: storage, Raft, the HTTP server, bootstrap or join,
//! and a clean shutdown.
//!
//! Start-up decides between three cases by what the data dir holds:
//! - empty, no `--join`: bootstrap a one-node cluster (this node is its only voter);
//! - empty, `--join ADDR`: ask that member to add us (retrying until it answers);
//! - not empty: resume; membership comes from the log, `--join` is ignored, and nothing
//!   is ever re-bootstrapped.
//!
//! SIGTERM/SIGINT: the node tells systemd it is stopping (`crate::systemd`), a leader
//! first hands its leadership to the most up-to-date voter (so writes go on without an
//! election timeout), then the node stops accepting connections, finishes in-flight
//! requests, stops Raft, flushes the log, exits 0.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gavel_api::hosting::WorkerConfig;
use gavel_api::state::{ApiConfig, NodeCore};
use gavel_api::AppState;
use gavel_raft::{FrontDoor, FrontDoorConfig, HttpNetwork, Raft};
use gavel_storage::inspect::{archive_dir, sled_dir, snapshots_dir};
use gavel_storage::{LogStore, LogStoreOptions, StateMachineStore};
use openraft::error::{InitializeError, RaftError};
use openraft::BasicNode;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;

/// File in the data dir recording which node id owns it.
const NODE_ID_FILE: &str = "node-id";
/// Pause between join attempts.
const JOIN_RETRY_MS: u64 = 500;

/// Runs a node until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    run_until(config, stop_rx).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
    }
}

/// Where the docs explain how to rebuild a node's data dir from its peers.
pub const RECOVER_FROM_PEERS: &str = "see \"Recovering a node from its peers\" in \
     docs/operations.md: wipe this node's data dir and add it again, or restore a backup";

/// Makes sure `dir` belongs to node `id`: records the id durably in a new data dir (temp
/// file, fsync, rename, fsync of the directory: a power cut never leaves it empty), and
/// refuses a data dir that belongs to another node.
fn claim_data_dir(dir: &Path, id: u64) -> Result<()> {
    gavel_storage::fsutil::create_dir_durably(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    let path = dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().is_empty() => bail!(
            "{} is empty: an older Gavel wrote it without fsync and a power cut emptied it. If this data dir belongs to node {id}, write the id back \
             (`echo {id} > {}`) and start again",
            path.display(),
            path.display()
        ),
        Ok(text) => {
            let owner: u64 = text
                .trim()
                .parse()
                .with_context(|| format!("{} is not a node id", path.display()))?;
            if owner != id {
                bail!(
                    "data dir {} belongs to node {owner}, not node {id}; use --id {owner} or another data dir",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            gavel_storage::fsutil::write_durably(&path, format!("{id}\n").as_bytes())
                .with_context(|| format!("writing {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// File in the data dir written once this node has a Raft vote: from then on an empty
/// log means lost state, never a new node.
pub const RAFT_STARTED_FILE: &str = "raft-started";
/// How often the marker task looks for a vote.
const RAFT_STARTED_POLL_MS: u64 = 200;

/// Writes [`RAFT_STARTED_FILE`] durably as soon as the log holds a vote.
async fn mark_raft_started(log: LogStore, marker: std::path::PathBuf, mut stop: watch::Receiver<bool>) {
    loop {
        if matches!(log.read_vote(), Ok(Some(_))) {
            if let Err(e) = gavel_storage::fsutil::write_durably(&marker, b"1\n") {
                tracing::warn!(error = %e, "could not write {}", marker.display());
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(RAFT_STARTED_POLL_MS)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// File in the data dir holding the first admin's token (mode 0600).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// File in the data dir holding a cluster secret the node generated (mode 0600).
pub const CLUSTER_SECRET_FILE: &str = "cluster.secret";
/// Pause between attempts to create the first admin.
const FIRST_ADMIN_RETRY_MS: u64 = 200;

/// The cluster secret: configured, else the one this node generated earlier, else a new
/// one, stored durably in the data dir with instructions for the nodes that will join.
fn cluster_secret(config: &Config) -> Result<String> {
    if let Some(secret) = &config.cluster_secret {
        return Ok(secret.clone());
    }
    let path = config.data_dir.join(CLUSTER_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= crate::config::CLUSTER_SECRET_MIN_BYTES => return Ok(text.trim().to_string()),
        Ok(_) => bail!("{} is too short to be a cluster secret", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let secret = gavel_api::auth::new_token()
        .trim_start_matches(gavel_api::auth::TOKEN_PREFIX)
        .to_string();
    gavel_storage::fsutil::write_durably_private(&path, format!("{secret}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(
        file = %path.display(),
        "no cluster secret was configured: generated one. Nodes that join this cluster need it: \
         GAVEL_CLUSTER_SECRET=$(cat {}) gavel serve --join <this node> ...",
        path.display()
    );
    Ok(secret)
}

/// The first admin's token: `--admin-token-file` if given, else `<data_dir>/admin.token`.
/// With `create`, a missing data-dir token is generated and written durably (mode 0600).
fn first_admin_token(config: &Config, create: bool) -> Result<Option<String>> {
    let (path, configured) = match &config.admin_token_file {
        Some(path) => (path.clone(), true),
        None => (config.data_dir.join(ADMIN_TOKEN_FILE), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Some(text.trim().to_string())),
        Ok(_) => bail!("{} is empty: it must hold the first admin's token", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && configured => {
            bail!("admin_token_file {} does not exist", path.display())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if !create {
        return Ok(None);
    }
    let token = gavel_api::auth::new_token();
    gavel_storage::fsutil::write_durably_private(&path, format!("{token}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(
        file = %path.display(),
        "the first admin's API token is in this file: TOKEN=$(cat {})",
        path.display()
    );
    Ok(Some(token))
}

/// Creates the account `admin` with `token` once this node leads a cluster that has no
/// admin yet (a committed command, proposed by the cluster itself).
async fn ensure_first_admin(door: FrontDoor, token: String, mut stop: watch::Receiver<bool>) {
    use gavel_storage::book::accounts::{hash_token, Account, Role};
    loop {
        if door.sm.read().book.has_admin() || *stop.borrow() {
            return;
        }
        if door.is_leader() {
            let account = Account {
                name: "admin".into(),
                roles: [Role::Admin].into_iter().collect(),
                budget: None,
                public_key: None,
                token_hash: hash_token(&token),
                disabled: false,
                created_at_ms: 0,
                last_nonce: 0,
            };
            let cmd = gavel_storage::Command::new(gavel_api::json::now_ms(), gavel_storage::Op::CreateAccount(account));
            match door.write(cmd).await {
                Ok(gavel_storage::Response::AccountChanged { .. }) => {
                    tracing::info!("created the first admin account, \"admin\"");
                    return;
                }
                Ok(other) => {
                    tracing::warn!(answer = ?other, "the first admin account was not created");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "first admin not created yet"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(FIRST_ADMIN_RETRY_MS)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Opens and verifies the log. A log sled cannot open (it panicked, as sled 0.34.7 does
/// on a blob file emptied by a power cut) names the data dir and the way out.
fn open_log(config: &Config) -> Result<LogStore> {
    let unopenable = |e: gavel_storage::Error| match e {
        e if e.is_locked() => anyhow::anyhow!(
            "the data dir {} is in use by another running gavel (its log is locked); stop that \
             node first, or give this one another --data-dir",
            config.data_dir.display()
        ),
        gavel_storage::Error::Unopenable { reason, .. } => anyhow::anyhow!(
            "the log in {} cannot be opened: {reason}; {RECOVER_FROM_PEERS}",
            config.data_dir.display()
        ),
        other => anyhow::Error::new(other).context(format!("opening the log in {}", config.data_dir.display())),
    };
    let log = LogStore::open(
        sled_dir(&config.data_dir),
        LogStoreOptions {
            fsync: config.fsync,
            cache_capacity_bytes: config.log_cache_mb * 1024 * 1024,
            ..Default::default()
        },
    )
    .map_err(unopenable)?;
    let started = std::time::Instant::now();
    let records = log.verify().map_err(|e| match e {
        e @ gavel_storage::Error::Unopenable { .. } => unopenable(e),
        e => anyhow::anyhow!("refusing to start: {e}. This node will not serve damaged state; {RECOVER_FROM_PEERS}"),
    })?;
    tracing::info!(
        records,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "log verified"
    );
    let blobs = log.blob_files();
    if blobs > 0 {
        tracing::warn!(blobs, "the log has sled blob files (see gavel_sled_blob_files)");
    }
    Ok(log)
}

/// Runs a node until `stop` becomes true.
pub async fn run_until(config: Config, mut stop: watch::Receiver<bool>) -> Result<()> {
    tracing::info!(?config, "starting gavel node");
    claim_data_dir(&config.data_dir, config.id)?;
    let log = open_log(&config)?;
    let sm = StateMachineStore::open(snapshots_dir(&config.data_dir), archive_dir(&config.data_dir))
        .context("restoring the newest snapshot and opening the archive")?;
    let fresh = log.read_vote()?.is_none() && log.is_empty() && sm.last_applied().is_none();
    let marker = config.data_dir.join(RAFT_STARTED_FILE);
    if fresh && marker.exists() {
        bail!(
            "{} says this data dir held a Raft member, but its log and snapshots are empty: its \
             state was lost. Refusing to start as a new node; {RECOVER_FROM_PEERS}",
            marker.display()
        );
    }
    if let (Some(purged), Some(applied)) = (log.read_last_purged()?, sm.last_applied()) {
        if applied.index < purged.index {
            bail!(
                "the newest usable snapshot ends at index {} but the log was purged up to {}: \
                 the entries in between are gone (a newer snapshot was probably renamed .broken). \
                 Restore a snapshot file, or wipe this node's data dir and re-add it to the cluster",
                applied.index,
                purged.index
            );
        }
    }

    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let bound = listener.local_addr()?;
    let advertise = config.advertise.clone().unwrap_or_else(|| bound.to_string());
    let cluster_secret = cluster_secret(&config)?;
    let secret: Option<Arc<str>> = Some(Arc::from(cluster_secret.as_str()));
    let raft_config = config
        .raft
        .to_openraft(&config.cluster_name)
        .map_err(anyhow::Error::msg)?;
    let tls = config
        .tls_files()
        .map(|files| gavel_raft::tls::NodeTls::load(&files).map(Arc::new))
        .transpose()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
    let network = HttpNetwork::new(&cluster_secret, config.source_ip, tls.as_deref()).map_err(anyhow::Error::msg)?;
    let raft = Raft::new(config.id, raft_config, network.clone(), log.clone(), sm.clone())
        .await
        .context("starting raft")?;
    let door = FrontDoor::new(
        raft.clone(),
        sm.clone(),
        network,
        FrontDoorConfig {
            node_id: config.id,
            worker_grace: Duration::from_millis(config.worker_grace_ms),
            learner_catchup_timeout: Duration::from_millis(config.raft.learner_catchup_timeout_ms),
            idempotency_limits: config.idempotency.to_limits(),
            archive_after: Duration::from_secs(config.archive_after_secs),
            max_clock_skew_ms: config.max_clock_skew_ms,
        },
    );

    if !fresh {
        tracing::info!(applied = ?sm.last_applied(), "resuming from the data dir");
        if config.join.is_some() {
            tracing::info!("data dir is not empty: already a member, ignoring --join");
        }
    } else if config.join.is_none() {
        let members = BTreeMap::from([(config.id, BasicNode::new(advertise.clone()))]);
        // The first admin's token is on disk before the cluster exists, so that a crash
        // in between leaves a token to propose again at the next start.
        first_admin_token(&config, true)?;
        match raft.initialize(members).await {
            Ok(()) => tracing::info!(id = config.id, addr = %advertise, "bootstrapped a one-node cluster"),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(e).context("bootstrapping the cluster"),
        }
    }
    if !marker.exists() {
        tokio::spawn(mark_raft_started(log.clone(), marker, stop.clone()));
    }
    if let Some(token) = first_admin_token(&config, false)? {
        tokio::spawn(ensure_first_admin(door.clone(), token, stop.clone()));
    }

    let udp_socket = Arc::new(
        tokio::net::UdpSocket::bind(&config.udp)
            .await
            .with_context(|| format!("binding UDP {}", config.udp))?,
    );
    let udp_addr = udp_advertise(udp_socket.local_addr()?, &advertise);
    let broadcast = match &config.udp_broadcast {
        Some(target) => {
            udp_socket.set_broadcast(true)?;
            Some(target.parse().with_context(|| format!("udp_broadcast {target:?}"))?)
        }
        None => None,
    };
    let udp_counters = Arc::new(gavel_api::udp::UdpCounters::default());
    let udp = gavel_api::udp::start_sender(udp_socket.clone(), udp_counters.clone());
    let worker = WorkerConfig {
        node_id: config.id,
        addr: advertise.clone(),
        udp_addr: udp_addr.clone(),
        max_auctions: config.max_auctions,
        grace: Duration::from_millis(config.worker_grace_ms),
        broadcast,
    };
    let state = AppState::new(
        NodeCore {
            raft: raft.clone(),
            sm: sm.clone(),
            log: log.clone(),
            door: door.clone(),
        },
        ApiConfig {
            cluster_name: config.cluster_name.clone(),
            secret,
            source_ip: config.source_ip,
            data_dir: Some(config.data_dir.clone()),
            rate_limits: config.rate_limits.to_api(),
            tls: tls.clone(),
        },
        worker,
        udp,
    );
    let (datagram_tx, datagram_rx) = tokio::sync::mpsc::channel(gavel_api::subscriptions::DATAGRAM_REQUESTS_MAX);
    let receiver = tokio::spawn(gavel_api::udp::receive(udp_socket, udp_counters, datagram_tx));
    tokio::spawn(gavel_api::subscriptions::run_datagram_requests(
        state.clone(),
        datagram_rx,
    ));
    let worker_task = tokio::spawn(gavel_api::hosting::run_worker(state.clone(), stop.clone()));
    let reconciler = tokio::spawn(gavel_raft::workers::run_reconciler(door.clone(), stop.clone()));
    tokio::spawn(gavel_raft::housekeeping::run_housekeeping(door.clone(), stop.clone()));
    tokio::spawn(gavel_raft::clock::run_clock_watch(door.clone(), stop.clone()));
    let membership = tokio::spawn(gavel_api::membership::run_membership_watch(state.clone(), stop.clone()));
    tokio::spawn(gavel_api::limits::run_forgetting(state.limits.clone(), stop.clone()));
    tokio::spawn(gavel_api::metrics::run_sampler(state.clone(), stop.clone()));
    tokio::spawn(gavel_raft::metrics::run_leader_watch(raft.clone(), stop.clone()));
    tokio::spawn(crate::systemd::run(state.clone(), stop.clone()));
    let limits = config.http.to_server_limits();
    let connections = state.connections.clone();
    let app = gavel_api::router(state);
    // The server drains only after a leader has handed its leadership over: until then
    // it still answers the node RPCs of the transfer and takes writes.
    let (drain, mut server_stop) = watch::channel(false);
    let server_tls = tls.as_ref().map(|t| t.server.clone());
    let server = tokio::spawn(gavel_api::serve(
        listener,
        app,
        limits,
        connections,
        server_tls,
        async move {
            let _ = server_stop.wait_for(|s| *s).await;
        },
    ));
    tracing::info!(listen = %bound, advertise = %advertise, udp = %udp_addr, "serving HTTP API, node RPC and UDP");

    if fresh {
        if let Some(join) = config.join.clone() {
            let secret = cluster_secret.clone();
            tokio::select! {
                result = join_cluster(&join, config.id, &advertise, &secret, tls.as_deref()) => result?,
                _ = stop.wait_for(|s| *s) => {}
            }
        }
    }

    let _ = stop.wait_for(|s| *s).await;
    crate::systemd::stopping();
    let timings = &config.raft;
    gavel_raft::cluster::hand_off_leadership(&raft, Duration::from_millis(timings.election_timeout_max_ms)).await;
    let _ = drain.send(true);
    match server.await {
        Ok(Ok(())) => tracing::info!("HTTP server drained"),
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
        Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
    }
    let _ = worker_task.await;
    let _ = reconciler.await;
    let _ = membership.await;
    receiver.abort();
    if let Err(e) = raft.shutdown().await {
        tracing::error!(error = %e, "raft shutdown failed");
    }
    log.sync().await.context("final flush of the log")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The UDP address this worker registers (shown in `/v1/workers`, where clients find a
/// node's port for subscribe datagrams): the bound one, or, bound on every interface
/// (`udp = "0.0.0.0:7071"`, as on a multi-homed host), the advertised host at the bound
/// port — `0.0.0.0:7071` would send a client on another machine to itself.
fn udp_advertise(bound: std::net::SocketAddr, advertise: &str) -> String {
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    match advertise.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{}", bound.port()),
        None => bound.to_string(),
    }
}

/// Asks the member at `join` to add this node, until it says yes or refuses for good.
async fn join_cluster(
    join: &str,
    id: u64,
    advertise: &str,
    secret: &str,
    tls: Option<&gavel_raft::tls::NodeTls>,
) -> Result<()> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(600));
    if let Some(tls) = tls {
        builder = tls.peer_client(builder).map_err(anyhow::Error::msg)?;
    }
    let client = builder.build()?;
    let url = format!("{}://{join}/v1/cluster/nodes", gavel_raft::tls::scheme(tls));
    let body = serde_json::json!({ "id": id, "addr": advertise });
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        tracing::info!(%url, attempt, "asking to join the cluster");
        match client.post(&url).bearer_auth(secret).json(&body).send().await {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(id, "joined the cluster as a voter");
                return Ok(());
            }
            Ok(resp) if resp.status().is_client_error() => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                bail!("the cluster refused to add node {id} ({status}): {text}");
            }
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                tracing::warn!(%status, answer = %text, "join not possible yet; retrying");
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach {join} yet; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(JOIN_RETRY_MS)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::udp_advertise;

    #[test]
    fn a_worker_bound_on_every_interface_registers_its_advertised_host() {
        let cases = [
            ("10.0.0.11:7071", "10.0.0.11:7070", "10.0.0.11:7071"),
            ("0.0.0.0:7071", "10.0.0.11:7070", "10.0.0.11:7071"),
            ("0.0.0.0:7171", "node1.example:7070", "node1.example:7171"),
            ("[::]:7071", "[2001:db8::11]:7070", "[2001:db8::11]:7071"),
        ];
        for (bound, advertise, want) in cases {
            assert_eq!(
                udp_advertise(bound.parse().unwrap(), advertise),
                want,
                "{bound} {advertise}"
            );
        }
    }
}
