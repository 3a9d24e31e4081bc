//! `/api/v1/vehicles…`: live state from the fleet snapshot, history from the store.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use trellis_web::openapi::ReadRefusals;
use trellis_web::time::{parse_interval_us, TimeRange};
use trellis_web::{Query, SampleView};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, AppState};
use crate::store::TelemetryQuery;
use crate::vehicle::VehicleView;

#[derive(Debug, Serialize, ToSchema)]
pub struct VehicleList {
    #[schema(value_type = Vec<VehicleView>)]
    vehicles: Vec<Arc<VehicleView>>,
}

/// Every vehicle the station hears, as of now.
#[utoipa::path(get, path = "/api/v1/vehicles", tag = "vehicles", operation_id = "list_vehicles",
    responses((status = 200, description = "the vehicles", body = VehicleList), ReadRefusals))]
pub async fn list(State(s): State<AppState>) -> Json<VehicleList> {
    let snapshot = s.snapshots.borrow().clone();
    Json(VehicleList {
        vehicles: snapshot.vehicles.clone(),
    })
}

/// One vehicle, as of now.
#[utoipa::path(get, path = "/api/v1/vehicles/{id}", tag = "vehicles",
    params(("id" = String, Path, description = "system id (`8`) or fleet name (`V-08`)")),
    responses((status = 200, description = "the vehicle", body = VehicleView), ReadRefusals))]
pub async fn one(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Arc<VehicleView>>, ApiError> {
    find(&s, &id).map(Json)
}

/// A vehicle by system id (`8`) or fleet name (`V-08`).
pub fn find(s: &AppState, id: &str) -> Result<Arc<VehicleView>, ApiError> {
    let snapshot = s.snapshots.borrow().clone();
    let found = match id.parse::<u8>() {
        Ok(sysid) => snapshot.vehicles.iter().find(|v| v.sysid == sysid),
        Err(_) => snapshot.vehicles.iter().find(|v| v.name == id),
    };
    found
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no vehicle {id:?}")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TelemetryParams {
    /// RFC 3339 or Unix milliseconds; default an hour before `to`.
    #[param(schema_with = trellis_web::openapi::time_param)]
    from: Option<String>,
    /// RFC 3339 or Unix milliseconds; default the station's now.
    #[param(schema_with = trellis_web::openapi::time_param)]
    to: Option<String>,
    /// Downsampling interval, e.g. `5s`, `500ms`, `1m`.
    every: Option<String>,
    #[param(minimum = 1, maximum = 100_000)]
    limit: Option<u32>,
}

/// A vehicle's history over a time range.
#[derive(Debug, Serialize, ToSchema)]
pub struct TelemetryPage {
    vehicle: u8,
    from_us: i64,
    to_us: i64,
    every_us: Option<i64>,
    count: usize,
    samples: Vec<SampleView>,
}

const DEFAULT_LIMIT: u32 = 10_000;
const MAX_LIMIT: u32 = 100_000;

/// A vehicle's stored history, oldest first, downsampled with `every`.
#[utoipa::path(get, path = "/api/v1/vehicles/{id}/telemetry", tag = "vehicles",
    params(("id" = String, Path, description = "system id or fleet name"), TelemetryParams),
    responses((status = 200, description = "the samples", body = TelemetryPage), ReadRefusals))]
pub async fn telemetry(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<TelemetryParams>,
) -> Result<Json<TelemetryPage>, ApiError> {
    let sysid = match id.parse::<u8>() {
        Ok(n) => n,
        Err(_) => find(&s, &id)?.sysid,
    };
    let now_us = s.time.borrow().now_us();
    let TimeRange { from_us, to_us } =
        TimeRange::parse(p.from.as_deref(), p.to.as_deref(), now_us, 3_600_000_000)?;
    let every_us = p
        .every
        .as_deref()
        .map(|e| parse_interval_us("every", e))
        .transpose()?;
    let limit = trellis_web::page::limit(p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let query = TelemetryQuery {
        vehicle: sysid,
        from_us,
        to_us,
        every_us,
        limit,
    };
    let reader = s.reader.clone();
    let rows = tokio::task::spawn_blocking(move || reader.telemetry(&query))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(TelemetryPage {
        vehicle: sysid,
        from_us,
        to_us,
        every_us,
        count: rows.len(),
        samples: rows.iter().map(SampleView::from).collect(),
    }))
}
