//! The daemon's notion of wall time.
//!
//! A Raspberry Pi has no real-time clock: after an offline boot its system time can be days
//! off. So receive times come from the monotonic clock, anchored to the best wall time known:
//! the system clock when the kernel says it is synchronised (NTP, chrony, GPS-PPS), else the
//! GPS time a vehicle reports in SYSTEM_TIME, else the unsynchronised system clock. Every
//! sample records which source its timestamp came from, so history can be judged later.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The sample's own record of its clock (`TelemetryRow::time_source`).
pub use sync_protocol::telemetry::TimeSource;

/// GPS time before this is a receiver without a fix, not a date (2020-01-01).
const PLAUSIBLE_GPS_US: u64 = 1_577_836_800_000_000;
/// Re-anchoring to GPS only when drift exceeds this keeps radio latency jitter out.
const GPS_REANCHOR: Duration = Duration::from_millis(500);
/// How often the kernel's synchronisation state is asked again.
const SYSTEM_RECHECK: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Clock {
    anchor: Instant,
    anchor_us: i64,
    source: TimeSource,
    checked: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Clock {
        let now = Instant::now();
        let source = if system_clock_synchronised() {
            TimeSource::SystemSynced
        } else {
            TimeSource::SystemUnsynced
        };
        Clock {
            anchor: now,
            anchor_us: system_now_us(),
            source,
            checked: now,
        }
    }

    pub fn source(&self) -> TimeSource {
        self.source
    }

    /// Wall time, in microseconds since the Unix epoch, of a monotonic instant.
    pub fn wall_us(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.anchor) {
            Some(d) => self.anchor_us + d.as_micros() as i64,
            None => self.anchor_us - self.anchor.duration_since(at).as_micros() as i64,
        }
    }

    pub fn now_us(&self) -> i64 {
        self.wall_us(Instant::now())
    }

    /// Follows the system clock while it is synchronised. Call about once a second.
    pub fn tick(&mut self, now: Instant) {
        if now.duration_since(self.checked) < SYSTEM_RECHECK {
            return;
        }
        self.checked = now;
        if system_clock_synchronised() {
            self.anchor = now;
            self.anchor_us = system_now_us();
            self.source = TimeSource::SystemSynced;
        }
    }

    /// A vehicle reported GPS time `unix_us`, heard at `at`.
    pub fn observe_gps(&mut self, unix_us: u64, at: Instant) {
        if self.source == TimeSource::SystemSynced || unix_us < PLAUSIBLE_GPS_US {
            return;
        }
        let gps_us = unix_us as i64;
        let drift = (self.wall_us(at) - gps_us).unsigned_abs();
        if self.source == TimeSource::SystemUnsynced || drift > GPS_REANCHOR.as_micros() as u64 {
            if self.source == TimeSource::SystemUnsynced {
                tracing::info!(
                    drift_ms = drift / 1000,
                    "clock anchored to vehicle GPS time"
                );
            }
            self.anchor = at;
            self.anchor_us = gps_us;
            self.source = TimeSource::Gps;
        }
    }
}

pub fn system_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Whether the kernel considers the system clock synchronised (not STA_UNSYNC).
#[cfg(target_os = "linux")]
fn system_clock_synchronised() -> bool {
    // SAFETY: ntp_adjtime with modes = 0 only reads the kernel's clock state into `tx`,
    // a plain C struct for which all-zero bytes is a valid value.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::ntp_adjtime(&mut tx) };
    state >= 0 && state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0
}

#[cfg(not(target_os = "linux"))]
fn system_clock_synchronised() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsynced() -> Clock {
        Clock {
            source: TimeSource::SystemUnsynced,
            ..Clock::new()
        }
    }

    #[test]
    fn gps_time_anchors_an_unsynchronised_clock() {
        let mut c = unsynced();
        let at = Instant::now();
        let gps = 1_800_000_000_000_000u64; // 2027
        c.observe_gps(gps, at);
        assert_eq!(c.source(), TimeSource::Gps);
        assert_eq!(c.wall_us(at), gps as i64);
        assert_eq!(
            c.wall_us(at + Duration::from_secs(2)),
            gps as i64 + 2_000_000
        );
    }

    #[test]
    fn implausible_gps_time_is_ignored() {
        let mut c = unsynced();
        c.observe_gps(12_345, Instant::now());
        assert_eq!(c.source(), TimeSource::SystemUnsynced);
    }

    #[test]
    fn small_gps_jitter_does_not_move_the_anchor() {
        let mut c = unsynced();
        let at = Instant::now();
        let gps = 1_800_000_000_000_000u64;
        c.observe_gps(gps, at);
        c.observe_gps(gps + 1_100_000, at + Duration::from_secs(1));
        assert_eq!(
            c.wall_us(at),
            gps as i64,
            "100 ms of jitter is not a re-anchor"
        );
    }

    #[test]
    fn synchronised_system_time_wins_over_gps() {
        let mut c = Clock {
            source: TimeSource::SystemSynced,
            ..Clock::new()
        };
        let before = c.now_us();
        c.observe_gps(1_800_000_000_000_000, Instant::now());
        assert_eq!(c.source(), TimeSource::SystemSynced);
        assert!(c.now_us() - before < 1_000_000);
    }
}
