//! `shoal import site.tar`: pushes every image of an OCI image layout archive into a node,
//! under the names its `index.json` gives them.
//!
//! Blobs first (each streamed from the archive in one monolithic upload, skipped when the node
//! has it already, which is also how an interrupted import resumes), then manifests, children
//! before the index that names them, so that every push names only what the node holds. A
//! blob whose bytes do not match its digest is named, and nothing of it is stored: the node
//! verifies every upload.
//!
//! An `index.json` entry without a name whose manifest has a `subject` is a referrer (what
//! `shoal export --with-referrers` writes): it is pushed by digest under every name its subject
//! was pushed under, after it, so that the node records it as a referrer there.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use shoal_protocol::manifest::ManifestRefs;
use shoal_protocol::media_type::{MAX_MANIFEST_SIZE, OCI_MANIFEST, sniff_manifest_media_type};
use shoal_protocol::{Digest, Reference};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::client::NodeClient;
use super::layout::{ArchiveReader, blob_path};
use super::progress::Progress;
use super::{ArchiveError, ImageRef};

/// Bytes read from the archive at a time.
const READ_CHUNK: usize = 1 << 20;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub images: usize,
    pub manifests: usize,
    pub blobs_uploaded: usize,
    /// Blobs the node had already (an import resumed, or images sharing layers with others).
    pub blobs_present: usize,
    pub bytes_uploaded: u64,
    /// Unnamed manifests pushed by digest beside their subject (signatures, SBOMs).
    pub referrers: usize,
}

/// One manifest to push: under `name`, by digest (children) or by the image's reference.
struct ToPush {
    digest: Digest,
    name: String,
    reference: Reference,
    media_type: String,
    bytes: Bytes,
}

#[derive(serde::Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(serde::Deserialize)]
struct IndexEntry {
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

pub async fn import(client: &NodeClient, archive: &Path) -> Result<ImportReport, ArchiveError> {
    let path = archive.to_owned();
    let reader = tokio::task::spawn_blocking(move || ArchiveReader::open(&path))
        .await
        .map_err(|e| ArchiveError::io("read", archive, std::io::Error::other(e)))??;
    let reader = Arc::new(reader);
    let name_of_archive = archive.display().to_string();
    let not_layout =
        |detail: String| ArchiveError::NotLayout { archive: name_of_archive.clone(), detail };
    let index = reader
        .read_small("index.json", MAX_MANIFEST_SIZE)?
        .ok_or_else(|| not_layout("no index.json".to_owned()))?;
    let index: Index = serde_json::from_slice(&index).map_err(|e| not_layout(e.to_string()))?;

    let mut report = ImportReport::default();
    let mut walk = Walk { reader: &reader, blobs: Vec::new(), blob_seen: HashSet::new() };
    let mut manifests: Vec<ToPush> = Vec::new();
    // The names each manifest is pushed under, for the referrers that name it as subject.
    let mut names_of: HashMap<Digest, BTreeSet<String>> = HashMap::new();
    let mut referrers: Vec<(Digest, Digest)> = Vec::new();
    for entry in &index.manifests {
        let root = Digest::parse(&entry.digest).map_err(|e| not_layout(e.to_string()))?;
        let Some(image) = image_name(entry) else {
            // No name: a referrer, placed below by its subject; anything else is unplaceable.
            let bytes = read_verified(&reader, &root, "index.json")?;
            match ManifestRefs::parse(&bytes).and_then(|refs| refs.subject()) {
                Some(subject) => {
                    referrers.push((root, subject));
                    continue;
                }
                None => {
                    return Err(not_layout(format!(
                        "index.json entry {} has no full image name (io.containerd.image.name or \
                         org.opencontainers.image.ref.name such as docker.io/library/alpine:3.20) \
                         and no subject",
                        entry.digest
                    )));
                }
            }
        };
        let name = image.node_name();
        let found = walk.tree(&name, root, image.reference.clone(), entry.media_type.as_deref())?;
        for m in &found {
            names_of.entry(m.digest).or_default().insert(name.clone());
        }
        manifests.extend(found);
        report.images += 1;
    }
    // A referrer goes under every name its subject went under; a referrer of a referrer once
    // that one is placed.
    while !referrers.is_empty() {
        let before = referrers.len();
        let mut waiting = Vec::new();
        for (digest, subject) in referrers {
            let Some(names) = names_of.get(&subject).cloned() else {
                waiting.push((digest, subject));
                continue;
            };
            for name in names {
                let found = walk.tree(&name, digest, Reference::Digest(digest), None)?;
                for m in &found {
                    names_of.entry(m.digest).or_default().insert(name.clone());
                }
                manifests.extend(found);
            }
            report.referrers += 1;
        }
        if waiting.len() == before {
            let (digest, subject) = waiting[0];
            return Err(not_layout(format!(
                "index.json entry {digest} has no image name, and its subject {subject} is not \
                 an image of the archive"
            )));
        }
        referrers = waiting;
    }
    let blobs = walk.blobs;

    let total = blobs.iter().map(|(_, _, size)| size).sum();
    let mut progress = Progress::new("import", total);
    for (name, digest, size) in &blobs {
        if client.has_blob(name, digest).await? {
            report.blobs_present += 1;
        } else {
            upload(client, &reader, name, digest, *size).await?;
            report.blobs_uploaded += 1;
            report.bytes_uploaded += size;
        }
        progress.advance(*size);
    }
    for m in manifests {
        client.push_manifest(&m.name, &m.reference, &m.media_type, m.bytes).await?;
        report.manifests += 1;
    }
    progress.finish();
    Ok(report)
}

/// Walks manifests in the archive, gathering the blobs to upload (once per name).
struct Walk<'a> {
    reader: &'a ArchiveReader,
    blobs: Vec<(String, Digest, u64)>,
    blob_seen: HashSet<(String, Digest)>,
}

impl Walk<'_> {
    /// The manifests of the tree rooted at `root`, children before the index that names them,
    /// to push under `name`: the root by `reference`, the rest by digest.
    fn tree(
        &mut self,
        name: &str,
        root: Digest,
        reference: Reference,
        root_media_type: Option<&str>,
    ) -> Result<Vec<ToPush>, ArchiveError> {
        let reader = self.reader;
        let mut found: Vec<ToPush> = Vec::new();
        let mut queue = vec![(root, "index.json".to_owned())];
        let mut manifest_seen = HashSet::new();
        while let Some((digest, parent)) = queue.pop() {
            if !manifest_seen.insert(digest) {
                continue;
            }
            let bytes = read_verified(reader, &digest, &parent)?;
            let refs = ManifestRefs::parse(&bytes).unwrap_or_default();
            for child in &refs.manifests {
                if let Ok(child) = Digest::parse(&child.digest) {
                    queue.push((child, digest.to_string()));
                }
            }
            for blob in refs.config.iter().chain(&refs.layers).chain(&refs.blobs) {
                let Ok(d) = Digest::parse(&blob.digest) else { continue };
                if !blob.urls.is_empty() || !self.blob_seen.insert((name.to_owned(), d)) {
                    continue;
                }
                let size = reader.size(&blob_path(&d)).ok_or_else(|| ArchiveError::Missing {
                    archive: reader.path.display().to_string(),
                    digest: d,
                    parent: digest.to_string(),
                })?;
                self.blobs.push((name.to_owned(), d, size));
            }
            let media_type = match (digest == root, root_media_type) {
                (true, Some(t)) => t.to_owned(),
                _ => sniff_manifest_media_type(&bytes).unwrap_or_else(|| OCI_MANIFEST.to_owned()),
            };
            let reference =
                if digest == root { reference.clone() } else { Reference::Digest(digest) };
            found.push(ToPush {
                digest,
                name: name.to_owned(),
                reference,
                media_type,
                bytes: Bytes::from(bytes),
            });
        }
        // Children first: pushed in reverse order of discovery.
        found.reverse();
        Ok(found)
    }
}

/// The name an index entry gives its image: containerd's annotation, else the OCI one when it
/// is a full reference (skopeo writes only a tag there).
fn image_name(entry: &IndexEntry) -> Option<ImageRef> {
    ["io.containerd.image.name", "org.opencontainers.image.ref.name"]
        .iter()
        .filter_map(|key| entry.annotations.get(*key))
        .filter(|name| name.contains('/'))
        .find_map(|name| ImageRef::parse(name).ok())
}

/// A manifest from the archive, checked against its digest.
fn read_verified(
    reader: &ArchiveReader,
    digest: &Digest,
    parent: &str,
) -> Result<Vec<u8>, ArchiveError> {
    let archive = reader.path.display().to_string();
    let bytes = reader.read_small(&blob_path(digest), MAX_MANIFEST_SIZE)?.ok_or_else(|| {
        ArchiveError::Missing {
            archive: archive.clone(),
            digest: *digest,
            parent: parent.to_owned(),
        }
    })?;
    let actual = Digest::of(&bytes);
    if actual != *digest {
        return Err(ArchiveError::CorruptInArchive { archive, digest: *digest, actual });
    }
    Ok(bytes)
}

/// Streams one blob from the archive to the node, hashing it on the way so that a refusal for
/// a digest mismatch can name what the archive holds.
async fn upload(
    client: &NodeClient,
    reader: &Arc<ArchiveReader>,
    name: &str,
    digest: &Digest,
    size: u64,
) -> Result<(), ArchiveError> {
    let entry_name = blob_path(digest);
    let opened = {
        let shared = Arc::clone(reader);
        tokio::task::spawn_blocking(move || shared.open_entry(&entry_name))
            .await
            .map_err(|e| ArchiveError::io("read", &reader.path, std::io::Error::other(e)))??
    };
    let Some(entry) = opened else {
        return Err(ArchiveError::Missing {
            archive: reader.path.display().to_string(),
            digest: *digest,
            parent: name.to_owned(),
        });
    };
    let file = tokio::fs::File::from_std(entry.into_inner()).take(size);
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let hashing = Arc::clone(&hasher);
    // Large reads: each read of a tokio file is a trip to the blocking pool, and the default
    // 4 KiB made an import of a 1 GiB layer run at 67 MiB/s.
    let stream = ReaderStream::with_capacity(file, READ_CHUNK).map(move |chunk| {
        if let Ok(chunk) = &chunk
            && let Ok(mut h) = hashing.lock()
        {
            h.update(chunk);
        }
        chunk
    });
    let pushed = client.push_blob(name, digest, size, reqwest::Body::wrap_stream(stream)).await;
    match pushed {
        Err(ArchiveError::Refused { status: 400, body, .. }) if body.contains("DIGEST_INVALID") => {
            let actual = hasher.lock().map(|h| Digest::from_raw(h.clone().finalize().into()));
            Err(ArchiveError::CorruptInArchive {
                archive: reader.path.display().to_string(),
                digest: *digest,
                actual: actual.unwrap_or(*digest),
            })
        }
        other => other,
    }
}
