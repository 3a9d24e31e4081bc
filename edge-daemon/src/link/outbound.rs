//! The queue between the router and one link's writer, with the overflow policy written down.
//!
//! A 57600-baud radio drains about 5 KB/s while fifty vehicles produce far more. When a link
//! falls behind, periodic telemetry is coalesced to the latest frame per (system, component,
//! message id): the pilot sees current state, never a stale backlog. Behind means both many
//! frames waiting and the oldest of them waiting long: a fast link whose writer a busy core
//! left unscheduled for a few milliseconds is not behind, and its GCS still gets every frame.
//! Commands, acks, missions, parameters and text ([`dialect::is_coalescable`] is false) are
//! never coalesced; they are only dropped, and counted, past a hard cap that keeps a dead-slow
//! link from exhausting memory.
//!
//! The station's own frames (its commands, requests and heartbeat) go out before anything
//! routed through it. A link paced to its radio (`flow.rs`) takes a little at a time
//! ([`OutQueue::next_paced`]): own frames first, then those must-deliver frames, so a pilot's
//! command is not queued behind what a GCS routed through the station sends, and whatever
//! waits is behind as soon as it has waited, so chatter coalesces instead of piling up.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::dialect;
use crate::frame::Frame;

/// Frames queued before telemetry may be coalesced...
const QUEUE_SOFT_LIMIT: usize = 1_024;
/// ...once the oldest of them has also waited this long. At 200,000 frames/s the soft limit
/// is 5 ms of traffic, one scheduler time slice on a core the store shares; a radio link
/// that is really behind has waited seconds.
const BEHIND_AFTER: Duration = Duration::from_millis(50);
/// Frames queued before even must-deliver frames are dropped.
const QUEUE_HARD_LIMIT: usize = 16_384;

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Replaced an older frame of the same stream that had not been sent yet.
    Coalesced,
    /// The link is down, or the queue is at its hard limit.
    Dropped,
}

#[derive(Default)]
struct State {
    open: bool,
    /// The station's own frames: few (a pilot's commands, its requests, a heartbeat a
    /// second), and first out.
    own: VecDeque<Frame>,
    queue: VecDeque<Frame>,
    /// Latest telemetry frame per stream while the link is behind.
    latest: HashMap<(u8, u8, u32), Frame>,
    /// When the oldest frame waiting was pushed (the writer takes everything at once, so this
    /// is the first push since the queue was last empty; a paced writer keeps it while
    /// anything is left).
    oldest: Option<Instant>,
    /// The writer is pacing to a radio: any wait is a backlog.
    paced: bool,
}

#[derive(Default)]
pub struct OutQueue {
    state: Mutex<State>,
    ready: Notify,
}

impl std::fmt::Debug for OutQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutQueue")
            .field("len", &self.len())
            .finish()
    }
}

impl OutQueue {
    /// Whether the link can currently send; frames pushed to a closed queue are dropped
    /// (a command to a disconnected radio is the command layer's timeout to report).
    pub fn set_open(&self, open: bool) {
        let mut s = self.lock();
        s.open = open;
        if !open {
            s.own.clear();
            s.queue.clear();
            s.latest.clear();
            s.oldest = None;
        }
    }

    /// Queues one of the station's own frames ahead of everything routed; false if the link
    /// is down or the hard limit is reached.
    pub fn push_own(&self, frame: Frame) -> bool {
        {
            let mut s = self.lock();
            if !s.open || s.own.len() + s.queue.len() + s.latest.len() >= QUEUE_HARD_LIMIT {
                return false;
            }
            s.own.push_back(frame);
        }
        self.ready.notify_one();
        true
    }

    pub fn push(&self, frame: Frame) -> Pushed {
        self.push_at(frame, Instant::now)
    }

    /// [`push`](Self::push) with the clock given, read only when the queue is long or empty.
    fn push_at(&self, frame: Frame, now: impl Fn() -> Instant) -> Pushed {
        let outcome = {
            let mut s = self.lock();
            if !s.open {
                return Pushed::Dropped;
            }
            let len = s.own.len() + s.queue.len() + s.latest.len();
            let behind = (len >= QUEUE_SOFT_LIMIT || s.paced)
                && s.oldest
                    .is_some_and(|t| now().saturating_duration_since(t) >= BEHIND_AFTER);
            if len == 0 {
                s.oldest = Some(now());
            }
            if !behind && len < QUEUE_HARD_LIMIT {
                s.queue.push_back(frame);
                Pushed::Queued
            } else if dialect::is_coalescable(frame.message_id()) {
                let key = (frame.system_id(), frame.component_id(), frame.message_id());
                match s.latest.insert(key, frame) {
                    Some(_) => Pushed::Coalesced,
                    None if len < QUEUE_HARD_LIMIT => Pushed::Queued,
                    None => {
                        s.latest.remove(&key);
                        Pushed::Dropped
                    }
                }
            } else if len < QUEUE_HARD_LIMIT {
                s.queue.push_back(frame);
                Pushed::Queued
            } else {
                Pushed::Dropped
            }
        };
        if outcome == Pushed::Queued {
            self.ready.notify_one();
        }
        outcome
    }

    /// Waits until frames are queued, then moves them all into `out` (queue order first, then
    /// the coalesced latest frames).
    pub async fn next_batch(&self, out: &mut Vec<Frame>) {
        loop {
            {
                let mut s = self.lock();
                if !s.own.is_empty() || !s.queue.is_empty() || !s.latest.is_empty() {
                    out.extend(s.own.drain(..));
                    out.extend(s.queue.drain(..));
                    out.extend(s.latest.drain().map(|(_, f)| f));
                    s.oldest = None;
                    return;
                }
            }
            self.ready.notified().await;
        }
    }

    /// [`next_batch`](Self::next_batch) for a paced writer: at most `max_bytes` (at least one
    /// frame): the station's own frames, then routed must-deliver frames, then telemetry, each
    /// in its order, then the coalesced latest; the rest stays queued. `None` for `max_bytes`
    /// takes everything and ends pacing.
    pub async fn next_paced(&self, out: &mut Vec<Frame>, max_bytes: Option<usize>) {
        let Some(max) = max_bytes else {
            self.lock().paced = false;
            return self.next_batch(out).await;
        };
        loop {
            {
                let mut s = self.lock();
                s.paced = true;
                if !s.own.is_empty() || !s.queue.is_empty() || !s.latest.is_empty() {
                    let mut used = 0;
                    let mut fits = |f: &Frame| {
                        let ok = used == 0 || used + f.len() <= max;
                        if ok {
                            used += f.len();
                        }
                        ok
                    };
                    while let Some(f) = s.own.pop_front() {
                        if fits(&f) {
                            out.push(f);
                        } else {
                            s.own.push_front(f);
                            break;
                        }
                    }
                    let mut rest = VecDeque::with_capacity(s.queue.len());
                    for f in s.queue.drain(..) {
                        if !dialect::is_coalescable(f.message_id()) && fits(&f) {
                            out.push(f);
                        } else {
                            rest.push_back(f);
                        }
                    }
                    let mut kept = VecDeque::with_capacity(rest.len());
                    for f in rest {
                        if dialect::is_coalescable(f.message_id()) && fits(&f) {
                            out.push(f);
                        } else {
                            kept.push_back(f);
                        }
                    }
                    s.queue = kept;
                    let keys: Vec<_> = s.latest.keys().copied().collect();
                    for key in keys {
                        if s.latest.get(&key).is_some_and(&mut fits) {
                            out.extend(s.latest.remove(&key));
                        }
                    }
                    if s.own.is_empty() && s.queue.is_empty() && s.latest.is_empty() {
                        s.oldest = None;
                    }
                    return;
                }
            }
            self.ready.notified().await;
        }
    }

    pub fn len(&self) -> usize {
        let s = self.lock();
        s.own.len() + s.queue.len() + s.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every
        // operation is a single collection call), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::MavMessage;
    use crate::frame::Version;
    use mavlink::dialects::ardupilotmega as apm;

    fn position(sys: u8, seq: u8) -> Frame {
        let msg = MavMessage::GLOBAL_POSITION_INT(apm::GLOBAL_POSITION_INT_DATA {
            time_boot_ms: u32::from(seq),
            ..Default::default()
        });
        Frame::encode(Version::V2, sys, 1, seq, &msg)
    }

    fn command(seq: u8) -> Frame {
        let msg = MavMessage::COMMAND_LONG(apm::COMMAND_LONG_DATA {
            target_system: 1,
            ..Default::default()
        });
        Frame::encode(Version::V2, 255, 190, seq, &msg)
    }

    #[test]
    fn closed_queue_drops() {
        let q = OutQueue::default();
        assert_eq!(q.push(position(1, 0)), Pushed::Dropped);
        q.set_open(true);
        assert_eq!(q.push(position(1, 0)), Pushed::Queued);
    }

    #[tokio::test]
    async fn a_slow_link_gets_latest_telemetry_and_every_command() {
        let q = OutQueue::default();
        q.set_open(true);
        let t0 = Instant::now();
        for i in 0..QUEUE_SOFT_LIMIT {
            q.push_at(position(1, i as u8), || t0);
        }
        // Many waiting, but not for long: a busy moment, not a slow link.
        let soon = t0 + BEHIND_AFTER / 2;
        assert_eq!(q.push_at(position(2, 0), || soon), Pushed::Queued);
        assert_eq!(q.push_at(position(2, 0), || soon), Pushed::Queued);
        // Behind now: telemetry coalesces, commands still queue.
        let late = t0 + BEHIND_AFTER;
        assert_eq!(q.push_at(position(2, 1), || late), Pushed::Queued);
        assert_eq!(q.push_at(position(2, 2), || late), Pushed::Coalesced);
        for i in 0..10 {
            assert_eq!(q.push_at(command(i), || late), Pushed::Queued);
        }
        let mut out = Vec::new();
        q.next_batch(&mut out).await;
        assert_eq!(out.iter().filter(|f| f.message_id() == 76).count(), 10);
        let from_2: Vec<u8> = out
            .iter()
            .filter(|f| f.system_id() == 2)
            .map(|f| f.sequence())
            .collect();
        assert_eq!(from_2, [0, 0, 2], "the latest copy wins");
        assert!(q.is_empty());

        // Drained: the next frame starts a new wait, and a full queue of new frames queues.
        let later = late + BEHIND_AFTER * 10;
        for i in 0..=QUEUE_SOFT_LIMIT {
            assert_eq!(q.push_at(position(3, i as u8), || later), Pushed::Queued);
        }
    }

    #[test]
    fn past_the_hard_limit_even_a_fresh_queue_drops() {
        let q = OutQueue::default();
        q.set_open(true);
        let t0 = Instant::now();
        for i in 0..QUEUE_HARD_LIMIT {
            assert_eq!(q.push_at(command(i as u8), || t0), Pushed::Queued);
        }
        assert_eq!(q.push_at(command(0), || t0), Pushed::Dropped);
        assert_eq!(q.push_at(position(1, 0), || t0), Pushed::Dropped);
    }

    #[tokio::test]
    async fn a_paced_take_puts_commands_first_and_stops_at_its_budget() {
        let q = OutQueue::default();
        q.set_open(true);
        let t0 = Instant::now();
        for i in 0..5 {
            q.push_at(position(1, i), || t0);
        }
        q.push_at(command(9), || t0);
        assert!(q.push_own(command(7)));
        let mut out = Vec::new();
        let (c, p) = (command(0).len(), position(1, 0).len());
        q.next_paced(&mut out, Some(2 * c + p)).await;
        let seqs: Vec<(u32, u8)> = out.iter().map(|f| (f.message_id(), f.sequence())).collect();
        assert_eq!(
            seqs,
            [(76, 7), (76, 9), (33, 0)],
            "the station's own command, then the routed one (queued after telemetry), then \
             telemetry in its order, as far as the budget goes"
        );
        // Paced and waited: a repeat of the same stream replaces the copy that waits.
        let later = t0 + BEHIND_AFTER;
        assert_eq!(q.push_at(position(1, 5), || later), Pushed::Queued);
        assert_eq!(q.push_at(position(1, 6), || later), Pushed::Coalesced);
        out.clear();
        q.next_paced(&mut out, Some(1)).await;
        assert_eq!(out.len(), 1, "at least one frame, whatever the budget");
        out.clear();
        q.next_paced(&mut out, None).await;
        assert!(q.is_empty(), "unpaced: everything");
    }
}
