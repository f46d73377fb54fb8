//! gavel-api: the HTTP side of a Gavel node.
//!
//! [`router`] builds every route (client API, operations endpoints and the node-to-node
//! `/raft/*` routes from gavel-raft); [`serve`] runs it on a listener until a shutdown
//! future resolves, then finishes in-flight requests. Errors become responses in exactly
//! one place, [`error`].

pub mod auctions;
pub mod bids;
pub mod cluster;
pub mod error;
pub mod forward;
pub mod json;
pub mod sse;
pub mod state;
pub mod subscriptions;
pub mod udp;
pub mod worker;
pub mod workers_api;

use std::future::Future;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use state::AppState;

/// Every route of a node.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(cluster::health))
        .route("/ready", get(cluster::ready))
        .route("/metrics", get(cluster::metrics))
        .route("/v1/cluster", get(cluster::cluster_info))
        .route("/v1/cluster/nodes", post(cluster::add_node))
        .route("/v1/cluster/nodes/{id}", delete(cluster::remove_node))
        .route(
            "/v1/admin/snapshot",
            post(cluster::take_snapshot).get(cluster::download_snapshot),
        )
        .route("/v1/auctions", post(auctions::create).get(auctions::list))
        .route("/v1/auctions/{id}", get(auctions::get))
        .route("/v1/auctions/{id}/bids", post(bids::place_bid).get(bids::list_bids))
        .route("/v1/auctions/{id}/buy", post(bids::buy_now))
        .route("/v1/auctions/{id}/cancel", post(bids::cancel))
        .route("/v1/auctions/{id}/events", get(sse::events))
        .route(
            "/v1/auctions/{id}/subscriptions",
            post(subscriptions::subscribe).delete(subscriptions::unsubscribe),
        )
        .route("/v1/workers", get(workers_api::list))
        .route(worker::HEARTBEAT_PATH, post(workers_api::heartbeat))
        .route(worker::CLOCK_PATH, post(workers_api::clock))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count_responses))
        .with_state(state.clone());
    api.merge(gavel_raft::rpc::router(
        state.raft.clone(),
        state.secret.clone(),
        state.leader_contact.clone(),
    ))
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: "no such route".into(),
    }
}

async fn count_responses(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    s.counters.count_status(resp.status().as_u16());
    resp
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting and
/// waits for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
