//! The push endpoints' HTTP side: request bodies handed to the [`Pusher`] as streams, and the
//! status codes and headers the distribution spec gives each answer.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::{StreamExt, TryStreamExt};
use shoal_protocol::media_type::MAX_MANIFEST_SIZE;
use shoal_protocol::{AnyDigest, Digest, Reference, Tag};

use super::error::ApiError;
use super::route::UploadQuery;
use crate::fetch::Target;
use crate::push::{BodyStream, PushError, PushedAs, Pusher, Started, UploadState};

const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";
const SUBJECT_HEADER: &str = "oci-subject";
/// The tags a push by digest created from its `tag` parameters.
const TAG_HEADER: &str = "oci-tag";
const FILTERS_HEADER: &str = "oci-filters-applied";

/// Where the client's names live on this node: the path it used, and `?ns=` if it sent one.
pub struct Names<'a> {
    pub client_name: &'a str,
    pub ns: Option<&'a str>,
}

impl Names<'_> {
    fn url(&self, rest: &str) -> String {
        let ns = self.ns.map(|ns| format!("?{ns}")).unwrap_or_default();
        format!("/v2/{}/{rest}{ns}", self.client_name)
    }
}

pub fn body_stream(body: Body) -> BodyStream {
    body.into_data_stream().map_err(|e| e.to_string()).boxed()
}

pub async fn start(
    pusher: &Pusher,
    target: &Target,
    names: Names<'_>,
    query: UploadQuery,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(mount) = &query.mount
        && pusher.mount(target, mount, query.from.as_ref()).await?
    {
        return Ok(stored(&names, mount));
    }
    match pusher.start_upload(target, query.digest, body_stream(body)).await? {
        Started::Stored(digest) => Ok(stored(&names, &digest)),
        Started::Open(state) => Ok(in_progress(&names, &state, StatusCode::ACCEPTED)),
    }
}

pub async fn patch(
    pusher: &Pusher,
    target: &Target,
    names: Names<'_>,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let range = chunk_range(headers)?;
    let state = pusher.patch(target, id, range, body_stream(body)).await?;
    Ok(in_progress(&names, &state, StatusCode::ACCEPTED))
}

/// The closing `PUT`, whose body is the last chunk: with a `Content-Range`, it must begin
/// where the upload stands, as a `PATCH` must.
pub async fn finish(
    pusher: &Pusher,
    target: &Target,
    names: Names<'_>,
    id: &str,
    digest: Option<AnyDigest>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let range = chunk_range(headers)?;
    let digest = pusher.finish(target, id, digest, range, body_stream(body)).await?;
    Ok(stored(&names, &digest))
}

/// A chunk's `Content-Range`, checked against its `Content-Length` when both are sent.
fn chunk_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let range = content_range(headers)?;
    if let (Some((start, end)), Some(len)) = (range, content_length(headers)?)
        && end - start != len
    {
        return Err(PushError::SizeInvalid(format!(
            "Content-Range covers {} bytes but Content-Length is {len}",
            end - start
        ))
        .into());
    }
    Ok(range)
}

pub async fn status(
    pusher: &Pusher,
    target: &Target,
    names: Names<'_>,
    id: &str,
) -> Result<Response, ApiError> {
    let state = pusher.upload_state(target, id).await?;
    Ok(in_progress(&names, &state, StatusCode::NO_CONTENT))
}

pub async fn cancel(pusher: &Pusher, target: &Target, id: &str) -> Result<Response, ApiError> {
    pusher.cancel(target, id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub async fn put_manifest(
    pusher: &Pusher,
    target: &Target,
    names: Names<'_>,
    reference: &PushedAs,
    tags: &[Tag],
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(len) = content_length(headers)?
        && len > MAX_MANIFEST_SIZE
    {
        drain(body).await;
        return Err(PushError::ManifestTooLarge { size: len, max: MAX_MANIFEST_SIZE }.into());
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    // Parameters (`; charset=utf-8`) are not part of the media type.
    let content_type = content_type.map(|t| t.split(';').next().unwrap_or(t).trim());
    let pushed =
        pusher.put_manifest(target, reference, tags, content_type, body_stream(body)).await?;
    // Named back as the client named it: a manifest pushed by sha512 is found by it.
    let named = match reference {
        PushedAs::Digest(named) => *named,
        PushedAs::Tag(_) => pushed.digest.into(),
    };
    let mut response = empty(StatusCode::CREATED);
    let h = response.headers_mut();
    insert(h, header::LOCATION.as_str(), &names.url(&format!("manifests/{named}")));
    insert(h, DIGEST_HEADER, &named.to_string());
    if let Some(subject) = pushed.subject {
        insert(h, SUBJECT_HEADER, &subject.to_string());
    }
    if !tags.is_empty() {
        // Every tag asked for was taken, or the push failed as a whole.
        let accepted: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        insert(h, TAG_HEADER, &accepted.join(", "));
    }
    Ok(response)
}

pub async fn delete_manifest(
    pusher: &Pusher,
    target: &Target,
    reference: &Reference,
) -> Result<Response, ApiError> {
    pusher.delete_manifest(target, reference).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub async fn delete_blob(
    pusher: &Pusher,
    target: &Target,
    digest: &Digest,
) -> Result<Response, ApiError> {
    pusher.delete_blob(target, digest).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

/// `upstream`: the name is an upstream's, whose referrers are listed too.
pub async fn referrers(
    pusher: &Pusher,
    target: &Target,
    subject: &Digest,
    artifact_type: Option<&str>,
    upstream: bool,
    head: bool,
) -> Result<Response, ApiError> {
    let list = pusher.referrers(target, subject, artifact_type, upstream).await?;
    let len = list.body.len() as u64;
    let mut response = Response::new(if head { Body::empty() } else { Body::from(list.body) });
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    insert(h, header::CONTENT_TYPE.as_str(), shoal_protocol::media_type::OCI_INDEX);
    if list.filtered {
        insert(h, FILTERS_HEADER, "artifactType");
    }
    Ok(response)
}

/// Reads and drops a refused body, up to a bound, so that a client still sending it reads the
/// answer instead of a reset connection; past the bound the connection is closed anyway.
async fn drain(body: Body) {
    const DRAIN_MAX: usize = 16 * 1024 * 1024;
    let mut stream = body.into_data_stream();
    let mut drained = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        drained += chunk.len();
        if drained > DRAIN_MAX {
            break;
        }
    }
}

/// `201 Created` for a blob now stored.
fn stored(names: &Names<'_>, digest: &AnyDigest) -> Response {
    let mut response = empty(StatusCode::CREATED);
    let h = response.headers_mut();
    insert(h, header::LOCATION.as_str(), &names.url(&format!("blobs/{digest}")));
    insert(h, DIGEST_HEADER, &digest.to_string());
    response
}

/// An upload still open: where to send the next chunk and what has arrived.
fn in_progress(names: &Names<'_>, state: &UploadState, status: StatusCode) -> Response {
    let mut response = empty(status);
    let h = response.headers_mut();
    insert(h, header::LOCATION.as_str(), &names.url(&format!("blobs/uploads/{}", state.id)));
    // Inclusive, as the spec writes it; an empty upload is `0-0`, as distribution answers.
    insert(h, header::RANGE.as_str(), &format!("0-{}", state.written.saturating_sub(1)));
    insert(h, UPLOAD_UUID_HEADER, &state.id);
    response
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
    response
}

fn insert(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) =
        (header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
    {
        headers.insert(name, value);
    }
}

/// A chunk's `Content-Range: <start>-<end>` (inclusive; `bytes ` prefix tolerated), as the
/// half-open range it covers.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else { return Ok(None) };
    let bad = || {
        ApiError::Push(PushError::SizeInvalid(format!(
            "Content-Range {:?} is not <start>-<end>",
            String::from_utf8_lossy(value.as_bytes()).chars().take(64).collect::<String>()
        )))
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    let text = text.strip_prefix("bytes ").unwrap_or(text).trim();
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(Some((start, end + 1)))
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else { return Ok(None) };
    value.to_str().ok().and_then(|v| v.trim().parse().ok()).map(Some).ok_or_else(|| {
        ApiError::Push(PushError::SizeInvalid("Content-Length is not a number".to_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn content_ranges_are_inclusive_and_checked() {
        assert_eq!(content_range(&HeaderMap::new()).unwrap(), None);
        assert_eq!(content_range(&with(header::CONTENT_RANGE, "0-99")).unwrap(), Some((0, 100)));
        let prefixed = with(header::CONTENT_RANGE, "bytes 100-100");
        assert_eq!(content_range(&prefixed).unwrap(), Some((100, 101)));
        for bad in ["5-4", "x-1", "1", "-", "1-2-3"] {
            assert!(content_range(&with(header::CONTENT_RANGE, bad)).is_err(), "{bad}");
        }
        assert!(content_length(&with(header::CONTENT_LENGTH, "ten")).is_err());
    }
}
