//! Client authentication and authorization: who a client is (the htpasswd and tokens files)
//! and what it may do under which names (rules by registry and repository prefix).
//!
//! No HTTP here: `registry/auth.rs` turns request headers into [`Presented`] credentials and
//! maps a [`Refusal`] to a status and an OCI error code.

mod htpasswd;
mod make;
mod rules;
mod tokens;
mod verify;

use std::path::{Path, PathBuf};

pub use htpasswd::Htpasswd;
pub use make::{add_token, htpasswd_line};
pub(crate) use rules::{Action, EVERYTHING, Policy, Rule};
pub use tokens::{Tokens, file_line as token_file_line};

use verify::Verifier;

/// An htpasswd or tokens file that cannot be used. Never shows a hash or a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}, line {line}: {detail}")]
    Line { path: PathBuf, line: usize, detail: String },
}

/// Reads a credentials file and parses it; a parse error names the file and the line.
fn load_file<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, (usize, String)>,
) -> Result<T, AuthFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| AuthFileError::Read { path: path.to_owned(), source })?;
    parse(&text).map_err(|(line, detail)| AuthFileError::Line {
        path: path.to_owned(),
        line,
        detail,
    })
}

/// A user or token name: what rules name and logs show.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a name (letters, digits and . _ @ -)",
            name.chars().take(64).collect::<String>()
        ))
    }
}

/// Everything the node knows about its clients, read at start.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub users: Htpasswd,
    pub tokens: Tokens,
    pub policy: Policy,
}

impl AuthSettings {
    /// Clients must log in to `/v2/` when there are credentials to log in with.
    pub fn requires_login(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }
}

/// The credentials a request carries.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    None,
    Basic { user: String, password: String },
    Bearer(String),
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials, and they are needed: the client should log in.
    LoginRequired,
    /// Credentials that match no user or token.
    BadCredentials,
    /// A known client that may not do this under this name.
    Denied,
}

/// Checks requests against [`AuthSettings`].
pub struct ClientAuth {
    settings: AuthSettings,
    verifier: Verifier,
}

impl ClientAuth {
    pub fn new(settings: AuthSettings) -> Self {
        let verifier = Verifier::new(settings.users.typical_cost());
        ClientAuth { settings, verifier }
    }

    pub fn requires_login(&self) -> bool {
        self.settings.requires_login()
    }

    /// Whether some client may pull names another may not: then a blob is served under a
    /// name only once the node knows it belongs there.
    pub fn restricts_names(&self) -> bool {
        !self.settings.policy.is_uniform()
    }

    /// The client's name (`None`: anonymous), or why its credentials are refused.
    pub async fn identify(&self, presented: &Presented) -> Result<Option<String>, Refusal> {
        let settings = &self.settings;
        if !settings.requires_login() {
            // Nothing to check them against: a client sending credentials it has for this host
            // anyway (a `docker login` of old) is served as the anonymous client it is here.
            return Ok(None);
        }
        match presented {
            Presented::None => Ok(None),
            Presented::Bearer(token) => settings
                .tokens
                .find(token)
                .map(|n| Some(n.to_owned()))
                .ok_or(Refusal::BadCredentials),
            Presented::Basic { user, password } => {
                // Tokens work as Basic passwords too, for clients that only send Basic.
                let matched =
                    match (settings.users.hash_of(user), settings.tokens.check(user, password)) {
                        (None, Some(matched)) => matched,
                        (hash, _) => self.verifier.check(user, password, hash).await,
                    };
                if matched { Ok(Some(user.clone())) } else { Err(Refusal::BadCredentials) }
            }
        }
    }

    /// Whether `who` may do `action` on `registry/repository`.
    pub fn authorize(
        &self,
        who: Option<&str>,
        registry: &str,
        repo: &str,
        action: Action,
    ) -> Result<(), Refusal> {
        if self.settings.policy.allows(who, registry, repo, action) {
            Ok(())
        } else if who.is_none() && self.requires_login() {
            Err(Refusal::LoginRequired)
        } else {
            Err(Refusal::Denied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> ClientAuth {
        let users = Htpasswd::parse(&format!("alice:{}", bcrypt::hash("pw", 4).unwrap())).unwrap();
        let tokens = Tokens::parse(&token_file_line("ci", "t0ken")).unwrap();
        let policy = Policy::new(vec![
            Rule::new("docker.io/library", vec![], true, vec![Action::Pull]).unwrap(),
            Rule::new("ghcr.io/acme", vec!["alice".into(), "ci".into()], false, vec![Action::Pull])
                .unwrap(),
        ])
        .unwrap();
        ClientAuth::new(AuthSettings { users, tokens, policy })
    }

    fn basic(user: &str, password: &str) -> Presented {
        Presented::Basic { user: user.into(), password: password.into() }
    }

    #[tokio::test]
    async fn passwords_and_tokens_identify_clients() {
        let auth = auth();
        assert_eq!(auth.identify(&Presented::None).await, Ok(None));
        assert_eq!(auth.identify(&basic("alice", "pw")).await, Ok(Some("alice".into())));
        assert_eq!(auth.identify(&basic("alice", "no")).await, Err(Refusal::BadCredentials));
        assert_eq!(auth.identify(&basic("nobody", "pw")).await, Err(Refusal::BadCredentials));
        assert_eq!(auth.identify(&Presented::Bearer("t0ken".into())).await, Ok(Some("ci".into())));
        assert_eq!(auth.identify(&basic("ci", "t0ken")).await, Ok(Some("ci".into())));
        assert_eq!(
            auth.identify(&Presented::Bearer("pw".into())).await,
            Err(Refusal::BadCredentials)
        );
    }

    #[tokio::test]
    async fn without_users_credentials_are_not_checked() {
        let policy = Policy::new(vec![Rule::new("*", vec![], true, vec![Action::Pull]).unwrap()]);
        let settings = AuthSettings { policy: policy.unwrap(), ..Default::default() };
        let auth = ClientAuth::new(settings);
        assert!(!auth.requires_login() && !auth.restricts_names());
        assert_eq!(auth.identify(&basic("old", "login")).await, Ok(None));
        assert_eq!(auth.authorize(None, "ghcr.io", "org/app", Action::Pull), Ok(()));
    }

    #[test]
    fn anonymous_clients_are_asked_to_log_in_and_known_ones_denied() {
        let auth = auth();
        assert!(auth.requires_login() && auth.restricts_names());
        assert_eq!(auth.authorize(None, "docker.io", "library/alpine", Action::Pull), Ok(()));
        assert_eq!(
            auth.authorize(None, "ghcr.io", "acme/app", Action::Pull),
            Err(Refusal::LoginRequired)
        );
        assert_eq!(auth.authorize(Some("ci"), "ghcr.io", "acme/app", Action::Pull), Ok(()));
        assert_eq!(
            auth.authorize(Some("ci"), "quay.io", "x/y", Action::Pull),
            Err(Refusal::Denied)
        );
        assert_eq!(
            auth.authorize(Some("ci"), "ghcr.io", "acme/app", Action::Push),
            Err(Refusal::Denied)
        );
    }
}
