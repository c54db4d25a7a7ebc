//! The one error type of the upstream client: what went wrong while talking to a registry.

use std::time::Duration;

use shoal_protocol::DigestMismatch;
use shoal_protocol::media_type::MAX_MANIFEST_SIZE;

/// Why a request to an upstream registry failed.
///
/// Messages never contain credentials, tokens or presigned URLs.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// 404 for a manifest, blob or repository.
    #[error("not found upstream: {what}")]
    NotFound { what: String },
    /// 401/403 after the authentication dance.
    #[error("upstream {registry} refused access: {detail}")]
    Unauthorized { registry: String, detail: String },
    /// 429, with the upstream's `Retry-After` when it sent one in seconds.
    #[error("upstream {registry} is rate limiting requests{}", retry_after_text(.retry_after))]
    TooManyRequests { registry: String, retry_after: Option<Duration> },
    /// Connection errors and 5xx, after the retries.
    #[error("upstream {registry} is unavailable: {detail}")]
    Unavailable { registry: String, detail: String },
    #[error("upstream {registry} timed out: {what}")]
    Timeout { registry: String, what: String },
    /// HTML, garbage, missing or malformed headers, an unexpected status.
    #[error("upstream {registry} sent a bad response: {detail}")]
    BadResponse { registry: String, detail: String },
    #[error("manifest of at least {size} bytes exceeds the limit of {MAX_MANIFEST_SIZE} bytes")]
    ManifestTooLarge { size: u64 },
    #[error(transparent)]
    DigestMismatch(#[from] DigestMismatch),
    /// The body ended early; both numbers are positions in the blob, so `got` is where to resume.
    #[error("upstream body cut short at byte {got} of {expected}")]
    Truncated { expected: u64, got: u64 },
    /// A bad upstream URL or an unreadable Docker config.
    #[error("upstream configuration: {detail}")]
    Config { detail: String },
}

impl UpstreamError {
    /// The upstream cannot answer right now (down, 5xx, too slow, rate limiting): the caller may
    /// serve what it last knew, such as a stale tag. Rate limiting counts because a stale tag is
    /// better for a client than a refusal that says nothing about the image itself.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::Timeout { .. } | Self::TooManyRequests { .. }
        )
    }
}

fn retry_after_text(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {} s)", d.as_secs()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_covers_transient_failures_only() {
        let registry = || "r".to_owned();
        assert!(
            UpstreamError::Unavailable { registry: registry(), detail: "x".into() }
                .is_unavailable()
        );
        assert!(UpstreamError::Timeout { registry: registry(), what: "x".into() }.is_unavailable());
        assert!(
            UpstreamError::TooManyRequests { registry: registry(), retry_after: None }
                .is_unavailable()
        );
        assert!(!UpstreamError::NotFound { what: "x".into() }.is_unavailable());
        assert!(
            !UpstreamError::BadResponse { registry: registry(), detail: "x".into() }
                .is_unavailable()
        );
        assert!(!UpstreamError::Truncated { expected: 2, got: 1 }.is_unavailable());
    }

    #[test]
    fn retry_after_is_shown() {
        let e = UpstreamError::TooManyRequests {
            registry: "docker.io".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(e.to_string(), "upstream docker.io is rate limiting requests (retry after 7 s)");
    }
}
