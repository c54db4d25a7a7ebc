//! Shoal's shared vocabulary: the types every part of the system agrees on.
//!
//! This crate has no I/O and no async runtime. It parses and validates what arrives from
//! clients, upstream registries and peers — digests, repository names, tags, media types — so
//! that the node never handles an unchecked string where one of these is meant.

pub mod alias;
pub mod digest;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod peer;
pub mod reference;

pub use alias::{AnyDigest, Sha512Digest};
pub use digest::{Digest, DigestError, DigestMismatch, DigestVerifier};
pub use manifest::Manifest;
pub use name::{NameError, RepositoryName, is_registry_host};
pub use reference::{Reference, ReferenceError, Tag, TagError};
