//! Descriptions of what the harness pushed, for tests to assert against.

use shoal_protocol::Digest;

/// A blob as a manifest references it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// One pushed manifest (an image manifest or an index).
#[derive(Debug, Clone)]
pub struct ManifestInfo {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// `(os, architecture)` of an image manifest inside an index.
    pub platform: Option<(String, String)>,
    /// Config then layers; empty for an index.
    pub blobs: Vec<BlobInfo>,
}

/// What was pushed under `repo:tag`: the tagged manifest and, for an index, its images.
#[derive(Debug, Clone)]
pub struct PushedImage {
    pub repo: String,
    pub tag: String,
    pub root: ManifestInfo,
    pub children: Vec<ManifestInfo>,
}

impl PushedImage {
    /// The root manifest then the children.
    pub fn manifests(&self) -> impl Iterator<Item = &ManifestInfo> {
        std::iter::once(&self.root).chain(&self.children)
    }

    /// Every blob of every manifest, each digest once.
    pub fn blobs(&self) -> Vec<&BlobInfo> {
        let mut out: Vec<&BlobInfo> = Vec::new();
        for blob in self.manifests().flat_map(|m| &m.blobs) {
            if !out.iter().any(|b| b.digest == blob.digest) {
                out.push(blob);
            }
        }
        out
    }

    /// The digests of [`PushedImage::blobs`], sorted as
    /// [`DirImage::verified_blobs`](crate::clients::skopeo::DirImage::verified_blobs) lists them.
    pub fn blob_digests(&self) -> Vec<Digest> {
        let mut digests: Vec<Digest> = self.blobs().iter().map(|b| b.digest).collect();
        digests.sort_by_key(Digest::hex);
        digests
    }

    /// The image manifest for `architecture` (the root itself when it is not an index).
    pub fn for_arch(&self, architecture: &str) -> Option<&ManifestInfo> {
        if self.children.is_empty() {
            return Some(&self.root);
        }
        self.children.iter().find(|m| m.platform.as_ref().is_some_and(|(_, a)| a == architecture))
    }
}
