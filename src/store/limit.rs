//! Bandwidth limiting for `--limit-upload` / `--limit-download`: a token
//! bucket that may run into debt.
//!
//! Algorithm: the classic token bucket (tokens accrue at `rate` bytes per
//! second up to a burst of `rate` × 0.5 s), except that a request for more
//! bytes than are available is granted at once and leaves the bucket in debt;
//! the caller then sleeps until the debt is repaid. Requests of any size (a
//! whole 16 MiB pack) therefore work, concurrent callers queue behind each
//! other's debt, and the long-run rate never exceeds `rate`. (governor's GCRA
//! limiter was considered; it rejects requests larger than its burst, which
//! would force splitting every pack into burst-sized pieces.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A shared byte-rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    /// Bytes per second.
    rate: f64,
    /// Largest number of saved-up tokens, bytes.
    burst: f64,
    /// (tokens available, may be negative; time of the last refill).
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A limiter for `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        let rate = bytes_per_sec.max(1) as f64;
        RateLimiter {
            rate,
            burst: rate * 0.5,
            state: Mutex::new((0.0, Instant::now())),
        }
    }

    /// Accounts for `n` bytes and returns how long the caller must wait
    /// before sending or after receiving them.
    pub fn reserve(&self, n: u64) -> Duration {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(st.1).as_secs_f64();
        st.0 = (st.0 + elapsed * self.rate).min(self.burst);
        st.1 = now;
        st.0 -= n as f64;
        if st.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-st.0 / self.rate)
        }
    }

    /// Waits (asynchronously) until `n` more bytes fit within the rate.
    pub(crate) async fn take(&self, n: u64) {
        let d = self.reserve(n);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_grows_with_requests() {
        let l = RateLimiter::new(1000);
        // 0 tokens at start: 500 bytes cost 0.5 s, the next 500 another 0.5 s.
        let a = l.reserve(500);
        let b = l.reserve(500);
        assert!(a.as_secs_f64() > 0.45 && a.as_secs_f64() <= 0.5, "{a:?}");
        assert!(b.as_secs_f64() > 0.95 && b.as_secs_f64() <= 1.0, "{b:?}");
    }

    #[test]
    fn idle_time_refills_up_to_burst() {
        let l = RateLimiter::new(1_000_000);
        std::thread::sleep(Duration::from_millis(700));
        // Burst is 0.5 s worth: 500 kB are free, 600 kB cost ~0.1 s.
        assert_eq!(l.reserve(500_000), Duration::ZERO);
        let d = l.reserve(100_000);
        assert!(d.as_secs_f64() > 0.05 && d.as_secs_f64() <= 0.1, "{d:?}");
    }
}
