//! The harness against the real parts, without shoal: a seeded `docker-registry`, skopeo and
//! containerd pulling from it directly, both auth flows, the access log, restarts.

use shoal_cluster_tests::clients::containerd::Containerd;
use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::{
    Credentials, Registry, RegistryAuth, RegistryOptions, TokenServer, TokenServerOptions,
    require_tools,
};
use shoal_protocol::Digest;

#[tokio::test]
async fn seeded_images_read_back_byte_for_byte() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let client = registry.client();
    let oci =
        image::push_image(&client, "library/app", "v1", &ImageSpec::oci(1)).await.expect("oci");
    let docker = image::push_image(&client, "library/app", "docker", &ImageSpec::docker(2))
        .await
        .expect("docker");
    let chunked = image::push_image(&client, "chunked", "v1", &ImageSpec::oci(3).chunked(10_000))
        .await
        .expect("chunked");
    let multi = image::push_multi_arch(&client, "multi", "v1", 4).await.expect("index");
    assert_eq!(oci.blobs().len(), 4, "config and three layers");
    assert_eq!(multi.children.len(), 2);
    assert_eq!(multi.blobs().len(), 8);

    for pushed in [&oci, &docker, &chunked, &multi] {
        let (media_type, bytes) =
            client.get_manifest(&pushed.repo, &pushed.tag).await.expect("get");
        assert_eq!(media_type, pushed.root.media_type);
        assert_eq!(bytes.as_ref(), pushed.root.bytes.as_slice());
        assert_eq!(Digest::of(&bytes), pushed.root.digest);
        for blob in pushed.blobs() {
            let data = client.get_blob(&pushed.repo, &blob.digest).await.expect("blob");
            assert_eq!(data.len() as u64, blob.size);
            assert_eq!(Digest::of(&data), blob.digest);
        }
    }
    // The same seed gives the same image; another seed another one.
    let again = image::push_image(&client, "other", "v1", &ImageSpec::oci(1)).await.expect("again");
    assert_eq!(again.root.digest, oci.root.digest);
    assert_ne!(docker.root.digest, oci.root.digest);
}

#[tokio::test]
async fn large_layer_is_streamed_and_stored_intact() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let client = registry.client();
    let size = 5 * 1024 * 1024 + 17;
    let pushed = image::push_large_layer_image(&client, "big", "v1", size, 9).await.expect("push");
    let layer = &pushed.root.blobs[1];
    assert_eq!(layer.size, size);
    let data = client.get_blob("big", &layer.digest).await.expect("blob");
    assert_eq!(data.len() as u64, size);
    assert_eq!(Digest::of(&data), layer.digest);
}

#[tokio::test]
async fn skopeo_copies_directly_and_through_a_prefix_mirror() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let client = registry.client();
    let oci =
        image::push_image(&client, "library/app", "v1", &ImageSpec::oci(11)).await.expect("oci");
    let docker =
        image::push_image(&client, "library/app", "v2", &ImageSpec::docker(12)).await.expect("v2");
    let multi = image::push_multi_arch(&client, "library/multi", "v1", 13).await.expect("index");
    // A prefix mirror asks for /v2/docker.io/library/app/...: seed that name too.
    let mirrored = image::push_image(&client, "docker.io/library/app", "v1", &ImageSpec::oci(11))
        .await
        .expect("mirrored");
    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");

    for pushed in [&oci, &docker] {
        let dest = out.path().join(&pushed.tag);
        let source = format!("{}/{}:{}", registry.host(), pushed.repo, pushed.tag);
        let copied = skopeo.copy(&source, &dest, &CopyOptions::default()).await.expect("copy");
        assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
        assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
    }

    let dest = out.path().join("multi");
    let source = format!("{}/library/multi:v1", registry.host());
    let all = CopyOptions { all: true, ..CopyOptions::default() };
    let copied = skopeo.copy(&source, &dest, &all).await.expect("copy --all");
    assert_eq!(copied.manifest().expect("index"), multi.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), multi.blob_digests());

    let conf = skopeo
        .prefix_mirror_conf("docker.io", &format!("{}/docker.io", registry.host()))
        .expect("conf");
    let via_mirror = CopyOptions { registries_conf: Some(conf), ..CopyOptions::default() };
    let dest = out.path().join("mirror");
    let copied =
        skopeo.copy("docker.io/library/app:v1", &dest, &via_mirror).await.expect("mirror copy");
    assert_eq!(copied.manifest().expect("manifest"), mirrored.root.bytes);
    let manifest_path = "/v2/docker.io/library/app/manifests/v1";
    assert!(registry.count("GET", manifest_path).await.expect("count") >= 1);
}

#[tokio::test]
async fn ctr_fetches_through_a_hosts_toml_mirror_with_ns() {
    if !require_tools(&["docker-registry", "containerd", "ctr"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let client = registry.client();
    let multi = image::push_multi_arch(&client, "library/app", "v1", 21).await.expect("index");
    registry.reset_requests().await.expect("reset");
    let containerd = Containerd::start().await.expect("containerd");
    let hosts = tempfile::tempdir().expect("hosts dir");
    Containerd::write_hosts_toml(hosts.path(), "docker.io", &registry.url()).expect("hosts.toml");

    containerd.fetch("docker.io/library/app:v1", hosts.path(), true).await.expect("fetch");
    for manifest in multi.manifests() {
        assert!(containerd.has_blob(&manifest.digest).expect("verify"), "{}", manifest.digest);
    }
    for blob in multi.blobs() {
        assert!(containerd.has_blob(&blob.digest).expect("verify"), "{}", blob.digest);
    }
    let requests = registry.requests().await.expect("log");
    let to_app: Vec<_> =
        requests.iter().filter(|r| r.path.starts_with("/v2/library/app/")).collect();
    assert!(!to_app.is_empty());
    assert!(
        to_app.iter().all(|r| r.query.as_deref() == Some("ns=docker.io")),
        "containerd sends ?ns= to a mirror: {to_app:?}"
    );
}

#[tokio::test]
async fn token_auth_registry_works_with_skopeo() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let credentials = Credentials::new("pusher", "push-secret");
    let tokens = TokenServer::start(TokenServerOptions {
        credentials: Some(credentials),
        anonymous_pull: true,
        ..Default::default()
    })
    .await
    .expect("token server");
    let options =
        RegistryOptions { auth: RegistryAuth::Token(tokens.registry_auth()), ..Default::default() };
    let registry = Registry::start(options).await.expect("registry");
    // Pushing needs the credentials: the token dance with basic auth at the token service.
    let pushed = image::push_image(&registry.client(), "library/app", "v1", &ImageSpec::oci(31))
        .await
        .expect("push with a token");
    let issued_for_push = tokens.issued();
    assert!(issued_for_push >= 1);

    let unauthenticated =
        reqwest::get(format!("{}/v2/library/app/manifests/v1", registry.url())).await.expect("get");
    assert_eq!(unauthenticated.status(), 401);
    let challenge = unauthenticated.headers()["www-authenticate"].to_str().expect("header");
    assert!(challenge.starts_with("Bearer realm=\""), "{challenge}");

    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");
    let source = format!("{}/library/app:v1", registry.host());
    let copied = skopeo.copy(&source, out.path(), &CopyOptions::default()).await.expect("copy");
    assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
    assert!(tokens.issued() > issued_for_push, "skopeo got its own anonymous pull token");
    assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());

    // Anonymous clients may not push: the token grants pull only.
    let anonymous = shoal_cluster_tests::RegistryClient::new(registry.url(), None);
    let refused = image::push_image(&anonymous, "library/app", "v2", &ImageSpec::oci(32)).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn htpasswd_registry_works_with_skopeo_credentials() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let credentials = Credentials::new("alice", "basic-secret");
    let registry =
        Registry::start(RegistryOptions::htpasswd(credentials.clone())).await.expect("registry");
    let pushed = image::push_image(&registry.client(), "team/app", "v1", &ImageSpec::docker(41))
        .await
        .expect("push with basic auth");
    let skopeo = Skopeo::new().expect("skopeo");
    let out = tempfile::tempdir().expect("tempdir");
    let source = format!("{}/team/app:v1", registry.host());

    let anonymous = skopeo.copy(&source, &out.path().join("anon"), &CopyOptions::default()).await;
    assert!(anonymous.is_err(), "the registry refuses anonymous pulls");
    let with_creds = CopyOptions { credentials: Some(credentials), ..CopyOptions::default() };
    let copied = skopeo.copy(&source, &out.path().join("ok"), &with_creds).await.expect("copy");
    assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());
}

#[tokio::test]
async fn access_log_counts_exactly_the_requests_made() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let pushed = image::push_image(&registry.client(), "library/app", "v1", &ImageSpec::oci(51))
        .await
        .expect("push");
    registry.reset_requests().await.expect("reset");
    assert!(registry.requests().await.expect("log").is_empty(), "reset hides the push");

    let http = reqwest::Client::new();
    let manifest_url = format!("{}/v2/library/app/manifests/v1", registry.url());
    let layer = &pushed.root.blobs[1];
    let blob_path = format!("/v2/library/app/blobs/{}", layer.digest);
    for _ in 0..3 {
        let accept = shoal_protocol::media_type::OCI_MANIFEST;
        let request = http.get(&manifest_url).header("accept", accept);
        let response = request.send().await.expect("get manifest");
        assert!(response.status().is_success());
    }
    for _ in 0..2 {
        let url = format!("{}{blob_path}", registry.url());
        let response = http.head(url).send().await.expect("head blob");
        assert!(response.status().is_success());
    }
    let missing = http.get(format!("{}/v2/library/app/manifests/nope", registry.url())).send();
    assert_eq!(missing.await.expect("get missing").status(), 404);

    assert_eq!(registry.count("GET", "/v2/library/app/manifests/v1").await.expect("count"), 3);
    assert_eq!(registry.count("HEAD", &blob_path).await.expect("count"), 2);
    assert_eq!(registry.count("GET", &blob_path).await.expect("count"), 0);
    let requests = registry.requests().await.expect("log");
    assert_eq!(requests.len(), 6, "{requests:?}");
    assert_eq!(requests.iter().filter(|r| r.status == 404).count(), 1);
}

#[tokio::test]
async fn restart_keeps_port_and_storage() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let mut registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let client = registry.client();
    let pushed =
        image::push_image(&client, "library/app", "v1", &ImageSpec::oci(61)).await.expect("push");
    let url = format!("{}/v2/", registry.url());

    registry.stop();
    assert!(reqwest::get(&url).await.is_err(), "a stopped registry refuses connections");
    assert!(registry.requests().await.is_ok(), "the log stays readable while stopped");

    registry.restart().await.expect("restart");
    let (_, bytes) =
        client.get_manifest("library/app", "v1").await.expect("manifest after restart");
    assert_eq!(Digest::of(&bytes), pushed.root.digest);
}

#[test]
fn shoal_binary_is_built_once_and_found() {
    let first = shoal_cluster_tests::shoal::shoal_binary().expect("shoal binary");
    assert!(first.is_file(), "{}", first.display());
    let second = shoal_cluster_tests::shoal::shoal_binary().expect("shoal binary");
    assert_eq!(first, second);
}

#[tokio::test]
async fn nginx_serves_a_file_and_stops_with_its_workers() {
    if !require_tools(&["nginx"]) {
        return;
    }
    let root = tempfile::tempdir().expect("root");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.path().join("blob"), &content).expect("write");
    let nginx = shoal_cluster_tests::nginx::Nginx::start(root.path()).await.expect("nginx");
    let url = format!("{}/blob", nginx.url());
    let body = reqwest::get(&url).await.expect("get").bytes().await.expect("body");
    assert_eq!(body.as_ref(), content.as_slice());
    drop(nginx);
    assert!(reqwest::get(&url).await.is_err(), "no worker is left listening");
}

#[tokio::test]
async fn proxy_mode_registry_pulls_through_from_its_remote() {
    if !require_tools(&["docker-registry"]) {
        return;
    }
    let mut origin = Registry::start(RegistryOptions::plain()).await.expect("origin");
    let pushed = image::push_image(&origin.client(), "library/app", "v1", &ImageSpec::oci(71))
        .await
        .expect("push");
    origin.reset_requests().await.expect("reset");
    let proxy = Registry::start(RegistryOptions::proxy(origin.url())).await.expect("proxy");
    let client = proxy.client();
    let layer = &pushed.root.blobs[1];
    let blob_path = format!("/v2/library/app/blobs/{}", layer.digest);
    let mut first_pull = None;
    for round in 0..3 {
        let (_, bytes) = client.get_manifest("library/app", "v1").await.expect("manifest");
        assert_eq!(bytes.as_ref(), pushed.root.bytes.as_slice());
        let data = client.get_blob("library/app", &layer.digest).await.expect("blob");
        assert_eq!(Digest::of(&data), layer.digest);
        if round == 0 {
            // The proxy commits a blob after it has served it: give it a moment.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            first_pull = Some(origin.count("GET", &blob_path).await.expect("count"));
        }
    }
    let first_pull = first_pull.expect("first round ran");
    assert!(first_pull >= 1, "the proxy fetched the blob from its remote");
    let after = origin.count("GET", &blob_path).await.expect("count");
    assert_eq!(after, first_pull, "later pulls are served from the proxy's storage");
}
