//! The last few failures of client requests, kept for `shoal status`: an operator asking "why
//! did that pull fail" should not need the logs first. Bounded, so a storm of failures costs
//! the same memory as one.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::report::RecentError;

/// Failures kept.
pub const RECENT_ERRORS: usize = 32;

#[derive(Debug, Default)]
pub struct RecentErrors {
    ring: Mutex<VecDeque<RecentError>>,
}

impl RecentErrors {
    pub fn record(&self, what: String, status: u16, message: String) {
        let at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == RECENT_ERRORS {
            ring.pop_front();
        }
        ring.push_back(RecentError { at, what, status, message });
    }

    /// Oldest first.
    pub fn list(&self) -> Vec<RecentError> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_ones() {
        let errors = RecentErrors::default();
        for i in 0..RECENT_ERRORS + 5 {
            errors.record(format!("GET blob {i}"), 502, "upstream down".into());
        }
        let list = errors.list();
        assert_eq!(list.len(), RECENT_ERRORS);
        assert_eq!(list[0].what, "GET blob 5");
        assert_eq!(list.last().unwrap().what, format!("GET blob {}", RECENT_ERRORS + 4));
    }
}
