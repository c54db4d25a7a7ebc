//! The OCI 1.1 referrers API of an upstream: `GET /v2/<repo>/referrers/<digest>`.
//!
//! Registries without the API answer `404`, which the caller takes as "use the referrers tag
//! schema instead"; this client only fetches and bounds the answer. What the index lists is
//! read by the caller, which knows what to do with a bad one.

use bytes::Bytes;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use shoal_protocol::media_type::{MAX_MANIFEST_SIZE, OCI_INDEX};
use shoal_protocol::{Digest, RepositoryName};

use super::read::read_limited;
use super::transport::Request;
use super::{Upstream, UpstreamError, pull_scope};

/// An upstream's referrers answer: an image index, as sent. Whether the upstream applied the
/// `artifactType` filter is not kept: the node applies it again either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrersPage {
    pub body: Bytes,
}

impl Upstream {
    /// `GET /v2/<repo>/referrers/<subject>[?artifactType=...]`, at most as large as a manifest
    /// (the answer is one, and it is held in memory). A registry without the API answers
    /// `NotFound`.
    pub async fn get_referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ReferrersPage, UpstreamError> {
        let inner = &self.inner;
        let mut url = inner.url(&format!("{repo}/referrers/{subject}"))?;
        if let Some(wanted) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", wanted);
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(OCI_INDEX));
        let request = Request {
            method: Method::GET,
            url,
            headers,
            scope: pull_scope(repo),
            what: format!("referrers of {repo}@{subject}"),
        };
        let resp = inner.execute(&request).await?;
        if resp.status() != StatusCode::OK {
            return Err(
                inner.bad(format!("unexpected HTTP {} for a referrers list", resp.status()))
            );
        }
        let idle = inner.settings.read_timeout;
        let body = read_limited(resp, MAX_MANIFEST_SIZE, idle, &inner.name, |size| {
            inner.bad(format!(
                "referrers list of at least {size} bytes exceeds the limit of {MAX_MANIFEST_SIZE}"
            ))
        })
        .await?;
        Ok(ReferrersPage { body })
    }
}
