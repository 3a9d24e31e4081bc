//! Seeded noise: a tiny PRNG and the bounded random walks built on it.
//!
//! Everything random in the simulator draws from one [`XorShift64`] per copter, so a seed
//! reproduces a run exactly.

/// xorshift64* — tiny, seeded, and good enough for sensor noise.
#[derive(Debug, Clone)]
pub(super) struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    pub(super) fn new(seed: u64) -> Self {
        // Mix the seed so that small seeds (sysids) give unrelated streams; never zero.
        let mixed = (seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        Self {
            state: if mixed == 0 {
                0x2545_F491_4F6C_DD1D
            } else {
                mixed
            },
        }
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(super) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-1, 1).
    pub(super) fn signed(&mut self) -> f64 {
        2.0 * self.uniform() - 1.0
    }
}

/// A bounded random walk: values that drift slowly (satellite count, RSSI, CPU load).
#[derive(Debug, Clone)]
pub(super) struct Wander {
    value: f64,
    lo: f64,
    hi: f64,
    step: f64,
}

impl Wander {
    pub(super) fn new(rng: &mut XorShift64, lo: f64, hi: f64, step: f64) -> Self {
        Self {
            value: lo + (hi - lo) * rng.uniform(),
            lo,
            hi,
            step,
        }
    }

    pub(super) fn next(&mut self, rng: &mut XorShift64) -> f64 {
        self.value = (self.value + self.step * rng.signed()).clamp(self.lo, self.hi);
        self.value
    }
}
