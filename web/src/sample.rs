//! How both APIs show a telemetry sample: one JSON shape for a station's history and HQ's,
//! read through the sample's own accessors, so that an unknown value is `null` in both and
//! no view keeps its own idea of MAVLink's sentinels.

use serde::{Deserialize, Serialize};
use sync_protocol::telemetry::{TelemetryRow, TimeSource};

/// One telemetry sample, in API units. (`Deserialize` for clients written in Rust: the tests
/// and benches read the APIs with it.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SampleView {
    /// Its number in the telemetry stream of the station that recorded it.
    pub seq: u64,
    /// Microseconds since the Unix epoch, by the station's best clock.
    pub t_us: i64,
    pub time_source: TimeSource,
    pub lat: f64,
    pub lon: f64,
    pub alt_msl_m: f64,
    /// Above home.
    pub alt_rel_m: f64,
    pub vn_mps: f64,
    pub ve_mps: f64,
    pub vd_mps: f64,
    pub heading_deg: Option<f64>,
    pub battery_v: Option<f64>,
    pub battery_a: Option<f64>,
    pub battery_pct: Option<u8>,
    /// MAVLink GPS_FIX_TYPE (3: 3D fix).
    pub gps_fix: u8,
    pub satellites: u8,
    /// The autopilot's flight mode number.
    pub custom_mode: u32,
    pub armed: bool,
    /// The mission item the vehicle was on.
    pub mission_seq: u16,
}

impl From<&TelemetryRow> for SampleView {
    fn from(r: &TelemetryRow) -> SampleView {
        let [vn_mps, ve_mps, vd_mps] = r.velocity_mps();
        SampleView {
            seq: r.seq,
            t_us: r.t_us,
            time_source: r.time_source(),
            lat: r.lat(),
            lon: r.lon(),
            alt_msl_m: r.alt_msl_m(),
            alt_rel_m: r.alt_rel_m(),
            vn_mps,
            ve_mps,
            vd_mps,
            heading_deg: r.heading_deg(),
            battery_v: r.battery_v(),
            battery_a: r.battery_a(),
            battery_pct: r.battery_pct(),
            gps_fix: r.gps_fix,
            satellites: r.satellites,
            custom_mode: r.custom_mode,
            armed: r.armed,
            mission_seq: r.mission_seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_are_null() {
        let row = TelemetryRow {
            seq: 7,
            lat_e7: 382_900_000,
            heading_cdeg: TelemetryRow::HEADING_UNKNOWN,
            battery_mv: TelemetryRow::BATTERY_MV_UNKNOWN,
            battery_ca: TelemetryRow::BATTERY_CA_UNKNOWN,
            battery_pct: TelemetryRow::BATTERY_PCT_UNKNOWN,
            time_source: 1,
            ..TelemetryRow::default()
        };
        let json = serde_json::to_value(SampleView::from(&row)).unwrap();
        assert_eq!(json["seq"], 7);
        assert_eq!(json["lat"], 38.29);
        assert_eq!(json["time_source"], "gps");
        for unknown in ["heading_deg", "battery_v", "battery_a", "battery_pct"] {
            assert!(json[unknown].is_null(), "{unknown}: {json}");
        }
    }
}
