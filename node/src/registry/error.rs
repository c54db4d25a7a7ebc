//! Every failure a client can see, mapped once to an HTTP status and an OCI error code.
//!
//! Bodies say what a client can act on and nothing of the machine: failures inside the node
//! (its disk, its configuration) are described in full in the log, and only named in the body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::Refusal;
use crate::fetch::FetchError;
use crate::peer_auth::PeerAuthFailure;
use crate::placement::PlacementError;
use crate::push::PushError;
use crate::store::StoreError;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such endpoint")]
    NotFound,
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    #[error("invalid manifest reference: {0}")]
    ReferenceInvalid(shoal_protocol::ReferenceError),
    #[error("invalid tag: {0}")]
    TagInvalid(String),
    #[error("more than {max} tag parameters in one manifest push; push the rest in another")]
    TooManyTags { max: usize },
    #[error("blob unknown: {0}")]
    BlobAlgorithm(shoal_protocol::DigestError),
    #[error("the request target is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("{0}")]
    HeadersTooLarge(String),
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
    #[error("peer request refused: {0}")]
    PeerAuth(PeerAuthFailure),
    #[error("{}", refusal_text(.0))]
    Auth(Refusal),
    /// `/readyz`: the store cannot take writes now.
    #[error("not ready: {0}")]
    NotReady(FetchError),
    #[error("upload {0:?} is unknown")]
    UploadUnknown(String),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

/// What the client receives: status, OCI code, and headers that go with them.
struct Mapped {
    status: StatusCode,
    code: &'static str,
    retry_after: Option<u64>,
    /// For 416: the blob's size, sent as `Content-Range: bytes */size`.
    size: Option<u64>,
    /// For 401: ask the client to log in.
    challenge: bool,
}

fn mapped(status: StatusCode, code: &'static str) -> Mapped {
    Mapped { status, code, retry_after: None, size: None, challenge: false }
}

/// What clients that log in with Basic (Docker, containerd, podman, skopeo) answer.
const CHALLENGE: &str = "Basic realm=\"shoal\"";

fn refusal_text(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::LoginRequired => "authentication required",
        Refusal::BadCredentials => "invalid username, password or token",
        Refusal::Denied => "this client may not do that in this repository",
    }
}

impl ApiError {
    fn map(&self) -> Mapped {
        match self {
            ApiError::NotFound => mapped(StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::NameInvalid(_) => mapped(StatusCode::BAD_REQUEST, "NAME_INVALID"),
            // A reference that is neither a tag nor a digest names no manifest: the spec's
            // answer for a manifest that does not exist, as distribution gives it.
            ApiError::ReferenceInvalid(_) => mapped(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            // A legal name, tag and digest fit in a fraction of the limit, so a longer target
            // can only carry a name that is not one.
            ApiError::UriTooLong(_) => mapped(StatusCode::URI_TOO_LONG, "NAME_INVALID"),
            ApiError::HeadersTooLarge(_) => {
                mapped(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "UNSUPPORTED")
            }
            ApiError::DigestInvalid(_) => mapped(StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            ApiError::TagInvalid(_) => mapped(StatusCode::BAD_REQUEST, "TAG_INVALID"),
            // The spec's answer for too many tags in one push.
            ApiError::TooManyTags { .. } => mapped(StatusCode::URI_TOO_LONG, "TAG_INVALID"),
            ApiError::BlobAlgorithm(_) => mapped(StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            ApiError::QueryInvalid(_) => {
                mapped(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID")
            }
            ApiError::RangeInvalid(_) => mapped(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"),
            ApiError::PeerAuth(failure) => map_peer_auth(failure),
            ApiError::Auth(Refusal::LoginRequired | Refusal::BadCredentials) => {
                Mapped { challenge: true, ..mapped(StatusCode::UNAUTHORIZED, "UNAUTHORIZED") }
            }
            ApiError::Auth(Refusal::Denied) => mapped(StatusCode::FORBIDDEN, "DENIED"),
            ApiError::Unsupported(_) | ApiError::MethodNotAllowed => {
                mapped(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
            }
            ApiError::NotReady(_) => mapped(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            ApiError::UploadUnknown(_) => mapped(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            ApiError::Push(e) => map_push(e),
            ApiError::Fetch(e) => map_fetch(e.root()),
            ApiError::Placement(e) => match e {
                PlacementError::Missing(_)
                | PlacementError::MissingAlias(_)
                | PlacementError::NoPlatform { .. }
                | PlacementError::NotPinned(_) => mapped(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
                PlacementError::NotAManifest(_) => {
                    mapped(StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
                }
                PlacementError::Released { .. } => mapped(StatusCode::CONFLICT, "DENIED"),
                PlacementError::Fetch(e) => map_fetch(e.root()),
                PlacementError::Store(e) => map_store(e),
            },
        }
    }

    /// The message for the body: the error itself, except where it would show the node's own
    /// paths or configuration.
    pub(super) fn public_message(&self) -> String {
        let e = match self {
            ApiError::Fetch(e) => e.root(),
            ApiError::Push(PushError::Store(e)) => return store_message(e, self),
            ApiError::Push(PushError::Fetch(e)) => e.root(),
            ApiError::Placement(PlacementError::Store(e)) => return store_message(e, self),
            ApiError::Placement(PlacementError::Fetch(e)) => e.root(),
            _ => return self.to_string(),
        };
        match e {
            FetchError::Store(StoreError::DiskFull { .. }) => {
                "the node's store is full; its log says more".to_owned()
            }
            // What a client can act on, without the data directory's path.
            FetchError::Store(StoreError::NoRoom { digest, size, usable, .. }) => format!(
                "blob {digest} is {} but the node's store can make room for only {}; free space \
                 on its file system or move its data directory to a larger one",
                crate::store::human_size(*size),
                crate::store::human_size(*usable)
            ),
            FetchError::Store(over @ StoreError::OverCap { .. }) => over.to_string(),
            FetchError::Store(_) | FetchError::Read { .. } => {
                "the node's store failed; its log says more".to_owned()
            }
            FetchError::Upstream(UpstreamError::Config { .. }) => {
                "the node's upstream configuration is broken; its log says more".to_owned()
            }
            _ => self.to_string(),
        }
    }
}

/// What a client may read of a store failure during a push.
fn store_message(e: &StoreError, error: &ApiError) -> String {
    match e {
        StoreError::UploadNoRoom { size, usable, .. } => format!(
            "the upload reached {} but the node's store can take only {}; it was removed",
            crate::store::human_size(*size),
            crate::store::human_size(*usable)
        ),
        StoreError::UploadOverCap { .. } | StoreError::OverCap { .. } => error.to_string(),
        StoreError::DiskFull { .. } => "the node's store is full; its log says more".to_owned(),
        _ => "the node's store failed; its log says more".to_owned(),
    }
}

fn map_push(e: &PushError) -> Mapped {
    match e {
        PushError::UploadUnknown(_) => mapped(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        PushError::OutOfOrder { .. } => {
            mapped(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID")
        }
        PushError::SizeInvalid(_) => mapped(StatusCode::BAD_REQUEST, "SIZE_INVALID"),
        PushError::DigestInvalid(_) => mapped(StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        PushError::ManifestInvalid(_) => mapped(StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        PushError::ManifestTooLarge { .. } => {
            mapped(StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID")
        }
        PushError::ManifestBlobUnknown(_) => {
            mapped(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
        }
        PushError::ManifestUnknown(_) => mapped(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        PushError::BlobUnknown(_) => mapped(StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        PushError::TooManyUploads(_) => Mapped {
            retry_after: Some(60),
            ..mapped(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS")
        },
        PushError::Body(_) => mapped(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
        PushError::Unsupported(_) => mapped(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
        PushError::Store(StoreError::UploadNoRoom { .. } | StoreError::UploadOverCap { .. }) => {
            mapped(StatusCode::INSUFFICIENT_STORAGE, "UNAVAILABLE")
        }
        PushError::Store(StoreError::IncompleteWrite { .. }) => {
            mapped(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID")
        }
        PushError::Store(e) => map_store(e),
        PushError::Fetch(e) => map_fetch(e.root()),
    }
}

fn map_store(e: &StoreError) -> Mapped {
    match e {
        StoreError::NoRoom { .. } | StoreError::OverCap { .. } => {
            mapped(StatusCode::INSUFFICIENT_STORAGE, "UNAVAILABLE")
        }
        e if e.is_disk_full() => mapped(StatusCode::INSUFFICIENT_STORAGE, "UNAVAILABLE"),
        StoreError::IndexUnavailable { .. } | StoreError::ReadOnly { .. } => {
            mapped(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
        }
        _ => mapped(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
    }
}

fn map_fetch(e: &FetchError) -> Mapped {
    match e {
        FetchError::UnknownRegistry(_) => mapped(StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        FetchError::PrivateRegistry(_) => mapped(StatusCode::FORBIDDEN, "DENIED"),
        FetchError::ManifestUnknown { .. } => mapped(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        FetchError::BlobUnknown(_) | FetchError::AliasUnknown(_) => {
            mapped(StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
        }
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
        FetchError::Store(e) => map_store(e),
        FetchError::Read { .. } | FetchError::Panicked { .. } => {
            mapped(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN")
        }
        FetchError::Joined { cause, .. } => map_fetch(cause),
    }
}

/// No valid signature is `401`; a valid one used twice, or any request to a node that is in
/// no fleet, is `403`: the sender is known (or irrelevant) and the answer will not change.
/// A full replay cache is `503`, which a peer takes as "ask another node".
fn map_peer_auth(failure: &PeerAuthFailure) -> Mapped {
    match failure {
        PeerAuthFailure::Missing | PeerAuthFailure::Invalid(_) => {
            mapped(StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
        }
        PeerAuthFailure::Replayed { .. } | PeerAuthFailure::NoFleet => {
            mapped(StatusCode::FORBIDDEN, "DENIED")
        }
        PeerAuthFailure::Busy => mapped(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
    }
}

fn map_upstream(e: &UpstreamError) -> Mapped {
    match e {
        UpstreamError::NotFound { .. } => mapped(StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        // Not 401: a 401 without a challenge the client could answer leaves it nothing to do,
        // and the credentials that were refused are the node's, not the client's.
        UpstreamError::Unauthorized { .. } => mapped(StatusCode::FORBIDDEN, "DENIED"),
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
        self.to_response()
    }
}

impl ApiError {
    /// The response, keeping the error for the caller's bookkeeping.
    pub(super) fn to_response(&self) -> Response {
        let m = self.map();
        // Refused peer requests are logged where they are checked, at a bounded rate.
        if m.status.is_server_error() && !matches!(self, ApiError::PeerAuth(_)) {
            tracing::warn!(status = m.status.as_u16(), code = m.code, error = %self, "request failed");
        } else {
            tracing::debug!(status = m.status.as_u16(), code = m.code, error = %self, "request refused");
        }
        let body = serde_json::json!({
            "errors": [{ "code": m.code, "message": self.public_message(), "detail": null }]
        });
        let mut response = (m.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if m.challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
        }
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
