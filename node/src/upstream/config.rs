//! What an upstream is (name, URL, credentials), how the client behaves, and Docker's
//! `config.json` as a source of credentials.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use super::UpstreamError;

/// One upstream registry as configured (from `--upstream NAME=URL` and the config file).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct UpstreamConfig {
    /// As clients spell it: `docker.io`, `ghcr.io`, `localhost:5000`.
    pub name: String,
    /// Where we fetch: `https://registry-1.docker.io`, `http://127.0.0.1:5000`.
    pub url: String,
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Hosts besides the registry's own whose token service may receive `credentials` (over
    /// https only), such as Docker Hub's `auth.docker.io`.
    #[serde(default)]
    pub token_realms: Vec<String>,
    /// Connect only to public addresses (a registry a client named, not the operator).
    #[serde(skip)]
    pub public_only: bool,
}

/// How to authenticate to one registry.
///
/// `Token` is a long-lived token such as Docker's `identitytoken`: it is exchanged at the
/// registry's token service for short-lived bearer tokens (see `auth.rs`), never sent to the
/// registry itself.
#[derive(Clone, Deserialize)]
pub enum Credentials {
    Basic { username: String, password: String },
    Token(String),
}

impl fmt::Debug for Credentials {
    // Credentials end up in config dumps and error reports; only the kind may show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { .. } => f.write_str("Basic(<redacted>)"),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// Timeouts and retries of the upstream client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    /// The longest wait, once connected, for response headers, and for each next chunk of a
    /// body.
    pub read_timeout: Duration,
    /// Further attempts after a connection error or a 5xx; 4xx is never retried.
    pub retries: u32,
    /// CA certificates (PEM) trusted besides the public roots: registries with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            retries: 3,
            ca_file: None,
        }
    }
}

/// Docker Hub's name in Docker's config and in client requests.
const DOCKER_HUB: &str = "docker.io";

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// Reads a Docker `config.json` into credentials per registry host.
///
/// Each `auths` entry gives, in Docker's order of preference, an `identitytoken`, an `auth`
/// (base64 `user:pass`), or `username` + `password`. Keys may be URLs
/// (`https://index.docker.io/v1/` → `docker.io`). Entries without any of these (their secret
/// lives in a credential helper, which is not supported) are skipped.
pub fn load_docker_config(path: &Path) -> Result<HashMap<String, Credentials>, UpstreamError> {
    let text = std::fs::read_to_string(path).map_err(|e| UpstreamError::Config {
        detail: format!("cannot read Docker config {}: {e}", path.display()),
    })?;
    // serde_json's message names a position, never the content, so it is safe to show.
    let config: DockerConfig = serde_json::from_str(&text).map_err(|e| UpstreamError::Config {
        detail: format!("Docker config {} is not valid: {e}", path.display()),
    })?;
    let mut out = HashMap::new();
    for (key, entry) in config.auths {
        let host = registry_host(&key);
        match entry_credentials(&host, entry)? {
            Some(credentials) => {
                out.insert(host, credentials);
            }
            None => {
                tracing::warn!(registry = %host, "Docker config entry has no usable credentials")
            }
        }
    }
    Ok(out)
}

fn entry_credentials(host: &str, entry: DockerAuth) -> Result<Option<Credentials>, UpstreamError> {
    if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::Token(token)));
    }
    if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
        let bad = || UpstreamError::Config {
            detail: format!("Docker config: the auth of {host} is not base64 \"user:password\""),
        };
        let decoded = BASE64.decode(auth.trim()).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    match (entry.username, entry.password) {
        (Some(username), Some(password)) if !username.is_empty() => {
            Ok(Some(Credentials::Basic { username, password }))
        }
        _ => Ok(None),
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `ghcr.io` stays; `http://h:5000/x` → `h:5000`.
fn registry_host(key: &str) -> String {
    let rest = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<HashMap<String, Credentials>, UpstreamError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        load_docker_config(&path)
    }

    fn basic(c: &Credentials) -> (&str, &str) {
        match c {
            Credentials::Basic { username, password } => (username, password),
            Credentials::Token(_) => panic!("expected basic credentials"),
        }
    }

    #[test]
    fn reads_every_entry_form() {
        let auth = BASE64.encode("alice:s3cr:et");
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "ghcr.io": {{"username": "bob", "password": "pw"}},
                "http://LOCALHOST:5000/v2/": {{"identitytoken": "refresh-me", "auth": "{auth}"}},
                "quay.io": {{}}
            }}, "credsStore": "desktop"}}"#
        );
        let creds = load(&json).unwrap();
        assert_eq!(basic(&creds["docker.io"]), ("alice", "s3cr:et"));
        assert_eq!(basic(&creds["ghcr.io"]), ("bob", "pw"));
        assert!(matches!(&creds["localhost:5000"], Credentials::Token(t) if t == "refresh-me"));
        assert!(!creds.contains_key("quay.io"));
        assert_eq!(creds.len(), 3);
    }

    #[test]
    fn bad_input_is_a_config_error_without_the_secret() {
        let err = load(r#"{"auths": {"x.io": {"auth": "bm9jb2xvbg=="}}}"#).unwrap_err();
        assert!(matches!(&err, UpstreamError::Config { detail } if detail.contains("x.io")));
        assert!(!err.to_string().contains("bm9jb2xvbg"));
        assert!(matches!(load("not json"), Err(UpstreamError::Config { .. })));
        let missing = load_docker_config(Path::new("/nonexistent/shoal/config.json"));
        assert!(matches!(missing, Err(UpstreamError::Config { .. })));
    }

    #[test]
    fn debug_redacts_credentials() {
        let c = Credentials::Basic { username: "alice".into(), password: "hunter2".into() };
        let config = UpstreamConfig {
            name: "x".into(),
            url: "http://x".into(),
            credentials: Some(c),
            ..Default::default()
        };
        let shown = format!("{config:?} {:?}", Credentials::Token("tok-123".into()));
        assert!(shown.contains("<redacted>"));
        for secret in ["alice", "hunter2", "tok-123"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
