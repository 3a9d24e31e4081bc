//! Who writes next. Telemetry is written by the group-commit writer on its own connection,
//! back to back under load; events, record changes and cursors are written on the store's
//! other connection. SQLite lets one writer in at a time and makes the others poll with
//! growing sleeps, so under a catch-up drain a lone event could wait seconds for a gap
//! between two groups. The gate hands the lock over in-process instead, and urgent writes go
//! first: the bulk writer does not start its next group while one is waiting.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(super) struct WriteGate {
    urgent_waiting: AtomicUsize,
    lock: Mutex<()>,
}

/// Holds the gate; an urgent holder also counts as waiting until it is dropped.
pub(super) struct Held<'a> {
    _lock: MutexGuard<'a, ()>,
    urgent: Option<&'a AtomicUsize>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.urgent {
            n.fetch_sub(1, SeqCst);
        }
    }
}

/// How long the bulk writer defers to urgent writes before it takes its turn regardless.
const MAX_DEFER: Duration = Duration::from_secs(1);

impl WriteGate {
    /// For an event, a record change, a cursor: ahead of the next bulk group.
    pub(super) fn urgent(&self) -> Held<'_> {
        self.urgent_waiting.fetch_add(1, SeqCst);
        Held {
            _lock: self.lock.lock().unwrap_or_else(|p| p.into_inner()),
            urgent: Some(&self.urgent_waiting),
        }
    }

    /// For a group of telemetry batches: after any urgent write that is waiting.
    pub(super) fn bulk(&self) -> Held<'_> {
        let start = Instant::now();
        while self.urgent_waiting.load(SeqCst) > 0 && start.elapsed() < MAX_DEFER {
            std::thread::sleep(Duration::from_micros(200));
        }
        Held {
            _lock: self.lock.lock().unwrap_or_else(|p| p.into_inner()),
            urgent: None,
        }
    }
}
