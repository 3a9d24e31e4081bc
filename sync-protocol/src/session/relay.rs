//! The relay's half of a session.

use super::{unexpected, ProtocolError, Range};
use crate::proto::{envelope::Body, Ack, Acked, ChangeAck, Encoding, Envelope, Hello, Welcome};
use crate::records::FieldChange;
use crate::stream::Stream;

/// Which of the edge's unidirectional streams a message came on; the relay numbers them as
/// it accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneId(pub u64);

/// A Hello that reads as one, before the relay has looked up its marks.
#[derive(Debug)]
pub struct Greeting {
    hello: Hello,
}

/// Rows the relay had acknowledged to an edge and no longer holds, as that edge's Hello
/// reveals: recorded as lost so the loss is visible, never silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    pub stream: Stream,
    pub range: Range,
}

impl Greeting {
    /// Reads the first message of the control stream.
    pub fn read(message: Envelope) -> Result<Greeting, ProtocolError> {
        let Some(Body::Hello(hello)) = message.body else {
            return Err(unexpected("Hello", &message));
        };
        if hello.protocol_version == 0 {
            return Err(ProtocolError::Version(0));
        }
        let mut named = Vec::new();
        for state in &hello.streams {
            match Stream::parse(&state.stream) {
                Some(stream) if Stream::UPSTREAM.contains(&stream) => {
                    if named.contains(&stream) {
                        return Err(ProtocolError::Repeated { stream });
                    }
                    named.push(stream);
                }
                Some(stream) => {
                    return Err(ProtocolError::Misdirected {
                        stream,
                        how: "by the edge",
                    })
                }
                // A newer edge may hold streams this version does not know: it sends them
                // only where a Welcome names them, which this one will not.
                None => {}
            }
        }
        Ok(Greeting { hello })
    }

    /// The edge's software, for the logs.
    pub fn software(&self) -> &str {
        &self.hello.software
    }

    /// Answers with the relay's durable mark of each stream (`marks`, the downsync one
    /// being the edge's last acknowledged revision): the session, its Welcome, and the
    /// ranges the relay lost, to be recorded.
    pub fn welcome(
        self,
        software: &str,
        marks: impl Fn(Stream) -> u64,
    ) -> (RelaySession, Envelope, Vec<Lost>) {
        let mut lost = Vec::new();
        let inbound = Stream::UPSTREAM.map(|stream| {
            let acked = marks(stream);
            let believed = self
                .hello
                .streams
                .iter()
                .find(|s| Stream::parse(&s.stream) == Some(stream))
                .map_or(0, |s| s.believed_acked);
            if believed > acked {
                lost.push(Lost {
                    stream,
                    range: Range {
                        first: acked + 1,
                        last: believed,
                    },
                });
            }
            Inbound {
                stream,
                acked,
                expected: acked + 1,
                lane: None,
            }
        });
        let welcome = Envelope {
            body: Some(Body::Welcome(Welcome {
                protocol_version: self.hello.protocol_version.min(crate::PROTOCOL_VERSION),
                software: software.into(),
                acked: inbound
                    .iter()
                    .map(|i| Acked {
                        stream: i.stream.name().into(),
                        seq: i.acked,
                    })
                    .collect(),
                // Stamped by the I/O side as it sends (see `cloud-relay/src/server.rs`).
                relay_time_us: 0,
            })),
        };
        let downsync_acked = marks(Stream::Downsync);
        let session = RelaySession {
            inbound,
            downsync_sent: downsync_acked,
            downsync_acked,
        };
        (session, welcome, lost)
    }
}

/// What an edge sent on a lane, checked and ready to store.
#[derive(Debug)]
pub enum Incoming {
    /// Rows of `range` of a telemetry or events batch, `rows` of them, in the stream's
    /// encoding.
    Batch {
        stream: Stream,
        range: Range,
        rows: u32,
        payload: Vec<u8>,
    },
    /// One of the station's own record edits, numbered `seq` on its changes stream.
    Change { seq: u64, change: FieldChange },
}

#[derive(Debug)]
struct Inbound {
    stream: Stream,
    /// The mark in the newest acknowledgement sent (at first, the Welcome's).
    acked: u64,
    /// Where the next batch should start: anything before is a resend, anything after a gap.
    expected: u64,
    /// The lane this stream arrives on: one, so its batches keep their order.
    lane: Option<LaneId>,
}

/// The relay's half of one session, from Welcome to the connection's end.
#[derive(Debug)]
pub struct RelaySession {
    inbound: [Inbound; 3],
    /// The newest revision sent on downsync.
    downsync_sent: u64,
    /// The newest revision the edge acknowledged.
    downsync_acked: u64,
}

impl RelaySession {
    fn inbound(&mut self, stream: Stream) -> Result<&mut Inbound, ProtocolError> {
        self.inbound
            .iter_mut()
            .find(|i| i.stream == stream)
            .ok_or(ProtocolError::Misdirected {
                stream,
                how: "by the edge",
            })
    }

    /// Checks a message from one of the edge's lanes: what it is, that the lane may carry
    /// it, and that it comes in order. A batch may repeat rows the relay holds (a resend
    /// after a lost acknowledgement: the store keeps them once) but never skip any.
    pub fn receive(&mut self, lane: LaneId, message: Envelope) -> Result<Incoming, ProtocolError> {
        match message.body {
            Some(Body::Batch(batch)) => {
                let Some(stream) = Stream::parse(&batch.stream) else {
                    return Err(ProtocolError::UnknownStream(batch.stream));
                };
                let (expected, max_rows) = match stream {
                    Stream::Telemetry => {
                        (Encoding::TelemetryColumnarV1, crate::codec::MAX_ROWS as u64)
                    }
                    Stream::Events => (Encoding::EventsV1, u64::MAX),
                    Stream::Changes | Stream::Downsync => {
                        return Err(ProtocolError::Misdirected {
                            stream,
                            how: "in a Batch",
                        })
                    }
                };
                if batch.encoding != expected as i32 {
                    return Err(ProtocolError::Encoding {
                        stream,
                        expected: expected.as_str_name(),
                        got: batch.encoding,
                    });
                }
                let (first, last, rows) = (batch.first_seq, batch.last_seq, batch.rows);
                let span = last.checked_sub(first).map(|s| s.saturating_add(1));
                if first == 0 || span.is_none_or(|span| u64::from(rows) > span.min(max_rows)) {
                    return Err(ProtocolError::BadRange {
                        stream,
                        first,
                        last,
                        rows,
                    });
                }
                let inbound = self.inbound(stream)?;
                inbound.arrives_on(lane)?;
                if first > inbound.expected {
                    return Err(ProtocolError::Gap {
                        stream,
                        first,
                        expected: inbound.expected,
                    });
                }
                inbound.expected = inbound.expected.max(last.saturating_add(1));
                Ok(Incoming::Batch {
                    stream,
                    range: Range { first, last },
                    rows,
                    payload: batch.payload,
                })
            }
            Some(Body::Change(change)) => {
                let (seq, change) = FieldChange::from_proto(&change)?;
                let inbound = self.inbound(Stream::Changes)?;
                inbound.arrives_on(lane)?;
                // The edge sends only its own changes, so their numbers skip, but they grow.
                if seq < inbound.expected {
                    return Err(ProtocolError::ChangeOrder {
                        stream: Stream::Changes,
                        seq,
                        after: inbound.expected - 1,
                    });
                }
                inbound.expected = seq.saturating_add(1);
                Ok(Incoming::Change { seq, change })
            }
            _ => Err(unexpected("Batch or Change", &message)),
        }
    }

    /// The acknowledgement to send once the store has made `stream` durable through `acked`
    /// (for `changes`, merged the change numbered `acked`). The store's marks only grow; one
    /// that went back would acknowledge less than the edge was told, so it ends the session.
    pub fn stored(&mut self, stream: Stream, acked: u64) -> Result<Envelope, ProtocolError> {
        let inbound = self.inbound(stream)?;
        if acked < inbound.acked {
            return Err(ProtocolError::AckBackwards {
                stream,
                seq: acked,
                after: inbound.acked,
            });
        }
        inbound.acked = acked;
        let body = match stream {
            Stream::Changes => Body::ChangeAck(ChangeAck { seq: acked }),
            _ => Body::Ack(Ack {
                stream: stream.name().into(),
                seq: acked,
            }),
        };
        Ok(Envelope { body: Some(body) })
    }

    /// The revision after which downsync starts: the edge's last acknowledgement.
    pub fn downsync_acked(&self) -> u64 {
        self.downsync_acked
    }

    /// The newest revision sent on downsync.
    pub fn downsync_sent(&self) -> u64 {
        self.downsync_sent
    }

    /// The change of revision `rev` is going out on downsync.
    pub fn sending(&mut self, rev: u64) {
        self.downsync_sent = self.downsync_sent.max(rev);
    }

    /// Takes a message from the control stream after Welcome: the downsync revision the
    /// edge has merged and committed, to record as its cursor.
    pub fn control(&mut self, message: Envelope) -> Result<u64, ProtocolError> {
        let Some(Body::ChangeAck(ChangeAck { seq })) = message.body else {
            return Err(unexpected("ChangeAck", &message));
        };
        if seq < self.downsync_acked {
            return Err(ProtocolError::AckBackwards {
                stream: Stream::Downsync,
                seq,
                after: self.downsync_acked,
            });
        }
        if seq > self.downsync_sent {
            return Err(ProtocolError::AckBeyond {
                stream: Stream::Downsync,
                seq,
                newest: self.downsync_sent,
            });
        }
        self.downsync_acked = seq;
        Ok(seq)
    }
}

impl Inbound {
    fn arrives_on(&mut self, lane: LaneId) -> Result<(), ProtocolError> {
        match self.lane {
            None => {
                self.lane = Some(lane);
                Ok(())
            }
            Some(l) if l == lane => Ok(()),
            Some(_) => Err(ProtocolError::TwoLanes {
                stream: self.stream,
            }),
        }
    }
}
