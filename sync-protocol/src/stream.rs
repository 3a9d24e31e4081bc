//! The streams of the sync protocol. Each has its own sequence numbers and its own durable
//! mark; on the wire (`Batch.stream`, `Ack.stream`, `StreamState.stream`) a stream is named
//! by [`Stream::name`], and nowhere else by a string.

/// One stream of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// Samples, edge → relay, in bulk behind everything else.
    Telemetry,
    /// Alerts, state changes, identity, acknowledgements, edge → relay, sent first.
    Events,
    /// The station's own edits to editable records, edge → relay.
    Changes,
    /// The org's record changes, relay → edge; the edge acknowledges each after its commit.
    Downsync,
}

impl Stream {
    /// The streams an edge sends, in the order Hello lists them.
    pub const UPSTREAM: [Stream; 3] = [Stream::Telemetry, Stream::Events, Stream::Changes];

    /// The stream's name on the wire and in both ends' cursor tables.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Telemetry => "telemetry",
            Stream::Events => "events",
            Stream::Changes => "changes",
            Stream::Downsync => "downsync",
        }
    }

    /// The stream a wire name names; `None` for a name this version does not know.
    pub fn parse(name: &str) -> Option<Stream> {
        [
            Stream::Telemetry,
            Stream::Events,
            Stream::Changes,
            Stream::Downsync,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_is_named_once_and_read_back() {
        for s in [
            Stream::Telemetry,
            Stream::Events,
            Stream::Changes,
            Stream::Downsync,
        ] {
            assert_eq!(Stream::parse(s.name()), Some(s));
        }
        assert_eq!(Stream::parse("Telemetry"), None, "names are exact");
        assert_eq!(Stream::parse(""), None);
    }
}
