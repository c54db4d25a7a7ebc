//! A per-key rate limit for log lines: warnings that a stranger can trigger at will (a
//! handshake with another cluster key, a refused peer request) are logged once per key and
//! interval, so that they tell the operator what happens without flooding the log.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered at most; past it, keys whose interval has passed are forgotten, and if
/// none has, new keys are not logged until one has. Memory stays bounded whoever sends.
const MAX_KEYS: usize = 1024;

#[derive(Debug)]
pub struct LogThrottle<K> {
    interval: Duration,
    last: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq> LogThrottle<K> {
    pub fn new(interval: Duration) -> Self {
        Self { interval, last: Mutex::default() }
    }

    /// Whether to log for `key` now; counts as logged when it says yes.
    pub fn allow(&self, key: K) -> bool {
        self.allow_at(key, Instant::now())
    }

    fn allow_at(&self, key: K, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = last.get(&key)
            && now.duration_since(*at) < self.interval
        {
            return false;
        }
        if last.len() >= MAX_KEYS && !last.contains_key(&key) {
            last.retain(|_, at| now.duration_since(*at) < self.interval);
            if last.len() >= MAX_KEYS {
                return false;
            }
        }
        last.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_key_and_interval_and_bounded() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(throttle.allow_at("a", t0));
        assert!(!throttle.allow_at("a", t0 + Duration::from_secs(9)));
        assert!(throttle.allow_at("b", t0 + Duration::from_secs(9)));
        assert!(throttle.allow_at("a", t0 + Duration::from_secs(10)));

        let many = LogThrottle::new(Duration::from_secs(10));
        for i in 0..MAX_KEYS {
            assert!(many.allow_at(i, t0));
        }
        assert!(!many.allow_at(MAX_KEYS, t0 + Duration::from_secs(1)), "full: not logged");
        assert!(many.allow_at(MAX_KEYS, t0 + Duration::from_secs(10)), "stale keys forgotten");
        assert!(many.last.lock().unwrap().len() <= MAX_KEYS);
    }
}
