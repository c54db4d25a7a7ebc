//! A node pulling from upstreams that demand authentication, as real registries do: a
//! `docker-registry` with htpasswd (basic auth), and one with `auth: token` behind a token
//! service that works like Docker Hub's (anonymous pull tokens; credentials for private repos).

use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::{
    Credentials, Registry, RegistryAuth, RegistryOptions, ShoalNode, ShoalOptions, TokenServer,
    TokenServerOptions, require_tools,
};

fn config_file(dir: &std::path::Path, url: &str, credentials: Option<&Credentials>) -> String {
    let mut text = format!("[upstreams.\"docker.io\"]\nurl = \"{url}\"\n");
    if let Some(c) = credentials {
        text.push_str(&format!("username = \"{}\"\npassword = \"{}\"\n", c.username, c.password));
    }
    let path = dir.join("shoal.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

#[tokio::test]
async fn node_pulls_from_an_htpasswd_registry_with_configured_credentials() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let credentials = Credentials::new("alice", "basic-secret");
    let registry =
        Registry::start(RegistryOptions::htpasswd(credentials.clone())).await.expect("registry");
    let pushed = image::push_image(&registry.client(), "team/app", "v1", &ImageSpec::docker(201))
        .await
        .expect("push");
    let dir = tempfile::tempdir().expect("tempdir");
    let skopeo = Skopeo::new().expect("skopeo");

    // Without credentials the upstream refuses the node, and the node says so.
    let anonymous = ShoalNode::start(ShoalOptions::docker_io(registry.url())).await.expect("node");
    let refused =
        reqwest::get(format!("{}/v2/team/app/manifests/v1", anonymous.url())).await.expect("get");
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], "DENIED");

    let config = config_file(dir.path(), &registry.url(), Some(&credentials));
    // A node with upstream credentials serves anonymous clients only when told to.
    let options = ShoalOptions::default().arg("--config").arg(config).arg("--anonymous-pull");
    let node = ShoalNode::start(options).await.expect("node");
    let copied = skopeo
        .copy(
            &format!("{}/team/app:v1", node.host()),
            &dir.path().join("out"),
            &CopyOptions::default(),
        )
        .await
        .expect("pull through the node");
    assert_eq!(copied.manifest().expect("manifest"), pushed.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), pushed.blob_digests());

    let log = std::fs::read_to_string(node.log_path()).expect("log");
    assert!(!log.contains("basic-secret"), "credentials never reach the log");
}

#[tokio::test]
async fn node_does_the_token_dance_against_a_token_auth_registry() {
    if !require_tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let pusher = Credentials::new("pusher", "push-secret");
    let tokens = TokenServer::start(TokenServerOptions {
        credentials: Some(pusher),
        anonymous_pull: true,
        ..Default::default()
    })
    .await
    .expect("token server");
    let options =
        RegistryOptions { auth: RegistryAuth::Token(tokens.registry_auth()), ..Default::default() };
    let mut registry = Registry::start(options).await.expect("registry");
    let pushed =
        image::push_multi_arch(&registry.client(), "library/app", "v1", 211).await.expect("push");
    registry.reset_requests().await.expect("reset");
    let issued_before = tokens.issued();

    let node = ShoalNode::start(ShoalOptions::docker_io(registry.url())).await.expect("node");
    let dir = tempfile::tempdir().expect("tempdir");
    let skopeo = Skopeo::new().expect("skopeo");
    let all = CopyOptions { all: true, ..CopyOptions::default() };
    let copied = skopeo
        .copy(&format!("{}/app:v1", node.host()), &dir.path().join("out"), &all)
        .await
        .expect("pull through the node");
    assert_eq!(copied.manifest().expect("index"), pushed.root.bytes);

    // One token for the repository's pull scope, reused for every request that followed.
    assert_eq!(tokens.issued() - issued_before, 1, "tokens are cached per scope");
    let requests = registry.requests().await.expect("log");
    let refused = requests.iter().filter(|r| r.status == 401).count();
    assert_eq!(refused, 1, "one challenge, then the cached token: {requests:?}");
    assert!(
        requests.iter().filter(|r| r.method == "GET").all(|r| r.status == 401 || r.status == 200)
    );
}
