//! `shoal export` and `shoal import`: images carried between sites as OCI image layout
//! archives (`oci-layout`, `index.json`, `blobs/sha256/...` in a tar), the format
//! `skopeo copy oci-archive:` and `ctr import` read.
//!
//! Both talk to a node over its registry API, as any client does: export pulls through the
//! node (and so through its fleet and upstreams), import pushes into it (so the fleet's pins,
//! provenance and announcements apply as to any push). Bytes stream between the network and
//! the archive in constant memory and are verified on the way.

mod client;
mod export;
mod image_ref;
mod import;
mod layout;
mod offline;
mod progress;

pub use client::NodeClient;
pub use export::export;
pub use image_ref::ImageRef;
pub(crate) use import::ImportReport;
pub use import::import;
pub use offline::import_into;

use shoal_protocol::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0:?} is not an image reference such as docker.io/library/alpine:3.20: {1}")]
    BadReference(String, String),
    #[error("cannot reach the node at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the node answered {status} for {url}: {body}")]
    Refused { url: String, status: u16, body: String },
    #[error("the node's answer for {url} is not what the API specifies: {detail}")]
    BadAnswer { url: String, detail: String },
    #[error("{what} {digest} from the node does not match its digest")]
    Corrupt { what: &'static str, digest: Digest },
    #[error(
        "blob {digest} in {archive} is corrupt (its bytes hash to {actual}); make the archive again"
    )]
    CorruptInArchive { archive: String, digest: Digest, actual: Digest },
    #[error("{archive} is not an OCI image layout archive: {detail}")]
    NotLayout { archive: String, detail: String },
    #[error("{archive} lacks {digest}, which {parent} names; make the archive again")]
    Missing { archive: String, digest: Digest, parent: String },
    /// An archive names content by sha256 (`blobs/sha256/...`); content a manifest names only
    /// by sha512 is not carried yet.
    #[error(
        "manifest {manifest} names {named}, a sha512 digest, which an export cannot carry yet; \
         push that image with sha256 digests to export it"
    )]
    Sha512Content { manifest: Digest, named: String },
    #[error("no image of {image} is for platform {platform}")]
    NoPlatform { image: String, platform: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ArchiveError {
    fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        ArchiveError::Io { op, path: path.display().to_string(), source }
    }
}
