//! `/api/v1/vehicles…`: live state from the fleet snapshot, history from the store.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use trellis_web::openapi::ReadRefusals;
use trellis_web::page::{by_key, parse_int, KeyPageParams};
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
    /// `after` for the next page (a system id); `null` on the last.
    next: Option<String>,
}

/// The vehicles the station hears, as of now, by system id.
#[utoipa::path(get, path = "/api/v1/vehicles", tag = "vehicles", operation_id = "list_vehicles",
    params(KeyPageParams),
    responses((status = 200, description = "the vehicles", body = VehicleList), ReadRefusals))]
pub async fn list(
    State(s): State<AppState>,
    Query(page): Query<KeyPageParams>,
) -> Result<Json<VehicleList>, ApiError> {
    let snapshot = s.snapshots.borrow().clone();
    let (vehicles, next) = by_key(snapshot.vehicles.clone(), &page, |v| v.sysid)?;
    Ok(Json(VehicleList { vehicles, next }))
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
    /// Only samples after this: the `next` of the page before (same `from`, `to`, `every`).
    #[param(pattern = r"^-?[0-9]{1,19}\.[0-9]{1,20}$")]
    after: Option<String>,
}

/// Where a page of history ended: a sample's time and sequence, or with `every` the start
/// of the next interval (and sequence 0).
fn parse_cursor(after: &str) -> Option<(i64, u64)> {
    let (t, seq) = after.split_once('.')?;
    Some((parse_int(t)?, parse_int(seq)?))
}

/// Where the interval after the one holding `t_us` starts, intervals numbered as SQLite's
/// `t_us / every` numbers them: toward zero, so interval 0 spans `(-every, every)` and one
/// before it ends at its number times `every`.
fn next_interval_us(t_us: i64, every: i64) -> i64 {
    let n = t_us / every;
    if n < 0 {
        n.saturating_mul(every).saturating_add(1)
    } else {
        n.saturating_add(1).saturating_mul(every)
    }
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
    /// `after` for the next page; `null` on the last.
    next: Option<String>,
}

const DEFAULT_LIMIT: u32 = 10_000;
const MAX_LIMIT: u32 = 100_000;

/// A vehicle's stored history, oldest first, downsampled with `every` (the first sample of
/// each interval), paged by `limit` and `after`.
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
    let after = p
        .after
        .as_deref()
        .map(|a| {
            parse_cursor(a)
                .ok_or_else(|| ApiError::invalid("after", "not a `next` this history gave"))
        })
        .transpose()?;
    let query = TelemetryQuery {
        vehicle: sysid,
        from_us,
        to_us,
        every_us,
        after,
        // One more than asked: whether it exists says whether a next page does.
        limit: limit + 1,
    };
    let reader = s.reader.clone();
    let rows = tokio::task::spawn_blocking(move || reader.telemetry(&query))
        .await
        .map_err(ApiError::internal)??;
    let (rows, next) = trellis_web::page::split(rows, limit, |last| match every_us {
        Some(every) => format!("{}.0", next_interval_us(last.t_us, every)),
        None => format!("{}.{}", last.t_us, last.seq),
    });
    Ok(Json(TelemetryPage {
        vehicle: sysid,
        from_us,
        to_us,
        every_us,
        count: rows.len(),
        samples: rows.iter().map(SampleView::from).collect(),
        next,
    }))
}

#[cfg(test)]
mod tests {
    use super::next_interval_us;

    #[test]
    fn the_next_interval_starts_where_sqlites_numbering_ends_this_one() {
        for (t, every) in [(25, 10), (0, 10), (-5, 10), (-15, 10), (-10, 10), (9, 10)] {
            let next = next_interval_us(t, every);
            // Every time from `t` up to `next` is in t's interval, and `next` is not.
            assert!(
                (t..next).all(|u| u / every == t / every),
                "{t} by {every}: {next}"
            );
            assert_ne!(next / every, t / every, "{t} by {every}: {next}");
        }
        assert_eq!(next_interval_us(i64::MAX - 3, 10), i64::MAX);
    }
}
