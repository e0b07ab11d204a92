//! The upload byte-rate limit. (Retries, backoff and request timeouts are the store decorator's:
//! [`shale_cache::RetryingStore`], configured by [`shale_cache::RetryPolicy`].)

use std::time::{Duration, Instant};

/// A token bucket over upload bytes: at most `bytes_per_second` on average, with bursts of one
/// second's worth. `None` means unlimited.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    bytes_per_second: Option<u64>,
    state: std::sync::Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    available: f64,
    refilled_at: Instant,
}

impl RateLimiter {
    pub(crate) fn new(bytes_per_second: Option<u64>) -> Self {
        Self {
            bytes_per_second: bytes_per_second.filter(|&r| r > 0),
            state: std::sync::Mutex::new(Bucket {
                available: bytes_per_second.unwrap_or(0) as f64,
                refilled_at: Instant::now(),
            }),
        }
    }

    /// Waits until `bytes` may be sent. Takes the tokens at once (going into debt), so a
    /// request larger than the burst is delayed in proportion, never refused.
    pub(crate) async fn acquire(&self, bytes: u64) {
        let Some(rate) = self.bytes_per_second else {
            return;
        };
        let wait = {
            let mut bucket = self.state.lock().expect("rate limiter lock");
            let now = Instant::now();
            let elapsed = now.duration_since(bucket.refilled_at).as_secs_f64();
            bucket.available = (bucket.available + elapsed * rate as f64).min(rate as f64);
            bucket.refilled_at = now;
            bucket.available -= bytes as f64;
            if bucket.available >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-bucket.available / rate as f64)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limiter holds a long transfer to about the configured rate.
    #[tokio::test]
    async fn rate_limit_paces_bytes() {
        let limiter = RateLimiter::new(Some(1_000_000));
        let start = Instant::now();
        for _ in 0..4 {
            limiter.acquire(500_000).await;
        }
        // 2 MB at 1 MB/s with a 1 MB burst: about one second.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }
}
