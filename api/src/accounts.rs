//! `/v1/accounts`: create (admin), show (admin or the account itself), rotate the token
//! (admin or the account itself), disable (admin).
//!
//! A token is made here, on the leader, from the OS random source, and shown once in
//! the answer; only its sha256 goes into the command, the log and the book. A create or
//! rotation retried with its `Idempotency-Key` is answered from the idempotency table:
//! the first answer's token cannot be shown again (it is not stored anywhere), so the
//! retry says so with `"token": null` — rotate to get a new one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use gavel_storage::book::accounts::{hash_token, Account, Role};
use gavel_storage::{Op, Rejection, Response as BookResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auctions::{propose, read_barrier, IdempotencyKey};
use crate::auth::{authenticate, new_token, parse_public_key};
use crate::error::ApiError;
use crate::json::{parse_json, rfc3339, ApiPath};
use crate::openapi::ErrorBody;
use crate::request::RawRequest;
use crate::state::AppState;

/// `POST /v1/accounts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// 1–128 characters: letters, digits, `_`, `-`, `.`; never reused.
    name: String,
    /// Any of `admin`, `seller`, `bidder`.
    roles: Vec<String>,
    /// Most the account may have at stake in leading bids at once (minor units).
    budget: Option<u64>,
    /// Base64 Ed25519 public key: the account must then sign every bid.
    public_key: Option<String>,
}

/// An account as the API shows it: never its token hash. `token` appears only in the
/// answer that made the token.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub name: String,
    pub roles: Vec<&'static str>,
    pub budget: Option<u64>,
    /// What the account has at stake in leading bids now.
    pub exposure: u64,
    pub public_key: Option<String>,
    pub last_nonce: u64,
    pub disabled: bool,
    pub created_at: String,
    /// Create and rotate only: the new token (shown once; null on a retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_note: Option<String>,
}

/// `GET /v1/accounts/{name}/key`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKeyView {
    pub name: String,
    /// Base64 Ed25519 public key, or null.
    pub public_key: Option<String>,
}

/// The public view of an account: never its token or token hash.
pub fn account_view(book: &gavel_storage::AuctionBook, a: &Account) -> AccountView {
    AccountView {
        name: a.name.clone(),
        roles: a.roles.iter().map(|r| r.as_str()).collect(),
        budget: a.budget,
        exposure: book.exposure(&a.name),
        public_key: a.public_key.map(|k| STANDARD.encode(k)),
        last_nonce: a.last_nonce,
        disabled: a.disabled,
        created_at: rfc3339(a.created_at_ms),
        token: None,
        token_note: None,
    }
}

/// The answer to a create or a rotation: the account, and the token if this request made
/// it (not on a retry answered from the idempotency table).
fn with_token(s: &AppState, name: &str, token: &str) -> Result<AccountView, ApiError> {
    let st = s.sm.read();
    let account = st
        .book
        .account(name)
        .ok_or_else(|| ApiError::Internal(format!("account {name} missing after its change")))?;
    let mut view = account_view(&st.book, account);
    if account.token_hash == hash_token(token) {
        view.token = Some(Some(token.to_string()));
    } else {
        view.token = Some(None);
        view.token_note = Some(format!(
            "this answers a retry: the token was shown in the first answer only; rotate it (POST \
             /v1/accounts/{name}/tokens) if it was lost"
        ));
    }
    Ok(view)
}

#[utoipa::path(
    post,
    path = "/v1/accounts",
    operation_id = "create_account",
    tag = "accounts",
    request_body = CreateAccount,
    params(IdempotencyKey),
    security(("token" = [])),
    responses(
        (status = 201, description = "Created, with its token (shown once)", body = AccountView),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`: an admin's token is needed", body = ErrorBody),
        (status = 409, description = "`account_exists`", body = ErrorBody),
    )
)]
pub async fn create(State(s): State<AppState>, req: RawRequest) -> Result<Response, ApiError> {
    let body: CreateAccount = parse_json(&req.body)?;
    let mut roles = std::collections::BTreeSet::new();
    for role in &body.roles {
        roles.insert(
            Role::parse(role)
                .ok_or_else(|| ApiError::invalid(format!("roles: {role:?} is not admin, seller or bidder")))?,
        );
    }
    let public_key = body.public_key.as_deref().map(parse_public_key).transpose()?;
    let token = new_token();
    let account = Account {
        name: body.name.clone(),
        roles,
        budget: body.budget,
        public_key,
        token_hash: hash_token(&token),
        disabled: false,
        created_at_ms: 0,
        last_nonce: 0,
    };
    let build = |_, auth: &crate::auth::Authenticated| {
        auth.require(Role::Admin)?;
        Ok(Op::CreateAccount(account))
    };
    match propose(&s, &req, build).await? {
        BookResponse::AccountChanged { name } => {
            Ok((StatusCode::CREATED, Json(with_token(&s, &name, &token)?)).into_response())
        }
        other => Err(ApiError::Internal(format!("unexpected response: {other:?}"))),
    }
}

/// `GET /v1/accounts/{name}`: the account itself, or an admin.
#[utoipa::path(
    get,
    path = "/v1/accounts/{name}",
    operation_id = "get_account",
    tag = "accounts",
    params(("name" = String, Path, description = "The account's name")),
    security(("token" = [])),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`: another account's, without admin", body = ErrorBody),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
    )
)]
pub async fn show(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    read_barrier(&s, None).await?;
    let auth = authenticate(&s, &req)?;
    if auth.name() != name {
        auth.require(Role::Admin)?;
    }
    let st = s.sm.read();
    let account = st
        .book
        .account(&name)
        .ok_or(ApiError::Rejected(Rejection::UnknownAccount { name: name.clone() }))?;
    Ok(Json(account_view(&st.book, account)).into_response())
}

/// `GET /v1/account`: the caller's own account, as its token names it (the web page's
/// login checks a token with it).
#[utoipa::path(
    get,
    path = "/v1/account",
    operation_id = "get_own_account",
    tag = "accounts",
    security(("token" = [])),
    responses(
        (status = 200, description = "The caller's account", body = AccountView),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
    )
)]
pub async fn me(State(s): State<AppState>, req: RawRequest) -> Result<Response, ApiError> {
    read_barrier(&s, None).await?;
    let auth = authenticate(&s, &req)?;
    let st = s.sm.read();
    let account = st
        .book
        .account(auth.name())
        .ok_or(ApiError::Rejected(Rejection::UnknownAccount {
            name: auth.name().to_string(),
        }))?;
    Ok(Json(account_view(&st.book, account)).into_response())
}

/// `POST /v1/accounts/{name}/tokens`: a new token; the old one stops working at once.
#[utoipa::path(
    post,
    path = "/v1/accounts/{name}/tokens",
    operation_id = "rotate_token",
    tag = "accounts",
    params(("name" = String, Path, description = "The account's name"), IdempotencyKey),
    security(("token" = [])),
    responses(
        (status = 200, description = "The account with its new token (shown once)", body = AccountView),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
    )
)]
pub async fn rotate(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    let token = new_token();
    let op = Op::RotateToken {
        name: name.clone(),
        token_hash: hash_token(&token),
    };
    match propose(&s, &req, |_, _| Ok(op)).await? {
        BookResponse::AccountChanged { name } => Ok(Json(with_token(&s, &name, &token)?).into_response()),
        other => Err(ApiError::Internal(format!("unexpected response: {other:?}"))),
    }
}

/// `DELETE /v1/accounts/{name}`: disable (admin); the name is never reused.
#[utoipa::path(
    delete,
    path = "/v1/accounts/{name}",
    operation_id = "disable_account",
    tag = "accounts",
    params(("name" = String, Path, description = "The account's name"), IdempotencyKey),
    security(("token" = [])),
    responses(
        (status = 200, description = "The disabled account", body = AccountView),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
    )
)]
pub async fn disable(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    req: RawRequest,
) -> Result<Response, ApiError> {
    let op = Op::DisableAccount { name };
    match propose(&s, &req, |_, _| Ok(op)).await? {
        BookResponse::AccountChanged { name } => {
            let st = s.sm.read();
            let view = st.book.account(&name).map(|a| account_view(&st.book, a));
            Ok(Json(view).into_response())
        }
        other => Err(ApiError::Internal(format!("unexpected response: {other:?}"))),
    }
}

/// `GET /v1/accounts/{name}/key`: an account's public key (public, for verifying its
/// signed bids), or `null`.
#[utoipa::path(
    get,
    path = "/v1/accounts/{name}/key",
    tag = "accounts",
    params(("name" = String, Path, description = "The account's name")),
    responses(
        (status = 200, description = "The public key", body = PublicKeyView),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
    )
)]
pub async fn public_key(State(s): State<AppState>, ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    read_barrier(&s, None).await?;
    let st = s.sm.read();
    let account = st
        .book
        .account(&name)
        .ok_or(ApiError::Rejected(Rejection::UnknownAccount { name: name.clone() }))?;
    Ok(Json(PublicKeyView {
        name: account.name.clone(),
        public_key: account.public_key.map(|k| STANDARD.encode(k)),
    })
    .into_response())
}
