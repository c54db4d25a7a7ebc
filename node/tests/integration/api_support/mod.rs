//! Starts a real node in-process for the API tests: `server::run` on `127.0.0.1:0` with its
//! data in a temp dir, `docker.io` pointed at a fake upstream, and a client to talk to it.

pub mod tmpfs;

use std::path::{Path, PathBuf};

use reqwest::{Method, Response, StatusCode};
use shoal::clock::Clock;
use shoal::config::{Config, FileConfig, Overrides};
use shoal::p2p::ClusterKey;
use shoal::peer_auth::{PEER_AUTH_HEADER, RequestSigner};
use shoal::server;
use shoal_protocol::Digest;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::fake_upstream::{FakeImage, FakeUpstream};

/// The repository every node test can pull from to show the node still works.
pub const HEALTH_REPO: &str = "library/health";

/// What differs between the nodes tests start; the rest is the default configuration.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// `tag_ttl`, as written in the config file (`"1s"`).
    pub tag_ttl: Option<String>,
    /// `[upstream_client] read_timeout` (`"300ms"`).
    pub read_timeout: Option<String>,
    /// `[upstream_client] retries`.
    pub retries: Option<u32>,
    /// Use this directory instead of a fresh temp dir.
    pub data_dir: Option<PathBuf>,
    /// `max_size`, as written in the config file (`"3MiB"`).
    pub max_size: Option<String>,
    /// The lines of the `[server]` table (`"idle_timeout = \"2s\""`).
    pub server: Option<String>,
    /// `--cluster-key`: the node joins no one (mDNS off, no bootstrap) but runs the control
    /// plane and serves signed peer requests.
    pub cluster_key: Option<PathBuf>,
    /// The `[auth]` table and its `[[auth.rule]]`s, as written in the config file.
    pub auth: Option<String>,
    /// `--allow-any-upstream`, and `--allow-private-upstreams` with it.
    pub allow_any_upstream: bool,
    pub allow_private_upstreams: bool,
    /// More tables of the config file, as written in it (`"[lifecycle]\ninterval = ..."`).
    pub extra_toml: Option<String>,
}

/// A cluster key in a file of its own, and the peer-request signer it gives a test.
pub struct TestKey {
    pub key: ClusterKey,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestKey {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("key dir");
        let path = dir.path().join("cluster.key");
        let key = ClusterKey::generate();
        key.save(&path).expect("write the cluster key");
        Self { key, path, _dir: dir }
    }

    /// Signs as a peer with this (made-up, well-formed) peer id.
    pub fn signer(&self) -> RequestSigner {
        RequestSigner::new(self.key.request_key(), TEST_PEER_ID.to_owned())
    }

    /// Node options with this key.
    pub fn options(&self) -> NodeOptions {
        NodeOptions { cluster_key: Some(self.path.clone()), ..NodeOptions::default() }
    }
}

/// A peer id as libp2p prints one; the node checks its form, not its membership.
pub const TEST_PEER_ID: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

/// A running node; stops when dropped.
pub struct Node {
    pub url: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    /// What the node's TTLs are counted on: a test moves it forward rather than sleeping.
    pub clock: Clock,
    _temp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Node {
    pub async fn start(upstream_url: &str, options: NodeOptions) -> Node {
        let (temp, data_dir) = match &options.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::tempdir().expect("temp data dir");
                let dir = temp.path().to_owned();
                (Some(temp), dir)
            }
        };
        let mut toml = String::new();
        if let Some(ttl) = &options.tag_ttl {
            toml.push_str(&format!("tag_ttl = \"{ttl}\"\n"));
        }
        if let Some(size) = &options.max_size {
            toml.push_str(&format!("max_size = \"{size}\"\n"));
        }
        toml.push_str("[upstream_client]\nconnect_timeout = \"1s\"\n");
        if let Some(timeout) = &options.read_timeout {
            toml.push_str(&format!("read_timeout = \"{timeout}\"\n"));
        }
        if let Some(retries) = options.retries {
            toml.push_str(&format!("retries = {retries}\n"));
        }
        if let Some(server) = &options.server {
            toml.push_str(&format!("[server]\n{server}\n"));
        }
        if let Some(auth) = &options.auth {
            toml.push_str(auth);
        }
        if let Some(extra) = &options.extra_toml {
            toml.push('\n');
            toml.push_str(extra);
        }
        let file = FileConfig::parse(&toml, Path::new("test.toml")).expect("test config parses");
        let overrides = Overrides {
            data_dir: Some(data_dir.clone()),
            upstreams: vec![format!("docker.io={upstream_url}")],
            // Alone on loopback: no fixed port, and no mDNS to meet the other tests' nodes.
            p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".to_owned()],
            mdns: Some(false),
            cluster_key: options.cluster_key.clone(),
            allow_any_upstream: options.allow_any_upstream,
            allow_private_upstreams: options.allow_private_upstreams,
            ..Default::default()
        };
        let mut config = Config::resolve(file, overrides).expect("test config resolves");
        let clock = Clock::adjustable();
        config.clock = clock.clone();

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the node");
        let url = format!("http://{}", listener.local_addr().expect("node address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = server::run(config, listener, shutdown).await {
                panic!("the node failed: {e}");
            }
        });
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("client");
        let node = Node { url, data_dir, client, clock, _temp: temp, stop: Some(stop), task };
        node.wait_ready().await;
        node
    }

    /// Opening the store happens before the node accepts; wait until `/v2/` answers (asking
    /// to log in, with client authentication on).
    async fn wait_ready(&self) {
        for _ in 0..100 {
            if let Ok(resp) = self.get("/v2/").await
                && matches!(resp.status(), StatusCode::OK | StatusCode::UNAUTHORIZED)
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the node at {} never answered /v2/", self.url);
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<Response> {
        self.client.get(format!("{}{path}", self.url)).send().await
    }

    pub async fn request(&self, method: Method, path: &str) -> Response {
        self.client
            .request(method.clone(), format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A peer request: `GET` or `HEAD` of `path`, with `range`, signed by `signer` (or not).
    pub fn peer_request(
        &self,
        method: Method,
        path: &str,
        range: Option<&str>,
        signer: Option<&RequestSigner>,
    ) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.url));
        if let Some(range) = range {
            request = request.header("range", range);
        }
        if let Some(signer) = signer {
            request =
                request.header(PEER_AUTH_HEADER, signer.header_value(method.as_str(), path, range));
        }
        request
    }

    pub async fn get_ok(&self, path: &str) -> Response {
        self.get(path).await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Where the store keeps a committed blob.
    pub fn blob_file(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.data_dir.join("blobs").join("sha256").join(&hex[..2]).join(hex)
    }

    /// Every regular file under `data_dir/<sub>`, recursively.
    pub fn files_under(&self, sub: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        collect_files(&self.data_dir.join(sub), &mut out);
        out
    }

    /// Waits for the download of `digest` to commit: a client can finish reading a blob just
    /// before the node has renamed it into place.
    pub async fn assert_stored(&self, digest: &Digest) {
        for _ in 0..100 {
            if self.blob_file(digest).exists() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{digest} was not stored");
    }

    /// Asserts that nothing of `digest` stays in the data dir: no committed blob, and no temp
    /// file in `tmp/` once the failed download has cleaned up after itself.
    pub async fn assert_nothing_kept(&self, digest: &Digest) {
        let hex = digest.hex();
        let leftovers = || -> Vec<PathBuf> {
            let mut files = self.files_under("tmp");
            files.extend(self.files_under("blobs"));
            files.retain(|p| p.to_string_lossy().contains(&hex));
            files
        };
        // The download task removes its temp file when it fails, just after the client saw the
        // failure; give it a moment.
        for _ in 0..100 {
            if leftovers().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(leftovers(), Vec::<PathBuf>::new(), "files of {digest} stayed in the data dir");
        assert!(!self.blob_file(digest).exists(), "{digest} was stored");
    }

    /// Pulls `image` from [`HEALTH_REPO`] (manifest by tag, config, layers) and checks every byte:
    /// the node still serves a good request.
    pub async fn assert_serves(&self, fake: &FakeUpstream, image: &FakeImage) {
        let resp = self.get_ok(&format!("/v2/{HEALTH_REPO}/manifests/v1")).await;
        assert_eq!(resp.status(), StatusCode::OK, "the node no longer serves a manifest");
        let body = resp.bytes().await.expect("manifest body");
        assert_eq!(body, image.manifest_bytes, "the node served other manifest bytes");
        for digest in std::iter::once(&image.config).chain(&image.layers) {
            let resp = self.get_ok(&format!("/v2/{HEALTH_REPO}/blobs/{digest}")).await;
            assert_eq!(resp.status(), StatusCode::OK, "the node no longer serves blob {digest}");
            let body = resp.bytes().await.expect("blob body");
            assert_eq!(Digest::of(&body), *digest, "the node served wrong bytes for {digest}");
        }
        // Keeps the fake in use so a test cannot pass by accident against another upstream.
        assert!(fake.requests_to(&FakeUpstream::manifest_path(HEALTH_REPO, "v1")) > 0);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Graceful shutdown waits for open connections; a test that hung one must not wait.
        self.task.abort();
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A fake upstream holding a small image in [`HEALTH_REPO`] for [`Node::assert_serves`].
pub async fn fake_with_health() -> (FakeUpstream, FakeImage) {
    let fake = FakeUpstream::builder().start().await;
    let image = fake.put_image(HEALTH_REPO, "v1", &[b"health layer one", b"health layer two"]);
    (fake, image)
}

/// A fake and a node in front of it, with default options.
pub async fn setup() -> (FakeUpstream, FakeImage, Node) {
    setup_with(NodeOptions::default()).await
}

pub async fn setup_with(options: NodeOptions) -> (FakeUpstream, FakeImage, Node) {
    let (fake, image) = fake_with_health().await;
    let node = Node::start(&fake.url(), options).await;
    (fake, image, node)
}

/// The status and `errors[0].code` of an OCI error response.
pub async fn oci_error(resp: Response) -> (StatusCode, String) {
    let status = resp.status();
    let text = resp.text().await.expect("error body");
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("HTTP {status}: body is not JSON ({e}): {text:?}"));
    let code = json["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("HTTP {status}: no errors[0].code in {text}"))
        .to_owned();
    (status, code)
}

/// Asserts the response is `status` with OCI error `code`.
pub async fn assert_oci_error(resp: Response, status: StatusCode, code: &str) {
    let what = format!("{} {}", resp.status(), resp.url());
    let got = oci_error(resp).await;
    assert_eq!(got, (status, code.to_owned()), "{what}");
}

/// Deterministic bytes that differ from position to position, so a misplaced range shows.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed).collect()
}

/// Reads a response body to its end: the bytes, or the error that cut it.
pub async fn read_body(resp: Response) -> (Vec<u8>, Option<reqwest::Error>) {
    use futures_util::StreamExt;
    let mut got = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => got.extend_from_slice(&bytes),
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

/// A response read off the wire by [`raw_get`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// `errors[0].code` of the OCI error body.
    pub fn oci_code(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("HTTP {}: body is not JSON ({e}): {text:?}", self.status));
        json["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends `METHOD path` exactly as written. HTTP clients normalise `..` and `%2e%2e` away before
/// sending, and those are the paths a traversal test must deliver to the node.
pub async fn raw_request(node: &Node, method: &str, path: &str) -> RawResponse {
    raw_request_with(node, method, path, "").await
}

/// [`raw_request`] with more header lines, each ending in `\r\n`.
pub async fn raw_request_with(node: &Node, method: &str, path: &str, headers: &str) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = node.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the node");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read the response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse { status, body }
}

pub async fn raw_get(node: &Node, path: &str) -> RawResponse {
    raw_request(node, "GET", path).await
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .expect("a chunk size");
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}
