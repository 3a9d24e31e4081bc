//! The relay's config file (`cloud-relay/src/config.rs`): any TOML text.
//!
//! Invariants: parsing never panics; a config that parses writes back as TOML that parses to
//! the same config.
#![no_main]

use cloud_relay::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = toml::from_str::<Config>(text) else {
        return;
    };
    let written = toml::to_string(&config).expect("a parsed config writes as TOML");
    let back: Config = toml::from_str(&written).expect("and reads back");
    assert_eq!(back, config, "{written}");
});
