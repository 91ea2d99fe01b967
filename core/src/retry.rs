//! How clients retry: which failures are worth another try, and how long to wait before it.

use serde::{Deserialize, Serialize};

/// How clients retry a failed request: full-jitter exponential backoff (AWS Architecture Blog,
/// "Exponential Backoff And Jitter", 2015): attempt `n` (0-based) waits a uniform random time in
/// `[0, min(max_delay, base · 2ⁿ))`. Only transient failures are retried ([`Self::retryable`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Tries after the first. Default 6.
    pub max_retries: u32,
    /// The first backoff ceiling, in milliseconds. Default 500.
    pub base_delay_ms: f64,
    /// The largest backoff ceiling, in milliseconds. Default 30 000.
    pub max_delay_ms: f64,
    /// Requests in flight at once per client. Default 4.
    pub max_in_flight: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 6,
            base_delay_ms: 500.0,
            max_delay_ms: 30_000.0,
            max_in_flight: 4,
        }
    }
}

impl RetryPolicy {
    /// Whether an HTTP status is worth retrying: `0` (no answer: network down, CORS or
    /// connection reset), 408, 425, 429 and every 5xx. Any other 4xx will fail the same way
    /// again, so it is never retried.
    #[must_use]
    pub const fn retryable(status: u16) -> bool {
        matches!(status, 0 | 408 | 425 | 429 | 500..=599)
    }

    /// The wait before retry `attempt` (0-based), in milliseconds, for `unit_random` drawn
    /// uniformly from `[0, 1)`; `None` once `max_retries` is spent. A server's `Retry-After`
    /// (seconds) is a floor when given.
    #[must_use]
    pub fn delay_ms(
        &self,
        attempt: u32,
        unit_random: f64,
        retry_after_s: Option<f64>,
    ) -> Option<f64> {
        if attempt >= self.max_retries {
            return None;
        }
        let ceiling =
            (self.base_delay_ms * 2f64.powi(attempt.min(62) as i32)).min(self.max_delay_ms);
        let jittered = ceiling * unit_random.clamp(0.0, 1.0);
        Some(retry_after_s.map_or(jittered, |s| jittered.max(s * 1000.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy_backs_off_with_full_jitter_and_gives_up() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay_ms(0, 0.999_999, None).map(f64::round),
            Some(500.0)
        );
        assert_eq!(policy.delay_ms(3, 0.5, None), Some(2000.0));
        assert_eq!(policy.delay_ms(5, 1.0, None), Some(16_000.0));
        assert_eq!(policy.delay_ms(2, 0.0, None), Some(0.0));
        assert_eq!(policy.delay_ms(2, 0.0, Some(3.0)), Some(3000.0));
        assert_eq!(policy.delay_ms(6, 0.5, None), None);
        let long = RetryPolicy {
            max_retries: 100,
            ..policy
        };
        assert_eq!(long.delay_ms(99, 1.0, None), Some(30_000.0));
        for status in [0, 408, 425, 429, 500, 502, 503, 504] {
            assert!(RetryPolicy::retryable(status), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 409, 413, 422] {
            assert!(!RetryPolicy::retryable(status), "{status}");
        }
    }
}
