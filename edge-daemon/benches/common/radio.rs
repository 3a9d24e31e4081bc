//! A 57,600-baud serial link made of two pty pairs, as the benches that time transfers over
//! a radio use it: the release daemon opens one slave with `serial:…:57600`, the vehicle the
//! other, and a forwarder between the masters lets bytes through at 5,760 bytes/s each way
//! (57,600 baud, 8N1), noting every frame that passes.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_daemon::frame::FrameScanner;
use serde_json::Value;

/// 57,600 baud, 8 data bits, no parity, 1 stop bit: 10 bits a byte.
pub const BYTES_PER_S: f64 = 5_760.0;

/// The link: the station's and the vehicle's ends (pty slave paths) and what each direction
/// carried. The pairs live as long as this.
pub struct Radio {
    pub station: String,
    pub vehicle: String,
    /// Station to vehicle.
    pub down: Arc<Mutex<Wire>>,
    /// Vehicle to station.
    pub up: Arc<Mutex<Wire>>,
    _slaves: (File, File),
}

impl Radio {
    pub fn start() -> Radio {
        let (station_master, station, station_slave) = pty();
        let (vehicle_master, vehicle, vehicle_slave) = pty();
        let down = Arc::new(Mutex::new(Wire::default()));
        let up = Arc::new(Mutex::new(Wire::default()));
        let clone = |f: &File| f.try_clone().expect("dup");
        forward(clone(&station_master), clone(&vehicle_master), down.clone());
        forward(vehicle_master, station_master, up.clone());
        Radio {
            station,
            vehicle,
            down,
            up,
            _slaves: (station_slave, vehicle_slave),
        }
    }
}

/// One pty pair: the master, the slave's path, and the slave (kept open so the pair lives until the
/// daemon or the simulator opens it).
fn pty() -> (File, String, File) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors into the integers it is given; no name, termios
    // or window size is passed.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: `slave` is a descriptor openpty just opened; ttyname returns a pointer to a
    // static buffer, copied at once.
    let path = unsafe {
        let name = libc::ttyname(slave);
        assert!(!name.is_null(), "ttyname");
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    };
    // SAFETY: both descriptors were opened above and are owned by these Files from now on.
    unsafe { (File::from_raw_fd(master), path, File::from_raw_fd(slave)) }
}

/// What one direction of the link carried.
#[derive(Default)]
pub struct Wire {
    /// (time, message id, bytes) of every frame.
    pub frames: Vec<(Instant, u32, usize)>,
}

/// Copies `from` to `to` at the link's rate, noting every frame.
fn forward(mut from: File, mut to: File, wire: Arc<Mutex<Wire>>) {
    std::thread::spawn(move || {
        let mut scanner = FrameScanner::new();
        let mut buf = [0u8; 256];
        let mut free_at = Instant::now();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // The wire is busy until the bytes before these are out; these take their time.
            let now = Instant::now();
            free_at = free_at.max(now) + Duration::from_secs_f64(n as f64 / BYTES_PER_S);
            std::thread::sleep(free_at.saturating_duration_since(now));
            if to.write_all(&buf[..n]).is_err() {
                return;
            }
            scanner.push(&buf[..n]);
            let at = Instant::now();
            let mut wire = wire.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(frame) = scanner.next_frame() {
                wire.frames.push((at, frame.message_id(), frame.len()));
            }
        }
    });
}

/// A JSON answer, or why there is none.
pub fn try_api(
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let auth = format!("Bearer {token}");
    let result = match body {
        Some(b) => agent
            .run(
                ureq::http::Request::builder()
                    .method(method)
                    .uri(url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .body(b.to_string())
                    .expect("request"),
            )
            .map(|mut r| r.body_mut().read_json::<Value>()),
        None => agent
            .get(url)
            .header("Authorization", &auth)
            .call()
            .map(|mut r| r.body_mut().read_json::<Value>()),
    };
    match result {
        Ok(Ok(v)) => Ok(v),
        other => Err(format!("{method} {url}: {other:?}")),
    }
}

pub fn api(method: &str, url: &str, token: &str, body: Option<&Value>) -> Value {
    try_api(method, url, token, body).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until the daemon at `base` shows vehicle `id` with a position.
pub fn wait_for_vehicle(base: &str, token: &str, id: u8) {
    let started = Instant::now();
    loop {
        // Refused while the daemon starts, 404 until the vehicle is heard.
        let v = try_api("GET", &format!("{base}/api/v1/vehicles/{id}"), token, None);
        if v.is_ok_and(|v| v["position"].is_object()) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the vehicle never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls command (or job) `id` until it ends; its final row.
pub fn wait_for_command(base: &str, token: &str, id: i64) -> Value {
    loop {
        let c = api("GET", &format!("{base}/api/v1/commands/{id}"), token, None);
        if !matches!(c["outcome"].as_str(), Some("pending" | "in_progress")) {
            return c;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
