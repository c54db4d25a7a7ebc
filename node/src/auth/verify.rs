//! Password checks: bcrypt off the async threads, a bounded number at once, and a short-lived
//! memory of the credentials that passed.
//!
//! A bcrypt check costs tens of milliseconds of CPU by design. Clients send their credentials
//! with every request, so a pull of 30 blobs would cost 30 checks; instead a success is
//! remembered for [`REMEMBER`] (keyed by a salted hash of user and password, never the password
//! itself). Failures are not remembered, and bad passwords queue for the few check permits, so
//! a flood of them delays other logins but cannot take the threads that serve blobs.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

/// How long a checked user and password are believed without another bcrypt.
const REMEMBER: Duration = Duration::from_secs(5 * 60);
/// Credentials remembered at once; past it, expired ones go, and if none has, all do.
const REMEMBERED_MAX: usize = 4096;
/// The cost of the stand-in hash checked for unknown users, when the file gives none.
const DEFAULT_COST: u32 = 10;

pub struct Verifier {
    /// Per process, so the remembered keys say nothing outside it.
    salt: [u8; 32],
    remembered: Mutex<HashMap<[u8; 32], Instant>>,
    permits: Semaphore,
    /// A hash no password matches, checked for unknown users so that they take as long as
    /// known ones: the time of an answer does not tell which user names exist.
    stand_in: OnceLock<String>,
    stand_in_cost: u32,
}

impl Verifier {
    pub fn new(typical_cost: Option<u32>) -> Self {
        let mut salt = [0u8; 32];
        rand::rng().fill_bytes(&mut salt);
        // Half the cores at most: blob streaming and hashing need the rest.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Verifier {
            salt,
            remembered: Mutex::new(HashMap::new()),
            permits: Semaphore::new((cores / 2).max(1)),
            stand_in: OnceLock::new(),
            stand_in_cost: typical_cost.unwrap_or(DEFAULT_COST),
        }
    }

    /// Whether `password` matches `hash` (`None`: the user is unknown, and it never matches).
    pub async fn check(&self, user: &str, password: &str, hash: Option<&str>) -> bool {
        let key = self.key(user, password);
        if hash.is_some() && self.remembers(&key) {
            return true;
        }
        let Ok(_permit) = self.permits.acquire().await else { return false };
        // A burst of requests with the same new credentials waits here; the first to pass
        // leaves the answer for the rest.
        if hash.is_some() && self.remembers(&key) {
            return true;
        }
        let known = hash.is_some();
        let hash = match hash {
            Some(hash) => hash.to_owned(),
            None => self.stand_in(),
        };
        let password = password.to_owned();
        let matched = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .is_ok_and(|r| r.unwrap_or(false));
        if matched && known {
            self.remember(key);
        }
        matched && known
    }

    fn stand_in(&self) -> String {
        let cost = self.stand_in_cost;
        self.stand_in
            .get_or_init(|| {
                let mut random = [0u8; 32];
                rand::rng().fill_bytes(&mut random);
                bcrypt::hash(random, cost).unwrap_or_default()
            })
            .clone()
    }

    fn key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update((user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn remembers(&self, key: &[u8; 32]) -> bool {
        let map = self.remembered.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).is_some_and(|at| at.elapsed() < REMEMBER)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut map = self.remembered.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= REMEMBERED_MAX {
            map.retain(|_, at| at.elapsed() < REMEMBER);
            if map.len() >= REMEMBERED_MAX {
                map.clear();
            }
        }
        map.insert(key, Instant::now());
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.remembered.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_match_is_remembered_and_a_failure_is_not() {
        let verifier = Verifier::new(Some(4));
        let hash = bcrypt::hash("right", 4).unwrap();
        assert!(!verifier.check("alice", "wrong", Some(&hash)).await);
        assert_eq!(verifier.remembered(), 0);
        assert!(verifier.check("alice", "right", Some(&hash)).await);
        assert_eq!(verifier.remembered(), 1);
        // Remembered: even a hash that would not match now is not consulted.
        assert!(verifier.check("alice", "right", Some("$2b$04$not-consulted")).await);
        // Another user with the same password is another key.
        assert!(!verifier.check("bob", "right", Some("$2b$04$not-consulted")).await);
    }

    #[tokio::test]
    async fn unknown_users_never_pass() {
        let verifier = Verifier::new(Some(4));
        assert!(!verifier.check("nobody", "", None).await);
        assert!(!verifier.check("nobody", "anything", None).await);
        assert_eq!(verifier.remembered(), 0);
    }
}
