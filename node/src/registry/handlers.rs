//! One handler per endpoint: ask the fetcher, shape the response headers the spec requires.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use shoal_protocol::media_type::OCTET_STREAM;
use shoal_protocol::peer::{PEERS_HEADER, PIECES_HEADER, format_referrals};
use shoal_protocol::{Digest, Reference, Sha512Digest};

use super::error::ApiError;
use super::observe::Tally;
use super::route::TagsQuery;
use crate::fetch::{BlobResponse, FetchError, Fetcher, PeerAnswer, RangeSpec, Target};
use crate::metrics::Metrics;
use crate::status::StatusSource;

pub(super) const DIGEST_HEADER: &str = "docker-content-digest";

pub fn base() -> Response {
    json_response(StatusCode::OK, Body::from("{}"), 2, false)
}

pub async fn manifest(
    fetcher: &Fetcher,
    target: &Target,
    reference: &Reference,
    head: bool,
    tally: Option<Tally>,
) -> Result<Response, ApiError> {
    let m = fetcher.manifest(target, reference).await?;
    let len = m.manifest.bytes.len() as u64;
    if let Some(tally) = tally {
        tally.manifest_sent(m.source, len);
    }
    let body = if head { Body::empty() } else { Body::from(m.manifest.bytes) };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&m.manifest.media_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    insert_digest(headers, &m.manifest.digest);
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", m.manifest.digest)) {
        headers.insert(header::ETAG, v);
    }
    Ok(response)
}

pub async fn blob(
    fetcher: &Fetcher,
    target: &Target,
    digest: &Digest,
    range: Option<RangeSpec>,
    head: bool,
    tally: Option<Tally>,
) -> Result<Response, ApiError> {
    if head {
        let answer = fetcher.blob_head(target, digest, range).await?;
        if let Some(tally) = tally {
            tally.head_answered(answer.source);
        }
        return Ok(blob_head_response(digest, answer.size, answer.range, Body::empty()));
    }
    let mut blob = fetcher.blob(target, digest, range).await?;
    if let Some(tally) = tally {
        let status =
            if blob.range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
        let len = blob.range.map_or(blob.size, |(start, end)| end - start);
        let body = std::mem::replace(&mut blob.body, futures_util::stream::empty().boxed());
        blob.body = tally.follow(body, blob.origin.clone(), status, len);
    }
    Ok(blob_response(digest, blob, head))
}

fn blob_response(digest: &Digest, blob: BlobResponse, head: bool) -> Response {
    // A HEAD drops the body stream here; a miss's download goes on in its own task.
    let body = if head { Body::empty() } else { Body::from_stream(blob.body) };
    blob_head_response(digest, blob.size, blob.range, body)
}

/// The status and headers of a blob (or of a range of it) of `size` bytes, over `body`.
fn blob_head_response(
    digest: &Digest,
    size: u64,
    range: Option<(u64, u64)>,
    body: Body,
) -> Response {
    let (status, len) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, end - start),
        None => (StatusCode::OK, size),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    insert_digest(headers, digest);
    if let Some((start, end)) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
    {
        headers.insert(header::CONTENT_RANGE, v);
    }
    response
}

/// Which sha256 the sha512 `alias` names, for a peer: `200` with it in `Docker-Content-Digest`
/// when this node checked the alias and holds the content, `404` otherwise.
pub async fn peer_alias(fetcher: &Fetcher, alias: &Sha512Digest) -> Result<Response, ApiError> {
    let digest = fetcher
        .local_alias(alias)
        .await?
        .ok_or(ApiError::Fetch(FetchError::AliasUnknown(*alias)))?;
    let mut response = empty(StatusCode::OK);
    insert_digest(response.headers_mut(), &digest);
    Ok(response)
}

/// A blob, or a piece of it, for the peer `asker`: only what this node holds or is
/// downloading, with what it holds in the `x-shoal-pieces` header of every answer, and in
/// `x-shoal-peers` the peers it sent pieces of the blob to lately.
pub async fn peer_blob(
    fetcher: &Fetcher,
    metrics: &Arc<Metrics>,
    digest: &Digest,
    range: Option<RangeSpec>,
    head: bool,
    asker: &str,
) -> Result<Response, ApiError> {
    let (mut response, status) = match fetcher.local_blob(digest, range, asker).await? {
        PeerAnswer::Blob(mut blob, status) => {
            if !head {
                metrics.peer_blob_serves.inc();
                let counter = metrics.clone();
                blob.body = blob
                    .body
                    .inspect(move |chunk| {
                        if let Ok(chunk) = chunk {
                            counter.peer_bytes_served.inc_by(chunk.len() as u64);
                        }
                    })
                    .boxed();
            }
            let mut response = blob_response(digest, blob, head);
            // Manifests are blobs too; their media type lets the peer serve them unchanged.
            if let Some(media_type) = fetcher.stored_media_type(digest)
                && let Ok(v) = HeaderValue::from_str(&media_type)
            {
                response.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            (response, status)
        }
        PeerAnswer::NotHeld(None) => return Err(ApiError::Fetch(FetchError::BlobUnknown(*digest))),
        PeerAnswer::NotHeld(status) => (empty(StatusCode::RANGE_NOT_SATISFIABLE), status),
        PeerAnswer::Busy(status) => (empty(StatusCode::SERVICE_UNAVAILABLE), status),
        PeerAnswer::Spread(status) => (empty(StatusCode::TOO_MANY_REQUESTS), status),
    };
    if let Some(status) = status
        && let Ok(v) = HeaderValue::from_str(&status.to_string())
    {
        response.headers_mut().insert(PIECES_HEADER, v);
        let referrals = fetcher.referrals(digest, asker);
        if !referrals.is_empty()
            && let Ok(v) = HeaderValue::from_str(&format_referrals(&referrals))
        {
            response.headers_mut().insert(PEERS_HEADER, v);
        }
    }
    Ok(response)
}

/// The piece digests of a stored blob: 32 raw bytes per piece, in order.
pub async fn peer_pieces(
    fetcher: &Fetcher,
    digest: &Digest,
    head: bool,
) -> Result<Response, ApiError> {
    let Some(pieces) = fetcher.piece_digests(digest).await? else {
        return Err(ApiError::Fetch(FetchError::BlobUnknown(*digest)));
    };
    let body: Vec<u8> = pieces.iter().flat_map(|d| *d.as_bytes()).collect();
    let len = body.len() as u64;
    let mut response = Response::new(if head { Body::empty() } else { Body::from(body) });
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    Ok(response)
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
    response
}

/// The process is up and serves requests; says nothing about the store.
pub fn health(head: bool) -> Response {
    let body = r#"{"status":"ok"}"#;
    json_response(StatusCode::OK, Body::from(body), body.len() as u64, head)
}

/// Ready when the store can take writes; otherwise the error says why (503).
pub async fn ready(fetcher: &Fetcher, head: bool) -> Result<Response, ApiError> {
    let writable = fetcher.store_writable().await.map_err(ApiError::NotReady)?;
    let body = serde_json::json!({
        "status": "ready",
        "free_bytes": writable.free_bytes,
        "stored_bytes": writable.stored_bytes,
    })
    .to_string();
    let len = body.len() as u64;
    Ok(json_response(StatusCode::OK, Body::from(body), len, head))
}

pub fn metrics(metrics: &Metrics) -> Response {
    let mut response = Response::new(Body::from(metrics.render()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
    response
}

/// The node's status report, as JSON.
pub async fn status(status: &StatusSource, head: bool) -> Response {
    let report = status.report().await;
    let body = serde_json::to_string(&report).unwrap_or_else(|_| "{}".to_owned());
    let len = body.len() as u64;
    json_response(StatusCode::OK, Body::from(body), len, head)
}

pub async fn tags(
    fetcher: &Fetcher,
    target: &Target,
    client_name: &str,
    ns: Option<&str>,
    page: TagsQuery,
    head: bool,
) -> Result<Response, ApiError> {
    let list = fetcher.tags(target, page.n, page.last.as_deref()).await?;
    let len = list.body.len() as u64;
    let mut response = json_response(StatusCode::OK, Body::from(list.body), len, head);
    if let Some(next) = list.next {
        let ns = ns.map(|ns| format!("&{ns}")).unwrap_or_default();
        let link = format!("</v2/{client_name}/tags/list?{next}{ns}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(response)
}

pub(super) fn json_response(status: StatusCode, body: Body, len: u64, head: bool) -> Response {
    let mut response = Response::new(if head { Body::empty() } else { body });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

fn insert_digest(headers: &mut axum::http::HeaderMap, digest: &Digest) {
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        headers.insert(DIGEST_HEADER, v);
    }
}
