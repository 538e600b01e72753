//! A token bucket per principal (`SLRGOV_RATE_LIMIT_PER_SECOND`,
//! `SLRGOV_RATE_LIMIT_BURST`), checked right after authentication. Over
//! the limit is RESOURCE_EXHAUSTED / `RATE_LIMITED` with RetryInfo.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use slrgov_domain::{Error, Kind, Reason};

/// Beyond this many principals, full buckets are forgotten.
const PRUNE_ABOVE: usize = 10_000;

/// The limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, refilled continuously.
    pub per_second: f64,
    /// The bucket's size: how many requests may come at once.
    pub burst: u32,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every principal.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter of `limit`.
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `principal`'s bucket, or says how long to
    /// wait for one.
    pub fn check(&self, principal: &str) -> Result<(), Error> {
        self.check_at(principal, Instant::now())
    }

    fn check_at(&self, principal: &str, now: Instant) -> Result<(), Error> {
        let RateLimit { per_second, burst } = self.limit;
        let burst = f64::from(burst.max(1));
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(principal.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64(((1.0 - bucket.tokens) / per_second).max(0.001));
        Err(Error {
            kind: Kind::ResourceExhausted,
            reason: Reason::RateLimited,
            message: format!(
                "rate limit exceeded: at most {per_second} requests per second per caller \
                 (bursts of {burst}); retry later"
            ),
            violations: Vec::new(),
            metadata: Vec::new(),
            retry_after: Some(wait),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_per_principal() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 2.0,
            burst: 2,
        });
        let start = Instant::now();
        assert!(limiter.check_at("a", start).is_ok());
        assert!(limiter.check_at("a", start).is_ok());
        let refused = limiter.check_at("a", start).expect_err("over the burst");
        assert_eq!(refused.reason, Reason::RateLimited);
        let wait = refused.retry_after.expect("retry info");
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(limiter.check_at("b", start).is_ok(), "another principal");
        assert!(
            limiter
                .check_at("a", start + Duration::from_millis(500))
                .is_ok()
        );
    }
}
