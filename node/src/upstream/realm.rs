//! Where a registry's credentials may go: a 401 names any URL as its token service (the
//! `realm`), and the token request carries the username and password (or the refresh token).
//!
//! A realm on the registry's own host is trusted; one on another host only when the operator
//! listed it (`token_realms`: Docker Hub's `auth.docker.io` is built in). Plain `http://` is
//! never trusted on another host, and never from a registry reached over `https://`: a
//! credential sent in clear text to a host nobody vetted is a credential given away.

use reqwest::Url;

/// The hosts one registry's credentials may be sent to.
#[derive(Debug, Clone)]
pub(crate) struct RealmPolicy {
    registry_host: String,
    registry_https: bool,
    /// Other hosts the operator allowed, lowercased.
    allowed: Vec<String>,
}

impl RealmPolicy {
    pub fn new(registry: &Url, allowed: &[String]) -> Self {
        Self {
            registry_host: registry.host_str().unwrap_or_default().to_ascii_lowercase(),
            registry_https: registry.scheme() == "https",
            allowed: allowed.iter().map(|h| h.trim().to_ascii_lowercase()).collect(),
        }
    }

    /// `Ok` when credentials may go to `realm`; otherwise why not, for the log.
    pub fn check(&self, realm: &Url) -> Result<(), String> {
        let host = realm.host_str().unwrap_or_default().to_ascii_lowercase();
        let own_host = host == self.registry_host;
        match realm.scheme() {
            "https" if own_host || self.allowed.contains(&host) => Ok(()),
            "https" => Err(format!(
                "token service {host} is not the registry's host and not in its token_realms"
            )),
            "http" if own_host && !self.registry_https => Ok(()),
            "http" if own_host => {
                Err("token service is plain http although the registry is https".to_owned())
            }
            _ => Err(format!("token service {host} is plain http on another host")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(registry: &str, allowed: &[&str]) -> RealmPolicy {
        let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        RealmPolicy::new(&Url::parse(registry).unwrap(), &allowed)
    }

    fn allows(policy: &RealmPolicy, realm: &str) -> bool {
        policy.check(&Url::parse(realm).unwrap()).is_ok()
    }

    #[test]
    fn own_host_over_https_or_a_local_http_registry() {
        let hub = policy("https://registry-1.docker.io", &["Auth.Docker.io"]);
        assert!(allows(&hub, "https://registry-1.docker.io:8443/token"));
        assert!(allows(&hub, "https://auth.docker.io/token"));
        assert!(!allows(&hub, "https://evil.example/token"));
        // A registry reached over TLS never sends credentials in clear text, even to itself.
        assert!(!allows(&hub, "http://registry-1.docker.io/token"));
        assert!(!allows(&hub, "http://auth.docker.io/token"));

        let local = policy("http://127.0.0.1:5000", &["localhost"]);
        assert!(allows(&local, "http://127.0.0.1:5001/token"));
        assert!(allows(&local, "https://localhost/token"));
        // Listed or not, another host over plain http is refused.
        assert!(!allows(&local, "http://localhost:5001/token"));
        assert!(!allows(&local, "http://10.0.0.9/token"));
    }

    #[test]
    fn the_reason_names_the_host() {
        let reason = policy("https://ghcr.io", &[]).check(&Url::parse("https://x.io/t").unwrap());
        assert!(reason.unwrap_err().contains("x.io"));
    }
}
