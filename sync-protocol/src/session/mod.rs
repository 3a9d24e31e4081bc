//! The sync session without its I/O: what each end says, accepts and remembers, as plain
//! state machines that both daemons drive and the tests run without a socket.
//!
//! [`EdgeSession`] is the station's half: its Hello, how it resumes each stream from the
//! relay's Welcome, where the next batch starts and how far it reaches, the window of
//! unacknowledged batches, and which acknowledgements it may believe. [`RelaySession`] is
//! the relay's half: the Welcome and the ranges a relay lost, what a lane may carry, the
//! order in which batches arrive and acknowledgements leave, and the downsync it has sent.
//! [`admit`] is the one rule by which a store takes a batch. Neither half reads a socket,
//! a clock or a database: the daemons do that and hand over what they read, in the order
//! they read it, and each half answers with what to send or refuses with a
//! [`ProtocolError`], which closes the connection.
//!
//! The rules are `PROTOCOL.md`'s; the tests in `tests.rs` run both halves against each other
//! over a simulated network that reorders what QUIC may reorder, duplicates what a
//! reconnect resends, loses acknowledgements, and cuts the connection at every point.

mod edge;
mod relay;
#[cfg(test)]
mod tests;

pub use edge::{EdgeSession, Held, Resume};
pub use relay::{Greeting, Incoming, LaneId, Lost, RelaySession};

use crate::proto::{envelope::Body, Envelope};
use crate::records::RecordError;
use crate::stream::Stream;

/// Rows `first..=last` of one stream (a batch may hold fewer: rows the edge no longer has, or
/// never wrote, are absent from its range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub first: u64,
    pub last: u64,
}

/// The QUIC streams of a session, and their priorities (higher is sent first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Bidirectional, edge-opened: Hello/Welcome, then acknowledgements both ways.
    Control,
    /// Edge-opened: event batches and the station's own record edits, sent as committed.
    Events,
    /// Edge-opened: telemetry history, behind everything else.
    Bulk,
    /// Relay-opened: the org's record changes.
    Downsync,
}

impl Lane {
    pub fn priority(self) -> i32 {
        match self {
            Lane::Control => 20,
            Lane::Events => 10,
            Lane::Downsync => 1,
            Lane::Bulk => 0,
        }
    }
}

/// How a store takes a batch `first..=last` of a stream whose durable mark is `acked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Everything in it is held already: acknowledge `acked` again, store nothing.
    Held,
    /// Store its rows above `acked` (all of them when it starts right after), then the mark
    /// is `last`.
    Store,
    /// It starts past `acked + 1`: storing it would leave rows missing below it.
    Gap,
}

/// The rule every store applies to a batch, inside the transaction that holds the mark.
/// Applying the same batch twice stores it once; a batch overlapping the mark adds only its
/// newer rows; the mark moves only over contiguous ranges.
pub fn admit(acked: u64, first: u64, last: u64) -> Admission {
    if last <= acked {
        Admission::Held
    } else if first > acked + 1 {
        Admission::Gap
    } else {
        Admission::Store
    }
}

/// A peer broke the protocol: the session ends, the connection closes, nothing of it is
/// stored past what was already acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error("protocol version {0} is not spoken here")]
    Version(u32),
    #[error("unknown stream {0:?}")]
    UnknownStream(String),
    #[error("{stream} cannot be sent {how}")]
    Misdirected { stream: Stream, how: &'static str },
    #[error("{stream} is named twice in one message")]
    Repeated { stream: Stream },
    #[error("{stream} batches are encoded as {expected}, not encoding {got}")]
    Encoding {
        stream: Stream,
        expected: &'static str,
        got: i32,
    },
    #[error("{stream} batch {first}..={last} cannot hold {rows} rows")]
    BadRange {
        stream: Stream,
        first: u64,
        last: u64,
        rows: u32,
    },
    #[error("{stream} batch starts at {first}, but the next expected is {expected}: a gap")]
    Gap {
        stream: Stream,
        first: u64,
        expected: u64,
    },
    #[error("{stream} arrives on two lanes, so its order would be lost")]
    TwoLanes { stream: Stream },
    #[error("{stream} change {seq} after {after}: changes come in order")]
    ChangeOrder {
        stream: Stream,
        seq: u64,
        after: u64,
    },
    #[error("acknowledgement of {stream} {seq} after {after}: acknowledgements only grow")]
    AckBackwards {
        stream: Stream,
        seq: u64,
        after: u64,
    },
    #[error("acknowledgement of {stream} {seq}, but only {newest} was ever sent")]
    AckBeyond {
        stream: Stream,
        seq: u64,
        newest: u64,
    },
    #[error("record change: {0}")]
    Record(#[from] RecordError),
}

/// What a message is, for errors ("Hello", "Batch", …).
fn kind(message: &Envelope) -> String {
    match &message.body {
        None => "an empty message".into(),
        Some(Body::Hello(_)) => "Hello".into(),
        Some(Body::Welcome(_)) => "Welcome".into(),
        Some(Body::Batch(b)) => format!("a Batch of {:?}", b.stream),
        Some(Body::Ack(a)) => format!("an Ack of {:?}", a.stream),
        Some(Body::Change(_)) => "a Change".into(),
        Some(Body::ChangeAck(_)) => "a ChangeAck".into(),
        Some(Body::Error(_)) => "an Error".into(),
    }
}

fn unexpected(expected: &'static str, got: &Envelope) -> ProtocolError {
    ProtocolError::Unexpected {
        expected,
        got: kind(got),
    }
}

#[cfg(test)]
mod admit_tests {
    use super::*;

    #[test]
    fn a_batch_is_held_stored_or_a_gap() {
        assert_eq!(admit(10, 1, 10), Admission::Held, "all held");
        assert_eq!(admit(10, 11, 20), Admission::Store, "right after the mark");
        assert_eq!(
            admit(10, 5, 20),
            Admission::Store,
            "overlapping: the rows above"
        );
        assert_eq!(admit(10, 12, 20), Admission::Gap, "11 would be missing");
        assert_eq!(admit(0, 1, 1), Admission::Store, "the first row");
    }
}
