//! The tokens file: `name:sha256:<hex>` lines, the SHA-256 of each client's bearer token.
//!
//! Only hashes are stored, so a copy of the file (a backup, a config repository) gives nobody a
//! token. A plain SHA-256 is enough here, unlike for passwords: tokens are long random strings
//! (`shoal auth token` makes 256-bit ones), so there is nothing to guess. Comparisons are
//! constant-time and a bearer lookup looks at every entry, so timing says nothing of a token.

use std::path::Path;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::AuthFileError;

const PREFIX: &str = "sha256:";

/// Named clients and the hashes of their tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, [u8; 32])>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        super::load_file(path, Self::parse)
    }

    /// Parses the file's text; an error names the 1-based line and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut entries: Vec<(String, [u8; 32])> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, hash) =
                line.split_once(':').ok_or((n, "expected name:sha256:<hex>".to_owned()))?;
            super::check_name(name).map_err(|detail| (n, detail))?;
            let hex = hash.strip_prefix(PREFIX).ok_or_else(|| {
                (n, format!("{name:?}: expected sha256:<64 hex digits> (the token's hash, not the token)"))
            })?;
            let mut raw = [0u8; 32];
            hex::decode_to_slice(hex, &mut raw)
                .map_err(|_| (n, format!("{name:?}: the hash is not 64 hex digits")))?;
            if entries.iter().any(|(other, _)| other == name) {
                return Err((n, format!("{name:?} appears twice")));
            }
            entries.push((name.to_owned(), raw));
        }
        Ok(Tokens { entries })
    }

    /// The name whose token this is. Every entry is compared, whatever matches.
    pub fn find(&self, token: &str) -> Option<&str> {
        let hash = hash(token);
        let mut found = None;
        for (name, stored) in &self.entries {
            if bool::from(stored.ct_eq(&hash)) {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Whether `token` is the token of `name` (for clients that send it as a Basic password).
    pub fn check(&self, name: &str, token: &str) -> Option<bool> {
        let (_, stored) = self.entries.iter().find(|(n, _)| n == name)?;
        Some(bool::from(stored.ct_eq(&hash(token))))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, _)| name.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The line of the tokens file for `name` and `token`.
pub fn file_line(name: &str, token: &str) -> String {
    format!("{name}:{PREFIX}{}", hex::encode(hash(token)))
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

// Hand-written so that no hash reaches a log line.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("names", &self.names().collect::<Vec<_>>()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_name_of_a_token_and_checks_named_ones() {
        // The hash is what `printf %s ci-token | sha256sum` prints.
        let text = format!(
            "# machines\nci:sha256:{}\n\n{}\n",
            "948b8c2427cd29047839b8e4a27a08763f8befbafa86be5cce8e46217d75e58a",
            file_line("deploy", "deploy-token")
        );
        let tokens = Tokens::parse(&text).unwrap();
        assert_eq!(file_line("ci", "ci-token"), text.lines().nth(1).unwrap());
        assert_eq!(tokens.find("ci-token"), Some("ci"));
        assert_eq!(tokens.find("deploy-token"), Some("deploy"));
        assert_eq!(tokens.find("ci-token "), None);
        assert_eq!(tokens.find(""), None);
        assert_eq!(tokens.check("deploy", "deploy-token"), Some(true));
        assert_eq!(tokens.check("deploy", "ci-token"), Some(false));
        assert_eq!(tokens.check("nobody", "ci-token"), None);
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let good = file_line("a", "t");
        for (bad, says) in [
            ("ci:plain-token", "sha256:"),
            ("ci:sha256:abc", "64 hex"),
            ("nocolon", "expected"),
            (good.as_str(), "twice"),
        ] {
            let (n, detail) = Tokens::parse(&format!("{good}\n{bad}")).unwrap_err();
            assert_eq!(n, 2, "{bad}");
            assert!(detail.contains(says), "{detail}");
        }
    }
}
