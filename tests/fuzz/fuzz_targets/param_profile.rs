//! Parameter profiles (`edge-daemon/src/profile.rs`): the `.param`/`.params` text a pilot may
//! send the API to apply to a vehicle.
//!
//! Input: one byte picking the format (Mission Planner's `NAME,VALUE` or QGroundControl's
//! TAB-separated `.params`), then the text. Invariants: parsing never panics; a profile
//! compared with a vehicle holding exactly its values shows no drift, at any firmware
//! version; comparing it with an empty list or a list of other values does not panic.
#![no_main]

use std::collections::BTreeMap;

use edge_daemon::profile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&format, bytes)) = input.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let name = if format & 1 == 0 {
        "fuzz.param"
    } else {
        "fuzz.params"
    };
    let Ok(p) = profile::parse(name, text) else {
        return;
    };
    let held: BTreeMap<String, f64> = p.entries.iter().cloned().collect();
    for version in [None, Some((4, 5)), Some((4, 6)), Some((1, 15))] {
        let same = profile::compare(&p, &held, version);
        assert!(
            same.differences.is_empty(),
            "a vehicle holding the profile's values drifts: {:?}",
            same.differences
        );
        let _ = profile::compare(&p, &BTreeMap::new(), version);
    }
    let other: BTreeMap<String, f64> = p
        .entries
        .iter()
        .map(|(n, v)| (n.clone(), profile::tidy(v * 2.0 + 1.0)))
        .collect();
    let _ = profile::compare(&p, &other, None).drifted();
});
