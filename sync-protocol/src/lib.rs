//! The Trellis sync protocol, shared by the edge daemon and the cloud relay; depends on
//! neither. `PROTOCOL.md` gives the rules; this crate gives the messages, the hybrid logical
//! clock, and the telemetry batch codec.

pub mod codec;
pub mod enrollment;
pub mod hlc;
pub mod identity;
pub mod pki;
pub mod records;
pub mod transport;
pub mod wire;

/// Generated from `proto/trellis_sync.proto`.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/trellis.sync.v1.rs"));
}

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// ALPN identifier on the QUIC handshake.
pub const ALPN: &[u8] = b"trellis-sync/1";
