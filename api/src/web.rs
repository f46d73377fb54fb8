//! The web page every node serves at `/`: the auction list, an auction page with live
//! updates and a bid form, a create form, a login, and an operator page.
//!
//! The page is plain ES modules, CSS and one HTML file from `api/web/`, compiled into the
//! binary with `include_bytes!`: no CDN, no build step, it works offline. The browser
//! talks to the same JSON API as curl (`/v1/...`), the WebSocket
//! `/v1/auctions/{id}/ws` with Server-Sent Events as the fallback, and keeps the account
//! token the user logs in with in `sessionStorage` only.
//!
//! Every asset is served with a strong `ETag` (a digest of its bytes) and
//! `Cache-Control: no-cache`, so a browser revalidates and picks up a new binary's page
//! at once, and with a Content-Security-Policy that allows this origin only.
//!
//! For work on the page itself, `GAVEL_WEB_DIR=api/web` makes the node read the assets
//! from that directory on every request instead of the compiled-in copies; only the
//! names in [`ASSETS`] are ever served, so nothing else in the directory is reachable.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::json::ApiPath;

/// Environment variable naming a directory to serve the page's files from (development).
pub const WEB_DIR_ENV: &str = "GAVEL_WEB_DIR";

/// What a browser may load: this origin only (the WebSocket included), no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                                       script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
                                       base-uri 'none'; form-action 'self'";

/// One file of the page.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! assets {
    ($(($name:literal, $type:literal)),* $(,)?) => {
        &[$(Asset { name: $name, content_type: $type, bytes: include_bytes!(concat!("../web/", $name)) }),*]
    };
}

/// Every file of the page. `index.html` is served at `/`, the others at `/ui/{name}`.
pub const ASSETS: &[Asset] = assets![
    ("index.html", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("api.js", "text/javascript; charset=utf-8"),
    ("live.js", "text/javascript; charset=utf-8"),
    ("chart.js", "text/javascript; charset=utf-8"),
    ("format.js", "text/javascript; charset=utf-8"),
    ("views/list.js", "text/javascript; charset=utf-8"),
    ("views/auction.js", "text/javascript; charset=utf-8"),
    ("views/create.js", "text/javascript; charset=utf-8"),
    ("views/login.js", "text/javascript; charset=utf-8"),
    ("views/operator.js", "text/javascript; charset=utf-8"),
    ("favicon.svg", "image/svg+xml"),
];

#[cfg(test)]
fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The ETags of the compiled-in assets, computed once.
fn etags() -> &'static Vec<String> {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| ASSETS.iter().map(|a| etag_of(a.bytes)).collect())
}

fn etag_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..12]))
}

/// `GET /`: the page.
#[utoipa::path(
    get,
    path = "/",
    tag = "web",
    responses(
        (status = 200, description = "The web page (HTML)", content_type = "text/html"),
        (status = 304, description = "Not modified since the ETag given in If-None-Match"),
    )
)]
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers).unwrap_or_else(IntoResponse::into_response)
}

/// `GET /ui/{file}`: a script, style sheet or image of the page.
#[utoipa::path(
    get,
    path = "/ui/{file}",
    tag = "web",
    params(("file" = String, Path, description = "An asset of the page, such as `app.js`")),
    responses(
        (status = 200, description = "The asset"),
        (status = 304, description = "Not modified since the ETag given in If-None-Match"),
        (status = 404, description = "No such asset", body = crate::openapi::ErrorBody),
    )
)]
pub async fn asset(ApiPath(file): ApiPath<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers).unwrap_or_else(IntoResponse::into_response)
}

/// `GET /ui/views/{file}`: a view module of the page.
#[utoipa::path(
    get,
    path = "/ui/views/{file}",
    tag = "web",
    params(("file" = String, Path, description = "A view module of the page, such as `auction.js`")),
    responses(
        (status = 200, description = "The module"),
        (status = 304, description = "Not modified since the ETag given in If-None-Match"),
        (status = 404, description = "No such asset", body = crate::openapi::ErrorBody),
    )
)]
pub async fn view_asset(ApiPath(file): ApiPath<String>, headers: HeaderMap) -> Response {
    serve(&format!("views/{file}"), &headers).unwrap_or_else(IntoResponse::into_response)
}

fn serve(name: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return Err(ApiError::NotFound {
            code: "not_found",
            message: format!("the page has no file {name:?}"),
        });
    };
    let asset = &ASSETS[index];
    let (bytes, etag) = match std::env::var_os(WEB_DIR_ENV) {
        Some(dir) => {
            let bytes = std::fs::read(std::path::Path::new(&dir).join(asset.name))
                .map_err(|e| ApiError::Internal(format!("{WEB_DIR_ENV}: reading {}: {e}", asset.name)))?;
            let etag = etag_of(&bytes);
            (bytes.into(), etag)
        }
        None => (std::borrow::Cow::Borrowed(asset.bytes), etags()[index].clone()),
    };
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    Ok((out, bytes.into_owned()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_found_and_nothing_else() {
        for a in ASSETS {
            assert!(find(a.name).is_some());
            assert!(!a.bytes.is_empty(), "{} is empty", a.name);
        }
        for bad in ["../Cargo.toml", "views/../../Cargo.toml", "", "nope.js", "/etc/passwd"] {
            assert!(find(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_page_loads_its_modules_from_this_origin_only() {
        let html = std::str::from_utf8(find("index.html").unwrap().bytes).unwrap();
        assert!(html.contains("/ui/app.js"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no outside URLs"
        );
    }
}
