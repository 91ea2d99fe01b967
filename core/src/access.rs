//! Who may call the API and how often: API keys stored as hashes, a token bucket per key, and
//! how long browsers may cache a CORS preflight.

use crate::manifest::Sha256Digest;

/// `Access-Control-Max-Age` of a CORS preflight answer: 600 s, so a changed list of allowed
/// origins reaches browsers within 10 minutes (Chromium caps the value at 2 hours, Firefox at
/// 24; the Fetch Standard, "CORS-preflight cache").
pub const CORS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// The stored form of an API key: lower-case hex SHA-256 of the bearer token's bytes. Keys are
/// configured and compared only in this form, so a leaked configuration reveals no key.
#[must_use]
pub fn api_key_hash(token: &str) -> String {
    Sha256Digest::of(token.as_bytes()).hex
}

/// A token bucket (the classic rate limiter: `capacity` requests at once, refilled at
/// `refill_per_second`), one per API key. Time is passed in, in seconds since any fixed origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    /// Largest burst.
    pub capacity: f64,
    /// Sustained requests per second.
    pub refill_per_second: f64,
    tokens: f64,
    last_s: f64,
}

impl TokenBucket {
    /// A full bucket at time `now_s`.
    #[must_use]
    pub fn new(capacity: f64, refill_per_second: f64, now_s: f64) -> Self {
        Self {
            capacity,
            refill_per_second,
            tokens: capacity,
            last_s: now_s,
        }
    }

    /// Takes one token at `now_s`. `Err(retry_after_s)` says how long until one is available.
    ///
    /// # Errors
    /// The wait in seconds when the bucket is empty.
    pub fn try_take(&mut self, now_s: f64) -> Result<(), f64> {
        let elapsed = (now_s - self.last_s).max(0.0);
        self.tokens = (self.tokens + elapsed * self.refill_per_second).min(self.capacity);
        self.last_s = now_s.max(self.last_s);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - self.tokens) / self.refill_per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_bursts_then_the_refill_rate() {
        let mut bucket = TokenBucket::new(3.0, 2.0, 100.0);
        assert!((0..3).all(|_| bucket.try_take(100.0).is_ok()));
        let wait = bucket.try_take(100.0).unwrap_err();
        assert!((wait - 0.5).abs() < 1e-9, "{wait}");
        assert!(bucket.try_take(100.5).is_ok());
        assert!(bucket.try_take(100.5).is_err());
        assert!(
            (0..3).all(|_| bucket.try_take(200.0).is_ok()),
            "refills to capacity only"
        );
        assert!(bucket.try_take(200.0).is_err());
    }

    #[test]
    fn api_keys_are_stored_as_sha256_hex() {
        assert_eq!(
            api_key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
