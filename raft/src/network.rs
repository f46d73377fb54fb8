//! Node-to-node RPC, client side: openraft's `RaftNetworkFactory` over HTTP.
//!
//! Each RPC is one `POST http://<peer>/raft/<append|vote|pre-vote|snapshot|transfer-leader|forward>`
//! with a bincode 2 (serde mode) body of openraft's request type (a snapshot goes whole:
//! the leader's vote, its meta and the file, see [`crate::rpc::SnapshotTransfer`]), and `Authorization: Bearer <secret>`.
//! The response body is the bincode of `Result<Response, RaftError>` as the peer's Raft
//! returned it. One `reqwest::Client` (a keep-alive connection pool) serves all peers.
//!
//! Every answer carries the peer's wall clock (see [`crate::clock`]); each round trip
//! is recorded in the node's [`ClockSamples`].
//!
//! Failures are reported the way openraft backs off on: a connection that cannot be made,
//! or a peer that refuses our secret, is `Unreachable` (openraft waits before retrying);
//! anything else in transport is a `NetworkError`; an error returned by the peer's Raft is
//! a `RemoteError`.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use gavel_storage::{bincode_config, TypeConfig, Vote};
use openraft::error::{NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::clock::{wall_us, ClockSamples, CLOCK_HEADER, CLUSTER_TIME_HEADER};
use crate::rpc::{RPC_APPEND_PATH, RPC_PRE_VOTE_PATH, RPC_SNAPSHOT_PATH, RPC_TRANSFER_LEADER_PATH, RPC_VOTE_PATH};

pub const CONNECT_TIMEOUT_MS: u64 = 500;
pub const POOL_IDLE_PER_PEER_MAX: usize = 4;
pub const CLIENT_POOL_IDLE_MS: u64 = 5_000;

#[derive(Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
    secret: Arc<str>,
    scheme: &'static str,
    /// The peers' clocks as this node's round trips saw them.
    clock: Arc<ClockSamples>,
}

impl HttpNetwork {
    pub fn new(
        secret: &str,
        source_ip: Option<std::net::IpAddr>,
        tls: Option<&crate::tls::NodeTls>,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .local_address(source_ip)
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .pool_max_idle_per_host(POOL_IDLE_PER_PEER_MAX)
            .pool_idle_timeout(Duration::from_millis(CLIENT_POOL_IDLE_MS))
            .tcp_nodelay(true);
        if let Some(tls) = tls {
            builder = tls.peer_client(builder)?;
        }
        Ok(HttpNetwork {
            client: builder.build().map_err(|e| e.to_string())?,
            secret: secret.into(),
            scheme: crate::tls::scheme(tls),
            clock: Arc::default(),
        })
    }

    /// The clock samples this network records.
    pub fn clock(&self) -> Arc<ClockSamples> {
        self.clock.clone()
    }

    fn peer(&self, target: u64, addr: &str) -> Peer {
        Peer {
            target,
            base: format!("{}://{addr}", self.scheme),
            client: self.client.clone(),
            secret: self.secret.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl HttpNetwork {
    /// One request to node `to` on a `/raft/*` route, outside openraft (the front door's
    /// `/raft/forward`): its answer, or why there was none.
    pub(crate) async fn call_node<Req, Answer>(
        &self,
        to: &crate::NodeAddr,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Answer, String>
    where
        Req: Serialize,
        Answer: DeserializeOwned,
    {
        self.peer(to.id, &to.addr)
            .call(path, req, timeout)
            .await
            .map_err(|t| match t {
                Transport::Unreachable(e) | Transport::Network(e) => e.to_string(),
            })
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        self.peer(target, &node.addr)
    }
}

pub struct Peer {
    target: u64,
    base: String,
    client: reqwest::Client,
    secret: Arc<str>,
    clock: Arc<ClockSamples>,
}

/// A transport failure: the peer could not be reached (openraft backs off), or the
/// exchange failed.
enum Transport {
    Unreachable(io::Error),
    Network(io::Error),
}

impl<E: StdError> From<Transport> for RPCError<TypeConfig, E> {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            Transport::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

impl From<Transport> for StreamingError<TypeConfig> {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Unreachable(e) => StreamingError::Unreachable(Unreachable::new(&e)),
            Transport::Network(e) => StreamingError::Network(NetworkError::new(&e)),
        }
    }
}

impl Peer {
    /// One RPC: the peer's answer as it encoded it (the `Result` its Raft returned).
    async fn call<Req, Answer>(&self, path: &str, req: &Req, timeout: Duration) -> Result<Answer, Transport>
    where
        Req: Serialize,
        Answer: DeserializeOwned,
    {
        let body = bincode::serde::encode_to_vec(req, bincode_config())
            .map_err(|e| Transport::Network(io::Error::other(e)))?;
        let t_send_us = wall_us();
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&*self.secret)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    Transport::Unreachable(io::Error::other(e))
                } else {
                    Transport::Network(io::Error::other(e))
                }
            })?;
        self.record_clock(t_send_us, wall_us(), response.headers());
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(Transport::Unreachable(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("node {} refused our cluster secret", self.target),
            )));
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(Transport::Network(io::Error::other(format!(
                "node {} answered {status}: {text}",
                self.target
            ))));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Transport::Network(io::Error::other(e)))?;
        crate::rpc::decode_rpc(&bytes).map_err(|e| Transport::Network(io::Error::other(e)))
    }

    /// Records the round trip's clock sample, if the peer sent its clock.
    fn record_clock(&self, t_send_us: i64, t_recv_us: i64, headers: &reqwest::header::HeaderMap) {
        let read = |name: &str| headers.get(name)?.to_str().ok()?.parse::<i64>().ok();
        if let Some(t_peer_us) = read(CLOCK_HEADER) {
            self.clock
                .record(self.target, t_send_us, t_recv_us, t_peer_us, read(CLUSTER_TIME_HEADER));
        }
    }

    /// An RPC whose answer is `Result<Resp, RaftError>`.
    async fn raft_call<Req, Resp>(&self, path: &str, req: &Req, timeout: Duration) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<TypeConfig>> = self.call(path, req, timeout).await?;
        answer.map_err(|e| match e {
            RaftError::Fatal(fatal) => RPCError::Network(NetworkError::new(&io::Error::other(format!(
                "node {} stopped: {fatal}",
                self.target
            )))),
            RaftError::APIError(never) => match never {},
        })
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(RPC_APPEND_PATH, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(RPC_VOTE_PATH, &rpc, option.hard_ttl()).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(RPC_PRE_VOTE_PATH, &rpc, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: gavel_storage::state_machine::Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let transfer: crate::rpc::SnapshotTransfer = (vote, snapshot.meta, snapshot.snapshot.into_inner());
        let sending = self.call::<_, Result<SnapshotResponse<TypeConfig>, openraft::error::Fatal<TypeConfig>>>(
            RPC_SNAPSHOT_PATH,
            &transfer,
            option.hard_ttl(),
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = sending => match answer? {
                Ok(response) => Ok(response),
                Err(fatal) => Err(StreamingError::Network(NetworkError::new(&io::Error::other(format!(
                    "node {} could not install the snapshot: {fatal}",
                    self.target
                ))))),
            },
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let answer: Result<TransferLeaderResponse<TypeConfig>, openraft::error::Fatal<TypeConfig>> =
            self.call(RPC_TRANSFER_LEADER_PATH, &req, option.hard_ttl()).await?;
        answer.map_err(|fatal| {
            RPCError::Network(NetworkError::new(&io::Error::other(format!(
                "node {} could not take the leadership: {fatal}",
                self.target
            ))))
        })
    }
}
