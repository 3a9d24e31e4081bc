//! What the connection pool says about reaching the database.
//!
//! While the database is away r2d2 tries to connect a few times a second, and a line for each
//! failure would bury the rest of the relay's log for the length of the outage. So the first
//! failure is logged at once (with the server's reason), later ones at most every
//! [`REPEAT`] with how many there were meanwhile, and the first connection made after them
//! once, with the count of attempts that failed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::describe;

/// How often a continuing outage is logged again.
const REPEAT: Duration = Duration::from_secs(30);

/// The pool's error handler and connection customizer: one value, cloned into both.
#[derive(Debug, Clone, Default)]
pub(super) struct PoolLog(Arc<Mutex<Outage>>);

impl PoolLog {
    fn outage(&self) -> std::sync::MutexGuard<'_, Outage> {
        // A panic elsewhere while holding this lock leaves only counters behind.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl r2d2::HandleError<postgres::Error> for PoolLog {
    fn handle_error(&self, e: postgres::Error) {
        let Some(unsaid) = self.outage().failed(Instant::now()) else {
            return;
        };
        if unsaid == 0 {
            tracing::warn!("connecting to the database: {}", describe(&e));
        } else {
            tracing::warn!(
                "connecting to the database: {} ({unsaid} more attempts failed since the last message)",
                describe(&e)
            );
        }
    }
}

impl r2d2::CustomizeConnection<postgres::Client, postgres::Error> for PoolLog {
    fn on_acquire(&self, _: &mut postgres::Client) -> Result<(), postgres::Error> {
        if let Some(failed) = self.outage().connected() {
            tracing::info!("connected to the database again after {failed} failed attempts");
        }
        Ok(())
    }
}

/// Failed attempts since the pool last connected.
#[derive(Debug, Default)]
struct Outage {
    failed: u64,
    /// When a failure was last logged, and how many have not been since.
    logged_at: Option<Instant>,
    unsaid: u64,
}

impl Outage {
    /// One more attempt failed at `now`: `Some(n)` if it is to be logged, `n` the failures
    /// not logged before it.
    fn failed(&mut self, now: Instant) -> Option<u64> {
        self.failed += 1;
        if self
            .logged_at
            .is_some_and(|t| now.saturating_duration_since(t) < REPEAT)
        {
            self.unsaid += 1;
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.unsaid))
    }

    /// A connection was made: how many attempts had failed before it, if any.
    fn connected(&mut self) -> Option<u64> {
        let failed = std::mem::take(self).failed;
        (failed > 0).then_some(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_logged_when_it_starts_every_half_minute_and_when_it_ends() {
        let mut o = Outage::default();
        assert_eq!(o.connected(), None, "connecting at start says nothing");
        let t0 = Instant::now();
        assert_eq!(o.failed(t0), Some(0), "the first failure at once");
        // Three attempts a second for a minute.
        let mut logged = vec![];
        for i in 1..180 {
            if let Some(unsaid) = o.failed(t0 + Duration::from_millis(333 * i)) {
                logged.push((i, unsaid));
            }
        }
        assert_eq!(
            logged,
            vec![(91, 90)],
            "once more after 30 s, counting those in between"
        );
        assert_eq!(
            o.connected(),
            Some(180),
            "the end, with every failed attempt"
        );
        assert_eq!(o.connected(), None, "said once");
        assert_eq!(
            o.failed(t0 + Duration::from_secs(61)),
            Some(0),
            "a new outage is said at once"
        );
    }
}
