//! The station's half of a session.

use std::collections::VecDeque;

use super::{unexpected, ProtocolError, Range};
use crate::proto::{envelope::Body, ChangeAck, Envelope, Hello, StreamState, Welcome};
use crate::records::FieldChange;
use crate::stream::Stream;

/// Unacknowledged telemetry batches in flight: enough to keep a long link busy while the
/// relay commits, few enough that a reconnect resends little.
pub const TELEMETRY_WINDOW: usize = 4;
/// Unacknowledged event batches in flight.
pub const EVENTS_WINDOW: usize = 8;

/// What the station holds of one stream when it says Hello.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Oldest sequence still in the outbox (older ones were acknowledged and let go);
    /// `newest + 1` when it holds none.
    pub oldest: u64,
    /// Newest sequence written, whether or not the outbox still holds it; 0 when none was.
    pub newest: u64,
    /// The relay's last acknowledgement this station recorded.
    pub believed_acked: u64,
}

/// How one stream resumes after Welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub stream: Stream,
    /// The relay's durable mark: the stream resumes right after it.
    pub acked: u64,
    /// Rows the relay had acknowledged and no longer holds (it was restored from an older
    /// backup, or lost its disk). This station resends those it still has.
    pub relay_lost: Option<Range>,
    /// Of those, the rows this station let go after the acknowledgement: gone everywhere.
    pub gone: Option<Range>,
    /// The relay holds more than this station ever wrote (its database was lost and made
    /// anew): its outbox must number on above `acked`, or new rows would reuse sequences the
    /// relay holds and be taken for resends.
    pub renumber: bool,
}

/// One upstream stream of a session.
#[derive(Debug)]
struct Upstream {
    stream: Stream,
    held: Held,
    /// The relay's latest word on its durable mark.
    acked: u64,
    /// Where the next batch starts.
    next: u64,
    /// The last sequence of each batch sent and not yet acknowledged, oldest first.
    in_flight: VecDeque<u64>,
    window: usize,
    /// The highest sequence sent in this session.
    sent_through: u64,
}

impl Upstream {
    /// The highest sequence the relay can truthfully acknowledge: what this station ever
    /// wrote (before this session or in it), or the mark the relay itself started from.
    fn newest(&self) -> u64 {
        self.held.newest.max(self.sent_through)
    }
}

/// The station's half of one session, from Hello to the connection's end.
#[derive(Debug)]
pub struct EdgeSession {
    upstream: [Upstream; 3],
    welcomed: bool,
    /// The newest record change received on downsync in this session.
    downsync_received: u64,
}

impl EdgeSession {
    /// A session for an outbox holding `held` of each upstream stream (a stream left out
    /// holds nothing).
    pub fn new(held: impl IntoIterator<Item = (Stream, Held)>) -> EdgeSession {
        let held: Vec<(Stream, Held)> = held.into_iter().collect();
        let upstream = Stream::UPSTREAM.map(|stream| {
            let held = held
                .iter()
                .find(|(s, _)| *s == stream)
                .map_or_else(Held::default, |(_, h)| *h);
            Upstream {
                stream,
                held,
                acked: 0,
                next: 1,
                in_flight: VecDeque::new(),
                window: match stream {
                    Stream::Telemetry => TELEMETRY_WINDOW,
                    Stream::Events => EVENTS_WINDOW,
                    // Changes go one by one, each acknowledged on its own; QUIC's flow
                    // control bounds them.
                    _ => usize::MAX,
                },
                sent_through: 0,
            }
        });
        EdgeSession {
            upstream,
            welcomed: false,
            downsync_received: 0,
        }
    }

    fn up(&self, stream: Stream) -> Option<&Upstream> {
        let i = Stream::UPSTREAM.iter().position(|s| *s == stream)?;
        Some(&self.upstream[i])
    }

    fn up_mut(&mut self, stream: Stream) -> Result<&mut Upstream, ProtocolError> {
        match Stream::UPSTREAM.iter().position(|s| *s == stream) {
            Some(i) => Ok(&mut self.upstream[i]),
            None => Err(ProtocolError::Misdirected {
                stream,
                how: "by the edge",
            }),
        }
    }

    /// The first message of the session, on the control stream.
    pub fn hello(&self, software: &str) -> Envelope {
        Envelope {
            body: Some(Body::Hello(Hello {
                protocol_version: crate::PROTOCOL_VERSION,
                software: software.into(),
                streams: self
                    .upstream
                    .iter()
                    .map(|u| StreamState {
                        stream: u.stream.name().into(),
                        oldest_held: u.held.oldest,
                        newest: u.held.newest,
                        believed_acked: u.held.believed_acked,
                    })
                    .collect(),
            })),
        }
    }

    /// Takes the relay's Welcome: where each upstream stream resumes, and what the station
    /// must do about marks that disagree with its own.
    pub fn welcome(&mut self, message: Envelope) -> Result<Vec<Resume>, ProtocolError> {
        let Some(Body::Welcome(Welcome {
            protocol_version,
            acked,
            ..
        })) = message.body
        else {
            return Err(unexpected("Welcome", &message));
        };
        if self.welcomed {
            return Err(ProtocolError::Unexpected {
                expected: "acknowledgements",
                got: "a second Welcome".into(),
            });
        }
        if protocol_version == 0 || protocol_version > crate::PROTOCOL_VERSION {
            return Err(ProtocolError::Version(protocol_version));
        }
        let mut marks: Vec<(Stream, u64)> = Vec::new();
        for a in &acked {
            // A newer relay may name streams this version does not know: they are not ours.
            let Some(stream) = Stream::parse(&a.stream) else {
                continue;
            };
            if marks.iter().any(|(s, _)| *s == stream) {
                return Err(ProtocolError::Repeated { stream });
            }
            marks.push((stream, a.seq));
        }
        self.welcomed = true;
        let mut resumes = Vec::with_capacity(3);
        for u in &mut self.upstream {
            let acked = marks
                .iter()
                .find(|(s, _)| *s == u.stream)
                .map_or(0, |(_, seq)| *seq);
            let believed = u.held.believed_acked;
            let (relay_lost, gone) = if acked < believed {
                let resend_from = u.held.oldest.max(acked + 1);
                let lost = Range {
                    first: acked + 1,
                    last: believed,
                };
                // Only what the relay had acknowledged: rows after it that this station no
                // longer holds were let go for another reason (a full disk), not this one.
                let gone_last = (resend_from - 1).min(believed);
                let gone = (gone_last > acked).then(|| Range {
                    first: acked + 1,
                    last: gone_last,
                });
                (Some(lost), gone)
            } else {
                (None, None)
            };
            u.acked = acked;
            u.next = acked + 1;
            resumes.push(Resume {
                stream: u.stream,
                acked,
                relay_lost,
                gone,
                renumber: acked > u.held.newest,
            });
        }
        Ok(resumes)
    }

    /// The relay's latest word on `stream`'s durable mark.
    pub fn acked(&self, stream: Stream) -> u64 {
        self.up(stream).map_or(0, |u| u.acked)
    }

    /// Where the next batch of `stream` starts, when rows through `committed` are in the
    /// outbox and some of them have not been taken yet.
    pub fn next(&self, stream: Stream, committed: u64) -> Option<u64> {
        let u = self.up(stream)?;
        (self.welcomed && committed >= u.next).then_some(u.next)
    }

    /// Takes the next batch of `stream`, read from the outbox from [`Self::next`] on at a
    /// moment when rows through `committed` were durable: `last_read` is the last sequence
    /// the read returned, `full` whether it stopped at its limit. A full read ends the batch
    /// at its last row; a short one reaches `committed`, since every row up to it that the
    /// read did not return is not in the outbox (let go, or never written) and never will be.
    pub fn take(
        &mut self,
        stream: Stream,
        committed: u64,
        last_read: Option<u64>,
        full: bool,
    ) -> Result<Range, ProtocolError> {
        let u = self.up_mut(stream)?;
        let first = u.next;
        let last = match last_read {
            Some(last) if full => last,
            Some(last) => last.max(committed),
            None => committed,
        };
        let last = last.max(first);
        u.next = last + 1;
        Ok(Range { first, last })
    }

    /// Whether another batch of `stream` may go out before an acknowledgement.
    pub fn window_open(&self, stream: Stream) -> bool {
        self.up(stream)
            .is_some_and(|u| u.in_flight.len() < u.window)
    }

    /// A batch (or, on `changes`, one change: `first == last`) has gone out.
    pub fn sent(&mut self, stream: Stream, range: Range) -> Result<(), ProtocolError> {
        let u = self.up_mut(stream)?;
        if u.window != usize::MAX {
            u.in_flight.push_back(range.last);
        }
        u.sent_through = u.sent_through.max(range.last);
        Ok(())
    }

    /// Takes a message from the control stream: the acknowledgement it carries, once it is
    /// one this session may believe. Only then may the station move its cursor.
    pub fn control(&mut self, message: Envelope) -> Result<(Stream, u64), ProtocolError> {
        let (stream, seq) = match &message.body {
            Some(Body::Ack(a)) => match Stream::parse(&a.stream) {
                Some(s @ (Stream::Telemetry | Stream::Events)) => (s, a.seq),
                Some(stream) => {
                    return Err(ProtocolError::Misdirected {
                        stream,
                        how: "in a batch Ack",
                    })
                }
                None => return Err(ProtocolError::UnknownStream(a.stream.clone())),
            },
            Some(Body::ChangeAck(a)) => (Stream::Changes, a.seq),
            _ => return Err(unexpected("Ack or ChangeAck", &message)),
        };
        if !self.welcomed {
            return Err(unexpected("Welcome", &message));
        }
        let u = self.up_mut(stream)?;
        if seq < u.acked {
            return Err(ProtocolError::AckBackwards {
                stream,
                seq,
                after: u.acked,
            });
        }
        // The relay may acknowledge past this session's batches (another of its instances
        // committed an earlier session's batch late), never past what this station wrote.
        if seq > u.newest().max(u.acked) {
            return Err(ProtocolError::AckBeyond {
                stream,
                seq,
                newest: u.newest(),
            });
        }
        u.acked = seq;
        while u.in_flight.front().is_some_and(|&last| last <= seq) {
            u.in_flight.pop_front();
        }
        Ok((stream, seq))
    }

    /// Takes a message from the downsync stream: a record change of the org to merge.
    pub fn downsync(&mut self, message: Envelope) -> Result<(u64, FieldChange), ProtocolError> {
        let Some(Body::Change(change)) = &message.body else {
            return Err(unexpected("Change", &message));
        };
        let (rev, change) = FieldChange::from_proto(change)?;
        if rev <= self.downsync_received {
            return Err(ProtocolError::ChangeOrder {
                stream: Stream::Downsync,
                seq: rev,
                after: self.downsync_received,
            });
        }
        self.downsync_received = rev;
        Ok((rev, change))
    }

    /// The acknowledgement of a downsync change this station has merged and committed.
    pub fn merged(&self, rev: u64) -> Envelope {
        Envelope {
            body: Some(Body::ChangeAck(ChangeAck { seq: rev })),
        }
    }
}
