//! Blobs (streamed, resumable at an offset) and tag lists.

use bytes::Bytes;
use reqwest::header::{CONTENT_RANGE, HeaderMap, HeaderValue, LINK, RANGE};
use reqwest::{Method, StatusCode};
use shoal_protocol::{Digest, RepositoryName};

use super::read::{BodyLayout, blob_stream, content_length, read_limited};
use super::transport::Request;
use super::{BlobStream, TagsPage, Upstream, UpstreamError, pull_scope};

/// Tag lists are held in memory; this is far above what a registry sends per page.
const MAX_TAGS_BODY: u64 = 16 * 1024 * 1024;

impl Upstream {
    /// `GET` a blob from `offset` (with `Range` when `offset > 0`). The stream fails rather
    /// than ending early when the body is cut short or stalls; the caller verifies the digest.
    pub async fn get_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        offset: u64,
    ) -> Result<BlobStream, UpstreamError> {
        let inner = &self.inner;
        let mut headers = HeaderMap::new();
        if offset > 0 {
            let range = HeaderValue::from_str(&format!("bytes={offset}-"))
                .map_err(|_| inner.bad("range header"))?;
            headers.insert(RANGE, range);
        }
        let request = Request {
            method: Method::GET,
            url: inner.url(&format!("{repo}/blobs/{digest}"))?,
            headers,
            scope: pull_scope(repo),
            what: format!("blob {repo}@{digest}"),
        };
        let resp = inner.execute(&request).await?;
        let len = content_length(resp.headers());
        let (size, layout) = match resp.status() {
            StatusCode::OK => {
                if let Some(size) = len
                    && offset > size
                {
                    return Err(
                        inner.bad(format!("offset {offset} beyond the blob's {size} bytes"))
                    );
                }
                // An upstream may ignore `Range`; then we drop the bytes before the offset.
                (len, BodyLayout { start: 0, skip: offset, len })
            }
            StatusCode::PARTIAL_CONTENT => {
                let (start, total) = content_range(resp.headers())
                    .ok_or_else(|| inner.bad("206 without a valid Content-Range"))?;
                if start != offset {
                    return Err(
                        inner.bad(format!("asked for bytes from {offset}, got from {start}"))
                    );
                }
                // Both numbers are the upstream's: a body that would end past the blob (or past
                // what a u64 can count) is refused before any arithmetic trusts it.
                if let Some(len) = len {
                    let fits =
                        start.checked_add(len).is_some_and(|end| total.is_none_or(|t| end <= t));
                    if !fits {
                        return Err(inner.bad("206 whose Content-Length runs past the blob"));
                    }
                }
                (total, BodyLayout { start, skip: 0, len })
            }
            s => return Err(inner.bad(format!("unexpected HTTP {s} for a blob"))),
        };
        let stream = blob_stream(resp, layout, inner.settings.read_timeout, inner.name.clone());
        Ok(BlobStream { size, stream })
    }

    /// `HEAD` a blob: `Ok` when the registry says this repository has it (a redirect to blob
    /// storage counts, as registries redirect only for blobs they hold), with its size when
    /// the answer gave one.
    pub async fn head_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, UpstreamError> {
        let inner = &self.inner;
        let request = Request {
            method: Method::HEAD,
            url: inner.url(&format!("{repo}/blobs/{digest}"))?,
            headers: HeaderMap::new(),
            scope: pull_scope(repo),
            what: format!("blob {repo}@{digest}"),
        };
        let response = inner.execute(&request).await?;
        Ok(response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok()))
    }

    /// `GET /v2/<repo>/tags/list?n=&last=`: the JSON body as sent, and the `Link` header.
    pub async fn list_tags(
        &self,
        repo: &RepositoryName,
        n: Option<u32>,
        last: Option<&str>,
    ) -> Result<TagsPage, UpstreamError> {
        let inner = &self.inner;
        let mut url = inner.url(&format!("{repo}/tags/list"))?;
        if n.is_some() || last.is_some() {
            let mut query = url.query_pairs_mut();
            if let Some(n) = n {
                query.append_pair("n", &n.to_string());
            }
            if let Some(last) = last {
                query.append_pair("last", last);
            }
        }
        let request = Request {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            scope: pull_scope(repo),
            what: format!("tags of {repo}"),
        };
        let resp = inner.execute(&request).await?;
        if resp.status() != StatusCode::OK {
            return Err(inner.bad(format!("unexpected HTTP {} for a tag list", resp.status())));
        }
        let link = resp.headers().get(LINK).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let idle = inner.settings.read_timeout;
        let body: Bytes = read_limited(resp, MAX_TAGS_BODY, idle, &inner.name, |_| {
            inner.bad("tag list larger than 16 MiB")
        })
        .await?;
        if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            return Err(inner.bad("tag list is not JSON"));
        }
        Ok(TagsPage { body, link })
    }
}

/// `Content-Range: bytes <start>-<end>/<total|*>` → (start, total).
fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?.trim();
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some((start, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &'static str) -> Option<(u64, Option<u64>)> {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_static(v));
        content_range(&h)
    }

    #[test]
    fn content_range_forms() {
        assert_eq!(parse("bytes 100-199/1000"), Some((100, Some(1000))));
        assert_eq!(parse("bytes 5-9/*"), Some((5, None)));
        for bad in ["bytes 9-5/10", "bytes 0-10/10", "items 0-1/2", "bytes */10", "bytes a-b/c"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
