//! Signatures and SBOMs as cosign and oras put them into a registry without a referrers API:
//! an artifact manifest naming its subject, pushed by digest, and the referrers tag
//! `sha256-<hex>` of the subject, an index listing them.

use bytes::Bytes;
use serde_json::{Value, json};
use shoal_protocol::Digest;
use shoal_protocol::media_type::{OCI_INDEX, OCI_MANIFEST};

use super::ManifestInfo;
use crate::{RegistryClient, Result};

const EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// An artifact manifest of `artifact_type` naming `subject`, pushed by digest with its payload;
/// returns its descriptor as a referrers index lists it.
pub async fn push_referrer(
    client: &RegistryClient,
    repo: &str,
    subject: &ManifestInfo,
    artifact_type: &str,
    payload: &[u8],
) -> Result<Value> {
    let config = client.push_blob(repo, Bytes::from_static(b"{}"), 0).await?;
    let layer = client.push_blob(repo, Bytes::copy_from_slice(payload), 0).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY, "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": layer.to_string(), "size": payload.len()}],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest.to_string(),
            "size": subject.bytes.len(),
        },
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    });
    let bytes = serde_json::to_vec(&manifest).expect("a JSON value serializes");
    let digest = Digest::of(&bytes);
    let size = bytes.len();
    client.put_manifest(repo, &digest.to_string(), OCI_MANIFEST, bytes).await?;
    Ok(json!({
        "mediaType": OCI_MANIFEST,
        "digest": digest.to_string(),
        "size": size,
        "artifactType": artifact_type,
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }))
}

/// The referrers tag of `subject`: an index of `referrers` (descriptors from
/// [`push_referrer`]).
pub async fn push_referrers_tag(
    client: &RegistryClient,
    repo: &str,
    subject: &Digest,
    referrers: &[Value],
) -> Result<()> {
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": referrers});
    let bytes = serde_json::to_vec(&index).expect("a JSON value serializes");
    let tag = format!("sha256-{}", subject.hex());
    client.put_manifest(repo, &tag, OCI_INDEX, bytes).await?;
    Ok(())
}
