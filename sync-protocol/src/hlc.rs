//! Hybrid logical clocks (Kulkarni et al., 2014): timestamps that follow physical time when
//! clocks agree, and still order causally related events when they do not.
//!
//! A timestamp is (wall microseconds, logical counter, node id), compared in that order. The
//! node id makes the order total, which gives last-writer-wins a deterministic tie-break:
//! two replicas that saw the same set of changes pick the same winner.
//!
//! Physical time is passed in rather than read here, so the edge can use its anchored clock
//! (see the edge daemon's `clock.rs`) and tests can be exact.

/// One HLC timestamp. `Ord` is the conflict order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    pub wall_us: u64,
    pub logical: u32,
    pub node: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HlcError {
    #[error(
        "remote clock is {ahead_us} µs ahead of ours, more than the {max_drift_us} µs allowed"
    )]
    TooFarAhead { ahead_us: u64, max_drift_us: u64 },
    #[error("logical counter exhausted")]
    Overflow,
}

/// A node's clock.
#[derive(Debug, Clone)]
pub struct Hlc {
    last: Timestamp,
    max_drift_us: u64,
}

impl Hlc {
    /// `max_drift_us`: how far ahead of local physical time a remote timestamp may be before
    /// it is refused (a peer whose wall clock is days off must not win every conflict).
    pub fn new(node: u64, max_drift_us: u64) -> Hlc {
        Hlc {
            last: Timestamp {
                wall_us: 0,
                logical: 0,
                node,
            },
            max_drift_us,
        }
    }

    pub fn node(&self) -> u64 {
        self.last.node
    }

    /// The latest timestamp issued or observed.
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// A timestamp for a local event (an edit, a send), strictly greater than any before.
    pub fn now(&mut self, physical_us: u64) -> Result<Timestamp, HlcError> {
        if physical_us > self.last.wall_us {
            self.last.wall_us = physical_us;
            self.last.logical = 0;
        } else {
            self.last.logical = self.last.logical.checked_add(1).ok_or(HlcError::Overflow)?;
        }
        Ok(self.last)
    }

    /// Merges a timestamp received from another node; returns the local timestamp of the
    /// receive event, greater than both.
    pub fn observe(&mut self, remote: Timestamp, physical_us: u64) -> Result<Timestamp, HlcError> {
        if remote.wall_us > physical_us.saturating_add(self.max_drift_us) {
            return Err(HlcError::TooFarAhead {
                ahead_us: remote.wall_us - physical_us,
                max_drift_us: self.max_drift_us,
            });
        }
        let wall = physical_us.max(self.last.wall_us).max(remote.wall_us);
        let logical = if wall == self.last.wall_us && wall == remote.wall_us {
            self.last.logical.max(remote.logical).checked_add(1)
        } else if wall == self.last.wall_us {
            self.last.logical.checked_add(1)
        } else if wall == remote.wall_us {
            remote.logical.checked_add(1)
        } else {
            Some(0)
        };
        self.last.wall_us = wall;
        self.last.logical = logical.ok_or(HlcError::Overflow)?;
        Ok(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DRIFT: u64 = 60_000_000;

    #[test]
    fn follows_physical_time_and_breaks_ties_with_a_counter() {
        let mut c = Hlc::new(1, DRIFT);
        let a = c.now(100).unwrap();
        let b = c.now(100).unwrap();
        let d = c.now(50).unwrap(); // the wall clock stepped back
        assert!(a < b && b < d);
        assert_eq!((d.wall_us, d.logical), (100, 2));
        assert_eq!(c.now(200).unwrap().logical, 0);
    }

    #[test]
    fn receiving_orders_after_the_sender() {
        let mut edge = Hlc::new(1, DRIFT);
        let mut relay = Hlc::new(2, DRIFT);
        let sent = edge.now(5_000).unwrap();
        // The relay's clock is behind; its receive event still comes after the send.
        let received = relay.observe(sent, 1_000).unwrap();
        assert!(received > sent);
        assert!(relay.now(1_001).unwrap() > received);
    }

    #[test]
    fn a_clock_days_ahead_is_refused() {
        let mut c = Hlc::new(1, DRIFT);
        let remote = Timestamp {
            wall_us: 3 * 86_400_000_000,
            logical: 0,
            node: 9,
        };
        assert!(matches!(
            c.observe(remote, 1_000),
            Err(HlcError::TooFarAhead { .. })
        ));
        assert_eq!(
            c.last().wall_us,
            0,
            "a refused timestamp leaves the clock alone"
        );
    }

    proptest! {
        /// Whatever mix of local events and receives, in any order of physical times, every
        /// timestamp a clock issues is strictly greater than the one before and than every
        /// timestamp it has observed.
        #[test]
        fn timestamps_strictly_increase(
            events in prop::collection::vec((any::<bool>(), 0u64..1_000_000, 0u64..1_000_000, 0u32..5), 1..200)
        ) {
            let mut c = Hlc::new(1, u64::MAX / 2);
            let mut prev = Timestamp::default();
            for (local, physical, remote_wall, remote_logical) in events {
                let t = if local {
                    c.now(physical).unwrap()
                } else {
                    let remote = Timestamp { wall_us: remote_wall, logical: remote_logical, node: 2 };
                    let t = c.observe(remote, physical).unwrap();
                    prop_assert!(t > remote);
                    t
                };
                prop_assert!(t > prev);
                prev = t;
            }
        }
    }
}
