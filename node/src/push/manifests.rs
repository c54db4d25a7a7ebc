//! Manifest pushes: `PUT /v2/<name>/manifests/<tag or digest>`.
//!
//! A pushed manifest is checked before anything is stored: at most 4 MiB, the image manifest or
//! index schema with a media type that agrees with its `Content-Type`, the digest it is pushed
//! by (if any) is its own, and every blob (for an image manifest) or child manifest (for an
//! index) it names is held here — brought in from the fleet or the upstream when the client
//! skipped it — so a pushed image is whole on this node. Then it is stored, its content pinned
//! under it, its tag recorded as pushed, and its `subject` (if any) recorded for the referrers
//! API.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use shoal_protocol::manifest::ManifestRefs;
use shoal_protocol::media_type::MAX_MANIFEST_SIZE;
use shoal_protocol::{AnyDigest, Digest, Reference, Tag};

use super::{BodyStream, PushError, Pusher, blocking, manifest_pin, upload_pin};
use crate::fetch::{Target, tag_key};
use crate::store::{Referrer, TagRecord};

/// What a manifest is pushed as: a tag, or the digest the client computed (sha256, or a
/// sha512 that becomes an alias of the manifest's sha256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushedAs {
    Tag(Tag),
    Digest(AnyDigest),
}

impl From<Reference> for PushedAs {
    fn from(reference: Reference) -> Self {
        match reference {
            Reference::Tag(tag) => Self::Tag(tag),
            Reference::Digest(digest) => Self::Digest(digest.into()),
        }
    }
}

impl std::fmt::Display for PushedAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tag(tag) => tag.fmt(f),
            Self::Digest(digest) => digest.fmt(f),
        }
    }
}

/// What a manifest push stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedManifest {
    pub digest: Digest,
    /// The manifest's `subject`, for the `OCI-Subject` header.
    pub subject: Option<Digest>,
}

impl Pusher {
    pub async fn put_manifest(
        &self,
        target: &Target,
        reference: &PushedAs,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        body: BodyStream,
    ) -> Result<PushedManifest, PushError> {
        let bytes = read_limited(body, MAX_MANIFEST_SIZE).await?;
        // A client that sends no Content-Type, or a generic one, leaves it to the field.
        let content_type =
            content_type.filter(|t| !t.is_empty() && *t != "application/octet-stream");
        let (mut refs, media_type) = ManifestRefs::check_pushed(&bytes, content_type)?;
        let digest = Digest::of(&bytes);
        if let PushedAs::Digest(named) = reference
            && !named.matches(&bytes)
        {
            return Err(PushError::DigestInvalid(format!(
                "the manifest hashes to {digest}, not to the digest {named} it was pushed by"
            )));
        }
        // Content named by sha512 must be known by that name, as content named by sha256
        // must be held.
        self.fetcher.resolve_refs(target, &mut refs).await?;
        if let Some(unknown) = refs.aliases().first() {
            return Err(PushError::ManifestBlobUnknown(AnyDigest::Sha512(*unknown)));
        }
        let (blobs, manifests) = refs.required(&media_type);
        for blob in &blobs {
            if !self.fetcher.hold_blob(target, blob).await? {
                return Err(PushError::ManifestBlobUnknown((*blob).into()));
            }
        }
        for child in &manifests {
            if !self.fetcher.hold_manifest(target, child).await? {
                return Err(PushError::ManifestBlobUnknown((*child).into()));
            }
        }
        self.store.put_small(&digest, Some(&media_type), &bytes).await?;
        if let PushedAs::Digest(AnyDigest::Sha512(alias)) = reference {
            self.fetcher.record_alias(alias, &digest).await?;
        }

        let subject = refs.subject();
        let referrer = subject.map(|_| Referrer {
            digest,
            media_type: media_type.clone(),
            size: bytes.len() as u64,
            artifact_type: refs.artifact_type(),
            annotations: refs
                .annotations
                .as_ref()
                .map(|a| serde_json::Value::from(a.clone()).to_string()),
        });
        let mut named = blobs;
        named.extend(manifests);
        named.push(digest);
        // The tag it was pushed by, and those its `tag` parameters name.
        let mut tags: Vec<Tag> = match reference {
            PushedAs::Tag(tag) => vec![tag.clone()],
            PushedAs::Digest(_) => Vec::new(),
        };
        tags.extend(extra_tags.iter().filter(|t| !tags.contains(t)).cloned().collect::<Vec<_>>());
        let pushed_at = SystemTime::now();
        let (store, target_c, tags_c) = (self.store.clone(), target.clone(), tags.clone());
        blocking("record pushed manifest", move || {
            let (registry, repo) = (&target_c.registry, &target_c.repo);
            store.record_seen(&named, registry, repo)?;
            store.pin(&named, &manifest_pin(&target_c, &digest))?;
            store.unpin(&named, &upload_pin(&target_c))?;
            if let (Some(subject), Some(referrer)) = (subject, referrer) {
                store.add_referrer(registry, repo, &subject, &referrer)?;
            }
            for tag in &tags_c {
                let record =
                    TagRecord { digest, media_type: media_type.clone(), fetched_at: pushed_at };
                store.put_pushed_tag(registry, repo, tag, &record)?;
            }
            Ok(())
        })
        .await?;
        self.fetcher.announce(&digest);
        for tag in &tags {
            // Members resolving the tag find this node through the tag's key.
            self.fetcher.announce(&Digest::from_raw(tag_key(target, tag)));
        }
        tracing::info!(registry = %target.registry, repo = %target.repo, reference = %reference, %digest, "manifest pushed");
        // A tagged image, or a signature or SBOM (found through its subject), is kept on its
        // members too; an untagged child of an index is kept with the index.
        let at_ms = pushed_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let pins: Vec<Option<Tag>> = match (tags.is_empty(), subject.is_some()) {
            (false, _) => tags.into_iter().map(Some).collect(),
            (true, true) => vec![None],
            (true, false) => Vec::new(),
        };
        for tag in pins {
            if let Err(e) = self.placement.pushed(target, digest, tag, at_ms).await {
                tracing::warn!(registry = %target.registry, repo = %target.repo, %digest, error = %e, "pushed image kept here only; the next placement check retries");
            }
        }
        Ok(PushedManifest { digest, subject })
    }
}

/// Reads a whole body of at most `max` bytes; refuses a larger one once it passes the limit.
pub(super) async fn read_limited(mut body: BodyStream, max: u64) -> Result<Bytes, PushError> {
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(PushError::Body)?;
        if (bytes.len() + chunk.len()) as u64 > max {
            return Err(PushError::ManifestTooLarge {
                size: (bytes.len() + chunk.len()) as u64,
                max,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}
