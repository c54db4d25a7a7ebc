//! Lifecycle rules, like a registry's lifecycle policies: per registry/repository prefix, expire
//! blobs unused for a given time and cap what the prefix may hold, in bytes or as a share of the
//! store (of `--max-size`, else of the file system). Pinned blobs and blobs being read or
//! written are never taken; every removal is logged with the rule that made it, and counted by
//! reason.
//!
//! A blob belongs to the most specific rule that matches any name it was seen under (`*`
//! matches every name, and blobs seen under none). The size cap counts pinned blobs too (they
//! are part of what the prefix holds) but removes only what may go, least recently used first.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shoal_protocol::Digest;
use tracing::info;

use super::evict::{finish_removal, move_out};
use super::state::Entry;
use super::{Store, StoreError, blocking, human_size};

/// One rule: what it applies to and what it removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleRule {
    /// `registry/repository` prefix (whole path components), or `*`.
    pub prefix: String,
    /// Blobs not read for this long are removed.
    pub expire_unused: Option<Duration>,
    /// The prefix's blobs may total at most this many bytes.
    pub max_size: Option<u64>,
    /// ... and at most this share of the store, in hundredths of a percent (2500: 25 %).
    pub max_share: Option<u32>,
}

/// What `max_share` is a share of: the store's cap, else its file system's size.
fn capacity(store: &Store) -> Result<u64, StoreError> {
    match store.max_size() {
        Some(max) => Ok(max),
        None => Ok(super::space::disk(&store.inner.paths.root)?.total),
    }
}

/// Why a rule removed a blob, for the per-reason counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    Expired,
    OverCap,
}

impl LifecycleRule {
    /// How specific the rule is for `name`, `None` when it does not apply.
    fn matches(&self, name: &str) -> Option<usize> {
        if self.prefix == "*" {
            return Some(0);
        }
        let under = name.strip_prefix(self.prefix.as_str())?;
        (under.is_empty() || under.starts_with('/')).then_some(self.prefix.len())
    }
}

/// A blob a rule removed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub digest: Digest,
    pub size: u64,
    pub reason: String,
    pub kind: RemovalReason,
}

impl Store {
    /// Applies `rules` once; returns what they removed.
    pub async fn apply_lifecycle(
        &self,
        rules: Vec<LifecycleRule>,
    ) -> Result<Vec<Removal>, StoreError> {
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let store = self.clone();
        blocking("apply lifecycle rules", move || store.apply_lifecycle_blocking(&rules)).await
    }

    fn apply_lifecycle_blocking(
        &self,
        rules: &[LifecycleRule],
    ) -> Result<Vec<Removal>, StoreError> {
        let mut entries = self.inner.state().all_entries();
        entries.sort_by_key(|(d, e, _)| (e.last_access_ms, *d));
        let digests: Vec<Digest> = entries.iter().map(|(d, _, _)| *d).collect();
        let names = self.seen_names(&digests)?;
        let rule_of = |names: &[String]| -> Option<usize> {
            let candidates = if names.is_empty() { vec![String::new()] } else { names.to_vec() };
            let mut best: Option<(usize, usize)> = None;
            for (i, rule) in rules.iter().enumerate() {
                let score = candidates
                    .iter()
                    .filter_map(|n| {
                        if n.is_empty() {
                            (rule.prefix == "*").then_some(0)
                        } else {
                            rule.matches(n)
                        }
                    })
                    .max();
                if let Some(score) = score
                    && best.is_none_or(|(s, _)| score > s)
                {
                    best = Some((score, i));
                }
            }
            best.map(|(_, i)| i)
        };
        let now = self.inner.state().now_ms();
        let capacity =
            if rules.iter().any(|r| r.max_share.is_some()) { capacity(self)? } else { 0 };
        let mut chosen: HashMap<Digest, (Entry, String, RemovalReason)> = HashMap::new();
        let mut held: Vec<u64> = vec![0; rules.len()];
        let mut members: Vec<Vec<(Digest, Entry)>> = vec![Vec::new(); rules.len()];
        for ((digest, entry, removable), names) in entries.iter().zip(&names) {
            let Some(i) = rule_of(names) else { continue };
            let rule = &rules[i];
            if *removable
                && let Some(expire) = rule.expire_unused
                && now.saturating_sub(entry.last_access_ms) > expire.as_millis() as u64
            {
                let reason = format!(
                    "not read for more than {} (lifecycle rule {})",
                    humantime(expire),
                    rule.prefix
                );
                chosen.insert(*digest, (*entry, reason, RemovalReason::Expired));
                continue;
            }
            held[i] += entry.size;
            if *removable {
                members[i].push((*digest, *entry));
            }
        }
        for (i, rule) in rules.iter().enumerate() {
            let share = rule.max_share.map(|bp| {
                let max = (u128::from(capacity) * u128::from(bp) / 10_000) as u64;
                (max, format!("{}.{:02}% of the store, {}", bp / 100, bp % 100, human_size(max)))
            });
            let size = rule.max_size.map(|max| (max, human_size(max)));
            let Some((max, said)) = [size, share].into_iter().flatten().min_by_key(|(m, _)| *m)
            else {
                continue;
            };
            // Oldest first: `entries` was sorted by last access.
            for (digest, entry) in &members[i] {
                if held[i] <= max {
                    break;
                }
                held[i] -= entry.size;
                let reason = format!("{} holds more than {said} (lifecycle rule)", rule.prefix);
                chosen.insert(*digest, (*entry, reason, RemovalReason::OverCap));
            }
        }
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        let moved = {
            let mut state = self.inner.state();
            // Read or pinned since the snapshot: kept.
            let victims: Vec<(Digest, Entry)> = chosen
                .iter()
                .filter(|(d, (e, _, _))| state.get(d) == Some(*e) && state.removable(d))
                .map(|(d, (e, _, _))| (*d, *e))
                .collect();
            let moved = move_out(&self.inner, &mut state, victims);
            self.inner.evictions.fetch_add(moved.len() as u64, Ordering::Relaxed);
            moved
        };
        let removed = finish_removal(&self.inner, moved)?;
        Ok(removed
            .into_iter()
            .filter_map(|digest| {
                let (entry, reason, kind) = chosen.remove(&digest)?;
                info!(%digest, size = entry.size, %reason, "lifecycle rule removed a blob");
                let counter = match kind {
                    RemovalReason::Expired => &self.inner.lifecycle_expired,
                    RemovalReason::OverCap => &self.inner.lifecycle_over_cap,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Some(Removal { digest, size: entry.size, reason, kind })
            })
            .collect())
    }
}

fn humantime(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 && s > 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::store::test_util::{content, fresh, fresh_on, put};

    fn rule(prefix: &str, expire: Option<u64>, max: Option<u64>) -> LifecycleRule {
        LifecycleRule {
            prefix: prefix.into(),
            expire_unused: expire.map(Duration::from_millis),
            max_size: max,
            max_share: None,
        }
    }

    async fn seen(store: &Store, digest: &Digest, name: &str) {
        let (registry, repo) = name.split_once('/').unwrap();
        let repo = shoal_protocol::RepositoryName::parse(repo).unwrap();
        store.record_seen(&[*digest], registry, &repo).unwrap();
    }

    #[test]
    fn the_most_specific_prefix_of_whole_components_applies() {
        let r = rule("docker.io/library", None, None);
        assert_eq!(r.matches("docker.io/library/alpine"), Some(17));
        assert_eq!(r.matches("docker.io/library"), Some(17));
        assert_eq!(r.matches("docker.io/libraryx/alpine"), None);
        assert_eq!(rule("*", None, None).matches("ghcr.io/a"), Some(0));
    }

    #[tokio::test]
    async fn unused_blobs_expire_and_a_prefix_is_kept_under_its_cap() {
        let clock = Clock::adjustable();
        let (_dir, store) = fresh_on(None, clock.clone());
        let old = put(&store, &content(1, 100)).await;
        let pinned = put(&store, &content(2, 100)).await;
        store.pin(&[pinned], "push:x").unwrap();
        seen(&store, &old, "docker.io/library/alpine").await;
        seen(&store, &pinned, "docker.io/library/alpine").await;
        let a = put(&store, &content(3, 100)).await;
        let b = put(&store, &content(4, 100)).await;
        let c = put(&store, &content(5, 100)).await;
        for d in [&a, &b, &c] {
            seen(&store, d, "ghcr.io/team/app").await;
        }
        clock.advance(Duration::from_secs(2 * 3600));
        // Read again: not unused.
        let kept = put(&store, &content(6, 100)).await;
        seen(&store, &kept, "docker.io/library/alpine").await;

        let rules = vec![
            rule("docker.io/library", Some(3600 * 1000), None),
            // ghcr.io/team holds 300 bytes; 150 allowed: the two oldest go.
            rule("ghcr.io/team", None, Some(150)),
            rule("*", None, None),
        ];
        let removed = store.apply_lifecycle(rules).await.unwrap();
        let mut gone: Vec<Digest> = removed.iter().map(|r| r.digest).collect();
        gone.sort();
        let mut want = vec![old, a, b];
        want.sort();
        assert_eq!(gone, want, "{removed:?}");
        assert!(removed.iter().any(|r| r.reason.contains("not read for more than")));
        assert!(removed.iter().any(|r| r.reason.contains("ghcr.io/team holds more than")));
        for d in [&pinned, &c, &kept] {
            assert!(store.contains(d), "{d} must stay");
        }
        for d in [&old, &a, &b] {
            assert!(!store.contains(d), "{d} must go");
        }
    }

    #[tokio::test]
    async fn a_share_of_the_store_caps_a_prefix_and_removals_are_counted_by_reason() {
        // A 1,000-byte store: 25 % is 250 bytes.
        let (_dir, store) = fresh(Some(1000));
        let blobs = [
            put(&store, &content(11, 100)).await,
            put(&store, &content(12, 100)).await,
            put(&store, &content(13, 100)).await,
            put(&store, &content(14, 100)).await,
        ];
        for d in &blobs {
            seen(&store, d, "ghcr.io/team/app").await;
        }
        let share = LifecycleRule { max_share: Some(2500), ..rule("ghcr.io/team", None, None) };
        let removed = store.apply_lifecycle(vec![share]).await.unwrap();
        // 400 bytes held, 250 allowed: the two least recently used go.
        let gone: Vec<Digest> = removed.iter().map(|r| r.digest).collect();
        assert_eq!(gone.len(), 2, "{removed:?}");
        assert!(gone.contains(&blobs[0]) && gone.contains(&blobs[1]), "{removed:?}");
        assert!(removed.iter().all(|r| r.kind == RemovalReason::OverCap));
        assert!(removed[0].reason.contains("25.00% of the store"), "{}", removed[0].reason);
        let stats = store.stats();
        assert_eq!((stats.lifecycle_over_cap, stats.lifecycle_expired), (2, 0));

        // A byte cap below the share wins.
        let both = LifecycleRule { max_share: Some(2500), ..rule("ghcr.io/team", None, Some(100)) };
        let removed = store.apply_lifecycle(vec![both]).await.unwrap();
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert_eq!(store.stats().lifecycle_over_cap, 3);
    }
}
