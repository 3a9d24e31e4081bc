//! Every process stops cleanly and promptly on SIGTERM and SIGINT, whatever it is doing:
//! sync connected with a backlog draining, a relay that never answers, API requests left
//! half-sent, links down. It flushes what it holds, tells systemd STOPPING=1, and exits 0
//! within 5 s; a second signal exits at once.

use std::io::Write as _;
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use trellis_tests::*;

const T: Duration = Duration::from_secs(60);
/// What a stop may take (systemd's stop timeout is far longer; users notice more than this).
const PROMPT: Duration = Duration::from_secs(5);

/// Exit code of a process ended by a second signal (`trellis_web::lifecycle`).
const EXIT_SECOND_SIGNAL: i32 = 130;

/// A notify socket like systemd's, and its path for `NOTIFY_SOCKET`.
fn notify_socket(dir: &Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket.set_read_timeout(Some(T)).expect("read timeout");
    (socket, path)
}

/// Reads notifications until one contains `what` (each read bounded by the socket timeout).
fn expect_notification(socket: &UnixDatagram, what: &str) {
    let mut seen = String::new();
    let mut buf = [0u8; 512];
    loop {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {what} notification ({e}); got:\n{seen}"));
        let text = String::from_utf8_lossy(&buf[..n]);
        if text.contains(what) {
            return;
        }
        seen.push_str(&text);
        seen.push('\n');
    }
}

fn edge_serve(
    data: &Path,
    api: u16,
    links: &[String],
    notify: &Path,
    config: Option<&Path>,
) -> Proc {
    let mut cmd = Command::new(bin("edge-daemon"));
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args(["--api-listen", &format!("127.0.0.1:{api}")])
        .env("NOTIFY_SOCKET", notify)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    for l in links {
        cmd.arg("--link").arg(l);
    }
    Proc::spawn("edge-daemon serve", &mut cmd)
}

fn get(api: u16, token: &str, path: &str) -> Option<serde_json::Value> {
    ureq::get(&format!("http://127.0.0.1:{api}{path}"))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .ok()?
        .body_mut()
        .read_json()
        .ok()
}

/// A request that never finishes arriving, and a connection that never sends one: the kind
/// of client a phone on flaky Wi-Fi leaves behind.
fn stuck_clients(port: u16) -> Vec<TcpStream> {
    let mut half = TcpStream::connect(("127.0.0.1", port)).expect("connect to the API");
    half.write_all(b"GET /api/v1/vehicles HTTP/1.1\r\nHost: station\r\n")
        .expect("send half a request");
    let idle = TcpStream::connect(("127.0.0.1", port)).expect("connect to the API");
    vec![half, idle]
}

fn assert_prompt_clean_exit(proc: &mut Proc, signal: i32) {
    proc.signal(signal);
    let (status, took) = proc.wait_exit(T);
    assert_eq!(status.code(), Some(0), "exit status after signal {signal}");
    assert!(took <= PROMPT, "took {took:?} to stop (limit {PROMPT:?})");
}

#[test]
fn serve_with_sync_draining_clients_stuck_and_links_down_stops_promptly_and_flushes() {
    let mut relay = CloudRelay::new();
    let data = relay.enroll_pi_north();
    relay.start();
    relay.wait_hq();

    // A metered link: the telemetry backlog drains slowly, so it is still draining at stop.
    let config = data.path().join("edge.toml");
    std::fs::write(&config, "[sync]\nbandwidth_limit_bytes_per_s = 100\n").unwrap();
    let (notify, notify_path) = notify_socket(data.path());
    let (api, udp) = (free_tcp_port(), free_udp_port());
    let links = [
        format!("udpin:127.0.0.1:{udp}"),
        // Both down for the whole test: a peer that never listens, a radio never plugged in.
        format!("tcp:127.0.0.1:{}", free_tcp_port()),
        format!(
            "serial:{}:57600",
            data.path().join("ttyUSB-absent").display()
        ),
    ];
    let token = station_token(data.path(), "tests", "viewer");
    let mut edge = edge_serve(data.path(), api, &links, &notify_path, Some(&config));
    let _fleet = sim_fleet(udp, 5, 50);
    expect_notification(&notify, "READY=1");
    wait_for("sync connected with a backlog draining", T, || {
        let sync = get(api, &token, "/api/v1/sync")?;
        (sync["connected"] == true
            && sync["relay_acked"].as_u64()? > 0
            && sync["backlog_rows"].as_u64()? > 500)
            .then_some(())
    });
    let _clients = stuck_clients(api);
    let committed = get(api, &token, "/api/v1/health").expect("health")["store"]["committed_seq"]
        .as_i64()
        .expect("committed_seq");

    assert_prompt_clean_exit(&mut edge, libc::SIGTERM);
    expect_notification(&notify, "STOPPING=1");

    let db = rusqlite::Connection::open(data.path().join("trellis.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let stored: i64 = db
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM telemetry", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        stored >= committed,
        "the store holds up to seq {stored}, but {committed} was reported committed before the stop"
    );
    // The relay saw a station leave, not a protocol error.
    let metrics = relay.metrics();
    assert!(
        metrics.contains("trellis_relay_protocol_errors_total 0"),
        "a clean stop counted as a protocol error:\n{metrics}"
    );
}

/// A relay address where something holds the port but never answers: the QUIC handshake
/// hangs, as it does behind a captive portal or a dead satellite modem.
fn silent_relay() -> (UdpSocket, CloudRelay) {
    let hole = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let relay = CloudRelay::on_port(free_udp_port(), Some(hole.local_addr().unwrap()));
    relay.admin(&["org", "create", "vineyard-co"]);
    (hole, relay)
}

#[test]
fn serve_connecting_to_a_relay_that_never_answers_stops_promptly() {
    let (_hole, relay) = silent_relay();
    let data = tempfile::tempdir().unwrap();
    relay.enroll("vineyard-co", "pi-north", data.path());
    let (notify, notify_path) = notify_socket(data.path());
    let api = free_tcp_port();
    let mut edge = edge_serve(data.path(), api, &[], &notify_path, None);
    expect_notification(&notify, "READY=1");
    wait_for("the API to answer", T, || get(api, "", "/api/v1/health"));
    assert_prompt_clean_exit(&mut edge, libc::SIGINT);
}

#[test]
fn a_second_signal_exits_at_once() {
    // Stopping waits a moment for the session stuck in its handshake; the second signal
    // does not.
    let (_hole, relay) = silent_relay();
    let data = tempfile::tempdir().unwrap();
    relay.enroll("vineyard-co", "pi-north", data.path());
    let (notify, notify_path) = notify_socket(data.path());
    let mut edge = edge_serve(data.path(), free_tcp_port(), &[], &notify_path, None);
    expect_notification(&notify, "READY=1");
    edge.signal(libc::SIGINT);
    expect_notification(&notify, "STOPPING=1");
    edge.signal(libc::SIGINT);
    let (status, _) = edge.wait_exit(T);
    assert_eq!(
        status.code(),
        Some(EXIT_SECOND_SIGNAL),
        "the second Ctrl-C should end the process at once"
    );
}

#[test]
fn the_demo_stops_on_ctrl_c() {
    let data = tempfile::tempdir().unwrap();
    let api = free_tcp_port();
    let token = station_token(data.path(), "tests", "viewer");
    let mut demo = spawn_demo(data.path(), api, free_tcp_port(), Stdio::null());
    wait_for("the demo's station to sync", T, || {
        let sync = get(api, &token, "/api/v1/sync")?;
        (sync["connected"] == true && sync["relay_acked"].as_u64()? > 0).then_some(())
    });
    let _clients = stuck_clients(api);
    assert_prompt_clean_exit(&mut demo, libc::SIGINT);
}

#[test]
fn the_simulator_stops_on_sigterm() {
    let udp = free_udp_port();
    let listener = UdpSocket::bind(("127.0.0.1", udp)).unwrap();
    listener.set_read_timeout(Some(T)).unwrap();
    let mut fleet = sim_fleet(udp, 3, 10);
    let mut buf = [0u8; 512];
    listener.recv(&mut buf).expect("the simulator sends");
    assert_prompt_clean_exit(&mut fleet, libc::SIGTERM);
}

#[test]
fn the_relay_stops_promptly_with_edges_streaming_and_clients_stuck() {
    let relay = CloudRelay::new();
    let data = relay.enroll_pi_north();
    let (notify, notify_path) = notify_socket(relay.dir.path());
    let mut proc = Proc::spawn(
        "cloud-relay serve",
        Command::new(bin("cloud-relay"))
            .arg("--config")
            .arg(&relay.config)
            .arg("serve")
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stderr(Stdio::null()),
    );
    expect_notification(&notify, "READY=1");
    let udp = free_udp_port();
    let edge = EdgeDaemon::start_in(data, &[format!("udpin:127.0.0.1:{udp}")], &[]);
    let _fleet = sim_fleet(udp, 5, 50);
    wait_for("the edge streaming to the relay", T, || {
        let sync = edge.try_get("/api/v1/sync")?;
        (sync["connected"] == true && sync["relay_acked"].as_u64()? > 100).then_some(())
    });
    let _clients = stuck_clients(relay.hq_port);
    assert_prompt_clean_exit(&mut proc, libc::SIGTERM);
    expect_notification(&notify, "STOPPING=1");
}
