//! Both halves of a session against each other, with no socket: first each rule on its own,
//! then a simulated station, relay and network run through random schedules that write,
//! send, store and acknowledge in any order QUIC allows, resend after lost
//! acknowledgements, cut the connection at every point, and lose either end's disk. Every
//! row the station wrote must be stored once, exactly, unless it was lost at both ends, and
//! then both ends must say so.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;

use super::*;
use crate::proto::{Ack, Acked, Batch, Change, ChangeAck, Encoding, Hlc, StreamState, Welcome};

fn held(newest: u64, believed: u64) -> [(Stream, Held); 1] {
    [(
        Stream::Telemetry,
        Held {
            oldest: 1,
            newest,
            believed_acked: believed,
        },
    )]
}

fn welcome(marks: &[(Stream, u64)]) -> Envelope {
    Envelope {
        body: Some(Body::Welcome(Welcome {
            protocol_version: 1,
            software: "test relay".into(),
            acked: marks
                .iter()
                .map(|(s, seq)| Acked {
                    stream: s.name().into(),
                    seq: *seq,
                })
                .collect(),
            relay_time_us: 0,
        })),
    }
}

fn ack(stream: Stream, seq: u64) -> Envelope {
    Envelope {
        body: Some(Body::Ack(Ack {
            stream: stream.name().into(),
            seq,
        })),
    }
}

fn batch(stream: Stream, first: u64, last: u64, rows: u32) -> Envelope {
    let encoding = match stream {
        Stream::Events => Encoding::EventsV1,
        _ => Encoding::TelemetryColumnarV1,
    };
    Envelope {
        body: Some(Body::Batch(Batch {
            stream: stream.name().into(),
            first_seq: first,
            last_seq: last,
            rows,
            encoding: encoding as i32,
            payload: Vec::new(),
        })),
    }
}

fn change(seq: u64) -> Envelope {
    Envelope {
        body: Some(Body::Change(Change {
            seq,
            table: "fields".into(),
            key: "block-a".into(),
            field: "name".into(),
            value: b"\"Block A\"".to_vec(),
            hlc: Some(Hlc {
                wall_us: 1,
                logical: 0,
                node: 7,
            }),
        })),
    }
}

fn relay_session(marks: &[(Stream, u64)]) -> RelaySession {
    let hello = EdgeSession::new([]).hello("test edge");
    let greeting = Greeting::read(hello).unwrap();
    let (session, _, _) = greeting.welcome("test relay", |s| {
        marks
            .iter()
            .find(|(m, _)| *m == s)
            .map_or(0, |(_, seq)| *seq)
    });
    session
}

// --- The station's half. ---

#[test]
fn hello_says_what_the_outbox_holds() {
    let edge = EdgeSession::new(held(900, 800));
    let Some(Body::Hello(hello)) = edge.hello("edge-daemon test").body else {
        panic!("not a Hello");
    };
    assert_eq!(hello.protocol_version, crate::PROTOCOL_VERSION);
    assert_eq!(hello.streams.len(), 3, "every upstream stream, held or not");
    assert_eq!(
        hello.streams[0],
        StreamState {
            stream: "telemetry".into(),
            oldest_held: 1,
            newest: 900,
            believed_acked: 800,
        }
    );
}

#[test]
fn nothing_is_taken_before_welcome() {
    let edge = EdgeSession::new(held(900, 0));
    assert_eq!(edge.next(Stream::Telemetry, 900), None);
    let mut edge = edge;
    assert!(matches!(
        edge.control(ack(Stream::Telemetry, 1)),
        Err(ProtocolError::Unexpected { .. })
    ));
}

#[test]
fn resuming_right_after_the_relays_mark() {
    let mut edge = EdgeSession::new(held(900, 800));
    let resumes = edge.welcome(welcome(&[(Stream::Telemetry, 800)])).unwrap();
    assert_eq!(
        resumes[0],
        Resume {
            stream: Stream::Telemetry,
            acked: 800,
            relay_lost: None,
            gone: None,
            renumber: false,
        }
    );
    assert_eq!(edge.next(Stream::Telemetry, 900), Some(801));
    assert_eq!(edge.next(Stream::Telemetry, 800), None, "nothing new");
}

#[test]
fn a_relay_that_lost_rows_gets_back_those_still_held() {
    let mut edge = EdgeSession::new([(
        Stream::Telemetry,
        Held {
            oldest: 500,
            newest: 900,
            believed_acked: 800,
        },
    )]);
    let r = edge.welcome(welcome(&[(Stream::Telemetry, 300)])).unwrap()[0];
    assert_eq!(r.acked, 300);
    assert_eq!(
        r.relay_lost,
        Some(Range {
            first: 301,
            last: 800
        })
    );
    assert_eq!(
        r.gone,
        Some(Range {
            first: 301,
            last: 499
        }),
        "let go here after the relay's acknowledgement"
    );
    assert_eq!(edge.next(Stream::Telemetry, 900), Some(301));

    // An outbox emptied further (a full disk let go of unacknowledged rows too): what is
    // gone because the relay lost it stops at what the relay had acknowledged.
    let mut edge = EdgeSession::new([(
        Stream::Telemetry,
        Held {
            oldest: 901,
            newest: 900,
            believed_acked: 800,
        },
    )]);
    let r = edge.welcome(welcome(&[(Stream::Telemetry, 300)])).unwrap()[0];
    assert_eq!(
        r.gone,
        Some(Range {
            first: 301,
            last: 800
        })
    );
}

#[test]
fn a_station_that_lost_its_disk_numbers_on_above_the_relay() {
    let mut edge = EdgeSession::new(held(20, 0));
    let r = edge
        .welcome(welcome(&[(Stream::Telemetry, 5_000)]))
        .unwrap()[0];
    assert!(r.renumber);
    assert_eq!(r.relay_lost, None);
}

#[test]
fn a_welcome_must_be_one_and_speak_a_known_version() {
    let mut edge = EdgeSession::new([]);
    let mut future = welcome(&[]);
    if let Some(Body::Welcome(w)) = &mut future.body {
        w.protocol_version = crate::PROTOCOL_VERSION + 1;
    }
    assert!(matches!(
        edge.welcome(future),
        Err(ProtocolError::Version(_))
    ));
    assert!(matches!(
        edge.welcome(ack(Stream::Telemetry, 1)),
        Err(ProtocolError::Unexpected { .. })
    ));
    let twice = welcome(&[(Stream::Events, 1), (Stream::Events, 2)]);
    assert!(matches!(
        edge.welcome(twice),
        Err(ProtocolError::Repeated { .. })
    ));
    let mut unknown = welcome(&[(Stream::Events, 1)]);
    if let Some(Body::Welcome(w)) = &mut unknown.body {
        w.acked.push(Acked {
            stream: "video".into(),
            seq: 9,
        });
    }
    edge.welcome(unknown)
        .expect("a newer relay's stream is ignored");
    assert!(edge.welcome(welcome(&[])).is_err(), "a second Welcome");
}

#[test]
fn a_full_read_ends_the_batch_at_its_last_row_a_short_one_at_the_mark() {
    let mut edge = EdgeSession::new(held(100, 0));
    edge.welcome(welcome(&[])).unwrap();
    let t = Stream::Telemetry;
    let full = edge.take(t, 100, Some(40), true).unwrap();
    assert_eq!(full, Range { first: 1, last: 40 });
    // Rows 41..=100 were let go or never written, except these.
    let short = edge.take(t, 100, Some(70), false).unwrap();
    assert_eq!(
        short,
        Range {
            first: 41,
            last: 100
        }
    );
    let empty = edge.take(t, 130, None, false).unwrap();
    assert_eq!(
        empty,
        Range {
            first: 101,
            last: 130
        }
    );
    assert_eq!(edge.next(t, 130), None);
}

#[test]
fn the_window_closes_when_full_and_opens_with_acknowledgements() {
    let mut edge = EdgeSession::new(held(1_000, 0));
    edge.welcome(welcome(&[])).unwrap();
    let t = Stream::Telemetry;
    for i in 0..edge::TELEMETRY_WINDOW as u64 {
        assert!(edge.window_open(t));
        let r = edge.take(t, 1_000, Some(i * 10 + 10), true).unwrap();
        edge.sent(t, r).unwrap();
    }
    assert!(!edge.window_open(t), "{} in flight", edge::TELEMETRY_WINDOW);
    assert_eq!(edge.control(ack(t, 10)).unwrap(), (t, 10));
    assert!(edge.window_open(t));
    assert_eq!(edge.acked(t), 10);
}

#[test]
fn acknowledgements_only_grow_and_never_pass_what_was_written() {
    let mut edge = EdgeSession::new(held(100, 0));
    edge.welcome(welcome(&[(Stream::Telemetry, 10)])).unwrap();
    let t = Stream::Telemetry;
    let r = edge.take(t, 100, Some(100), false).unwrap();
    edge.sent(t, r).unwrap();
    edge.control(ack(t, 50)).unwrap();
    edge.control(ack(t, 50))
        .expect("the same mark again: a resend's");
    assert_eq!(
        edge.control(ack(t, 40)),
        Err(ProtocolError::AckBackwards {
            stream: t,
            seq: 40,
            after: 50
        })
    );
    assert_eq!(
        edge.control(ack(t, 101)),
        Err(ProtocolError::AckBeyond {
            stream: t,
            seq: 101,
            newest: 100
        })
    );
    assert!(matches!(
        edge.control(ack(Stream::Changes, 1)),
        Err(ProtocolError::Misdirected { .. })
    ));
    assert!(matches!(
        edge.control(ack(Stream::Downsync, 1)),
        Err(ProtocolError::Misdirected { .. })
    ));
    let mut unknown = ack(t, 1);
    if let Some(Body::Ack(a)) = &mut unknown.body {
        a.stream = "video".into();
    }
    assert!(matches!(
        edge.control(unknown),
        Err(ProtocolError::UnknownStream(_))
    ));
}

#[test]
fn own_changes_are_acknowledged_one_by_one() {
    let mut edge = EdgeSession::new([(
        Stream::Changes,
        Held {
            oldest: 1,
            newest: 9,
            believed_acked: 0,
        },
    )]);
    edge.welcome(welcome(&[])).unwrap();
    let c = Stream::Changes;
    // Of changes 1..=9, this station made 3 and 7; the others came from elsewhere.
    let r = edge.take(c, 9, Some(7), false).unwrap();
    assert_eq!(r, Range { first: 1, last: 9 });
    for seq in [3, 7] {
        edge.sent(
            c,
            Range {
                first: seq,
                last: seq,
            },
        )
        .unwrap();
    }
    assert!(edge.window_open(c), "changes are not windowed");
    let change_ack = |seq| Envelope {
        body: Some(Body::ChangeAck(ChangeAck { seq })),
    };
    assert_eq!(edge.control(change_ack(3)).unwrap(), (c, 3));
    assert_eq!(edge.control(change_ack(7)).unwrap(), (c, 7));
    assert!(edge.control(change_ack(12)).is_err(), "never written");
}

#[test]
fn downsync_comes_in_order_and_is_acknowledged_by_revision() {
    let mut edge = EdgeSession::new([]);
    edge.welcome(welcome(&[])).unwrap();
    let (rev, c) = edge.downsync(change(4)).unwrap();
    assert_eq!((rev, c.key.as_str()), (4, "block-a"));
    assert!(matches!(
        edge.downsync(change(4)),
        Err(ProtocolError::ChangeOrder { .. })
    ));
    assert!(matches!(
        edge.downsync(ack(Stream::Telemetry, 1)),
        Err(ProtocolError::Unexpected { .. })
    ));
    let mut bad = change(5);
    if let Some(Body::Change(c)) = &mut bad.body {
        c.table = "passwords".into();
    }
    assert!(matches!(edge.downsync(bad), Err(ProtocolError::Record(_))));
    assert_eq!(
        edge.merged(4),
        Envelope {
            body: Some(Body::ChangeAck(ChangeAck { seq: 4 }))
        }
    );
}

// --- The relay's half. ---

#[test]
fn a_hello_must_be_one_and_name_only_upstream_streams() {
    assert!(Greeting::read(ack(Stream::Telemetry, 1)).is_err());
    let mut hello = EdgeSession::new([]).hello("edge");
    if let Some(Body::Hello(h)) = &mut hello.body {
        h.streams.push(h.streams[0].clone());
    }
    assert!(matches!(
        Greeting::read(hello),
        Err(ProtocolError::Repeated { .. })
    ));
    let mut hello = EdgeSession::new([]).hello("edge");
    if let Some(Body::Hello(h)) = &mut hello.body {
        h.streams[0].stream = "downsync".into();
    }
    assert!(matches!(
        Greeting::read(hello),
        Err(ProtocolError::Misdirected { .. })
    ));
    let mut hello = EdgeSession::new([]).hello("edge");
    if let Some(Body::Hello(h)) = &mut hello.body {
        h.streams[0].stream = "video".into();
    }
    Greeting::read(hello).expect("a newer edge's stream is passed over");
    let mut hello = EdgeSession::new([]).hello("edge");
    if let Some(Body::Hello(h)) = &mut hello.body {
        h.protocol_version = 0;
    }
    assert_eq!(
        Greeting::read(hello).unwrap_err(),
        ProtocolError::Version(0)
    );
}

#[test]
fn welcome_gives_the_marks_and_names_what_the_relay_lost() {
    let hello = EdgeSession::new(held(900, 800)).hello("edge");
    let greeting = Greeting::read(hello).unwrap();
    assert_eq!(greeting.software(), "edge");
    let (session, welcome, lost) = greeting.welcome("relay", |s| match s {
        Stream::Telemetry => 300,
        Stream::Downsync => 12,
        _ => 0,
    });
    assert_eq!(
        lost,
        vec![Lost {
            stream: Stream::Telemetry,
            range: Range {
                first: 301,
                last: 800
            }
        }]
    );
    let Some(Body::Welcome(w)) = welcome.body else {
        panic!("not a Welcome");
    };
    assert_eq!(w.acked[0].seq, 300);
    assert_eq!(w.acked.len(), 3, "upstream streams only");
    assert_eq!(session.downsync_acked(), 12);
}

#[test]
fn a_batch_must_be_of_its_streams_encoding_and_fit_its_range() {
    let mut relay = relay_session(&[]);
    let lane = LaneId(1);
    let mut wrong = batch(Stream::Telemetry, 1, 10, 10);
    if let Some(Body::Batch(b)) = &mut wrong.body {
        b.encoding = Encoding::EventsV1 as i32;
    }
    assert!(matches!(
        relay.receive(lane, wrong),
        Err(ProtocolError::Encoding { .. })
    ));
    for (first, last, rows) in [(10, 9, 0), (1, 10, 11), (0, 5, 1)] {
        assert!(
            matches!(
                relay.receive(lane, batch(Stream::Telemetry, first, last, rows)),
                Err(ProtocolError::BadRange { .. })
            ),
            "{first}..={last} with {rows} rows"
        );
    }
    let too_many = crate::codec::MAX_ROWS as u32 + 1;
    assert!(relay
        .receive(lane, batch(Stream::Telemetry, 1, u64::MAX, too_many))
        .is_err());
    for stream in ["changes", "downsync"] {
        let mut b = batch(Stream::Telemetry, 1, 1, 1);
        if let Some(Body::Batch(b)) = &mut b.body {
            b.stream = stream.into();
        }
        assert!(matches!(
            relay.receive(lane, b),
            Err(ProtocolError::Misdirected { .. })
        ));
    }
    assert!(matches!(
        relay.receive(lane, ack(Stream::Telemetry, 1)),
        Err(ProtocolError::Unexpected { .. })
    ));
    // None of that moved anything: a good first batch is taken.
    assert!(relay
        .receive(lane, batch(Stream::Telemetry, 1, 10, 7))
        .is_ok());
}

#[test]
fn batches_may_repeat_but_never_skip() {
    let mut relay = relay_session(&[(Stream::Telemetry, 100)]);
    let (lane, t) = (LaneId(1), Stream::Telemetry);
    relay.receive(lane, batch(t, 90, 120, 31)).expect("overlap");
    relay.receive(lane, batch(t, 121, 130, 10)).expect("next");
    relay.receive(lane, batch(t, 121, 130, 10)).expect("repeat");
    assert_eq!(
        relay.receive(lane, batch(t, 140, 150, 11)).unwrap_err(),
        ProtocolError::Gap {
            stream: t,
            first: 140,
            expected: 131
        }
    );
}

#[test]
fn a_stream_keeps_to_one_lane() {
    let mut relay = relay_session(&[]);
    relay
        .receive(LaneId(1), batch(Stream::Events, 1, 2, 2))
        .unwrap();
    relay
        .receive(LaneId(2), batch(Stream::Telemetry, 1, 2, 2))
        .expect("another stream, another lane");
    assert_eq!(
        relay
            .receive(LaneId(2), batch(Stream::Events, 3, 4, 2))
            .unwrap_err(),
        ProtocolError::TwoLanes {
            stream: Stream::Events
        }
    );
}

#[test]
fn changes_grow_and_are_acknowledged_each() {
    let mut relay = relay_session(&[(Stream::Changes, 4)]);
    let lane = LaneId(1);
    let Incoming::Change { seq, .. } = relay.receive(lane, change(7)).unwrap() else {
        panic!("not a change");
    };
    assert_eq!(seq, 7);
    assert!(matches!(
        relay.receive(lane, change(7)),
        Err(ProtocolError::ChangeOrder { .. })
    ));
    assert_eq!(
        relay.stored(Stream::Changes, 7).unwrap(),
        Envelope {
            body: Some(Body::ChangeAck(ChangeAck { seq: 7 }))
        }
    );
    let mut relay = relay_session(&[(Stream::Changes, 4)]);
    assert!(
        relay.receive(lane, change(3)).is_err(),
        "below the Welcome's mark"
    );
}

#[test]
fn acknowledgements_leave_in_order() {
    let mut relay = relay_session(&[(Stream::Events, 5)]);
    assert_eq!(
        relay.stored(Stream::Events, 9).unwrap(),
        ack(Stream::Events, 9)
    );
    assert_eq!(
        relay.stored(Stream::Events, 9).unwrap(),
        ack(Stream::Events, 9),
        "a resend's"
    );
    assert!(matches!(
        relay.stored(Stream::Events, 8),
        Err(ProtocolError::AckBackwards { .. })
    ));
}

#[test]
fn downsync_acknowledgements_fall_between_the_mark_and_what_was_sent() {
    let mut relay = relay_session(&[(Stream::Downsync, 10)]);
    let change_ack = |seq| Envelope {
        body: Some(Body::ChangeAck(ChangeAck { seq })),
    };
    assert!(matches!(
        relay.control(change_ack(11)),
        Err(ProtocolError::AckBeyond { .. })
    ));
    relay.sending(14);
    assert_eq!(relay.downsync_sent(), 14);
    assert_eq!(relay.control(change_ack(12)).unwrap(), 12);
    assert!(matches!(
        relay.control(change_ack(11)),
        Err(ProtocolError::AckBackwards { .. })
    ));
    assert!(relay.control(ack(Stream::Telemetry, 1)).is_err());
}

// --- Both halves over a simulated network. ---

/// The streams the simulation writes; lane `i` carries `STREAMS[i]`.
const STREAMS: [Stream; 2] = [Stream::Telemetry, Stream::Events];
/// Rows per batch, small so that schedules make many.
const BATCH_ROWS: usize = 5;

#[derive(Debug, Clone)]
enum Step {
    /// The station commits rows of a stream.
    Write(usize, u8),
    /// The station lets go of rows the relay acknowledged (quota pressure).
    LetGo,
    /// The station sends a batch of a stream, if its window allows.
    Send(usize),
    /// The relay reads the next message of a lane.
    Receive(usize),
    /// The relay's store commits the oldest batch read on a lane and acknowledges it.
    Commit(usize),
    /// The station reads the next acknowledgement.
    Acknowledged,
    /// The last batch of a lane arrives again.
    Repeat(usize),
    /// The connection ends; batches the relay had read may still commit.
    Cut { commit_read: bool },
    /// The relay is restored from a backup older by this many rows of each stream.
    RelayRestored(u8),
    /// The station's database is lost and made anew.
    StationDiskLost,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..2usize, 1..12u8).prop_map(|(s, n)| Step::Write(s, n)),
        1 => Just(Step::LetGo),
        8 => (0..2usize).prop_map(Step::Send),
        8 => (0..2usize).prop_map(Step::Receive),
        8 => (0..2usize).prop_map(Step::Commit),
        8 => Just(Step::Acknowledged),
        1 => (0..2usize).prop_map(Step::Repeat),
        2 => any::<bool>().prop_map(|commit_read| Step::Cut { commit_read }),
        1 => (1..20u8).prop_map(Step::RelayRestored),
        1 => Just(Step::StationDiskLost),
    ]
}

/// A row's identity, which no renumbering changes: what "stored once" counts.
type RowId = u64;

/// A station's outbox (sequence → row) and its cursors.
#[derive(Debug, Default)]
struct Station {
    rows: [BTreeMap<u64, RowId>; 2],
    newest: [u64; 2],
    cursor: [u64; 2],
}

/// A relay's store: the durable mark, and the rows held by sequence.
#[derive(Debug, Default)]
struct Store {
    marks: [u64; 2],
    held: [BTreeMap<u64, RowId>; 2],
    /// How many times each row it holds was stored.
    stored: [BTreeMap<RowId, u32>; 2],
}

#[derive(Debug)]
struct Connection {
    edge: EdgeSession,
    relay: RelaySession,
    lanes: [VecDeque<Envelope>; 2],
    read: [VecDeque<Incoming>; 2],
    acks: VecDeque<Envelope>,
    last_sent: [Option<Envelope>; 2],
}

#[derive(Debug, Default)]
struct World {
    station: Station,
    store: Store,
    connection: Option<Connection>,
    next_id: RowId,
    /// Every row the station wrote.
    written: [BTreeSet<RowId>; 2],
    /// Rows lost at both ends, which no session can bring back.
    gone: [BTreeSet<RowId>; 2],
    /// Sequences of rows lost to a relay restore after the station let them go.
    gone_seqs: [BTreeSet<u64>; 2],
    /// What the station reported as gone on resuming.
    reported_gone: [Vec<Range>; 2],
}

/// A batch's payload: (sequence, row) pairs, little-endian.
fn payload(rows: &BTreeMap<u64, RowId>, range: Range) -> (u32, Vec<u8>) {
    let pairs: Vec<(u64, RowId)> = rows
        .range(range.first..=range.last)
        .map(|(s, id)| (*s, *id))
        .collect();
    let bytes = pairs
        .iter()
        .flat_map(|(s, id)| s.to_le_bytes().into_iter().chain(id.to_le_bytes()))
        .collect();
    (pairs.len() as u32, bytes)
}

fn rows_of(payload: &[u8]) -> impl Iterator<Item = (u64, RowId)> + '_ {
    payload.chunks(16).map(|pair| {
        let (seq, id) = pair.split_at(8);
        (
            u64::from_le_bytes(seq.try_into().unwrap()),
            u64::from_le_bytes(id.try_into().unwrap()),
        )
    })
}

impl World {
    fn index(stream: Stream) -> usize {
        STREAMS.iter().position(|s| *s == stream).unwrap()
    }

    /// Hello and Welcome, and what the station does about the marks.
    fn connect(&mut self) {
        let station = &mut self.station;
        let held = STREAMS.map(|s| {
            let i = Self::index(s);
            let h = Held {
                oldest: station.rows[i]
                    .keys()
                    .next()
                    .map_or(station.newest[i] + 1, |s| *s),
                newest: station.newest[i],
                believed_acked: station.cursor[i],
            };
            (s, h)
        });
        let mut edge = EdgeSession::new(held);
        let greeting = Greeting::read(edge.hello("station")).unwrap();
        let marks = self.store.marks;
        let (relay, welcome, lost) = greeting.welcome("relay", |s| match s {
            Stream::Telemetry | Stream::Events => marks[Self::index(s)],
            _ => 0,
        });
        let resumes = edge.welcome(welcome).unwrap();
        for r in resumes.iter().filter(|r| STREAMS.contains(&r.stream)) {
            let i = Self::index(r.stream);
            let relay_said = lost.iter().find(|l| l.stream == r.stream).map(|l| l.range);
            assert_eq!(r.relay_lost, relay_said, "both ends see the same loss");
            if let Some(gone) = r.gone {
                self.reported_gone[i].push(gone);
            }
            if r.relay_lost.is_some() {
                // What the relay lost must not be let go before it is resent.
                station.cursor[i] = r.acked;
            }
            station.cursor[i] = station.cursor[i].max(r.acked);
            if r.renumber {
                let above = r.acked;
                station.rows[i] = station.rows[i]
                    .iter()
                    .map(|(s, id)| (s + above, *id))
                    .collect();
                station.newest[i] += above;
            }
        }
        self.connection = Some(Connection {
            edge,
            relay,
            lanes: Default::default(),
            read: Default::default(),
            acks: VecDeque::new(),
            last_sent: Default::default(),
        });
    }

    /// The store applies a batch as the relay's stores do: by [`admit`], in one
    /// transaction with its mark.
    fn commit(store: &mut Store, i: usize, incoming: &Incoming) -> u64 {
        let Incoming::Batch { range, payload, .. } = incoming else {
            unreachable!("the simulation sends batches only");
        };
        let mark = store.marks[i];
        match admit(mark, range.first, range.last) {
            Admission::Held => mark,
            Admission::Gap => panic!("a gap reached the store: {range:?} over {mark}"),
            Admission::Store => {
                for (seq, id) in rows_of(payload).filter(|(seq, _)| *seq > mark) {
                    store.held[i].insert(seq, id);
                    *store.stored[i].entry(id).or_default() += 1;
                }
                store.marks[i] = range.last;
                range.last
            }
        }
    }

    fn run(&mut self, step: &Step) {
        if self.connection.is_none()
            && !matches!(step, Step::Write(..) | Step::LetGo | Step::StationDiskLost)
        {
            self.connect();
        }
        let (station, store) = (&mut self.station, &mut self.store);
        match *step {
            Step::Write(i, n) => {
                for _ in 0..n {
                    station.newest[i] += 1;
                    self.next_id += 1;
                    station.rows[i].insert(station.newest[i], self.next_id);
                    self.written[i].insert(self.next_id);
                }
            }
            Step::LetGo => {
                for i in 0..2 {
                    let cursor = station.cursor[i];
                    let kept = station.rows[i].split_off(&(cursor + 1));
                    for (seq, id) in std::mem::replace(&mut station.rows[i], kept) {
                        if store.held[i].get(&seq) != Some(&id) {
                            self.gone[i].insert(id);
                        }
                    }
                }
            }
            Step::Send(i) => {
                let c = self.connection.as_mut().unwrap();
                let stream = STREAMS[i];
                let committed = station.newest[i];
                let Some(first) = c.edge.next(stream, committed) else {
                    return;
                };
                if !c.edge.window_open(stream) {
                    return;
                }
                let read: Vec<u64> = station.rows[i]
                    .range(first..)
                    .take(BATCH_ROWS)
                    .map(|(s, _)| *s)
                    .collect();
                let full = read.len() == BATCH_ROWS;
                let range = c
                    .edge
                    .take(stream, committed, read.last().copied(), full)
                    .unwrap();
                let (rows, bytes) = payload(&station.rows[i], range);
                let mut message = batch(stream, range.first, range.last, rows);
                if let Some(Body::Batch(b)) = &mut message.body {
                    b.payload = bytes;
                }
                c.edge.sent(stream, range).unwrap();
                c.last_sent[i] = Some(message.clone());
                c.lanes[i].push_back(message);
            }
            Step::Repeat(i) => {
                let c = self.connection.as_mut().unwrap();
                if let Some(m) = c.last_sent[i].clone() {
                    c.lanes[i].push_back(m);
                }
            }
            Step::Receive(i) => {
                let c = self.connection.as_mut().unwrap();
                let Some(message) = c.lanes[i].pop_front() else {
                    return;
                };
                let incoming = c
                    .relay
                    .receive(LaneId(i as u64), message)
                    .expect("an honest station's batches are taken");
                c.read[i].push_back(incoming);
            }
            Step::Commit(i) => {
                let c = self.connection.as_mut().unwrap();
                let Some(incoming) = c.read[i].pop_front() else {
                    return;
                };
                let mark = Self::commit(store, i, &incoming);
                c.acks.push_back(c.relay.stored(STREAMS[i], mark).unwrap());
            }
            Step::Acknowledged => {
                let c = self.connection.as_mut().unwrap();
                let Some(ack) = c.acks.pop_front() else {
                    return;
                };
                let (stream, seq) = c.edge.control(ack).expect("an honest relay's ack");
                let i = Self::index(stream);
                assert!(
                    seq <= store.marks[i],
                    "{stream} acknowledged through {seq}, durable through {}",
                    store.marks[i]
                );
                station.cursor[i] = station.cursor[i].max(seq);
            }
            Step::Cut { commit_read } => {
                if let Some(mut c) = self.connection.take() {
                    if commit_read {
                        for i in 0..2 {
                            for incoming in c.read[i].drain(..) {
                                Self::commit(store, i, &incoming);
                            }
                        }
                    }
                }
            }
            Step::RelayRestored(n) => {
                self.connection = None;
                for i in 0..2 {
                    let mark = store.marks[i].saturating_sub(u64::from(n));
                    store.marks[i] = mark;
                    for (seq, id) in store.held[i].split_off(&(mark + 1)) {
                        // The restored store never held it: storing it again is no repeat.
                        store.stored[i].remove(&id);
                        if station.rows[i].get(&seq) != Some(&id) {
                            self.gone[i].insert(id);
                            // A station that knows it let them go says so.
                            if seq <= station.cursor[i] {
                                self.gone_seqs[i].insert(seq);
                            }
                        }
                    }
                }
            }
            Step::StationDiskLost => {
                self.connection = None;
                for i in 0..2 {
                    for (seq, id) in &station.rows[i] {
                        if store.held[i].get(seq) != Some(id) {
                            self.gone[i].insert(*id);
                        }
                    }
                }
                *station = Station::default();
                // Nor can it say what it had let go.
                for i in 0..2 {
                    self.gone_seqs[i].clear();
                }
                // The station meets the relay before it writes again. (A station that wrote
                // past the relay's mark first could not tell its new rows from resends: the
                // protocol has no outbox identity yet; see PROTOCOL.md.)
                self.connect();
            }
        }
        self.check();
    }

    fn check(&self) {
        for (stream, stored) in STREAMS.iter().zip(&self.store.stored) {
            for (id, n) in stored {
                assert_eq!(*n, 1, "{stream} row {id} stored {n} times");
            }
        }
    }

    /// Runs sessions until everything written is stored or gone.
    fn drain(&mut self) {
        self.connection = None;
        for _ in 0..10_000 {
            let idle = self.connection.as_ref().is_some_and(|c| {
                STREAMS.iter().enumerate().all(|(i, s)| {
                    c.edge.next(*s, self.station.newest[i]).is_none()
                        && c.lanes[i].is_empty()
                        && c.read[i].is_empty()
                }) && c.acks.is_empty()
            });
            if idle {
                return;
            }
            for step in [
                Step::Send(0),
                Step::Send(1),
                Step::Receive(0),
                Step::Receive(1),
                Step::Commit(0),
                Step::Commit(1),
                Step::Acknowledged,
                Step::Acknowledged,
            ] {
                self.run(&step);
            }
        }
        panic!("the session never drained: {self:?}");
    }

    /// Every row written is held once, unless it was lost at both ends; the station's
    /// cursor is the relay's mark; and every sequence lost at both ends to a relay restore
    /// was reported gone by the station.
    fn exactly_once(&self) {
        for (i, stream) in STREAMS.iter().enumerate() {
            let held: BTreeSet<RowId> = self.store.held[i].values().copied().collect();
            assert_eq!(held.len(), self.store.held[i].len(), "a row held twice");
            let expected: BTreeSet<RowId> =
                self.written[i].difference(&self.gone[i]).copied().collect();
            assert_eq!(
                held, expected,
                "{stream}: held rows differ from those written (gone: {:?})",
                self.gone[i]
            );
            assert_eq!(self.store.marks[i], self.station.newest[i], "{stream}");
            assert_eq!(
                self.station.cursor[i], self.store.marks[i],
                "cursor at the mark"
            );
            let reported: BTreeSet<u64> = self.reported_gone[i]
                .iter()
                .flat_map(|r| r.first..=r.last)
                .collect();
            assert!(
                self.gone_seqs[i].is_subset(&reported),
                "{stream}: lost {:?}, reported {reported:?}",
                self.gone_seqs[i]
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_row_is_stored_exactly_once_whatever_the_schedule(
        steps in prop::collection::vec(step(), 0..200)
    ) {
        let mut world = World::default();
        for s in &steps {
            world.run(s);
        }
        world.drain();
        world.exactly_once();
    }
}

/// A fixed day of traffic, cut at every one of its steps, with and without the relay
/// committing what it had read: each resumes and stores every row once.
#[test]
fn a_session_resumes_from_a_cut_at_every_point() {
    let mut day = Vec::new();
    for round in 0..6u8 {
        day.extend([
            Step::Write(0, 7 + round),
            Step::Write(1, 2),
            Step::Send(0),
            Step::Send(1),
            Step::Send(0),
            Step::Receive(1),
            Step::Receive(0),
            Step::Commit(0),
            Step::Commit(1),
            Step::Acknowledged,
            Step::Receive(0),
            Step::Acknowledged,
            Step::Commit(0),
            Step::LetGo,
            Step::Acknowledged,
        ]);
    }
    for at in 0..=day.len() {
        for commit_read in [false, true] {
            let mut world = World::default();
            for (n, s) in day.iter().enumerate() {
                if n == at {
                    world.run(&Step::Cut { commit_read });
                }
                world.run(s);
            }
            world.drain();
            world.exactly_once();
            assert!(
                world.gone.iter().all(BTreeSet::is_empty),
                "nothing lost, cut at {at}"
            );
            assert_eq!(
                world.store.held[0].len(),
                world.written[0].len(),
                "cut at {at}"
            );
        }
    }
}

#[test]
fn rows_lost_at_both_ends_are_reported_gone() {
    let mut world = World::default();
    for s in [
        Step::Write(0, 10),
        Step::Send(0),
        Step::Send(0),
        Step::Receive(0),
        Step::Receive(0),
        Step::Commit(0),
        Step::Commit(0),
        Step::Acknowledged,
        Step::Acknowledged,
        Step::LetGo,
        Step::RelayRestored(7),
    ] {
        world.run(&s);
    }
    assert_eq!(world.gone_seqs[0], (4..=10).collect());
    world.drain();
    world.exactly_once();
}
