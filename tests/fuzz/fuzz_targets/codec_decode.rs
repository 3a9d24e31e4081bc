//! The telemetry batch codec's decoder (`sync-protocol/src/codec.rs`) over any payload: a
//! relay decodes whatever a station's Batch carries.
//!
//! The relay's wire-order reading (`decode_grouped`) must agree with it. Each input is
//! decoded as it is, and again with a valid CRC-32 appended, so the fuzzer
//! reaches the version, row count, zstd and column checks behind the checksum. Whatever
//! decodes must be a batch the encoder takes back and that survives another round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sync_protocol::codec::{self, MAX_ROWS};

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    check(&sealed);
});

fn check(payload: &[u8]) {
    // The relay's reading (wire order, no sort) accepts nothing the sorted reading refuses,
    // and holds the same rows.
    let grouped = codec::decode_grouped(payload);
    let Ok(rows) = codec::decode(payload) else {
        assert!(grouped.is_err(), "decode_grouped took what decode refuses");
        return;
    };
    if let Ok(mut grouped) = grouped {
        assert!(grouped
            .windows(2)
            .all(|w| (w[0].vehicle, w[0].seq) < (w[1].vehicle, w[1].seq)));
        grouped.sort_by_key(|r| r.seq);
        assert_eq!(grouped, rows);
    }
    assert!(rows.len() <= MAX_ROWS);
    assert!(
        rows.windows(2).all(|w| w[0].seq < w[1].seq),
        "decoded rows are in strictly increasing sequence order"
    );
    let again = codec::encode(&rows, 1).expect("what decodes, encodes");
    assert_eq!(codec::decode(&again).expect("and decodes again"), rows);
}
