//! What a manifest names: its config, layers, child manifests and subject.
//!
//! One parser for the two uses: a pulled manifest tells the node which digests belong to its
//! repository (so they may be served under that name), and a pushed one must name only content
//! the node holds. Only the fields those uses need are read; everything else in the JSON is
//! kept byte for byte by whoever stores the manifest, never re-serialized.

use bytes::Bytes;
use serde::Deserialize;

use crate::alias::{AnyDigest, Sha512Digest};
use crate::digest::Digest;
use crate::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

/// A manifest's exact bytes with its digest and media type, wherever it came from (an upstream,
/// a peer, the store, a node's API). Whoever builds one has checked the bytes against the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// A content descriptor as a manifest writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: Option<String>,
    pub digest: String,
    #[serde(default)]
    pub size: Option<i64>,
    /// Where a foreign layer lives instead of this registry.
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// In an index: the platform the child image is for.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    // Defaults, so that an odd entry does not make the whole index unreadable.
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// Whether this is `wanted` (`os/arch` or `os/arch/variant`); without a variant in
    /// `wanted`, any variant matches.
    pub fn matches(&self, wanted: &str) -> bool {
        let mut parts = wanted.split('/');
        let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
        os == Some(self.os.as_str())
            && arch == Some(self.architecture.as_str())
            && variant.is_none_or(|v| self.variant.as_deref() == Some(v))
    }
}

/// The parts of an image manifest or index that name other content.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRefs {
    #[serde(default)]
    pub schema_version: Option<i64>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// OCI artifact manifests (an early 1.1 draft) list `blobs`.
    #[serde(default)]
    pub blobs: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    #[serde(default)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Why pushed bytes are not a manifest this registry accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is not a JSON object of the image manifest or index schema: {0}")]
    NotJson(String),
    #[error("schemaVersion is {0:?}; only 2 is accepted")]
    SchemaVersion(Option<i64>),
    #[error("media type {0:?} is not an image manifest or index media type")]
    MediaType(String),
    #[error("the manifest's mediaType {field:?} differs from its Content-Type {header:?}")]
    MediaTypeMismatch { field: String, header: String },
    #[error("no media type: neither a Content-Type nor a mediaType field says what it is")]
    NoMediaType,
    #[error("descriptor digest {0:?} is not a sha256 or sha512 digest")]
    BadDigest(String),
    #[error("a descriptor's size {0} is negative")]
    BadSize(i64),
}

/// Whether `media_type` is a manifest (rather than an index) of a known format.
pub fn is_image_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Whether `media_type` is one this registry stores as a manifest.
pub fn is_manifest_media_type(media_type: &str) -> bool {
    [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST].contains(&media_type)
}

impl ManifestRefs {
    /// Reads what a manifest names; `None` for what is not one.
    pub fn parse(bytes: &[u8]) -> Option<ManifestRefs> {
        serde_json::from_slice(bytes).ok()
    }

    /// Every digest the manifest lists (config, layers, children, blobs); descriptors whose
    /// digest is not sha256 are skipped.
    pub fn references(&self) -> Vec<Digest> {
        self.descriptors().filter_map(|d| Digest::parse(&d.digest).ok()).collect()
    }

    fn descriptors(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(&self.layers).chain(&self.manifests).chain(&self.blobs)
    }

    /// Checks a pushed manifest strictly and returns its media type: schema version 2, a known
    /// media type that agrees with the `Content-Type` it came with, sha256 or sha512 digests and sizes
    /// that are not negative in every descriptor.
    pub fn check_pushed(
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<(ManifestRefs, String), ManifestError> {
        let refs: ManifestRefs =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::NotJson(e.to_string()))?;
        if refs.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion(refs.schema_version));
        }
        let media_type = match (refs.media_type.as_deref(), content_type) {
            (Some(field), Some(header)) if field != header => {
                return Err(ManifestError::MediaTypeMismatch {
                    field: field.to_owned(),
                    header: header.to_owned(),
                });
            }
            (Some(field), _) => field.to_owned(),
            (None, Some(header)) => header.to_owned(),
            (None, None) => return Err(ManifestError::NoMediaType),
        };
        if !is_manifest_media_type(&media_type) {
            return Err(ManifestError::MediaType(media_type));
        }
        for d in refs.descriptors().chain(refs.subject.iter()) {
            AnyDigest::parse(&d.digest).map_err(|_| ManifestError::BadDigest(d.digest.clone()))?;
            if let Some(size) = d.size.filter(|s| *s < 0) {
                return Err(ManifestError::BadSize(size));
            }
        }
        Ok((refs, media_type))
    }

    /// The sha512 digests the manifest names (descriptors and subject), each once: aliases to
    /// resolve before the methods that read digests see that content.
    pub fn aliases(&self) -> Vec<Sha512Digest> {
        let mut found: Vec<Sha512Digest> = self
            .descriptors()
            .chain(self.subject.iter())
            .filter_map(|d| match AnyDigest::parse(&d.digest) {
                Ok(AnyDigest::Sha512(d)) => Some(d),
                _ => None,
            })
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// Rewrites each descriptor named by a sha512 that `resolve` knows to the sha256 it is an
    /// alias of; the rest stay as they are (and the methods that read sha256 skip them).
    pub fn resolve_aliases(&mut self, resolve: impl Fn(&Sha512Digest) -> Option<Digest>) {
        let descriptors = self
            .config
            .iter_mut()
            .chain(&mut self.layers)
            .chain(&mut self.manifests)
            .chain(&mut self.blobs)
            .chain(self.subject.iter_mut());
        for d in descriptors {
            if let Ok(AnyDigest::Sha512(alias)) = AnyDigest::parse(&d.digest)
                && let Some(digest) = resolve(&alias)
            {
                d.digest = digest.to_string();
            }
        }
    }

    /// The digests a pushed manifest needs present: blobs for an image manifest (except
    /// foreign layers, which live elsewhere), manifests for an index. Call after
    /// [`ManifestRefs::check_pushed`], which checked every digest, and after resolving its
    /// aliases: a sha512 left unresolved is not listed.
    pub fn required(&self, media_type: &str) -> (Vec<Digest>, Vec<Digest>) {
        let parse = |d: &Descriptor| Digest::parse(&d.digest).ok();
        if is_image_manifest(media_type) {
            let blobs = self
                .config
                .iter()
                .chain(&self.layers)
                .chain(&self.blobs)
                .filter(|d| d.urls.is_empty())
                .filter_map(parse)
                .collect();
            (blobs, Vec::new())
        } else {
            (Vec::new(), self.manifests.iter().filter_map(parse).collect())
        }
    }

    /// The child manifests of an index, only those for `platform` when one is given (entries
    /// with no platform, such as attestations, are kept only without a filter).
    pub fn children(&self, platform: Option<&str>) -> Vec<Digest> {
        self.manifests
            .iter()
            .filter(|d| {
                platform.is_none_or(|p| d.platform.as_ref().is_some_and(|have| have.matches(p)))
            })
            .filter_map(|d| Digest::parse(&d.digest).ok())
            .collect()
    }

    /// The subject's digest, when the manifest refers to another.
    pub fn subject(&self) -> Option<Digest> {
        self.subject.as_ref().and_then(|d| Digest::parse(&d.digest).ok())
    }

    /// What the referrers API lists as this manifest's artifact type: its `artifactType`,
    /// else its config's media type (OCI 1.1's rule for image manifests).
    pub fn artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .or_else(|| self.config.as_ref().and_then(|c| c.media_type.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_lists_its_config_layers_and_children() {
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{a}","size":1}},"layers":[{{"digest":"{b}"}},{{"digest":"md5:x"}}]}}"#
        );
        assert_eq!(ManifestRefs::parse(image.as_bytes()).unwrap().references(), [a, b]);
        let index = format!(r#"{{"manifests":[{{"digest":"{c}","platform":{{}}}}]}}"#);
        assert_eq!(ManifestRefs::parse(index.as_bytes()).unwrap().references(), [c]);
        assert!(ManifestRefs::parse(b"not json").is_none());
        assert!(ManifestRefs::parse(br#"{"layers":"odd"}"#).is_none());
    }

    #[test]
    fn sha512_descriptors_are_read_through_their_aliases() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let (a512, b512) = (Sha512Digest::of(b"a"), Sha512Digest::of(b"b"));
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"{a512}","size":1}},"layers":[{{"digest":"{b512}","size":1}},{{"digest":"{a512}","size":1}}]}}"#
        );
        let (mut refs, media_type) = ManifestRefs::check_pushed(image.as_bytes(), None).unwrap();
        let mut sorted = vec![a512, b512];
        sorted.sort();
        assert_eq!(refs.aliases(), sorted);
        assert_eq!(refs.required(&media_type), (vec![], vec![]));
        // Only `a` is known: `b` stays unresolved and unlisted.
        refs.resolve_aliases(|d| (*d == a512).then_some(a));
        assert_eq!(refs.required(&media_type), (vec![a, a], vec![]));
        assert_eq!(refs.aliases(), [b512]);
        refs.resolve_aliases(|d| (*d == b512).then_some(b));
        assert_eq!(refs.references(), [a, b, a]);
        assert!(refs.aliases().is_empty());
    }

    #[test]
    fn an_index_lists_the_children_of_a_platform() {
        let (amd, arm, att) = (Digest::of(b"amd"), Digest::of(b"arm"), Digest::of(b"att"));
        let index = format!(
            r#"{{"manifests":[{{"digest":"{amd}","platform":{{"os":"linux","architecture":"amd64"}}}},{{"digest":"{arm}","platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},{{"digest":"{att}"}}]}}"#
        );
        let refs = ManifestRefs::parse(index.as_bytes()).unwrap();
        assert_eq!(refs.children(None), [amd, arm, att]);
        assert_eq!(refs.children(Some("linux/amd64")), [amd]);
        assert_eq!(refs.children(Some("linux/arm64")), [arm]);
        assert_eq!(refs.children(Some("linux/arm64/v8")), [arm]);
        assert!(refs.children(Some("linux/arm64/v7")).is_empty());
        assert!(refs.children(Some("windows/amd64")).is_empty());
    }

    #[test]
    fn pushed_manifests_are_checked_strictly() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/x.cfg","digest":"{a}","size":1}},"layers":[{{"digest":"{b}","size":1}},{{"digest":"{b}","urls":["https://x"]}}],"subject":{{"digest":"{a}","size":1}}}}"#
        );
        let (refs, media_type) = ManifestRefs::check_pushed(image.as_bytes(), None).unwrap();
        assert_eq!(media_type, OCI_MANIFEST);
        assert_eq!(refs.required(&media_type), (vec![a, b], vec![]));
        assert_eq!(refs.subject(), Some(a));
        assert_eq!(refs.artifact_type().as_deref(), Some("application/x.cfg"));

        let mismatch = ManifestRefs::check_pushed(image.as_bytes(), Some(OCI_INDEX)).unwrap_err();
        assert!(matches!(mismatch, ManifestError::MediaTypeMismatch { .. }));
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{a}","size":3}}]}}"#);
        let (refs, media_type) =
            ManifestRefs::check_pushed(index.as_bytes(), Some(OCI_INDEX)).unwrap();
        assert_eq!(refs.required(&media_type), (vec![], vec![a]));
        assert_eq!(
            ManifestRefs::check_pushed(index.as_bytes(), None).unwrap_err(),
            ManifestError::NoMediaType
        );

        for (bad, why) in [
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[{{"digest":"blake3:{}"}}]}}"#,
                    a.hex()
                ),
                "algorithm",
            ),
            (r#"{"schemaVersion":1}"#.to_owned(), "schema 1"),
            ("[]".to_owned(), "not an object"),
            (r#"{"schemaVersion":2,"mediaType":"text/plain","layers":[]}"#.to_owned(), "type"),
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[{{"digest":"sha256:zz"}}]}}"#
                ),
                "digest",
            ),
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[{{"digest":"{a}","size":-1}}]}}"#
                ),
                "size",
            ),
        ] {
            assert!(ManifestRefs::check_pushed(bad.as_bytes(), None).is_err(), "{why}");
        }
    }
}
