//! The framing on QUIC streams (`sync-protocol/src/wire.rs`): `read_message` over any bytes,
//! arriving in any chunking with reads that are not ready, as a relay reads a station's
//! control stream and data lanes (and a station the relay's).
//!
//! Input: one control byte (seeds chunk sizes and pending reads), then the stream.
//! Invariants: it never panics and never stalls on a stream that has ended; a clean end
//! (`Ok(None)`) comes only between messages; every message read is written back by
//! `write_message` to bytes that read back as the same message.
#![no_main]

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use sync_protocol::wire::{read_message, write_message};
use tokio::io::{AsyncRead, ReadBuf};

/// A stream that hands out its bytes in small pieces, and sometimes is not ready.
struct Chunked<'a> {
    data: &'a [u8],
    at: usize,
    rng: u32,
}

impl Chunked<'_> {
    fn next(&mut self) -> u32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        self.rng
    }
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = self.next();
        if r % 4 == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = (1 + (r >> 2) as usize % 97)
            .min(buf.remaining())
            .min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

/// Polls a future that must finish within `budget` polls: every poll of the reader either
/// moves a byte or is one of its few pending answers.
fn run<F: Future>(fut: F, budget: usize) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..budget {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("read_message did not finish within {budget} polls");
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, data)) = input.split_first() else {
        return;
    };
    let mut stream = Chunked {
        data,
        at: 0,
        rng: u32::from(control).wrapping_mul(0x9E37_79B9) | 1,
    };
    loop {
        let before = stream.at;
        let budget = 64 + 8 * (data.len() - before);
        match run(read_message(&mut stream), budget) {
            Ok(Some(message)) => {
                assert!(stream.at > before, "a message consumed no bytes");
                let mut bytes = Vec::new();
                run(write_message(&mut bytes, &message), 4).expect("what was read, writes");
                let mut again = bytes.as_slice();
                let back = run(read_message(&mut again), 4).expect("and reads back");
                assert_eq!(back.as_ref(), Some(&message));
                assert!(again.is_empty());
            }
            Ok(None) => {
                assert_eq!(stream.at, data.len(), "a clean end only at the end");
                assert_eq!(before, stream.at, "a clean end only between messages");
                return;
            }
            Err(_) => return,
        }
    }
});
