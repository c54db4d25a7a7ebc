//! Turns a request line into a typed [`Endpoint`]: which API, which upstream, which repository.
//!
//! The raw, still percent-encoded path is parsed, so `%2e%2e` or `%2f` can never sneak past the
//! name grammar by being decoded later. The upstream registry is named in one of three ways:
//! containerd's `?ns=docker.io`, a first path component that is a host (`/v2/ghcr.io/org/app/`)
//! or a configured alias, or nothing (the default upstream, with Docker's `library/` rule).

use std::collections::{BTreeMap, BTreeSet};

use shoal_protocol::{
    AnyDigest, Digest, DigestError, Reference, RepositoryName, Sha512Digest, Tag,
};

use super::error::ApiError;
use shoal_protocol::is_registry_host;

use crate::fetch::{AliasOf, Target};

/// Names Docker clients use for Docker Hub besides `docker.io`.
const DOCKER_HUB_SPELLINGS: &[&str] =
    &["index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`: the API version check.
    Base,
    Manifest {
        target: Target,
        reference: Reference,
    },
    Blob {
        target: Target,
        digest: Digest,
    },
    /// A manifest or blob named by its sha512: served, deleted or (a manifest) pushed as the
    /// content that digest is an alias of.
    ByAlias {
        target: Target,
        digest: Sha512Digest,
        of: AliasOf,
    },
    /// `client_name` is the name as the client wrote it, to build the next page's link.
    Tags {
        target: Target,
        client_name: String,
        page: TagsQuery,
    },
    /// `POST /v2/<name>/blobs/uploads/`: start an upload, push a blob whole, or mount one.
    UploadStart {
        target: Target,
        client_name: String,
        query: UploadQuery,
    },
    /// `/v2/<name>/blobs/uploads/<id>`: an upload in progress.
    Upload {
        target: Target,
        client_name: String,
        id: String,
        digest: Option<AnyDigest>,
    },
    /// `GET /v2/<name>/referrers/<digest>`.
    Referrers {
        target: Target,
        digest: Digest,
        artifact_type: Option<String>,
    },
    /// A blob this node holds or is fetching, for a peer (never starts a fetch).
    PeerBlob {
        digest: Digest,
    },
    /// The piece digests of a blob this node holds, for a peer whose copy failed verification.
    PeerPieces {
        digest: Digest,
    },
    /// Which sha256 a sha512 names, for a peer: only aliases this node checked.
    PeerAlias {
        digest: Sha512Digest,
    },
    /// Prometheus counters.
    Metrics,
    /// `/_shoal/status`: what `shoal status` shows.
    Status,
    /// `GET /_shoal/pins`: the images this node keeps.
    Pins,
    /// `PUT` (pin) or `DELETE` (unpin) `/_shoal/pins/<name>/manifests/<reference>`.
    Pin {
        target: Target,
        reference: Reference,
        platform: Option<String>,
        replicas: Option<u32>,
        with_referrers: bool,
    },
    /// `POST /_shoal/warm/<name>/manifests/<reference>`: fetch an image onto members ahead of
    /// a rollout.
    Warm {
        target: Target,
        reference: Reference,
        platform: Option<String>,
        replicas: Option<u32>,
        all: bool,
        with_referrers: bool,
    },
    /// `/healthz`: the process serves.
    Health,
    /// `/readyz`: the store can take writes.
    Ready,
    /// The catalog: not served (a cache cannot list what its upstreams hold).
    Unsupported(&'static str),
}

/// The query of an upload's first request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadQuery {
    /// The whole blob is in this request (a monolithic upload).
    pub digest: Option<AnyDigest>,
    /// Mount this blob instead of uploading it...
    pub mount: Option<AnyDigest>,
    /// ...from this repository of the same registry.
    pub from: Option<RepositoryName>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct RawUploadQuery {
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
    /// The algorithm a client means to name the blob with (the spec's `digest-algorithm`).
    #[serde(rename = "digest-algorithm")]
    digest_algorithm: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct PlaceQuery {
    platform: Option<String>,
    replicas: Option<u32>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    referrers: bool,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ReferrersQuery {
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
}

/// Upload ids this node hands out are hex; anything else names no upload.
fn upload_id(id: &str) -> Result<String, ApiError> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_owned())
    } else {
        Err(ApiError::UploadUnknown(id.chars().take(64).collect()))
    }
}

fn digest_param(value: Option<String>) -> Result<Option<AnyDigest>, ApiError> {
    value
        .map(|d| AnyDigest::parse(&d).map_err(|e| ApiError::DigestInvalid(e.to_string())))
        .transpose()
}

/// A digest under the image spec's other registered algorithm (`blake3`), in its canonical
/// form: content that exists elsewhere, which this node cannot hold.
fn other_registered_algorithm(digest: &str) -> bool {
    match digest.split_once(':') {
        Some(("blake3", encoded)) => {
            encoded.len() == 64 && encoded.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }
        _ => false,
    }
}

/// A mount of a blob named with an algorithm this node does not hold content under cannot
/// succeed: the spec's answer to a mount that cannot be made is a plain upload (`202`).
fn mount_param(value: Option<String>) -> Result<Option<AnyDigest>, ApiError> {
    match value.as_deref().map(AnyDigest::parse) {
        Some(Err(DigestError::UnsupportedAlgorithm(_))) => Ok(None),
        _ => digest_param(value),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct TagsQuery {
    pub n: Option<u32>,
    pub last: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct CommonQuery {
    ns: Option<String>,
}

/// The part of the configuration that decides which upstream a name belongs to.
#[derive(Debug, Clone)]
pub struct Routing {
    pub default_upstream: String,
    pub aliases: BTreeMap<String, String>,
    /// Registry names the node hosts itself (`local/app`).
    pub hosted: BTreeSet<String>,
}

/// Where `shoal pins` reads the images a node keeps.
pub const PINS_PATH: &str = "/_shoal/pins";

impl Routing {
    pub fn is_hosted(&self, registry: &str) -> bool {
        self.hosted.contains(registry)
    }
}

impl Routing {
    pub fn endpoint(&self, path: &str, query: Option<&str>) -> Result<Endpoint, ApiError> {
        match path {
            "/metrics" => return Ok(Endpoint::Metrics),
            crate::status::STATUS_PATH => return Ok(Endpoint::Status),
            "/healthz" => return Ok(Endpoint::Health),
            "/readyz" => return Ok(Endpoint::Ready),
            PINS_PATH => return Ok(Endpoint::Pins),
            _ => {}
        }
        if let Some((kind, rest)) = path
            .strip_prefix("/_shoal/pins/")
            .map(|r| ("pin", r))
            .or_else(|| path.strip_prefix("/_shoal/warm/").map(|r| ("warm", r)))
        {
            return self.placement_endpoint(kind, rest, query.unwrap_or(""));
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return if path == "/v2" { Ok(Endpoint::Base) } else { Err(ApiError::NotFound) };
        };
        // `_` cannot start a repository name, so this prefix never shadows an image.
        if let Some(digest) = rest.strip_prefix("_shoal/peer/blobs/") {
            let digest =
                Digest::parse(digest).map_err(|e| ApiError::DigestInvalid(e.to_string()))?;
            return Ok(Endpoint::PeerBlob { digest });
        }
        if let Some(digest) = rest.strip_prefix("_shoal/peer/aliases/") {
            return match AnyDigest::parse(digest) {
                Ok(AnyDigest::Sha512(digest)) => Ok(Endpoint::PeerAlias { digest }),
                Ok(AnyDigest::Sha256(_)) => Err(ApiError::DigestInvalid(
                    "an alias is asked for by its sha512 digest".to_owned(),
                )),
                Err(e) => Err(ApiError::DigestInvalid(e.to_string())),
            };
        }
        if let Some(digest) = rest.strip_prefix("_shoal/peer/pieces/") {
            let digest =
                Digest::parse(digest).map_err(|e| ApiError::DigestInvalid(e.to_string()))?;
            return Ok(Endpoint::PeerPieces { digest });
        }
        if rest.is_empty() {
            return Ok(Endpoint::Base);
        }
        let query_text = query.unwrap_or("");
        if rest == "_catalog" {
            return Ok(Endpoint::Unsupported("the catalog is not served by a pull-through cache"));
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            let page: TagsQuery = serde_urlencoded_query(query_text)?;
            let target = self.target(name, query_text)?;
            return Ok(Endpoint::Tags { target, client_name: name.to_owned(), page });
        }
        if let Some((name, id)) = rest.split_once("/blobs/uploads") {
            let target = self.target(name, query_text)?;
            let client_name = name.to_owned();
            return match id.trim_start_matches('/') {
                "" => {
                    let raw: RawUploadQuery = serde_urlencoded_query(query_text)?;
                    let from = match raw.from {
                        None => None,
                        Some(from) => {
                            let from = self.target(&from, query_text)?;
                            // A mount crosses repositories, never registries.
                            (from.registry == target.registry).then_some(from.repo)
                        }
                    };
                    if let Some(algorithm) = raw.digest_algorithm
                        && algorithm != "sha256"
                        && algorithm != "sha512"
                    {
                        // Echoed in the error: bounded, as `Digest::parse` bounds its own.
                        let named = algorithm.chars().take(32).collect();
                        let unsupported = DigestError::UnsupportedAlgorithm(named);
                        return Err(ApiError::DigestInvalid(unsupported.to_string()));
                    }
                    let query = UploadQuery {
                        digest: digest_param(raw.digest)?,
                        mount: mount_param(raw.mount)?,
                        from,
                    };
                    Ok(Endpoint::UploadStart { target, client_name, query })
                }
                id => {
                    let raw: RawUploadQuery = serde_urlencoded_query(query_text)?;
                    let (id, digest) = (upload_id(id)?, digest_param(raw.digest)?);
                    Ok(Endpoint::Upload { target, client_name, id, digest })
                }
            };
        }
        if let Some((name, digest)) = rest.rsplit_once("/referrers/") {
            let target = self.target(name, query_text)?;
            let digest =
                Digest::parse(digest).map_err(|e| ApiError::DigestInvalid(e.to_string()))?;
            let q: ReferrersQuery = serde_urlencoded_query(query_text)?;
            return Ok(Endpoint::Referrers { target, digest, artifact_type: q.artifact_type });
        }
        if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
            let target = self.target(name, query_text)?;
            match AnyDigest::parse(reference) {
                Ok(AnyDigest::Sha512(digest)) => {
                    return Ok(Endpoint::ByAlias { target, digest, of: AliasOf::Manifest });
                }
                Err(e) if reference.starts_with("sha512:") => {
                    return Err(ApiError::ReferenceInvalid(e.into()));
                }
                _ => {}
            }
            let reference = Reference::parse(reference).map_err(ApiError::ReferenceInvalid)?;
            return Ok(Endpoint::Manifest { target, reference });
        }
        if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
            let target = self.target(name, query_text)?;
            let digest = AnyDigest::parse(digest).map_err(|e| match e {
                // A valid digest, but no blob is held under that algorithm: not here.
                DigestError::UnsupportedAlgorithm(_) if other_registered_algorithm(digest) => {
                    ApiError::BlobAlgorithm(e)
                }
                e => ApiError::DigestInvalid(e.to_string()),
            })?;
            return Ok(match digest {
                AnyDigest::Sha256(digest) => Endpoint::Blob { target, digest },
                AnyDigest::Sha512(digest) => {
                    Endpoint::ByAlias { target, digest, of: AliasOf::Blob }
                }
            });
        }
        Err(ApiError::NotFound)
    }

    /// `<name>/manifests/<reference>` under the pins or warm prefix.
    fn placement_endpoint(
        &self,
        kind: &str,
        rest: &str,
        query: &str,
    ) -> Result<Endpoint, ApiError> {
        let (name, reference) = rest.rsplit_once("/manifests/").ok_or(ApiError::NotFound)?;
        let target = self.target(name, query)?;
        let reference = Reference::parse(reference).map_err(ApiError::ReferenceInvalid)?;
        let q: PlaceQuery = serde_urlencoded_query(query)?;
        let platform = q
            .platform
            .map(shoal_protocol::peer::check_platform)
            .transpose()
            .map_err(|e| ApiError::QueryInvalid(e.to_string()))?;
        if let Some(n) = q.replicas
            && (n == 0 || n > shoal_protocol::peer::MAX_REPLICAS)
        {
            return Err(ApiError::QueryInvalid(format!(
                "replicas={n}: give a number of members from 1 to {}",
                shoal_protocol::peer::MAX_REPLICAS
            )));
        }
        Ok(match kind {
            "pin" => Endpoint::Pin {
                target,
                reference,
                platform,
                replicas: q.replicas,
                with_referrers: q.referrers,
            },
            _ => Endpoint::Warm {
                target,
                reference,
                platform,
                replicas: q.replicas,
                all: q.all,
                with_referrers: q.referrers,
            },
        })
    }

    fn target(&self, name: &str, query: &str) -> Result<Target, ApiError> {
        let common: CommonQuery = serde_urlencoded_query(query)?;
        let (registry, repo) = match common.ns {
            Some(ns) => (ns, name),
            None => match name.split_once('/') {
                Some((first, rest))
                    if is_host_like(first)
                        || self.aliases.contains_key(first)
                        || self.hosted.contains(first) =>
                {
                    (first.to_owned(), rest)
                }
                _ => (self.default_upstream.clone(), name),
            },
        };
        let registry = self.canonical_registry(&registry);
        if !is_registry_host(&registry) {
            return Err(ApiError::NameInvalid(format!(
                "{:?} is not a registry host name",
                registry.chars().take(64).collect::<String>()
            )));
        }
        let invalid = |e: shoal_protocol::NameError| ApiError::NameInvalid(e.to_string());
        let repo = RepositoryName::parse(repo).map_err(invalid)?;
        let repo = if registry == "docker.io" {
            repo.with_library_prefix().map_err(invalid)?
        } else {
            repo
        };
        Ok(Target { registry, repo })
    }

    fn canonical_registry(&self, name: &str) -> String {
        if let Some(target) = self.aliases.get(name) {
            return target.clone();
        }
        if DOCKER_HUB_SPELLINGS.contains(&name) {
            return "docker.io".to_owned();
        }
        name.to_owned()
    }
}

/// Docker's rule for "is this first component a registry host".
fn is_host_like(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// Tags a manifest push by digest may carry, `?tag=1.2.3&tag=latest` (distribution spec 1.1+,
/// a MAY): at most this many per request; the spec asks that at least 10 be taken.
pub const MAX_PUSH_TAGS: usize = 100;

/// The `tag` parameters of a manifest push, each checked, in order, without repeats.
pub fn push_tags(query: Option<&str>) -> Result<Vec<Tag>, ApiError> {
    let mut tags: Vec<Tag> = Vec::new();
    let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
    for value in pairs.filter(|(key, _)| key == "tag").map(|(_, value)| value) {
        let tag =
            Tag::parse(&value).map_err(|e| ApiError::TagInvalid(format!("tag {value:?}: {e}")))?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
        if tags.len() > MAX_PUSH_TAGS {
            return Err(ApiError::TooManyTags { max: MAX_PUSH_TAGS });
        }
    }
    Ok(tags)
}

fn serde_urlencoded_query<T: serde::de::DeserializeOwned + Default>(
    query: &str,
) -> Result<T, ApiError> {
    if query.is_empty() {
        return Ok(T::default());
    }
    let uri: http::Uri =
        format!("/?{query}").parse().map_err(|_| ApiError::QueryInvalid(query.to_owned()))?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::QueryInvalid(e.body_text()))
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
