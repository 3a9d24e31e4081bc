//! `GET /api/v1/links`: every live link and its counters.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use trellis_web::openapi::ReadRefusals;
use trellis_web::page::{by_key, KeyPageParams};
use trellis_web::Query;
use utoipa::ToSchema;

use super::{ApiError, AppState};

/// One link and its counters since it started.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    id: u32,
    name: String,
    /// The endpoint as configured (`serial:/dev/ttyUSB0:57600`, `udpin:0.0.0.0:14550`, …).
    endpoint: String,
    connected: bool,
    uptime_s: f64,
    rx_frames: u64,
    rx_bytes: u64,
    tx_frames: u64,
    tx_bytes: u64,
    tx_queued: usize,
    tx_coalesced: u64,
    tx_dropped: u64,
    tx_errors: u64,
    /// Bytes that were not part of a MAVLink frame (line noise).
    bad_bytes: u64,
    crc_errors: u64,
    truncated: u64,
    filtered: u64,
    reconnects: u64,
    /// The link's own radio: what its last RADIO_STATUS said (free transmit buffer, %), how
    /// many it sent, and the pace the station writes at because of them (`null`: not paced).
    radio_txbuf: Option<u8>,
    radio_reports: u64,
    radio_pace_bytes_per_s: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkList {
    links: Vec<LinkView>,
    /// `after` for the next page (a link id); `null` on the last.
    next: Option<String>,
}

/// The live links and their counters, by link id.
#[utoipa::path(get, path = "/api/v1/links", tag = "station", operation_id = "list_links",
    params(KeyPageParams),
    responses((status = 200, description = "the links", body = LinkList), ReadRefusals))]
pub async fn list(
    State(s): State<AppState>,
    Query(page): Query<KeyPageParams>,
) -> Result<Json<LinkList>, ApiError> {
    let links = s
        .links
        .snapshot()
        .iter()
        .map(|l| {
            let st = &l.stats;
            LinkView {
                id: l.id,
                name: l.name.clone(),
                endpoint: l.config.endpoint.to_string(),
                connected: st.connected.load(Relaxed),
                uptime_s: l.started.elapsed().as_secs_f64(),
                rx_frames: st.rx_frames.load(Relaxed),
                rx_bytes: st.rx_bytes.load(Relaxed),
                tx_frames: st.tx_frames.load(Relaxed),
                tx_bytes: st.tx_bytes.load(Relaxed),
                tx_queued: l.out.len(),
                tx_coalesced: st.tx_coalesced.load(Relaxed),
                tx_dropped: st.tx_dropped.load(Relaxed),
                tx_errors: st.tx_errors.load(Relaxed),
                bad_bytes: st.bad_bytes.load(Relaxed),
                crc_errors: st.crc_errors.load(Relaxed),
                truncated: st.truncated.load(Relaxed),
                filtered: st.filtered.load(Relaxed),
                reconnects: st.reconnects.load(Relaxed),
                radio_txbuf: l.flow.last_txbuf(),
                radio_reports: l.flow.reports(),
                radio_pace_bytes_per_s: l.flow.rate(),
            }
        })
        .collect();
    let (links, next) = by_key(links, &page, |l| l.id)?;
    Ok(Json(LinkList { links, next }))
}
