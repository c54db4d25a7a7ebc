//! Real clients logging in to a node with client authentication: skopeo with `--src-creds`
//! (containers/image, as CRI-O and podman) and containerd's `ctr` with `--user` through a
//! `hosts.toml` mirror, as a Kubernetes node would be set up.

use shoal_cluster_tests::clients::containerd::Containerd;
use shoal_cluster_tests::clients::skopeo::{CopyOptions, Skopeo};
use shoal_cluster_tests::image::{self, ImageSpec};
use shoal_cluster_tests::shoal::{add_token, htpasswd_line};
use shoal_cluster_tests::{
    Credentials, Registry, RegistryOptions, ShoalNode, ShoalOptions, require_tools,
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
async fn skopeo_and_containerd_log_in_to_the_node() {
    if !require_tools(&["docker-registry", "skopeo", "containerd", "ctr"]) {
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
