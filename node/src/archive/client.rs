//! A client of one node's registry API, for export and import: manifests and blobs by the
//! node's path-style names (`/v2/docker.io/library/alpine/...`), Basic credentials when the
//! node wants them.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use shoal_protocol::media_type::MANIFEST_ACCEPT;
use shoal_protocol::{Digest, Manifest, Reference};

use super::ArchiveError;

/// A connection that sends nothing for this long is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

pub struct NodeClient {
    base: String,
    http: reqwest::Client,
    login: Option<(String, String)>,
}

impl NodeClient {
    /// A client of the node at `base` (`http://node:5000`), logging in as `login`
    /// (`user:password`) when given, checking an HTTPS node's certificate against `ca` too.
    pub fn new(
        base: &str,
        login: Option<&str>,
        ca: Option<&std::path::Path>,
    ) -> Result<NodeClient, ArchiveError> {
        let builder = reqwest::Client::builder()
            .read_timeout(READ_TIMEOUT)
            .connect_timeout(Duration::from_secs(10));
        let builder = crate::tls::trusting(builder, ca).map_err(|e| ArchiveError::Unreachable {
            url: base.to_owned(),
            detail: e.to_string(),
        })?;
        let http = builder.build().map_err(|e| ArchiveError::Unreachable {
            url: base.to_owned(),
            detail: e.to_string(),
        })?;
        let login = login.map(|l| {
            let (user, password) = l.split_once(':').unwrap_or((l, ""));
            (user.to_owned(), password.to_owned())
        });
        Ok(NodeClient { base: base.trim_end_matches('/').to_owned(), http, login })
    }

    fn request(&self, method: Method, path: &str) -> (String, RequestBuilder) {
        let url = format!("{}/v2/{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some((user, password)) = &self.login {
            request = request.basic_auth(user, Some(password));
        }
        (url, request)
    }

    /// Calls one of the node's own endpoints (`/_shoal/...`) and returns its JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
    ) -> Result<serde_json::Value, ArchiveError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some((user, password)) = &self.login {
            request = request.basic_auth(user, Some(password));
        }
        let response = self.send(&url, request, &[StatusCode::OK]).await?;
        response.json().await.map_err(|e| ArchiveError::Unreachable {
            url,
            detail: format!("the answer is not JSON: {}", e.without_url()),
        })
    }

    async fn send(
        &self,
        url: &str,
        request: RequestBuilder,
        ok: &[StatusCode],
    ) -> Result<Response, ArchiveError> {
        let response = request.send().await.map_err(|e| ArchiveError::Unreachable {
            url: url.to_owned(),
            detail: e.without_url().to_string(),
        })?;
        if ok.contains(&response.status()) {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default().chars().take(500).collect();
        Err(ArchiveError::Refused { url: url.to_owned(), status, body })
    }

    /// A manifest by tag or digest, checked against its digest.
    pub async fn manifest(
        &self,
        name: &str,
        reference: &Reference,
    ) -> Result<Manifest, ArchiveError> {
        let (url, request) = self.request(Method::GET, &format!("{name}/manifests/{reference}"));
        let request = request.header(reqwest::header::ACCEPT, MANIFEST_ACCEPT.join(", "));
        let response = self.send(&url, request, &[StatusCode::OK]).await?;
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.bytes().await.map_err(|e| ArchiveError::Unreachable {
            url: url.clone(),
            detail: e.without_url().to_string(),
        })?;
        let digest = Digest::of(&bytes);
        if let Reference::Digest(expected) = reference
            && *expected != digest
        {
            return Err(ArchiveError::Corrupt { what: "manifest", digest: *expected });
        }
        Ok(Manifest { digest, media_type, bytes })
    }

    /// The referrers the node lists for `subject` under `name` (what was pushed with it as
    /// `subject`, and what the upstream lists).
    pub async fn referrers(
        &self,
        name: &str,
        subject: &Digest,
    ) -> Result<Vec<crate::store::Referrer>, ArchiveError> {
        let (url, request) = self.request(Method::GET, &format!("{name}/referrers/{subject}"));
        let response = self.send(&url, request, &[StatusCode::OK]).await?;
        let body = response.bytes().await.map_err(|e| ArchiveError::Unreachable {
            url: url.clone(),
            detail: e.without_url().to_string(),
        })?;
        crate::fetch::parse_referrers_index(&body)
            .map_err(|detail| ArchiveError::BadAnswer { url, detail })
    }

    /// A blob's bytes as they arrive; the caller verifies them.
    pub async fn blob(
        &self,
        name: &str,
        digest: &Digest,
    ) -> Result<impl Stream<Item = reqwest::Result<Bytes>> + use<>, ArchiveError> {
        let (url, request) = self.request(Method::GET, &format!("{name}/blobs/{digest}"));
        Ok(self.send(&url, request, &[StatusCode::OK]).await?.bytes_stream())
    }

    /// Whether the node holds (or can get) the blob under `name`. A node that cannot say (its
    /// upstream is unreachable, as in an air-gapped site) is taken not to.
    pub async fn has_blob(&self, name: &str, digest: &Digest) -> Result<bool, ArchiveError> {
        let (url, request) = self.request(Method::HEAD, &format!("{name}/blobs/{digest}"));
        let response = request.send().await.map_err(|e| ArchiveError::Unreachable {
            url: url.clone(),
            detail: e.without_url().to_string(),
        })?;
        match response.status() {
            StatusCode::OK => Ok(true),
            status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                Err(ArchiveError::Refused { url, status: status.as_u16(), body: String::new() })
            }
            _ => Ok(false),
        }
    }

    /// Pushes a blob in one request (`POST ...?digest=`), its body streamed.
    pub async fn push_blob(
        &self,
        name: &str,
        digest: &Digest,
        size: u64,
        body: reqwest::Body,
    ) -> Result<(), ArchiveError> {
        let path = format!("{name}/blobs/uploads/?digest={digest}");
        let (url, request) = self.request(Method::POST, &path);
        let request = request
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body);
        self.send(&url, request, &[StatusCode::CREATED]).await.map(drop)
    }

    pub async fn push_manifest(
        &self,
        name: &str,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), ArchiveError> {
        let (url, request) = self.request(Method::PUT, &format!("{name}/manifests/{reference}"));
        let request = request.header(reqwest::header::CONTENT_TYPE, media_type).body(bytes);
        self.send(&url, request, &[StatusCode::CREATED]).await.map(drop)
    }
}
