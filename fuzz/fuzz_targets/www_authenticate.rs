//! Fuzzes the `WWW-Authenticate` parser the upstream client runs on every 401, and the check
//! of where the bearer realm it names may receive credentials.
//!
//! The parse must be stable: writing the challenges back out and parsing them again gives the
//! same challenges. The realm check must never let credentials go over plain http from a
//! registry reached over https, nor to a host that is neither the registry's nor listed.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Two registries as operators configure them: Docker Hub with its built-in token host, and a
/// local plain-http registry with a listed one.
const POLICIES: &[(&str, &str, &[&str])] = &[
    ("https://registry-1.docker.io", "registry-1.docker.io", &["auth.docker.io"]),
    ("http://127.0.0.1:5000", "127.0.0.1", &["localhost"]),
];

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    let challenges = shoal::fuzzing::www_authenticate(header);
    for (scheme, params) in &challenges {
        assert!(!scheme.is_empty() && scheme.bytes().all(is_tchar), "{scheme:?}");
        assert_eq!(*scheme, scheme.to_ascii_lowercase());
        for (key, _) in params {
            assert!(!key.is_empty() && key.bytes().all(is_tchar), "{key:?}");
            assert_eq!(*key, key.to_ascii_lowercase());
        }
    }
    assert_eq!(shoal::fuzzing::www_authenticate(&write_back(&challenges)), challenges);

    // The client answers the first bearer challenge, with the first realm it names.
    let Some((_, params)) = challenges.iter().find(|(scheme, _)| scheme == "bearer") else {
        return;
    };
    let Some((_, realm)) = params.iter().find(|(key, _)| key == "realm") else { return };
    for (registry, registry_host, allowed) in POLICIES {
        let allowed: Vec<String> = allowed.iter().map(|h| (*h).to_owned()).collect();
        let Some((scheme, host, verdict)) = shoal::fuzzing::realm_check(registry, &allowed, realm)
        else {
            continue;
        };
        if verdict.is_ok() {
            assert!(host == *registry_host || allowed.contains(&host), "{realm:?} for {registry}");
            if scheme == "http" {
                assert!(registry.starts_with("http://") && host == *registry_host, "{realm:?}");
            }
        }
    }
});

/// The challenges as a registry would write them: every value quoted, `"` and `\` escaped.
fn write_back(challenges: &[(String, Vec<(String, String)>)]) -> String {
    let mut out = Vec::new();
    for (scheme, params) in challenges {
        let params: Vec<String> = params
            .iter()
            .map(|(key, value)| {
                format!("{key}=\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
            })
            .collect();
        out.push(format!("{scheme} {}", params.join(", ")).trim_end().to_owned());
    }
    out.join(", ")
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
