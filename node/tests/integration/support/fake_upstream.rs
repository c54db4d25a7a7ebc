//! An in-process fake OCI registry on `127.0.0.1:0`, for what the real one cannot show here:
//! Docker Hub's token service, redirects to blob storage, 429s, and misbehaviour.
//!
//! ```ignore
//! let fake = FakeUpstream::builder().token_auth().blob_storage().start().await;
//! let image = fake.put_image("library/app", "v1", &[b"layer one", b"layer two"]);
//! fake.set_fault(&FakeUpstream::blob_path("library/app", &image.layers[0]), Fault::Truncate { after: 3 });
//! // … point the code under test at fake.url() …
//! assert_eq!(fake.count("GET", &FakeUpstream::manifest_path("library/app", "v1")), 1);
//! ```
//!
//! Faults are keyed by the exact request path (helpers below build the paths) and can be set
//! and cleared while the server runs. Every request is counted per method and path.

mod serve;
mod token;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use shoal_cluster_tests::{Credentials, TokenServerOptions, TokenService};
use shoal_protocol::Digest;
use shoal_protocol::media_type::OCI_MANIFEST;
use tokio::task::JoinHandle;

/// Misbehaviour for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 for the next `times` requests, then normal service.
    ServerError { times: u32 },
    /// HTTP 429 with `Retry-After: <secs>`.
    TooManyRequests { retry_after_secs: u64 },
    /// HTTP 200 with an HTML page, as captive portals and broken proxies send.
    Html,
    /// A plain status with an OCI error body.
    Status(u16),
    /// Never sends the response headers.
    Hang,
    /// The right headers (length, digest) but the middle byte of the body flipped.
    WrongBytes,
    /// The right headers but these bytes as the body.
    Replace(Bytes),
    /// Announces the full length, sends `after` bytes, then drops the connection.
    Truncate { after: usize },
    /// Announces the full length, sends `after` bytes, then nothing more.
    Stall { after: usize },
    /// Answers a `Range` request with the whole blob and a 200.
    IgnoreRange,
    /// Leaves out `Docker-Content-Digest`.
    OmitDigestHeader,
    /// Sends the body chunked, without `Content-Length`.
    NoContentLength,
}

/// The parts of an image put with [`FakeUpstream::put_image`].
#[derive(Debug, Clone)]
pub struct FakeImage {
    pub manifest: Digest,
    pub manifest_bytes: Bytes,
    pub config: Digest,
    pub layers: Vec<Digest>,
}

/// The `service` the fake's challenges name and its token service insists on.
const SERVICE: &str = "fake-registry";

#[derive(Debug, Default)]
pub(crate) enum AuthMode {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    Token(Box<TokenService>),
}

#[derive(Default)]
pub(crate) struct Repo {
    pub tags: BTreeMap<String, Digest>,
    pub manifests: HashMap<Digest, (Bytes, String)>,
    pub blobs: HashMap<Digest, Bytes>,
    /// Subject → the body its referrers API answers with; a repository without any answers
    /// `404` there, as a registry without the API does.
    pub referrers: HashMap<Digest, Bytes>,
}

#[derive(Default)]
pub(crate) struct State {
    pub repos: HashMap<String, Repo>,
    pub faults: HashMap<String, Fault>,
    /// (method, path) → (requests, requests carrying `Authorization`).
    pub counts: HashMap<(String, String), (usize, usize)>,
    pub auth: AuthMode,
    pub registry_url: String,
    /// Where challenges send clients for tokens; the registry itself unless set.
    pub realm_url: Option<String>,
    pub storage_url: Option<String>,
}

pub(crate) type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Configures a [`FakeUpstream`] before it starts.
#[derive(Default)]
pub struct FakeUpstreamBuilder {
    state: State,
    /// Set by the token options: the token service starts with the fake.
    token: Option<TokenServerOptions>,
    blob_storage: bool,
    realm_host: Option<String>,
}

impl FakeUpstreamBuilder {
    /// Docker Hub's scheme: 401 with a `Bearer` challenge; tokens from `<url>/token`,
    /// anonymous unless [`Self::token_credentials`] or [`Self::refresh_token`] say otherwise.
    pub fn token_auth(mut self) -> Self {
        self.token_options();
        self
    }

    /// The token service wants these as basic auth on its `GET`.
    pub fn token_credentials(mut self, username: &str, password: &str) -> Self {
        self.token_options().credentials = Some(Credentials::new(username, password));
        self
    }

    /// The token service accepts this refresh token in an OAuth2 `POST`.
    pub fn refresh_token(mut self, token: &str) -> Self {
        self.token_options().refresh_token = Some(token.to_owned());
        self
    }

    /// `expires_in` of issued tokens (`None`: left out of the response); tokens die then.
    pub fn token_expires_in(mut self, seconds: Option<u64>) -> Self {
        self.token_options().expires_in = seconds.map(serde_json::Value::from);
        self
    }

    /// `expires_in` exactly as given, however odd (`-1`, `1e300`, `"300"`); tokens live for
    /// the number of seconds (at most a year) when it is a positive number, else 60 s.
    pub fn token_expires_in_json(mut self, value: serde_json::Value) -> Self {
        self.token_options().expires_in = Some(value);
        self
    }

    /// Challenges name the token service on this host (same port, same server), as a registry
    /// whose token service lives elsewhere does.
    pub fn token_realm_host(mut self, host: &str) -> Self {
        self.realm_host = Some(host.to_owned());
        self
    }

    /// The registry itself asks for basic auth.
    pub fn basic_auth(mut self, username: &str, password: &str) -> Self {
        let (username, password) = (username.to_owned(), password.to_owned());
        self.state.auth = AuthMode::Basic { username, password };
        self.token = None;
        self
    }

    /// Blob requests are redirected (307) to a second server with a presigned-looking URL;
    /// that server refuses (400) any request that carries `Authorization`.
    pub fn blob_storage(mut self) -> Self {
        self.blob_storage = true;
        self
    }

    /// Docker Hub's anonymous tokens, unless credentials are set: then the service wants them.
    fn token_options(&mut self) -> &mut TokenServerOptions {
        self.token.get_or_insert_with(|| TokenServerOptions {
            anonymous_refused: true,
            service: SERVICE.to_owned(),
            ..Default::default()
        })
    }

    pub async fn start(mut self) -> FakeUpstream {
        if let Some(options) = self.token {
            let service = TokenService::new(options).expect("the fake's token service");
            self.state.auth = AuthMode::Token(Box::new(service));
        }
        let shared: Shared = Arc::new(Mutex::new(self.state));
        let (addr, registry) = serve::spawn(shared.clone()).await;
        lock(&shared).registry_url = format!("http://{addr}");
        if let Some(host) = &self.realm_host {
            lock(&shared).realm_url = Some(format!("http://{host}:{}", addr.port()));
        }
        let mut tasks = vec![registry];
        if self.blob_storage {
            let (storage_addr, storage) = serve::spawn(shared.clone()).await;
            lock(&shared).storage_url = Some(format!("http://{storage_addr}"));
            tasks.push(storage);
        }
        FakeUpstream { addr, shared, tasks }
    }
}

/// A running fake registry; stops when dropped.
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Shared,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeUpstream {
    pub fn builder() -> FakeUpstreamBuilder {
        FakeUpstreamBuilder::default()
    }

    /// `http://127.0.0.1:<port>`, to configure as the upstream's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stores a manifest under its digest and, if given, a tag; returns the digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        bytes: &[u8],
        media_type: &str,
    ) -> Digest {
        let digest = Digest::of(bytes);
        let mut state = lock(&self.shared);
        let repo = state.repos.entry(repo.to_owned()).or_default();
        repo.manifests.insert(digest, (Bytes::copy_from_slice(bytes), media_type.to_owned()));
        if let Some(tag) = tag {
            repo.tags.insert(tag.to_owned(), digest);
        }
        digest
    }

    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let mut state = lock(&self.shared);
        let repo = state.repos.entry(repo.to_owned()).or_default();
        repo.blobs.insert(digest, Bytes::copy_from_slice(bytes));
        digest
    }

    /// What `GET /v2/<repo>/referrers/<subject>` answers: `body`, as an image index.
    pub fn put_referrers(&self, repo: &str, subject: &Digest, body: &[u8]) {
        let mut state = lock(&self.shared);
        let repo = state.repos.entry(repo.to_owned()).or_default();
        repo.referrers.insert(*subject, Bytes::copy_from_slice(body));
    }

    pub fn referrers_path(repo: &str, subject: &Digest) -> String {
        format!("/v2/{repo}/referrers/{subject}")
    }

    /// An OCI image: a config blob, one blob per layer, and a manifest tagged `tag`.
    pub fn put_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> FakeImage {
        let config_bytes = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
        let config = self.put_blob(repo, config_bytes.as_bytes());
        let layers: Vec<(Digest, usize)> =
            layers.iter().map(|l| (self.put_blob(repo, l), l.len())).collect();
        let descriptor = |media_type: &str, digest: &Digest, size: usize| {
            format!(r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size}}}"#)
        };
        let layer_json: Vec<String> = layers
            .iter()
            .map(|(d, n)| descriptor("application/vnd.oci.image.layer.v1.tar+gzip", d, *n))
            .collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
            descriptor("application/vnd.oci.image.config.v1+json", &config, config_bytes.len()),
            layer_json.join(",")
        );
        let digest = self.put_manifest(repo, Some(tag), manifest.as_bytes(), OCI_MANIFEST);
        FakeImage {
            manifest: digest,
            manifest_bytes: Bytes::from(manifest),
            config,
            layers: layers.into_iter().map(|(d, _)| d).collect(),
        }
    }

    pub fn set_fault(&self, path: &str, fault: Fault) {
        lock(&self.shared).faults.insert(path.to_owned(), fault);
    }

    pub fn clear_fault(&self, path: &str) {
        lock(&self.shared).faults.remove(path);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared).faults.clear();
    }

    /// Makes every issued token invalid, as if they had expired.
    pub fn revoke_tokens(&self) {
        if let AuthMode::Token(service) = &lock(&self.shared).auth {
            service.revoke_all();
        }
    }

    /// Requests seen with this method (`"GET"`, `"HEAD"`, `"POST"`) and exact path.
    pub fn count(&self, method: &str, path: &str) -> usize {
        let key = (method.to_owned(), path.to_owned());
        lock(&self.shared).counts.get(&key).map_or(0, |c| c.0)
    }

    /// Requests to this path, any method.
    pub fn requests_to(&self, path: &str) -> usize {
        lock(&self.shared).counts.iter().filter(|((_, p), _)| p == path).map(|(_, c)| c.0).sum()
    }

    /// Requests to this path, any method, that carried an `Authorization` header.
    pub fn authorized_requests_to(&self, path: &str) -> usize {
        lock(&self.shared).counts.iter().filter(|((_, p), _)| p == path).map(|(_, c)| c.1).sum()
    }

    pub fn manifest_path(repo: &str, reference: &str) -> String {
        format!("/v2/{repo}/manifests/{reference}")
    }

    pub fn blob_path(repo: &str, digest: &Digest) -> String {
        format!("/v2/{repo}/blobs/{digest}")
    }

    pub fn tags_path(repo: &str) -> String {
        format!("/v2/{repo}/tags/list")
    }

    /// Where [`FakeUpstreamBuilder::blob_storage`] redirects a blob.
    pub fn storage_path(digest: &Digest) -> String {
        format!("/storage/sha256/{}", digest.hex())
    }

    pub const TOKEN_PATH: &str = "/token";
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
