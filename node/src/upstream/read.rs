//! Reading upstream bodies: bounded reads into memory (manifests, tag lists, tokens) and the blob
//! stream, which fails loudly — never ends quietly — when the body is cut short or stalls.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt};
use reqwest::Response;
use reqwest::header::{CONTENT_LENGTH, HeaderMap};

use super::UpstreamError;

/// The `Content-Length` header itself: reqwest's `content_length()` is the body's size hint,
/// which is 0 for `HEAD`.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Reads a whole body of at most `limit` bytes, refusing early on a larger `Content-Length`.
pub(crate) async fn read_limited(
    resp: Response,
    limit: u64,
    idle: Duration,
    registry: &str,
    too_large: impl Fn(u64) -> UpstreamError,
) -> Result<Bytes, UpstreamError> {
    let expected = content_length(resp.headers());
    if let Some(len) = expected
        && len > limit
    {
        return Err(too_large(len));
    }
    let capacity = expected.unwrap_or(0).min(limit);
    let mut buf = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut chunks = resp.bytes_stream();
    loop {
        let got = buf.len() as u64;
        match tokio::time::timeout(idle, chunks.next()).await {
            Err(_) => return Err(stalled(registry, got)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(body_error(e, registry, 0, expected, got)),
            Ok(Some(Ok(chunk))) => {
                let total = got + chunk.len() as u64;
                if total > limit {
                    return Err(too_large(total));
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
    if let Some(expected) = expected
        && (buf.len() as u64) < expected
    {
        return Err(UpstreamError::Truncated { expected, got: buf.len() as u64 });
    }
    Ok(buf.freeze())
}

/// Where a blob response's bytes sit in the blob.
pub(crate) struct BodyLayout {
    /// Blob position of the first body byte: the range start of a 206, else 0.
    pub start: u64,
    /// Leading body bytes to drop: an upstream that ignored our `Range` sends the whole blob.
    pub skip: u64,
    /// Body length announced by `Content-Length`.
    pub len: Option<u64>,
}

struct BlobReader {
    chunks: BoxStream<'static, reqwest::Result<Bytes>>,
    layout: BodyLayout,
    received: u64,
    idle: Duration,
    registry: String,
}

/// The chunks of a blob response; the stream ends with an error, never early and quietly.
pub(crate) fn blob_stream(
    resp: Response,
    layout: BodyLayout,
    idle: Duration,
    registry: String,
) -> BoxStream<'static, Result<Bytes, UpstreamError>> {
    let body =
        BlobReader { chunks: resp.bytes_stream().boxed(), layout, received: 0, idle, registry };
    stream::unfold(Some(body), |state| async move {
        let mut body = state?;
        let item = body.next_chunk().await?;
        // After an error the stream ends: a caller that resumes does so with a new request.
        let next = if item.is_ok() { Some(body) } else { None };
        Some((item, next))
    })
    .boxed()
}

impl BlobReader {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, UpstreamError>> {
        loop {
            let position = self.layout.start + self.received;
            let item = match tokio::time::timeout(self.idle, self.chunks.next()).await {
                Err(_) => return Some(Err(stalled(&self.registry, position))),
                Ok(item) => item,
            };
            match item {
                None => {
                    let len = self.layout.len?;
                    if self.received < len {
                        let expected = self.layout.start + len;
                        return Some(Err(UpstreamError::Truncated { expected, got: position }));
                    }
                    return None;
                }
                Some(Err(e)) => {
                    let BodyLayout { start, len, .. } = self.layout;
                    return Some(Err(body_error(e, &self.registry, start, len, self.received)));
                }
                Some(Ok(mut chunk)) => {
                    self.received += chunk.len() as u64;
                    if self.layout.skip > 0 {
                        let drop = self.layout.skip.min(chunk.len() as u64);
                        chunk = chunk.slice(drop as usize..);
                        self.layout.skip -= drop;
                    }
                    if !chunk.is_empty() {
                        return Some(Ok(chunk));
                    }
                }
            }
        }
    }
}

fn stalled(registry: &str, position: u64) -> UpstreamError {
    UpstreamError::Timeout {
        registry: registry.to_owned(),
        what: format!("body stalled after byte {position}"),
    }
}

/// A failed body read: cut short when we know how much was due, else an unavailable upstream.
fn body_error(
    e: reqwest::Error,
    registry: &str,
    start: u64,
    len: Option<u64>,
    received: u64,
) -> UpstreamError {
    if e.is_timeout() {
        return stalled(registry, start + received);
    }
    match len {
        Some(len) if received < len => {
            UpstreamError::Truncated { expected: start + len, got: start + received }
        }
        _ => UpstreamError::Unavailable {
            registry: registry.to_owned(),
            // Without the URL: a presigned URL carries a signature.
            detail: format!("body read failed: {}", e.without_url()),
        },
    }
}
