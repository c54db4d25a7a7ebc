//! Content digests (`sha256:<64 lowercase hex>`) and the streaming verifier that guards the store.
//!
//! sha256 is content's identity: it is what every registry in the wild produces, and one hash
//! function stays on the hot path. Content a client names by sha512 is reached through an alias
//! (`alias.rs`). The canonical form is strict — lowercase hex, exact
//! length — because the digest string becomes a file name and a DHT key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

const SHA256_PREFIX: &str = "sha256:";
const SHA256_HEX_LEN: usize = 64;

/// A validated sha256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest has no algorithm prefix (expected \"sha256:<hex>\")")]
    MissingAlgorithm,
    #[error("digest algorithm {0:?} is not supported (only sha256 and sha512)")]
    UnsupportedAlgorithm(String),
    #[error("digest has {0} hex characters; a sha256 has {SHA256_HEX_LEN}, a sha512 128")]
    BadLength(usize),
    #[error("digest hex must be lowercase 0-9a-f")]
    BadEncoding,
}

/// The bytes did not hash to the digest they were fetched under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("content digest mismatch: expected {expected}, got {actual} ({len} bytes)")]
pub struct DigestMismatch {
    pub expected: Digest,
    pub actual: Digest,
    pub len: u64,
}

impl Digest {
    /// Parses the canonical form `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let Some((algorithm, encoded)) = s.split_once(':') else {
            return Err(DigestError::MissingAlgorithm);
        };
        if algorithm != "sha256" {
            return Err(DigestError::UnsupportedAlgorithm(truncate(algorithm, 32)));
        }
        decode_lower_hex(encoded).map(Self)
    }

    /// The digest of a byte slice held in memory (manifests; never blobs).
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub fn from_raw(raw: [u8; 32]) -> Self {
        Self(raw)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64-character lowercase hex part, as used in file names.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A verifier that accepts bytes in pieces and checks them against this digest at the end.
    pub fn verifier(&self) -> DigestVerifier {
        DigestVerifier { expected: *self, hasher: Sha256::new(), len: 0 }
    }
}

/// The `N` bytes that exactly `2 * N` lowercase hex characters spell: the one canonical form, so
/// that one digest has one spelling (it becomes a file name and a key).
pub(crate) fn decode_lower_hex<const N: usize>(encoded: &str) -> Result<[u8; N], DigestError> {
    if encoded.len() != 2 * N {
        return Err(DigestError::BadLength(encoded.len()));
    }
    if !encoded.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(DigestError::BadEncoding);
    }
    let mut raw = [0u8; N];
    hex::decode_to_slice(encoded, &mut raw).map_err(|_| DigestError::BadEncoding)?;
    Ok(raw)
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256_PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

// The raw 32 bytes as a fixed-size array: compact in binary encodings, and the same shape on
// the way in and out (a `serialize_bytes` would add a length prefix that `[u8; 32]` does not read).
impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: [u8; 32] = Deserialize::deserialize(d)?;
        Ok(Self(raw))
    }
}

/// Hashes a stream of bytes and checks it against the expected digest at the end.
///
/// Every byte that enters the store passes through one of these, whatever its source.
#[derive(Clone)]
pub struct DigestVerifier {
    expected: Digest,
    hasher: Sha256,
    len: u64,
}

impl DigestVerifier {
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn expected(&self) -> Digest {
        self.expected
    }

    /// Returns the total length when the bytes match, the mismatch otherwise.
    pub fn finish(self) -> Result<u64, DigestMismatch> {
        let actual = Digest(self.hasher.finalize().into());
        if actual == self.expected {
            Ok(self.len)
        } else {
            Err(DigestMismatch { expected: self.expected, actual, len: self.len })
        }
    }
}

impl fmt::Debug for DigestVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestVerifier")
            .field("expected", &self.expected)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays_canonical_form() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::of(b""), d);
    }

    #[test]
    fn rejects_malformed_digests() {
        assert_eq!(Digest::parse("e3b0c442"), Err(DigestError::MissingAlgorithm));
        assert!(matches!(
            Digest::parse(&EMPTY.replace("sha256", "sha512")),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            Digest::parse(&EMPTY.replace("sha256", "SHA256")),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert_eq!(Digest::parse("sha256:abcd"), Err(DigestError::BadLength(4)));
        assert_eq!(Digest::parse(&format!("{EMPTY}00")), Err(DigestError::BadLength(66)));
        assert_eq!(
            Digest::parse(&EMPTY.to_uppercase().replace("SHA256", "sha256")),
            Err(DigestError::BadEncoding)
        );
        assert_eq!(Digest::parse(&EMPTY.replace('e', "g")), Err(DigestError::BadEncoding));
        assert_eq!(Digest::parse(""), Err(DigestError::MissingAlgorithm));
    }

    #[test]
    fn verifier_accepts_pieces_and_catches_mismatch() {
        let data = b"hello, shoal";
        let digest = Digest::of(data);
        let mut v = digest.verifier();
        v.update(&data[..5]);
        v.update(&data[5..]);
        assert_eq!(v.finish(), Ok(data.len() as u64));

        let mut v = digest.verifier();
        v.update(b"hello, sh0al");
        let err = v.finish().unwrap_err();
        assert_eq!(err.expected, digest);
        assert_eq!(err.actual, Digest::of(b"hello, sh0al"));
    }

    #[test]
    fn serde_round_trips_in_a_binary_encoding() {
        let d = Digest::of(b"round trip");
        let bytes = postcard::to_stdvec(&d).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(postcard::from_bytes::<Digest>(&bytes).unwrap(), d);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = Digest::parse(&s);
        }

        #[test]
        fn display_round_trips(raw in any::<[u8; 32]>()) {
            let d = Digest::from_raw(raw);
            prop_assert_eq!(Digest::parse(&d.to_string()), Ok(d));
        }
    }
}
