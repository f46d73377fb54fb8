//! Node-to-node RPC, client side: openraft's `RaftNetworkFactory` over HTTP.
//!
//! Each RPC is one `POST http://<peer>/raft/<append|vote|snapshot>` with a bincode 2
//! (serde mode) body of openraft's request type, and `Authorization: Bearer <secret>`.
//! The response body is the bincode of `Result<Response, RaftError>` as the peer's Raft
//! returned it. One `reqwest::Client` (a keep-alive connection pool) serves all peers.
//!
//! Failures are reported the way openraft backs off on: a connection that cannot be made,
//! or a peer that refuses our secret, is `Unreachable` (openraft waits before retrying);
//! anything else in transport is a `NetworkError`; an error returned by the peer's Raft is
//! a `RemoteError`.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use gavel_storage::{bincode_config, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::rpc::{RPC_APPEND_PATH, RPC_SNAPSHOT_PATH, RPC_VOTE_PATH};

/// How long to wait for a TCP connection to a peer.
pub const CONNECT_TIMEOUT_MS: u64 = 500;
/// Idle keep-alive connections kept per peer.
pub const POOL_IDLE_PER_PEER_MAX: usize = 4;
/// How long an HTTP client of a node keeps an idle connection: well under the server's
/// keep-alive timeout (`[http] header_read_timeout_ms`, 10 s by default), so a request
/// never goes out on a connection the server is closing.
pub const CLIENT_POOL_IDLE_MS: u64 = 5_000;

/// The network factory: one shared HTTP client and the cluster secret.
#[derive(Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
    secret: Arc<str>,
    scheme: &'static str,
}

impl HttpNetwork {
    /// `source_ip`: the local address outgoing connections bind to (multi-homed hosts);
    /// `tls`: reach peers over HTTPS (see [`crate::tls`]).
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
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            target,
            base: format!("{}://{}", self.scheme, node.addr),
            client: self.client.clone(),
            secret: self.secret.clone(),
        }
    }
}

/// One peer's connection handle.
pub struct Peer {
    target: u64,
    base: String,
    client: reqwest::Client,
    secret: Arc<str>,
}

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

fn network<E: StdError>(e: &(impl StdError + 'static)) -> RPCError<u64, BasicNode, E> {
    RPCError::Network(NetworkError::new(e))
}

impl Peer {
    async fn call<Req, Resp, E>(&self, path: &str, req: &Req, timeout: Duration) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: StdError + DeserializeOwned,
    {
        let body = bincode::serde::encode_to_vec(req, bincode_config()).map_err(|e| network(&e))?;
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
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    network(&e)
                }
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let e = io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("node {} refused our cluster secret", self.target),
            );
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(network(&io::Error::other(format!(
                "node {} answered {status}: {text}",
                self.target
            ))));
        }
        let bytes = response.bytes().await.map_err(|e| network(&e))?;
        let result: Result<Resp, RaftError<u64, E>> =
            crate::rpc::decode_rpc(&bytes).map_err(|e| network(&io::Error::other(e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, openraft::error::Infallible> {
        self.call(RPC_APPEND_PATH, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call(RPC_SNAPSHOT_PATH, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, openraft::error::Infallible> {
        self.call(RPC_VOTE_PATH, &rpc, option.hard_ttl()).await
    }
}
