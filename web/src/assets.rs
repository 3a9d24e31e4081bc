//! The web app, embedded: `app/dist/` as `npm run build` wrote it and git holds it, so
//! `cargo build` alone gives binaries with the whole UI and no Node.js is needed to build
//! them. Served without a token (the page is where one signs in); everything it shows comes
//! from the API, which needs one.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!("../app/dist/", $path)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!(
        "vendor/leaflet/leaflet.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("vendor/leaflet/leaflet.css", "text/css; charset=utf-8"),
];

fn serve(path: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return crate::ApiError::not_found("no such file").into_response();
    };
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            // Small files on a local network: always revalidate, so an upgrade shows at once.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
        ],
        asset.bytes,
    )
        .into_response()
}

/// `/` (the app) and `/app/{path}` (its files).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { serve("index.html") }))
        .route(
            "/app/{*path}",
            get(|Path(path): Path<String>| async move { serve(&path) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_loads_is_embedded() {
        let index = std::str::from_utf8(ASSETS[0].bytes).unwrap_or_default();
        for reference in index.split('"').filter_map(|s| s.strip_prefix("/app/")) {
            assert!(
                ASSETS.iter().any(|a| a.path == reference),
                "index.html loads /app/{reference}, which is not embedded"
            );
        }
        assert!(serve("../Cargo.toml").status() == StatusCode::NOT_FOUND);
    }
}
