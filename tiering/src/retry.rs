//! Bounded retries with exponential backoff and full jitter, a per-request timeout, and the
//! upload byte-rate limit.

use std::future::Future;
use std::time::{Duration, Instant};

use object_store::path::Path;

use crate::error::TieringError;
use crate::metadata::TopicIdPartition;

/// How a failed store request is repeated. Every attempt is bounded by `request_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retry).
    pub attempts_max: u32,
    /// Backoff before the first retry; doubles per retry up to `backoff_max`, and each wait is
    /// drawn uniformly from `[0, backoff]` (full jitter) so that many partitions retrying after
    /// one outage don't hit the store in lockstep.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Bound on one request (one PUT, one part, one GET): a stalled store counts as a failure.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts_max: 8,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .backoff_initial
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX))
            .min(self.backoff_max);
        // Full jitter; a v4 UUID is 122 random bits, plenty for this.
        let random = uuid::Uuid::new_v4().as_u128() as u64;
        let nanos = exp.as_nanos() as u64;
        Duration::from_nanos(if nanos == 0 { 0 } else { random % (nanos + 1) })
    }

    /// Bounds one attempt by the request timeout.
    pub(crate) async fn timed<T>(
        &self,
        tp: &TopicIdPartition,
        operation: &'static str,
        path: &Path,
        attempt: impl Future<Output = Result<T, TieringError>>,
    ) -> Result<T, TieringError> {
        match tokio::time::timeout(self.request_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(TieringError::Timeout {
                tp: tp.clone(),
                operation,
                path: path.to_string(),
                timeout_ms: self.request_timeout.as_millis() as u64,
            }),
        }
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the attempts are used up.
    /// Each attempt is bounded by the request timeout.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        tp: &TopicIdPartition,
        operation: &'static str,
        path: &Path,
        mut attempt: F,
    ) -> Result<T, TieringError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TieringError>>,
    {
        let attempts_max = self.attempts_max.max(1);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.timed(tp, operation, path, attempt()).await {
                Ok(value) => return Ok(value),
                Err(error) if !error.is_retriable() => return Err(error),
                Err(error) if tries >= attempts_max => {
                    return Err(if tries == 1 {
                        error
                    } else {
                        TieringError::RetriesExhausted {
                            tp: tp.clone(),
                            operation,
                            path: path.to_string(),
                            attempts: tries,
                            source: Box::new(error),
                        }
                    })
                }
                Err(error) => {
                    let wait = self.backoff(tries - 1);
                    tracing::warn!(
                        %tp, operation, %path, attempt = tries, wait_ms = wait.as_millis() as u64,
                        error = %error, "object store request failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

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
    use std::sync::atomic::{AtomicU32, Ordering};
    use uuid::Uuid;

    fn tp() -> TopicIdPartition {
        TopicIdPartition::new("t", Uuid::nil(), 0)
    }

    fn policy(attempts_max: u32) -> RetryPolicy {
        RetryPolicy {
            attempts_max,
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(4),
            request_timeout: Duration::from_millis(200),
        }
    }

    fn transient() -> TieringError {
        TieringError::Store {
            tp: tp(),
            operation: "PUT",
            path: "p".into(),
            source: Box::new(object_store::Error::Generic {
                store: "test",
                source: "connection reset".into(),
            }),
        }
    }

    /// Transient failures are retried until success; permanent ones are not retried.
    #[tokio::test]
    async fn retries_transient_errors_only() {
        let calls = AtomicU32::new(0);
        let value = policy(5)
            .run(&tp(), "PUT", &Path::from("p"), || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(transient())
                } else {
                    Ok(7)
                }
            })
            .await
            .unwrap();
        assert_eq!((value, calls.load(Ordering::SeqCst)), (7, 4));

        let calls = AtomicU32::new(0);
        let err = policy(5)
            .run(&tp(), "GET", &Path::from("p"), || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(TieringError::Store {
                    tp: tp(),
                    operation: "GET",
                    path: "p".into(),
                    source: Box::new(object_store::Error::NotFound {
                        path: "p".into(),
                        source: "gone".into(),
                    }),
                })
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!err.is_retriable());

        let err = policy(3)
            .run(&tp(), "PUT", &Path::from("p"), || async {
                Err::<(), _>(transient())
            })
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("gave up after 3 attempts"),
            "{err}"
        );
    }

    /// A stalled request times out and is retried.
    #[tokio::test]
    async fn stalls_time_out() {
        let calls = AtomicU32::new(0);
        let value = policy(3)
            .run(&tp(), "GET", &Path::from("p"), || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                Ok(1)
            })
            .await
            .unwrap();
        assert_eq!(value, 1);
    }

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
