//! Pacing what the station sends into a radio that says how full it is.
//!
//! A SiK radio (RFD900 and mLRS speak the same) injects RADIO_STATUS as system 51 ('3') into
//! the stream it hands the ground station, about once a second; its `txbuf` is the free space
//! left in the radio's transmit buffer, in percent. Bytes written to the radio faster than it
//! gets them into the air fill that buffer and are then dropped by the radio, commands among
//! them, and every byte sent up is air time the half-duplex radio does not give telemetry
//! coming down. So the station paces its writes to such a link (serial or TCP: the stream
//! writer), by the report's thresholds ArduPilot slows its own streams at: it starts at half
//! the line's rate (a half-duplex radio's fair share for one direction), halves it below 20 %
//! free, cuts a quarter below 50 %, and adds a twentieth of the line's rate back while the
//! buffer stays above 95 % free. A link whose radio never reports is not paced.
//!
//! An empty buffer says the radio kept up with what was sent, not that it could carry more:
//! while the station has little to send the buffer stays empty whatever the pace. So the pace
//! climbs only when the writer was held by it since the last report (congestion control's
//! "application-limited" rule, RFC 7661); otherwise an idle link's pace would climb to the
//! line's rate, and the first busy second after it (a parameter download, a mission upload)
//! would overflow the radio before its next report.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The system id SiK radios put on the RADIO_STATUS they inject.
pub const RADIO_SYSTEM_ID: u8 = 51;
/// The pace never drops below this: a few frames a second, so a command still gets through.
const MIN_RATE: u32 = 300;
/// The line's rate when the link does not say it (a radio behind a network bridge): 57600 baud.
const DEFAULT_LINE_RATE: u32 = 5_760;

/// One link's pace, set by the ingest loop from its radio's reports, read by its writer.
#[derive(Debug, Default)]
pub struct RadioFlow {
    /// Bytes a second the writer may send; 0 while the radio has not reported.
    rate: AtomicU32,
    /// The writer waited for the pace since the last report: it had more to send.
    held: AtomicBool,
    /// Reports taken, and the last one's `txbuf`, for the API.
    reports: AtomicU64,
    last_txbuf: AtomicU32,
}

impl RadioFlow {
    /// The link's radio reported `txbuf` % free; `line_rate` is what the serial line carries
    /// (bytes/s), 0 if unknown.
    pub fn report(&self, txbuf: u8, line_rate: u32) {
        let line = if line_rate == 0 {
            DEFAULT_LINE_RATE
        } else {
            line_rate
        };
        let current = match self.rate.load(Relaxed) {
            0 => line / 2,
            r => r,
        };
        let held = self.held.swap(false, Relaxed);
        let next = match txbuf {
            0..=19 => current / 2,
            20..=49 => current - current / 4,
            96.. if held => current + line / 20,
            _ => current,
        }
        .clamp(MIN_RATE, line);
        self.rate.store(next, Relaxed);
        self.reports.fetch_add(1, Relaxed);
        self.last_txbuf.store(u32::from(txbuf), Relaxed);
    }

    /// The writer had to wait for the pace: it is using all of it.
    pub fn held(&self) {
        self.held.store(true, Relaxed);
    }

    /// Bytes a second the writer may send, if the radio has reported.
    pub fn rate(&self) -> Option<u32> {
        match self.rate.load(Relaxed) {
            0 => None,
            r => Some(r),
        }
    }

    pub fn reports(&self) -> u64 {
        self.reports.load(Relaxed)
    }

    pub fn last_txbuf(&self) -> Option<u8> {
        (self.reports() > 0).then(|| self.last_txbuf.load(Relaxed) as u8)
    }
}

/// A token bucket in bytes: the writer's side of [`RadioFlow`].
#[derive(Debug)]
pub struct Pacer {
    tokens: f64,
    at: Instant,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            tokens: 0.0,
            at: Instant::now(),
        }
    }
}

impl Pacer {
    /// Takes `bytes` at `rate` bytes/s and says how long to wait before they go (the debt
    /// is paid by the time waited). Up to a tenth of a second's worth (at least one frame)
    /// may go at once.
    pub fn delay(&mut self, bytes: usize, rate: u32, now: Instant) -> Duration {
        let rate = f64::from(rate.max(1));
        let burst = (rate / 10.0).max(280.0);
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + earned).min(burst) - bytes as f64;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filling_radio_slows_the_link_and_an_empty_one_lets_it_recover() {
        let flow = RadioFlow::default();
        assert_eq!(flow.rate(), None, "no report, no pacing");
        flow.report(100, 5_760);
        assert_eq!(flow.rate(), Some(2_880), "half the line");
        flow.held();
        flow.report(100, 5_760);
        assert_eq!(
            flow.rate(),
            Some(3_168),
            "a step up: it was used and kept up"
        );
        flow.report(10, 5_760);
        assert_eq!(flow.rate(), Some(1_584));
        flow.report(40, 5_760);
        assert_eq!(flow.rate(), Some(1_188));
        flow.report(70, 5_760);
        assert_eq!(flow.rate(), Some(1_188), "between 50 and 95 % free: hold");
        for _ in 0..10 {
            flow.report(0, 5_760);
        }
        assert_eq!(
            flow.rate(),
            Some(MIN_RATE),
            "a floor, so commands still pass"
        );
        for _ in 0..40 {
            flow.held();
            flow.report(99, 5_760);
        }
        assert_eq!(flow.rate(), Some(5_760), "never above the line");
        assert_eq!(flow.last_txbuf(), Some(99));
    }

    #[test]
    fn an_idle_link_keeps_its_pace_however_empty_its_radio() {
        let flow = RadioFlow::default();
        for _ in 0..40 {
            flow.report(100, 5_760);
        }
        assert_eq!(flow.rate(), Some(2_880), "nothing sent, nothing learnt");
        flow.held();
        flow.report(100, 5_760);
        flow.report(100, 5_760);
        assert_eq!(
            flow.rate(),
            Some(3_168),
            "one step for the one report period the writer was held"
        );
    }

    #[test]
    fn the_pacer_lets_a_rate_through_and_no_more() {
        let mut p = Pacer::default();
        let t0 = p.at;
        let rate = 1_000;
        let mut t = t0;
        let mut sent = 0;
        // A writer that always has 50-byte frames: each goes after the wait it is told.
        while t < t0 + Duration::from_secs(10) {
            t += p.delay(50, rate, t);
            sent += 50;
        }
        assert!(
            (9_500..=10_300).contains(&sent),
            "{sent} bytes in 10 s at 1,000 B/s"
        );
    }
}
