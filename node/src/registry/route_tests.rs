//! The router's tests: every endpoint from its request line, and what it refuses.

use super::*;

fn routing() -> Routing {
    Routing {
        default_upstream: "docker.io".to_owned(),
        aliases: [("docker-hub".to_owned(), "docker.io".to_owned())].into(),
        hosted: ["local".to_owned()].into(),
    }
}

fn target(e: Endpoint) -> Target {
    match e {
        Endpoint::Manifest { target, .. }
        | Endpoint::Blob { target, .. }
        | Endpoint::Tags { target, .. } => target,
        other => panic!("no target in {other:?}"),
    }
}

#[test]
fn three_addressing_modes() {
    let r = routing();
    let t = target(r.endpoint("/v2/library/alpine/manifests/3", Some("ns=docker.io")).unwrap());
    assert_eq!((t.registry.as_str(), t.repo.as_str()), ("docker.io", "library/alpine"));

    let t = target(r.endpoint("/v2/ghcr.io/org/app/manifests/v1", None).unwrap());
    assert_eq!((t.registry.as_str(), t.repo.as_str()), ("ghcr.io", "org/app"));

    let t = target(r.endpoint("/v2/localhost:5000/app/tags/list", None).unwrap());
    assert_eq!((t.registry.as_str(), t.repo.as_str()), ("localhost:5000", "app"));

    let t = target(r.endpoint("/v2/docker-hub/alpine/manifests/3", None).unwrap());
    assert_eq!((t.registry.as_str(), t.repo.as_str()), ("docker.io", "library/alpine"));

    let t = target(r.endpoint("/v2/alpine/manifests/latest", None).unwrap());
    assert_eq!((t.registry.as_str(), t.repo.as_str()), ("docker.io", "library/alpine"));

    let t = target(r.endpoint("/v2/index.docker.io/alpine/manifests/latest", None).unwrap());
    assert_eq!((t.registry.as_str(), t.repo.as_str()), ("docker.io", "library/alpine"));

    let t = target(r.endpoint("/v2/org/app/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", None).unwrap());
    assert_eq!((t.registry.as_str(), t.repo.as_str()), ("docker.io", "org/app"));
}

#[test]
fn base_and_unsupported() {
    let r = routing();
    assert_eq!(r.endpoint("/v2/", None).unwrap(), Endpoint::Base);
    assert_eq!(r.endpoint("/v2", None).unwrap(), Endpoint::Base);
    assert!(matches!(r.endpoint("/v2/_catalog", None).unwrap(), Endpoint::Unsupported(_)));
    assert!(matches!(r.endpoint("/v3/", None), Err(ApiError::NotFound)));
    assert_eq!(r.endpoint("/healthz", None).unwrap(), Endpoint::Health);
    assert_eq!(r.endpoint("/readyz", None).unwrap(), Endpoint::Ready);
    assert_eq!(r.endpoint("/_shoal/status", None).unwrap(), Endpoint::Status);
    assert!(matches!(r.endpoint("/readyz/x", None), Err(ApiError::NotFound)));
}

#[test]
fn refuses_traversal_and_bad_names() {
    let r = routing();
    for path in [
        "/v2/../etc/manifests/latest",
        "/v2/a/../b/manifests/latest",
        "/v2/%2e%2e/app/manifests/latest",
        "/v2/a%2fb/manifests/latest",
        "/v2/UPPER/manifests/latest",
        "/v2//manifests/latest",
        "/v2/app/manifests/",
        "/v2/a..b/app/manifests/latest",
    ] {
        assert!(r.endpoint(path, None).is_err(), "{path} should be refused");
    }
    assert!(matches!(
        r.endpoint("/v2/app/manifests/bad$tag", None),
        Err(ApiError::ReferenceInvalid(_))
    ));
    assert!(matches!(
        r.endpoint("/v2/app/blobs/sha256:ABC", None),
        Err(ApiError::DigestInvalid(_))
    ));
    let sha512 = format!("sha512:{}", "ab".repeat(64));
    assert!(matches!(
        r.endpoint(&format!("/v2/app/blobs/{sha512}"), None),
        Ok(Endpoint::ByAlias { of: AliasOf::Blob, .. })
    ));
    assert!(matches!(
        r.endpoint(&format!("/v2/app/manifests/{sha512}"), None),
        Ok(Endpoint::ByAlias { of: AliasOf::Manifest, .. })
    ));
    let blake3 = format!("/v2/app/blobs/blake3:{}", "ab".repeat(32));
    assert!(matches!(r.endpoint(&blake3, None), Err(ApiError::BlobAlgorithm(_))));
    let short = format!("sha512:{}", "ab".repeat(32));
    assert!(matches!(
        r.endpoint(&format!("/v2/app/blobs/{short}"), None),
        Err(ApiError::DigestInvalid(_))
    ));
    assert!(matches!(
        r.endpoint(&format!("/v2/app/manifests/{short}"), None),
        Err(ApiError::ReferenceInvalid(_))
    ));
    assert!(matches!(r.endpoint("/v2/app/blobs/md5:abc", None), Err(ApiError::DigestInvalid(_))));
    assert!(matches!(
        r.endpoint("/v2/app/tags/list", Some("n=abc")),
        Err(ApiError::QueryInvalid(_))
    ));
}

#[test]
fn uploads_and_referrers() {
    let r = routing();
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let e = r.endpoint("/v2/local/app/blobs/uploads/", None).unwrap();
    let Endpoint::UploadStart { target: t, client_name, query } = e else { panic!("{e:?}") };
    assert_eq!((t.registry.as_str(), t.repo.as_str()), ("local", "app"));
    assert_eq!((client_name.as_str(), query), ("local/app", UploadQuery::default()));

    let q = format!("mount={d}&from=local/other");
    let e = r.endpoint("/v2/local/app/blobs/uploads/", Some(&q)).unwrap();
    let Endpoint::UploadStart { query, .. } = e else { panic!("{e:?}") };
    assert_eq!(query.mount.unwrap().to_string(), d);
    assert_eq!(query.from.unwrap().as_str(), "other");
    // A mount from another registry is no mount: the client uploads instead.
    let q = format!("mount={d}&from=ghcr.io/other");
    let e = r.endpoint("/v2/local/app/blobs/uploads/", Some(&q)).unwrap();
    let Endpoint::UploadStart { query, .. } = e else { panic!("{e:?}") };
    assert_eq!(query.from, None);

    let e = r.endpoint("/v2/local/app/blobs/uploads/00ff", Some(&format!("digest={d}"))).unwrap();
    let Endpoint::Upload { id, digest, .. } = e else { panic!("{e:?}") };
    assert_eq!((id.as_str(), digest.unwrap().to_string()), ("00ff", d.to_owned()));
    assert!(matches!(
        r.endpoint("/v2/local/app/blobs/uploads/../x", None),
        Err(ApiError::UploadUnknown(_))
    ));
    assert!(matches!(
        r.endpoint("/v2/local/app/blobs/uploads/", Some("digest=md5:1")),
        Err(ApiError::DigestInvalid(_))
    ));

    let e = r.endpoint(&format!("/v2/local/app/referrers/{d}"), Some("artifactType=x%2Fy"));
    let Endpoint::Referrers { artifact_type, .. } = e.unwrap() else { panic!() };
    assert_eq!(artifact_type.as_deref(), Some("x/y"));
    // Without the hosted name this is Docker Hub's `local/app`.
    let t = target(r.endpoint("/v2/localx/app/manifests/v1", None).unwrap());
    assert_eq!((t.registry.as_str(), t.repo.as_str()), ("docker.io", "localx/app"));
}

/// Found by the `route` fuzz target: Docker Hub's `library/` made a valid one-part name
/// too long, and the router handed out a name over the cap.
#[test]
fn a_name_too_long_with_its_library_prefix_is_refused() {
    let r = routing();
    let name = "a".repeat(250);
    let e = r.endpoint(&format!("/v2/{name}/manifests/latest"), None);
    assert!(matches!(e, Err(ApiError::NameInvalid(_))), "{e:?}");
    let t = target(r.endpoint(&format!("/v2/ghcr.io/{name}/manifests/latest"), None).unwrap());
    assert_eq!(t.repo.as_str(), name);
}

#[test]
fn tags_query() {
    let r = routing();
    let e = r.endpoint("/v2/app/tags/list", Some("n=2&last=v1")).unwrap();
    let Endpoint::Tags { page, client_name, .. } = e else { panic!() };
    assert_eq!(page, TagsQuery { n: Some(2), last: Some("v1".to_owned()) });
    assert_eq!(client_name, "app");
}

#[test]
fn tag_parameters_of_a_push_are_checked_in_order_without_repeats() {
    let tags = |q: &str| push_tags(Some(q)).map(|t| t.iter().map(|t| t.to_string()).collect());
    assert_eq!(push_tags(None).unwrap(), Vec::<Tag>::new());
    let taken: Vec<String> = tags("tag=1.2.3&ns=docker.io&tag=latest&tag=1.2.3").unwrap();
    assert_eq!(taken, ["1.2.3", "latest"]);
    // Encoded as a form would: decoded before the check.
    assert_eq!(tags("tag=v%31").unwrap(), ["v1"]);
    for bad in ["tag=", "tag=-lead", "tag=a%2Fb", &format!("tag={}", "x".repeat(129))] {
        assert!(matches!(push_tags(Some(bad)), Err(ApiError::TagInvalid(_))), "{bad}");
    }
    let at_most: Vec<String> = (0..MAX_PUSH_TAGS).map(|i| format!("tag=t{i}")).collect();
    assert_eq!(push_tags(Some(&at_most.join("&"))).unwrap().len(), MAX_PUSH_TAGS);
    let over = format!("{}&tag=one-more", at_most.join("&"));
    assert!(matches!(push_tags(Some(&over)), Err(ApiError::TooManyTags { .. })));
}
