//! A rate limit in the manner of client-go's token bucket: `qps` tokens a second, at most
//! `burst` kept; a caller either takes a token if there is one, or reserves the next and waits.

use std::time::Duration;

// Tokio's clock, so that tests with paused time drive a limiter too.
use tokio::time::Instant;

#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket. A `qps` of zero or less never refills it.
    pub fn new(qps: f64, burst: u32, now: Instant) -> Self {
        TokenBucket {
            qps,
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            refilled: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if self.qps > 0.0 {
            let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        }
        self.refilled = now;
    }

    /// Takes a token at `now` if one is there (client-go's `TryAccept`). A bucket whose
    /// `qps` is zero or less accepts nothing: a rate of zero stops what it limits.
    pub fn try_accept(&mut self, now: Instant) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes a token at `now`; returns how long to wait before using it (zero when one was
    /// left). A token not yet there is reserved, so callers are served in turn.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else if self.qps > 0.0 {
            Duration::from_secs_f64(-self.tokens / self.qps)
        } else {
            Duration::MAX
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

    #[test]
    fn try_accept_takes_only_tokens_that_are_there_and_a_zero_rate_stops_everything() {
        let t0 = Instant::now();
        let mut limiter = TokenBucket::new(0.5, 1, t0);
        assert!(limiter.try_accept(t0));
        assert!(!limiter.try_accept(t0 + Duration::from_secs(1)));
        assert!(limiter.try_accept(t0 + Duration::from_secs(2)));
        let mut stopped = TokenBucket::new(0.0, 1, t0);
        assert!(!stopped.try_accept(t0 + Duration::from_secs(100)));
    }
}
