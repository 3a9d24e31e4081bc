//! The endpoint parser (`edge-daemon/src/link/endpoint.rs`): MAVProxy-style endpoints from
//! the command line and the config file.
//!
//! Invariants: any text parses or is an error, never a panic; an endpoint that parses prints
//! back to text that parses to the same endpoint (what `edge-daemon` logs and the API show is
//! what it opened).
#![no_main]

use edge_daemon::link::Endpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Endpoint>() {
        Ok(endpoint) => {
            let printed = endpoint.to_string();
            assert_eq!(
                printed.parse::<Endpoint>().as_ref(),
                Ok(&endpoint),
                "{text:?} printed as {printed:?}"
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
