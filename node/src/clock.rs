//! The clock that ages and lifetimes are counted on: tag and referrers TTLs, upstream tokens,
//! pass-through verdicts, and the access times that lifecycle rules expire by.
//!
//! A node runs on the system's clock. A test moves an adjustable one forward instead of
//! sleeping through a TTL: both readings ([`Clock::now`] and [`Clock::instant`]) are the
//! system's plus the same offset, so they stay monotonic and agree with each other. This is
//! not `tokio::time::pause`: the tests that need it talk to a node over real sockets and wait
//! on the blocking pool, and a paused runtime auto-advances whenever it waits on either,
//! firing every connect and read timeout on the way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The system's clock, or one a test can move forward; clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Milliseconds added to the system's readings; `None` on the system's own clock.
    offset_ms: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that reads as the system's until [`Clock::advance`] moves it forward.
    pub fn adjustable() -> Self {
        Self { offset_ms: Some(Arc::new(AtomicU64::new(0))) }
    }

    /// Moves an adjustable clock forward by `by` (whole milliseconds); does nothing to the
    /// system's, which no test may move.
    pub fn advance(&self, by: Duration) {
        if let Some(offset) = &self.offset_ms {
            let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
            offset.fetch_add(ms, Ordering::SeqCst);
        }
    }

    fn offset(&self) -> Duration {
        self.offset_ms
            .as_ref()
            .map_or(Duration::ZERO, |o| Duration::from_millis(o.load(Ordering::SeqCst)))
    }

    /// Wall-clock time, for what is stored (a tag record's `fetched_at`).
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + self.offset()
    }

    /// Monotonic time, for what lives only in memory (a token's renewal time).
    pub fn instant(&self) -> Instant {
        Instant::now() + self.offset()
    }

    /// How long ago `then` was on this clock; a time it cannot place before now (the system
    /// clock was set back) counts as very long ago, so what it dates is looked at again.
    pub fn age(&self, then: SystemTime) -> Duration {
        self.now().duration_since(then).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_both_readings_and_its_clones() {
        let clock = Clock::adjustable();
        let copy = clock.clone();
        let (wall, mono) = (clock.now(), clock.instant());
        copy.advance(Duration::from_secs(90));
        assert!(clock.now().duration_since(wall).unwrap() >= Duration::from_secs(90));
        assert!(clock.instant() - mono >= Duration::from_secs(90));
        assert!(clock.age(wall) >= Duration::from_secs(90));
    }

    #[test]
    fn the_system_clock_does_not_move() {
        let clock = Clock::system();
        let wall = clock.now();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.age(wall) < Duration::from_secs(60));
    }
}
