//! The station's live stream (`/api/v1/stream`) with an independent WebSocket client (the
//! `websockets` library): a vehicle's state at the stream's rate, alerts once committed,
//! revocation closing an open stream, and clients that never read slowing nobody (measured).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use trellis_tests::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn a_subscribed_client_gets_its_vehicle_at_the_streams_rate_and_alerts_once_committed() {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let mut seven = pymavlink_vehicle(udp, 7, 20);
    let _eight = pymavlink_vehicle(udp, 8, 20);
    wait_for("both vehicles", T, || {
        (daemon.vehicle(7).is_some() && daemon.vehicle(8).is_some()).then_some(())
    });
    let viewer = station_token(daemon.data.path(), "crew", "viewer");
    let mut client = stream_client(&daemon, &viewer, "?vehicles=7");
    let hello = json_line(&client.wait_line(T, |l| l.contains("\"hello\"")));
    assert_eq!(hello["token"]["role"], "viewer", "{hello}");

    // 20 position messages a second come in; the stream gives at most 10 per vehicle.
    let is_state = |l: &str| json_line(l)["type"] == "state";
    client.wait_line(T, is_state);
    let start = Instant::now();
    let mut positions = Vec::new();
    for _ in 0..30 {
        let state = json_line(&client.wait_line(T, is_state));
        assert_eq!(
            state["vehicle"]["sysid"], 7,
            "only the vehicle asked for: {state}"
        );
        positions.push(
            state["vehicle"]["position"]["lat"]
                .as_f64()
                .unwrap_or_default(),
        );
    }
    let rate = 30.0 / start.elapsed().as_secs_f64();
    assert!((6.0..=11.0).contains(&rate), "{rate:.1} state messages/s");
    assert!(
        positions.windows(2).filter(|w| w[1] > w[0]).count() >= 25,
        "the vehicle flies north; its positions should advance: {positions:?}"
    );

    seven.send_line("battery 10");
    let alert = json_line(&client.wait_line(T, |l| json_line(l)["type"] == "alert"));
    assert_eq!(alert["event"]["code"], "low_battery", "{alert}");
    assert_eq!(alert["event"]["vehicle"], 7, "{alert}");
    // The stream told it after the commit: the alert is already in the store, same id.
    let stored = daemon.get("/api/v1/alerts");
    assert_eq!(
        stored["alerts"][0]["seq"], alert["event"]["seq"],
        "{stored}"
    );
    // Paged: the one alert fills a page of one, and nothing follows it.
    let first = daemon.get("/api/v1/alerts?limit=1");
    assert_eq!(first["alerts"][0]["seq"], alert["event"]["seq"], "{first}");
    assert!(first["next"].is_null(), "{first}");
    let rest = daemon.get(&format!(
        "/api/v1/alerts?limit=1&before={}",
        alert["event"]["seq"]
    ));
    assert_eq!(rest["alerts"], serde_json::json!([]), "{rest}");
    assert!(rest["next"].is_null(), "{rest}");
}

#[test]
fn revoking_a_token_closes_its_open_stream_within_a_second() {
    let daemon = EdgeDaemon::start(&[]);
    let viewer = station_token(daemon.data.path(), "crew", "viewer");
    let mut client = stream_client(&daemon, &viewer, "");
    client.wait_line(T, |l| l.contains("\"station\""));
    revoke_station_token(daemon.data.path(), "crew");
    let revoked = Instant::now();
    let closed = json_line(&client.wait_line(T, |l| l.contains("\"closed\"")));
    let took = revoked.elapsed();
    assert_eq!(closed["code"], 4001, "{closed}");
    assert_eq!(closed["reason"], "token revoked", "{closed}");
    assert!(
        took < Duration::from_millis(2500),
        "closed {took:?} after revocation"
    );
    // And it cannot come back.
    assert_eq!(daemon.get_as(&viewer, "/api/v1/vehicles").0, 401);
}

/// A WebSocket client that completes the handshake and then never reads a byte.
fn stalled_client(daemon: &EdgeDaemon, token: &str) -> TcpStream {
    let addr = daemon.api.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET /api/v1/stream?access_token={token} HTTP/1.1\r\nHost: {addr}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("send the upgrade");
    s.set_read_timeout(Some(T)).expect("timeout");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("the upgrade answer");
    assert_eq!(&head, b"HTTP/1.1 101", "{}", String::from_utf8_lossy(&head));
    s
}

/// Samples ingested (positions decoded, across the fleet) and state messages one client
/// received, per second over `window`.
fn rates(daemon: &EdgeDaemon, client: &mut Proc, window: Duration) -> (f64, f64) {
    let samples = |d: &EdgeDaemon| {
        d.get("/api/v1/vehicles")["vehicles"]
            .as_array()
            .map(|vs| vs.iter().filter_map(|v| v["samples"].as_u64()).sum::<u64>())
    };
    let before = samples(daemon).expect("samples");
    let start = Instant::now();
    let mut states = 0u32;
    while start.elapsed() < window {
        client.wait_line(T, |l| json_line(l)["type"] == "state");
        states += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let after = samples(daemon).expect("samples");
    ((after - before) as f64 / secs, f64::from(states) / secs)
}

#[test]
fn clients_that_never_read_slow_neither_ingest_nor_other_clients() {
    let (daemon, _fleet) = station_with_fleet(30, 10);
    let viewer = station_token(daemon.data.path(), "crew", "viewer");
    let mut reader = stream_client(&daemon, &viewer, "?kinds=state");
    let window = Duration::from_secs(5);
    let (ingest_alone, stream_alone) = rates(&daemon, &mut reader, window);

    let _stalled: Vec<TcpStream> = (0..10).map(|_| stalled_client(&daemon, &viewer)).collect();
    // The stalled clients' buffers fill while this window runs.
    let (ingest_stalled, stream_stalled) = rates(&daemon, &mut reader, window);
    println!(
        "samples/s {ingest_alone:.0} alone, {ingest_stalled:.0} with 10 stalled clients; \
         state messages/s to a reading client {stream_alone:.0} / {stream_stalled:.0}"
    );
    assert!(
        ingest_stalled >= 0.9 * ingest_alone,
        "ingest slowed: {ingest_alone:.0} → {ingest_stalled:.0} samples/s"
    );
    assert!(
        stream_stalled >= 0.8 * stream_alone,
        "the reading client slowed: {stream_alone:.0} → {stream_stalled:.0} state messages/s"
    );
    let metrics = daemon.metrics();
    assert!(
        metrics.contains("trellis_stream_clients 11"),
        "one reading and ten stalled clients:\n{metrics}"
    );
}

#[test]
fn a_client_a_whole_event_ring_behind_is_closed_with_a_reason_and_one_not_reading_is_dropped() {
    let (daemon, _fleet) = station_with_fleet(10, 10);
    let viewer = station_token(daemon.data.path(), "crew", "viewer");
    let pilot = station_token(daemon.data.path(), "pilot", "pilot");
    let mut behind = Proc::spawn(
        "stream client that falls behind",
        stream_client_command(&daemon, &viewer, "?kinds=records")
            .args(["--pause-on", "record"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped()),
    );
    behind.wait_line(T, |l| l.contains("\"open\""));
    let mut watching = stream_client(&daemon, &viewer, "?kinds=state");

    // 1. The client stops reading at the first record change; then 16 edits of 400 fields of
    // 4 KB each commit 6,400 changes, 26 MB of messages. The buffers between them hold at
    // most about 1,000 of those (Linux's largest send buffer, 4 MB, and a receive buffer that
    // does not grow while nothing is read), so the station's sends to it wait, and over 5,000
    // more changes pass while they do: more than the ring of 4,096 keeps.
    let edit = |fields: serde_json::Value| {
        let (code, body) = daemon.send_as(&pilot, "PUT", "/api/v1/fields/bulk", &fields);
        assert_eq!(code, 200, "{body}");
    };
    edit(serde_json::json!({ "name": "bulk" }));
    behind.wait_line(T, |l| l.contains("\"paused\""));
    let value = "v".repeat(4096);
    for round in 0..16 {
        let fields: serde_json::Map<String, serde_json::Value> = (0..400)
            .map(|i| (format!("f{round}-{i}"), value.clone().into()))
            .collect();
        edit(fields.into());
    }
    // 2. It reads again (within the 10 s a send may wait): it is told it fell behind, and why.
    behind.send_line("resume");
    let closed = json_line(&behind.wait_line(T, |l| l.contains("\"closed\"")));
    assert_eq!(closed["code"], 4002, "{closed}");
    let reason = closed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("events missed") && reason.contains("/api/v1/alerts"),
        "{closed}"
    );
    // Nothing was lost: the edits are all stored, for a client that reconnects to re-read.
    let stored: i64 = daemon
        .db()
        .query_row(
            "SELECT count(*) FROM records WHERE tbl = 'fields' AND key = 'bulk'",
            [],
            |r| r.get(0),
        )
        .expect("the station's store");
    assert_eq!(stored, 1 + 16 * 400, "every field of every edit");
    // A client subscribed to state only missed nothing it asked for and is still served:
    // it gets a state newer than any before this point.
    let fresh = |daemon: &EdgeDaemon, watching: &mut Proc| {
        let seen = daemon
            .vehicle(1)
            .and_then(|v| v["samples"].as_u64())
            .unwrap_or(0);
        watching.wait_line(T, |l| {
            let m = json_line(l);
            m["type"] == "state"
                && m["vehicle"]["sysid"] == 1
                && m["vehicle"]["samples"].as_u64() > Some(seen)
        });
    };
    fresh(&daemon, &mut watching);
    assert!(metric(&daemon.metrics(), "trellis_stream_dropped_slow_total") >= Some(1.0));

    // 3. A client that reads nothing at all: once its buffers are full, the station waits
    // 10 s on it, then drops it; it reads what was buffered, then the end of the stream.
    let dropped_before =
        metric(&daemon.metrics(), "trellis_stream_dropped_slow_total").unwrap_or(0.0);
    let mut stalled = stalled_client(&daemon, &viewer);
    wait_for(
        "the stalled client dropped",
        Duration::from_secs(60),
        || {
            (metric(&daemon.metrics(), "trellis_stream_dropped_slow_total")? > dropped_before)
                .then_some(())
        },
    );
    let mut sink = Vec::new();
    stalled
        .read_to_end(&mut sink)
        .expect("the stream ends (the station closed the connection)");
    assert!(
        !sink.is_empty(),
        "it had been sent state before it stopped reading"
    );
    fresh(&daemon, &mut watching);
    assert_eq!(
        metric(&daemon.metrics(), "trellis_stream_clients"),
        Some(1.0),
        "only the watcher"
    );
}
