//! Real clients logging in to a node with client authentication: skopeo with `--src-creds`
//! (containers/image, as CRI-O), `podman pull --creds`, `docker login` to a private dockerd,
//! and containerd's `ctr` with `--user` through a `hosts.toml` mirror, as a Kubernetes node
//! would be set up; and tenants whose own registry credentials the node checks with the
//! upstream (pass-through).

use shoal_cluster_tests::clients::containerd::Containerd;
use shoal_cluster_tests::clients::docker::Docker;
use shoal_cluster_tests::clients::podman::Podman;
use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::shoal::{add_token, htpasswd_line};
use shoal_cluster_tests::{
    Credentials, Registry, RegistryAuth, RegistryOptions, ShoalNode, ShoalOptions, Tenant,
    TokenServer, TokenServerOptions, require_tools,
};

/// The config file of a node whose clients are alice (a password) and ci (a token), both
/// allowed to pull `docker.io/team/...`; anyone may pull `docker.io/library/...`.
fn auth_config(dir: &std::path::Path, alice: &Credentials) -> (String, String) {
    let htpasswd = dir.join("htpasswd");
    let line = htpasswd_line(alice).expect("shoal auth htpasswd");
    std::fs::write(&htpasswd, format!("{line}\n")).expect("write htpasswd");
    let tokens = dir.join("tokens");
    let token = add_token(&tokens, "ci").expect("shoal auth token");
    let text = format!(
        "[auth]\nhtpasswd = \"{}\"\ntokens = \"{}\"\n\n[[auth.rule]]\nprefix = \"docker.io/team\"\nusers = [\"alice\", \"ci\"]\nallow = [\"pull\"]\n\n[[auth.rule]]\nprefix = \"docker.io/library\"\nanonymous = true\nallow = [\"pull\"]\n",
        htpasswd.display(),
        tokens.display()
    );
    let path = dir.join("shoal.toml");
    std::fs::write(&path, text).expect("write config");
    (path.display().to_string(), token)
}

#[tokio::test]
async fn skopeo_podman_docker_and_containerd_log_in_to_the_node() {
    let tools = ["docker-registry", "skopeo", "containerd", "ctr", "podman", "dockerd", "docker"];
    if !require_tools(&tools) {
        return;
    }
    let registry = Registry::start(RegistryOptions::plain()).await.expect("registry");
    let team = image::push_image(&registry.client(), "team/app", "v1", &ImageSpec::docker(241))
        .await
        .expect("push");
    let other = image::push_image(&registry.client(), "other/app", "v1", &ImageSpec::oci(242))
        .await
        .expect("push");
    let public_image =
        image::push_image(&registry.client(), "library/pub", "v1", &ImageSpec::oci(243))
            .await
            .expect("push");
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = Credentials::new("alice", "alice-password");
    let (config, token) = auth_config(dir.path(), &alice);
    let options = ShoalOptions::docker_io(registry.url()).arg("--config").arg(config);
    let node = ShoalNode::start(options).await.expect("node");
    let skopeo = Skopeo::new().expect("skopeo");
    let source = format!("{}/team/app:v1", node.host());

    // skopeo: without credentials, and with a wrong password, the node refuses.
    let anonymous = skopeo.copy(&source, &dir.path().join("anon"), &CopyOptions::default()).await;
    refused_with(anonymous.map(drop), "unauthorized");
    let wrong = CopyOptions {
        credentials: Some(Credentials::new("alice", "not-her-password")),
        ..CopyOptions::default()
    };
    let wrong = skopeo.copy(&source, &dir.path().join("wrong"), &wrong).await;
    refused_with(wrong.map(drop), "invalid username, password or token");

    let with_creds = CopyOptions { credentials: Some(alice.clone()), ..CopyOptions::default() };
    let copied =
        skopeo.copy(&source, &dir.path().join("alice"), &with_creds).await.expect("alice pulls");
    assert_eq!(copied.manifest().expect("manifest"), team.root.bytes);
    assert_eq!(copied.verified_blobs().expect("blobs"), team.blob_digests());
    // Logged in, but no rule lets alice pull other/app.
    let denied = format!("{}/other/app:v1", node.host());
    let denied = skopeo.copy(&denied, &dir.path().join("denied"), &with_creds).await;
    refused_with(denied.map(drop), "denied");
    // Anyone may pull library/ without logging in; skopeo then sends empty Basic credentials.
    let public = format!("{}/library/pub:v1", node.host());
    let copied = skopeo
        .copy(&public, &dir.path().join("pub"), &CopyOptions::default())
        .await
        .expect("anonymous pull of an anonymous prefix");
    assert_eq!(copied.manifest().expect("manifest"), public_image.root.bytes);

    // podman, as a developer's machine or a CRI-O node would pull: the same answers.
    let podman = Podman::new().expect("podman");
    refused_with(podman.pull(&source, None).await.map(drop), "unauthorized");
    podman.pull(&source, Some(&alice)).await.expect("podman pulls with alice's credentials");
    assert_eq!(podman.digest(&source).await.expect("inspect"), team.root.digest.to_string());
    let other_source = format!("{}/other/app:v1", node.host());
    refused_with(podman.pull(&other_source, Some(&alice)).await.map(drop), "denied");

    // Docker, as a developer's machine or a CI runner pulls: `docker login`, then pulls.
    let docker = Docker::start().await.expect("dockerd");
    // Docker's words for a 401 with a Basic challenge, before it has logged in.
    refused_with(docker.pull(&source).await, "no basic auth credentials");
    docker.login(&node.host(), &alice).await.expect("docker login to the node");
    docker.pull(&source).await.expect("docker pulls with alice's credentials");
    assert_eq!(docker.digest(&source).await.expect("inspect"), team.root.digest.to_string());
    refused_with(docker.pull(&other_source).await, "denied");
    drop(docker);

    // containerd through a hosts.toml mirror (`?ns=docker.io`), with ci's token as password.
    let containerd = Containerd::start().await.expect("containerd");
    let hosts = tempfile::tempdir().expect("hosts dir");
    Containerd::write_hosts_toml(hosts.path(), "docker.io", &node.url()).expect("hosts.toml");
    let reference = "docker.io/team/app:v1";
    refused_with(containerd.fetch(reference, hosts.path(), false).await, "401 Unauthorized");
    let ci = Credentials::new("ci", token.clone());
    containerd.fetch_as(reference, hosts.path(), false, Some(&ci)).await.expect("ctr --user");
    for blob in team.blobs() {
        assert!(containerd.has_blob(&blob.digest).expect("verify"), "{}", blob.digest);
    }
    let refused = containerd.fetch_as("docker.io/other/app:v1", hosts.path(), false, Some(&ci));
    refused_with(refused.await, "403 Forbidden");
    assert!(other.blobs().iter().all(|b| !containerd.has_blob(&b.digest).unwrap_or(true)));

    // Neither the password nor the token reaches the node's log.
    let log = std::fs::read_to_string(node.log_path()).expect("log");
    assert!(!log.contains("alice-password") && !log.contains(&token));
}

/// The client failed, and its message shows the node's answer.
fn refused_with(result: shoal_cluster_tests::Result<()>, answer: &str) {
    match result {
        Ok(()) => panic!("the client succeeded; expected the node to answer {answer:?}"),
        Err(e) => assert!(e.to_string().contains(answer), "expected {answer:?} in: {e}"),
    }
}

/// Tenant pass-through: the node fetches with its own account, which reads every tenant's
/// repositories, and each client's own registry credentials decide what it may pull through
/// the node, asked of the upstream (a `docker-registry` with `auth: token` behind a token
/// service that grants tenants their own organization only, as a hosted registry does).
#[tokio::test]
async fn tenants_pull_with_their_own_credentials_and_never_see_each_others_images() {
    if !require_tools(&["docker-registry", "skopeo", "dockerd", "docker"]) {
        return;
    }
    let fleet = Credentials::new("fleet", "fleet-secret");
    let alice = Credentials::new("alice", "alice-pat");
    let bob = Credentials::new("bob", "bob-pat");
    let tenant = |credentials: &Credentials, prefix: &str| Tenant {
        credentials: credentials.clone(),
        prefixes: vec![prefix.to_owned()],
    };
    let tokens = TokenServer::start(TokenServerOptions {
        credentials: Some(fleet.clone()),
        anonymous_pull: false,
        tenants: vec![tenant(&alice, "acme/"), tenant(&bob, "bobco/")],
        ..Default::default()
    })
    .await
    .expect("token server");
    let options =
        RegistryOptions { auth: RegistryAuth::Token(tokens.registry_auth()), ..Default::default() };
    let registry = Registry::start(options).await.expect("registry");
    let acme = image::push_image(&registry.client(), "acme/app", "v1", &ImageSpec::oci(251))
        .await
        .expect("push");
    let bobco = image::push_image(&registry.client(), "bobco/app", "v1", &ImageSpec::oci(252))
        .await
        .expect("push");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shoal.toml");
    let text = format!(
        "[upstreams.\"docker.io\"]\nurl = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\n\n[auth]\npass_through = [\"docker.io\"]\n",
        registry.url(),
        fleet.username,
        fleet.password
    );
    std::fs::write(&config, text).expect("write config");
    let node =
        ShoalNode::start(ShoalOptions::default().arg("--config").arg(config.display().to_string()))
            .await
            .expect("node");
    let skopeo = Skopeo::new().expect("skopeo");
    let as_user =
        |c: &Credentials| CopyOptions { credentials: Some(c.clone()), ..Default::default() };
    let acme_source = format!("{}/acme/app:v1", node.host());

    // Alice pulls her organization's image, with her own credentials, twice.
    for round in 0..2 {
        let copied = skopeo
            .copy(&acme_source, &dir.path().join(format!("alice-{round}")), &as_user(&alice))
            .await
            .expect("alice pulls acme/app");
        assert_eq!(copied.manifest().expect("manifest"), acme.root.bytes);
        assert_eq!(copied.verified_blobs().expect("blobs"), acme.blob_digests());
    }
    // One question to the upstream with her credentials for the repository, answered once
    // for both pulls and all their blobs.
    assert_eq!(tokens.issued_to("alice"), 1, "one check per client and repository");

    // A tag that is not there upstream is not there here either, and that answer is not kept
    // for the repository: her next pull is served.
    let http = reqwest::Client::new();
    let missing = http
        .get(format!("{}/v2/acme/app/manifests/nope", node.url()))
        .basic_auth(&alice.username, Some(&alice.password))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN");
    skopeo
        .copy(&acme_source, &dir.path().join("alice-again"), &as_user(&alice))
        .await
        .expect("alice pulls acme/app after a 404");

    // Bob may not, although every blob of it is now on the node; nor may anyone anonymous.
    let bobs_try = skopeo.copy(&acme_source, &dir.path().join("bob"), &as_user(&bob)).await;
    refused_with(bobs_try.map(drop), "denied");
    let anonymous = skopeo.copy(&acme_source, &dir.path().join("anon"), &Default::default()).await;
    refused_with(anonymous.map(drop), "unauthorized");
    let wrong = Credentials::new("alice", "not-her-pat");
    let wrong = skopeo.copy(&acme_source, &dir.path().join("wrong"), &as_user(&wrong)).await;
    refused_with(wrong.map(drop), "denied");

    // Nor can bob read alice's layer under his own repository's name: he may pull from
    // bobco/app, but the layer is not in it.
    let layer = acme.blob_digests()[0];
    let response = http
        .get(format!("{}/v2/bobco/app/blobs/{layer}", node.url()))
        .basic_auth(&bob.username, Some(&bob.password))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 404, "a cached blob of another tenant is unknown here");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], "BLOB_UNKNOWN");

    // Bob pulls his own, with Docker: `docker login` to the node with his registry
    // credentials, then a pull; alice's image stays out of his reach there too.
    let bob_source = format!("{}/bobco/app:v1", node.host());
    let docker = Docker::start().await.expect("dockerd");
    docker.login(&node.host(), &bob).await.expect("docker login with bob's credentials");
    docker.pull(&bob_source).await.expect("bob pulls bobco/app with docker");
    assert_eq!(docker.digest(&bob_source).await.expect("inspect"), bobco.root.digest.to_string());
    refused_with(docker.pull(&acme_source).await, "denied");
    drop(docker);
    let copied =
        skopeo.copy(&bob_source, &dir.path().join("bobco"), &as_user(&bob)).await.expect("bob");
    assert_eq!(copied.verified_blobs().expect("blobs"), bobco.blob_digests());

    let log = std::fs::read_to_string(node.log_path()).expect("log");
    for secret in ["alice-pat", "bob-pat", "fleet-secret", "not-her-pat"] {
        assert!(!log.contains(secret), "{secret} reached the log");
    }
}
