//! The protobuf messages of `/shoal/owner/1`, exactly as they travel.
//!
//! Field numbers are the contract: never renumber or reuse one; add new fields with new
//! numbers. Strings are validated by [`super::OwnerRequest::from_wire`] and
//! [`super::OwnerResponse::from_wire`], not here.

/// A question for the owner of a key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OwnerRequest {
    #[prost(oneof = "owner_request::Kind", tags = "1, 2")]
    pub kind: Option<owner_request::Kind>,
}

pub mod owner_request {
    /// The questions an owner answers.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "1")]
        FetchBlob(super::FetchBlob),
        #[prost(message, tag = "2")]
        ResolveTag(super::ResolveTag),
    }
}

/// "Fetch this blob from upstream (once, for the whole fleet) and tell me where to read it."
#[derive(Clone, PartialEq, prost::Message)]
pub struct FetchBlob {
    #[prost(string, tag = "1")]
    pub registry: String,
    #[prost(string, tag = "2")]
    pub repo: String,
    /// Canonical `sha256:<hex>` form.
    #[prost(string, tag = "3")]
    pub digest: String,
    /// "You are my site's owner of this digest: bring it into our site", from wherever the
    /// asked node's own miss path takes it (a provider in another site, the fleet's owner),
    /// instead of the upstream. False (absent) from nodes without sites.
    #[prost(bool, tag = "4")]
    pub into_site: bool,
}

/// "Which manifest does this tag point at now?"
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResolveTag {
    #[prost(string, tag = "1")]
    pub registry: String,
    #[prost(string, tag = "2")]
    pub repo: String,
    #[prost(string, tag = "3")]
    pub tag: String,
}

/// The owner's answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OwnerResponse {
    #[prost(oneof = "owner_response::Result", tags = "1, 2, 3")]
    pub result: Option<owner_response::Result>,
}

pub mod owner_response {
    /// One answer per question, or an error code for either.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Result {
        #[prost(message, tag = "1")]
        FetchAccepted(super::FetchAccepted),
        #[prost(message, tag = "2")]
        TagResolved(super::TagResolved),
        #[prost(enumeration = "super::ErrorCode", tag = "3")]
        Error(i32),
    }
}

/// The owner has started (or joined) its download; the bytes are at `http_url` as they arrive.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FetchAccepted {
    #[prost(string, tag = "1")]
    pub http_url: String,
}

/// The manifest a tag points at, with its exact upstream bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TagResolved {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(string, tag = "2")]
    pub media_type: String,
    #[prost(bytes = "vec", tag = "3")]
    pub manifest: Vec<u8>,
}

/// Why an owner could not answer. Codes, not strings: the asker decides what to do by code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ErrorCode {
    /// Never sent; what a decoder sees for a code it does not know.
    Unspecified = 0,
    /// The upstream says the blob, manifest or tag does not exist.
    NotFound = 1,
    /// The owner could not reach the upstream (or it answered 5xx or 429).
    UpstreamUnavailable = 2,
    /// The owner will not do it: unknown registry, malformed request, or it is shutting down.
    Refused = 3,
    /// Something failed inside the owner.
    Internal = 4,
}
