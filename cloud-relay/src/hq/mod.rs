//! The HQ API: REST and a WebSocket over HTTPS, for people at headquarters and their tools.
//!
//! Every request but health, metrics, the OpenAPI document and the page itself carries a
//! bearer token (header, or `access_token` in the query for browsers' WebSockets). A token
//! belongs to one org and has one role. Paths under `/api/v1/orgs/{org}` answer 404 for any
//! org but the token's own, exactly as for an org that does not exist, so a token cannot
//! even learn which other orgs exist; a role too weak for an action gets 403. Other orgs'
//! vehicles reach a caller only through the COP, and only as a sharing agreement allows.

mod auth;
mod cop;
mod fleet;
mod records;
mod stream;

use std::sync::Arc;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

pub use auth::Caller;
pub use trellis_web::ApiError;

use crate::live::LiveView;
use crate::store::{HqStore, RelayStore};

/// What handlers share.
#[derive(Clone)]
pub struct HqState {
    pub store: Arc<dyn HqStore>,
    /// The sync path's store, where editable records live.
    pub sync: Arc<dyn RelayStore>,
    pub live: Arc<LiveView>,
    /// Stamps HQ's edits (see `sync_protocol::records`).
    pub hlc: Arc<std::sync::Mutex<sync_protocol::hlc::Hlc>>,
    /// Wrong tokens per client address (429 past a burst).
    pub failures: Arc<trellis_web::auth::FailedSignIns>,
}

impl HqState {
    pub fn new<S: HqStore + RelayStore>(store: Arc<S>, live: Arc<LiveView>, node: &str) -> HqState {
        HqState {
            store: store.clone(),
            sync: store,
            live,
            hlc: Arc::new(std::sync::Mutex::new(sync_protocol::hlc::Hlc::new(
                sync_protocol::records::node_id(node),
                MAX_CLOCK_DRIFT_US,
            ))),
            failures: Arc::new(trellis_web::auth::FailedSignIns::new(
                GUESS_BURST,
                GUESS_REFILL,
            )),
        }
    }
}

/// Wrong tokens an address may try at once, and how often it gets another try.
const GUESS_BURST: u32 = 10;
const GUESS_REFILL: std::time::Duration = std::time::Duration::from_secs(6);

/// How far ahead of this relay's clock an edge's timestamps may run.
pub const MAX_CLOCK_DRIFT_US: u64 = 5 * 60 * 1_000_000;

pub fn router(state: HqState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/api/v1/orgs/{org}/vehicles", get(fleet::vehicles))
        .route(
            "/api/v1/orgs/{org}/vehicles/{id}",
            get(fleet::vehicle).patch(records::rename),
        )
        .route(
            "/api/v1/orgs/{org}/vehicles/{id}/telemetry",
            get(fleet::telemetry),
        )
        .route("/api/v1/orgs/{org}/alerts", get(fleet::alerts))
        .route("/api/v1/orgs/{org}/events", get(fleet::events))
        .route("/api/v1/orgs/{org}/edges", get(fleet::edges))
        .route(
            "/api/v1/orgs/{org}/missions/proposals",
            get(records::proposals).post(records::propose),
        )
        .route("/api/v1/orgs/{org}/{table}", get(records::get_table))
        .route(
            "/api/v1/orgs/{org}/{table}/{key}",
            axum::routing::put(records::put_record),
        )
        .route("/api/v1/orgs/{org}/stream", get(stream::upgrade))
        .route("/api/v1/cop", get(cop::cop))
        .fallback(|| async { ApiError::not_found("no such path") })
        .with_state(state)
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

async fn metrics(axum::extract::State(s): axum::extract::State<HqState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.live.metrics.render(s.live.sessions_open()),
    )
}

/// Errors of the store reach clients as internal errors, their text only in the log.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Arc<dyn HqStore>,
    f: impl FnOnce(&dyn HqStore) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

/// Serves the HQ API on `listener` until `shutdown` resolves; HTTPS when `tls` is given.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: HqState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    trellis_web::serve::serve(listener, tls, router(state), shutdown).await
}

#[cfg(test)]
mod tests {
    /// Every path the router serves is in the OpenAPI document, and nothing else is.
    #[test]
    fn the_openapi_document_covers_the_router() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        let documented: std::collections::BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let source = include_str!("mod.rs");
        let routed: std::collections::BTreeSet<&str> = source
            .split(".route(")
            .skip(1)
            .filter_map(|r| r.trim_start().strip_prefix('"')?.split('"').next())
            .filter(|p| p.starts_with("/api") || *p == "/metrics")
            .collect();
        assert_eq!(documented, routed);
    }
}
