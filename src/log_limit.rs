//! Rate limiting for per-connection logs: a flood of bad clients must not
//! turn into a flood of log lines. Past the budget, events are still
//! counted in metrics; only their log lines are dropped, and those are
//! counted too (`stickytls_log_lines_dropped_total`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct LogLimiter {
    per_second: u64,
    /// Current second (high 32 bits) and lines logged in it (low 32 bits),
    /// in one atomic so the check is lock-free.
    window: AtomicU64,
    /// Lines dropped since the last one reported.
    dropped: AtomicU64,
    /// Lines dropped since the start, for the API's stats.
    dropped_total: AtomicU64,
    /// The same, exported; registered once, here.
    dropped_counter: metrics::Counter,
}

impl LogLimiter {
    pub fn new(per_second: u64) -> Self {
        LogLimiter {
            per_second,
            window: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            dropped_counter: metrics::counter!(crate::metrics::LOG_LINES_DROPPED),
        }
    }

    /// Lines dropped by the limit since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Whether one more line may be logged now. A budget of 0 turns the
    /// lines off: none is logged, and none counts as dropped.
    pub fn allow(&self) -> bool {
        if self.per_second == 0 {
            return false;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            & 0xffff_ffff;
        let mut cur = self.window.load(Ordering::Relaxed);
        loop {
            let (sec, n) = (cur >> 32, cur & 0xffff_ffff);
            let next = if sec != now {
                (now << 32) | 1
            } else if n < self.per_second {
                cur + 1
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped_total.fetch_add(1, Ordering::Relaxed);
                self.dropped_counter.increment(1);
                return false;
            };
            match self
                .window
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    if sec != now {
                        let d = self.dropped.swap(0, Ordering::Relaxed);
                        if d > 0 {
                            tracing::info!(
                                dropped = d,
                                "per-connection log lines dropped by the rate limit"
                            );
                        }
                    }
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_at_most_the_budget_per_second() {
        let l = LogLimiter::new(5);
        let allowed = (0..100).filter(|_| l.allow()).count();
        // Two seconds may start during the loop on a slow machine.
        assert!((5..=10).contains(&allowed), "{allowed}");
        assert_eq!(
            l.dropped(),
            100 - allowed as u64,
            "every line not allowed is counted"
        );
    }
}
