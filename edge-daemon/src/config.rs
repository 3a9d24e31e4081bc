//! Configuration: TOML with every default in one place (`Config::default`). The example file
//! `edge-daemon.example.toml` documents each setting and is tested to parse to these defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::link::LinkConfig;
use crate::store::StoreConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database lives.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    /// Endpoints to open, in MAVProxy syntax, each with optional message filters.
    pub links: Vec<LinkConfig>,
    pub store: StoreSection,
    pub vehicles: VehiclesSection,
    pub gcs: GcsSection,
    pub sync: SyncSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// An MBTiles file (raster tiles) for the web UI's offline basemap; empty: a plain grid.
    pub mbtiles: PathBuf,
    /// HTTPS: a PEM certificate chain and its key; both empty: plain HTTP.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Telemetry committed at least this often (what a power cut loses: ARCHITECTURE.md).
    pub commit_window_ms: u64,
    /// Database size above which the oldest telemetry is deleted.
    pub quota_mb: u64,
    /// Raw frames (for .tlog export) are kept this long.
    pub frame_retention_days: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VehiclesSection {
    /// A vehicle is "link lost" after this long without a heartbeat.
    pub link_lost_after_s: f64,
    /// A low-battery alert is raised at or below this remaining percentage.
    pub low_battery_pct: i8,
}

/// The station as a ground-control component of its own (`gcs/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcsSection {
    /// The station's MAVLink system id: 1 to 254, not 255 (QGroundControl's and MAVProxy's),
    /// and not a vehicle's.
    pub system_id: u8,
    /// Its component id (190: MAV_COMP_ID_MISSIONPLANNER, what ground stations use).
    pub component_id: u8,
    /// A GCS HEARTBEAT at 1 Hz on every link a vehicle is heard on.
    pub heartbeat: bool,
    /// Ask each vehicle for its data streams, AUTOPILOT_VERSION and HOME_POSITION.
    pub request_data: bool,
    /// The rates asked for.
    pub rates: crate::gcs::Rates,
}

impl Default for GcsSection {
    fn default() -> Self {
        GcsSection {
            system_id: 245,
            component_id: 190,
            heartbeat: true,
            request_data: true,
            rates: crate::gcs::Rates::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSection {
    /// Cap on telemetry payload bytes per second for metered links; 0 means no cap.
    pub bandwidth_limit_bytes_per_s: u64,
    /// How often each vehicle's live position goes to the relay as a datagram; 0: never.
    pub live_interval_ms: u64,
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            bandwidth_limit_bytes_per_s: 0,
            live_interval_ms: 1_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("trellis-data"),
            api: ApiConfig::default(),
            links: Vec::new(),
            store: StoreSection::default(),
            vehicles: VehiclesSection::default(),
            gcs: GcsSection::default(),
            sync: SyncSection::default(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: ([0, 0, 0, 0], 8080).into(),
            mbtiles: PathBuf::new(),
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
        }
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        let d = StoreConfig::default();
        StoreSection {
            commit_window_ms: d.commit_window.as_millis() as u64,
            quota_mb: d.quota_bytes >> 20,
            frame_retention_days: d.frame_retention.as_secs() / 86_400,
        }
    }
}

impl Default for VehiclesSection {
    fn default() -> Self {
        VehiclesSection {
            link_lost_after_s: 5.0,
            low_battery_pct: crate::vehicle::DEFAULT_LOW_BATTERY_PCT,
        }
    }
}

/// Longest `store.frame_retention_days`: a century.
pub const MAX_RETENTION_DAYS: u64 = 36_500;
/// Longest `vehicles.link_lost_after_s`: a day.
pub const MAX_LINK_LOST_S: f64 = 86_400.0;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        let config: Config =
            toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.store.commit_window_ms == 0 || self.store.commit_window_ms > 60_000 {
            return Err(ConfigError::Invalid(
                "store.commit_window_ms must be between 1 and 60000".into(),
            ));
        }
        // Also what `store_config` and `link_lost_after` need: a quota in bytes and a
        // retention in seconds that fit in 64 bits, a finite number of seconds (`inf` is TOML).
        if self.store.quota_mb > u64::MAX >> 20 {
            return Err(ConfigError::Invalid(format!(
                "store.quota_mb must be at most {}",
                u64::MAX >> 20
            )));
        }
        if self.store.frame_retention_days > MAX_RETENTION_DAYS {
            return Err(ConfigError::Invalid(format!(
                "store.frame_retention_days must be at most {MAX_RETENTION_DAYS}"
            )));
        }
        let link_lost = self.vehicles.link_lost_after_s;
        if !(link_lost > 0.0 && link_lost <= MAX_LINK_LOST_S) {
            return Err(ConfigError::Invalid(format!(
                "vehicles.link_lost_after_s must be positive and at most {MAX_LINK_LOST_S} (a day)"
            )));
        }
        if !(0..=100).contains(&self.vehicles.low_battery_pct) {
            return Err(ConfigError::Invalid(
                "vehicles.low_battery_pct must be between 0 and 100".into(),
            ));
        }
        if !(1..=254).contains(&self.gcs.system_id) {
            return Err(ConfigError::Invalid(format!(
                "gcs.system_id must be between 1 and 254 (255 is QGroundControl's and \
                 MAVProxy's; a vehicle's answers would go to both), not {}",
                self.gcs.system_id
            )));
        }
        if self.gcs.component_id == 0 {
            return Err(ConfigError::Invalid(
                "gcs.component_id must not be 0".into(),
            ));
        }
        let r = self.gcs.rates;
        let fastest = [
            r.position_hz,
            r.status_hz,
            r.attitude_hz,
            r.hud_hz,
            r.extra_hz,
        ];
        if fastest.iter().any(|&hz| hz > 50) {
            return Err(ConfigError::Invalid(
                "gcs.rates must be between 0 and 50 Hz".into(),
            ));
        }
        if self.api.cert_file.as_os_str().is_empty() != self.api.key_file.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "api.cert_file and api.key_file go together (HTTPS needs both)".into(),
            ));
        }
        Ok(())
    }

    /// The API's HTTPS settings, when `api.cert_file` and `api.key_file` are set.
    pub fn api_tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ConfigError> {
        if self.api.cert_file.as_os_str().is_empty() {
            return Ok(None);
        }
        trellis_web::serve::https_from_files(&self.api.cert_file, &self.api.key_file)
            .map(Some)
            .map_err(|e| ConfigError::Invalid(format!("api HTTPS: {e}")))
    }

    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            commit_window: Duration::from_millis(self.store.commit_window_ms),
            quota_bytes: self.store.quota_mb << 20,
            frame_retention: Duration::from_secs(self.store.frame_retention_days * 86_400),
        }
    }

    pub fn link_lost_after(&self) -> Duration {
        Duration::from_secs_f64(self.vehicles.link_lost_after_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_documents_the_defaults() {
        let text = include_str!("../edge-daemon.example.toml");
        let parsed: Config = toml::from_str(text).expect("example parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn links_and_filters_parse() {
        let c: Config = toml::from_str(
            r#"
            [[links]]
            endpoint = "serial:/dev/ttyUSB0:57600"
            [[links]]
            endpoint = "udpout:127.0.0.1:14550"
            filter_out = { deny = [22] }
            "#,
        )
        .unwrap();
        assert_eq!(c.links.len(), 2);
        assert!(!c.links[1].filter_out.permits(22));
    }

    /// Found by the `edge_config` fuzz target: each validated, then panicked (`inf` seconds
    /// in `link_lost_after`, the retention's multiplication) or wrapped (the quota's shift).
    #[test]
    fn values_the_daemon_cannot_hold_are_refused() {
        for (text, what) in [
            ("[vehicles]\nlink_lost_after_s = inf", "link_lost_after_s"),
            ("[vehicles]\nlink_lost_after_s = 1e300", "link_lost_after_s"),
            ("[vehicles]\nlink_lost_after_s = nan", "link_lost_after_s"),
            (
                "[store]\nframe_retention_days = 999999999999999",
                "frame_retention_days",
            ),
            ("[store]\nquota_mb = 99999999999999999", "quota_mb"),
        ] {
            let config: Config = toml::from_str(text).unwrap();
            let err = config.validate().expect_err(text).to_string();
            assert!(err.contains(what), "{text}: {err}");
        }
        let mut config = Config::default();
        config.vehicles.link_lost_after_s = MAX_LINK_LOST_S;
        config.store.frame_retention_days = MAX_RETENTION_DAYS;
        config.store.quota_mb = u64::MAX >> 20;
        config.validate().unwrap();
        let store = config.store_config();
        assert_eq!(store.quota_bytes >> 20, config.store.quota_mb);
        assert_eq!(store.frame_retention.as_secs(), MAX_RETENTION_DAYS * 86_400);
        assert_eq!(config.link_lost_after().as_secs(), 86_400);
    }

    #[test]
    fn unknown_keys_and_bad_endpoints_are_errors() {
        assert!(toml::from_str::<Config>("data_dri = 'x'").is_err());
        let err = toml::from_str::<Config>("[[links]]\nendpoint = 'udp:nowhere'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an IP:PORT"), "{err}");
    }
}
