//! Every protobuf message a relay decodes from a station, and the relay's own checks of it.
//!
//! Input: one selector byte, then the message bytes:
//! - 0: an `Envelope` (the control stream's Hello and ChangeAck, a data lane's Batch and
//!   Change; what `wire::read_message` decodes), then what the relay does with its body
//!   without a store: a Batch's payload decoded by its encoding (telemetry through the codec,
//!   events as an `EventList`) and counted against `rows`, a Change checked by
//!   `FieldChange::from_proto` and merged into a `Replica`;
//! - 1: a `Live` datagram, turned into a `State` and observed by a `LiveView` as the session
//!   does;
//! - 2: an `EventList` (an events Batch's payload), with the names the APIs give its kinds;
//! - 3: a DER certificate, read for its `trellis://` identity as the relay does once TLS has
//!   verified it.
//!
//! Invariants: nothing panics; every message decoded re-encodes to bytes that decode to the
//! same message; a change the relay accepts survives `to_proto`/`from_proto`.
#![no_main]

use cloud_relay::live::{LiveView, Sighting, State};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sync_protocol::codec;
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::proto::{self, envelope::Body, Encoding, Envelope, EventList, Live};
use sync_protocol::records::{FieldChange, Replica};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Ok(envelope) = Envelope::decode(bytes) {
                round_trip(&envelope);
                envelope_body(envelope.body);
            }
        }
        1 => {
            if let Ok(live) = Live::decode(bytes) {
                round_trip(&live);
                live_datagram(&live);
            }
        }
        2 => {
            if let Ok(events) = EventList::decode(bytes) {
                round_trip(&events);
                event_names(&events);
            }
        }
        _ => {
            if let Ok(identity) = EdgeIdentity::from_certificate(bytes) {
                assert_eq!(EdgeIdentity::from_uri(&identity.uri()).ok(), Some(identity));
            }
        }
    }
});

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
    let bytes = message.encode_to_vec();
    assert_eq!(bytes.len(), message.encoded_len());
    assert_eq!(&M::decode(bytes.as_slice()).expect("re-encoded decodes"), message);
}

fn envelope_body(body: Option<Body>) {
    match body {
        Some(Body::Hello(hello)) => {
            let _ = hello.protocol_version.min(sync_protocol::PROTOCOL_VERSION);
            let _ = hello.streams.iter().find(|s| s.stream == "telemetry");
        }
        Some(Body::Batch(batch)) => match (batch.stream.as_str(), batch.encoding()) {
            ("telemetry", Encoding::TelemetryColumnarV1) => {
                if let Ok(rows) = codec::decode(&batch.payload) {
                    let _ = rows.len() != batch.rows as usize;
                    let view = LiveView::default();
                    for r in rows.iter().rev() {
                        observe(&view, r.vehicle, State::from_row(r));
                    }
                }
            }
            ("events", Encoding::EventsV1) => {
                if let Ok(events) = EventList::decode(batch.payload.as_slice()) {
                    let _ = events.events.len() != batch.rows as usize;
                    event_names(&events);
                }
            }
            _ => {}
        },
        Some(Body::Change(change)) => {
            if let Ok((seq, accepted)) = FieldChange::from_proto(&change) {
                assert_eq!(seq, change.seq);
                let again = FieldChange::from_proto(&accepted.to_proto(seq));
                assert_eq!(again, Ok((seq, accepted.clone())));
                let mut replica = Replica::default();
                assert!(replica.apply(&accepted));
                assert!(!replica.apply(&accepted), "applying a change twice changes nothing");
            }
        }
        _ => {}
    }
}

fn live_datagram(live: &Live) {
    let view = LiveView::default();
    let state = State::from_live(live);
    observe(&view, live.vehicle, state.clone());
    // The same report again is not newer, and changes nothing.
    observe(&view, live.vehicle, state);
}

fn observe(view: &LiveView, sysid: u32, state: State) {
    let sighting = Sighting {
        org: "org".into(),
        edge: "edge".into(),
        sysid,
    };
    view.observe(sighting.clone(), state.clone());
    let known = view.state(&sighting).expect("a sighting observed is known");
    assert!(known.t_us >= state.t_us);
}

fn event_names(events: &EventList) {
    for e in &events.events {
        let _ = proto::event_kind_name(e.kind);
        let _ = proto::severity_name(e.severity);
    }
}
