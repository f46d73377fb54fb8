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
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auctions::{propose, read_barrier};
use crate::auth::{authenticate, new_token, parse_public_key};
use crate::error::ApiError;
use crate::json::{parse_json, rfc3339, ApiPath};
use crate::request::RawRequest;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAccount {
    name: String,
    roles: Vec<String>,
    budget: Option<u64>,
    public_key: Option<String>,
}

/// The public view of an account: never its token or token hash.
pub fn account_view(book: &gavel_storage::AuctionBook, a: &Account) -> Value {
    json!({
        "name": a.name,
        "roles": a.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "budget": a.budget,
        "exposure": book.exposure(&a.name),
        "public_key": a.public_key.map(|k| STANDARD.encode(k)),
        "last_nonce": a.last_nonce,
        "disabled": a.disabled,
        "created_at": rfc3339(a.created_at_ms),
    })
}

/// The answer to a create or a rotation: the account, and the token if this request made
/// it (not on a retry answered from the idempotency table).
fn with_token(s: &AppState, name: &str, token: &str) -> Result<Value, ApiError> {
    let st = s.sm.read();
    let account = st
        .book
        .account(name)
        .ok_or_else(|| ApiError::Internal(format!("account {name} missing after its change")))?;
    let mut view = account_view(&st.book, account);
    if account.token_hash == hash_token(token) {
        view["token"] = json!(token);
    } else {
        view["token"] = Value::Null;
        view["token_note"] = json!(format!(
            "this answers a retry: the token was shown in the first answer only; rotate it (POST \
             /v1/accounts/{name}/tokens) if it was lost"
        ));
    }
    Ok(view)
}

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
            Ok(Json(view.unwrap_or(Value::Null)).into_response())
        }
        other => Err(ApiError::Internal(format!("unexpected response: {other:?}"))),
    }
}

/// `GET /v1/accounts/{name}/key`: an account's public key (public, for verifying its
/// signed bids), or `null`.
pub async fn public_key(State(s): State<AppState>, ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    read_barrier(&s, None).await?;
    let st = s.sm.read();
    let account = st
        .book
        .account(&name)
        .ok_or(ApiError::Rejected(Rejection::UnknownAccount { name: name.clone() }))?;
    Ok(
        Json(json!({ "name": account.name, "public_key": account.public_key.map(|k| STANDARD.encode(k)) }))
            .into_response(),
    )
}
