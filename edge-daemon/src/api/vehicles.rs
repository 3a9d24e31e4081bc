//! `/api/v1/vehicles…`: live state from the fleet snapshot, history from the store.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use trellis_web::time::{parse_interval_us, TimeRange};
use trellis_web::Query;

use super::{ApiError, AppState};
use crate::store::TelemetryQuery;
use crate::vehicle::VehicleView;

pub async fn list(State(s): State<AppState>) -> Json<serde_json::Value> {
    let snapshot = s.snapshots.borrow().clone();
    Json(json!({ "vehicles": snapshot.vehicles }))
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryParams {
    from: Option<String>,
    to: Option<String>,
    /// Downsampling interval, e.g. `5s`, `500ms`, `1m`.
    every: Option<String>,
    limit: Option<u32>,
}

const DEFAULT_LIMIT: u32 = 10_000;
const MAX_LIMIT: u32 = 100_000;

pub async fn telemetry(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<TelemetryParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sysid = match id.parse::<u8>() {
        Ok(n) => n,
        Err(_) => find(&s, &id)?.sysid,
    };
    let now_us = s
        .snapshots
        .borrow()
        .time_us
        .max(crate::clock::system_now_us());
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
    Ok(Json(json!({
        "vehicle": sysid,
        "from_us": from_us,
        "to_us": to_us,
        "every_us": every_us,
        "count": rows.len(),
        "samples": rows,
    })))
}
