//! What peers say to each other: DHT keys, the owner distance, the advert every node
//! publishes about itself, the owner request/response messages, the signature on data-plane
//! requests, and the pieces and peers its answers name.
//!
//! The wire form of the messages is protobuf through `prost`'s derive (no `.proto` file, no
//! code generation step); their version lives in the protocol name (`/shoal/owner/1`), so a
//! field may be added without breaking older peers. The typed forms in [`message`] are what
//! the node handles: they are only built from wire messages that passed validation.

mod advert;
mod auth;
mod keys;
mod message;
mod pieces;
mod referrals;
pub mod wire;

pub use advert::{AdvertError, PeerAdvert};
pub use auth::{
    MAX_CLOCK_SKEW_SECS, NONCE_LEN, PEER_AUTH_HEADER, PeerAuth, PeerAuthError, RequestKey,
    SignedRequest, canonical,
};
pub use keys::{blob_key, owner_distance, tag_key};
pub use message::{
    ErrorCode, HoldState, ImageHold, ImageRelease, MAX_REPLICAS, MessageError, OwnerRequest,
    OwnerResponse, check_platform,
};
pub use pieces::{
    Have, MAX_PIECES, MIN_PIECE_SIZE, PIECES_HEADER, PieceSet, PieceStatus, PiecesError,
    piece_count, piece_range, piece_size,
};
pub use referrals::{MAX_REFERRALS, PEERS_HEADER, format_referrals, parse_referrals};

/// The libp2p protocol name of owner requests.
pub const OWNER_PROTOCOL: &str = "/shoal/owner/1";
/// The Kademlia protocol name: private, so Shoal's DHT never merges with a public one.
pub const KAD_PROTOCOL: &str = "/shoal/kad/1.0.0";
/// The identify protocol version string every Shoal node sends.
pub const IDENTIFY_PROTOCOL: &str = "/shoal/id/1";

/// Largest encoded owner request accepted: names and a digest, nothing more.
pub const MAX_REQUEST_SIZE: usize = 64 * 1024;
/// Largest encoded owner response accepted: a resolved tag carries its manifest.
pub const MAX_RESPONSE_SIZE: usize = 8 * 1024 * 1024;
