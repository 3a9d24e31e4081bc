//! Who writes next. Telemetry is written by the group-commit writer on its own connection,
//! back to back under load; events, record changes and cursors are written on the store's
//! other connection. SQLite lets one writer in at a time and makes the others poll with
//! growing sleeps, so under a catch-up drain a lone event could wait seconds for a gap
//! between two groups. The gate hands the lock over in-process instead, and urgent writes go
//! first: the bulk writer does not start its next group while one is waiting.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Default)]
pub(super) struct WriteGate {
    /// Urgent writers waiting for or holding the lock.
    urgent: Mutex<usize>,
    urgent_done: Condvar,
    lock: Mutex<()>,
}

/// Holds the gate; an urgent holder counts as urgent until it is dropped.
pub(super) struct Held<'a> {
    _lock: MutexGuard<'a, ()>,
    gate: Option<&'a WriteGate>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(gate) = self.gate {
            *gate.urgent.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
            gate.urgent_done.notify_all();
        }
    }
}

/// How long the bulk writer defers to urgent writes before it takes its turn regardless.
const MAX_DEFER: Duration = Duration::from_secs(1);

impl WriteGate {
    /// For an event, a record change, a cursor: ahead of the next bulk group.
    pub(super) fn urgent(&self) -> Held<'_> {
        *self.urgent.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Held {
            _lock: self.lock.lock().unwrap_or_else(|p| p.into_inner()),
            gate: Some(self),
        }
    }

    /// For a group of telemetry batches: after the urgent writes that are waiting.
    pub(super) fn bulk(&self) -> Held<'_> {
        let urgent = self.urgent.lock().unwrap_or_else(|p| p.into_inner());
        drop(
            self.urgent_done
                .wait_timeout_while(urgent, MAX_DEFER, |n| *n > 0)
                .unwrap_or_else(|p| p.into_inner()),
        );
        Held {
            _lock: self.lock.lock().unwrap_or_else(|p| p.into_inner()),
            gate: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn bulk_waits_for_a_waiting_urgent_writer() {
        let gate = Arc::new(WriteGate::default());
        let first = gate.urgent();
        let (tx, rx) = std::sync::mpsc::channel();
        let g = gate.clone();
        let bulk = std::thread::spawn(move || {
            let _held = g.bulk();
            tx.send("bulk").unwrap();
        });
        // While an urgent writer holds the gate, bulk cannot start.
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        drop(first);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("bulk"));
        bulk.join().unwrap();
    }
}
