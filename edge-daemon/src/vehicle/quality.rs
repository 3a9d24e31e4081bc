//! Link quality of one vehicle on one link: loss from MAVLink sequence numbers, and the
//! radio's own report (RADIO_STATUS) when a SiK-style radio sends one.

use serde::Serialize;

/// Loss is reported over windows of this many expected frames, so it reflects now, not the
/// whole flight.
const WINDOW: u64 = 200;

/// Counts gaps in one sender's sequence numbers.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    last: Option<u8>,
    received: u64,
    lost: u64,
    window_received: u64,
    window_lost: u64,
    loss_pct: f32,
}

impl SeqTracker {
    pub fn observe(&mut self, seq: u8) {
        if let Some(last) = self.last {
            let gap = seq.wrapping_sub(last.wrapping_add(1));
            // A gap of more than half the sequence space is a duplicate or a reordering,
            // not 200 lost frames.
            if gap < 128 {
                self.lost += u64::from(gap);
                self.window_lost += u64::from(gap);
            }
        }
        self.last = Some(seq);
        self.received += 1;
        self.window_received += 1;
        let expected = self.window_received + self.window_lost;
        if expected >= WINDOW {
            self.loss_pct = 100.0 * self.window_lost as f32 / expected as f32;
            self.window_received = 0;
            self.window_lost = 0;
        }
    }

    /// Loss over the last full window, or over what has been seen so far.
    pub fn loss_pct(&self) -> f32 {
        let expected = self.window_received + self.window_lost;
        if self.received < WINDOW && expected > 0 {
            100.0 * self.window_lost as f32 / expected as f32
        } else {
            self.loss_pct
        }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn lost(&self) -> u64 {
        self.lost
    }
}

/// RADIO_STATUS as a SiK radio reports it (device units; UINT8_MAX means unknown).
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RadioStatus {
    pub rssi: u8,
    pub remrssi: u8,
    pub noise: u8,
    pub remnoise: u8,
    /// Free space in the radio's transmit buffer, percent: low means the air link is saturated.
    pub txbuf: u8,
    pub rxerrors: u16,
    pub fixed: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_across_wraparound() {
        let mut t = SeqTracker::default();
        for seq in [250u8, 251, 253, 254, 255, 0, 3] {
            t.observe(seq);
        }
        assert_eq!(t.received(), 7);
        assert_eq!(t.lost(), 3); // 252, 1, 2
    }

    #[test]
    fn duplicates_are_not_loss() {
        let mut t = SeqTracker::default();
        for seq in [10u8, 11, 11, 12] {
            t.observe(seq);
        }
        assert_eq!(t.lost(), 0);
    }

    #[test]
    fn loss_is_windowed() {
        let mut t = SeqTracker::default();
        let mut seq = 0u8;
        for i in 0..1000 {
            seq = seq.wrapping_add(if i % 10 == 0 { 2 } else { 1 });
            t.observe(seq);
        }
        let pct = t.loss_pct();
        assert!((8.0..11.0).contains(&pct), "{pct}");
    }
}
