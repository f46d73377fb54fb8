//! Request parsing and time formatting shared by the handlers.
//!
//! JSON errors become 400s with a stable code and a message naming the field:
//! `invalid_json` for malformed JSON, `invalid_amount` for a bad money field (floats,
//! negatives, overflow), `invalid_input` for everything else (unknown fields, wrong
//! types, missing fields).

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;

/// JSON fields that hold money (integer minor units).
const MONEY_FIELDS: [&str; 6] = [
    "starting_price",
    "reserve_price",
    "buy_now_price",
    "amount",
    "max_amount",
    "increment",
];

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            code: "invalid_json",
            message: "the request body is empty; send a JSON object".into(),
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::BadRequest {
                code: "invalid_json",
                message: format!("malformed JSON: {inner}"),
            };
        }
        let is_money = MONEY_FIELDS
            .iter()
            .any(|f| path == *f || path.starts_with(&format!("{f}.")) || path.starts_with(&format!("{f}[")));
        let code = if is_money { "invalid_amount" } else { "invalid_input" };
        let message = if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        let message = if is_money {
            format!("{message} (money is a non-negative integer count of minor units, e.g. cents)")
        } else {
            message
        };
        ApiError::BadRequest { code, message }
    })?;
    Ok(value)
}

/// Path parameters, like axum's `Path`, whose rejection is a JSON 400 `invalid_input`
/// (`/v1/auctions/abc` names the bad segment) instead of plain text.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::invalid(format!("path: {}", rejection.body_text()))),
        }
    }
}

/// The query string, like axum's `Query`, whose rejection is a JSON 400 `invalid_input`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::invalid(format!("query: {}", rejection.body_text()))),
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    u64::try_from(nanos / 1_000_000).unwrap_or(0)
}

/// RFC 3339 (UTC, millisecond precision) for a millisecond timestamp.
pub fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Parses an RFC 3339 time into milliseconds since the epoch.
pub fn parse_rfc3339(field: &str, value: &str) -> Result<u64, ApiError> {
    let t = OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|e| ApiError::invalid(format!("{field}: {value:?} is not an RFC 3339 time ({e})")))?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| ApiError::invalid(format!("{field}: {value:?} is before 1970")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Bid {
        bidder: String,
        amount: u64,
    }

    fn code(body: &str) -> &'static str {
        parse_json::<Bid>(body.as_bytes()).unwrap_err().status_and_code().1
    }

    #[test]
    fn json_errors_have_stable_codes() {
        assert!(parse_json::<Bid>(br#"{"bidder":"a","amount":5}"#).is_ok());
        assert_eq!(code(""), "invalid_json");
        assert_eq!(code("{"), "invalid_json");
        assert_eq!(code(r#"{"bidder":"a","amount":1.5}"#), "invalid_amount");
        assert_eq!(code(r#"{"bidder":"a","amount":-1}"#), "invalid_amount");
        assert_eq!(
            code(r#"{"bidder":"a","amount":18446744073709551616}"#),
            "invalid_amount"
        );
        assert_eq!(code(r#"{"bidder":"a","amount":"5"}"#), "invalid_amount");
        assert_eq!(code(r#"{"bidder":"a","amount":5,"x":1}"#), "invalid_input");
        assert_eq!(code(r#"{"bidder":7,"amount":5}"#), "invalid_input");
        assert_eq!(code(r#"{"amount":5}"#), "invalid_input");
    }

    #[test]
    fn times_round_trip() {
        let ms = parse_rfc3339("t", "2026-11-23T10:00:00.250Z").unwrap();
        assert_eq!(rfc3339(ms), "2026-11-23T10:00:00.25Z");
        assert!(parse_rfc3339("t", "yesterday").is_err());
    }
}
