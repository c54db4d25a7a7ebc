//! The label sets of the metrics, each bounded by construction: fixed words, or names the
//! operator configured with `other` for the rest, so that no client can grow a series per
//! request.

use axum::http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;

use crate::fetch::Served;

/// The value for every name outside the configured lists.
pub const OTHER: &str = "other";

/// What a client request was for, as the request metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    Manifest,
    Blob,
    Tags,
    /// Blob uploads (pushes).
    Upload,
    Referrers,
    /// The data plane between members.
    Peer,
    /// `/v2/`, health, metrics, status, and requests that name nothing valid.
    Other,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::Blob => "blob",
            Self::Tags => "tags",
            Self::Upload => "upload",
            Self::Referrers => "referrers",
            Self::Peer => "peer",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub status: &'static str,
}

impl RequestLabels {
    pub fn new(kind: EndpointKind, status: StatusCode) -> Self {
        let status = match status.as_u16() {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        Self { endpoint: kind.as_str(), status }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

impl SourceLabels {
    pub fn of(source: Served) -> Self {
        Self { source: source.as_str() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RegistryLabels {
    pub registry: String,
    /// `blob`, `manifest`, `tags` or `access` (a client's credentials, `fetch/access.rs`).
    pub kind: &'static str,
    /// `ok`, `not_found`, `denied`, `rate_limited` or `error` (unreachable, 5xx, bad answer).
    pub outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RegistryOnly {
    pub registry: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RepositoryLabels {
    pub repository: String,
    pub source: &'static str,
}
