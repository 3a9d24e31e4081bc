//! The Trellis sync protocol, shared by the edge daemon and the cloud relay; depends on
//! neither. `PROTOCOL.md` gives the rules; this crate gives the messages, the session both
//! ends drive, the hybrid logical clock, the telemetry sample and its batch codec.

pub mod codec;
pub mod enrollment;
pub mod hlc;
pub mod identity;
pub mod pki;
pub mod records;
pub mod session;
pub mod stream;
pub mod telemetry;
pub mod transport;
pub mod wire;

/// Generated from `proto/trellis_sync.proto`.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/trellis.sync.v1.rs"));

    /// An event kind as the APIs name it (`alert`, `state`, `identity`); an unknown number
    /// is `unspecified`.
    pub fn event_kind_name(kind: i32) -> String {
        event::Kind::try_from(kind)
            .unwrap_or(event::Kind::Unspecified)
            .as_str_name()
            .to_ascii_lowercase()
    }

    /// A severity as the APIs name it (`info`, `warning`, `critical`, …).
    pub fn severity_name(severity: i32) -> String {
        event::Severity::try_from(severity)
            .unwrap_or(event::Severity::Unspecified)
            .as_str_name()
            .to_ascii_lowercase()
    }
}

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// ALPN identifier on the QUIC handshake.
pub const ALPN: &[u8] = b"trellis-sync/1";
