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
    /// `Ok` when `credentials` (`None`: anonymous) may pull from `repo`, `Unauthorized` when the
    /// upstream or its token service refuses them. Whether the thing probed exists does not
    /// matter: a 404 is an answer only a client with access gets.
    pub async fn check_access(
        &self,
        repo: &RepositoryName,
        probe: &Probe,
        credentials: Option<Credentials>,
    ) -> Result<(), UpstreamError> {
        let inner = &self.inner;
        let (method, path, what) = match probe {
            Probe::Manifest(reference) => (
                Method::HEAD,
                format!("{repo}/manifests/{reference}"),
                format!("manifest {repo}:{reference}"),
            ),
            Probe::Blob(digest) => {
                (Method::HEAD, format!("{repo}/blobs/{digest}"), format!("blob {repo}@{digest}"))
            }
            Probe::Repository => {
                (Method::GET, format!("{repo}/tags/list?n=1"), format!("tags of {repo}"))
            }
        };
        let request = Request {
            method,
            url: inner.url(&path)?,
            headers: HeaderMap::new(),
            scope: pull_scope(repo),
            what,
        };
        let auth = Auth::new(inner.name.clone(), credentials, inner.realms.clone());
        match inner.execute_as(&request, &auth).await {
            Ok(_) | Err(UpstreamError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
