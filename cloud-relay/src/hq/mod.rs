//! The HQ API: REST and a WebSocket over HTTPS, for people at headquarters and their tools.
//!
//! Every request but health, metrics, the OpenAPI document and the web app carries a
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
use axum::response::IntoResponse;
use axum::Router;
use serde::Serialize;
use trellis_web::openapi::BearerToken;
use utoipa_axum::router::OpenApiRouter;

pub use auth::Caller;
pub use trellis_web::ApiError;

use crate::live::LiveView;
use crate::store::{HqStore, RelayStore, Store};

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
    pub fn new(store: Arc<dyn Store>, live: Arc<LiveView>, node: &str) -> HqState {
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

/// HQ's OpenAPI document: what is not here comes from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Trellis HQ API",
        description = "What HQ sees of its organization's ground stations: vehicles merged \
            across stations, their history, alerts, the stations' sync status, editable \
            records (fields, geofences, names, mission proposals) that reach the stations, and \
            the common operating picture with what other organizations share. Every path but \
            /api/v1/health, /api/v1/openapi.json and /metrics needs a bearer token \
            (`cloud-relay token create --org ORG --role viewer|operator|admin`). Paths under \
            /api/v1/orgs/{org} answer 404 for any organization but the token's own, exactly as \
            for one that does not exist. Errors are {\"error\": {\"code\", \"message\"}}."
    ),
    modifiers(&BearerToken),
    security(("token" = [])),
)]
struct ApiDoc;

/// The org a path is about: the token's own (any other answers 404).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes the `{org}` of paths; the handlers read it with `Path`
pub struct Org {
    /// The token's org.
    org: String,
}

pub fn router(state: HqState) -> Router {
    use utoipa::OpenApi as _;
    use utoipa_axum::routes;
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(fleet::vehicles))
        .routes(routes!(fleet::vehicle, records::rename))
        .routes(routes!(fleet::telemetry))
        .routes(routes!(fleet::alerts))
        .routes(routes!(fleet::events))
        .routes(routes!(fleet::edges))
        .routes(routes!(records::proposals, records::propose))
        .routes(routes!(records::fields))
        .routes(routes!(records::put_field))
        .routes(routes!(records::geofences))
        .routes(routes!(records::put_geofence))
        .routes(routes!(stream::upgrade))
        .routes(routes!(cop::cop))
        .split_for_parts();
    api.merge(trellis_web::openapi::router(doc))
        .merge(trellis_web::assets::router())
        .fallback(|| async { ApiError::not_found("no such path") })
        .with_state(state)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`: the relay answers.
    status: &'static str,
    /// `relay`: the web app, served by both daemons, asks to know which it talks to.
    service: &'static str,
    version: &'static str,
}

/// Whether the relay runs. Needs no token.
#[utoipa::path(get, path = "/api/v1/health", tag = "relay", security(()),
    responses((status = 200, description = "the relay runs", body = Health)))]
async fn health() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok",
        service: "relay",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Prometheus metrics: edges connected, batches and rows applied, store commit times. Needs
/// no token.
#[utoipa::path(get, path = "/metrics", tag = "relay", security(()),
    responses((status = 200, description = "Prometheus text exposition format",
        content_type = "text/plain", body = String)))]
async fn metrics(axum::extract::State(s): axum::extract::State<HqState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.live.metrics.render(s.live.sessions_open()) + &writer_metrics(s.sync.writer_stats()),
    )
}

/// The telemetry writer's group commits and compaction.
fn writer_metrics(w: &crate::store::WriterStats) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    format!(
        "# TYPE trellis_relay_group_commits_total counter\n\
         trellis_relay_group_commits_total {}\n\
         # TYPE trellis_relay_writer_queued gauge\n\
         trellis_relay_writer_queued {}\n\
         # TYPE trellis_relay_compacted_rows_total counter\n\
         trellis_relay_compacted_rows_total {}\n\
         # TYPE trellis_relay_compaction_failures_total counter\n\
         trellis_relay_compaction_failures_total {}\n",
        w.groups.load(Relaxed),
        w.queued.load(Relaxed),
        w.compacted_rows.load(Relaxed),
        w.compaction_failures.load(Relaxed),
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
