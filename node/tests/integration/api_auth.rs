//! Client authentication on a real node: the login challenge, passwords and tokens, rules by
//! prefix, and a private blob that must not leak through another repository's name.

use crate::{api_support, support};

use api_support::{Node, NodeOptions};
use reqwest::{RequestBuilder, StatusCode};
use shoal_protocol::Digest;
use support::fake_upstream::{FakeImage, FakeUpstream};

/// A node whose docker.io is `fake`, with alice (password `pw`), the token `t0ken` of ci, and:
/// `docker.io/library` anonymous, `docker.io/acme` for alice and ci, `docker.io/acme/private`
/// for ci alone.
async fn node(fake: &FakeUpstream, dir: &std::path::Path) -> Node {
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{}\n", bcrypt_hash("pw"))).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, shoal::auth::token_file_line("ci", "t0ken")).unwrap();
    let rule = |prefix: &str, users: &str, anonymous: bool| {
        format!(
            "[[auth.rule]]\nprefix = \"{prefix}\"\nusers = [{users}]\nanonymous = {anonymous}\nallow = [\"pull\"]\n"
        )
    };
    let auth = format!(
        "[auth]\nhtpasswd = {:?}\ntokens = {:?}\n{}{}{}",
        htpasswd.display().to_string(),
        tokens.display().to_string(),
        rule("docker.io/library", "", true),
        rule("docker.io/acme", "\"alice\", \"ci\"", false),
        rule("docker.io/acme/private", "\"ci\"", false),
    );
    Node::start(&fake.url(), NodeOptions { auth: Some(auth), ..Default::default() }).await
}

fn bcrypt_hash(password: &str) -> String {
    // The cheapest cost: the test checks the logic, not the hash's strength.
    let line = shoal::auth::htpasswd_line("x", password, 4).unwrap();
    line.split_once(':').unwrap().1.to_owned()
}

struct Images {
    public: FakeImage,
    private: FakeImage,
    other: FakeImage,
}

fn images(fake: &FakeUpstream) -> Images {
    Images {
        public: fake.put_image("library/public", "v1", &[b"public layer"]),
        private: fake.put_image("acme/private", "v1", &[b"private layer"]),
        other: fake.put_image("acme/other", "v1", &[b"other layer", b"shared layer"]),
    }
}

fn get(node: &Node, path: &str) -> RequestBuilder {
    node.client.get(format!("{}{path}", node.url))
}

async fn code(resp: reqwest::Response) -> String {
    let body: serde_json::Value = resp.json().await.expect("an OCI error body");
    body["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn clients_must_log_in_and_wrong_credentials_are_refused() {
    let fake = FakeUpstream::builder().start().await;
    let images = images(&fake);
    let dir = tempfile::tempdir().unwrap();
    let node = node(&fake, dir.path()).await;

    let resp = get(&node, "/v2/").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"shoal\"");
    assert_eq!(code(resp).await, "UNAUTHORIZED");

    for (user, password) in [("alice", "wrong"), ("nobody", "pw"), ("ci", "pw")] {
        let resp = get(&node, "/v2/").basic_auth(user, Some(password)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{user}:{password}");
        assert!(resp.headers().contains_key("www-authenticate"));
    }
    let resp = get(&node, "/v2/").bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = get(&node, "/v2/").header("authorization", "Digest x").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let resp = get(&node, "/v2/").basic_auth("alice", Some("pw")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // A wrong password on a name anyone may pull is still refused, not ignored.
    let public = format!("/v2/library/public/blobs/{}", images.public.layers[0]);
    let resp = get(&node, &public).basic_auth("alice", Some("wrong")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Probes, metrics and the peer data plane are not the client API.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(&node, path).send().await.unwrap().status(), StatusCode::OK, "{path}");
    }
    // Its own check answers there (a node without a cluster key refuses every peer request),
    // never the client login.
    let peer = format!("/v2/_shoal/peer/blobs/{}", Digest::of(b"absent"));
    let resp = get(&node, &peer).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get("www-authenticate").is_none());
}

#[tokio::test]
async fn rules_decide_by_the_longest_prefix_of_the_resolved_name() {
    let fake = FakeUpstream::builder().start().await;
    let images = images(&fake);
    let dir = tempfile::tempdir().unwrap();
    let node = node(&fake, dir.path()).await;
    let alice = |path: &str| get(&node, path).basic_auth("alice", Some("pw"));

    let resp = alice("/v2/acme/other/manifests/v1").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), images.other.manifest_bytes);
    let layer = format!("/v2/acme/other/blobs/{}", images.other.layers[0]);
    assert_eq!(alice(&layer).send().await.unwrap().status(), StatusCode::OK);

    // The longer prefix closes what the shorter one opens, in every spelling of the name.
    for path in [
        "/v2/acme/private/manifests/v1",
        "/v2/docker.io/acme/private/manifests/v1",
        "/v2/acme/private/manifests/v1?ns=docker.io",
        "/v2/acme/private/tags/list",
    ] {
        let resp = alice(path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(code(resp).await, "DENIED");
    }
    // No rule: refused, even for a registry the node could fetch from.
    let resp = alice("/v2/quay.io/org/app/manifests/v1").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // A token, as a bearer token or as ci's Basic password.
    let resp =
        get(&node, "/v2/acme/private/manifests/v1").bearer_auth("t0ken").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), images.private.manifest_bytes);
    let resp = get(&node, "/v2/acme/private/manifests/v1")
        .basic_auth("ci", Some("t0ken"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Anonymous clients: the public prefix, and a login request for the rest.
    let resp = get(&node, "/v2/library/public/manifests/v1").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = get(&node, "/v2/acme/other/manifests/v1").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn a_private_blob_is_not_served_through_another_repository() {
    let fake = FakeUpstream::builder().start().await;
    let images = images(&fake);
    let dir = tempfile::tempdir().unwrap();
    let node = node(&fake, dir.path()).await;
    let secret = images.private.layers[0];

    // ci pulls the private image: the node now holds its layer.
    let path = format!("/v2/acme/private/blobs/{secret}");
    let resp = get(&node, &path).bearer_auth("t0ken").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(Digest::of(&resp.bytes().await.unwrap()), secret);
    node.assert_stored(&secret).await;

    // Through names the asker may pull, the digest is unknown: the upstream says it is not
    // there, and the stored copy is not consulted.
    let alice = |path: String| get(&node, &path).basic_auth("alice", Some("pw"));
    for path in
        [format!("/v2/acme/other/blobs/{secret}"), format!("/v2/library/public/blobs/{secret}")]
    {
        let resp = alice(path.clone()).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(code(resp).await, "BLOB_UNKNOWN");
    }
    let anonymous = get(&node, &format!("/v2/library/public/blobs/{secret}")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::NOT_FOUND);
    let by_digest = format!("/v2/acme/other/manifests/{}", images.private.manifest);
    let resp = alice(by_digest).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(code(resp).await, "MANIFEST_UNKNOWN");

    // A blob that is in the asked repository upstream is served, and from then on known there:
    // one HEAD, then no more upstream requests for it.
    let shared = images.other.layers[1];
    let path = format!("/v2/acme/other/blobs/{shared}");
    for _ in 0..2 {
        let resp = alice(path.clone()).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(Digest::of(&resp.bytes().await.unwrap()), shared);
    }
    let upstream = FakeUpstream::blob_path("acme/other", &shared);
    assert_eq!(fake.count("HEAD", &upstream), 1);
    assert_eq!(fake.count("GET", &upstream), 1);

    // Blobs listed by a manifest served from a repository need no upstream check there.
    let resp = alice("/v2/acme/other/manifests/v1".to_owned()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let first = images.other.layers[0];
    let resp = alice(format!("/v2/acme/other/blobs/{first}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(fake.count("HEAD", &FakeUpstream::blob_path("acme/other", &first)), 0);
}
