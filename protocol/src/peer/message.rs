//! Owner requests and responses as the node handles them: validated, typed, size-capped.
//!
//! Decoding checks the size before prost sees a byte, then checks every field, so a peer can
//! neither make a node allocate without bound nor hand it an unchecked name or digest.

use prost::Message as _;

use super::wire::{self, owner_request, owner_response};
use super::{MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE};
use crate::media_type::MAX_MANIFEST_SIZE;
use crate::{Digest, DigestError, NameError, RepositoryName, Tag, TagError};

pub use super::wire::{ErrorCode, HoldState};

const MAX_REGISTRY_LEN: usize = 255;
const MAX_URL_LEN: usize = 2048;
const MAX_MEDIA_TYPE_LEN: usize = 255;
const MAX_PLATFORM_LEN: usize = 64;
/// More copies than any fleet needs; a larger number is a typo or an attack.
pub const MAX_REPLICAS: u32 = 64;

/// An image a member is asked to keep: see [`super::wire::HoldImage`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageHold {
    pub registry: String,
    pub repo: RepositoryName,
    pub digest: Digest,
    pub tag: Option<Tag>,
    pub platform: Option<String>,
    pub replicas: u32,
    /// `None` for a warm-up copy, which is not pinned.
    pub pinned_at_ms: Option<u64>,
    /// Its referrers (signatures, SBOMs) are kept with it.
    pub with_referrers: bool,
}

/// An image unpinned (and with `delete`, its pushed tag deleted) at `released_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRelease {
    pub registry: String,
    pub repo: RepositoryName,
    pub digest: Digest,
    pub released_at_ms: u64,
    pub delete: bool,
}

/// A question for the owner of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerRequest {
    /// Fetch a blob: from the upstream for the fleet, or with `into_site`, into the asker's site.
    FetchBlob {
        registry: String,
        repo: RepositoryName,
        digest: Digest,
        into_site: bool,
    },
    ResolveTag {
        registry: String,
        repo: RepositoryName,
        tag: Tag,
    },
    Hold(ImageHold),
    Release(ImageRelease),
}

/// The owner's answer. `Error` never carries [`ErrorCode::Unspecified`]: decoding maps codes
/// it does not know to [`ErrorCode::Internal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerResponse {
    FetchAccepted {
        http_url: String,
    },
    TagResolved {
        digest: Digest,
        media_type: String,
        manifest: Vec<u8>,
    },
    /// Never [`HoldState::Unknown`]: decoding maps states it does not know to an error.
    Hold(HoldState),
    Error(ErrorCode),
}

/// Why bytes from a peer are not a message we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message of {size} bytes is over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("message is not valid protobuf: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("message carries no request or response")]
    Empty,
    #[error("registry name is empty, too long or has characters a host name cannot have")]
    BadRegistry,
    #[error("repository name: {0}")]
    BadRepository(#[from] NameError),
    #[error("digest: {0}")]
    BadDigest(#[from] DigestError),
    #[error("tag: {0}")]
    BadTag(#[from] TagError),
    #[error("data-plane URL is not an http(s) URL of at most {MAX_URL_LEN} bytes")]
    BadUrl,
    #[error("media type is empty, too long or not printable ASCII")]
    BadMediaType,
    #[error("platform is not os/arch[/variant] of at most {MAX_PLATFORM_LEN} bytes")]
    BadPlatform,
    #[error("replica count is 0 or over {MAX_REPLICAS}")]
    BadReplicas,
    #[error("manifest of {0} bytes is over the manifest size limit")]
    ManifestTooLarge(usize),
    #[error("manifest bytes hash to {actual}, not to the digest {claimed} sent with them")]
    ManifestDigestMismatch { claimed: Digest, actual: Digest },
}

impl OwnerRequest {
    pub fn to_wire(&self) -> wire::OwnerRequest {
        let kind = match self {
            Self::FetchBlob { registry, repo, digest, into_site } => {
                owner_request::Kind::FetchBlob(wire::FetchBlob {
                    registry: registry.clone(),
                    repo: repo.as_str().to_owned(),
                    digest: digest.to_string(),
                    into_site: *into_site,
                })
            }
            Self::ResolveTag { registry, repo, tag } => {
                owner_request::Kind::ResolveTag(wire::ResolveTag {
                    registry: registry.clone(),
                    repo: repo.as_str().to_owned(),
                    tag: tag.as_str().to_owned(),
                })
            }
            Self::Hold(h) => owner_request::Kind::HoldImage(wire::HoldImage {
                registry: h.registry.clone(),
                repo: h.repo.as_str().to_owned(),
                digest: h.digest.to_string(),
                tag: h.tag.as_ref().map(|t| t.as_str().to_owned()).unwrap_or_default(),
                platform: h.platform.clone().unwrap_or_default(),
                replicas: h.replicas,
                pinned_at_ms: h.pinned_at_ms.unwrap_or(0),
                with_referrers: h.with_referrers,
            }),
            Self::Release(r) => owner_request::Kind::ReleaseImage(wire::ReleaseImage {
                registry: r.registry.clone(),
                repo: r.repo.as_str().to_owned(),
                digest: r.digest.to_string(),
                released_at_ms: r.released_at_ms,
                delete: r.delete,
            }),
        };
        wire::OwnerRequest { kind: Some(kind) }
    }

    pub fn from_wire(msg: wire::OwnerRequest) -> Result<Self, MessageError> {
        match msg.kind.ok_or(MessageError::Empty)? {
            owner_request::Kind::FetchBlob(m) => Ok(Self::FetchBlob {
                registry: check_registry(m.registry)?,
                repo: RepositoryName::parse(&m.repo)?,
                digest: Digest::parse(&m.digest)?,
                into_site: m.into_site,
            }),
            owner_request::Kind::ResolveTag(m) => Ok(Self::ResolveTag {
                registry: check_registry(m.registry)?,
                repo: RepositoryName::parse(&m.repo)?,
                tag: Tag::parse(&m.tag)?,
            }),
            owner_request::Kind::HoldImage(m) => {
                if m.replicas == 0 || m.replicas > MAX_REPLICAS {
                    return Err(MessageError::BadReplicas);
                }
                Ok(Self::Hold(ImageHold {
                    registry: check_registry(m.registry)?,
                    repo: RepositoryName::parse(&m.repo)?,
                    digest: Digest::parse(&m.digest)?,
                    tag: (!m.tag.is_empty()).then(|| Tag::parse(&m.tag)).transpose()?,
                    platform: (!m.platform.is_empty())
                        .then(|| check_platform(m.platform))
                        .transpose()?,
                    replicas: m.replicas,
                    pinned_at_ms: (m.pinned_at_ms != 0).then_some(m.pinned_at_ms),
                    with_referrers: m.with_referrers,
                }))
            }
            owner_request::Kind::ReleaseImage(m) => Ok(Self::Release(ImageRelease {
                registry: check_registry(m.registry)?,
                repo: RepositoryName::parse(&m.repo)?,
                digest: Digest::parse(&m.digest)?,
                released_at_ms: m.released_at_ms,
                delete: m.delete,
            })),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_wire().encode_to_vec()
    }

    /// Decodes a request, refusing more than [`MAX_REQUEST_SIZE`] bytes before parsing.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        check_size(bytes.len(), MAX_REQUEST_SIZE)?;
        Self::from_wire(wire::OwnerRequest::decode(bytes)?)
    }
}

impl OwnerResponse {
    pub fn to_wire(&self) -> wire::OwnerResponse {
        let result = match self {
            Self::FetchAccepted { http_url } => {
                owner_response::Result::FetchAccepted(wire::FetchAccepted {
                    http_url: http_url.clone(),
                })
            }
            Self::TagResolved { digest, media_type, manifest } => {
                owner_response::Result::TagResolved(wire::TagResolved {
                    digest: digest.to_string(),
                    media_type: media_type.clone(),
                    manifest: manifest.clone(),
                })
            }
            Self::Hold(state) => owner_response::Result::Hold(*state as i32),
            Self::Error(code) => owner_response::Result::Error(*code as i32),
        };
        wire::OwnerResponse { result: Some(result) }
    }

    pub fn from_wire(msg: wire::OwnerResponse) -> Result<Self, MessageError> {
        match msg.result.ok_or(MessageError::Empty)? {
            owner_response::Result::FetchAccepted(m) => {
                Ok(Self::FetchAccepted { http_url: check_url(m.http_url)? })
            }
            owner_response::Result::TagResolved(m) => {
                let digest = Digest::parse(&m.digest)?;
                if m.manifest.len() as u64 > MAX_MANIFEST_SIZE {
                    return Err(MessageError::ManifestTooLarge(m.manifest.len()));
                }
                let actual = Digest::of(&m.manifest);
                if actual != digest {
                    return Err(MessageError::ManifestDigestMismatch { claimed: digest, actual });
                }
                let media_type = check_media_type(m.media_type)?;
                Ok(Self::TagResolved { digest, media_type, manifest: m.manifest })
            }
            owner_response::Result::Hold(state) => match HoldState::try_from(state) {
                Ok(HoldState::Unknown) | Err(_) => Ok(Self::Error(ErrorCode::Internal)),
                Ok(known) => Ok(Self::Hold(known)),
            },
            owner_response::Result::Error(code) => Ok(Self::Error(
                // A newer peer may send a code this node does not know; it is still a failure.
                match ErrorCode::try_from(code) {
                    Ok(ErrorCode::Unspecified) | Err(_) => ErrorCode::Internal,
                    Ok(known) => known,
                },
            )),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.to_wire().encode_to_vec()
    }

    /// Decodes a response, refusing more than [`MAX_RESPONSE_SIZE`] bytes before parsing.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        check_size(bytes.len(), MAX_RESPONSE_SIZE)?;
        Self::from_wire(wire::OwnerResponse::decode(bytes)?)
    }
}

fn check_size(size: usize, max: usize) -> Result<(), MessageError> {
    if size > max { Err(MessageError::TooLarge { size, max }) } else { Ok(()) }
}

/// A registry as clients spell it: a host name, an IPv4 or bracketed IPv6 address, a port.
fn check_registry(s: String) -> Result<String, MessageError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_REGISTRY_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    if ok { Ok(s) } else { Err(MessageError::BadRegistry) }
}

pub(super) fn check_url(s: String) -> Result<String, MessageError> {
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() <= MAX_URL_LEN
        && s.bytes().all(|b| b.is_ascii_graphic());
    if ok { Ok(s) } else { Err(MessageError::BadUrl) }
}

/// `os/arch` or `os/arch/variant`, each part a short lowercase word.
pub fn check_platform(s: String) -> Result<String, MessageError> {
    let parts: Vec<&str> = s.split('/').collect();
    let ok = s.len() <= MAX_PLATFORM_LEN
        && (2..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
    if ok { Ok(s) } else { Err(MessageError::BadPlatform) }
}

fn check_media_type(s: String) -> Result<String, MessageError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_MEDIA_TYPE_LEN
        && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if ok { Ok(s) } else { Err(MessageError::BadMediaType) }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
