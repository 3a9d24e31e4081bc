//! One telemetry sample, as every part of Trellis holds it: the station's outbox row, the
//! codec's input and output, the relay's chunks, and the samples both APIs show.
//!
//! Its fields are MAVLink's units and widths, with MAVLink's "unknown" values kept as they
//! arrive; the accessors are the one place those values are read ([`TelemetryRow::heading_deg`]
//! and the rest), so no view can disagree about what is unknown. [`COLUMNS`] names the
//! fields in wire order: the codec's column order, and the column list every SQL statement
//! that stores or reads samples is built from ([`sql`]).

use serde::{Deserialize, Serialize};

/// How many fields a sample has.
pub const FIELDS: usize = 20;

/// The fields, in wire order. The codec writes its columns in this order and SQL tables name
/// their columns after it; changing it is a new codec version.
pub const COLUMNS: [&str; FIELDS] = [
    "vehicle",
    "seq",
    "t_us",
    "time_source",
    "lat_e7",
    "lon_e7",
    "alt_mm",
    "rel_alt_mm",
    "vx",
    "vy",
    "vz",
    "heading_cdeg",
    "battery_mv",
    "battery_ca",
    "battery_pct",
    "gps_fix",
    "satellites",
    "custom_mode",
    "armed",
    "mission_seq",
];

/// One telemetry sample as it travels: the edge's outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TelemetryRow {
    /// Its number in the station's telemetry stream.
    pub seq: u64,
    /// The vehicle's MAVLink system id at the station.
    pub vehicle: u32,
    /// When, in microseconds since the Unix epoch, by the station's best clock.
    pub t_us: i64,
    /// Which clock that was ([`TimeSource`]'s code).
    pub time_source: u8,
    pub lat_e7: i32,
    pub lon_e7: i32,
    /// Above mean sea level, millimetres.
    pub alt_mm: i32,
    /// Above home, millimetres.
    pub rel_alt_mm: i32,
    /// North, east and down speed, cm/s.
    pub vx: i16,
    pub vy: i16,
    pub vz: i16,
    /// Centidegrees, 0..35999; [`TelemetryRow::HEADING_UNKNOWN`] when unknown.
    pub heading_cdeg: u16,
    /// Millivolts; 0 or [`TelemetryRow::BATTERY_MV_UNKNOWN`] when unknown.
    pub battery_mv: u16,
    /// Centiamperes; negative when unknown.
    pub battery_ca: i16,
    /// Percent; negative when unknown.
    pub battery_pct: i8,
    /// MAVLink GPS_FIX_TYPE.
    pub gps_fix: u8,
    pub satellites: u8,
    /// The autopilot's flight mode number.
    pub custom_mode: u32,
    pub armed: bool,
    /// The mission item the vehicle is on.
    pub mission_seq: u16,
}

/// A value that does not fit its field, naming the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{column}: value out of range")]
pub struct OutOfRange {
    pub column: &'static str,
}

impl TelemetryRow {
    /// `heading_cdeg` when the vehicle did not say (MAVLink's `UINT16_MAX`).
    pub const HEADING_UNKNOWN: u16 = u16::MAX;
    /// `battery_mv` when the vehicle did not say (MAVLink's `UINT16_MAX`).
    pub const BATTERY_MV_UNKNOWN: u16 = u16::MAX;
    /// `battery_ca` when the vehicle did not say (MAVLink's -1).
    pub const BATTERY_CA_UNKNOWN: i16 = -1;
    /// `battery_pct` when the vehicle did not say (MAVLink's -1).
    pub const BATTERY_PCT_UNKNOWN: i8 = -1;

    /// The fields as integers, in [`COLUMNS`] order: what the codec and SQL bind.
    pub fn values(&self) -> [i64; FIELDS] {
        [
            i64::from(self.vehicle),
            self.seq as i64,
            self.t_us,
            i64::from(self.time_source),
            i64::from(self.lat_e7),
            i64::from(self.lon_e7),
            i64::from(self.alt_mm),
            i64::from(self.rel_alt_mm),
            i64::from(self.vx),
            i64::from(self.vy),
            i64::from(self.vz),
            i64::from(self.heading_cdeg),
            i64::from(self.battery_mv),
            i64::from(self.battery_ca),
            i64::from(self.battery_pct),
            i64::from(self.gps_fix),
            i64::from(self.satellites),
            i64::from(self.custom_mode),
            i64::from(self.armed),
            i64::from(self.mission_seq),
        ]
    }

    /// A sample from integers in [`COLUMNS`] order; a value that does not fit its field is
    /// an error naming it, never a silently cut value.
    pub fn from_values(v: &[i64; FIELDS]) -> Result<TelemetryRow, OutOfRange> {
        fn fit<T: TryFrom<i64>>(value: i64, i: usize) -> Result<T, OutOfRange> {
            T::try_from(value).map_err(|_| OutOfRange { column: COLUMNS[i] })
        }
        Ok(TelemetryRow {
            vehicle: fit(v[0], 0)?,
            // Stored as the same 64 bits either way (SQL has no unsigned integers).
            seq: v[1] as u64,
            t_us: v[2],
            time_source: fit(v[3], 3)?,
            lat_e7: fit(v[4], 4)?,
            lon_e7: fit(v[5], 5)?,
            alt_mm: fit(v[6], 6)?,
            rel_alt_mm: fit(v[7], 7)?,
            vx: fit(v[8], 8)?,
            vy: fit(v[9], 9)?,
            vz: fit(v[10], 10)?,
            heading_cdeg: fit(v[11], 11)?,
            battery_mv: fit(v[12], 12)?,
            battery_ca: fit(v[13], 13)?,
            battery_pct: fit(v[14], 14)?,
            gps_fix: fit(v[15], 15)?,
            satellites: fit(v[16], 16)?,
            custom_mode: fit(v[17], 17)?,
            armed: match v[18] {
                0 => false,
                1 => true,
                _ => {
                    return Err(OutOfRange {
                        column: COLUMNS[18],
                    })
                }
            },
            mission_seq: fit(v[19], 19)?,
        })
    }

    pub fn lat(&self) -> f64 {
        f64::from(self.lat_e7) / 1e7
    }

    pub fn lon(&self) -> f64 {
        f64::from(self.lon_e7) / 1e7
    }

    pub fn alt_msl_m(&self) -> f64 {
        f64::from(self.alt_mm) / 1e3
    }

    pub fn alt_rel_m(&self) -> f64 {
        f64::from(self.rel_alt_mm) / 1e3
    }

    /// North, east and down speed in m/s.
    pub fn velocity_mps(&self) -> [f64; 3] {
        [self.vx, self.vy, self.vz].map(|v| f64::from(v) / 1e2)
    }

    /// Degrees, 0 to 360; `None` when unknown or out of range.
    pub fn heading_deg(&self) -> Option<f64> {
        heading_deg(self.heading_cdeg)
    }

    /// Volts; `None` when unknown.
    pub fn battery_v(&self) -> Option<f64> {
        (self.battery_mv != 0 && self.battery_mv != Self::BATTERY_MV_UNKNOWN)
            .then(|| f64::from(self.battery_mv) / 1e3)
    }

    /// Amperes; `None` when unknown.
    pub fn battery_a(&self) -> Option<f64> {
        (self.battery_ca >= 0).then(|| f64::from(self.battery_ca) / 1e2)
    }

    /// Percent remaining; `None` when unknown.
    pub fn battery_pct(&self) -> Option<u8> {
        u8::try_from(self.battery_pct).ok()
    }

    pub fn time_source(&self) -> TimeSource {
        TimeSource::from_code(self.time_source)
    }
}

/// A heading in centidegrees as MAVLink sends it (`GLOBAL_POSITION_INT.hdg`: 0..35999,
/// `UINT16_MAX` when unknown), in degrees; `None` for unknown or out of range. The one
/// reading of this field, for samples and for live positions alike.
pub fn heading_deg(cdeg: u16) -> Option<f64> {
    (cdeg < 36_000).then(|| f64::from(cdeg) / 100.0)
}

/// Where a timestamp's wall time came from. The codes are stored and synced: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TimeSource {
    /// The system clock, not known to be right (a Pi booted offline).
    SystemUnsynced = 0,
    /// A vehicle's GPS time (SYSTEM_TIME), carried forward by the monotonic clock.
    Gps = 1,
    /// The system clock while the kernel reports it synchronised.
    SystemSynced = 2,
    /// The relay's clock, told on connecting (within half the round trip), for a station
    /// that had neither of the above.
    Relay = 3,
}

impl TimeSource {
    /// The source a sample's `time_source` code names; an unknown code is the worst.
    pub fn from_code(code: u8) -> TimeSource {
        match code {
            3 => TimeSource::Relay,
            2 => TimeSource::SystemSynced,
            1 => TimeSource::Gps,
            _ => TimeSource::SystemUnsynced,
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

/// SQL text built from [`COLUMNS`], so that a table of samples, the statement that fills it
/// and the query that reads it back can never disagree about a column.
pub mod sql {
    use super::COLUMNS;

    /// `vehicle, seq, t_us, …`: the columns, in [`COLUMNS`] order.
    pub fn columns() -> String {
        COLUMNS.join(", ")
    }

    /// `?1, ?2, …, ?20` (SQLite's placeholders), for an INSERT naming [`columns`].
    pub fn placeholders() -> String {
        (1..=COLUMNS.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Column definitions for a table of samples: every field an `INTEGER NOT NULL`, except
    /// `seq`, the table's `INTEGER PRIMARY KEY`.
    pub fn definitions() -> String {
        COLUMNS
            .map(|c| match c {
                "seq" => "seq INTEGER PRIMARY KEY".to_string(),
                c => format!("{c} INTEGER NOT NULL"),
            })
            .join(",\n    ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_row() -> impl Strategy<Value = TelemetryRow> {
        (
            (any::<u64>(), any::<u32>(), any::<i64>(), any::<u8>()),
            (any::<i32>(), any::<i32>(), any::<i32>(), any::<i32>()),
            (any::<i16>(), any::<i16>(), any::<i16>(), any::<u16>()),
            (
                any::<u16>(),
                any::<i16>(),
                any::<i8>(),
                any::<u8>(),
                any::<u8>(),
            ),
            (any::<u32>(), any::<bool>(), any::<u16>()),
        )
            .prop_map(|(a, b, c, d, e)| TelemetryRow {
                seq: a.0,
                vehicle: a.1,
                t_us: a.2,
                time_source: a.3,
                lat_e7: b.0,
                lon_e7: b.1,
                alt_mm: b.2,
                rel_alt_mm: b.3,
                vx: c.0,
                vy: c.1,
                vz: c.2,
                heading_cdeg: c.3,
                battery_mv: d.0,
                battery_ca: d.1,
                battery_pct: d.2,
                gps_fix: d.3,
                satellites: d.4,
                custom_mode: e.0,
                armed: e.1,
                mission_seq: e.2,
            })
    }

    proptest! {
        #[test]
        fn values_read_back_as_the_same_sample(row in any_row()) {
            prop_assert_eq!(TelemetryRow::from_values(&row.values()), Ok(row));
        }
    }

    #[test]
    fn a_value_too_wide_for_its_field_is_named() {
        let mut v = TelemetryRow::default().values();
        v[11] = 70_000;
        assert_eq!(
            TelemetryRow::from_values(&v),
            Err(OutOfRange {
                column: "heading_cdeg"
            })
        );
        let mut v = TelemetryRow::default().values();
        v[18] = 2;
        assert_eq!(TelemetryRow::from_values(&v).unwrap_err().column, "armed");
    }

    #[test]
    fn unknown_values_read_as_none() {
        let unknown = TelemetryRow {
            heading_cdeg: TelemetryRow::HEADING_UNKNOWN,
            battery_mv: TelemetryRow::BATTERY_MV_UNKNOWN,
            battery_ca: TelemetryRow::BATTERY_CA_UNKNOWN,
            battery_pct: TelemetryRow::BATTERY_PCT_UNKNOWN,
            ..TelemetryRow::default()
        };
        assert_eq!(unknown.heading_deg(), None);
        assert_eq!(unknown.battery_v(), None);
        assert_eq!(unknown.battery_a(), None);
        assert_eq!(unknown.battery_pct(), None);
        assert_eq!(
            TelemetryRow::default().battery_v(),
            None,
            "0 mV: no monitor"
        );
        let known = TelemetryRow {
            heading_cdeg: 35_999,
            battery_mv: 12_600,
            battery_ca: 1_250,
            battery_pct: 87,
            vx: -150,
            ..TelemetryRow::default()
        };
        assert_eq!(known.heading_deg(), Some(359.99));
        assert_eq!(known.battery_v(), Some(12.6));
        assert_eq!(known.battery_a(), Some(12.5));
        assert_eq!(known.battery_pct(), Some(87));
        assert_eq!(known.velocity_mps()[0], -1.5);
        assert_eq!(heading_deg(36_000), None, "out of range");
    }

    #[test]
    fn a_heading_is_known_only_inside_a_circle() {
        assert_eq!(heading_deg(0), Some(0.0));
        assert_eq!(heading_deg(35_999), Some(359.99));
        assert_eq!(heading_deg(36_000), None, "out of range is not a heading");
        assert_eq!(heading_deg(u16::MAX), None, "MAVLink's unknown");
    }

    #[test]
    fn time_sources_keep_their_codes() {
        for s in [
            TimeSource::SystemUnsynced,
            TimeSource::Gps,
            TimeSource::SystemSynced,
            TimeSource::Relay,
        ] {
            assert_eq!(TimeSource::from_code(s.code()), s);
        }
        assert_eq!(TimeSource::from_code(9), TimeSource::SystemUnsynced);
    }

    #[test]
    fn sql_names_every_column_once() {
        assert_eq!(sql::columns().split(", ").count(), FIELDS);
        assert!(sql::placeholders().ends_with("?20"));
        let defs = sql::definitions();
        assert_eq!(defs.matches("INTEGER NOT NULL").count(), FIELDS - 1);
        assert!(defs.contains("seq INTEGER PRIMARY KEY"));
    }
}
