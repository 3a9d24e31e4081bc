//! `GET /api/v1/export/tlog?vehicle=&from=&to=`: a .tlog file of the stored frames.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;

use trellis_web::openapi::ReadRefusals;
use trellis_web::time::parse_time_us;
use trellis_web::Query;

use super::{ApiError, AppState};
use crate::store::tlog::{self, TlogQuery};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// One vehicle's system id; every vehicle when absent.
    #[param(maximum = 255)]
    vehicle: Option<u8>,
    /// RFC 3339 or Unix milliseconds; from the oldest frame kept when absent.
    #[param(schema_with = trellis_web::openapi::time_param)]
    from: Option<String>,
    /// RFC 3339 or Unix milliseconds; to the newest when absent.
    #[param(schema_with = trellis_web::openapi::time_param)]
    to: Option<String>,
}

/// The stored frames as a `.tlog` file (MAVExplorer, QGroundControl and pymavlink read it).
#[utoipa::path(get, path = "/api/v1/export/tlog", tag = "station", params(Params),
    responses((status = 200, description = "a .tlog file: each frame after its 8-byte \
        big-endian microsecond timestamp", content_type = "application/octet-stream",
        body = Vec<u8>), ReadRefusals))]
pub async fn tlog(
    State(s): State<AppState>,
    Query(p): Query<Params>,
) -> Result<impl IntoResponse, ApiError> {
    let q = TlogQuery {
        vehicle: p.vehicle,
        from_us: p
            .from
            .as_deref()
            .map(|t| parse_time_us("from", t))
            .transpose()?
            .unwrap_or(0),
        to_us: p
            .to
            .as_deref()
            .map(|t| parse_time_us("to", t))
            .transpose()?
            .unwrap_or(i64::MAX),
    };
    let reader = s.reader.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        tlog::export(&reader, &q, &mut out).map(|_| out)
    })
    .await
    .map_err(ApiError::internal)??;
    let name = match q.vehicle {
        Some(v) => format!("attachment; filename=\"vehicle-{v}.tlog\""),
        None => "attachment; filename=\"fleet.tlog\"".to_string(),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        bytes,
    ))
}
