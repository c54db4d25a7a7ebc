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

/// The media type of a manifest whose upstream gave none: the `mediaType` field, if any.
pub fn sniff_manifest_media_type(body: &[u8]) -> Option<String> {
    // A cheap scan instead of a JSON dependency: the field is a top-level string in every
    // manifest format that carries one.
    let text = std::str::from_utf8(body).ok()?;
    let at = text.find("\"mediaType\"")?;
    let rest = text[at + "\"mediaType\"".len()..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_owned())
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
    }
}
