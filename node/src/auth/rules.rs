//! Who may do what under which names: rules by registry and repository prefix.
//!
//! The longest prefix that matches a name decides alone, so a rule for
//! `ghcr.io/acme/secret` closes what a rule for `ghcr.io/acme` opens. A name no rule matches
//! is refused. Prefixes match whole path components: `ghcr.io/acme` covers `ghcr.io/acme` and
//! `ghcr.io/acme/app`, never `ghcr.io/acme-corp`.

use serde::Deserialize;

use shoal_protocol::is_registry_host;

/// What a client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    /// Uploads, manifest pushes and deletes.
    Push,
}

/// The prefix `*`: every name of every registry.
pub const EVERYTHING: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `registry/repository-prefix` without a trailing `/`, or [`EVERYTHING`].
    prefix: String,
    /// Names from the htpasswd and tokens files; `*` is every authenticated client.
    users: Vec<String>,
    /// Clients without credentials may do what the rule allows too.
    anonymous: bool,
    allow: Vec<Action>,
}

impl Rule {
    /// A checked rule; the error says what is wrong with the prefix.
    pub fn new(
        prefix: &str,
        users: Vec<String>,
        anonymous: bool,
        allow: Vec<Action>,
    ) -> Result<Rule, String> {
        Rule::with_hosted(prefix, users, anonymous, allow, &[])
    }

    /// A checked rule whose prefix may also start with one of the `hosted` registry names
    /// (which need not look like host names).
    pub fn with_hosted(
        prefix: &str,
        users: Vec<String>,
        anonymous: bool,
        allow: Vec<Action>,
        hosted: &[String],
    ) -> Result<Rule, String> {
        let prefix = prefix.trim_end_matches('/');
        let first = prefix.split('/').next().unwrap_or_default();
        if prefix != EVERYTHING && !hosted.iter().any(|h| h == first) {
            check_prefix(prefix)?;
        }
        Ok(Rule { prefix: prefix.to_owned(), users, anonymous, allow })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn users(&self) -> &[String] {
        &self.users
    }

    fn matches(&self, name: &str) -> bool {
        self.prefix == EVERYTHING
            || name
                .strip_prefix(self.prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// How specific the rule is: `*` least of all.
    fn weight(&self) -> usize {
        if self.prefix == EVERYTHING { 0 } else { self.prefix.len() + 1 }
    }

    fn allows(&self, who: Option<&str>, action: Action) -> bool {
        if !self.allow.contains(&action) {
            return false;
        }
        self.anonymous || who.is_some_and(|who| self.users.iter().any(|u| u == "*" || u == who))
    }
}

/// `docker.io/library`: a registry host, then repository path components.
fn check_prefix(prefix: &str) -> Result<(), String> {
    let (registry, repo) = prefix.split_once('/').unwrap_or((prefix, ""));
    let host_like = registry.contains('.') || registry.contains(':') || registry == "localhost";
    if !host_like || !is_registry_host(registry) {
        return Err(format!(
            "prefix {prefix:?} must start with a registry name such as docker.io or ghcr.io, or be \"*\""
        ));
    }
    if ["index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"].contains(&registry) {
        return Err(format!("prefix {prefix:?}: requests for Docker Hub are named docker.io"));
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    if !repo.is_empty() && !repo.split('/').all(component_ok) {
        return Err(format!("prefix {prefix:?}: {repo:?} is not a repository path"));
    }
    Ok(())
}

/// Every rule, most specific first.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// Refuses two rules for one prefix: which of them decides would be a guess.
    pub fn new(mut rules: Vec<Rule>) -> Result<Policy, String> {
        rules.sort_by(|a, b| b.weight().cmp(&a.weight()).then_with(|| a.prefix.cmp(&b.prefix)));
        if let Some(pair) = rules.windows(2).find(|w| w[0].prefix == w[1].prefix) {
            return Err(format!("two rules for prefix {:?}", pair[0].prefix));
        }
        Ok(Policy { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether `who` (`None`: no credentials) may do `action` on `registry/repository`.
    pub fn allows(&self, who: Option<&str>, registry: &str, repo: &str, action: Action) -> bool {
        let name = format!("{registry}/{repo}");
        self.rules.iter().find(|r| r.matches(&name)).is_some_and(|r| r.allows(who, action))
    }

    /// Whether one rule covers every name: then whoever may pull one name may pull them all,
    /// and no name needs protecting from another.
    pub fn is_uniform(&self) -> bool {
        matches!(self.rules.as_slice(), [only] if only.prefix == EVERYTHING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, users: &[&str], anonymous: bool) -> Rule {
        let users = users.iter().map(|u| (*u).to_owned()).collect();
        Rule::new(prefix, users, anonymous, vec![Action::Pull]).unwrap()
    }

    fn pull(p: &Policy, who: Option<&str>, registry: &str, repo: &str) -> bool {
        p.allows(who, registry, repo, Action::Pull)
    }

    #[test]
    fn the_longest_matching_prefix_decides_alone() {
        let p = Policy::new(vec![
            rule("ghcr.io/acme", &["*"], false),
            rule("ghcr.io/acme/secret/", &["alice"], false),
            rule("docker.io/library", &[], true),
        ])
        .unwrap();
        assert!(pull(&p, Some("bob"), "ghcr.io", "acme/app"));
        assert!(pull(&p, Some("bob"), "ghcr.io", "acme"));
        assert!(!pull(&p, Some("bob"), "ghcr.io", "acme/secret/db"));
        assert!(!pull(&p, Some("bob"), "ghcr.io", "acme/secret"));
        assert!(pull(&p, Some("alice"), "ghcr.io", "acme/secret/db"));
        // Whole components only.
        assert!(!pull(&p, Some("bob"), "ghcr.io", "acme-corp/app"));
        assert!(pull(&p, Some("bob"), "ghcr.io", "acme/secretive"));
        // Anonymous rules let everyone in, with or without credentials.
        assert!(pull(&p, None, "docker.io", "library/alpine"));
        assert!(pull(&p, Some("bob"), "docker.io", "library/alpine"));
        assert!(!pull(&p, None, "ghcr.io", "acme/app"));
    }

    #[test]
    fn no_matching_rule_denies() {
        let p = Policy::new(vec![rule("quay.io/org", &["*"], false)]).unwrap();
        assert!(!pull(&p, Some("alice"), "docker.io", "library/alpine"));
        assert!(!pull(&p, None, "quay.io", "org/app"));
        assert!(!Policy::default().allows(Some("alice"), "quay.io", "org/app", Action::Pull));
    }

    #[test]
    fn star_prefix_is_the_fallback_and_actions_are_separate() {
        let push_only =
            Rule::new("ghcr.io/acme/ci", vec!["ci".into()], false, vec![Action::Push]).unwrap();
        let p = Policy::new(vec![rule("*", &["*"], false), push_only]).unwrap();
        assert!(pull(&p, Some("x"), "registry.k8s.io", "pause"));
        assert!(!pull(&p, Some("ci"), "ghcr.io", "acme/ci"));
        assert!(p.allows(Some("ci"), "ghcr.io", "acme/ci/tool", Action::Push));
        assert!(!p.allows(Some("x"), "ghcr.io", "acme/ci/tool", Action::Push));
        assert!(!p.is_uniform());
        assert!(Policy::new(vec![rule("*", &["*"], false)]).unwrap().is_uniform());
    }

    #[test]
    fn bad_prefixes_and_duplicates_are_refused() {
        for bad in [
            "library/alpine",
            "",
            "Docker.io",
            "index.docker.io/library",
            "ghcr.io/a//b",
            "ghcr.io/A",
        ] {
            assert!(Rule::new(bad, vec![], true, vec![Action::Pull]).is_err(), "{bad:?}");
        }
        assert!(Rule::new("localhost:5000/team", vec![], true, vec![Action::Pull]).is_ok());
        let twice =
            Policy::new(vec![rule("ghcr.io/a", &[], true), rule("ghcr.io/a/", &["x"], false)]);
        assert!(twice.unwrap_err().contains("ghcr.io/a"));
    }
}
