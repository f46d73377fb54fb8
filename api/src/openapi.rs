//! The OpenAPI 3.1 description of the API, served at `GET /v1/openapi.json`.
//!
//! It is generated from the code, so it cannot drift from what the node serves:
//! - every route is registered through `utoipa_axum`'s `routes!` from the handler's own
//!   `#[utoipa::path]` annotation (method, path, parameters, responses), so a route
//!   cannot exist without its description (see [`crate::router`]);
//! - request and response bodies are the handlers' own serde types, deriving
//!   `utoipa::ToSchema`;
//! - error codes come from [`crate::error::ERROR_CODES`], the table a test checks against
//!   every code the source can produce;
//! - [`Modify`] adds to every operation the errors any request can meet on its way in
//!   (limits on the request target, headers and rate, no leader, overload) and, to every
//!   operation with a body, the body errors, so each route lists every status it can
//!   answer.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Spec, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::ERROR_CODES;

/// The body of every error answer: `{"error": {"code", "message", …details}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// An error: a stable code, a message for people, and details that depend on the code
/// (`min_next_bid` for `bid_too_low`, `limit_bytes` for `payload_too_large`, `clock_offset_ms`
/// for `clock_skew`, …).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case; never changes meaning. See the table in this document's
    /// description.
    #[schema(schema_with = error_code_schema)]
    pub code: String,
    pub message: String,
    #[serde(flatten)]
    #[schema(value_type = Object, additional_properties)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

fn error_code_schema() -> utoipa::openapi::Object {
    let mut codes: Vec<&str> = ERROR_CODES.iter().map(|c| c.code).collect();
    codes.sort_unstable();
    codes.dedup();
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(codes))
        .description(Some("The error's stable code (see the error table)."))
        .build()
}

/// `{"ok": true}`: done.
#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub ok: bool,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gavel",
        description = "A distributed, durable auction service. Every write is committed through Raft on a \
                       majority before it is acknowledged. Money is an integer count of minor units; times \
                       are RFC 3339. Any node answers any request.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "auctions", description = "Creating, reading and listing auctions"),
        (name = "bids", description = "Bidding, buying, cancelling, joining, results"),
        (name = "live", description = "Live updates: Server-Sent Events, WebSocket, UDP subscriptions"),
        (name = "accounts", description = "Accounts and API tokens"),
        (name = "cluster", description = "Cluster membership, workers and snapshots"),
        (name = "operations", description = "Health, readiness, metrics, this description"),
        (name = "web", description = "The web page"),
        (name = "node-rpc", description = "Node-to-node Raft RPC (bincode bodies, the cluster secret); not for clients"),
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Security)
)]
pub struct ApiDoc;

/// The bearer token scheme (`Authorization: Bearer gvl_…`).
struct Security;

impl Modify for Security {
    fn modify(&self, spec: &mut Spec) {
        let components = spec.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An account's API token: `Authorization: Bearer gvl_…` (docs/identity.md)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cluster_secret",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The cluster secret every node shares (node-to-node routes, and adding a node)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The errors every request can meet before or around its handler (see the module's
/// documentation), and the error table in the description. Applied once every route is
/// in the description ([`finish`]).
struct CommonErrors;

/// Completes a description whose paths are all in: see [`CommonErrors`].
pub fn finish(spec: &mut Spec) {
    CommonErrors.modify(spec);
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

impl Modify for CommonErrors {
    fn modify(&self, spec: &mut Spec) {
        let mut table = String::from("\n\n## Error codes\n\n| status | code | meaning |\n|---|---|---|\n");
        for c in ERROR_CODES {
            table.push_str(&format!("| {} | `{}` | {} |\n", c.status, c.code, c.meaning));
        }
        let description = spec.info.description.get_or_insert_with(String::new);
        description.push_str(&table);
        let everywhere = [
            ("414", "The request target is too long (`uri_too_long`)"),
            ("431", "Too many or too large headers (`headers_too_large`)"),
            ("429", "Rate limited (`rate_limited`); see Retry-After"),
            (
                "503",
                "Unavailable: no leader, not a member, too many connections, the leader's clock is off \
                 (`no_leader`, `not_a_member`, `too_many_connections`, `unavailable`, `clock_skew`); see \
                 Retry-After",
            ),
            ("500", "An internal error (`internal`)"),
        ];
        let with_body = [
            (
                "400",
                "Invalid input (`invalid_json`, `invalid_input`, `invalid_amount`)",
            ),
            ("408", "The body did not arrive in time (`request_timeout`)"),
            ("413", "The body is over 64 KiB (`payload_too_large`)"),
        ];
        for item in spec.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let add = |op: &mut utoipa::openapi::path::Operation, list: &[(&str, &str)]| {
                    for (status, description) in list {
                        op.responses
                            .responses
                            .entry((*status).to_string())
                            .or_insert_with(|| error_response(description));
                    }
                };
                add(op, &everywhere);
                if op.request_body.is_some() {
                    add(op, &with_body);
                }
            }
        }
    }
}

/// The description as JSON, built once.
pub fn spec_json(spec: &Spec) -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| spec.to_pretty_json().expect("the OpenAPI description serializes"))
}

/// `GET /v1/openapi.json`: this description.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 description of every route", content_type = "application/json"))
)]
pub async fn openapi_json() -> Response {
    let spec = crate::api_spec();
    ([(header::CONTENT_TYPE, "application/json")], spec_json(spec)).into_response()
}
