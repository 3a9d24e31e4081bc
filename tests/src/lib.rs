//! Harness for the end-to-end tests: start the real binaries and independent peers, wait for
//! things with bounded polls that fail with a message saying what never happened.

pub mod impair;
pub mod lazyfs;
pub mod radio;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// A binary built by `cargo build --bins` (the README's test command builds them first).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port()
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free TCP port")
        .port()
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    name: String,
    lines: Option<std::sync::mpsc::Receiver<String>>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
            lines: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: a crash. (A power cut also loses what was never synced: `lazyfs`.)
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for a stdout line that parses as JSON with `"event": event`.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Value {
        let line = self.wait_line(timeout, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["event"] == event)
        });
        serde_json::from_str(&line).unwrap_or(Value::Null)
    }

    /// Waits for a JSON line with `"event": event` for which `pred` holds.
    pub fn wait_event_where(
        &mut self,
        event: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let line = self.wait_line(timeout, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["event"] == event && pred(&v))
        });
        serde_json::from_str(&line).unwrap_or(Value::Null)
    }

    /// Waits for a stdout line matching `pred`. Lines are collected from the first call on;
    /// none are lost between calls.
    pub fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let stdout = self.child.stdout.take();
        let rx = self.lines.get_or_insert_with(|| {
            let stdout = stdout.expect("stdout piped");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
            rx
        });
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "{} never printed the expected line within {timeout:?}; it printed:\n{}",
                    self.name,
                    seen.join("\n")
                ),
            }
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child we spawned and have not yet reaped.
        unsafe {
            libc::kill(self.pid() as i32, signal);
        }
    }

    /// Waits up to `timeout` for the process to exit: its status and how long it took.
    pub fn wait_exit(&mut self, timeout: Duration) -> (std::process::ExitStatus, Duration) {
        let start = Instant::now();
        let status = wait_for(&format!("{} to exit", self.name), timeout, || {
            self.child.try_wait().ok().flatten()
        });
        (status, start.elapsed())
    }

    /// Writes a line to the process's stdin (piped).
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin piped");
        writeln!(stdin, "{line}").expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `edge-daemon sim`: `vehicles` simulated copters sending `rate` Hz of position to a
/// daemon's `udpin` on `udp`, quietly.
pub fn sim_fleet(udp: u16, vehicles: u8, rate: u32) -> Proc {
    Proc::spawn(
        "edge-daemon sim",
        Command::new(bin("edge-daemon"))
            .args(["sim", "--vehicles", &vehicles.to_string()])
            .args(["--rate", &rate.to_string()])
            .args(["--link", &format!("udpout:127.0.0.1:{udp}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// pymavlink as a copter (`peers/vehicle.py`) sending `rate` Hz of position to a daemon's
/// `udpin` on `udp`, flying north at 2 m/s with 80 % battery; `send_line` drives it
/// (`battery 10` raises a low-battery alert).
pub fn pymavlink_vehicle(udp: u16, sysid: u8, rate: u32) -> Proc {
    let mut v = Proc::spawn(
        "pymavlink vehicle",
        python("vehicle.py")
            .args(["--connect", &format!("udpout:127.0.0.1:{udp}")])
            .args([
                "--sysid",
                &sysid.to_string(),
                "--lat",
                "38.29",
                "--lon",
                "-122.45",
            ])
            .args([
                "--rate",
                &rate.to_string(),
                "--battery",
                "80",
                "--speed",
                "2",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    v.wait_event("ready", Duration::from_secs(30));
    v
}

/// The pymavlink autopilot (`peers/autopilot.py`), quiet like a fresh ArduPilot until asked,
/// sending to `connect` (a pymavlink connection string) as system `sysid`; `extra` are its
/// options. Ready when this returns; `send_line` drives it (`reboot`, `silence S`).
pub fn autopilot(connect: &str, sysid: u8, extra: &[&str]) -> Proc {
    let mut v = Proc::spawn(
        "pymavlink autopilot",
        python("autopilot.py")
            .args(["--connect", connect, "--sysid", &sysid.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    v.wait_event("ready", Duration::from_secs(30));
    v
}

/// A relay with org `vineyard-co` and its station `pi-north` enrolled, HQ answering, and
/// that station running with `udpin` on `udp`, syncing to it.
pub fn synced_station(udp: u16) -> (CloudRelay, EdgeDaemon) {
    let mut relay = CloudRelay::new();
    let data = relay.enroll_pi_north();
    relay.start();
    relay.wait_hq();
    let station = EdgeDaemon::start_in(data, &[format!("udpin:127.0.0.1:{udp}")], &[]);
    (relay, station)
}

/// An independent WebSocket client (`peers/stream_client.py`, the `websockets` library) on
/// the daemon's `/api/v1/stream{query}`, open when this returns; one JSON message per line.
pub fn stream_client(daemon: &EdgeDaemon, token: &str, query: &str) -> Proc {
    let mut p = Proc::spawn(
        "stream client",
        stream_client_command(daemon, token, query).stdout(Stdio::piped()),
    );
    p.wait_line(Duration::from_secs(30), |l| l.contains("\"open\""));
    p
}

/// The command that runs `peers/stream_client.py` on the daemon's `/api/v1/stream{query}`,
/// for a client with options of its own.
pub fn stream_client_command(daemon: &EdgeDaemon, token: &str, query: &str) -> Command {
    let url = format!(
        "{}/api/v1/stream{query}",
        daemon.api.replacen("http://", "ws://", 1)
    );
    let mut cmd = python("stream_client.py");
    cmd.args(["--url", &url, "--token", token]);
    cmd
}

/// MAVProxy as ground station 250 on `udpin` port `gcs`, talking to vehicle `target`, and a
/// waypoint file of `n` items in the format it reads (kept in the returned directory).
pub fn mavproxy_with_a_mission(gcs: u16, target: u8, n: u32) -> (Proc, String, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("temp dir");
    let file = state.path().join("survey.txt");
    let mut wpl = String::from("QGC WPL 110\n");
    for i in 0..n {
        wpl += &format!(
            "{i}\t{}\t3\t16\t0\t0\t0\t0\t{:.7}\t{:.7}\t40\t1\n",
            u8::from(i == 0),
            38.29 + f64::from(i) * 1e-4,
            -122.45
        );
    }
    std::fs::write(&file, wpl).expect("waypoint file");
    let mavproxy = Proc::spawn(
        "mavproxy",
        Command::new("mavproxy.py")
            .arg(format!("--master=udpin:127.0.0.1:{gcs}"))
            .args(["--source-system=250", "--nowait"])
            .arg(format!("--target-system={target}"))
            .arg(format!("--state-basedir={}", state.path().display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    (mavproxy, file.display().to_string(), state)
}

/// A station hearing the pymavlink autopilot `sysid` (started with `options`) on a `udpin`
/// link, once its position is known; and a pilot's token named anna.
pub fn station_with_autopilot(sysid: u8, options: &[&str]) -> (EdgeDaemon, Proc, String) {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let ap = autopilot(&format!("udpout:127.0.0.1:{udp}"), sysid, options);
    wait_for("the vehicle's position", Duration::from_secs(30), || {
        daemon.vehicle(u64::from(sysid))?["position"]
            .is_object()
            .then_some(())
    });
    let pilot = daemon.new_token("anna", "pilot");
    (daemon, ap, pilot)
}

/// `cloud-relay --config CONFIG ARGS…`, which must succeed; its stdout.
pub fn cloud_relay_cli(config: &Path, args: &[&str]) -> String {
    let out = Command::new(bin("cloud-relay"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run cloud-relay");
    assert!(
        out.status.success(),
        "cloud-relay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the browser tests keep their screenshots.
pub fn screenshots() -> PathBuf {
    let shots = root().join("target").join("screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    shots
}

/// Runs a Playwright script from tests/browser with `args` (and `--shots`), and returns the
/// JSON object it prints last: what it found, judged by the caller. Panics with the script's
/// output if it printed none, or if it says it hit an error.
pub fn browser(script: &str, args: &[&str]) -> Value {
    let out = Command::new("node")
        .arg(root().join("tests/browser").join(script))
        .args(args)
        .arg("--shots")
        .arg(screenshots())
        .stdin(Stdio::null())
        .output()
        .expect("node (scripts/test installs playwright-core)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let found: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| {
            panic!(
                "{script} printed no result ({e}):\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    println!("{found:#}");
    assert!(found["error"].is_null(), "{script}: {found:#}");
    found
}

/// Each named screenshot was written and holds an image, not an empty page.
pub fn assert_screenshots(names: &[&str]) {
    for shot in names {
        let size = std::fs::metadata(screenshots().join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
}

/// A line of JSON, or `null` when it is not JSON.
pub fn json_line(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or(Value::Null)
}

/// `edge-daemon demo` with three copters, its API and HQ on the given loopback ports.
pub fn spawn_demo(data: &Path, api: u16, hq: u16, stdout: Stdio) -> Proc {
    Proc::spawn(
        "edge-daemon demo",
        Command::new(bin("edge-daemon"))
            .args(["demo", "--vehicles", "3"])
            .arg("--data-dir")
            .arg(data)
            .args(["--api-listen", &format!("127.0.0.1:{api}")])
            .args(["--hq-listen", &format!("127.0.0.1:{hq}")])
            .stdin(Stdio::null())
            .stdout(stdout),
    )
}

/// A daemon listening on `udpin`, hearing `vehicles` simulated copters at `rate` Hz.
pub fn station_with_fleet(vehicles: u8, rate: u32) -> (EdgeDaemon, Proc) {
    let udp = free_udp_port();
    let daemon = EdgeDaemon::start(&[format!("udpin:127.0.0.1:{udp}")]);
    let fleet = sim_fleet(udp, vehicles, rate);
    wait_for(
        &format!("{vehicles} simulated copters"),
        Duration::from_secs(30),
        || {
            let heard = daemon.try_get("/api/v1/vehicles?limit=1000")?["vehicles"]
                .as_array()?
                .len();
            (heard == usize::from(vehicles)).then_some(())
        },
    );
    (daemon, fleet)
}

/// Every item of a paged list, walked a page of `limit` at a time by its `next` (passed as
/// `cursor`, `after` or `before`), with how many pages it took. Each page is checked to hold
/// at most `limit` items, and a walk that does not end is a failure, not a hang.
pub fn walk_pages(
    mut get: impl FnMut(&str) -> Value,
    path: &str,
    items: &str,
    cursor: &str,
    limit: usize,
) -> (Vec<Value>, usize) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut all = Vec::new();
    let mut url = format!("{path}{sep}limit={limit}");
    for pages in 1..=10_000 {
        let page = get(&url);
        let got = page[items]
            .as_array()
            .unwrap_or_else(|| panic!("{url}: no {items:?} list in {page}"));
        assert!(
            got.len() <= limit,
            "{url}: {} items, limit {limit}",
            got.len()
        );
        all.extend(got.iter().cloned());
        match &page["next"] {
            Value::Null => return (all, pages),
            next => {
                let next = next
                    .as_str()
                    .map_or_else(|| next.to_string(), str::to_string);
                url = format!("{path}{sep}limit={limit}&{cursor}={next}");
            }
        }
    }
    panic!("{path}: more than 10,000 pages");
}

/// A Python peer from tests/peers, run with pymavlink in MAVLink 2 mode.
pub fn python(script: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("tests/peers").join(script))
        .env("MAVLINK20", "1")
        .stdin(Stdio::null());
    cmd
}

/// Runs a Python peer to completion and parses the last line of its output as JSON.
pub fn python_json(script: &str, args: &[&str]) -> Value {
    let out = python(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script} printed {last:?}: {e}"))
}

/// One series of a `/metrics` text, by its name and labels as printed
/// (`trellis_stream_clients`, `trellis_link_rx_frames_total{link="1",name="radio"}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// A `/metrics` document as Prometheus' own client library parses it (`peers/prom_parse.py`):
/// `{name: {"type", "samples": [[name, labels, value], …]}}`; a document it refuses fails.
pub fn parse_metrics(text: &str) -> Value {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), text).expect("write the metrics");
    python_json("prom_parse.py", &[&file.path().display().to_string()])
}

/// Runs the pymavlink ground station (`gcs.py`) on `connect` until it has heard every system
/// in `expect` and, with a `command_target`, had its COMMAND_LONG acked; returns its report.
pub fn gcs(connect: &str, expect: &[u8], command_target: Option<u8>) -> Value {
    let expect: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
    let mut args = vec![
        "--listen".to_string(),
        connect.to_string(),
        "--expect".into(),
    ];
    args.extend(expect);
    if let Some(t) = command_target {
        args.extend(["--command-target".into(), t.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python_json("gcs.py", &args)
}

/// A running edge daemon with its own data directory and API port, and an admin token
/// for its API.
pub struct EdgeDaemon {
    pub proc: Proc,
    pub api: String,
    pub data: tempfile::TempDir,
    pub token: String,
}

/// How a test runs the station: the `edge-daemon` that `cargo build` made, or another build
/// under an emulator (the Raspberry Pi's, under `qemu-aarch64`).
#[derive(Debug, Clone)]
pub struct StationExe {
    /// The program started, and its first arguments (an emulator and the binary it runs).
    program: PathBuf,
    prefix: Vec<std::ffi::OsString>,
    env: Vec<(String, String)>,
}

impl StationExe {
    /// `target/debug/edge-daemon`.
    pub fn native() -> StationExe {
        StationExe {
            program: bin("edge-daemon"),
            prefix: Vec::new(),
            env: Vec::new(),
        }
    }

    /// An aarch64 `binary` (a Raspberry Pi's) run by the user-mode emulator `qemu-aarch64`
    /// (Debian's qemu-user or qemu-user-static), its C library from the cross toolchain's
    /// sysroot.
    pub fn aarch64(binary: PathBuf) -> StationExe {
        assert!(binary.exists(), "{} is missing", binary.display());
        let path = std::env::var_os("PATH").unwrap_or_default();
        let emulator = std::env::split_paths(&path)
            .flat_map(|dir| ["qemu-aarch64", "qemu-aarch64-static"].map(|name| dir.join(name)))
            .find(|p| p.exists())
            .expect("qemu-aarch64 is not installed: apt-get install qemu-user (scripts/test does)");
        StationExe {
            program: emulator,
            prefix: vec![binary.into()],
            env: vec![("QEMU_LD_PREFIX".into(), "/usr/aarch64-linux-gnu".into())],
        }
    }

    /// The same, run with `key=value` in its environment.
    pub fn with_env(mut self, key: &str, value: impl Into<String>) -> StationExe {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// Makes a token for the station whose data directory is `data`, as an admin does
/// (`edge-daemon token create`): returns its secret.
pub fn station_token(data: &Path, name: &str, role: &str) -> String {
    station_token_with(&StationExe::native(), data, name, role)
}

/// [`station_token`] made by `exe`.
pub fn station_token_with(exe: &StationExe, data: &Path, name: &str, role: &str) -> String {
    let out = exe
        .command()
        .args(["token", "create", "--name", name, "--role", role, "--json"])
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .expect("run edge-daemon token create");
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("token create --json");
    v["secret"].as_str().expect("a secret").to_string()
}

/// Revokes a station token by name or id, as an admin does (`edge-daemon token revoke`).
pub fn revoke_station_token(data: &Path, name_or_id: &str) {
    let out = Command::new(bin("edge-daemon"))
        .args(["token", "revoke", name_or_id, "--data-dir"])
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .expect("run edge-daemon token revoke");
    assert!(
        out.status.success(),
        "token revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An HTTP agent that returns error statuses as responses.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

impl EdgeDaemon {
    pub fn start(links: &[String]) -> EdgeDaemon {
        Self::start_with(links, &[])
    }

    pub fn start_with(links: &[String], extra: &[&str]) -> EdgeDaemon {
        let data = tempfile::tempdir().expect("temp dir");
        Self::start_in(data, links, extra)
    }

    pub fn start_in(data: tempfile::TempDir, links: &[String], extra: &[&str]) -> EdgeDaemon {
        Self::start_exe(&StationExe::native(), data, links, extra)
    }

    /// [`EdgeDaemon::start_in`] with the station that `exe` runs.
    pub fn start_exe(
        exe: &StationExe,
        data: tempfile::TempDir,
        links: &[String],
        extra: &[&str],
    ) -> EdgeDaemon {
        // A daemon restarted on the same data directory gets a token of its own.
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = station_token_with(exe, data.path(), &format!("tests-{n}"), "admin");
        let port = free_tcp_port();
        let mut cmd = exe.command();
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data.path())
            .arg("--api-listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        for l in links {
            cmd.arg("--link").arg(l);
        }
        let proc = Proc::spawn("edge-daemon", &mut cmd);
        let daemon = EdgeDaemon {
            proc,
            api: format!("http://127.0.0.1:{port}"),
            data,
            token,
        };
        wait_for(
            "the daemon's API to answer",
            Duration::from_secs(20),
            || daemon.try_get("/api/v1/health"),
        );
        daemon
    }

    /// A new token with `role`, once the daemon has read it. The daemon re-reads its book on
    /// an unknown token at most every 200 ms, and every refusal counts against the address's
    /// guessing limit, so this asks four times a second, not every 20 ms.
    pub fn new_token(&self, name: &str, role: &str) -> String {
        let token = station_token(self.data.path(), name, role);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.get_as(&token, "/api/v1/vehicles").0 != 200 {
            assert!(Instant::now() < deadline, "token {name:?} never worked");
            std::thread::sleep(Duration::from_millis(250));
        }
        token
    }

    /// Runs `edge-daemon ARGS --api … --token TOKEN` against this daemon, as an operator
    /// would; its exit code and what it printed (stdout, then stderr).
    pub fn cli(&self, token: &str, args: &[&str]) -> (Option<i32>, String) {
        let out = Command::new(bin("edge-daemon"))
            .args(args)
            .args(["--api", &self.api, "--token", token])
            .output()
            .expect("edge-daemon runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }

    /// The Prometheus text of `/metrics` (no token needed).
    pub fn metrics(&self) -> String {
        agent()
            .get(format!("{}/metrics", self.api))
            .call()
            .expect("metrics")
            .body_mut()
            .read_to_string()
            .expect("metrics text")
    }

    /// Stores mission `key` of `items` as `token` (a pilot's).
    pub fn store_mission(&self, token: &str, key: &str, items: &[Value]) {
        let (code, body) = self.send_as(
            token,
            "PUT",
            &format!("/api/v1/missions/{key}"),
            &serde_json::json!({ "name": key, "items": items }),
        );
        assert_eq!(code, 200, "storing mission {key}: {body}");
    }

    /// Starts the upload of stored mission `key` to `vehicle`; the transfer's row (202).
    pub fn upload_mission(&self, token: &str, key: &str, vehicle: &str) -> Value {
        let (code, sent) = self.send_as(
            token,
            "POST",
            &format!("/api/v1/missions/{key}/upload"),
            &serde_json::json!({ "vehicle": vehicle }),
        );
        assert_eq!(code, 202, "uploading mission {key} to {vehicle}: {sent}");
        sent
    }

    /// Waits for command (or transfer) `id` to end, read as `token`; its final row.
    pub fn command_ended(&self, token: &str, id: i64) -> Value {
        wait_for(
            &format!("command {id} to end"),
            Duration::from_secs(120),
            || {
                let (_, c) = self.get_as(token, &format!("/api/v1/commands/{id}"));
                let open = matches!(
                    c["outcome"].as_str(),
                    Some("pending" | "in_progress") | None
                );
                (!open).then_some(c)
            },
        )
    }

    /// `GET` with the admin token; `None` unless it answers 200 with JSON.
    pub fn try_get(&self, path: &str) -> Option<Value> {
        let mut r = agent()
            .get(&format!("{}{path}", self.api))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .ok()?;
        if r.status().as_u16() != 200 {
            return None;
        }
        r.body_mut().read_json().ok()
    }

    pub fn get(&self, path: &str) -> Value {
        self.try_get(path)
            .unwrap_or_else(|| panic!("GET {path} failed"))
    }

    /// Sends JSON with `method` (PUT, PATCH, POST) with the admin token: status code and
    /// JSON body.
    pub fn send(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        self.send_as(&self.token, method, path, body)
    }

    /// Sends JSON with `method` and `token` (none if empty): status code and JSON body.
    pub fn send_as(&self, token: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let agent = agent();
        let url = format!("{}{path}", self.api);
        let auth = format!("Bearer {token}");
        let with_auth = |r: ureq::RequestBuilder<ureq::typestate::WithBody>| {
            if token.is_empty() {
                r
            } else {
                r.header("Authorization", &auth)
            }
        };
        let result = match method {
            "PUT" => with_auth(agent.put(&url)).send_json(body),
            "PATCH" => with_auth(agent.patch(&url)).send_json(body),
            "POST" => with_auth(agent.post(&url)).send_json(body),
            "DELETE" => with_auth(agent.delete(&url).force_send_body()).send_json(body),
            other => panic!("unsupported method {other}"),
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_json().unwrap_or(Value::Null))
    }

    /// Status code and JSON body with the admin token, for requests expected to fail.
    pub fn get_status(&self, path: &str) -> (u16, Value) {
        self.get_as(&self.token, path)
    }

    /// `GET` with `token` (none if empty): status code and JSON body (`Null` if not JSON).
    pub fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        let mut req = agent().get(&format!("{}{path}", self.api));
        if !token.is_empty() {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        let mut resp = req.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_json().unwrap_or(Value::Null);
        (status, body)
    }

    pub fn vehicle(&self, sysid: u64) -> Option<Value> {
        let v = self.try_get("/api/v1/vehicles?limit=1000")?;
        v["vehicles"]
            .as_array()?
            .iter()
            .find(|v| v["sysid"].as_u64() == Some(sysid))
            .cloned()
    }

    pub fn link_named(&self, prefix: &str) -> Option<Value> {
        let v = self.try_get("/api/v1/links")?;
        v["links"]
            .as_array()?
            .iter()
            .find(|l| l["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .cloned()
    }

    pub fn db_path(&self) -> PathBuf {
        self.data.path().join("trellis.db")
    }

    /// A read-only connection to the daemon's SQLite file.
    pub fn db(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the daemon's database");
        c.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        c
    }
}

/// A pty pair made by socat: `device` is the end the daemon opens (a stand-in for
/// /dev/ttyUSB0), `peer` the end the vehicle side writes to. Both are symlinks, like
/// /dev/serial/by-id names, and disappear when the pair is dropped (the cable is pulled).
pub struct PtyPair {
    proc: Proc,
    pub device: PathBuf,
    pub peer: PathBuf,
}

impl PtyPair {
    pub fn new(dir: &Path) -> PtyPair {
        let device = dir.join("ttyDAEMON");
        let peer = dir.join("ttyVEHICLE");
        let proc = Proc::spawn(
            "socat",
            Command::new("socat")
                .arg(format!("pty,raw,echo=0,link={}", device.display()))
                .arg(format!("pty,raw,echo=0,link={}", peer.display()))
                .stdin(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_for(
            "socat to create the pty pair",
            Duration::from_secs(10),
            || (device.exists() && peer.exists()).then_some(()),
        );
        PtyPair { proc, device, peer }
    }

    /// Pulls the cable: socat exits and both device names vanish.
    pub fn unplug(mut self) {
        // SIGTERM lets socat remove its symlinks.
        unsafe {
            libc::kill(self.proc.pid() as i32, libc::SIGTERM);
        }
        let _ = self.proc.child.wait();
        let device = self.device.clone();
        wait_for("the pty device to vanish", Duration::from_secs(10), || {
            (!device.exists()).then_some(())
        });
    }
}

/// A cloud relay with its own data directory and QUIC port, one org, and helpers to enroll
/// edges into it.
pub struct CloudRelay {
    pub proc: Option<Proc>,
    pub dir: tempfile::TempDir,
    /// The relay's data directory (CA, certificate, SQLite store): in `dir`, or shared with
    /// the other instances of a cluster.
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    /// The HQ API's HTTPS port.
    pub hq_port: u16,
    /// The relay's PostgreSQL database, when the tests run the relay on PostgreSQL.
    pub pg: Option<PgDatabase>,
}

/// Which store the tests' relays run on: SQLite (the default) or, with
/// `TRELLIS_RELAY_STORE=postgres`, a fresh database each on the local PostgreSQL server
/// (`TRELLIS_TEST_PG`, default `postgres://postgres@127.0.0.1/postgres`). `scripts/test` runs
/// the relay's tests both ways.
pub fn relay_on_postgres() -> bool {
    std::env::var("TRELLIS_RELAY_STORE").is_ok_and(|v| v == "postgres")
}

/// A NATS server of a test's own, on a port of its own, which the test may stop and start
/// again on the same port (the shared one at 127.0.0.1:4222 serves every other test).
pub struct NatsServer {
    pub port: u16,
    proc: Option<Proc>,
}

impl NatsServer {
    /// A server on a free port, not started.
    pub fn new() -> NatsServer {
        NatsServer {
            port: free_tcp_port(),
            proc: None,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it and waits until it accepts connections.
    pub fn start(&mut self) {
        self.proc = Some(Proc::spawn(
            "nats-server",
            Command::new("nats-server")
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        ));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_for(
            "nats-server to accept connections",
            Duration::from_secs(20),
            || std::net::TcpStream::connect(addr).ok().map(|_| ()),
        );
    }

    /// Kills it, as a crash or a lost host would.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }
}

impl Default for NatsServer {
    fn default() -> Self {
        Self::new()
    }
}

/// A database of its own on the local PostgreSQL server, dropped with it.
pub struct PgDatabase {
    pub url: String,
    name: String,
    admin: String,
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let admin = std::env::var("TRELLIS_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1/postgres".into());
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is not reachable: {e}"));
        let name = format!(
            "trellis_it_{}_{}",
            std::process::id(),
            PG_DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        // A leftover of an earlier run with the same process id goes first (two
        // statements: neither may run inside a transaction block).
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .expect("drop a leftover database");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the relay's database");
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("TRELLIS_TEST_PG must end in /DATABASE: {admin}"),
        };
        PgDatabase { url, name, admin }
    }

    fn backup_name(&self) -> String {
        format!("{}_backup", self.name)
    }

    fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.admin, postgres::NoTls).expect("connect to PostgreSQL")
    }

    /// Copies this database (no one may be connected) to `name`.
    fn copy(&self, name: &str) {
        let mut admin = self.admin();
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .expect("drop an old copy");
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {}", self.name))
            .expect("copy the database");
    }

    /// Replaces this database with the copy `name`.
    fn restore(&self, name: &str) {
        let mut admin = self.admin();
        admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .expect("drop the database");
        admin
            .batch_execute(&format!("CREATE DATABASE {} TEMPLATE {name}", self.name))
            .expect("restore the copy");
        admin
            .batch_execute(&format!("DROP DATABASE {name}"))
            .expect("drop the copy");
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls)
            .expect("connect to the relay's database")
    }

    /// The database goes away as it does when its server restarts or fails over: every
    /// session with it ends (the server's "terminating connection due to administrator
    /// command") and new ones are refused until [`PgDatabase::accept_connections`]. Only this
    /// database: other tests on the same server go on.
    pub fn refuse_connections(&self) {
        let mut admin = self.admin();
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false;
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
                name = self.name
            ))
            .expect("cut the database off");
    }

    /// The database is back.
    pub fn accept_connections(&self) {
        self.admin()
            .batch_execute(&format!(
                "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
                self.name
            ))
            .expect("let connections in again");
    }
}

static PG_DATABASES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            for name in [self.name.clone(), self.backup_name()] {
                let _ =
                    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

impl CloudRelay {
    pub fn new() -> CloudRelay {
        Self::on_port(free_udp_port(), None)
    }

    /// A relay on `port` whose enrollment bundles send edges to `public` (an impairment
    /// proxy, say) rather than to that port.
    pub fn on_port(port: u16, public: Option<SocketAddr>) -> CloudRelay {
        Self::in_dir(tempfile::tempdir().expect("temp dir"), port, public)
    }

    /// A relay whose config and data live in `dir` (a test file system, say).
    pub fn in_dir(dir: tempfile::TempDir, port: u16, public: Option<SocketAddr>) -> CloudRelay {
        Self::in_dir_on(
            dir,
            port,
            public,
            relay_on_postgres().then(PgDatabase::create),
        )
    }

    /// The same, its store chosen by the test: the PostgreSQL database `pg`, or SQLite in
    /// `dir` when `None`.
    pub fn in_dir_on(
        dir: tempfile::TempDir,
        port: u16,
        public: Option<SocketAddr>,
        pg: Option<PgDatabase>,
    ) -> CloudRelay {
        let public = public.map_or(format!("127.0.0.1:{port}"), |a| a.to_string());
        let config = dir.path().join("relay.toml");
        let hq_port = free_tcp_port();
        let store = pg
            .as_ref()
            .map_or(String::new(), |db| format!("[store]\nurl = {:?}\n", db.url));
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n{store}[quic]\nlisten = \"127.0.0.1:{port}\"\n\
                 public_address = \"{public}\"\nserver_names = [\"localhost\", \"127.0.0.1\"]\n\
                 [hq]\nlisten = \"127.0.0.1:{hq_port}\"\n",
                dir.path().join("data")
            ),
        )
        .expect("write relay config");
        CloudRelay {
            proc: None,
            data_dir: dir.path().join("data"),
            dir,
            config,
            port,
            hq_port,
            pg,
        }
    }

    /// `n` instances of one relay, not started: one PostgreSQL database (held by the
    /// first), one data directory (the CA and certificate), one NATS subject of their own on
    /// the local NATS server (`TRELLIS_TEST_NATS`, default `nats://127.0.0.1:4222`), each on
    /// its own ports. Each one's bundles list every instance, itself first.
    pub fn cluster(n: usize) -> Vec<CloudRelay> {
        let nats =
            std::env::var("TRELLIS_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        Self::cluster_on(n, &nats)
    }

    /// The same, on the NATS server at `nats` (one the test starts and stops, say).
    pub fn cluster_on(n: usize, nats: &str) -> Vec<CloudRelay> {
        let pg = PgDatabase::create();
        let url = pg.url.clone();
        let subject = format!("trellis.test.{}", pg.name);
        let shared = tempfile::tempdir().expect("temp dir");
        let data_dir = shared.path().join("data");
        let ports: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
        let mut pg = Some(pg);
        let mut dirs = vec![shared];
        dirs.extend((1..n).map(|_| tempfile::tempdir().expect("temp dir")));
        dirs.into_iter()
            .enumerate()
            .map(|(i, dir)| {
                let mut order = vec![ports[i]];
                order.extend(ports.iter().copied().filter(|&p| p != ports[i]));
                let public: Vec<String> = order.iter().map(|p| format!("127.0.0.1:{p}")).collect();
                let hq_port = free_tcp_port();
                let config = dir.path().join("relay.toml");
                std::fs::write(
                    &config,
                    format!(
                        "data_dir = {data_dir:?}\n[store]\nurl = {url:?}\n[quic]\n\
                         listen = \"127.0.0.1:{port}\"\npublic_address = \"{public}\"\n\
                         server_names = [\"localhost\", \"127.0.0.1\"]\n\
                         [hq]\nlisten = \"127.0.0.1:{hq_port}\"\n\
                         [cluster]\nnats = {nats:?}\ninstance = \"relay-{i}\"\n\
                         subject = {subject:?}\n",
                        port = ports[i],
                        public = public.join(","),
                    ),
                )
                .expect("write relay config");
                CloudRelay {
                    proc: None,
                    data_dir: data_dir.clone(),
                    dir,
                    config,
                    port: ports[i],
                    hq_port,
                    pg: pg.take(),
                }
            })
            .collect()
    }

    pub fn hq_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.hq_port)
    }

    /// The relay's CA certificate: HQ clients trust the HTTPS API through it.
    pub fn ca_pem(&self) -> PathBuf {
        self.data_dir.join("ca.pem")
    }

    /// Creates an HQ token for `org` with `role`.
    pub fn token(&self, org: &str, role: &str) -> String {
        self.admin(&["token", "create", "--org", org, "--role", role])
            .trim()
            .to_string()
    }

    /// An HTTPS client trusting the relay's CA (none until the relay has created it).
    fn try_hq_agent(&self) -> Option<ureq::Agent> {
        let pem = std::fs::read(self.ca_pem()).ok()?;
        let ca = ureq::tls::Certificate::from_pem(&pem).ok()?;
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
                ca,
            ])))
            .build();
        ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent()
            .into()
    }

    fn hq_agent(&self) -> ureq::Agent {
        self.try_hq_agent()
            .expect("the relay's CA certificate (is the relay started?)")
    }

    /// `GET` on the HQ API over HTTPS with `token` (none if empty): status and JSON body
    /// (`Null` when the body is not JSON).
    pub fn hq_get(&self, token: &str, path: &str) -> (u16, Value) {
        let mut req = self.hq_agent().get(format!("{}{path}", self.hq_url()));
        if !token.is_empty() {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        match req.call() {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_json().unwrap_or(Value::Null),
            ),
            Err(e) => panic!("GET {path} on the HQ API: {e}"),
        }
    }

    /// `POST` JSON on the HQ API.
    pub fn hq_post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        self.hq_send("POST", token, path, body)
    }

    /// JSON with `method` (POST, PUT, PATCH) on the HQ API.
    pub fn hq_send(&self, method: &str, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let url = format!("{}{path}", self.hq_url());
        let agent = self.hq_agent();
        let auth = format!("Bearer {token}");
        let result = match method {
            "POST" => agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(body),
            "PUT" => agent
                .put(&url)
                .header("Authorization", &auth)
                .send_json(body),
            "PATCH" => agent
                .patch(&url)
                .header("Authorization", &auth)
                .send_json(body),
            other => panic!("unsupported method {other}"),
        };
        match result {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_json().unwrap_or(Value::Null),
            ),
            Err(e) => panic!("{method} {path} on the HQ API: {e}"),
        }
    }

    /// Creates org `vineyard-co` and enrolls station `pi-north` into it; returns the
    /// station's data directory with its bundle installed. The relay is not started.
    pub fn enroll_pi_north(&self) -> tempfile::TempDir {
        self.admin(&["org", "create", "vineyard-co"]);
        let data = tempfile::tempdir().expect("temp dir");
        self.enroll("vineyard-co", "pi-north", data.path());
        data
    }

    /// The relay's Prometheus text from `/metrics` (no token needed).
    pub fn metrics(&self) -> String {
        let mut r = self
            .hq_agent()
            .get(format!("{}/metrics", self.hq_url()))
            .call()
            .unwrap_or_else(|e| panic!("GET /metrics on the HQ API: {e}"));
        r.body_mut().read_to_string().expect("metrics text")
    }

    /// Waits until the HQ API answers its health check.
    pub fn wait_hq(&self) {
        wait_for("the HQ API to answer", Duration::from_secs(30), || {
            let agent = self.try_hq_agent()?;
            let mut r = agent
                .get(format!("{}/api/v1/health", self.hq_url()))
                .call()
                .ok()?;
            (r.status().as_u16() == 200).then_some(())?;
            r.body_mut().read_json::<Value>().ok()
        });
    }

    /// Runs an admin command (`org create …`, `edge enroll …`) and returns its stdout.
    pub fn admin(&self, args: &[&str]) -> String {
        cloud_relay_cli(&self.config, args)
    }

    /// Enrolls `org/edge` and installs the bundle into an edge data directory.
    pub fn enroll(&self, org: &str, edge: &str, edge_data: &Path) {
        let bundle = self.dir.path().join(format!("{org}-{edge}.toml"));
        self.admin(&[
            "edge",
            "enroll",
            "--org",
            org,
            "--edge",
            edge,
            "-o",
            bundle.to_str().expect("utf-8 path"),
        ]);
        let status = Command::new(bin("edge-daemon"))
            .args(["sync", "enroll"])
            .arg(&bundle)
            .arg("--data-dir")
            .arg(edge_data)
            .stdout(Stdio::null())
            .status()
            .expect("run edge-daemon sync enroll");
        assert!(status.success());
    }

    pub fn start(&mut self) {
        self.proc = Some(Proc::spawn(
            "cloud-relay",
            Command::new(bin("cloud-relay"))
                .arg("--config")
                .arg(&self.config)
                .arg("serve")
                .env("RUST_LOG", "info")
                .stdin(Stdio::null()),
        ));
    }

    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Stops the relay the way an operator does (SIGINT), and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            // SAFETY: kill(2) on a child we spawned and have not yet reaped.
            unsafe {
                libc::kill(p.pid() as i32, libc::SIGINT);
            }
            let _ = p.child.wait();
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("relay.db")
    }

    /// Telemetry rows the relay holds for one edge, in sequence order, as comparable tuples:
    /// its chunks decoded with the protocol's codec.
    pub fn rows(&self, org: &str, edge: &str) -> Vec<Vec<i64>> {
        let payloads: Vec<Vec<u8>> = match &self.pg {
            Some(pg) => pg
                .client()
                .query(
                    "SELECT payload FROM telemetry_chunks
                     JOIN edges ON edges.id = telemetry_chunks.edge_id
                     WHERE edges.org = $1 AND edges.edge = $2",
                    &[&org, &edge],
                )
                .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                .unwrap_or_default(),
            None => self.sqlite_payloads(org, edge),
        };
        let mut rows: Vec<Vec<i64>> = payloads
            .iter()
            .flat_map(|p| sync_protocol::codec::decode(p).expect("a stored chunk decodes"))
            .map(|r| seq_first(r.values()))
            .collect();
        rows.sort_by_key(|r| r[0]);
        rows
    }

    /// Copies the stopped relay's database aside, as an operator's nightly backup would.
    pub fn back_up(&self) {
        match &self.pg {
            Some(pg) => pg.copy(&pg.backup_name()),
            None => {
                std::fs::copy(self.db_path(), self.dir.path().join("backup.db"))
                    .expect("back up relay.db");
            }
        }
    }

    /// Replaces the stopped relay's database with the backup: a dead disk, restored.
    pub fn restore_backup(&self) {
        match &self.pg {
            Some(pg) => pg.restore(&pg.backup_name()),
            None => {
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.db_path().display()));
                }
                std::fs::copy(self.dir.path().join("backup.db"), self.db_path())
                    .expect("restore relay.db");
            }
        }
    }

    /// The telemetry ranges the relay recorded as acknowledged and then lost, for one edge.
    pub fn gaps(&self, org: &str, edge: &str) -> Vec<(i64, i64)> {
        const SQL: &str = "SELECT from_seq, to_seq FROM gaps JOIN edges ON edges.id = gaps.edge_id
             WHERE edges.org = $1 AND edges.edge = $2 ORDER BY noted_us";
        match &self.pg {
            Some(pg) => pg
                .client()
                .query(SQL, &[&org, &edge])
                .expect("read gaps")
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
            None => {
                let db = rusqlite::Connection::open_with_flags(
                    self.db_path(),
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .expect("open relay.db");
                let mut stmt = db.prepare(&SQL.replace('$', "?")).expect("gaps query");
                stmt.query_map([org, edge], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|rows| rows.collect())
                    .expect("read gaps")
            }
        }
    }

    fn sqlite_payloads(&self, org: &str, edge: &str) -> Vec<Vec<u8>> {
        let db = match rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) {
            Ok(db) => db,
            Err(_) => return Vec::new(),
        };
        let _ = db.busy_timeout(Duration::from_secs(5));
        let Ok(mut stmt) = db.prepare(
            "SELECT payload FROM telemetry_chunks JOIN edges ON edges.id = telemetry_chunks.edge_id
             WHERE edges.org = ?1 AND edges.edge = ?2",
        ) else {
            return Vec::new();
        };
        stmt.query_map([org, edge], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .unwrap_or_default()
    }
}

impl Default for CloudRelay {
    fn default() -> Self {
        Self::new()
    }
}

/// A sample as the tests compare it at both ends: its fields in `telemetry::COLUMNS` order
/// with `seq` moved first, so `row[0]` is the sequence number.
fn seq_first(values: [i64; sync_protocol::telemetry::FIELDS]) -> Vec<i64> {
    let mut row = values.to_vec();
    let seq = sync_protocol::telemetry::COLUMNS
        .iter()
        .position(|&c| c == "seq")
        .expect("a sample has a seq");
    row[..=seq].rotate_right(1);
    row
}

/// The edge's outbox, as the same tuples as [`CloudRelay::rows`] (see `seq_first`).
pub fn edge_rows(db: &rusqlite::Connection) -> Vec<Vec<i64>> {
    let mut columns = sync_protocol::telemetry::COLUMNS.to_vec();
    columns.retain(|&c| c != "seq");
    rows_of(
        db,
        &format!(
            "SELECT seq, {} FROM telemetry ORDER BY seq",
            columns.join(", ")
        ),
        &[],
    )
}

fn rows_of(db: &rusqlite::Connection, sql: &str, args: &[&str]) -> Vec<Vec<i64>> {
    let Ok(mut stmt) = db.prepare(sql) else {
        return Vec::new();
    };
    let n = stmt.column_count();
    stmt.query_map(rusqlite::params_from_iter(args), |r| {
        (0..n).map(|i| r.get::<_, i64>(i)).collect()
    })
    .and_then(|rows| rows.collect())
    .unwrap_or_default()
}

/// A small real file system (tmpfs), unmounted when dropped.
pub struct SmallDisk {
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the test command runs as root)"
        );
        SmallDisk { path, _dir: dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
