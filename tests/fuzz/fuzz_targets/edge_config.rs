//! The station's config file (`edge-daemon/src/config.rs`): any TOML text.
//!
//! Input: TOML text; or, when the first byte has its top bit set (never so in text), one
//! setting of the config chosen by that byte with the rest of the input as its value, so the
//! fuzzer tries values at the edges of each setting's type (`inf`, `-0.0`, 2^64 - 1) without
//! having to rebuild the file around them.
//!
//! Invariants: parsing and `validate` never panic; a config that validates gives the values
//! the daemon starts from (the store's settings, the link-lost limit, the station's own
//! component, the fleet, every link's endpoint) without panicking or silently wrapping, and
//! writes back as TOML that parses to the same config.
#![no_main]

use std::collections::HashMap;

use edge_daemon::config::Config;
use edge_daemon::gcs::Gcs;
use edge_daemon::vehicle::Fleet;
use libfuzzer_sys::fuzz_target;

/// Every setting that is not a table, as `[section]` and key.
const SETTINGS: [(&str, &str); 22] = [
    ("", "data_dir"),
    ("api", "listen"),
    ("api", "mbtiles"),
    ("api", "cert_file"),
    ("api", "key_file"),
    ("store", "commit_window_ms"),
    ("store", "quota_mb"),
    ("store", "frame_retention_days"),
    ("vehicles", "link_lost_after_s"),
    ("vehicles", "low_battery_pct"),
    ("gcs", "system_id"),
    ("gcs", "component_id"),
    ("gcs", "heartbeat"),
    ("gcs", "request_data"),
    ("gcs.rates", "position_hz"),
    ("gcs.rates", "status_hz"),
    ("gcs.rates", "attitude_hz"),
    ("gcs.rates", "hud_hz"),
    ("gcs.rates", "extra_hz"),
    ("sync", "bandwidth_limit_bytes_per_s"),
    ("sync", "live_interval_ms"),
    ("[links]", "endpoint"),
];

fuzz_target!(|data: &[u8]| {
    let text = match data.split_first() {
        Some((&choice, value)) if choice & 0x80 != 0 => {
            let Ok(value) = std::str::from_utf8(value) else {
                return;
            };
            let (section, key) = SETTINGS[usize::from(choice & 0x7F) % SETTINGS.len()];
            if section.is_empty() {
                format!("{key} = {value}\n")
            } else {
                format!("[{section}]\n{key} = {value}\n")
            }
        }
        _ => match std::str::from_utf8(data) {
            Ok(text) => text.to_string(),
            Err(_) => return,
        },
    };
    let Ok(config) = toml::from_str::<Config>(&text) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    let store = config.store_config();
    assert_eq!(store.commit_window.as_millis(), u128::from(config.store.commit_window_ms));
    assert_eq!(store.quota_bytes >> 20, config.store.quota_mb, "quota_mb wrapped");
    assert_eq!(
        store.frame_retention.as_secs() / 86_400,
        config.store.frame_retention_days,
        "frame_retention_days wrapped"
    );
    let link_lost_after = config.link_lost_after();
    let _ = Gcs::new(&config.gcs, link_lost_after);
    let mut fleet = Fleet::new(link_lost_after, HashMap::new());
    fleet.set_low_battery_pct(config.vehicles.low_battery_pct);
    for link in &config.links {
        let _ = link.endpoint.to_string();
    }

    let written = toml::to_string(&config).expect("a valid config writes as TOML");
    let back: Config = toml::from_str(&written).expect("and reads back");
    assert_eq!(back, config, "{written}");
});
