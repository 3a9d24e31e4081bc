//! Seeded noise: a tiny PRNG, the bounded random walks built on it, and GPS noise.
//!
//! Everything random in the simulator draws from one [`XorShift64`] per copter, and the GPS
//! noise (when asked for) from a second one seeded from the same seed, so a seed reproduces a
//! run exactly.

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

impl XorShift64 {
    /// A standard normal draw (Box–Muller), truncated at ±4 so that every error built on it
    /// is bounded; 6 draws in 100,000 fall beyond.
    pub(super) fn gauss(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()).clamp(-4.0, 4.0)
    }
}

/// Horizontal error that wanders, per axis (σ, metres): multipath and the atmosphere, as a
/// single-frequency receiver without corrections sees them.
pub(super) const GPS_SLOW_H_M: f64 = 0.4;
/// Vertical error that wanders (σ, metres): GNSS height is about twice as bad as position.
pub(super) const GPS_SLOW_V_M: f64 = 0.7;
/// How long the wandering error takes to forget itself, seconds.
const GPS_SLOW_TAU_S: f64 = 60.0;
/// White noise on every fix (σ, metres), horizontal per axis and vertical.
pub(super) const GPS_WHITE_H_M: f64 = 0.1;
pub(super) const GPS_WHITE_V_M: f64 = 0.2;
/// White noise on each velocity component (σ, m/s).
pub(super) const GPS_VEL_MPS: f64 = 0.1;

/// What GPS adds to the truth in a copter's reported position and velocity, in the local
/// frame (east, north, up), metres and m/s.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct GpsError {
    pub(super) east: f64,
    pub(super) north: f64,
    pub(super) up: f64,
    pub(super) ve: f64,
    pub(super) vn: f64,
    pub(super) vz: f64,
}

/// GPS noise as a real receiver has it (and the EKF passes on): per axis a slow error that
/// wanders and returns (a first-order Gauss–Markov process, the random walk of multipath
/// and the atmosphere) plus white noise on each fix, and white noise on velocity. Every
/// draw is truncated at 4σ, so the error is bounded: at most 2.0 m per horizontal axis,
/// 3.6 m vertically, 0.4 m/s per velocity component.
///
/// It draws from a generator of its own, so turning it on changes what the copter reports,
/// never how it flies.
#[derive(Debug, Clone)]
pub(super) struct GpsNoise {
    rng: XorShift64,
    /// The wandering part: east, north, up.
    slow: [f64; 3],
    now: GpsError,
}

impl GpsNoise {
    pub(super) fn new(seed: u64) -> Self {
        let mut rng = XorShift64::new(seed ^ 0x4750_5300_0000_0000);
        // Start where the process spends its time, not at zero.
        let slow = [
            GPS_SLOW_H_M * rng.gauss(),
            GPS_SLOW_H_M * rng.gauss(),
            GPS_SLOW_V_M * rng.gauss(),
        ];
        let mut noise = Self {
            rng,
            slow,
            now: GpsError::default(),
        };
        noise.advance(0.0);
        noise
    }

    /// Moves the slow error on by `dt` seconds and draws this instant's white noise.
    pub(super) fn advance(&mut self, dt: f64) {
        let keep = (-dt.max(0.0) / GPS_SLOW_TAU_S).exp();
        let fresh = (1.0 - keep * keep).sqrt();
        for (x, sigma) in self
            .slow
            .iter_mut()
            .zip([GPS_SLOW_H_M, GPS_SLOW_H_M, GPS_SLOW_V_M])
        {
            *x = (keep * *x + fresh * sigma * self.rng.gauss()).clamp(-4.0 * sigma, 4.0 * sigma);
        }
        let rng = &mut self.rng;
        self.now = GpsError {
            east: self.slow[0] + GPS_WHITE_H_M * rng.gauss(),
            north: self.slow[1] + GPS_WHITE_H_M * rng.gauss(),
            up: self.slow[2] + GPS_WHITE_V_M * rng.gauss(),
            ve: GPS_VEL_MPS * rng.gauss(),
            vn: GPS_VEL_MPS * rng.gauss(),
            vz: GPS_VEL_MPS * rng.gauss(),
        };
    }

    /// The error at this instant.
    pub(super) fn error(&self) -> GpsError {
        self.now
    }
}
