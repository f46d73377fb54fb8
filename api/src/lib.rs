//! gavel-api: the HTTP side of a Gavel node.
//!
//! [`router`] builds every route (client API, operations endpoints and the node-to-node
//! `/raft/*` routes from gavel-raft); [`serve`] runs it on a listener until a shutdown
//! future resolves, then finishes in-flight requests. Errors become responses in exactly
//! one place, [`error`].

pub mod accounts;
pub mod auctions;
pub mod auth;
pub mod bids;
pub mod cluster;
pub mod error;
pub mod hosting;
pub mod json;
pub mod leadership;
pub mod limits;
pub mod membership;
pub mod metrics;
pub mod openapi;
pub mod push;
pub mod request;
pub mod server;
pub mod sse;
pub mod state;
pub mod subscriptions;
pub mod udp;
pub mod web;
pub mod workers_api;
pub mod ws;

use std::future::Future;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use state::AppState;

/// Every client route, each registered from its handler's `#[utoipa::path]`, so the
/// OpenAPI description and the router cannot differ (see [`openapi`]).
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(cluster::health))
        .routes(routes!(cluster::ready))
        .routes(routes!(cluster::metrics))
        .routes(routes!(metrics::history))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(cluster::cluster_info))
        .routes(routes!(cluster::add_node))
        .routes(routes!(cluster::remove_node))
        .routes(routes!(leadership::move_leader))
        .routes(routes!(cluster::take_snapshot, cluster::download_snapshot))
        .routes(routes!(cluster::backup))
        .routes(routes!(workers_api::list))
        .routes(routes!(accounts::me))
        .routes(routes!(accounts::create))
        .routes(routes!(accounts::show, accounts::disable))
        .routes(routes!(accounts::rotate))
        .routes(routes!(accounts::public_key))
        .routes(routes!(auctions::create, auctions::list))
        .routes(routes!(auctions::get))
        .routes(routes!(bids::place_bid, bids::list_bids))
        .routes(routes!(bids::buy_now))
        .routes(routes!(bids::result))
        .routes(routes!(bids::join))
        .routes(routes!(bids::start))
        .routes(routes!(bids::cancel))
        .routes(routes!(sse::events))
        .routes(routes!(ws::connect))
        .routes(routes!(subscriptions::subscribe, subscriptions::unsubscribe))
        .routes(routes!(web::index))
        .routes(routes!(web::asset))
        .routes(routes!(web::view_asset))
}

/// The OpenAPI description of every route a node serves: [`api_routes`] and the
/// node-to-node routes of `gavel_raft::rpc`, built once.
pub fn api_spec() -> &'static utoipa::openapi::OpenApi {
    static SPEC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| {
        let mut spec = api_routes().split_for_parts().1;
        spec.merge(gavel_raft::rpc::openapi());
        openapi::finish(&mut spec);
        spec
    })
}

/// Every route of a node.
pub fn router(state: AppState) -> Router {
    let (described, _) = api_routes().split_for_parts();
    let api = described
        .fallback(not_found)
        .layer(middleware::from_fn(metrics::track_requests))
        .layer(middleware::from_fn_with_state(state.clone(), limit_addresses))
        .layer(middleware::from_fn_with_state(state.clone(), refuse_if_removed))
        .layer(middleware::from_fn_with_state(state.clone(), count_responses))
        .with_state(state.clone());
    api.merge(gavel_raft::rpc::router(
        state.door.clone(),
        state.secret.clone(),
        state.tls.as_ref().is_some_and(|t| t.require_peer_cert),
    ))
    .method_not_allowed_fallback(method_not_allowed)
    .layer(middleware::from_fn(json_errors))
    .layer(middleware::from_fn(request_limits))
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: "no such route".into(),
    }
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
    }
}

async fn count_responses(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    s.counters.count_status(resp.status().as_u16());
    resp
}

/// A node removed from the cluster answers client routes with 503 `not_a_member`; its
/// health, readiness, metrics and cluster view stay readable (see [`membership`]).
async fn refuse_if_removed(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let open =
        matches!(path, "/health" | "/ready" | "/metrics") || (path == "/v1/cluster" && req.method() == Method::GET);
    if s.is_removed() && !open {
        return ApiError::NotAMember(format!(
            "node {} is no longer a member of the cluster; use another node",
            s.node_id
        ))
        .into_response();
    }
    next.run(req).await
}

/// One token per request from the client's address (node-to-node routes, `/raft/*`, are
/// outside this router's layers).
async fn limit_addresses(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(ip) = request::client_ip(req.extensions()) {
        if let Err(refused) = s.limits.check_address(ip) {
            return refused.into_response();
        }
    }
    next.run(req).await
}

/// Refuses request targets and header sections over the limits with a JSON 414/431
/// (hyper's own limits sit above these; see [`server`]).
async fn request_limits(req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > server::URI_MAX_BYTES {
        return ApiError::UriTooLong {
            limit: server::URI_MAX_BYTES,
        }
        .into_response();
    }
    let headers = req.headers();
    let header_bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if headers.len() > server::HEADERS_MAX || header_bytes > server::HEADER_SECTION_MAX_BYTES {
        return ApiError::HeadersTooLarge {
            limit_bytes: server::HEADER_SECTION_MAX_BYTES,
            limit_count: server::HEADERS_MAX,
        }
        .into_response();
    }
    next.run(req).await
}

/// Every error a client sees is JSON: an error status produced below the handlers (an
/// extractor, a layer) without a JSON body gets the standard body for its status.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let mut fixed = ApiError::for_status(status).into_response();
    for name in [header::RETRY_AFTER, header::ALLOW] {
        if let Some(v) = resp.headers().get(&name) {
            fixed.headers_mut().insert(name, v.clone());
        }
    }
    fixed
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting and waits for in-flight requests to finish. See [`server`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: server::ServerLimits,
    counters: std::sync::Arc<server::ConnectionCounters>,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router, limits, counters, tls, shutdown).await
}
