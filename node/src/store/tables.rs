//! Every table of the redb index, and the encoding of the values stored in them.
//!
//! Table names carry a version: a change to a key layout gets a new table, never a silent
//! reinterpretation of old bytes. Values are a version byte followed by postcard; a value whose
//! version this build does not know decodes as "missing", so an index written by a newer node is
//! rebuilt or refetched rather than misread.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::TableDefinition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Blob digest (raw sha256) → [`BlobRow`].
pub(crate) const BLOBS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blobs-1");

/// (upstream, repository, tag) → [`TagRow`]. The tuple key sorts by upstream, then repository,
/// then tag, so the tags of one repository are one contiguous range — the per-repo index that
/// `tags/list` needs, without a second table to keep in step.
pub(crate) const TAGS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("tags-1");

/// Blob digest (raw sha256) → [`SeenRow`]: the repositories the digest is known to be in.
pub(crate) const SEEN: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("seen-in-1");

/// Blob digest (raw sha256) → [`PinRow`]: why the blob must never be evicted.
pub(crate) const PINS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("pins-1");

/// (registry, repository, tag) → [`TagRow`] of tags pushed to this node. Kept apart from
/// [`TAGS`] because they mean something else: the truth for that name, never revalidated
/// upstream, where a row of `TAGS` is only the last answer an upstream gave.
pub(crate) const PUSHED_TAGS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("pushed-tags-1");

/// (registry, repository, subject digest, referrer digest) → [`ReferrerRow`]: the manifests
/// pushed with a `subject`, so that one range read answers the referrers API.
pub(crate) const REFERRERS: TableDefinition<ReferrerKey, &[u8]> =
    TableDefinition::new("referrers-1");

/// (registry, repository, manifest digest) → [`ImagePinRow`]: the images this node keeps on
/// the fleet's behalf (pushed, imported, `shoal pin`), and the releases that undo them.
pub(crate) const IMAGE_PINS: TableDefinition<(&str, &str, &[u8; 32]), &[u8]> =
    TableDefinition::new("image-pins-1");

/// (registry, repository, subject digest, artifact type or "") → [`UpstreamReferrersRow`]: the
/// referrers an upstream last listed for a subject, with the filter the client asked for (an
/// upstream may apply it), so that a node asks at most once per tag TTL.
pub(crate) const UPSTREAM_REFERRERS: TableDefinition<UpstreamReferrersKey, &[u8]> =
    TableDefinition::new("upstream-referrers-1");

/// sha512 digest (raw) → the sha256 [`shoal_protocol::Digest`] of the same content (see
/// `aliases.rs`).
pub(crate) const ALIASES: TableDefinition<&[u8; 64], &[u8]> = TableDefinition::new("aliases-1");

/// (registry, repository, subject digest, artifact type or "").
pub(crate) type UpstreamReferrersKey =
    (&'static str, &'static str, &'static [u8; 32], &'static str);

/// (registry, repository, subject digest, referrer digest).
pub(crate) type ReferrerKey = (&'static str, &'static str, &'static [u8; 32], &'static [u8; 32]);

const ROW_VERSION: u8 = 1;

/// What the index knows about one stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlobRow {
    pub size: u64,
    pub media_type: Option<String>,
    /// Milliseconds since the Unix epoch; strictly increasing across accesses of one process.
    pub last_access_ms: u64,
}

/// What the index knows about one tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TagRow {
    // Raw bytes rather than `Digest`: the row layout must not depend on another crate's serde.
    pub digest: [u8; 32],
    pub media_type: String,
    pub fetched_at_ms: u64,
}

/// Where one digest is known to be: `registry/repository` names, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SeenRow {
    pub names: Vec<String>,
}

/// Why a blob is pinned: one entry per pushed tag, imported image or `shoal pin`, so that
/// removing one reason leaves the others' pin in place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PinRow {
    pub reasons: Vec<String>,
}

/// The descriptor of a manifest that refers to a subject, as the referrers API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReferrerRow {
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    /// The manifest's annotations, as JSON text (postcard cannot carry arbitrary JSON).
    pub annotations: Option<String>,
}

/// One pinned (or released) image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImagePinRow {
    pub tag: Option<String>,
    pub platform: Option<String>,
    pub replicas: u32,
    /// When it was pinned, or when it was released; the later event wins on every member.
    pub at_ms: u64,
    pub released: bool,
    /// A release that also deleted the pushed tag.
    pub deleted: bool,
    pub with_referrers: bool,
}

/// An upstream's referrers of one subject, and when the upstream last gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UpstreamReferrersRow {
    pub fetched_at_ms: u64,
    pub referrers: Vec<([u8; 32], ReferrerRow)>,
}

/// Encodes a row as its version byte followed by postcard.
pub(crate) fn encode<T: Serialize>(row: &T) -> Vec<u8> {
    let mut out = vec![ROW_VERSION];
    // Serializing these plain structs into a Vec has no failure case; an empty row would
    // decode as missing rather than as something wrong.
    if let Ok(body) = postcard::to_stdvec(row) {
        out.extend_from_slice(&body);
    }
    out
}

/// Decodes a row; an unknown version, a malformed body or trailing bytes give `None`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let (&version, body) = bytes.split_first()?;
    if version != ROW_VERSION {
        return None;
    }
    match postcard::take_from_bytes::<T>(body) {
        Ok((row, [])) => Some(row),
        _ => None,
    }
}

pub(crate) fn to_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_with_a_leading_version_byte() {
        let row = BlobRow { size: 42, media_type: Some("a/b".into()), last_access_ms: 7 };
        let bytes = encode(&row);
        assert_eq!(bytes[0], ROW_VERSION);
        assert_eq!(decode::<BlobRow>(&bytes), Some(row));

        let tag = TagRow { digest: [9; 32], media_type: "m".into(), fetched_at_ms: 1 };
        assert_eq!(decode::<TagRow>(&encode(&tag)), Some(tag));
    }

    #[test]
    fn unknown_version_or_garbage_decodes_as_missing() {
        let row = BlobRow { size: 1, media_type: None, last_access_ms: 2 };
        let mut bytes = encode(&row);
        bytes[0] = ROW_VERSION + 1;
        assert_eq!(decode::<BlobRow>(&bytes), None);
        assert_eq!(decode::<BlobRow>(&[]), None);
        assert_eq!(decode::<BlobRow>(&[ROW_VERSION, 0xff, 0xff, 0xff]), None);
        let mut trailing = encode(&row);
        trailing.push(0);
        assert_eq!(decode::<BlobRow>(&trailing), None);
    }

    #[test]
    fn millis_round_trip() {
        let t = from_millis(1_700_000_000_123);
        assert_eq!(to_millis(t), 1_700_000_000_123);
        assert_eq!(to_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
