//! Bearer tokens: how a secret is made, stored (only its hash), carried and guessed at.
//!
//! A secret is 24 random bytes in hex behind a prefix that says whose it is. Only its
//! SHA-256 is stored, so a copied database grants nothing. Clients send it as
//! `Authorization: Bearer …`; browsers, which cannot set headers on a WebSocket, may send it
//! as `?access_token=…`. Failed attempts are limited per address ([`FailedSignIns`]), so a
//! phone on the crew Wi-Fi cannot try tokens at line rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::request::Parts;

/// Secrets longer than this are refused before hashing.
pub const MAX_SECRET_LEN: usize = 256;

#[derive(Debug)]
pub struct NoRandomness;

impl std::fmt::Display for NoRandomness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the system's random number generator failed")
    }
}

impl std::error::Error for NoRandomness {}

/// A new secret: `prefix` and 48 hex digits (192 random bits).
pub fn new_secret(prefix: &str) -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| NoRandomness)?;
    Ok(format!("{prefix}{}", hex(&bytes)))
}

/// What is stored for a secret: its SHA-256, in hex.
pub fn hash(secret: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The secret a request carries: `Authorization: Bearer …`, else `?access_token=…`.
/// `None` when it carries none; an empty or oversized one is returned as it is, to fail.
pub fn bearer(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let h = h.to_str().unwrap_or_default();
        return Some(
            h.strip_prefix("Bearer ")
                .unwrap_or_default()
                .trim()
                .to_string(),
        );
    }
    parts.uri.query()?.split('&').find_map(|kv| {
        kv.strip_prefix("access_token=")
            .map(|t| t.trim().to_string())
    })
}

/// Failed sign-ins per client address, as token buckets: `burst` attempts at once, then
/// one more every `refill`. An address that has used them up gets 429 (even with a good
/// token, until its bucket refills), which makes guessing a 192-bit secret hopeless and
/// costs an honest user who mistyped nothing.
#[derive(Debug)]
pub struct FailedSignIns {
    burst: f64,
    refill: Duration,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    left: f64,
    at: Instant,
}

/// Addresses tracked before full buckets are forgotten.
const MAX_TRACKED: usize = 10_000;

impl FailedSignIns {
    pub fn new(burst: u32, refill: Duration) -> FailedSignIns {
        FailedSignIns {
            burst: f64::from(burst.max(1)),
            refill: refill.max(Duration::from_millis(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> Bucket {
        let gained = now.saturating_duration_since(b.at).as_secs_f64() / self.refill.as_secs_f64();
        Bucket {
            left: (b.left + gained).min(self.burst),
            at: now,
        }
    }

    /// `Err(seconds)` to wait when `ip` has no attempts left.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = buckets.get(&ip) else {
            return Ok(());
        };
        let b = self.refilled(*b, now);
        if b.left >= 1.0 {
            Ok(())
        } else {
            Err(((1.0 - b.left) * self.refill.as_secs_f64()).ceil() as u64)
        }
    }

    /// Counts a failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED {
            let burst = self.burst;
            buckets.retain(|_, b| self.refilled(*b, now).left < burst);
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            left: self.burst,
            at: now,
        });
        *b = self.refilled(*b, now);
        b.left = (b.left - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_and_only_their_hash_is_kept() {
        let a = new_secret("t_").unwrap();
        let b = new_secret("t_").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 2 + 48);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert!(!hash(&a).contains(&a[2..]));
    }

    #[test]
    fn an_address_that_keeps_failing_waits_and_others_do_not() {
        let limit = FailedSignIns::new(3, Duration::from_secs(10));
        let (bad, good): (IpAddr, IpAddr) = ([10, 0, 0, 9].into(), [10, 0, 0, 7].into());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.check(bad, t0), Ok(()));
            limit.failed(bad, t0);
        }
        assert_eq!(limit.check(bad, t0), Err(10));
        assert_eq!(limit.check(good, t0), Ok(()));
        assert_eq!(limit.check(bad, t0 + Duration::from_secs(4)), Err(6));
        assert_eq!(limit.check(bad, t0 + Duration::from_secs(10)), Ok(()));
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_query() {
        let parts = |uri: &str, auth: Option<&str>| {
            let mut req = axum::http::Request::builder().uri(uri);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.body(()).unwrap().into_parts().0
        };
        assert_eq!(
            bearer(&parts("/x", Some("Bearer abc"))).as_deref(),
            Some("abc")
        );
        assert_eq!(
            bearer(&parts("/x?a=1&access_token=def", None)).as_deref(),
            Some("def")
        );
        assert_eq!(
            bearer(&parts("/x", Some("Basic Zm9v"))).as_deref(),
            Some("")
        );
        assert_eq!(bearer(&parts("/x", None)), None);
    }
}
