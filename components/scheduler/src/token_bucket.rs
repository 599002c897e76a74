//! A client-side rate limit in the manner of client-go's token bucket: `qps` tokens a second,
//! at most `burst` kept, and a request that finds none waits for the next one it reserved.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(qps: f64, burst: u32, now: Instant) -> Self {
        TokenBucket {
            qps: qps.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            refilled: now,
        }
    }

    /// Takes a token at `now`; returns how long to wait before using it (zero when one was
    /// left). A token not yet there is reserved, so callers are served in turn.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.refilled = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_requests_wait_their_turn_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(50.0, 100, start);
        for _ in 0..100 {
            assert_eq!(bucket.reserve(start), Duration::ZERO);
        }
        // The 101st waits one interval, the 102nd two: reservations queue up.
        assert_eq!(bucket.reserve(start), Duration::from_millis(20));
        assert_eq!(bucket.reserve(start), Duration::from_millis(40));
        // A second later 50 tokens came back, two of them already reserved.
        let later = start + Duration::from_secs(1);
        for _ in 0..48 {
            assert_eq!(bucket.reserve(later), Duration::ZERO);
        }
        assert_eq!(bucket.reserve(later), Duration::from_millis(20));
    }

    #[test]
    fn an_idle_bucket_keeps_no_more_than_its_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3, start);
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.reserve(later), Duration::ZERO);
        }
        assert_eq!(bucket.reserve(later), Duration::from_millis(100));
    }
}
