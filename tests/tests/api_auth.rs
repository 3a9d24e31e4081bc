//! The station's API behind tokens and roles, over real HTTP against a running daemon with
//! simulated vehicles: no token → 401, a viewer never edits (403), a revoked token stops
//! working within a second, guessing is rate-limited (429), and bad requests say which field
//! was wrong.

use std::io::{Read as _, Write as _};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trellis_tests::*;

const T: Duration = Duration::from_secs(30);

/// Every protected read.
const READS: [&str; 10] = [
    "/api/v1/vehicles",
    "/api/v1/vehicles/1",
    "/api/v1/vehicles/1/telemetry",
    "/api/v1/links",
    "/api/v1/sync",
    "/api/v1/alerts",
    "/api/v1/fields",
    "/api/v1/geofences",
    "/api/v1/missions/proposals",
    "/api/v1/export/tlog?vehicle=1",
];

/// Every edit, with a body it would accept.
fn edits() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "PUT",
            "/api/v1/fields/block-1",
            json!({ "name": "Block 1" }),
        ),
        ("PUT", "/api/v1/geofences/north", json!({ "ceiling_m": 90 })),
        ("PATCH", "/api/v1/vehicles/1", json!({ "name": "V-9" })),
        (
            "POST",
            "/api/v1/vehicles/1/commands",
            json!({ "command": "arm" }),
        ),
        (
            "PUT",
            "/api/v1/vehicles/1/params",
            json!({ "WPNAV_SPEED": 500 }),
        ),
    ]
}

/// A daemon hearing two simulated copters.
fn station() -> (EdgeDaemon, Proc) {
    station_with_fleet(2, 5)
}

#[test]
fn without_a_token_only_health_answers() {
    let (daemon, _fleet) = station();
    let (code, body) = daemon.get_as("", "/api/v1/health");
    assert_eq!((code, &body["status"]), (200, &json!("ok")));
    for path in READS {
        let (code, body) = daemon.get_as("", path);
        assert_eq!(code, 401, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{path}: {body}");
    }
    for (method, path, body) in edits() {
        let (code, answer) = daemon.send_as("", method, path, &body);
        assert_eq!(code, 401, "{method} {path}: {answer}");
    }
    // Headers a browser or curl might send instead of a good token.
    for bad in ["", "trellis_st_0000", &"x".repeat(5000)] {
        let r = agent()
            .get(format!("{}/api/v1/vehicles", daemon.api))
            .header("Authorization", format!("Bearer {bad}"))
            .call()
            .expect("an answer");
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = agent()
        .get(format!("{}/api/v1/vehicles", daemon.api))
        .call()
        .expect("an answer");
    assert_eq!(
        r.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
}

/// Every operation the station's own OpenAPI document lists, with `{…}` path parameters
/// filled in: (method, path).
fn documented_operations(daemon: &EdgeDaemon) -> Vec<(String, String)> {
    let doc = daemon.get("/api/v1/openapi.json");
    let paths = doc["paths"].as_object().expect("the document's paths");
    let mut ops = Vec::new();
    for (template, item) in paths {
        let path: String = template
            .split('/')
            .map(|part| if part.starts_with('{') { "1" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "put", "post", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[test]
fn every_documented_operation_needs_a_token_and_a_viewer_changes_nothing_anywhere() {
    let (daemon, _fleet) = station();
    let viewer = daemon.new_token("crew phone", "viewer");
    let ops = documented_operations(&daemon);
    assert!(ops.len() > 30, "the document lists the API: {ops:?}");
    let mut edits = 0;
    let call = |token: &str, method: &str, path: &str| match method {
        "GET" => daemon.get_as(token, path),
        _ => daemon.send_as(token, method, path, &json!({})),
    };
    for (method, path) in &ops {
        let (code, body) = call("", method, path);
        if path == "/api/v1/health" || path == "/metrics" {
            assert_ne!(code, 401, "{method} {path} is open: {body}");
            continue;
        }
        assert_eq!(code, 401, "{method} {path} without a token: {body}");
        if method != "GET" {
            edits += 1;
            let (code, body) = call(&viewer, method, path);
            assert_eq!(code, 403, "a viewer's {method} {path}: {body}");
        }
    }
    assert!(edits > 10, "the document lists the edits: {ops:?}");
    // Nothing a viewer sent changed anything it could read back.
    let fields = daemon.get("/api/v1/fields");
    assert_eq!(
        fields["fields"].as_array().map(Vec::len),
        Some(0),
        "{fields}"
    );
    let (code, command) = daemon.get_as(&daemon.token, "/api/v1/commands/1");
    assert_eq!(code, 404, "no command was stored: {command}");
}

#[test]
fn a_viewer_reads_everything_and_changes_nothing_a_pilot_edits() {
    let (daemon, _fleet) = station();
    let viewer = station_token(daemon.data.path(), "crew phone", "viewer");
    let pilot = station_token(daemon.data.path(), "ana", "pilot");
    wait_for("the new tokens to be read", T, || {
        (daemon.get_as(&pilot, "/api/v1/vehicles").0 == 200).then_some(())
    });
    for path in READS {
        let (code, body) = daemon.get_as(&viewer, path);
        assert_eq!(code, 200, "viewer GET {path}: {body}");
    }
    for (method, path, body) in edits() {
        let (code, answer) = daemon.send_as(&viewer, method, path, &body);
        assert_eq!(code, 403, "viewer {method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
    }
    // Nothing a viewer sent was applied.
    let fields = daemon.get("/api/v1/fields");
    assert_eq!(
        fields["fields"].as_array().map(Vec::len),
        Some(0),
        "{fields}"
    );

    let (code, answer) = daemon.send_as(
        &pilot,
        "PUT",
        "/api/v1/fields/block-1",
        &json!({ "name": "Block 1" }),
    );
    assert_eq!(code, 200, "{answer}");
    let fields = daemon.get("/api/v1/fields");
    assert_eq!(fields["fields"][0]["key"], "block-1", "{fields}");
}

#[test]
fn tokens_made_or_revoked_while_the_daemon_runs_take_effect_within_a_second() {
    let (daemon, _fleet) = station();
    let made = Instant::now();
    let viewer = station_token(daemon.data.path(), "crew", "viewer");
    wait_for("a new token to work", T, || {
        (daemon.get_as(&viewer, "/api/v1/vehicles").0 == 200).then_some(())
    });
    let took = made.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "a new token took {took:?}"
    );

    revoke_station_token(daemon.data.path(), "crew");
    let revoked = Instant::now();
    wait_for("a revoked token to stop working", T, || {
        (daemon.get_as(&viewer, "/api/v1/vehicles").0 == 401).then_some(())
    });
    let took = revoked.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "revocation took {took:?}"
    );

    let list = Command::new(bin("edge-daemon"))
        .args(["token", "list", "--json", "--data-dir"])
        .arg(daemon.data.path())
        .output()
        .expect("token list");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(!text.contains(&viewer), "token list shows a secret");
    let listed: Value = serde_json::from_str(&text).expect("token list --json");
    let crew = listed["tokens"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "crew"))
        .cloned()
        .unwrap_or_default();
    assert!(crew["revoked_unix_ms"].is_number(), "{listed}");
}

#[test]
fn guessing_tokens_is_rate_limited_per_address() {
    let (daemon, _fleet) = station();
    let mut refused = 0;
    let limited = loop {
        let (code, body) = daemon.get_as("trellis_st_guess", "/api/v1/vehicles");
        match code {
            401 => refused += 1,
            429 => break body,
            other => panic!("a guess got {other}: {body}"),
        }
        assert!(
            refused <= 10,
            "still answering 401 after {refused} wrong tokens"
        );
    };
    assert_eq!(refused, 10, "the burst of wrong tokens allowed");
    assert_eq!(limited["error"]["code"], "too_many_requests");
    let r = agent()
        .get(format!("{}/api/v1/vehicles", daemon.api))
        .header("Authorization", format!("Bearer {}", daemon.token))
        .call()
        .expect("an answer");
    assert_eq!(
        r.status().as_u16(),
        429,
        "a guessing address waits, good token or not"
    );
    let wait: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("Retry-After");
    assert!((1..=6).contains(&wait), "Retry-After {wait}");
    // Health stays open to monitoring.
    assert_eq!(daemon.get_as("", "/api/v1/health").0, 200);
}

#[test]
fn bad_bodies_are_refused_with_the_reason_and_change_nothing() {
    let (daemon, _fleet) = station();
    let url = format!("{}/api/v1/vehicles/1", daemon.api);
    let auth = format!("Bearer {}", daemon.token);
    let send = |content_type: &str, body: Vec<u8>| -> (u16, Value) {
        let mut r = agent()
            .patch(&url)
            .header("Authorization", &auth)
            .header("Content-Type", content_type)
            .send(&body[..])
            .expect("an answer");
        let status = r.status().as_u16();
        (status, r.body_mut().read_json().unwrap_or(Value::Null))
    };
    let cases: [(&str, Vec<u8>, u16, &str); 4] = [
        (
            "application/json",
            b"{\"name\": ".to_vec(),
            400,
            "bad_request",
        ),
        (
            "application/json",
            b"{\"name\": 5}".to_vec(),
            422,
            "invalid",
        ),
        (
            "application/json",
            b"{\"nom\": \"V-9\"}".to_vec(),
            422,
            "invalid",
        ),
        (
            "text/plain",
            b"name=V-9".to_vec(),
            415,
            "unsupported_media_type",
        ),
    ];
    for (content_type, body, status, code) in cases {
        let preview = String::from_utf8_lossy(&body[..body.len().min(24)]).into_owned();
        let (got, answer) = send(content_type, body);
        assert_eq!(got, status, "{content_type} {preview}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{preview}: {answer}");
    }
    // A body announced too large is refused before it is sent: the answer comes at once, and
    // no client is left writing into a closed connection.
    let mut raw =
        std::net::TcpStream::connect(daemon.api.trim_start_matches("http://")).expect("connect");
    raw.set_read_timeout(Some(T)).expect("timeout");
    write!(
        raw,
        "PATCH /api/v1/vehicles/1 HTTP/1.1\r\nHost: station\r\nAuthorization: {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        3 << 20
    )
    .expect("headers");
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    let (code, answer) = send("application/json", b"{\"name\": \"  \"}".to_vec());
    assert_eq!(code, 422, "{answer}");
    assert_eq!(answer["error"]["field"], "name", "{answer}");
    let v = daemon.get("/api/v1/vehicles/1");
    assert_eq!(v["name"], "V-01", "nothing was renamed: {v}");
}

/// Sends `request` on `conn` and reads one answer: (status, body).
fn exchange(conn: &mut std::io::BufReader<std::net::TcpStream>, request: &[u8]) -> (u16, String) {
    use std::io::BufRead as _;
    conn.get_mut().write_all(request).expect("request written");
    let mut status = String::new();
    conn.read_line(&mut status)
        .unwrap_or_else(|e| panic!("no answer on the kept-alive connection: {e}"));
    assert!(
        !status.is_empty(),
        "the server closed a kept-alive connection"
    );
    let mut length = 0;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).expect("a header");
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a length");
            }
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).expect("the body");
    let code = status.split(' ').nth(1).and_then(|c| c.parse().ok());
    (
        code.expect("a status"),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[test]
fn a_refused_request_leaves_its_connection_usable() {
    // A request refused before its body is read (wrong type, wrong role)
    // must not close the connection under a client that reuses it: closing with the body
    // unread resets it, and the client loses the answer or the next request.
    let (daemon, _fleet) = station();
    let viewer = station_token(daemon.data.path(), "crew", "viewer");
    let tcp =
        std::net::TcpStream::connect(daemon.api.trim_start_matches("http://")).expect("connect");
    tcp.set_read_timeout(Some(T)).expect("timeout");
    let mut conn = std::io::BufReader::new(tcp);
    let body = format!("{{\"name\": \"{}\"}}", "x".repeat(256 << 10));
    let cases = [
        ("PATCH /api/v1/vehicles/1", "text/plain", &daemon.token, 415),
        ("PATCH /api/v1/vehicles/1", "application/json", &viewer, 403),
        (
            "PATCH /api/v1/vehicles/1",
            "application/json",
            &daemon.token,
            422,
        ),
    ];
    for (line, content_type, token, status) in cases {
        let request = format!(
            "{line} HTTP/1.1\r\nHost: station\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (got, answer) = exchange(&mut conn, request.as_bytes());
        assert_eq!(got, status, "{line} as {content_type}: {answer}");
        let health = b"GET /api/v1/health HTTP/1.1\r\nHost: station\r\n\r\n";
        let (got, answer) = exchange(&mut conn, health);
        assert_eq!(got, 200, "after {line}: {answer}");
    }
}

#[test]
fn token_create_prints_a_signed_in_address_and_a_qr_code() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(bin("edge-daemon"))
        .args([
            "token", "create", "--name", "crew", "--role", "viewer", "--qr",
        ])
        .args(["--url", "http://192.0.2.10:8080"])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .expect("token create");
    assert!(out.status.success());
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(secret.starts_with("trellis_st_"), "{secret}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("http://192.0.2.10:8080/#token={secret}")),
        "{err}"
    );
    assert!(
        err.contains('█') || err.contains('▀'),
        "no QR code in:\n{err}"
    );
    let bad_role = Command::new(bin("edge-daemon"))
        .args([
            "token",
            "create",
            "--name",
            "x",
            "--role",
            "root",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .expect("token create");
    assert_eq!(bad_role.status.code(), Some(2), "usage error");
}

#[test]
fn a_station_that_cannot_trust_its_wifi_serves_https_from_a_certificate_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=station"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // A server certificate, not a CA: rustls will not take a CA as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let data = tempfile::tempdir().unwrap();
    let token = station_token(data.path(), "crew", "viewer");
    let port = free_tcp_port();
    let _daemon = Proc::spawn(
        "edge-daemon serve (https)",
        Command::new(bin("edge-daemon"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data.path())
            .args(["--api-listen", &format!("127.0.0.1:{port}")])
            .arg("--api-cert")
            .arg(&cert)
            .arg("--api-key")
            .arg(&key)
            .stdin(std::process::Stdio::null()),
    );
    let pem = std::fs::read(&cert).unwrap();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
            ureq::tls::Certificate::from_pem(&pem).unwrap(),
        ])))
        .build();
    let https: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let base = format!("https://127.0.0.1:{port}");
    wait_for("the API over HTTPS", T, || {
        let r = https.get(format!("{base}/api/v1/health")).call().ok()?;
        (r.status().as_u16() == 200).then_some(())
    });
    let mut r = https
        .get(format!("{base}/api/v1/vehicles"))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .expect("an answer over HTTPS");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.body_mut().read_json::<Value>().unwrap()["vehicles"].is_array());
    let page = https.get(format!("{base}/")).call().expect("the web UI");
    assert_eq!(page.status().as_u16(), 200);
    // Plain HTTP on the same port gets nothing useful.
    let plain = agent()
        .get(format!("http://127.0.0.1:{port}/api/v1/health"))
        .call();
    assert!(
        plain.map_or(true, |r| r.status().as_u16() != 200),
        "plain HTTP answered on the HTTPS port"
    );
    // Half a certificate is refused at start, saying why.
    let half = Command::new(bin("edge-daemon"))
        .args(["serve", "--api-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--api-cert")
        .arg(&cert)
        .output()
        .expect("edge-daemon");
    assert_eq!(half.status.code(), Some(2), "usage error");
}

#[test]
fn parameters_plans_and_decisions_check_their_requests() {
    let (daemon, _fleet) = station();
    let pilot = station_token(daemon.data.path(), "ana", "pilot");
    wait_for("the token to be read", T, || {
        (daemon.get_as(&pilot, "/api/v1/vehicles").0 == 200).then_some(())
    });
    // Bad requests are refused as on any route, naming what is wrong (what valid ones do is
    // tested in commands.rs, params.rs and missions.rs).
    let (code, body) = daemon.get_as(&pilot, "/api/v1/vehicles/1/params");
    assert_eq!(code, 200, "{body}");
    let (code, body) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/vehicles/1/params/read",
        &json!({ "names": [] }),
    );
    assert_eq!(
        (code, &body["error"]["field"]),
        (422, &json!("names")),
        "{body}"
    );
    let (code, body) = daemon.get_as(&pilot, "/api/v1/missions");
    assert_eq!(code, 200, "missions are kept: {body}");
    let plan = json!({ "alt_m": 30, "speed_mps": 5, "row_spacing_m": 2.5 });
    let (code, body) = daemon.send_as(&pilot, "POST", "/api/v1/fields/no-such/plan", &plan);
    assert_eq!(code, 404, "{body}");
    let too_high = json!({ "alt_m": 3000, "speed_mps": 5, "row_spacing_m": 2.5 });
    let (code, body) = daemon.send_as(&pilot, "POST", "/api/v1/fields/no-such/plan", &too_high);
    assert_eq!(
        (code, &body["error"]["field"]),
        (422, &json!("alt_m")),
        "{body}"
    );
    let (code, body) = daemon.send_as(
        &pilot,
        "POST",
        "/api/v1/missions/proposals/p-none/decision",
        &json!({ "decision": "approve" }),
    );
    assert_eq!(code, 404, "{body}");
}
