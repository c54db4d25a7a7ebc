//! Tenant pass-through: for the registries the operator lists, a client's own registry
//! credentials decide what it may pull, as the upstream itself would decide.
//!
//! A cache shared by tenants holds one copy of every layer, fetched with the node's
//! credentials. Rules per repository prefix (`auth/rules.rs`) need the operator to mirror every
//! tenant's rights by hand; here the upstream is asked instead, with the client's credentials,
//! one `HEAD` per client and repository, and the answer is kept for a short TTL. Together with
//! the repository check (`provenance.rs`: a digest is served under a name only once it is
//! known to be there), a tenant never reads another tenant's private image, whatever name or
//! digest it asks for.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng as _;
use sha2::{Digest as _, Sha256};

use super::keyed_lock::KeyedLock;
use super::{FetchError, Fetcher, Target};
use crate::clock::Clock;
use crate::upstream::{Credentials, Probe, UpstreamError};

/// Answers kept at once; past it the expired ones go, and if none has, all do.
const MAX_VERDICTS: usize = 4096;

/// Which registries pass clients' credentials through, and the answers the upstreams gave.
pub struct PassThrough {
    registries: BTreeSet<String>,
    ttl: Duration,
    /// Per process, so that the keys of the cache say nothing outside it.
    salt: [u8; 32],
    verdicts: Mutex<HashMap<[u8; 32], (bool, Instant)>>,
    /// What `ttl` is counted on.
    clock: Clock,
    /// One question per client and repository at a time: a pull asks for its blobs in
    /// parallel, and the first answer serves them all.
    asking: KeyedLock<[u8; 32]>,
}

/// What the upstream said of a client's credentials for a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Refused: no access with these credentials (or without any).
    Refused,
    /// The upstream said 404 to the client: the thing is not there for it, whether it does not
    /// exist or the registry hides it. Not served, and not kept: another tag of the same
    /// repository may well be there.
    NotThere,
}

impl PassThrough {
    pub fn new(registries: BTreeSet<String>, ttl: Duration, clock: Clock) -> Self {
        let mut salt = [0u8; 32];
        rand::rng().fill_bytes(&mut salt);
        Self {
            registries,
            ttl,
            salt,
            verdicts: Mutex::new(HashMap::new()),
            clock,
            asking: KeyedLock::new(),
        }
    }

    fn key(&self, credentials: Option<&Credentials>, target: &Target) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        let field = |h: &mut Sha256, s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        match credentials {
            None => h.update([0]),
            Some(Credentials::Basic { username, password }) => {
                h.update([1]);
                field(&mut h, username);
                field(&mut h, password);
            }
            Some(Credentials::Token(token)) => {
                h.update([2]);
                field(&mut h, token);
            }
        }
        field(&mut h, &target.registry);
        field(&mut h, target.repo.as_str());
        h.finalize().into()
    }

    fn remembered(&self, key: &[u8; 32]) -> Option<bool> {
        let verdicts = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.instant();
        verdicts.get(key).filter(|(_, until)| *until > now).map(|(allowed, _)| *allowed)
    }

    fn remember(&self, key: [u8; 32], allowed: bool) {
        let now = self.clock.instant();
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        if verdicts.len() >= MAX_VERDICTS {
            verdicts.retain(|_, (_, until)| *until > now);
            if verdicts.len() >= MAX_VERDICTS {
                verdicts.clear();
            }
        }
        verdicts.insert(key, (allowed, now + self.ttl));
    }
}

impl Fetcher {
    /// Passes clients' own credentials through to these registries (`[auth] pass_through`);
    /// turns the repository check on, without which access to one repository would open
    /// every digest.
    pub fn with_pass_through(mut self, pass_through: PassThrough) -> Self {
        if !pass_through.registries.is_empty() {
            self.repo_check = true;
            self.pass_through = Some(pass_through);
        }
        self
    }

    /// Whether clients' credentials decide what they may pull from some registry.
    pub fn passes_any(&self) -> bool {
        self.pass_through.is_some()
    }

    /// Whether clients' credentials decide what they may pull from `registry`.
    pub fn passes_through(&self, registry: &str) -> bool {
        self.pass_through.as_ref().is_some_and(|p| p.registries.contains(registry))
    }

    /// Whether these credentials (`None`: anonymous) may pull from the target's repository,
    /// by the upstream's answer to a request for `probe` made with them; cached for the TTL.
    pub async fn check_access(
        &self,
        target: &Target,
        probe: &Probe,
        credentials: Option<Credentials>,
    ) -> Result<Access, FetchError> {
        let Some(pass) = &self.pass_through else { return Ok(Access::Allowed) };
        let key = pass.key(credentials.as_ref(), target);
        let verdict = |allowed| if allowed { Access::Allowed } else { Access::Refused };
        if let Some(allowed) = pass.remembered(&key) {
            return Ok(verdict(allowed));
        }
        let _asking = pass.asking.lock(&key).await;
        if let Some(allowed) = pass.remembered(&key) {
            return Ok(verdict(allowed));
        }
        let upstream = self.upstreams.get(&target.registry)?;
        let anonymous = credentials.is_none();
        let asked = upstream.check_access(&target.repo, probe, credentials).await;
        let allowed = match self.upstreams.counted(&target.registry, "access", asked) {
            Ok(true) => true,
            Ok(false) => return Ok(Access::NotThere),
            Err(UpstreamError::Unauthorized { detail, .. }) => {
                tracing::info!(registry = %target.registry, repo = %target.repo, anonymous, %detail, "the upstream refused a client's credentials for this repository");
                false
            }
            // The upstream could not answer: no verdict to keep, and nothing served.
            Err(e) => return Err(e.into()),
        };
        pass.remember(key, allowed);
        Ok(verdict(allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::RepositoryName;

    fn target(repo: &str) -> Target {
        Target { registry: "ghcr.io".into(), repo: RepositoryName::parse(repo).unwrap() }
    }

    #[test]
    fn verdicts_are_kept_per_client_and_repository_for_the_ttl() {
        let clock = Clock::adjustable();
        let ttl = Duration::from_secs(600);
        let pass = PassThrough::new(["ghcr.io".to_owned()].into(), ttl, clock.clone());
        let alice = Credentials::Basic { username: "alice".into(), password: "pw".into() };
        let other = Credentials::Basic { username: "alice".into(), password: "other".into() };
        let key = pass.key(Some(&alice), &target("acme/app"));
        pass.remember(key, true);
        assert_eq!(pass.remembered(&key), Some(true));
        assert_eq!(pass.remembered(&pass.key(Some(&other), &target("acme/app"))), None);
        assert_eq!(pass.remembered(&pass.key(Some(&alice), &target("acme/other"))), None);
        assert_eq!(pass.remembered(&pass.key(None, &target("acme/app"))), None);
        clock.advance(ttl - Duration::from_secs(1));
        assert_eq!(pass.remembered(&key), Some(true));
        clock.advance(Duration::from_secs(2));
        assert_eq!(pass.remembered(&key), None, "past the TTL the upstream is asked again");
    }

    #[test]
    fn the_cache_is_bounded() {
        let pass = PassThrough::new(
            ["ghcr.io".to_owned()].into(),
            Duration::from_secs(60),
            Clock::system(),
        );
        for i in 0..MAX_VERDICTS + 10 {
            pass.remember(pass.key(None, &target(&format!("org/repo-{i}"))), false);
        }
        assert!(pass.verdicts.lock().unwrap().len() <= MAX_VERDICTS);
    }
}
