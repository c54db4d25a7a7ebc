//! Fuzzes what a node reads out of a manifest: the digests a pulled manifest names, the media
//! type of one whose upstream gave none, the strict check of a pushed one, and the referrers
//! index an upstream lists.
//!
//! The readers must agree with each other: a pushed manifest that passes the check names only
//! valid digests, has the media type its fields and header say, and asks the store for nothing
//! it does not list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_protocol::{AnyDigest, Digest};
use shoal_protocol::manifest::{ManifestRefs, is_manifest_media_type};
use shoal_protocol::media_type::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, sniff_manifest_media_type,
};

/// The Content-Types a push arrives with: none, each manifest type, and a wrong one.
const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some(OCI_MANIFEST),
    Some(OCI_INDEX),
    Some(DOCKER_MANIFEST),
    Some(DOCKER_MANIFEST_LIST),
    Some("text/plain"),
];

fuzz_target!(|data: &[u8]| {
    let refs = ManifestRefs::parse(data);
    let sniffed = sniff_manifest_media_type(data);
    if let Some(refs) = &refs {
        pulled(refs, sniffed.as_deref());
    }
    // A push comes with whatever Content-Type the client chose: none, and one that the last
    // byte picks.
    let content_type = CONTENT_TYPES[usize::from(data.last().copied().unwrap_or(0)) % 6];
    for content_type in [None, content_type] {
        pushed(data, content_type, refs.is_some(), sniffed.as_deref());
    }
    referrers(data);
});

fn pulled(refs: &ManifestRefs, sniffed: Option<&str>) {
    // A manifest's own mediaType field is what the sniffer reports.
    if let Some(field) = &refs.media_type {
        assert_eq!(sniffed, Some(field.as_str()));
    }
    let references = refs.references();
    for child in refs.children(None) {
        assert!(references.contains(&child));
    }
    for platform in ["linux/amd64", "linux/arm64/v8", "", "/", "//"] {
        let some = refs.children(Some(platform));
        assert!(some.iter().all(|d| references.contains(d)));
    }
    let _ = (refs.subject(), refs.artifact_type());
}

fn pushed(data: &[u8], content_type: Option<&str>, parsed: bool, sniffed: Option<&str>) {
    let Ok((refs, media_type)) = ManifestRefs::check_pushed(data, content_type) else { return };
    assert!(parsed, "the push check accepts what the pull parser refuses");
    assert!(is_manifest_media_type(&media_type));
    assert_eq!(refs.schema_version, Some(2));
    match (&refs.media_type, content_type) {
        (Some(field), Some(header)) => assert!(field == header && *field == media_type),
        (Some(field), None) => assert_eq!(*field, media_type),
        (None, Some(header)) => assert_eq!(header, media_type),
        (None, None) => panic!("a media type from nowhere"),
    }
    if refs.media_type.is_some() {
        assert_eq!(sniffed, Some(media_type.as_str()));
    }
    for d in refs.config.iter().chain(&refs.layers).chain(&refs.manifests).chain(&refs.blobs) {
        assert_eq!(AnyDigest::parse(&d.digest).map(|d| d.to_string()).as_ref(), Ok(&d.digest));
        assert!(d.size.is_none_or(|s| s >= 0));
    }
    // What the store must hold before the manifest is taken: only digests it lists.
    let references = refs.references();
    let (blobs, manifests) = refs.required(&media_type);
    assert!(blobs.iter().chain(&manifests).all(|d| references.contains(d)));
    assert!(blobs.is_empty() || manifests.is_empty());
    if let Some(subject) = &refs.subject {
        match AnyDigest::parse(&subject.digest) {
            Ok(AnyDigest::Sha256(_)) => {
                assert_eq!(refs.subject().map(|d| d.to_string()).as_ref(), Some(&subject.digest));
            }
            // A sha512 subject is read only once its alias is resolved.
            _ => assert_eq!(refs.subject(), None),
        }
    }
    // Every sha512 the manifest names is an alias to resolve, and nothing else is.
    let sha512 = refs
        .config
        .iter()
        .chain(&refs.layers)
        .chain(&refs.manifests)
        .chain(&refs.blobs)
        .chain(&refs.subject)
        .filter(|d| d.digest.starts_with("sha512:"))
        .count();
    assert!(refs.aliases().len() <= sha512 && (sha512 == 0) == refs.aliases().is_empty());
}

fn referrers(data: &[u8]) {
    let Ok(found) = shoal::fuzzing::referrers_index(data) else { return };
    for referrer in found {
        assert_eq!(Digest::parse(&referrer.digest.to_string()), Ok(referrer.digest));
        if let Some(annotations) = &referrer.annotations {
            let value: serde_json::Value = serde_json::from_str(annotations).unwrap();
            assert!(value.is_object(), "{annotations}");
        }
    }
}
