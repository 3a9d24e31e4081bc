//! What the benches that run the daemon as its own process share: the release daemon with a
//! `udpin` link and a token, and the frames a copter sends.

// Each bench includes this module and uses part of it.
#![allow(dead_code)]

pub mod radio;

use std::process::{Child, Command, Stdio};

use edge_daemon::dialect::MavMessage;
use mavlink::dialects::ardupilotmega as apm;

/// The release daemon, serving on loopback, killed when dropped.
pub struct Daemon {
    pub api: u16,
    pub udp: u16,
    /// A viewer's token, or the role `start_with` was given.
    pub token: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[], "viewer")
    }

    /// With `links` besides its `udpin`, and a token with `role`.
    pub fn start_with(links: &[String], role: &str) -> Daemon {
        Daemon::start_configured(links, role, |_| {})
    }

    /// As `start_with`, with `configure` applied to the daemon's command before it starts
    /// (its CPU affinity, say).
    pub fn start_configured(
        links: &[String],
        role: &str,
        configure: impl FnOnce(&mut Command),
    ) -> Daemon {
        let bin = env!("CARGO_BIN_EXE_edge-daemon");
        let dir = tempfile::tempdir().expect("temp dir");
        let token = Command::new(bin)
            .args(["token", "create", "--name", "bench", "--role", role])
            .arg("--data-dir")
            .arg(dir.path())
            .stderr(Stdio::null())
            .output()
            .expect("token create");
        let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
        let (api, udp) = (free_port(), free_port());
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--api-listen", &format!("127.0.0.1:{api}")])
            .args(["--link", &format!("udpin:127.0.0.1:{udp}")])
            .args(links.iter().flat_map(|l| ["--link", l.as_str()]))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        configure(&mut command);
        let child = command.spawn().expect("start the daemon");
        Daemon {
            api,
            udp,
            token,
            child,
            _dir: dir,
        }
    }
}

impl Daemon {
    /// CPU time the daemon has used, user and system, from /proc (Linux).
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// CPU time process `pid` has used, user and system, from /proc (Linux); 0 once it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name and state.
    (ticks(11) + ticks(12)) / 100.0
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebSocket client of the daemon's live stream.
pub type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the stream at `url`, retried while the daemon starts (its API may not listen yet);
/// a bench that cannot connect within 30 s stops.
pub async fn open_stream(url: &str) -> Stream {
    let started = std::time::Instant::now();
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => return ws,
            Err(_) if started.elapsed() < std::time::Duration::from_secs(30) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot open the stream: {e}"),
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub fn heartbeat() -> MavMessage {
    MavMessage::HEARTBEAT(apm::HEARTBEAT_DATA {
        mavtype: apm::MavType::MAV_TYPE_QUADROTOR,
        autopilot: apm::MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA,
        base_mode: apm::MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
        custom_mode: 5,
        system_status: apm::MavState::MAV_STATE_ACTIVE,
        mavlink_version: 3,
    })
}

pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i]
}
