//! The daemon's notion of wall time.
//!
//! A Raspberry Pi has no real-time clock: after an offline boot its system time is wherever
//! it stopped, or 1970, until NTP or a vehicle's GPS says otherwise. So receive times come
//! from the monotonic clock, anchored to the best wall time known: the system clock when the
//! kernel says it is synchronised (NTP, chrony, GPS-PPS), else the GPS time a vehicle reports
//! in SYSTEM_TIME, else the relay's (told on connecting, before sync sends anything stamped),
//! else the unsynchronised system clock, never earlier than the newest time already stored.
//! Every sample records which source its timestamp came from.
//!
//! Two rules keep stored history right across the moment a good time arrives:
//! - the first move from the unsynchronised clock to a trusted one is a [`Restamp`]: the
//!   monotonic clock ran on unbroken, so what this run stored before that moment is off by
//!   exactly the correction, and the store shifts it (`store/restamp.rs`);
//! - after that, a re-anchor never takes time backwards: times hold still until the new
//!   anchor catches up, so samples stay in order.
//!
//! [`TimeBase`] is the mapping itself, a small value the ingest loop owns through [`Clock`]
//! and hands to the store writer (in order with the data it stamps) and to the API.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The sample's own record of its clock (`TelemetryRow::time_source`).
pub use sync_protocol::telemetry::TimeSource;

/// A time before this is a GPS receiver without a fix (or a peer without a clock), not a
/// date (2020-01-01).
const PLAUSIBLE_GPS_US: u64 = 1_577_836_800_000_000;
/// Re-anchoring to GPS only when drift exceeds this keeps radio latency jitter out.
const GPS_REANCHOR: Duration = Duration::from_millis(500);
/// How often the kernel's synchronisation state is asked again.
const SYSTEM_RECHECK: Duration = Duration::from_secs(10);

/// Microseconds of the monotonic clock since this process first asked, so that a
/// [`TimeBase`] is plain numbers.
fn mono_us(at: Instant) -> i64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    match at.checked_duration_since(origin) {
        Some(d) => d.as_micros() as i64,
        None => -(origin.duration_since(at).as_micros() as i64),
    }
}

/// How a monotonic instant becomes wall time: `mono + offset`, never below `floor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBase {
    offset_us: i64,
    floor_us: i64,
    source: TimeSource,
    /// Where this run's times begin: after the newest time stored before it. Every stored
    /// time from here up is this run's, which is what a [`Restamp`] moves.
    since_us: i64,
}

impl TimeBase {
    /// The base a run starts on: the system clock, but not earlier than `newest_stored_us`
    /// (a Pi rebooted offline comes back at 1970, or at a time fake-hwclock saved).
    pub fn start(newest_stored_us: Option<i64>) -> TimeBase {
        let now = Instant::now();
        let (system_us, source) = if system_clock_synchronised() {
            (system_now_us(), TimeSource::SystemSynced)
        } else {
            let floor = newest_stored_us.map_or(i64::MIN, |t| t.saturating_add(1));
            (system_now_us().max(floor), TimeSource::SystemUnsynced)
        };
        TimeBase {
            offset_us: system_us - mono_us(now),
            floor_us: i64::MIN,
            source,
            since_us: newest_stored_us.map_or(i64::MIN, |t| t.saturating_add(1)),
        }
    }

    /// A base on which it is `now_us` now, from `source`.
    #[cfg(test)]
    pub fn fixed(now_us: i64, source: TimeSource) -> TimeBase {
        TimeBase {
            offset_us: now_us - mono_us(Instant::now()),
            floor_us: i64::MIN,
            source,
            since_us: i64::MIN,
        }
    }

    /// Where this base's times come from.
    pub fn source(&self) -> TimeSource {
        self.source
    }

    /// Whether times on this base are known to be right: GPS, a synchronised system clock,
    /// or the relay's.
    pub fn trusted(&self) -> bool {
        self.source != TimeSource::SystemUnsynced
    }

    /// Wall time, in microseconds since the Unix epoch, of a monotonic instant.
    pub fn wall_us(&self, at: Instant) -> i64 {
        (mono_us(at) + self.offset_us).max(self.floor_us)
    }

    pub fn now_us(&self) -> i64 {
        self.wall_us(Instant::now())
    }

    /// This base moved to `wall_us` at `at`, from `source`, seen at `now`: time never runs
    /// backwards from anything already stamped (up to `now`, not only up to `at`).
    fn reanchored(&self, at: Instant, now: Instant, wall_us: i64, source: TimeSource) -> TimeBase {
        TimeBase {
            offset_us: wall_us - mono_us(at),
            floor_us: self.floor_us.max(self.wall_us(at.max(now))),
            source,
            since_us: self.since_us,
        }
    }
}

/// What this run stored on the unsynchronised clock is off by `shift_us`: every time at or
/// after `since_us` (the run's start; earlier runs' times are all before it) moves by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restamp {
    pub since_us: i64,
    pub shift_us: i64,
    pub source: TimeSource,
}

/// A new time base, and the restamp it brings when it is the first trusted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adjustment {
    pub base: TimeBase,
    pub restamp: Option<Restamp>,
}

/// Where the sync client tells the clock the relay's time, heard at an instant; the clock
/// takes it in at its next [`Clock::adjust`] if it has nothing better.
#[derive(Debug, Clone, Default)]
pub struct RelayTime(Arc<Mutex<Option<(i64, Instant)>>>);

impl RelayTime {
    pub fn tell(&self, unix_us: i64, at: Instant) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((unix_us, at));
    }

    fn take(&self) -> Option<(i64, Instant)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The ingest loop's clock: the current [`TimeBase`], kept right by the kernel's state,
/// vehicles' GPS time and, failing both, the relay's. A new base takes effect only at
/// [`Clock::adjust`], which the loop calls between batches, so every frame of a batch is
/// stamped on one base.
#[derive(Debug, Clone)]
pub struct Clock {
    base: TimeBase,
    checked: Instant,
    gps: Option<(u64, Instant)>,
    relay: RelayTime,
}

impl Default for Clock {
    /// A clock on the system's time, for code that has no store to start after.
    fn default() -> Clock {
        Clock::new(TimeBase::start(None))
    }
}

impl Clock {
    pub fn new(base: TimeBase) -> Clock {
        let now = Instant::now();
        Clock {
            base,
            checked: now,
            gps: None,
            relay: RelayTime::default(),
        }
    }

    pub fn base(&self) -> TimeBase {
        self.base
    }

    pub fn source(&self) -> TimeSource {
        self.base.source
    }

    pub fn wall_us(&self, at: Instant) -> i64 {
        self.base.wall_us(at)
    }

    /// Where the relay's time is told to this clock.
    pub fn relay_time(&self) -> RelayTime {
        self.relay.clone()
    }

    /// A vehicle reported GPS time `unix_us`, heard at `at`; used at the next `adjust`.
    pub fn observe_gps(&mut self, unix_us: u64, at: Instant) {
        if unix_us >= PLAUSIBLE_GPS_US {
            self.gps = Some((unix_us, at));
        }
    }

    /// Takes in what was learnt since the last call: a synchronised system clock (asked at
    /// most every ten seconds), a vehicle's GPS time or the relay's. Returns the new base, if
    /// it moved.
    pub fn adjust(&mut self, now: Instant) -> Option<Adjustment> {
        let (at, wall_us, source) = self
            .system(now)
            .or_else(|| self.gps())
            .or_else(|| self.relay())?;
        let restamp = (!self.base.trusted()).then(|| Restamp {
            since_us: self.base.since_us,
            shift_us: wall_us - self.base.wall_us(at),
            source,
        });
        let base = if restamp.is_some() {
            // What was stored before moves with the clock, so there is nothing to hold.
            TimeBase {
                offset_us: wall_us - mono_us(at),
                floor_us: i64::MIN,
                source,
                since_us: self.base.since_us,
            }
        } else {
            self.base.reanchored(at, now, wall_us, source)
        };
        let shift_ms = (base.wall_us(at) - self.base.wall_us(at)) / 1000;
        tracing::info!(?source, shift_ms, "clock re-anchored");
        self.base = base;
        Some(Adjustment { base, restamp })
    }

    /// The synchronised system clock, when it is time to ask and it moved from this base.
    fn system(&mut self, now: Instant) -> Option<(Instant, i64, TimeSource)> {
        if now.duration_since(self.checked) < SYSTEM_RECHECK {
            return None;
        }
        self.checked = now;
        if !system_clock_synchronised() {
            return None;
        }
        let system_us = system_now_us();
        // Followed at once, then only when it moved: a base re-anchored every ten seconds
        // would keep its floor ahead of a kernel that slews.
        let drift = (self.base.wall_us(now) - system_us).unsigned_abs();
        if self.base.source == TimeSource::SystemSynced && drift < 1_000 {
            return None;
        }
        Some((now, system_us, TimeSource::SystemSynced))
    }

    /// The newest GPS time heard, unless a synchronised system clock is in charge or it
    /// agrees with this base within radio jitter.
    fn gps(&mut self) -> Option<(Instant, i64, TimeSource)> {
        let (unix_us, at) = self.gps.take()?;
        if self.base.source == TimeSource::SystemSynced {
            return None;
        }
        let drift = (self.base.wall_us(at) - unix_us as i64).unsigned_abs();
        if self.base.source == TimeSource::Gps && drift <= GPS_REANCHOR.as_micros() as u64 {
            return None;
        }
        Some((at, unix_us as i64, TimeSource::Gps))
    }

    /// The relay's time, only while nothing better has been heard: it is off by up to half
    /// a round trip, where GPS and NTP are within milliseconds.
    fn relay(&mut self) -> Option<(Instant, i64, TimeSource)> {
        let (unix_us, at) = self.relay.take()?;
        (self.base.source == TimeSource::SystemUnsynced && unix_us >= PLAUSIBLE_GPS_US as i64)
            .then_some((at, unix_us, TimeSource::Relay))
    }
}

pub fn system_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Milliseconds on the monotonic clock: for "is it still moving" checks, which a jump of
/// the system clock must not fool.
pub fn monotonic_ms() -> i64 {
    mono_us(Instant::now()) / 1000
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

    const GPS: u64 = 1_800_000_000_000_000; // 2027

    /// A clock on an unsynchronised system clock at 2000-01-01.
    fn at_2000() -> Clock {
        let now = Instant::now();
        Clock::new(TimeBase {
            offset_us: 946_684_800_000_000 - mono_us(now),
            floor_us: i64::MIN,
            source: TimeSource::SystemUnsynced,
            since_us: 946_684_800_000_000,
        })
    }

    #[test]
    fn the_first_gps_time_anchors_and_restamps_what_came_before() {
        let mut c = at_2000();
        let before = c.wall_us(Instant::now());
        let at = Instant::now();
        c.observe_gps(GPS, at);
        let adj = c.adjust(at).expect("a new base");
        assert_eq!(c.source(), TimeSource::Gps);
        assert_eq!(c.wall_us(at), GPS as i64);
        assert_eq!(
            c.wall_us(at + Duration::from_secs(2)),
            GPS as i64 + 2_000_000
        );
        let r = adj.restamp.expect("the first trusted time restamps");
        assert!(r.since_us <= before);
        assert_eq!(r.source, TimeSource::Gps);
    }

    #[test]
    fn a_restamp_maps_old_times_onto_the_new_base_exactly() {
        let mut c = at_2000();
        let then = Instant::now();
        let old = c.wall_us(then);
        let at = then + Duration::from_millis(1_500);
        c.observe_gps(GPS, at);
        let r = c.adjust(at).and_then(|a| a.restamp).expect("a restamp");
        assert_eq!(old + r.shift_us, c.wall_us(then));
    }

    #[test]
    fn implausible_gps_time_is_ignored() {
        let mut c = at_2000();
        c.observe_gps(12_345, Instant::now());
        assert_eq!(c.adjust(Instant::now()), None);
        assert_eq!(c.source(), TimeSource::SystemUnsynced);
    }

    #[test]
    fn small_gps_jitter_does_not_move_the_anchor() {
        let mut c = at_2000();
        let at = Instant::now();
        c.observe_gps(GPS, at);
        c.adjust(at);
        c.observe_gps(GPS + 1_100_000, at + Duration::from_secs(1));
        assert_eq!(c.adjust(at + Duration::from_secs(1)), None);
        assert_eq!(
            c.wall_us(at),
            GPS as i64,
            "100 ms of jitter is not a re-anchor"
        );
    }

    #[test]
    fn a_later_correction_backwards_holds_time_still_and_restamps_nothing() {
        let mut c = at_2000();
        let at = Instant::now();
        c.observe_gps(GPS, at);
        c.adjust(at);
        let later = at + Duration::from_secs(10);
        c.observe_gps(GPS + 8_000_000, later); // two seconds behind
        let adj = c.adjust(later).expect("a re-anchor");
        assert_eq!(adj.restamp, None);
        assert_eq!(
            c.wall_us(later),
            GPS as i64 + 10_000_000,
            "held, not moved back"
        );
        assert_eq!(
            c.wall_us(later + Duration::from_secs(3)),
            GPS as i64 + 11_000_000,
            "running again once the new anchor passes the old time"
        );
        let mut last = i64::MIN;
        for ms in (0..20_000).step_by(250) {
            let t = c.wall_us(at + Duration::from_millis(ms));
            assert!(t >= last, "time never runs backwards");
            last = t;
        }
    }

    #[test]
    fn the_relays_time_counts_only_when_nothing_better_is_known() {
        let mut c = at_2000();
        let at = Instant::now();
        c.relay_time().tell(GPS as i64, at);
        let adj = c.adjust(at).expect("anchored to the relay");
        assert_eq!(adj.base.source(), TimeSource::Relay);
        assert!(adj.restamp.is_some(), "the first trusted time restamps");
        assert_eq!(c.wall_us(at), GPS as i64);
        // GPS, 2 s off the relay's: believed, without restamping again.
        c.observe_gps(GPS + 2_000_000, at);
        let adj = c.adjust(at).expect("GPS is better");
        assert_eq!((adj.base.source(), adj.restamp), (TimeSource::Gps, None));
        c.relay_time().tell(GPS as i64 + 60_000_000, at);
        assert_eq!(c.adjust(at), None, "the relay does not override GPS");
    }

    #[test]
    fn a_start_never_goes_behind_what_is_stored() {
        let newest = system_now_us() + 3_600_000_000;
        let base = TimeBase::start(Some(newest));
        if base.source() == TimeSource::SystemUnsynced {
            assert!(base.now_us() > newest);
        } else {
            assert!(base.now_us() < newest, "a synchronised clock is believed");
        }
    }
}
