//! The protobuf messages of `/shoal/owner/1`, exactly as they travel.
//!
//! Field numbers are the contract: never renumber or reuse one; add new fields with new
//! numbers. Strings are validated by [`super::OwnerRequest::from_wire`] and
//! [`super::OwnerResponse::from_wire`], not here.

/// A question for the owner of a key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OwnerRequest {
    #[prost(oneof = "owner_request::Kind", tags = "1, 2, 3, 4")]
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
        #[prost(message, tag = "3")]
        HoldImage(super::HoldImage),
        #[prost(message, tag = "4")]
        ReleaseImage(super::ReleaseImage),
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

/// "Keep this image (a manifest and all it names): take what you lack from the fleet, and
/// serve its tag if it has one." Sent to the members an image is placed on, again and again
/// (it is idempotent), so that a member that was away or is new learns what it should hold.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HoldImage {
    #[prost(string, tag = "1")]
    pub registry: String,
    #[prost(string, tag = "2")]
    pub repo: String,
    /// The manifest's digest, canonical `sha256:<hex>`.
    #[prost(string, tag = "3")]
    pub digest: String,
    /// A pushed tag that points at the manifest; empty for none.
    #[prost(string, tag = "4")]
    pub tag: String,
    /// `os/arch[/variant]` of an index's children to keep; empty for all.
    #[prost(string, tag = "5")]
    pub platform: String,
    /// How many members keep the image.
    #[prost(uint32, tag = "6")]
    pub replicas: u32,
    /// When the image was pinned (milliseconds since the Unix epoch); 0 for a warm-up copy
    /// that the cache may evict like any other.
    #[prost(uint64, tag = "7")]
    pub pinned_at_ms: u64,
    /// The image's referrers (signatures, SBOMs) are kept with it.
    #[prost(bool, tag = "8")]
    pub with_referrers: bool,
}

/// "This image is unpinned (or deleted) since `released_at_ms`": the pin is dropped, and with
/// `delete`, the pushed tag too.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReleaseImage {
    #[prost(string, tag = "1")]
    pub registry: String,
    #[prost(string, tag = "2")]
    pub repo: String,
    #[prost(string, tag = "3")]
    pub digest: String,
    #[prost(uint64, tag = "4")]
    pub released_at_ms: u64,
    #[prost(bool, tag = "5")]
    pub delete: bool,
}

/// The owner's answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OwnerResponse {
    #[prost(oneof = "owner_response::Result", tags = "1, 2, 3, 4")]
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
        #[prost(enumeration = "super::HoldState", tag = "4")]
        Hold(i32),
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

/// Where an asked member stands with an image after a hold or release request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum HoldState {
    /// Never sent; what a decoder sees for a state it does not know.
    Unknown = 0,
    /// It has started bringing in what it lacks.
    Fetching = 1,
    /// It holds the whole image (pinned, if the request pinned).
    Whole = 2,
    /// It knows a release newer than the pin: the asker should drop its own pin.
    Released = 3,
    /// It knows a delete newer than the pin: the asker should drop its pin and pushed tag.
    Deleted = 4,
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
