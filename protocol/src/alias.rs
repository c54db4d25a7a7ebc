//! Digests under the image spec's other common algorithm, sha512, and the one type for "a digest
//! a client may name content by".
//!
//! Content keeps one identity inside Shoal: its sha256 (file names, DHT keys, pins). A client
//! that pushes content under `sha512:<hex>` names it with an alias: the node checks that the
//! bytes hash to it, stores them under their sha256, and records which sha256 the sha512 names.
//! Only a check that the bytes hash to both makes an alias, so an alias can be trusted as far as
//! the content it leads to.

use std::fmt;

use sha2::{Digest as _, Sha512};

use crate::digest::{Digest, DigestError, decode_lower_hex};

/// A validated sha512 digest: `sha512:<128 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha512Digest([u8; 64]);

impl Sha512Digest {
    /// The digest of bytes held in memory (manifests).
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha512::digest(bytes).into())
    }

    pub fn from_raw(raw: [u8; 64]) -> Self {
        Self(raw)
    }

    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// A hasher to feed a blob's bytes through, in order.
    pub fn hasher() -> Sha512 {
        Sha512::new()
    }

    /// What `hasher` computed.
    pub fn finish(hasher: Sha512) -> Self {
        Self(hasher.finalize().into())
    }

    /// The key an alias is found under in the fleet's DHT: a sha256 of a domain-separated
    /// form, so it can never be the key of any content.
    pub fn dht_key(&self) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(b"shoal-alias\0sha512\0");
        h.update(self.0);
        h.finalize().into()
    }
}

impl fmt::Display for Sha512Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha512:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Sha512Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// A digest as a client may name content: by its sha256 (its identity), or by its sha512.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AnyDigest {
    Sha256(Digest),
    Sha512(Sha512Digest),
}

impl AnyDigest {
    /// Parses `sha256:<64 hex>` or `sha512:<128 hex>`, lowercase; any other algorithm is
    /// `UnsupportedAlgorithm`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        match s.split_once(':') {
            Some(("sha512", encoded)) => Ok(Self::Sha512(Sha512Digest(decode_lower_hex(encoded)?))),
            _ => Digest::parse(s).map(Self::Sha256),
        }
    }

    /// The sha256 this names directly; `None` for an alias.
    pub fn sha256(&self) -> Option<Digest> {
        match self {
            Self::Sha256(d) => Some(*d),
            Self::Sha512(_) => None,
        }
    }

    /// Whether `bytes` (held in memory) hash to this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        match self {
            Self::Sha256(d) => Digest::of(bytes) == *d,
            Self::Sha512(d) => Sha512Digest::of(bytes) == *d,
        }
    }
}

impl From<Digest> for AnyDigest {
    fn from(d: Digest) -> Self {
        Self::Sha256(d)
    }
}

impl fmt::Display for AnyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sha256(d) => d.fmt(f),
            Self::Sha512(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// sha512 of the empty string.
    const EMPTY: &str = "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

    #[test]
    fn parses_both_algorithms_and_displays_them_back() {
        let d = AnyDigest::parse(EMPTY).unwrap();
        assert_eq!(d, AnyDigest::Sha512(Sha512Digest::of(b"")));
        assert_eq!(d.to_string(), EMPTY);
        assert!(d.matches(b"") && !d.matches(b"x"));
        assert_eq!(d.sha256(), None);
        let s = AnyDigest::parse(&Digest::of(b"").to_string()).unwrap();
        assert_eq!(s, AnyDigest::Sha256(Digest::of(b"")));
        assert_eq!(s.sha256(), Some(Digest::of(b"")));
    }

    #[test]
    fn rejects_malformed_sha512() {
        assert_eq!(AnyDigest::parse("sha512:abcd"), Err(DigestError::BadLength(4)));
        assert_eq!(
            AnyDigest::parse(&EMPTY.to_uppercase().replace("SHA512", "sha512")),
            Err(DigestError::BadEncoding)
        );
        assert_eq!(AnyDigest::parse(&format!("{EMPTY}0")), Err(DigestError::BadLength(129)));
        assert!(matches!(
            AnyDigest::parse(&EMPTY.replace("sha512", "blake3")),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert_eq!(AnyDigest::parse("nocolon"), Err(DigestError::MissingAlgorithm));
    }

    #[test]
    fn the_dht_key_is_no_content_digest() {
        let d = Sha512Digest::of(b"x");
        assert_ne!(d.dht_key(), *Digest::of(&d.0).as_bytes());
        assert_ne!(d.dht_key(), Sha512Digest::of(b"y").dht_key());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = AnyDigest::parse(&s);
        }

        #[test]
        fn display_round_trips(raw in prop::array::uniform32(any::<u8>()), raw2 in prop::array::uniform32(any::<u8>())) {
            let mut full = [0u8; 64];
            full[..32].copy_from_slice(&raw);
            full[32..].copy_from_slice(&raw2);
            let d = AnyDigest::Sha512(Sha512Digest::from_raw(full));
            prop_assert_eq!(AnyDigest::parse(&d.to_string()), Ok(d));
        }
    }
}
