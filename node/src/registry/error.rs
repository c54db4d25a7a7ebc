//! Every failure a client can see, mapped once to an HTTP status and an OCI error code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::fetch::FetchError;
use crate::store::StoreError;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such endpoint")]
    NotFound,
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    #[error("invalid manifest reference: {0}")]
    ReferenceInvalid(String),
    #[error("invalid digest: {0}")]
    DigestInvalid(String),
    #[error("invalid query: {0}")]
    QueryInvalid(String),
    #[error("invalid Range: {0}")]
    RangeInvalid(String),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("peer request without a valid cluster token")]
    PeerUnauthorized,
    /// `/readyz`: the store cannot take writes now.
    #[error("not ready: {0}")]
    NotReady(FetchError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// What the client receives: status, OCI code, and headers that go with them.
struct Mapped {
    status: StatusCode,
    code: &'static str,
    retry_after: Option<u64>,
    /// For 416: the blob's size, sent as `Content-Range: bytes */size`.
    size: Option<u64>,
}

fn mapped(status: StatusCode, code: &'static str) -> Mapped {
    Mapped { status, code, retry_after: None, size: None }
}

impl ApiError {
    fn map(&self) -> Mapped {
        match self {
            ApiError::NotFound => mapped(StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::NameInvalid(_) => mapped(StatusCode::BAD_REQUEST, "NAME_INVALID"),
            ApiError::ReferenceInvalid(_) => mapped(StatusCode::BAD_REQUEST, "TAG_INVALID"),
            ApiError::DigestInvalid(_) => mapped(StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            ApiError::QueryInvalid(_) => {
                mapped(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID")
            }
            ApiError::RangeInvalid(_) => mapped(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"),
            ApiError::PeerUnauthorized => mapped(StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            ApiError::Unsupported(_) | ApiError::MethodNotAllowed => {
                mapped(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
            }
            ApiError::NotReady(_) => mapped(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            ApiError::Fetch(e) => map_fetch(e.root()),
        }
    }
}

fn map_fetch(e: &FetchError) -> Mapped {
    match e {
        FetchError::UnknownRegistry(_) => mapped(StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        FetchError::ManifestUnknown { .. } => mapped(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        FetchError::BlobUnknown(_) => mapped(StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        FetchError::RangeNotSatisfiable { size } => Mapped {
            size: Some(*size),
            ..mapped(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID")
        },
        FetchError::Mismatch(_) | FetchError::PeerCorrupt(_) => {
            mapped(StatusCode::BAD_GATEWAY, "DIGEST_INVALID")
        }
        FetchError::Peer(_) | FetchError::FallbackForbidden { .. } => {
            mapped(StatusCode::BAD_GATEWAY, "UNAVAILABLE")
        }
        FetchError::Oversized { .. } | FetchError::Truncated { .. } => {
            mapped(StatusCode::BAD_GATEWAY, "UNAVAILABLE")
        }
        FetchError::Upstream(u) => map_upstream(u),
        FetchError::Store(StoreError::NoRoom { .. } | StoreError::OverCap { .. }) => {
            mapped(StatusCode::INSUFFICIENT_STORAGE, "UNAVAILABLE")
        }
        FetchError::Store(e) if e.is_disk_full() => {
            mapped(StatusCode::INSUFFICIENT_STORAGE, "UNAVAILABLE")
        }
        FetchError::Store(StoreError::IndexUnavailable { .. } | StoreError::ReadOnly { .. }) => {
            mapped(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
        }
        FetchError::Store(_) | FetchError::Read { .. } | FetchError::Panicked { .. } => {
            mapped(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN")
        }
        FetchError::Joined { cause, .. } => map_fetch(cause),
    }
}

fn map_upstream(e: &UpstreamError) -> Mapped {
    match e {
        UpstreamError::NotFound { .. } => mapped(StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        UpstreamError::Unauthorized { .. } => mapped(StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        UpstreamError::TooManyRequests { retry_after, .. } => Mapped {
            retry_after: Some(retry_after.map_or(60, |d| d.as_secs().max(1))),
            ..mapped(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS")
        },
        UpstreamError::Timeout { .. } => mapped(StatusCode::GATEWAY_TIMEOUT, "UNAVAILABLE"),
        UpstreamError::ManifestTooLarge { .. } => {
            mapped(StatusCode::BAD_GATEWAY, "MANIFEST_INVALID")
        }
        UpstreamError::DigestMismatch(_) => mapped(StatusCode::BAD_GATEWAY, "DIGEST_INVALID"),
        UpstreamError::Config { .. } => mapped(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        _ => mapped(StatusCode::BAD_GATEWAY, "UNAVAILABLE"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let m = self.map();
        if m.status.is_server_error() {
            tracing::warn!(status = m.status.as_u16(), code = m.code, error = %self, "request failed");
        } else {
            tracing::debug!(status = m.status.as_u16(), code = m.code, error = %self, "request refused");
        }
        let body = serde_json::json!({
            "errors": [{ "code": m.code, "message": self.to_string(), "detail": null }]
        });
        let mut response = (m.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = m.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(size) = m.size
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            headers.insert(header::CONTENT_RANGE, v);
        }
        response
    }
}
