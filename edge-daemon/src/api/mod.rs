//! The local HTTP API (axum). JSON under `/api/v1`; every error is JSON too, in the shape
//! both daemons share (`trellis_web::ApiError`). Every route but health and metrics needs a
//! token (`auth.rs`).

pub mod auth;
mod control;
mod export;
mod links;
mod metrics;
mod params;
mod records;
mod signing;
pub mod stream;
pub mod tiles;
mod vehicles;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::watch;
use trellis_web::openapi::{BearerToken, EditRefusals, ReadRefusals};
use trellis_web::page::PageParams;
use utoipa_axum::router::OpenApiRouter;

pub use trellis_web::ApiError;

use crate::store::StoreError;

use crate::link::Links;
use crate::store::{self, EventRow, Reader, StoreStatus};
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
    /// The station's clock (`clock.rs`), for "now" in requests.
    pub time: watch::Receiver<crate::clock::TimeBase>,
    /// Vehicle state for stream clients, published by the ingest loop.
    pub live: watch::Receiver<crate::live::LiveState>,
    /// The token book: streams close when their token is revoked.
    pub tokens: Arc<crate::tokens::TokenBook>,
    pub stream: Arc<stream::StreamStats>,
    /// The offline basemap, when `api.mbtiles` names a usable file.
    pub basemap: Option<tiles::Basemap>,
    /// Stored commands for the ingest loop to send.
    pub commands: tokio::sync::mpsc::Sender<crate::gcs::SendCommand>,
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

/// The station's OpenAPI document: what is not here comes from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Trellis station API",
        description = "The ground station's local API: live vehicle state, history, links, \
            sync, alerts, editable records (fields, geofences, names), the .tlog export and the \
            live stream. Every path but /api/v1/health, /api/v1/openapi.json and /metrics needs \
            a bearer token (`edge-daemon token create --role viewer|pilot|admin`); reading \
            needs a viewer, any other method a pilot. Errors are \
            {\"error\": {\"code\", \"message\", \"field\"}}."
    ),
    modifiers(&BearerToken),
    security(("token" = [])),
)]
struct ApiDoc;

/// The API, its document, the web app and the tiles: one router.
pub fn router(state: AppState, auth: auth::Auth) -> Router {
    use utoipa::OpenApi as _;
    use utoipa_axum::routes;
    let protected = OpenApiRouter::new()
        .routes(routes!(vehicles::list))
        .routes(routes!(vehicles::one, records::rename))
        .routes(routes!(vehicles::telemetry))
        .routes(routes!(records::fields))
        .routes(routes!(records::put_field))
        .routes(routes!(records::geofences))
        .routes(routes!(records::put_geofence))
        .routes(routes!(records::proposals))
        .routes(routes!(links::list))
        .routes(routes!(export::tlog))
        .routes(routes!(sync))
        .routes(routes!(alerts))
        .routes(routes!(acknowledge))
        .routes(routes!(stream::upgrade))
        .routes(routes!(tiles::tile))
        .routes(routes!(control::command))
        .routes(routes!(control::command_outcome))
        .routes(routes!(params::params, params::set_params))
        .routes(routes!(params::fetch))
        .routes(routes!(params::read))
        .routes(routes!(params::history))
        .routes(routes!(params::diff))
        .routes(routes!(params::apply))
        .routes(routes!(params::profiles))
        .routes(routes!(signing::enable, signing::disable, signing::status))
        .routes(routes!(control::decide))
        .routes(routes!(control::missions))
        .routes(routes!(control::put_mission))
        .routes(routes!(control::upload))
        .routes(routes!(control::upload_geofence))
        .routes(routes!(control::plan))
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            auth::require_token,
        ));
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(metrics::metrics))
        .merge(protected)
        .split_for_parts();
    api.merge(trellis_web::openapi::router(doc))
        .merge(trellis_web::assets::router())
        .fallback(|| async { ApiError::not_found("no such path") })
        .with_state(state)
}

/// `GET /api/v1/health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`: the daemon answers.
    status: &'static str,
    /// `station`: the web app, served by both daemons, asks to know which it talks to.
    service: &'static str,
    version: &'static str,
    uptime_s: f64,
    /// Where the station's clock comes from.
    time_source: crate::clock::TimeSource,
    vehicles: usize,
    /// The offline basemap, when one is configured.
    basemap: Option<tiles::Basemap>,
    store: store::StoreStatusView,
}

/// Whether the daemon runs, and what it holds. Needs no token.
#[utoipa::path(get, path = "/api/v1/health", tag = "station", security(()),
    responses((status = 200, description = "the daemon and its store", body = Health)))]
async fn health(State(s): State<AppState>) -> Json<Health> {
    let snapshot = s.snapshots.borrow().clone();
    Json(Health {
        status: "ok",
        service: "station",
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: s.started.elapsed().as_secs_f64(),
        time_source: snapshot.time_source,
        vehicles: snapshot.vehicles.len(),
        basemap: s.basemap.clone(),
        store: store::status_view(&s.store_status, &s.store_path, s.quota_bytes),
    })
}

/// What sync to the relay is doing: connection, backlog, round trip.
#[utoipa::path(get, path = "/api/v1/sync", tag = "station",
    responses((status = 200, description = "sync now", body = crate::sync::SyncView), ReadRefusals))]
async fn sync(State(s): State<AppState>) -> Json<crate::sync::SyncView> {
    Json(s.sync_view())
}

/// A page of alerts, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertPage {
    alerts: Vec<EventRow>,
    /// `before` for the next page; `null` on the last.
    next: Option<i64>,
}

/// Alerts this station raised, newest first, each with its acknowledgement if it has one.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(PageParams),
    responses((status = 200, description = "a page of alerts", body = AlertPage), ReadRefusals))]
async fn alerts(
    State(s): State<AppState>,
    trellis_web::Query(page): trellis_web::Query<PageParams>,
) -> Result<Json<AlertPage>, ApiError> {
    let limit = page.limit(100, 10_000)?;
    let before = page.before;
    let reader = s.reader.clone();
    // One more than asked: whether it exists says whether a next page does.
    let alerts = tokio::task::spawn_blocking(move || {
        reader.events(
            Some(sync_protocol::proto::event::Kind::Alert),
            before,
            limit + 1,
        )
    })
    .await
    .map_err(ApiError::internal)??;
    let (alerts, next) = trellis_web::page::split(alerts, limit, |a| a.seq);
    Ok(Json(AlertPage { alerts, next }))
}

/// The answer to an acknowledgement.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Acknowledged {
    /// The alert's `seq`.
    alert: i64,
    acknowledged: store::Acknowledgement,
    /// True when someone had acknowledged it before: this is their acknowledgement.
    already: bool,
}

/// The caller acknowledges an alert. Durable before the answer, told to stream clients, and
/// synced to HQ as an ACK event. Acknowledging an alert someone already acknowledged answers
/// with the first acknowledgement (a phone that retries on a bad link gets the same answer).
#[utoipa::path(post, path = "/api/v1/alerts/{seq}/ack", tag = "alerts",
    params(("seq" = i64, Path, description = "the alert's `seq`")),
    responses((status = 200, description = "acknowledged (now or before)", body = Acknowledged), EditRefusals))]
async fn acknowledge(
    State(s): State<AppState>,
    caller: auth::Caller,
    trellis_web::Path(seq): trellis_web::Path<i64>,
) -> Result<Json<Acknowledged>, ApiError> {
    let (store, by) = (s.store.clone(), caller.0.name.clone());
    let result = tokio::task::spawn_blocking(move || store.acknowledge(seq, &by))
        .await
        .map_err(ApiError::internal)?;
    match result {
        Ok((acknowledged, new)) => Ok(Json(Acknowledged {
            alert: seq,
            acknowledged,
            already: !new,
        })),
        Err(StoreError::NoSuchAlert(_)) => {
            Err(ApiError::not_found(format!("there is no alert {seq}")))
        }
        Err(e) => Err(e.into()),
    }
}
