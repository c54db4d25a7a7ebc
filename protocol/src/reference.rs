//! What follows `/manifests/`: a tag or a digest.

use std::fmt;

use crate::digest::{Digest, DigestError};

const MAX_TAG_LEN: usize = 128;

/// A validated tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag is empty")]
    Empty,
    #[error("tag is longer than {MAX_TAG_LEN} characters")]
    TooLong,
    #[error("tag must match [a-zA-Z0-9_][a-zA-Z0-9._-]*")]
    BadCharacter,
}

impl Tag {
    pub fn parse(s: &str) -> Result<Self, TagError> {
        let bytes = s.as_bytes();
        let Some(&first) = bytes.first() else { return Err(TagError::Empty) };
        if bytes.len() > MAX_TAG_LEN {
            return Err(TagError::TooLong);
        }
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        if !word(first) || !bytes[1..].iter().all(|&b| word(b) || b == b'.' || b == b'-') {
            return Err(TagError::BadCharacter);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({:?})", self.0)
    }
}

/// A manifest reference: mutable tag or immutable digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid tag: {0}")]
    Tag(#[from] TagError),
    #[error("invalid digest: {0}")]
    Digest(#[from] DigestError),
}

impl Reference {
    /// A reference with a `:` is a digest (tags cannot contain one); anything else is a tag.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.contains(':') {
            Ok(Self::Digest(Digest::parse(s)?))
        } else {
            Ok(Self::Tag(Tag::parse(s)?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => t.fmt(f),
            Self::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(Tag::parse(""), Err(TagError::Empty));
        assert_eq!(Tag::parse(&"a".repeat(129)), Err(TagError::TooLong));
        for bad in [".x", "-x", "a/b", "a b", "..", "%2e", "tag\n"] {
            assert_eq!(Tag::parse(bad), Err(TagError::BadCharacter), "{bad:?}");
        }
    }

    #[test]
    fn references() {
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(Reference::parse(d), Ok(Reference::Digest(_))));
        assert!(matches!(Reference::parse("sha256:zz"), Err(ReferenceError::Digest(_))));
        assert!(matches!(Reference::parse("md5:abc"), Err(ReferenceError::Digest(_))));
    }
}
