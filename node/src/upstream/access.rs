//! Whether someone else's credentials may pull from a repository: the upstream is asked with
//! them, as their own client would ask it. The tenant pass-through (`fetch/access.rs`) uses
//! this before it serves cached content fetched with the node's credentials.
//!
//! The client's credentials go only where the node's own would (the registry's origin, or a
//! token service the operator allowed: `realm.rs`), and its tokens are never cached past the
//! one check: a client's credentials are not the node's to keep.

use reqwest::Method;
use reqwest::header::HeaderMap;
use shoal_protocol::{Digest, Reference, RepositoryName};

use super::auth::Auth;
use super::transport::Request;
use super::{Credentials, Upstream, UpstreamError, pull_scope};

/// The request that asks: the thing the client wants, so the answer is the one the client
/// would get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Manifest(Reference),
    Blob(Digest),
    /// The repository itself (a tag list, referrers): its first tag.
    Repository,
}

impl Upstream {
    /// `Ok(true)` when the upstream answered the probe with `credentials` (`None`: anonymous),
    /// `Ok(false)` when it said 404, `Unauthorized` when it or its token service refused them.
    /// A 404 proves nothing about access: some registries answer 404 for a private repository
    /// to a client that may not see it, rather than tell it the repository exists.
    pub async fn check_access(
        &self,
        repo: &RepositoryName,
        probe: &Probe,
        credentials: Option<Credentials>,
    ) -> Result<bool, UpstreamError> {
        let inner = &self.inner;
        let request = match probe {
            Probe::Manifest(reference) => inner.manifest_request(Method::HEAD, repo, reference)?,
            Probe::Blob(digest) => Request {
                method: Method::HEAD,
                url: inner.url(&format!("{repo}/blobs/{digest}"))?,
                headers: HeaderMap::new(),
                scope: pull_scope(repo),
                what: format!("blob {repo}@{digest}"),
            },
            Probe::Repository => Request {
                method: Method::GET,
                url: inner.url(&format!("{repo}/tags/list?n=1"))?,
                headers: HeaderMap::new(),
                scope: pull_scope(repo),
                what: format!("tags of {repo}"),
            },
        };
        let auth = Auth::new(
            inner.name.clone(),
            credentials,
            inner.realms.clone(),
            inner.auth.clock().clone(),
        );
        match inner.execute_as(&request, &auth).await {
            Ok(_) => Ok(true),
            Err(UpstreamError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
