//! Paces sync to a byte rate, for metered cellular and satellite links: an admin caps what the
//! ground station may spend, and the backlog drains within it.
//!
//! A token bucket whose balance may go negative: a batch is sent as soon as the balance is
//! positive, then the balance pays for it, so the average rate holds even when one batch is
//! larger than a second's allowance.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Pacer {
    bytes_per_s: f64,
    balance: f64,
    at: Instant,
}

impl Pacer {
    /// `bytes_per_s` must be positive; a burst of up to one second's allowance is allowed.
    pub fn new(bytes_per_s: u64, now: Instant) -> Pacer {
        let rate = bytes_per_s.max(1) as f64;
        Pacer {
            bytes_per_s: rate,
            balance: rate,
            at: now,
        }
    }

    /// How long to wait before sending anything now.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.balance > 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.balance / self.bytes_per_s)
        }
    }

    /// Charges `bytes` just sent.
    pub fn spend(&mut self, bytes: usize, now: Instant) {
        self.refill(now);
        self.balance -= bytes as f64;
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.balance = (self.balance + elapsed * self.bytes_per_s).min(self.bytes_per_s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_rate_holds_for_batches_larger_than_a_second() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000, t0);
        let mut now = t0;
        let mut sent = 0usize;
        for _ in 0..10 {
            now += p.wait(now);
            p.spend(2_500, now);
            sent += 2_500;
        }
        // The last send may start once everything before it, less the 1,000-byte burst, is
        // paid for at 1,000 B/s: (25,000 - 2,500 - 1,000) / 1,000 = 21.5 s.
        let elapsed = now.duration_since(t0).as_secs_f64();
        assert!((elapsed - 21.5).abs() < 1e-6, "{elapsed}");
        assert_eq!(sent, 25_000);
    }

    #[test]
    fn an_idle_link_only_banks_one_second() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000, t0);
        let later = t0 + Duration::from_secs(3_600);
        assert_eq!(p.wait(later), Duration::ZERO);
        p.spend(1_500, later);
        assert_eq!(p.wait(later), Duration::from_millis(500));
    }
}
