//! The HTTP server loop: accepting connections within bounds, so that slow or idle
//! clients cannot take a node's descriptors and starve everyone else.
//!
//! - **Connection limit.** At most [`ServerLimits::max_connections`] connections are
//!   served at once. One more is answered `503 too_many_connections` (JSON, with
//!   `Retry-After`) and closed at once, so a client learns why instead of hanging.
//! - **Header-read timeout.** A request's headers must arrive within
//!   [`ServerLimits::header_read_timeout`] of the connection being ready for them:
//!   slowloris clients (a byte a second) are cut off. The same clock runs while a
//!   keep-alive connection waits for its next request, so it is also the keep-alive
//!   timeout between requests.
//! - **Idle timeout.** A connection on which nothing was read or written for
//!   [`ServerLimits::idle_timeout`] is closed: a body that stopped arriving, a client
//!   that stopped reading. SSE streams send a comment every 15 s and stay open.
//! - **Request size.** URIs over [`URI_MAX_BYTES`] get `414 uri_too_long`, header sections
//!   over [`HEADER_SECTION_MAX_BYTES`] or [`HEADERS_MAX`] headers `431
//!   headers_too_large`, both as JSON (see `crate::limits`). hyper's own buffer
//!   ([`HYPER_BUFFER_MAX_BYTES`]) sits above those limits so that requests past them still
//!   parse and get the JSON answer; only a request beyond hyper's buffer gets hyper's
//!   bare 431.
//!
//! HTTP/1.1 only (with upgrades): the API, SSE and node RPC all use it. With TLS
//! (`gavel_raft::tls`) every connection is a rustls one; the handshake must finish
//! within the header-read timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// Longest request target accepted.
pub const URI_MAX_BYTES: usize = 8 * 1024;
/// Most bytes of header names and values in one request.
pub const HEADER_SECTION_MAX_BYTES: usize = 32 * 1024;
/// Most headers in one request.
pub const HEADERS_MAX: usize = 100;
/// hyper's read buffer: above the limits, so requests past them still reach the router.
pub const HYPER_BUFFER_MAX_BYTES: usize = 256 * 1024;
/// hyper's own header count limit, above [`HEADERS_MAX`] for the same reason.
const HYPER_HEADERS_MAX: usize = 4 * HEADERS_MAX;
/// How often a connection checks its idle time.
const IDLE_CHECK_MS: u64 = 1_000;
/// Pause after a failed `accept` (out of descriptors), so the loop does not spin.
const ACCEPT_BACKOFF_MS: u64 = 100;
/// How long a refused connection's answer may take to write.
const REFUSAL_WRITE_MS: u64 = 1_000;
/// How long in-flight requests get to finish at shutdown before connections are dropped.
const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// Bounds on connections; defaults suit a node with the usual 64k descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Connection counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub idle_closed: AtomicU64,
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, lets in-flight requests finish (at most 10 s), and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    counters: Arc<ConnectionCounters>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed (out of descriptors?)");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                counters.open.fetch_add(1, Ordering::Relaxed);
                let (router, counters, stop) = (router.clone(), counters.clone(), stop_rx.clone());
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        None => serve_connection(stream, peer, false, router, limits, &counters, stop).await,
                        Some(acceptor) => {
                            // The handshake is bounded like a request's headers.
                            let accepted =
                                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await;
                            match accepted {
                                Ok(Ok(tls)) => {
                                    let verified = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                                    serve_connection(tls, peer, verified, router, limits, &counters, stop).await
                                }
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        }
                    }
                    counters.open.fetch_sub(1, Ordering::Relaxed);
                    drop(slot);
                });
            }
            Err(_) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "connection refused: at the connection limit");
                tokio::spawn(refuse(stream));
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: wait for all of them.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), slots.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!("connections still open after the shutdown grace period; dropping them");
    }
    Ok(())
}

/// Answers a connection over the limit with a JSON 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":{"code":"too_many_connections","message":"this node is serving as many connections as it may; retry shortly"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_millis(REFUSAL_WRITE_MS), write).await;
}

async fn serve_connection<S>(
    stream: S,
    peer: std::net::SocketAddr,
    peer_verified: bool,
    router: Router,
    limits: ServerLimits,
    counters: &ConnectionCounters,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    // Handlers see the client's address as axum's `ConnectInfo`.
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut()
            .insert(gavel_raft::tls::PeerVerified(peer_verified));
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(HYPER_BUFFER_MAX_BYTES)
        .max_headers(HYPER_HEADERS_MAX)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut check = tokio::time::interval(Duration::from_millis(IDLE_CHECK_MS));
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = check.tick() => {
                if activity.idle() >= limits.idle_timeout {
                    counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("closing a connection idle for {:?}", limits.idle_timeout);
                    return;
                }
            }
            _ = stop.wait_for(|s| *s), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// When a connection last moved a byte.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A stream that records when it last read or wrote a byte.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
