//! Manifests: `HEAD` to resolve a tag cheaply, `GET` for the exact bytes, checked.

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use shoal_protocol::media_type::{MANIFEST_ACCEPT, MAX_MANIFEST_SIZE, sniff_manifest_media_type};
use shoal_protocol::{Digest, DigestError, DigestMismatch, Manifest, Reference, RepositoryName};

use super::read::{content_length, read_limited};
use super::transport::Request;

use super::{Inner, ManifestHead, Upstream, UpstreamError, pull_scope};

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// Content types that say nothing about which manifest format the body is.
const GENERIC_TYPES: &[&str] = &["application/json", "application/octet-stream", "text/plain"];

impl Upstream {
    /// `HEAD /v2/<repo>/manifests/<ref>`. Needs `Docker-Content-Digest` and `Content-Type`;
    /// without them the answer is `BadResponse` and the caller uses [`Upstream::get_manifest`].
    pub async fn head_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestHead, UpstreamError> {
        let inner = &self.inner;
        let resp = inner.execute(&inner.manifest_request(Method::HEAD, repo, reference)?).await?;
        inner.expect_ok(&resp)?;
        let digest = inner
            .header_digest(resp.headers())?
            .ok_or_else(|| inner.bad("HEAD without a Docker-Content-Digest"))?;
        if let Reference::Digest(wanted) = reference
            && *wanted != digest
        {
            return Err(inner.bad(format!("HEAD {wanted} answered with digest {digest}")));
        }
        let media_type = content_type(resp.headers())
            .filter(|ct| !is_html(ct))
            .ok_or_else(|| inner.bad("HEAD without a manifest Content-Type"))?;
        Ok(ManifestHead { digest, media_type, size: content_length(resp.headers()) })
    }

    /// `GET` a manifest: at most `MAX_MANIFEST_SIZE` bytes of JSON whose digest matches the
    /// requested digest and the upstream's `Docker-Content-Digest`, whichever are given.
    pub async fn get_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Manifest, UpstreamError> {
        let inner = &self.inner;
        let resp = inner.execute(&inner.manifest_request(Method::GET, repo, reference)?).await?;
        inner.expect_ok(&resp)?;
        let header_type = content_type(resp.headers());
        if header_type.as_deref().is_some_and(is_html) {
            return Err(inner.bad("HTML where a manifest was expected"));
        }
        let header_digest = inner.header_digest(resp.headers())?;
        let idle = inner.settings.read_timeout;
        let bytes = read_limited(resp, MAX_MANIFEST_SIZE, idle, &inner.name, |size| {
            UpstreamError::ManifestTooLarge { size }
        })
        .await?;
        if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
            return Err(inner.bad("manifest body is not JSON"));
        }
        let digest = Digest::of(&bytes);
        let len = bytes.len() as u64;
        let requested = match reference {
            Reference::Digest(d) => Some(*d),
            Reference::Tag(_) => None,
        };
        for expected in [requested, header_digest].into_iter().flatten() {
            if expected != digest {
                return Err(DigestMismatch { expected, actual: digest, len }.into());
            }
        }
        let media_type = match header_type {
            Some(ct) if !GENERIC_TYPES.contains(&essence(&ct).as_str()) => ct,
            other => sniff_manifest_media_type(&bytes)
                .or(other)
                .ok_or_else(|| inner.bad("manifest without a media type"))?,
        };
        Ok(Manifest { digest, media_type, bytes })
    }
}

impl Inner {
    /// A request for a manifest that accepts every manifest type: without them, registries
    /// answer 404 for an OCI manifest or an index.
    pub(super) fn manifest_request(
        &self,
        method: Method,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Request, UpstreamError> {
        let mut headers = HeaderMap::new();
        // One header per type: the same as a comma-separated list, and it needs no allocation
        // that could fail.
        for media_type in MANIFEST_ACCEPT {
            headers.append(ACCEPT, HeaderValue::from_static(media_type));
        }
        Ok(Request {
            method,
            url: self.url(&format!("{repo}/manifests/{reference}"))?,
            headers,
            scope: pull_scope(repo),
            what: format!("manifest {repo}:{reference}"),
        })
    }

    fn expect_ok(&self, resp: &Response) -> Result<(), UpstreamError> {
        match resp.status() {
            StatusCode::OK => Ok(()),
            s => Err(self.bad(format!("expected HTTP 200, got {s}"))),
        }
    }

    /// The upstream's `Docker-Content-Digest`, if any. One in another algorithm than sha256 is
    /// ignored: we check the bytes with our own sha256 anyway.
    fn header_digest(&self, headers: &HeaderMap) -> Result<Option<Digest>, UpstreamError> {
        let Some(value) = headers.get(DOCKER_CONTENT_DIGEST) else { return Ok(None) };
        let text = value.to_str().map_err(|_| self.bad("unreadable Docker-Content-Digest"))?;
        match Digest::parse(text.trim()) {
            Ok(d) => Ok(Some(d)),
            Err(DigestError::UnsupportedAlgorithm(_)) => Ok(None),
            Err(e) => Err(self.bad(format!("bad Docker-Content-Digest: {e}"))),
        }
    }
}

/// The `Content-Type` as sent (it is passed on to clients unchanged), if present and readable.
fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// The media type without parameters, lowercased.
fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

fn is_html(content_type: &str) -> bool {
    let essence = essence(content_type);
    essence == "text/html" || essence == "application/xhtml+xml"
}
