//! Golden encodings of the owner messages (hex computed by an independent protobuf encoder)
//! and the refusals that guard decoding.

use prost::Message as _;

use super::*;

const EMPTY_DIGEST: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn fetch_blob() -> OwnerRequest {
    OwnerRequest::FetchBlob {
        registry: "docker.io".into(),
        repo: RepositoryName::parse("library/alpine").unwrap(),
        digest: Digest::parse(EMPTY_DIGEST).unwrap(),
        into_site: false,
    }
}

#[test]
fn fetch_blob_golden() {
    let golden = "0a640a09646f636b65722e696f120e6c6962726172792f616c70696e651a477368613235363a\
                  65336230633434323938666331633134396166626634633839393666623932343237616534\
                  316534363439623933346361343935393931623738353262383535";
    assert_eq!(hex::encode(fetch_blob().encode()), golden);
    assert_eq!(OwnerRequest::decode(&hex::decode(golden).unwrap()).unwrap(), fetch_blob());
}

/// `into_site` is field 4, a varint: `20 01` after the other fields, absent when false, so
/// a request without it reads as a fetch for the fleet.
#[test]
fn fetch_blob_into_site_golden() {
    let request = match fetch_blob() {
        OwnerRequest::FetchBlob { registry, repo, digest, .. } => {
            OwnerRequest::FetchBlob { registry, repo, digest, into_site: true }
        }
        other => other,
    };
    let golden = "0a660a09646f636b65722e696f120e6c6962726172792f616c70696e651a477368613235363a\
                  65336230633434323938666331633134396166626634633839393666623932343237616534\
                  316534363439623933346361343935393931623738353262383535"
        .replace(' ', "")
        + "2001";
    assert_eq!(hex::encode(request.encode()), golden);
    assert_eq!(OwnerRequest::decode(&hex::decode(&golden).unwrap()).unwrap(), request);
}

#[test]
fn resolve_tag_golden() {
    let req = OwnerRequest::ResolveTag {
        registry: "ghcr.io".into(),
        repo: RepositoryName::parse("org/app").unwrap(),
        tag: Tag::parse("v1").unwrap(),
    };
    let golden = "12160a07676863722e696f12076f72672f6170701a027631";
    assert_eq!(hex::encode(req.encode()), golden);
    assert_eq!(OwnerRequest::decode(&hex::decode(golden).unwrap()).unwrap(), req);
}

#[test]
fn responses_golden() {
    let accepted = OwnerResponse::FetchAccepted { http_url: "http://10.0.0.5:5000".into() };
    assert_eq!(hex::encode(accepted.encode()), "0a160a14687474703a2f2f31302e302e302e353a35303030");

    let manifest = br#"{"schemaVersion":2}"#.to_vec();
    let resolved = OwnerResponse::TagResolved {
        digest: Digest::of(&manifest),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        manifest,
    };
    let golden = "128a010a477368613235363a62616665626433363138396164333638386237623339313565\
                  613535643436316530626663666264646531316535346230613132333939396662366265\
                  353066122a6170706c69636174696f6e2f766e642e6f63692e696d6167652e6d616e6966\
                  6573742e76312b6a736f6e1a137b22736368656d6156657273696f6e223a327d";
    assert_eq!(hex::encode(resolved.encode()), golden);
    assert_eq!(OwnerResponse::decode(&hex::decode(golden).unwrap()).unwrap(), resolved);

    let refused = OwnerResponse::Error(ErrorCode::UpstreamUnavailable);
    assert_eq!(refused.encode(), [0x18, 0x02]);
    assert_eq!(OwnerResponse::decode(&[0x18, 0x02]).unwrap(), refused);
}

#[test]
fn unknown_error_codes_are_internal() {
    assert_eq!(
        OwnerResponse::decode(&[0x18, 0x63]).unwrap(),
        OwnerResponse::Error(ErrorCode::Internal)
    );
    assert_eq!(
        OwnerResponse::decode(&[0x18, 0x00]).unwrap(),
        OwnerResponse::Error(ErrorCode::Internal)
    );
}

#[test]
fn oversized_messages_are_refused_before_parsing() {
    // Not protobuf at all: a parser would fail differently, so the size check came first.
    let junk = vec![0xff; MAX_REQUEST_SIZE + 1];
    assert_eq!(
        OwnerRequest::decode(&junk),
        Err(MessageError::TooLarge { size: MAX_REQUEST_SIZE + 1, max: MAX_REQUEST_SIZE })
    );
    let junk = vec![0xff; MAX_RESPONSE_SIZE + 1];
    assert!(matches!(OwnerResponse::decode(&junk), Err(MessageError::TooLarge { .. })));
}

#[test]
fn invalid_fields_are_refused() {
    let wire_req = |registry: &str, repo: &str, digest: &str| {
        wire::OwnerRequest {
            kind: Some(wire::owner_request::Kind::FetchBlob(wire::FetchBlob {
                registry: registry.into(),
                repo: repo.into(),
                digest: digest.into(),
                into_site: false,
            })),
        }
        .encode_to_vec()
    };
    let decode = |b: Vec<u8>| OwnerRequest::decode(&b);
    assert!(decode(wire_req("docker.io", "library/alpine", EMPTY_DIGEST)).is_ok());
    assert_eq!(decode(wire_req("", "a", EMPTY_DIGEST)), Err(MessageError::BadRegistry));
    assert_eq!(decode(wire_req("evil/host", "a", EMPTY_DIGEST)), Err(MessageError::BadRegistry));
    assert!(matches!(
        decode(wire_req("r", "../etc", EMPTY_DIGEST)),
        Err(MessageError::BadRepository(_))
    ));
    assert!(matches!(decode(wire_req("r", "a", "sha256:AB")), Err(MessageError::BadDigest(_))));
    assert_eq!(OwnerRequest::decode(&[]), Err(MessageError::Empty));
    assert!(matches!(OwnerRequest::decode(&[0x0a, 0x05, 0x01]), Err(MessageError::Malformed(_))));

    let bad_url = OwnerResponse::FetchAccepted { http_url: "file:///etc/passwd".into() };
    assert_eq!(OwnerResponse::decode(&bad_url.encode()), Err(MessageError::BadUrl));
}

#[test]
fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let manifest = b"{}".to_vec();
    let claimed = Digest::of(b"something else");
    let lie = OwnerResponse::TagResolved {
        digest: claimed,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        manifest: manifest.clone(),
    };
    assert_eq!(
        OwnerResponse::decode(&lie.encode()),
        Err(MessageError::ManifestDigestMismatch { claimed, actual: Digest::of(&manifest) })
    );

    let huge = vec![b' '; MAX_MANIFEST_SIZE as usize + 1];
    let too_big = OwnerResponse::TagResolved {
        digest: Digest::of(&huge),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        manifest: huge,
    };
    assert!(matches!(
        OwnerResponse::decode(&too_big.encode()),
        Err(MessageError::ManifestTooLarge(_))
    ));
}

fn hold() -> ImageHold {
    ImageHold {
        registry: "local".into(),
        repo: RepositoryName::parse("team/app").unwrap(),
        digest: Digest::of(b"manifest"),
        tag: Some(Tag::parse("v1").unwrap()),
        platform: Some("linux/arm64/v8".into()),
        replicas: 2,
        pinned_at_ms: Some(1_700_000_000_000),
        with_referrers: true,
    }
}

#[test]
fn hold_and_release_round_trip() {
    let warm = ImageHold { tag: None, platform: None, pinned_at_ms: None, ..hold() };
    for request in [
        OwnerRequest::Hold(hold()),
        OwnerRequest::Hold(warm),
        OwnerRequest::Release(ImageRelease {
            registry: "docker.io".into(),
            repo: RepositoryName::parse("library/alpine").unwrap(),
            digest: Digest::of(b"m"),
            released_at_ms: 42,
            delete: true,
        }),
    ] {
        assert_eq!(OwnerRequest::decode(&request.encode()), Ok(request));
    }
    for state in [HoldState::Fetching, HoldState::Whole, HoldState::Released, HoldState::Deleted] {
        let response = OwnerResponse::Hold(state);
        assert_eq!(OwnerResponse::decode(&response.encode()), Ok(response));
    }
    // A state from a newer peer is a failure, never a success this node cannot interpret.
    let unknown = wire::OwnerResponse { result: Some(wire::owner_response::Result::Hold(99)) };
    assert_eq!(OwnerResponse::from_wire(unknown), Ok(OwnerResponse::Error(ErrorCode::Internal)));
}

#[test]
fn hold_requests_with_bad_fields_are_refused() {
    let encode = |h: ImageHold| OwnerRequest::Hold(h).encode();
    for replicas in [0, MAX_REPLICAS + 1] {
        let bad = encode(ImageHold { replicas, ..hold() });
        assert_eq!(OwnerRequest::decode(&bad), Err(MessageError::BadReplicas));
    }
    for platform in ["linux", "linux/", "Linux/amd64", "linux/amd64/v8/x", "linux/amd 64"] {
        let bad = encode(ImageHold { platform: Some(platform.into()), ..hold() });
        assert_eq!(OwnerRequest::decode(&bad), Err(MessageError::BadPlatform), "{platform}");
    }
    let mut wire = OwnerRequest::Hold(hold()).to_wire();
    if let Some(wire::owner_request::Kind::HoldImage(h)) = &mut wire.kind {
        h.tag = "-bad".into();
    }
    assert!(matches!(OwnerRequest::from_wire(wire), Err(MessageError::BadTag(_))));
}
