//! The htpasswd file: `user:$2y$...` lines, bcrypt only.
//!
//! Apache's other hash kinds (`$apr1$` MD5, `{SHA}`, `crypt`, plain text) are fast to brute
//! force, so a file holding one is refused at start with the line that holds it, rather than
//! accepted and silently weaker than the operator thinks.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use super::AuthFileError;

/// Users and their bcrypt hashes, as read from the file.
#[derive(Clone, Default)]
pub struct Htpasswd {
    users: BTreeMap<String, String>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        super::load_file(path, Self::parse)
    }

    /// Parses the file's text; an error names the 1-based line and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut users = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or((n, "expected user:hash".to_owned()))?;
            super::check_name(user).map_err(|detail| (n, detail))?;
            if let Some(kind) = other_kind(hash) {
                return Err((
                    n,
                    format!(
                        "user {user:?}: its hash is {kind}; only bcrypt ($2y$, $2b$) is accepted \
                         (make one with `htpasswd -nbB -C 10 USER PASSWORD` or `shoal auth htpasswd USER`)"
                    ),
                ));
            }
            bcrypt::HashParts::from_str(hash)
                .map_err(|e| (n, format!("user {user:?}: not a bcrypt hash: {e}")))?;
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err((n, format!("user {user:?} appears twice")));
            }
        }
        Ok(Htpasswd { users })
    }

    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The cost of the file's first hash: what a check of an unknown user should cost too.
    pub fn typical_cost(&self) -> Option<u32> {
        let hash = self.users.values().next()?;
        bcrypt::HashParts::from_str(hash).ok().map(|p| p.get_cost())
    }
}

/// The name of a hash kind this file must not hold, when it is one.
fn other_kind(hash: &str) -> Option<&'static str> {
    if hash.starts_with("$apr1$") {
        Some("Apache MD5 ($apr1$)")
    } else if hash.starts_with("{SHA}") {
        Some("SHA-1 ({SHA})")
    } else if hash.starts_with("$1$") {
        Some("MD5-crypt ($1$)")
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        Some("SHA-crypt")
    } else if !hash.starts_with("$2") {
        Some("crypt or plain-text")
    } else {
        None
    }
}

// Hand-written so that no hash reaches a log line.
impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd").field("users", &self.users.keys().collect::<Vec<_>>()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `htpasswd -nbB` writes: the `$2y$` spelling.
    fn alice_2y() -> String {
        let parts = bcrypt::hash_with_result("secret", 4).unwrap();
        format!("alice:{}", parts.format_for_version(bcrypt::Version::TwoY))
    }

    /// What the `bcrypt` crate writes: the `$2b$` spelling.
    fn bcrypt_line(user: &str, password: &str) -> String {
        format!("{user}:{}", bcrypt::hash(password, 4).unwrap())
    }

    #[test]
    fn reads_2y_and_2b_entries_comments_and_blank_lines() {
        let text = format!("# users\n\n{}\r\n{}\n", alice_2y(), bcrypt_line("bob", "pw"));
        let file = Htpasswd::parse(&text).unwrap();
        assert_eq!(file.names().collect::<Vec<_>>(), ["alice", "bob"]);
        assert!(bcrypt::verify("secret", file.hash_of("alice").unwrap()).unwrap());
        assert!(bcrypt::verify("pw", file.hash_of("bob").unwrap()).unwrap());
        assert!(file.hash_of("carol").is_none());
        assert_eq!(file.typical_cost(), Some(4));
    }

    #[test]
    fn other_hash_kinds_are_refused_with_their_line() {
        for (line, kind) in [
            ("carol:$apr1$abc$def", "$apr1$"),
            ("carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "{SHA}"),
            ("carol:plaintext", "plain"),
            ("carol:$6$salt$hash", "SHA-crypt"),
        ] {
            let text = format!("{}\n{line}\n", alice_2y());
            let (n, detail) = Htpasswd::parse(&text).unwrap_err();
            assert_eq!(n, 2, "{line}");
            assert!(detail.contains(kind) && detail.contains("carol"), "{detail}");
            assert!(!detail.contains("W6ph5"), "the hash is not repeated: {detail}");
        }
    }

    #[test]
    fn malformed_lines_are_refused() {
        for bad in ["no-colon", ":$2y$04$x", "alice:$2y$04$short", "Al ice:$2y$"] {
            assert_eq!(Htpasswd::parse(bad).unwrap_err().0, 1, "{bad}");
        }
        let twice = format!("{0}\n{0}", alice_2y());
        assert!(Htpasswd::parse(&twice).unwrap_err().1.contains("twice"));
    }

    #[test]
    fn debug_output_shows_no_hash() {
        let file = Htpasswd::parse(&alice_2y()).unwrap();
        let text = format!("{file:?}");
        assert!(text.contains("alice") && !text.contains("$2y$"), "{text}");
    }
}
