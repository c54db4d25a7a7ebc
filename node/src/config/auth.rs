//! `[auth]` and its flags, resolved into what the node checks clients against.
//!
//! The default is chosen so that `shoal run` alone still serves: with no client authentication
//! configured, anyone who reaches the node may pull, and the node says so in its log. That stops
//! being safe once the node holds upstream credentials (they may open private repositories to
//! it, and through it to everyone), so then the node refuses to start until the operator either
//! configures `[auth]` or says `--anonymous-pull` explicitly.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use super::file::AuthEntry;
use super::{AuthOverrides, ConfigError};
use crate::auth::{
    Action, AuthFileError, AuthSettings, EVERYTHING, Htpasswd, Policy, Rule, Tokens,
};

/// Client authentication as configured.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub settings: AuthSettings,
    /// Nothing was configured and anyone may pull: worth a warning at start.
    pub open_by_default: bool,
    /// Upstreams whose pulls clients' own credentials decide (`fetch/access.rs`).
    pub pass_through: BTreeSet<String>,
    /// How long an upstream's answer about a client and a repository is kept.
    pub pass_through_ttl: Duration,
}

/// Short: a tenant whose access is revoked upstream loses it here within this.
pub const DEFAULT_PASS_THROUGH_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(transparent)]
    File(#[from] AuthFileError),
    #[error("[auth] anonymous = {0:?}: the only value is \"pull\"")]
    Anonymous(String),
    #[error("[[auth.rule]] {0}")]
    Rule(String),
    #[error(
        "[[auth.rule]] for {prefix:?} names {user:?}, who is in neither the htpasswd nor the tokens file"
    )]
    UnknownUser { prefix: String, user: String },
    #[error("{0:?} is both a user of the htpasswd file and a name in the tokens file")]
    NameTwice(String),
    #[error(
        "anonymous pull is on and a [[auth.rule]] has prefix \"*\": both say who may pull every name; keep one"
    )]
    TwoFallbacks,
    #[error(
        "this node has credentials for {0} but no client authentication: anyone who reaches it \
         could pull what those credentials open. Configure [auth] (see docs/configuration.md), \
         or pass --anonymous-pull (auth.anonymous = \"pull\") if that is what you want"
    )]
    OpenWithCredentials(String),
    #[error(
        "[auth] pass_through names {0:?}, which is not a configured upstream: clients' credentials \
         are checked against an upstream listed under [upstreams]"
    )]
    PassThroughUnknown(String),
    #[error("[auth] pass_through_ttl must be more than 0s")]
    PassThroughTtl,
}

/// `credentialed`: the upstreams the node has credentials for.
pub(super) fn resolve_auth(
    entry: Option<AuthEntry>,
    overrides: AuthOverrides,
    credentialed: &[String],
    hosted: &[String],
    upstreams: &[String],
) -> Result<AuthConfig, ConfigError> {
    resolve(entry.unwrap_or_default(), overrides, credentialed, hosted, upstreams)
        .map_err(ConfigError::Auth)
}

fn resolve(
    entry: AuthEntry,
    o: AuthOverrides,
    credentialed: &[String],
    hosted: &[String],
    upstreams: &[String],
) -> Result<AuthConfig, AuthConfigError> {
    let pass_through: BTreeSet<String> = entry.pass_through.iter().cloned().collect();
    if let Some(unknown) = pass_through.iter().find(|r| !upstreams.contains(r)) {
        return Err(AuthConfigError::PassThroughUnknown(unknown.clone()));
    }
    let pass_through_ttl = match entry.pass_through_ttl {
        Some(ttl) if ttl.0.is_zero() => return Err(AuthConfigError::PassThroughTtl),
        ttl => ttl.map_or(DEFAULT_PASS_THROUGH_TTL, |t| t.0),
    };
    // What a pass-through upstream's credentials open, the upstream guards client by client.
    let credentialed: Vec<String> =
        credentialed.iter().filter(|r| !pass_through.contains(*r)).cloned().collect();
    let htpasswd: Option<PathBuf> = o.htpasswd.or(entry.htpasswd);
    let tokens_path: Option<PathBuf> = o.tokens.or(entry.tokens);
    let anonymous = match entry.anonymous.as_deref() {
        None => o.anonymous_pull,
        Some("pull") => true,
        Some(other) => return Err(AuthConfigError::Anonymous(other.to_owned())),
    };
    let users = htpasswd.as_deref().map(Htpasswd::load).transpose()?.unwrap_or_default();
    let tokens = tokens_path.as_deref().map(Tokens::load).transpose()?.unwrap_or_default();
    if let Some(name) = users.names().find(|u| tokens.names().any(|t| t == *u)) {
        return Err(AuthConfigError::NameTwice(name.to_owned()));
    }

    let configured = htpasswd.is_some() || tokens_path.is_some() || !entry.rule.is_empty();
    if !configured && !anonymous && !credentialed.is_empty() {
        return Err(AuthConfigError::OpenWithCredentials(credentialed.join(", ")));
    }
    let open_by_default = !configured && !anonymous;

    let mut rules = Vec::new();
    for r in &entry.rule {
        for user in r.users.iter().filter(|u| *u != "*") {
            if users.hash_of(user).is_none() && !tokens.names().any(|t| t == user) {
                let prefix = r.prefix.clone();
                return Err(AuthConfigError::UnknownUser { prefix, user: user.clone() });
            }
        }
        let rule =
            Rule::with_hosted(&r.prefix, r.users.clone(), r.anonymous, r.allow.clone(), hosted)
                .map_err(AuthConfigError::Rule)?;
        rules.push(rule);
    }
    // The rule for names no other rule covers, when the configuration implies one: anonymous
    // pull (asked for, or the default of a node with no auth), and, when there are users but no
    // rules, pull for every one of them.
    let fallback_users: Vec<String> =
        if entry.rule.is_empty() && configured { vec!["*".to_owned()] } else { Vec::new() };
    let fallback_anonymous = anonymous || open_by_default;
    if fallback_anonymous || !fallback_users.is_empty() {
        if rules.iter().any(|r| r.prefix() == EVERYTHING) {
            return Err(AuthConfigError::TwoFallbacks);
        }
        let rule = Rule::new(EVERYTHING, fallback_users, fallback_anonymous, vec![Action::Pull])
            .map_err(AuthConfigError::Rule)?;
        rules.push(rule);
    }
    let policy = Policy::new(rules).map_err(AuthConfigError::Rule)?;
    Ok(AuthConfig {
        settings: AuthSettings { users, tokens, policy },
        open_by_default,
        pass_through,
        pass_through_ttl,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::FileConfig;

    /// A directory with an htpasswd file (alice) and a tokens file (ci).
    fn files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let line = format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap());
        std::fs::write(dir.path().join("htpasswd"), line).unwrap();
        let line = crate::auth::token_file_line("ci", "t0ken");
        std::fs::write(dir.path().join("tokens"), line).unwrap();
        dir
    }

    fn resolve_text(
        text: &str,
        o: AuthOverrides,
        credentialed: &[&str],
    ) -> Result<AuthConfig, AuthConfigError> {
        let file = FileConfig::parse(text, Path::new("x.toml")).unwrap();
        let credentialed: Vec<String> = credentialed.iter().map(|s| (*s).to_owned()).collect();
        let upstreams = ["docker.io".to_owned(), "ghcr.io".to_owned(), "quay.io".to_owned()];
        resolve(file.auth.unwrap_or_default(), o, &credentialed, &[], &upstreams)
    }

    #[test]
    fn pass_through_names_configured_upstreams_and_guards_their_credentials() {
        let text = "[auth]\npass_through = [\"ghcr.io\"]\npass_through_ttl = \"30s\"";
        let c = resolve_text(text, AuthOverrides::default(), &["ghcr.io"]).unwrap();
        assert_eq!(c.pass_through, BTreeSet::from(["ghcr.io".to_owned()]));
        assert_eq!(c.pass_through_ttl, Duration::from_secs(30));
        // Credentials for another upstream still need client authentication.
        let other = resolve_text(text, AuthOverrides::default(), &["ghcr.io", "quay.io"]);
        assert!(
            matches!(other, Err(AuthConfigError::OpenWithCredentials(ref n)) if n == "quay.io")
        );

        let plain = resolve_text("[auth]\npass_through = [\"ghcr.io\"]", Default::default(), &[]);
        assert_eq!(plain.unwrap().pass_through_ttl, DEFAULT_PASS_THROUGH_TTL);
        let unknown =
            resolve_text("[auth]\npass_through = [\"ghcr.example\"]", Default::default(), &[]);
        assert!(
            matches!(unknown, Err(AuthConfigError::PassThroughUnknown(ref n)) if n == "ghcr.example")
        );
        let zero = "[auth]\npass_through = [\"ghcr.io\"]\npass_through_ttl = \"0s\"";
        assert!(matches!(
            resolve_text(zero, Default::default(), &[]),
            Err(AuthConfigError::PassThroughTtl)
        ));
    }

    fn pull(c: &AuthConfig, who: Option<&str>, registry: &str, repo: &str) -> bool {
        c.settings.policy.allows(who, registry, repo, Action::Pull)
    }

    #[test]
    fn nothing_configured_is_open_unless_the_node_holds_credentials() {
        let open = resolve_text("", AuthOverrides::default(), &[]).unwrap();
        assert!(open.open_by_default && !open.settings.requires_login());
        assert!(pull(&open, None, "quay.io", "any/thing"));

        let refused = resolve_text("", AuthOverrides::default(), &["ghcr.io"]);
        assert!(
            matches!(refused, Err(AuthConfigError::OpenWithCredentials(ref n)) if n == "ghcr.io")
        );

        let flag = AuthOverrides { anonymous_pull: true, ..Default::default() };
        let said = resolve_text("", flag, &["ghcr.io"]).unwrap();
        assert!(!said.open_by_default && pull(&said, None, "ghcr.io", "org/app"));
        let key =
            resolve_text("[auth]\nanonymous = \"pull\"", AuthOverrides::default(), &["ghcr.io"]);
        assert!(key.is_ok());
        let bad = resolve_text("[auth]\nanonymous = \"yes\"", AuthOverrides::default(), &[]);
        assert!(matches!(bad, Err(AuthConfigError::Anonymous(_))));
    }

    #[test]
    fn users_without_rules_may_pull_everything_and_anonymous_nothing() {
        let dir = files();
        let o = AuthOverrides { htpasswd: Some(dir.path().join("htpasswd")), ..Default::default() };
        let c = resolve_text("", o, &["ghcr.io"]).unwrap();
        assert!(c.settings.requires_login() && !c.open_by_default);
        assert!(pull(&c, Some("alice"), "ghcr.io", "org/app"));
        assert!(!pull(&c, None, "ghcr.io", "org/app"));
    }

    #[test]
    fn rules_are_checked_against_the_files() {
        let dir = files();
        let head = format!(
            "[auth]\nhtpasswd = {:?}\ntokens = {:?}\n",
            dir.path().join("htpasswd"),
            dir.path().join("tokens")
        );
        let rule = |prefix: &str, users: &str| {
            format!("[[auth.rule]]\nprefix = \"{prefix}\"\nusers = [{users}]\nallow = [\"pull\"]\n")
        };
        let text = format!(
            "{head}{}{}",
            rule("ghcr.io/acme", "\"alice\", \"ci\""),
            rule("quay.io", "\"*\"")
        );
        let c = resolve_text(&text, AuthOverrides::default(), &[]).unwrap();
        assert!(pull(&c, Some("ci"), "ghcr.io", "acme/app"));
        assert!(pull(&c, Some("alice"), "quay.io", "x/y"));
        assert!(!pull(&c, Some("alice"), "docker.io", "library/alpine"), "no rule, no pull");

        let typo = format!("{head}{}", rule("ghcr.io/acme", "\"alcie\""));
        let e = resolve_text(&typo, AuthOverrides::default(), &[]).unwrap_err();
        assert!(e.to_string().contains("alcie"), "{e}");

        let two = format!("{head}anonymous = \"pull\"\n{}", rule("*", "\"*\""));
        let e = resolve_text(&two, AuthOverrides::default(), &[]).unwrap_err();
        assert!(matches!(e, AuthConfigError::TwoFallbacks));

        let bad = format!("{head}{}", rule("alpine", "\"*\""));
        assert!(matches!(
            resolve_text(&bad, AuthOverrides::default(), &[]),
            Err(AuthConfigError::Rule(_))
        ));
    }

    #[test]
    fn a_name_in_both_files_is_refused() {
        let dir = files();
        std::fs::write(dir.path().join("tokens"), crate::auth::token_file_line("alice", "x"))
            .unwrap();
        let o = AuthOverrides {
            htpasswd: Some(dir.path().join("htpasswd")),
            tokens: Some(dir.path().join("tokens")),
            ..Default::default()
        };
        assert!(matches!(resolve_text("", o, &[]), Err(AuthConfigError::NameTwice(_))));
    }
}
