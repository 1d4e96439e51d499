//! A monotonic clock in milliseconds since the router started, shared by
//! every table so their timestamps are small integers (4 bytes an entry
//! instead of 16 for an `Instant`).
//!
//! It reads tokio's time, not the system's, so that the tables, the backend
//! down-holds and the relay's idle timer agree with the runtime's timers: a
//! test that pauses the runtime (`tokio::time::pause`) and advances it moves
//! all of them together, with no sleeping. Outside a paused runtime (and in
//! builds without tokio's `test-util`) this is the system's monotonic clock.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Clock {
    /// Zero of every timestamp this clock hands out. Taken on the runtime
    /// that builds the router, so a paused test runtime's start is zero.
    epoch: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Seconds since start, the resolution tables keep.
    pub fn now_secs(&self) -> u32 {
        u32::try_from(self.now_ms() / 1000).unwrap_or(u32::MAX)
    }
}

/// Whole seconds of a duration as a table timestamp delta, saturating.
pub(crate) fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_the_runtimes_paused_time() {
        let clock = Clock::new();
        assert_eq!(clock.now_ms(), 0);
        tokio::time::advance(Duration::from_millis(2_500)).await;
        assert_eq!(clock.now_ms(), 2_500);
        assert_eq!(clock.now_secs(), 2);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(clock.now_secs(), 62, "a timer and the clock moved together");
    }
}
