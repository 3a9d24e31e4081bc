//! `GET /api/v1/links`: every live link and its counters.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::Json;
use serde_json::json;

use super::AppState;

pub async fn list(State(s): State<AppState>) -> Json<serde_json::Value> {
    let links: Vec<_> = s
        .links
        .snapshot()
        .iter()
        .map(|l| {
            let st = &l.stats;
            json!({
                "id": l.id,
                "name": l.name,
                "endpoint": l.config.endpoint,
                "connected": st.connected.load(Relaxed),
                "uptime_s": l.started.elapsed().as_secs_f64(),
                "rx_frames": st.rx_frames.load(Relaxed),
                "rx_bytes": st.rx_bytes.load(Relaxed),
                "tx_frames": st.tx_frames.load(Relaxed),
                "tx_bytes": st.tx_bytes.load(Relaxed),
                "tx_queued": l.out.len(),
                "tx_coalesced": st.tx_coalesced.load(Relaxed),
                "tx_dropped": st.tx_dropped.load(Relaxed),
                "tx_errors": st.tx_errors.load(Relaxed),
                "bad_bytes": st.bad_bytes.load(Relaxed),
                "crc_errors": st.crc_errors.load(Relaxed),
                "truncated": st.truncated.load(Relaxed),
                "filtered": st.filtered.load(Relaxed),
                "reconnects": st.reconnects.load(Relaxed),
            })
        })
        .collect();
    Json(json!({ "links": links }))
}
