//! The MAVLink frame scanner (`edge-daemon/src/frame.rs`) over any bytes, in any chunking.
//!
//! Input: one control byte, then the bytes a link delivers. Control bit 7: datagram mode
//! (`end_datagram` after every chunk, as the UDP link does) or stream mode (serial, TCP);
//! bits 4..=6 pick the largest chunk, bits 0..=3 seed the chunk sizes.
//!
//! Invariants: every byte pushed is accounted for exactly once (in a frame, as a bad byte, as
//! a CRC error's marker, in a truncated datagram, or still pending); a drained scanner holds
//! less than one largest frame; every frame is one whole frame that parses back to itself,
//! checked by CRC when its id is in the dialect and otherwise (the unknown-id rule) with no
//! checkable frame starting inside it; its accessors, decoding and re-signing never panic.
#![no_main]

use edge_daemon::dialect;
use edge_daemon::frame::{extent, Extent, Frame, FrameScanner, Version};
use libfuzzer_sys::fuzz_target;

/// STX + v2 header + 255-byte payload + CRC + signature, less the STX: what may be pending.
const LARGEST_FRAME: usize = 10 + 255 + 2 + 13;

fuzz_target!(|input: &[u8]| {
    let Some((&control, data)) = input.split_first() else {
        return;
    };
    let datagrams = control & 0x80 != 0;
    let largest_chunk = [1usize, 2, 3, 7, 16, 64, 300, usize::MAX][usize::from(control >> 4) & 7];
    let mut rng = u32::from(control & 0x0F).wrapping_mul(0x9E37_79B9) | 1;

    let mut scanner = FrameScanner::new();
    let mut framed = 0usize;
    let mut truncated_bytes = 0usize;
    let mut truncations = 0u64;
    let mut rest = data;
    while !rest.is_empty() {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let n = (1 + rng as usize % largest_chunk.min(1 << 16)).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        scanner.push(chunk);
        while let Some(frame) = scanner.next_frame() {
            framed += frame.len();
            check_frame(&frame);
        }
        assert!(
            scanner.pending() < LARGEST_FRAME,
            "a drained scanner holds {} bytes",
            scanner.pending()
        );
        if datagrams {
            truncated_bytes += scanner.pending();
            truncations += u64::from(scanner.pending() > 0);
            scanner.end_datagram();
            assert_eq!(scanner.pending(), 0);
        }
    }
    let errors = scanner.take_errors();
    assert_eq!(errors.truncated, truncations);
    let accounted = framed as u64
        + errors.bad_bytes
        + errors.crc_errors
        + truncated_bytes as u64
        + scanner.pending() as u64;
    assert_eq!(
        accounted,
        data.len() as u64,
        "bytes in {} != framed {framed} + {errors:?} + truncated {truncated_bytes} + pending {}",
        data.len(),
        scanner.pending()
    );
});

fn check_frame(frame: &Frame) {
    let bytes = frame.as_bytes();
    assert_eq!(
        extent(bytes),
        Extent::Complete {
            len: bytes.len(),
            msgid: frame.message_id()
        }
    );
    assert_eq!(Frame::parse(bytes).as_ref(), Some(frame), "a frame parses back to itself");
    if dialect::extra_crc(frame.message_id()).is_none() {
        // The unknown-id rule: believed only when no checkable frame starts inside it.
        let mut inner = FrameScanner::new();
        inner.push(&bytes[1..]);
        while let Some(f) = inner.next_frame() {
            assert!(
                dialect::extra_crc(f.message_id()).is_none(),
                "an unknown-id frame swallowed a checkable one: {f:?} inside {frame:?}"
            );
        }
    }
    // Accessors and decoding, as the router, fleet and signing use them.
    let _ = (
        frame.version(),
        frame.sequence(),
        frame.system_id(),
        frame.component_id(),
        frame.payload(),
        frame.target(),
        frame.decode(),
        frame.signature_stamp(),
    );
    assert!(usize::from(bytes[1]) == frame.payload().len());
    let key = [7u8; 32];
    assert!(!frame.signature_matches(&key) || frame.is_signed());
    if let Some(signed) = frame.signed(&key, 1, 0x0000_1234_5678_9ABC) {
        assert_eq!(frame.version(), Version::V2);
        assert_eq!(Frame::parse(signed.as_bytes()).as_ref(), Some(&signed));
        assert!(signed.signature_matches(&key));
        assert_eq!(signed.signature_stamp(), Some((1, 0x0000_1234_5678_9ABC)));
        assert_eq!(signed.payload(), frame.payload());
    }
}
