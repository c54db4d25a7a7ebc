//! The manifest media types a pull-through cache must pass along unchanged.

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Sent upstream as `Accept` on every manifest request, so the upstream returns the manifest
/// as it stores it (an index stays an index) rather than converting it for an old client.
pub const MANIFEST_ACCEPT: &[&str] =
    &[OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST];

/// Manifests larger than this are refused: they are held in memory, and distribution caps them alike.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// The top-level fields that say what a manifest is; nested ones (`config.mediaType`, each
/// layer's) are not looked at.
#[derive(serde::Deserialize)]
struct Top {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<serde::de::IgnoredAny>,
    config: Option<serde::de::IgnoredAny>,
    layers: Option<serde::de::IgnoredAny>,
}

/// The media type of a manifest whose upstream gave none (or a generic one): its top-level
/// `mediaType`, else what its fields make it (OCI lets both formats leave the field out: a
/// `manifests` list is an index, `config` and `layers` an image manifest), else `None`.
pub fn sniff_manifest_media_type(body: &[u8]) -> Option<String> {
    let top: Top = serde_json::from_slice(body).ok()?;
    if let Some(media_type) = top.media_type {
        return Some(media_type);
    }
    match (top.manifests, top.config, top.layers) {
        (Some(_), _, _) => Some(OCI_INDEX.to_owned()),
        (None, Some(_), Some(_)) => Some(OCI_MANIFEST.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_media_type() {
        let body = br#"{"schemaVersion":2, "mediaType" : "application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert_eq!(sniff_manifest_media_type(body).as_deref(), Some(OCI_INDEX));
        assert_eq!(sniff_manifest_media_type(b"{}"), None);
        assert_eq!(sniff_manifest_media_type(b"\xff"), None);
        assert_eq!(sniff_manifest_media_type(b"[1]"), None);
    }

    #[test]
    fn only_the_top_level_field_counts() {
        // No top-level mediaType (OCI makes it optional): the config's must not be taken.
        let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:x","size":1},"layers":[]}"#;
        assert_eq!(sniff_manifest_media_type(manifest).as_deref(), Some(OCI_MANIFEST));
        let index = br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json"}]}"#;
        assert_eq!(sniff_manifest_media_type(index).as_deref(), Some(OCI_INDEX));
        // A field after a nested one is still found, and a string that only looks like the
        // key is not.
        let docker = br#"{"config":{"mediaType":"x"},"layers":[],"annotations":{"k":"\"mediaType\": \"y\""},"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(sniff_manifest_media_type(docker).as_deref(), Some(DOCKER_MANIFEST));
        assert_eq!(sniff_manifest_media_type(br#"{"schemaVersion":2}"#), None);
    }
}
