//! The configuration file of a `docker-registry` (distribution 2.8) the harness runs.

use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::Path;

use crate::Result;
use crate::registry::{ProxyUpstream, RegistryAuth};

/// bcrypt cost for test passwords: the minimum, since nothing is protected.
const BCRYPT_COST: u32 = 4;

/// Renders the YAML configuration. Strings are written as JSON strings, which YAML reads as
/// double-quoted scalars, so paths and passwords need no further escaping.
pub(crate) fn render(
    addr: SocketAddrV4,
    storage: &Path,
    auth: &RegistryAuth,
    htpasswd_file: &Path,
    proxy: Option<&ProxyUpstream>,
    tls: Option<&crate::pki::TlsIdentity>,
) -> String {
    let mut yaml = String::new();
    // Distribution writes one combined-format line per request to stdout when the access log
    // is on; the harness counts upstream requests from it.
    yaml.push_str("version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n");
    yaml.push_str("storage:\n  filesystem:\n");
    let _ = writeln!(yaml, "    rootdirectory: {}", quote(&storage.to_string_lossy()));
    yaml.push_str("  delete:\n    enabled: true\n");
    let _ = writeln!(yaml, "http:\n  addr: {}", quote(&addr.to_string()));
    // A fixed secret keeps upload state valid across a restart.
    yaml.push_str("  secret: \"shoal-harness-upload-secret\"\n");
    if let Some(tls) = tls {
        yaml.push_str("  tls:\n");
        let _ = writeln!(yaml, "    certificate: {}", quote(&tls.cert.to_string_lossy()));
        let _ = writeln!(yaml, "    key: {}", quote(&tls.key.to_string_lossy()));
    }
    match auth {
        RegistryAuth::None => {}
        RegistryAuth::Htpasswd(_) => {
            yaml.push_str("auth:\n  htpasswd:\n    realm: \"shoal-harness\"\n");
            let _ = writeln!(yaml, "    path: {}", quote(&htpasswd_file.to_string_lossy()));
        }
        RegistryAuth::Token(token) => {
            yaml.push_str("auth:\n  token:\n");
            let _ = writeln!(yaml, "    realm: {}", quote(&token.realm));
            let _ = writeln!(yaml, "    service: {}", quote(&token.service));
            let _ = writeln!(yaml, "    issuer: {}", quote(&token.issuer));
            let bundle = token.root_cert_bundle.to_string_lossy();
            let _ = writeln!(yaml, "    rootcertbundle: {}", quote(&bundle));
        }
    }
    if let Some(proxy) = proxy {
        yaml.push_str("proxy:\n");
        let _ = writeln!(yaml, "  remoteurl: {}", quote(&proxy.remote_url));
        if let Some(credentials) = &proxy.credentials {
            let _ = writeln!(yaml, "  username: {}", quote(&credentials.username));
            let _ = writeln!(yaml, "  password: {}", quote(&credentials.password));
        }
    }
    yaml
}

/// One htpasswd line (`user:$2y$...`) in the bcrypt form distribution requires.
pub(crate) fn htpasswd_line(username: &str, password: &str) -> Result<String> {
    let hash = bcrypt::hash_with_result(password, BCRYPT_COST)?;
    Ok(format!("{username}:{}\n", hash.format_for_version(bcrypt::Version::TwoY)))
}

fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_line_verifies_the_password() {
        let line = htpasswd_line("alice", "s3cret").expect("hash");
        let (user, hash) = line.trim_end().split_once(':').expect("user:hash");
        assert_eq!(user, "alice");
        assert!(hash.starts_with("$2y$"));
        assert!(bcrypt::verify("s3cret", hash).expect("verify"));
        assert!(!bcrypt::verify("wrong", hash).expect("verify"));
    }

    #[test]
    fn proxy_config_names_the_remote_and_quotes_strings() {
        let proxy = ProxyUpstream {
            remote_url: "http://127.0.0.1:9/".to_owned(),
            credentials: Some(crate::Credentials::new("u", "p\"w")),
        };
        let addr = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 5000);
        let yaml =
            render(addr, Path::new("/s"), &RegistryAuth::None, Path::new("/h"), Some(&proxy), None);
        assert!(yaml.contains("  remoteurl: \"http://127.0.0.1:9/\"\n"));
        assert!(yaml.contains("  password: \"p\\\"w\"\n"));
        assert!(yaml.contains("  addr: \"127.0.0.1:5000\"\n"));
        assert!(!yaml.contains("auth:"));
    }
}
