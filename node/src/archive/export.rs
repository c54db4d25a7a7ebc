//! `shoal export IMAGE... -o site.tar`: pulls images through a node and writes them as one OCI
//! image layout archive.
//!
//! Every platform of a multi-arch image is exported, or with `--platform` only the matching
//! image (its manifest then stands for the name, as `skopeo copy` without `--all` does). Each
//! blob streams from the node into the archive and is checked against its digest and size on
//! the way; a blob shared by several images is written once. Names are kept in `index.json` as
//! `org.opencontainers.image.ref.name` and `io.containerd.image.name` annotations, which
//! `shoal import`, `skopeo` and `ctr import` read.
//!
//! With `--with-referrers` the referrers the node lists for every exported manifest (and for
//! those referrers in turn: signatures of signatures) are exported too, each with its own
//! blobs, and listed in `index.json` by descriptor with its `artifactType` and no name: an
//! OCI layout lists untagged manifests so, and a tool that opens one image by name skips them.
//! `shoal import` pushes each under the names its `subject` was imported under.

use std::collections::HashSet;
use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use shoal_protocol::manifest::ManifestRefs;
use shoal_protocol::media_type::OCI_INDEX;
use shoal_protocol::{Digest, Manifest, Reference};

use super::client::NodeClient;
use super::layout::{ArchiveWriter, blob_path};
use super::progress::Progress;
use super::{ArchiveError, ImageRef};

/// How far referrers are followed: those of an image, and those of its referrers.
const REFERRER_DEPTH: u8 = 2;

/// What one exported name holds.
struct Exported {
    image: ImageRef,
    root: Manifest,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub images: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// Referrers exported with the images (their manifests are counted in `manifests` too).
    pub referrers: usize,
}

pub async fn export(
    client: &NodeClient,
    images: &[ImageRef],
    out: &Path,
    platform: Option<&str>,
    with_referrers: bool,
) -> Result<ExportReport, ArchiveError> {
    // First every manifest (small), so the size of the whole is known before the blobs flow.
    let mut roots = Vec::new();
    let mut manifests: Vec<Manifest> = Vec::new();
    let mut blobs: Vec<(String, Digest, u64)> = Vec::new();
    let mut referrers: Vec<serde_json::Value> = Vec::new();
    let mut referrer_seen = HashSet::new();
    let (mut manifest_seen, mut blob_seen) = (HashSet::new(), HashSet::new());
    for image in images {
        let name = image.node_name();
        let mut root = client.manifest(&name, &image.reference).await?;
        if let Some(platform) = platform {
            root = pick_platform(client, image, root, platform).await?;
        }
        // With each manifest, how many referrer links away from the image it is.
        let mut queue = vec![(root.clone(), 0u8)];
        while let Some((m, depth)) = queue.pop() {
            if !manifest_seen.insert(m.digest) {
                continue;
            }
            let refs = ManifestRefs::parse(&m.bytes).unwrap_or_default();
            if let Some(named) = refs.aliases().first() {
                // Skipped, it would leave the archive without content its manifest names.
                let named = named.to_string();
                return Err(ArchiveError::Sha512Content { manifest: m.digest, named });
            }
            for child in &refs.manifests {
                let digest = Digest::parse(&child.digest)
                    .map_err(|_| ArchiveError::Corrupt { what: "manifest", digest: m.digest })?;
                if !manifest_seen.contains(&digest) {
                    queue.push((client.manifest(&name, &Reference::Digest(digest)).await?, depth));
                }
            }
            if with_referrers && depth < REFERRER_DEPTH {
                for r in client.referrers(&name, &m.digest).await? {
                    if manifest_seen.contains(&r.digest) || !referrer_seen.insert(r.digest) {
                        continue;
                    }
                    let fetched = client.manifest(&name, &Reference::Digest(r.digest)).await?;
                    let mut entry = json!({
                        "mediaType": fetched.media_type,
                        "digest": r.digest.to_string(),
                        "size": fetched.bytes.len(),
                    });
                    if let Some(t) = &r.artifact_type {
                        entry["artifactType"] = t.as_str().into();
                    }
                    referrers.push(entry);
                    queue.push((fetched, depth + 1));
                }
            }
            for blob in refs.config.iter().chain(&refs.layers).chain(&refs.blobs) {
                let Ok(digest) = Digest::parse(&blob.digest) else { continue };
                // Foreign layers live elsewhere; the archive does not carry them.
                if blob.urls.is_empty() && blob_seen.insert(digest) {
                    let size = u64::try_from(blob.size.unwrap_or(0)).unwrap_or(0);
                    blobs.push((name.clone(), digest, size));
                }
            }
            manifests.push(m);
        }
        roots.push(Exported { image: image.clone(), root });
    }

    let total: u64 = blobs.iter().map(|(_, _, size)| size).sum();
    let mut progress = Progress::new("export", total);
    let mut archive = ArchiveWriter::create(out)?;
    for (name, digest, size) in &blobs {
        copy_blob(client, &mut archive, name, digest, *size, &mut progress).await?;
    }
    for m in &manifests {
        archive.small(blob_path(&m.digest), m.bytes.clone()).await?;
    }
    let named = roots.iter().map(|r| {
        json!({
            "mediaType": r.root.media_type,
            "digest": r.root.digest.to_string(),
            "size": r.root.bytes.len(),
            "annotations": {
                "org.opencontainers.image.ref.name": r.image.to_string(),
                "io.containerd.image.name": r.image.to_string(),
            },
        })
    });
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": named.chain(referrers.iter().cloned()).collect::<Vec<_>>(),
    });
    archive.small("index.json".to_owned(), Bytes::from(index.to_string())).await?;
    let layout = Bytes::from_static(br#"{"imageLayoutVersion":"1.0.0"}"#);
    archive.small("oci-layout".to_owned(), layout).await?;
    archive.finish().await?;
    progress.finish();
    Ok(ExportReport {
        images: roots.len(),
        manifests: manifests.len(),
        blobs: blobs.len(),
        bytes: total,
        referrers: referrers.len(),
    })
}

/// Streams one blob into the archive, checking its size and digest as it goes.
async fn copy_blob(
    client: &NodeClient,
    archive: &mut ArchiveWriter,
    name: &str,
    digest: &Digest,
    size: u64,
    progress: &mut Progress,
) -> Result<(), ArchiveError> {
    let mut stream = client.blob(name, digest).await?;
    let tx = archive.entry(blob_path(digest), size).await?;
    let mut hasher = Sha256::new();
    let mut sent = 0u64;
    let corrupt = ArchiveError::Corrupt { what: "blob", digest: *digest };
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return Err(ArchiveError::Unreachable {
                    url: format!("blob {digest}"),
                    detail: e.without_url().to_string(),
                });
            }
        };
        sent += chunk.len() as u64;
        if sent > size {
            let _ = tx.send(Err(std::io::Error::other("blob longer than its descriptor"))).await;
            return Err(corrupt);
        }
        hasher.update(&chunk);
        progress.advance(chunk.len() as u64);
        if tx.send(Ok(chunk)).await.is_err() {
            // The archive, not the blob, failed (a full disk): say so.
            return Err(archive.failure().await);
        }
    }
    let actual = Digest::from_raw(hasher.finalize().into());
    if sent != size || actual != *digest {
        let _ = tx.send(Err(std::io::Error::other("blob does not match its digest"))).await;
        return Err(corrupt);
    }
    Ok(())
}

/// The image of an index for `platform` (`os/arch[/variant]`); the manifest itself when it is
/// not an index.
async fn pick_platform(
    client: &NodeClient,
    image: &ImageRef,
    root: Manifest,
    platform: &str,
) -> Result<Manifest, ArchiveError> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        digest: String,
        platform: Option<Platform>,
    }
    #[derive(serde::Deserialize)]
    struct Platform {
        os: String,
        architecture: String,
        variant: Option<String>,
    }
    let Ok(index) = serde_json::from_slice::<Index>(&root.bytes) else { return Ok(root) };
    if index.manifests.is_empty() {
        return Ok(root);
    }
    let mut wanted = platform.split('/');
    let (os, arch, variant) = (wanted.next(), wanted.next(), wanted.next());
    let found = index.manifests.iter().find(|e| {
        e.platform.as_ref().is_some_and(|p| {
            Some(p.os.as_str()) == os
                && Some(p.architecture.as_str()) == arch
                && (variant.is_none() || p.variant.as_deref() == variant)
        })
    });
    let no_platform =
        || ArchiveError::NoPlatform { image: image.to_string(), platform: platform.to_owned() };
    let entry = found.ok_or_else(no_platform)?;
    let digest = Digest::parse(&entry.digest).map_err(|_| no_platform())?;
    client.manifest(&image.node_name(), &Reference::Digest(digest)).await
}
