//! The sync session's two halves (`sync-protocol/src/session/`) fed whatever a hostile or
//! broken peer might send, in any order.
//!
//! Input: a stream of messages, each one control byte and then a length-delimited
//! `Envelope`. The control byte's low two bits say where the message goes: 0, a data lane of
//! the relay's session (bits 2–3: which of four lanes); 1, the relay's control stream; 2,
//! the station's control stream; 3, the station's downsync stream. Bit 4 first lets the
//! relay send downsync up to a revision, bit 5 first lets the station send a batch. Both
//! sessions start from a Hello and Welcome with marks taken from the first eight bytes.
//!
//! Invariants: nothing panics; whatever the relay accepts on a stream never skips past what
//! it accepted before (a repeat is allowed, a gap never); record changes it accepts grow;
//! acknowledgements the station believes only grow and never pass what it wrote; downsync
//! revisions the station accepts grow; downsync acknowledgements the relay accepts stay
//! between its mark and what it sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sync_protocol::proto::Envelope;
use sync_protocol::session::{EdgeSession, Greeting, Held, Incoming, LaneId};
use sync_protocol::stream::Stream;

fuzz_target!(|input: &[u8]| {
    let Some((marks, mut rest)) = input.split_first_chunk::<8>() else {
        return;
    };
    let mark = |i: usize| u64::from(u16::from_le_bytes([marks[2 * i], marks[2 * i + 1]]));
    let held = Stream::UPSTREAM.map(|s| {
        let newest = mark(0) + 1_000;
        (
            s,
            Held {
                oldest: 1,
                newest,
                believed_acked: mark(1),
            },
        )
    });
    let mut edge = EdgeSession::new(held);
    let greeting = Greeting::read(edge.hello("fuzz")).expect("our own Hello reads");
    let (mut relay, welcome, _) = greeting.welcome("fuzz", |s| match s {
        Stream::Downsync => mark(3),
        _ => mark(2),
    });
    edge.welcome(welcome).expect("our own Welcome reads");

    // What each side has accepted so far.
    let mut expected = [mark(2) + 1; 3];
    let mut change_after = mark(2);
    let mut believed = [mark(2); 3];
    let mut written = [mark(0) + 1_000; 3];
    let mut downsync_rev = 0;
    let mut downsync_acked = mark(3);

    while let Some((&control, after)) = rest.split_first() {
        let Ok(message) = Envelope::decode_length_delimited(after) else {
            return;
        };
        rest = &after[message.encoded_len() + prost::length_delimiter_len(message.encoded_len())..];
        if control & 0x10 != 0 {
            relay.sending(downsync_acked + u64::from(control >> 6));
        }
        if control & 0x20 != 0 {
            let t = Stream::Telemetry;
            if let Some(first) = edge.next(t, written[0] + 50) {
                let range = edge.take(t, written[0] + 50, None, false).expect("upstream");
                assert_eq!(range.first, first);
                written[0] = written[0].max(range.last);
                edge.sent(t, range).expect("upstream");
            }
        }
        match control & 3 {
            0 => {
                let lane = LaneId(u64::from(control >> 2 & 3));
                match relay.receive(lane, message) {
                    Ok(Incoming::Batch { stream, range, .. }) => {
                        let i = index(stream);
                        assert!(range.first <= expected[i], "{stream}: {range:?} skips");
                        assert!(range.first <= range.last);
                        expected[i] = expected[i].max(range.last + 1);
                    }
                    Ok(Incoming::Change { seq, .. }) => {
                        assert!(seq > change_after, "change {seq} after {change_after}");
                        change_after = seq;
                    }
                    Err(_) => {}
                }
            }
            1 => {
                let sent = relay.downsync_sent();
                if let Ok(rev) = relay.control(message) {
                    assert!(rev >= downsync_acked && rev <= sent, "{rev}");
                    downsync_acked = rev;
                }
            }
            2 => {
                if let Ok((stream, seq)) = edge.control(message) {
                    let i = index(stream);
                    assert!(seq >= believed[i], "{stream}: {seq} after {}", believed[i]);
                    assert!(seq <= written[i].max(mark(2)), "{stream}: {seq} never written");
                    believed[i] = seq;
                }
            }
            _ => {
                if let Ok((rev, _)) = edge.downsync(message) {
                    assert!(rev > downsync_rev);
                    downsync_rev = rev;
                    let _ = edge.merged(rev);
                }
            }
        }
    }
});

fn index(stream: Stream) -> usize {
    Stream::UPSTREAM
        .iter()
        .position(|s| *s == stream)
        .expect("only upstream streams are accepted")
}
