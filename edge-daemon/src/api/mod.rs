//! The local HTTP API (axum). JSON under `/api/v1`; every error is JSON too, in the shape
//! both daemons share (`trellis_web::ApiError`). Every route but health and metrics needs a
//! token (`auth.rs`).

pub mod auth;
mod export;
mod links;
mod metrics;
mod records;
pub mod stream;
pub mod tiles;
mod vehicles;

use std::sync::Arc;
use std::time::Instant;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

pub use trellis_web::ApiError;

use crate::store::StoreError;

use crate::link::Links;
use crate::store::{self, Reader, StoreStatus};
use crate::vehicle::FleetSnapshot;

/// What handlers share. Everything here is cheap to clone and lock-free to read.
#[derive(Clone)]
pub struct AppState {
    pub sync: Arc<crate::sync::SyncStatus>,
    pub snapshots: watch::Receiver<Arc<FleetSnapshot>>,
    pub links: Links,
    pub reader: Reader,
    /// For edits made through the API.
    pub store: store::StoreSender,
    pub store_status: Arc<StoreStatus>,
    pub store_path: std::path::PathBuf,
    pub quota_bytes: u64,
    pub started: Instant,
    /// Vehicle state for stream clients, published by the ingest loop.
    pub live: watch::Receiver<crate::live::LiveState>,
    /// The token book: streams close when their token is revoked.
    pub tokens: Arc<crate::tokens::TokenBook>,
    pub stream: Arc<stream::StreamStats>,
    /// The offline basemap, when `api.mbtiles` names a usable file.
    pub basemap: Option<tiles::Basemap>,
}

impl AppState {
    /// What sync is doing, with its backlog against what the store has committed.
    pub fn sync_view(&self) -> crate::sync::SyncView {
        use crate::store::Stream;
        let st = &self.store_status;
        self.sync.view((
            st.committed(Stream::Telemetry),
            st.committed(Stream::Events),
        ))
    }
}

/// Errors of the store reach clients as internal errors, their text only in the log.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

pub fn router(state: AppState, auth: auth::Auth) -> Router {
    let public = Router::new()
        .route("/api/v1/health", get(health))
        .route("/metrics", get(metrics::metrics))
        .merge(trellis_web::assets::router());
    let protected = Router::new()
        .route("/api/v1/vehicles", get(vehicles::list))
        .route(
            "/api/v1/vehicles/{id}",
            get(vehicles::one).patch(records::rename),
        )
        .route("/api/v1/missions/proposals", get(records::proposals))
        .route("/api/v1/{table}", get(records::get_table))
        .route(
            "/api/v1/{table}/{key}",
            axum::routing::put(records::put_record),
        )
        .route("/api/v1/vehicles/{id}/telemetry", get(vehicles::telemetry))
        .route("/api/v1/links", get(links::list))
        .route("/api/v1/export/tlog", get(export::tlog))
        .route("/api/v1/sync", get(sync))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/{id}/ack", axum::routing::post(acknowledge))
        .route("/api/v1/stream", get(stream::upgrade))
        .route("/tiles/{z}/{x}/{y}", get(tiles::tile))
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            auth::require_token,
        ));
    public
        .merge(protected)
        .fallback(|| async { ApiError::not_found("no such path") })
        .with_state(state)
}

async fn health(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> Json<serde_json::Value> {
    let snapshot = s.snapshots.borrow().clone();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.started.elapsed().as_secs_f64(),
        "time_source": snapshot.time_source,
        "vehicles": snapshot.vehicles.len(),
        "basemap": s.basemap,
        "store": store::status_view(&s.store_status, &s.store_path, s.quota_bytes),
    }))
}

async fn sync(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> Json<crate::sync::SyncView> {
    Json(s.sync_view())
}

/// Alerts this station raised, newest first, each with its acknowledgement if it has one.
async fn alerts(
    axum::extract::State(s): axum::extract::State<AppState>,
    trellis_web::Query(page): trellis_web::Query<trellis_web::page::PageParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = page.limit(100, 10_000)?;
    let before = page.before;
    let reader = s.reader.clone();
    let alerts = tokio::task::spawn_blocking(move || {
        reader.events(
            Some(sync_protocol::proto::event::Kind::Alert),
            before,
            limit,
        )
    })
    .await
    .map_err(ApiError::internal)??;
    let next = trellis_web::page::next(&alerts, limit, |a| a.seq);
    Ok(Json(json!({ "alerts": alerts, "next": next })))
}

/// `POST /api/v1/alerts/{id}/ack`: the caller acknowledges an alert. Durable before the
/// answer, told to stream clients, and synced to HQ as an ACK event. Acknowledging an alert
/// someone already acknowledged answers with the first acknowledgement (a phone that retries
/// on a bad link gets the same answer), with `"already": true`.
async fn acknowledge(
    axum::extract::State(s): axum::extract::State<AppState>,
    caller: auth::Caller,
    trellis_web::Path(id): trellis_web::Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (store, by) = (s.store.clone(), caller.0.name.clone());
    let result = tokio::task::spawn_blocking(move || store.acknowledge(id, &by))
        .await
        .map_err(ApiError::internal)?;
    match result {
        Ok((ack, new)) => Ok(Json(
            json!({ "alert": id, "acknowledged": ack, "already": !new }),
        )),
        Err(StoreError::NoSuchAlert(_)) => {
            Err(ApiError::not_found(format!("there is no alert {id}")))
        }
        Err(e) => Err(e.into()),
    }
}
