//! Client for upstream OCI registries: manifests, blobs, tag lists and referrers, with the
//! bearer-token dance, redirects followed by hand, timeouts and retries.
//!
//! One [`Upstream`] per configured registry; it is cheap to clone and shared by every request.
//! The client checks what it can without the caller's help (manifest digests and sizes, HTML
//! where JSON belongs, truncated bodies); blob digests are the caller's to verify while it
//! streams.

mod access;
mod auth;
mod blob;
mod challenge;
mod config;
mod error;
mod manifest;
mod public_only;
mod read;
mod realm;
mod referrers;
mod transport;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use reqwest::Url;
use reqwest::redirect::Policy;
use shoal_protocol::{Digest, RepositoryName};

use crate::clock::Clock;
pub(crate) use access::Probe;
pub(crate) use challenge::parse_challenges;
pub(crate) use config::load_docker_config;
pub use config::{ClientSettings, Credentials, UpstreamConfig};
pub use error::UpstreamError;
pub(crate) use public_only::is_public as is_public_address;

use auth::Auth;
pub(crate) use realm::RealmPolicy;

/// What a `HEAD` on a manifest tells: enough to resolve a tag without a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: String,
    pub size: Option<u64>,
}

/// A blob's bytes as they arrive; the stream ends with an error if the body is cut short.
pub struct BlobStream {
    /// The total size of the blob, when the upstream told it.
    pub size: Option<u64>,
    pub stream: BoxStream<'static, Result<Bytes, UpstreamError>>,
}

/// One page of `tags/list`: the body as the upstream sent it, and its `Link` to the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagsPage {
    pub body: Bytes,
    pub link: Option<String>,
}

/// A client for one upstream registry.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    name: String,
    base: Url,
    /// Where the registry's `Authorization` may go: scheme, host and port, serialized.
    origin: String,
    client: reqwest::Client,
    auth: Auth,
    /// Where credentials may go; clients' own ones too (`access.rs`).
    realms: RealmPolicy,
    settings: ClientSettings,
    /// Every URL it requests, redirects included, must be at a public address.
    public_only: bool,
}

impl Upstream {
    /// A client on the system's clock.
    pub fn new(
        config: UpstreamConfig,
        settings: &ClientSettings,
    ) -> Result<Upstream, UpstreamError> {
        Self::with_clock(config, settings, Clock::system())
    }

    /// A client whose tokens live and die on `clock`.
    pub fn with_clock(
        config: UpstreamConfig,
        settings: &ClientSettings,
        clock: Clock,
    ) -> Result<Upstream, UpstreamError> {
        let mut base = Url::parse(&config.url).map_err(|e| UpstreamError::Config {
            detail: format!("upstream {}: URL {:?} is invalid: {e}", config.name, config.url),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(UpstreamError::Config {
                detail: format!("upstream {}: URL {:?} is not http(s)", config.name, config.url),
            });
        }
        // Paths are appended below the base, so it must end in a slash to keep its own path.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        // Its address literals are checked where each request is sent (`transport.rs`), the
        // base URL's included.
        let mut builder = reqwest::Client::builder()
            .redirect(Policy::none())
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")));
        if config.public_only {
            builder = builder.dns_resolver(Arc::new(public_only::PublicResolver));
        }
        if let Some(ca_file) = &settings.ca_file {
            let roots = crate::tls::client_roots(ca_file).map_err(|e| UpstreamError::Config {
                detail: format!("upstream {}: {e}", config.name),
            })?;
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder.build().map_err(|e| UpstreamError::Config {
            detail: format!("upstream {}: cannot build HTTP client: {e}", config.name),
        })?;
        let realms = RealmPolicy::new(&base, &config.token_realms);
        let inner = Inner {
            origin: base.origin().ascii_serialization(),
            base,
            client,
            auth: Auth::new(config.name.clone(), config.credentials, realms.clone(), clock),
            realms,
            settings: settings.clone(),
            public_only: config.public_only,
            name: config.name,
        };
        Ok(Upstream { inner: Arc::new(inner) })
    }

    /// The registry's name as clients spell it.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

impl Inner {
    /// `<base>/v2/<path>`; every part of `path` is a validated name, tag or digest.
    fn url(&self, path: &str) -> Result<Url, UpstreamError> {
        self.base.join(&format!("v2/{path}")).map_err(|e| UpstreamError::Config {
            detail: format!("upstream {}: cannot build a URL for {path}: {e}", self.name),
        })
    }

    fn bad(&self, detail: impl Into<String>) -> UpstreamError {
        UpstreamError::BadResponse { registry: self.name.clone(), detail: detail.into() }
    }
}

/// The token scope of a pull from `repo`.
fn pull_scope(repo: &RepositoryName) -> String {
    format!("repository:{repo}:pull")
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.inner.name)
            .field("url", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStream").field("size", &self.size).finish_non_exhaustive()
    }
}
