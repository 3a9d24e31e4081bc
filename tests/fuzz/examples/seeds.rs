//! Writes the seed corpus of the targets whose inputs the product's own encoders make: codec
//! batches, protobuf messages and their framing, certificates, endpoints, config files and
//! parameter profiles. (`seeds/mavlink.py` writes the MAVLink ones with pymavlink.)
//!
//! ```text
//! cargo run --manifest-path tests/fuzz/Cargo.toml --example seeds
//! ```

use std::path::{Path, PathBuf};

use prost::Message;
use sync_protocol::codec::{self, TelemetryRow};
use sync_protocol::identity::EdgeIdentity;
use sync_protocol::pki::Ca;
use sync_protocol::proto::{
    self, envelope::Body, Ack, Acked, Batch, Change, ChangeAck, Encoding, Envelope, Event,
    EventList, Hello, Hlc, Live, StreamState, VehicleIdentity, Welcome,
};

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(corpus(target).join(name), bytes).expect("seed written");
}

fn repo(path: &str) -> String {
    let at = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&at).unwrap_or_else(|e| panic!("{}: {e}", at.display()))
}

/// Smooth flight from `vehicles` vehicles, interleaved as the outbox holds it.
fn flight(rows: usize, vehicles: u32) -> Vec<TelemetryRow> {
    (0..rows)
        .map(|i| {
            let v = i as u32 % vehicles;
            let step = (i as u32 / vehicles) as i32;
            TelemetryRow {
                seq: 1_000 + i as u64,
                vehicle: v + 1,
                t_us: 1_790_000_000_000_000 + i64::from(step) * 100_000,
                time_source: 1,
                lat_e7: 382_919_000 + step * 54 + v as i32 * 10_000,
                lon_e7: -1_224_580_000 + step * 3,
                alt_mm: 78_000,
                rel_alt_mm: 30_000,
                vx: 600,
                vy: 30,
                vz: -5,
                heading_cdeg: 9_000,
                battery_mv: 24_000 - step as u16,
                battery_ca: 1_800,
                battery_pct: 90,
                gps_fix: 3,
                satellites: 16,
                custom_mode: 3,
                armed: true,
                mission_seq: (step / 10) as u16,
            }
        })
        .collect()
}

fn events() -> EventList {
    EventList {
        events: vec![
            Event {
                seq: 7,
                t_us: 1_790_000_000_000_000,
                vehicle: 1,
                kind: proto::event::Kind::Identity as i32,
                code: "identity".into(),
                severity: proto::event::Severity::Info as i32,
                message: "V-01 is ArduCopter".into(),
                identity: Some(VehicleIdentity {
                    name: "V-01".into(),
                    uid: "0011223344556677".into(),
                    autopilot: 3,
                    mav_type: 2,
                }),
                ..Default::default()
            },
            Event {
                seq: 8,
                t_us: 1_790_000_000_100_000,
                vehicle: 1,
                kind: proto::event::Kind::Alert as i32,
                code: "low_battery".into(),
                severity: proto::event::Severity::Warning as i32,
                message: "V-01 battery 18 %".into(),
                ..Default::default()
            },
            Event {
                seq: 9,
                t_us: 1_790_000_000_200_000,
                vehicle: 1,
                kind: proto::event::Kind::Ack as i32,
                code: "ack".into(),
                acknowledgement: Some(proto::Acknowledgement {
                    alert_seq: 8,
                    by: "crew-phone-2".into(),
                }),
                ..Default::default()
            },
            Event {
                seq: 10,
                t_us: 1_790_000_000_300_000,
                vehicle: 1,
                kind: proto::event::Kind::Command as i32,
                code: "command".into(),
                command: Some(proto::CommandOutcome {
                    id: 3,
                    command: "arm".into(),
                    outcome: "accepted".into(),
                    result: Some(0),
                    by: "pilot".into(),
                }),
                ..Default::default()
            },
        ],
    }
}

fn envelopes() -> Vec<(&'static str, Envelope)> {
    let telemetry = flight(40, 3);
    let payload = codec::encode(&telemetry, 3).expect("encodes");
    let events = events();
    let body = |b| Envelope { body: Some(b) };
    vec![
        (
            "hello",
            body(Body::Hello(Hello {
                protocol_version: 1,
                software: "edge-daemon 0.1.0".into(),
                streams: ["telemetry", "events", "changes"]
                    .iter()
                    .map(|s| StreamState {
                        stream: (*s).into(),
                        oldest_held: 1,
                        newest: 1_000,
                        believed_acked: 900,
                    })
                    .collect(),
            })),
        ),
        (
            "welcome",
            body(Body::Welcome(Welcome {
                protocol_version: 1,
                software: "cloud-relay 0.1.0".into(),
                acked: vec![Acked {
                    stream: "telemetry".into(),
                    seq: 900,
                }],
            })),
        ),
        (
            "batch_telemetry",
            body(Body::Batch(Batch {
                stream: "telemetry".into(),
                first_seq: telemetry[0].seq,
                last_seq: telemetry[telemetry.len() - 1].seq,
                rows: telemetry.len() as u32,
                encoding: Encoding::TelemetryColumnarV1 as i32,
                payload,
            })),
        ),
        (
            "batch_events",
            body(Body::Batch(Batch {
                stream: "events".into(),
                first_seq: 7,
                last_seq: 10,
                rows: events.events.len() as u32,
                encoding: Encoding::EventsV1 as i32,
                payload: events.encode_to_vec(),
            })),
        ),
        (
            "ack",
            body(Body::Ack(Ack {
                stream: "telemetry".into(),
                seq: 1_039,
            })),
        ),
        (
            "change",
            body(Body::Change(Change {
                seq: 4,
                table: "fields".into(),
                key: "block-7".into(),
                field: "polygon".into(),
                value: br#"[[38.29,-122.45],[38.30,-122.45],[38.30,-122.44]]"#.to_vec(),
                hlc: Some(Hlc {
                    wall_us: 1_790_000_000_000_000,
                    logical: 2,
                    node: 0x1234_5678,
                }),
            })),
        ),
        ("change_ack", body(Body::ChangeAck(ChangeAck { seq: 4 }))),
        (
            "error",
            body(Body::Error(proto::Error {
                code: proto::error::Code::Protocol as i32,
                message: "protocol error".into(),
            })),
        ),
    ]
}

fn main() {
    // codec_decode: real batches, as the edge's sync client makes them.
    write("codec_decode", "empty", &codec::encode(&[], 3).unwrap());
    write("codec_decode", "one_row", &codec::encode(&flight(1, 1), 3).unwrap());
    write("codec_decode", "flight_3x40", &codec::encode(&flight(40, 3), 3).unwrap());
    write("codec_decode", "flight_20x50_l6", &codec::encode(&flight(1_000, 20), 6).unwrap());
    let mut extreme = flight(3, 3);
    extreme[1] = TelemetryRow {
        seq: u64::MAX - 5,
        vehicle: u32::MAX,
        t_us: i64::MIN,
        lat_e7: i32::MIN,
        lon_e7: i32::MAX,
        ..extreme[1]
    };
    extreme[2].seq = u64::MAX;
    write("codec_decode", "extremes", &codec::encode(&extreme, 1).unwrap());

    // codec_roundtrip: `arbitrary` reads any bytes as a batch; a few lengths of noise.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for len in [16usize, 96, 400, 1_500] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        write("codec_roundtrip", &format!("noise_{len}"), &bytes);
    }

    // wire_framing (control byte, then a stream) and relay_messages (selector, message).
    let mut stream = Vec::new();
    for (name, envelope) in envelopes() {
        let mut framed = vec![0x35];
        envelope.encode_length_delimited(&mut framed).unwrap();
        write("wire_framing", name, &framed);
        envelope.encode_length_delimited(&mut stream).unwrap();
        let mut message = vec![0];
        envelope.encode(&mut message).unwrap();
        write("relay_messages", &format!("envelope_{name}"), &message);
    }
    write("wire_framing", "session", &[&[0x07][..], &stream].concat());
    // session: marks, then each envelope at each of the four doors.
    let mut session = vec![0x10, 0x00, 0x08, 0x00, 0x04, 0x00, 0x02, 0x00];
    for (i, (_, envelope)) in envelopes().into_iter().enumerate() {
        for door in 0..4u8 {
            session.push(door | (i as u8 & 3) << 2 | 0x30);
            envelope.encode_length_delimited(&mut session).unwrap();
        }
    }
    write("session", "every_message_at_every_door", &session);
    let live = Live {
        vehicle: 1,
        t_us: 1_790_000_000_000_000,
        lat_e7: 382_919_000,
        lon_e7: -1_224_580_000,
        alt_mm: 78_000,
        heading_cdeg: 9_000,
        battery_pct: 76,
        custom_mode: 3,
        armed: true,
        mode: "AUTO".into(),
    };
    write("relay_messages", "live", &[&[1][..], &live.encode_to_vec()].concat());
    write(
        "relay_messages",
        "event_list",
        &[&[2][..], &events().encode_to_vec()].concat(),
    );
    let (ca, _) = Ca::generate("fuzz-org").expect("CA");
    let edge = ca
        .issue_edge(&EdgeIdentity::new("vineyard-co", "station-1").unwrap())
        .expect("edge certificate");
    write(
        "relay_messages",
        "edge_certificate",
        &[&[3][..], edge.cert_der().unwrap().as_ref()].concat(),
    );
    let relay = ca.issue_relay(&["localhost".into()]).expect("relay certificate");
    write(
        "relay_messages",
        "relay_certificate",
        &[&[3][..], relay.cert_der().unwrap().as_ref()].concat(),
    );

    // endpoint: every form README.md and SPEC.md show.
    for (i, e) in [
        "serial:/dev/ttyUSB0:57600",
        "serial:/dev/serial/by-id/usb-FTDI_FT231X_USB_UART-if00-port0:57600",
        "serial:/dev/ttyACM0",
        "udpin:0.0.0.0:14550",
        "udp:0.0.0.0:14550",
        "udpin:[::]:14550",
        "udpout:10.0.0.5:14550",
        "udpout:localhost:14550",
        "tcp:127.0.0.1:5760",
        "tcpin:0.0.0.0:5760",
    ]
    .iter()
    .enumerate()
    {
        write("endpoint", &format!("endpoint_{i}"), e.as_bytes());
    }

    // Config files: the examples the repo ships, and links with filters.
    write(
        "edge_config",
        "example",
        repo("edge-daemon/edge-daemon.example.toml").as_bytes(),
    );
    write(
        "edge_config",
        "links",
        br#"data_dir = "/var/lib/trellis"
[api]
listen = "0.0.0.0:8443"
cert_file = "/etc/trellis/cert.pem"
key_file = "/etc/trellis/key.pem"

[[links]]
endpoint = "serial:/dev/ttyUSB0:57600"
[[links]]
endpoint = "udpout:127.0.0.1:14550"
filter_out = { deny = [22] }
filter_in = { allow = [0, 33, 1] }

[store]
commit_window_ms = 250
quota_mb = 4096
frame_retention_days = 7

[vehicles]
link_lost_after_s = 2.5
low_battery_pct = 25

[gcs]
system_id = 246
rates = { position_hz = 10, status_hz = 2, attitude_hz = 4, hud_hz = 4, extra_hz = 1 }

[sync]
bandwidth_limit_bytes_per_s = 2000
live_interval_ms = 0
"#,
    );
    // One setting each (`edge_config`'s second input form), at the example's value.
    let values = [
        "\"trellis-data\"",
        "\"0.0.0.0:8080\"",
        "\"\"",
        "\"\"",
        "\"\"",
        "1000",
        "2048",
        "30",
        "5.0",
        "20",
        "245",
        "190",
        "true",
        "true",
        "5",
        "2",
        "4",
        "4",
        "1",
        "0",
        "1000",
        "\"udpin:0.0.0.0:14550\"",
    ];
    for (i, value) in values.iter().enumerate() {
        write(
            "edge_config",
            &format!("setting_{i:02}"),
            &[&[0x80 | i as u8][..], value.as_bytes()].concat(),
        );
    }
    // What the fuzz target found: settings that validated, then panicked or wrapped.
    for (name, text) in [
        ("link_lost_inf", "[vehicles]\nlink_lost_after_s = inf\n"),
        ("link_lost_huge", "[vehicles]\nlink_lost_after_s = 1e300\n"),
        ("retention_overflow", "[store]\nframe_retention_days = 999999999999999\n"),
        ("quota_wraps", "[store]\nquota_mb = 99999999999999999\n"),
    ] {
        write("edge_config", &format!("regression_{name}"), text.as_bytes());
    }
    write(
        "relay_config",
        "example",
        repo("cloud-relay/cloud-relay.example.toml").as_bytes(),
    );

    // param_profile: the built-in profiles (format byte 0: `.param`, 1: `.params`).
    for (format, path) in [
        (0u8, "firmware-configs/ardupilot/copter-survey.param"),
        (0, "firmware-configs/ardupilot/copter-spray.param"),
        (1, "firmware-configs/px4/multicopter-survey.params"),
    ] {
        let name = path.rsplit('/').next().unwrap();
        write(
            "param_profile",
            name,
            &[&[format][..], repo(path).as_bytes()].concat(),
        );
    }
}
