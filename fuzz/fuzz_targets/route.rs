//! Fuzzes the registry API's router with a request line (`METHOD TARGET`), and the name,
//! tag, reference and digest parsers it is built on.
//!
//! The router is what stands between a client's path and the store's file names and keys, so
//! beyond "no panic" every endpoint it returns is checked to carry only values that re-parse to
//! themselves, and digests and references spelled exactly as in the path (no second spelling
//! of the same content).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use shoal::fetch::Target;
use shoal::registry::{Endpoint, Routing};
use shoal_protocol::peer::{MAX_REPLICAS, check_platform};
use shoal_protocol::{AnyDigest, Digest, Reference, RepositoryName, Tag, is_registry_host};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let (method, target) = line.split_once(' ').unwrap_or(("GET", line));
    // Each piece of the target on its own, so that the parsers see valid values often.
    for text in std::iter::once(target).chain(target.split(['/', '?', '&', '='])) {
        protocol_parsers(text);
    }
    route(method, target);
});

fn protocol_parsers(text: &str) {
    if let Ok(digest) = Digest::parse(text) {
        assert_eq!(digest.to_string(), text);
        assert_eq!(digest.hex(), &text["sha256:".len()..]);
    }
    if let Ok(digest) = AnyDigest::parse(text) {
        assert_eq!(digest.to_string(), text);
        assert_eq!(digest.sha256(), Digest::parse(text).ok());
    }
    if let Ok(tag) = Tag::parse(text) {
        assert_eq!(tag.as_str(), text);
        assert!(!text.contains(['/', ':']) && text != "." && text != "..");
    }
    if let Ok(reference) = Reference::parse(text) {
        assert_eq!(reference.to_string(), text);
    }
    if let Ok(name) = RepositoryName::parse(text) {
        assert_eq!(name.as_str(), text);
        check_name(&name);
        match name.with_library_prefix() {
            Ok(prefixed) => check_name(&prefixed),
            Err(_) => assert!(name.depth() == 1 && text.len() > 255 - "library/".len()),
        }
    }
}

/// What makes a name safe as a path or key: no empty, `.` or `..` component, nothing but
/// lowercase alphanumerics and separators.
fn check_name(name: &RepositoryName) {
    let text = name.as_str();
    assert!(!text.is_empty() && text.len() <= 255, "{text:?}");
    assert!(text.split('/').all(|c| !c.is_empty() && c != "." && c != ".."), "{text:?}");
    assert!(
        text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
    );
    assert_eq!(RepositoryName::parse(text).as_ref(), Ok(name));
}

fn check_target(target: &Target) {
    assert!(is_registry_host(&target.registry), "{:?}", target.registry);
    check_name(&target.repo);
    if target.registry == "docker.io" {
        assert!(target.repo.depth() >= 2, "Docker Hub names get library/: {:?}", target.repo);
    }
}

fn route(method: &str, target: &str) {
    // As hyper reads a request line: a method token, then an origin-form target.
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else { return };
    let Ok(request) = http::Request::builder().method(method).uri(target).body(()) else {
        return;
    };
    let uri = request.uri();
    let path = uri.path();
    let routing = Routing {
        default_upstream: "docker.io".to_owned(),
        aliases: BTreeMap::from([("hub".to_owned(), "docker.io".to_owned())]),
        hosted: BTreeSet::from(["local".to_owned()]),
    };
    let Ok(endpoint) = routing.endpoint(path, uri.query()) else { return };
    match endpoint {
        Endpoint::Manifest { target, reference } => {
            check_target(&target);
            assert!(path.ends_with(&format!("/manifests/{reference}")), "{path} → {reference}");
        }
        Endpoint::Blob { target, digest } => {
            check_target(&target);
            assert!(path.ends_with(&format!("/blobs/{digest}")), "{path} → {digest}");
        }
        Endpoint::Referrers { target, digest, .. } => {
            check_target(&target);
            assert!(path.ends_with(&format!("/referrers/{digest}")), "{path} → {digest}");
        }
        Endpoint::ByAlias { target, digest, .. } => {
            check_target(&target);
            assert!(path.ends_with(&format!("/{digest}")), "{path} → {digest}");
        }
        Endpoint::PeerBlob { digest } | Endpoint::PeerPieces { digest } => {
            assert!(path.ends_with(&format!("/{digest}")), "{path} → {digest}");
        }
        Endpoint::PeerAlias { digest } => {
            assert!(path.ends_with(&format!("/{digest}")), "{path} → {digest}");
        }
        Endpoint::Tags { target, .. } => check_target(&target),
        Endpoint::UploadStart { target, query, .. } => {
            check_target(&target);
            if let Some(from) = &query.from {
                check_name(from);
            }
        }
        Endpoint::Upload { target, id, .. } => {
            check_target(&target);
            assert!(!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        Endpoint::Pin { target, platform, replicas, .. }
        | Endpoint::Warm { target, platform, replicas, .. } => {
            check_target(&target);
            if let Some(platform) = platform {
                assert!(check_platform(platform).is_ok());
            }
            assert!(replicas.is_none_or(|n| (1..=MAX_REPLICAS).contains(&n)));
        }
        Endpoint::Base
        | Endpoint::Metrics
        | Endpoint::Status
        | Endpoint::Pins
        | Endpoint::Health
        | Endpoint::Ready
        | Endpoint::Unsupported(_) => {}
    }
}
