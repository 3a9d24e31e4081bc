//! What the store keeps: .tlog export read back by pymavlink, and JSON errors for bad requests.

use std::process::{Command, Stdio};
use std::time::Duration;

use trellis_tests::*;

const T: Duration = Duration::from_secs(60);

#[test]
fn an_exported_tlog_reads_back_in_pymavlink_with_every_frame() {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let mut v = Proc::spawn(
        "pymavlink vehicle",
        python("vehicle.py")
            .args(["--connect", &format!("udpout:127.0.0.1:{udp}")])
            .args(["--sysid", "41", "--lat", "38.29", "--lon", "-122.45"])
            .args(["--rate", "100", "--positions", "300", "--heartbeats", "30"])
            .stdout(Stdio::piped()),
    );
    let done = v.wait_event("done", T);
    let sent = &done["sent"];
    // Everything it sent, the acks to the station's requests for its data too.
    let total: u64 = sent
        .as_object()
        .expect("counts by type")
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    wait_for("every frame committed", T, || {
        let h = daemon.get("/api/v1/health");
        (h["store"]["committed_frames"].as_u64()? >= total).then_some(())
    });

    let out = daemon.data.path().join("v41.tlog");
    let status = Command::new(bin("edge-daemon"))
        .args(["export", "tlog", "--vehicle", "41", "--data-dir"])
        .arg(daemon.data.path())
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let counts = python_json("tlog_count.py", &[&out.display().to_string()]);
    assert_eq!(counts["HEARTBEAT:41"], sent["HEARTBEAT"], "{counts}");
    assert_eq!(
        counts["GLOBAL_POSITION_INT:41"], sent["GLOBAL_POSITION_INT"],
        "{counts}"
    );
    assert_eq!(counts["ATTITUDE:41"], sent["ATTITUDE"], "{counts}");
    assert!(counts.get("BAD_DATA").is_none(), "{counts}");

    // The commits behind it, in /metrics as Prometheus' own parser reads it: a histogram
    // whose buckets count every commit once, cumulatively.
    let metrics = parse_metrics(&daemon.metrics());
    let commits = &metrics["trellis_store_commit_seconds"];
    assert_eq!(commits["type"], "histogram", "{commits}");
    let samples = commits["samples"].as_array().expect("samples");
    let value = |name: &str, le: Option<&str>| {
        samples
            .iter()
            .find(|s| s[0] == name && le.is_none_or(|le| s[1]["le"] == le))
            .and_then(|s| s[2].as_f64())
    };
    let count = value("trellis_store_commit_seconds_count", None).expect("a count");
    assert!(count >= 1.0, "{commits}");
    assert_eq!(
        value("trellis_store_commit_seconds_bucket", Some("+Inf")),
        Some(count)
    );
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|s| s[0] == "trellis_store_commit_seconds_bucket")
        .filter_map(|s| s[2].as_f64())
        .collect();
    assert!(buckets.len() >= 10 && buckets.is_sorted(), "{commits}");
    assert!(
        value("trellis_store_commit_seconds_sum", None) > Some(0.0),
        "{commits}"
    );
}

#[test]
fn malformed_requests_get_json_errors() {
    let daemon = EdgeDaemon::start(&[]);
    // 400: the request cannot be read; 422: a field's value is wrong, and it is named.
    for (path, status, field) in [
        ("/api/v1/vehicles/99", 404, None),
        ("/api/v1/vehicles/V-99", 404, None),
        ("/api/v1/nothing", 404, None),
        (
            "/api/v1/vehicles/1/telemetry?from=yesterday",
            422,
            Some("from"),
        ),
        (
            "/api/v1/vehicles/1/telemetry?every=fast",
            422,
            Some("every"),
        ),
        ("/api/v1/vehicles/1/telemetry?limit=0", 422, Some("limit")),
        ("/api/v1/vehicles/1/telemetry?bogus=1", 400, None),
        (
            "/api/v1/vehicles/1/telemetry?from=2000&to=1000",
            422,
            Some("from"),
        ),
        ("/api/v1/export/tlog?vehicle=300", 400, None),
        ("/api/v1/alerts?limit=100000", 422, Some("limit")),
        ("/api/v1/alerts?before=yesterday", 400, None),
    ] {
        let (code, body) = daemon.get_status(path);
        assert_eq!(code, status, "{path}: {body}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
        if let Some(field) = field {
            assert_eq!(body["error"]["field"], field, "{path}: {body}");
        }
    }
    // An empty history is an empty list, not an error.
    let (code, body) = daemon.get_status("/api/v1/vehicles/1/telemetry");
    assert_eq!(code, 200);
    assert_eq!(body["count"], 0);
}
