//! A member that names the wrong content for a sha512: the asker brings that content in (its
//! sha256 checked, as any content is), finds it does not hash to the sha512, and believes
//! neither the member nor the alias; an honest member's answer, checked the same way, is
//! recorded. The fleet is a fixed list of providers (the `Fleet` seam): a liar that answers
//! only alias questions, and a real node that was pushed the content by sha512.

use crate::{api_support, peer_timeouts};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::any;
use reqwest::Method;
use shoal::fetch::{AliasOf, Target};
use shoal_protocol::{Digest, RepositoryName, Sha512Digest};
use tokio::net::TcpListener;

use api_support::{HEALTH_REPO, NodeOptions, TestKey, fake_with_health, pattern};
use peer_timeouts::{asker, peer};

/// A member that says every sha512 names `decoy`, and holds nothing.
async fn lying_peer(decoy: Digest) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the liar");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let app = Router::new().fallback(any(move |uri: axum::http::Uri| async move {
        let mut headers = HeaderMap::new();
        if uri.path().starts_with("/v2/_shoal/peer/aliases/") {
            let value = HeaderValue::from_str(&decoy.to_string()).expect("header");
            headers.insert("docker-content-digest", value);
            (StatusCode::OK, headers)
        } else {
            (StatusCode::NOT_FOUND, headers)
        }
    }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_member_naming_the_wrong_content_for_a_sha512_is_not_believed() {
    let (fake, _image) = fake_with_health().await;
    // The decoy is real content anyone can fetch (the upstream has it), just not the alias's.
    let decoy = fake.put_blob(HEALTH_REPO, &pattern(40_000, 5));
    let target = Target {
        registry: "docker.io".to_owned(),
        repo: RepositoryName::parse(HEALTH_REPO).expect("name"),
    };

    // The honest member: a real node the content was pushed to by its sha512.
    let key = TestKey::new();
    let lab = "[[auth.rule]]\nprefix = \"*\"\nanonymous = true\nallow = [\"pull\", \"push\"]\n";
    let options = NodeOptions { auth: Some(lab.to_owned()), ..key.options() };
    let holder = api_support::Node::start(&fake.url(), options).await;
    let bytes = pattern(300_000, 8);
    let (digest, alias) = (Digest::of(&bytes), Sha512Digest::of(&bytes));
    let pushed = holder
        .client
        .post(format!("{}/v2/{HEALTH_REPO}/blobs/uploads/?digest={alias}", holder.url))
        .body(bytes.clone())
        .send()
        .await
        .expect("push by sha512");
    assert_eq!(pushed.status(), StatusCode::CREATED);
    // The member answers for the alias it checked, and for nothing else.
    let key_signer = key.signer();
    let ask = |alias: &Sha512Digest| {
        let path = format!("/v2/_shoal/peer/aliases/{alias}");
        holder.peer_request(Method::HEAD, &path, None, Some(&key_signer))
    };
    let answer = ask(&alias).send().await.expect("alias");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["docker-content-digest"], digest.to_string().as_str());
    let unknown = ask(&Sha512Digest::of(b"never pushed")).send().await.expect("alias");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let refused = holder
        .client
        .head(format!("{}/v2/_shoal/peer/aliases/{alias}", holder.url))
        .send()
        .await
        .expect("unsigned");
    assert_ne!(refused.status(), StatusCode::OK, "an unsigned question is refused");

    let liar = lying_peer(decoy).await;

    // Only the liar: its decoy is fetched and checked, and the alias stays unknown.
    let alone = asker(&fake, vec![peer(liar.clone())], &key);
    let found = alone.fetcher.resolve_alias(&target, &alias, AliasOf::Blob).await.expect("ask");
    assert_eq!(found, None, "the liar's answer does not hash to the alias");
    assert_eq!(alone.fetcher.local_alias(&alias).await.expect("read"), None);

    // The liar first, then the honest member: the honest answer wins, checked.
    let both = asker(&fake, vec![peer(liar), peer(holder.url.clone())], &key);
    let found = both.fetcher.resolve_alias(&target, &alias, AliasOf::Blob).await.expect("ask");
    assert_eq!(found, Some(digest));
    assert_eq!(both.fetcher.local_alias(&alias).await.expect("read"), Some(digest));
}
