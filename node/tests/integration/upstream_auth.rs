//! The upstream client's authentication and redirects against the fake registry: Docker Hub's
//! token dance, token caching, basic auth, refresh tokens, and blob storage that must never see
//! the registry's `Authorization`.

use crate::support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use shoal::clock::Clock;
use shoal::upstream::{ClientSettings, Credentials, Upstream, UpstreamConfig, UpstreamError};
use shoal_protocol::{Reference, RepositoryName};
use support::fake_upstream::FakeUpstream;

fn settings() -> ClientSettings {
    ClientSettings {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        retries: 1,
        ..ClientSettings::default()
    }
}

fn client(fake: &FakeUpstream, credentials: Option<Credentials>) -> Upstream {
    client_on(fake, credentials, Clock::system())
}

/// A client whose tokens age on `clock`, which the test moves instead of sleeping.
fn client_on(fake: &FakeUpstream, credentials: Option<Credentials>, clock: Clock) -> Upstream {
    let config = UpstreamConfig {
        name: "fake.io".into(),
        url: fake.url(),
        credentials,
        ..Default::default()
    };
    Upstream::with_clock(config, &settings(), clock).unwrap()
}

fn basic(username: &str, password: &str) -> Option<Credentials> {
    Some(Credentials::Basic { username: username.into(), password: password.into() })
}

fn repo(s: &str) -> RepositoryName {
    RepositoryName::parse(s).unwrap()
}

fn tag(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

const TOKEN: &str = FakeUpstream::TOKEN_PATH;

#[tokio::test]
async fn anonymous_token_dance_caches_the_token_per_scope() {
    let fake = FakeUpstream::builder().token_auth().start().await;
    let image = fake.put_image("library/app", "v1", &[b"layer"]);
    fake.put_image("library/other", "v1", &[b"other layer"]);
    let up = client(&fake, None);
    let manifest = FakeUpstream::manifest_path("library/app", "v1");

    up.head_manifest(&repo("library/app"), &tag("v1")).await.unwrap();
    assert_eq!(fake.count("GET", TOKEN), 1);
    assert_eq!(fake.count("HEAD", &manifest), 2, "one 401, one retry with the token");

    // Same scope: the cached token goes with the first attempt.
    up.get_manifest(&repo("library/app"), &tag("v1")).await.unwrap();
    let blob = up.get_blob(&repo("library/app"), &image.layers[0], 0).await.unwrap();
    assert_eq!(blob.size, Some(5));
    assert_eq!(fake.count("GET", &manifest), 1);
    assert_eq!(fake.count("GET", TOKEN), 1);

    // Another repository is another scope.
    up.get_manifest(&repo("library/other"), &tag("v1")).await.unwrap();
    assert_eq!(fake.count("GET", TOKEN), 2);
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_replaced() {
    // 5 s is the shortest lifetime the client believes.
    let fake = FakeUpstream::builder().token_auth().token_expires_in(Some(5)).start().await;
    fake.put_image("library/app", "v1", &[b"layer"]);
    let clock = Clock::adjustable();
    let up = client_on(&fake, None, clock.clone());
    up.head_manifest(&repo("library/app"), &tag("v1")).await.unwrap();
    assert_eq!(fake.count("GET", TOKEN), 1);
    // Renewed shortly before the expiry (a tenth of the lifetime, at least a second), not
    // after it.
    clock.advance(Duration::from_millis(3500));
    up.head_manifest(&repo("library/app"), &tag("v1")).await.unwrap();
    assert_eq!(fake.count("GET", TOKEN), 1, "still alive for more than a second");
    clock.advance(Duration::from_millis(600));
    up.head_manifest(&repo("library/app"), &tag("v1")).await.unwrap();
    assert_eq!(fake.count("GET", TOKEN), 2);

    fake.revoke_tokens();
    up.head_manifest(&repo("library/app"), &tag("v1")).await.unwrap();
    assert_eq!(fake.count("GET", TOKEN), 3);
}

#[tokio::test]
async fn any_expires_in_is_survived_and_bounded() {
    for odd in [json!(u64::MAX), json!(1e300), json!(-1), json!(0), json!("300"), json!("soon")] {
        let fake = FakeUpstream::builder().token_auth().token_expires_in_json(odd.clone());
        let fake = fake.start().await;
        fake.put_image("library/app", "v1", &[b"layer"]);
        let up = client(&fake, None);
        for _ in 0..3 {
            let head = up.head_manifest(&repo("library/app"), &tag("v1")).await;
            assert!(head.is_ok(), "expires_in {odd}: {head:?}");
        }
        assert_eq!(fake.count("GET", TOKEN), 1, "expires_in {odd}: the token is cached");
    }
}

#[tokio::test]
async fn token_without_expiry_lives_sixty_seconds() {
    let fake = FakeUpstream::builder().token_auth().token_expires_in(None).start().await;
    fake.put_image("library/app", "v1", &[b"layer"]);
    let clock = Clock::adjustable();
    let up = client_on(&fake, None, clock.clone());
    for _ in 0..3 {
        up.head_manifest(&repo("library/app"), &tag("v1")).await.unwrap();
    }
    assert_eq!(fake.count("GET", TOKEN), 1);
    // Renewed a tenth of the lifetime early: kept at 50 s, replaced at 55 s.
    clock.advance(Duration::from_secs(50));
    up.head_manifest(&repo("library/app"), &tag("v1")).await.unwrap();
    assert_eq!(fake.count("GET", TOKEN), 1);
    clock.advance(Duration::from_secs(5));
    up.head_manifest(&repo("library/app"), &tag("v1")).await.unwrap();
    assert_eq!(fake.count("GET", TOKEN), 2);
}

#[tokio::test]
async fn token_service_with_basic_credentials() {
    let fake = FakeUpstream::builder().token_credentials("alice", "pw").start().await;
    fake.put_image("org/private", "v1", &[b"layer"]);

    let ok = client(&fake, basic("alice", "pw"));
    ok.get_manifest(&repo("org/private"), &tag("v1")).await.unwrap();
    assert_eq!(fake.authorized_requests_to(TOKEN), 1);

    for credentials in [basic("alice", "wrong"), None] {
        let err = client(&fake, credentials)
            .get_manifest(&repo("org/private"), &tag("v1"))
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Unauthorized { .. }), "{err:?}");
    }
}

/// The challenge names a token service on another host (`localhost` is not `127.0.0.1`) over
/// plain http: it gets an anonymous request, never the credentials, whether or not the
/// operator listed the host.
#[tokio::test]
async fn credentials_never_go_to_a_plain_http_realm_on_another_host() {
    for listed in [vec![], vec!["localhost".to_owned()]] {
        let builder = FakeUpstream::builder().token_credentials("alice", "pw");
        let fake = builder.token_realm_host("localhost").start().await;
        fake.put_image("org/private", "v1", &[b"layer"]);
        let config = UpstreamConfig {
            name: "fake.io".into(),
            url: fake.url(),
            credentials: basic("alice", "pw"),
            token_realms: listed.clone(),
            ..Default::default()
        };
        let up = Upstream::new(config, &settings()).unwrap();
        let err = up.get_manifest(&repo("org/private"), &tag("v1")).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Unauthorized { .. }), "{listed:?}: {err:?}");
        assert_eq!(fake.count("GET", TOKEN), 1, "{listed:?}: asked anonymously");
        assert_eq!(fake.authorized_requests_to(TOKEN), 0, "{listed:?}: credentials sent");
    }

    let fake = FakeUpstream::builder().refresh_token("refresh-1").token_realm_host("localhost");
    let fake = fake.start().await;
    fake.put_image("org/private", "v1", &[b"layer"]);
    let up = client(&fake, Some(Credentials::Token("refresh-1".into())));
    // The fake hands anonymous tokens to anyone, so the pull itself may work.
    let _ = up.get_manifest(&repo("org/private"), &tag("v1")).await;
    assert_eq!(fake.count("GET", TOKEN), 1, "asked anonymously");
    assert_eq!(fake.count("POST", TOKEN), 0, "the refresh token was sent");
}

#[tokio::test]
async fn identity_token_is_exchanged_as_a_refresh_token() {
    let fake = FakeUpstream::builder().refresh_token("refresh-1").start().await;
    fake.put_image("org/private", "v1", &[b"layer"]);
    let up = client(&fake, Some(Credentials::Token("refresh-1".into())));
    up.get_manifest(&repo("org/private"), &tag("v1")).await.unwrap();
    up.get_manifest(&repo("org/private"), &tag("v1")).await.unwrap();
    assert_eq!(fake.count("POST", TOKEN), 1);
    assert_eq!(fake.count("GET", TOKEN), 0);

    let wrong = client(&fake, Some(Credentials::Token("refresh-2".into())));
    let err = wrong.get_manifest(&repo("org/private"), &tag("v1")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Unauthorized { .. }), "{err:?}");
}

#[tokio::test]
async fn registry_basic_auth_is_learned_and_sent_up_front() {
    let fake = FakeUpstream::builder().basic_auth("alice", "pw").start().await;
    fake.put_image("org/app", "v1", &[b"layer"]);
    let manifest = FakeUpstream::manifest_path("org/app", "v1");
    let up = client(&fake, basic("alice", "pw"));
    up.head_manifest(&repo("org/app"), &tag("v1")).await.unwrap();
    up.head_manifest(&repo("org/app"), &tag("v1")).await.unwrap();
    assert_eq!(fake.count("HEAD", &manifest), 3, "one 401, then credentials every time");

    let err = client(&fake, basic("alice", "nope"))
        .head_manifest(&repo("org/app"), &tag("v1"))
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Unauthorized { .. }), "{err:?}");
    let err = client(&fake, None).head_manifest(&repo("org/app"), &tag("v1")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Unauthorized { .. }), "{err:?}");
}

#[tokio::test]
async fn blob_redirects_never_carry_the_registry_authorization() {
    let fake = FakeUpstream::builder().token_auth().blob_storage().start().await;
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = fake.put_blob("library/app", &data);
    let up = client(&fake, None);

    for offset in [0, 1234] {
        let blob = up.get_blob(&repo("library/app"), &digest, offset).await.unwrap();
        assert_eq!(blob.size, Some(data.len() as u64));
        let mut got = Vec::new();
        let mut stream = blob.stream;
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, &data[offset as usize..]);
    }
    let storage = FakeUpstream::storage_path(&digest);
    assert_eq!(fake.requests_to(&storage), 2);
    assert_eq!(fake.authorized_requests_to(&storage), 0);
    // The registry itself did get the token.
    assert!(fake.authorized_requests_to(&FakeUpstream::blob_path("library/app", &digest)) >= 2);
}

/// Collects everything logged while it is the default subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn credentials_and_tokens_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = FakeUpstream::builder().token_credentials("alice", "s3cret-pw").start().await;
    fake.put_image("org/private", "v1", &[b"layer"]);
    let up = client(&fake, basic("alice", "s3cret-pw"));
    up.get_manifest(&repo("org/private"), &tag("v1")).await.unwrap();
    // A failure path logs too.
    fake.set_fault(
        &FakeUpstream::manifest_path("org/private", "v1"),
        support::fake_upstream::Fault::ServerError { times: 1 },
    );
    up.get_manifest(&repo("org/private"), &tag("v1")).await.unwrap();
    let err = client(&fake, basic("alice", "wrong-s3cret"))
        .get_manifest(&repo("org/private"), &tag("v1"))
        .await
        .unwrap_err();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying"), "the capture works: {logs}");
    // The issued tokens are JWTs, and every JWT starts with `eyJ` (`{"` in base64).
    for secret in ["s3cret-pw", "wrong-s3cret", "YWxpY2U6czNjcmV0LXB3", "eyJ"] {
        assert!(!logs.contains(secret), "{secret} logged");
        assert!(!err.to_string().contains(secret));
    }
}
