//! Repository names as the OCI distribution spec defines them, and the registry host names
//! that go before them.
//!
//! A name is one or more `/`-separated path components, each lowercase alphanumerics joined by
//! single separators (`.`, `_`, `__`, or a run of `-`). The grammar rules out `..`, empty
//! components, upper case and percent-escapes, so a valid name is also safe in a path or a key.

use std::fmt;

/// The whole name, registry host excluded, is capped as distribution caps it.
pub const MAX_NAME_LEN: usize = 255;

/// A validated repository name such as `library/alpine` or `org/team/app`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository name is empty")]
    Empty,
    #[error("repository name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error(
        "repository name component {0:?} is invalid (lowercase a-z, 0-9 and single . _ __ - separators)"
    )]
    BadComponent(String),
}

impl RepositoryName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        for component in s.split('/') {
            if !valid_component(component) {
                return Err(NameError::BadComponent(component.chars().take(64).collect()));
            }
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number of `/`-separated components.
    pub fn depth(&self) -> usize {
        self.0.split('/').count()
    }

    /// Docker Hub's rule: an official image `alpine` lives at `library/alpine`. The prefix
    /// counts towards the length cap, so a one-part name of more than 247 bytes has no such name.
    pub fn with_library_prefix(&self) -> Result<Self, NameError> {
        if self.depth() == 1 {
            Self::parse(&format!("library/{}", self.0))
        } else {
            Ok(self.clone())
        }
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &bytes[start..i];
        let ok = sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepositoryName({:?})", self.0)
    }
}

/// A DNS name or `host:port` as a registry name may be: the syntax check that keeps
/// a node that may fetch from any registry from building URLs out of arbitrary request text.
pub fn is_registry_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    port_ok && labels_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts() {
        for ok in ["docker.io", "localhost:5000", "my-registry.example.com", "10.0.0.1:443"] {
            assert!(is_registry_host(ok), "{ok}");
        }
        for bad in
            ["", "a..b", "-a.com", "a.com:", "a.com:99999", "A.com", "a/b", "a.com:5000:1", "a@b"]
        {
            assert!(!is_registry_host(bad), "{bad}");
        }
    }
    use proptest::prelude::*;

    #[test]
    fn accepts_spec_examples() {
        for ok in ["alpine", "library/alpine", "a/b/c", "my-org/my__app", "a.b_c--d/e0", "0"] {
            assert!(RepositoryName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "", "/", "a/", "/a", "a//b", "..", "a/../b", "a/./b", "Alpine", "a%2fb", "a%2e%2e",
            "a..b", "a___b", "-a", "a-", "a b", "a\\b", "a/b?c", "ä",
        ] {
            assert!(RepositoryName::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(RepositoryName::parse(&"a".repeat(256)), Err(NameError::TooLong));
    }

    #[test]
    fn library_prefix_only_for_single_component() {
        let one = RepositoryName::parse("alpine").unwrap();
        assert_eq!(one.with_library_prefix().unwrap().as_str(), "library/alpine");
        let two = RepositoryName::parse("org/app").unwrap();
        assert_eq!(two.with_library_prefix().unwrap().as_str(), "org/app");
    }

    /// Found by the `route` fuzz target: a one-part name of 248 to 255 bytes became a
    /// `library/` name over the cap that every `RepositoryName` is meant to keep.
    #[test]
    fn library_prefix_keeps_the_length_cap() {
        let longest = RepositoryName::parse(&"a".repeat(MAX_NAME_LEN - 8)).unwrap();
        assert_eq!(longest.with_library_prefix().unwrap().as_str().len(), MAX_NAME_LEN);
        let found = "vc---------------z--------------------z---------------m-------------------------------------------------------z--------------------z---------------m----------------------------------------------m-------------m----------------------------------------l";
        let long = RepositoryName::parse(found).unwrap();
        assert_eq!(long.with_library_prefix(), Err(NameError::TooLong));
        let long = RepositoryName::parse(&"a".repeat(MAX_NAME_LEN)).unwrap();
        assert_eq!(long.with_library_prefix(), Err(NameError::TooLong));
    }

    proptest! {
        #[test]
        fn valid_names_are_path_safe(s in "\\PC{0,80}") {
            if let Ok(name) = RepositoryName::parse(&s) {
                prop_assert!(!name.as_str().contains(".."));
                prop_assert!(!name.as_str().contains('%'));
                prop_assert!(!name.as_str().starts_with('/'));
            }
        }
    }
}
