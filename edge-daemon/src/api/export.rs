//! `GET /api/v1/export/tlog?vehicle=&from=&to=`: a .tlog file of the stored frames.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;

use trellis_web::time::parse_time_us;
use trellis_web::Query;

use super::{ApiError, AppState};
use crate::store::tlog::{self, TlogQuery};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    vehicle: Option<u8>,
    from: Option<String>,
    to: Option<String>,
}

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
