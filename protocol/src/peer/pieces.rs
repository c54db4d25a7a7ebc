//! How a blob is cut into pieces for the swarm, and how a node says which pieces it holds.
//!
//! Every node derives the same piece size from a blob's size ([`piece_size`]), so pieces are
//! named by index alone. A node answers every data-plane request for a blob with its
//! [`PieceStatus`] in the `x-shoal-pieces` header:
//!
//! ```text
//! size=<bytes>; piece=<bytes>; complete
//! size=<bytes>; piece=<bytes>; have=<hex bitmap>[; live=<bytes>]
//! ```
//!
//! The bitmap has one bit per piece, piece 0 in the high bit of the first byte. `live` is
//! present while the node receives the blob in order from one stream (the upstream, on a
//! digest's owner): bytes below it are written, and a request starting there is followed as
//! the bytes arrive instead of being refused.

use std::fmt;

/// Header that carries a [`PieceStatus`] on peer data-plane responses.
pub const PIECES_HEADER: &str = "x-shoal-pieces";

/// The smallest piece: small enough that a 256 MiB layer spreads over 256 pieces, large
/// enough that a request's round trip is small next to its transfer.
pub const MIN_PIECE_SIZE: u64 = 1 << 20;
/// At most this many pieces per blob, so a bitmap is at most 512 bytes (1 KiB of hex): the
/// piece size doubles for blobs above 4 GiB.
pub const MAX_PIECES: u64 = 4096;

/// The piece size of a blob of `size` bytes: the same on every node.
pub fn piece_size(size: u64) -> u64 {
    let mut piece = MIN_PIECE_SIZE;
    while size.div_ceil(piece) > MAX_PIECES {
        piece *= 2;
    }
    piece
}

/// The number of pieces of a blob of `size` bytes (a blob of 0 bytes has none).
pub fn piece_count(size: u64) -> u32 {
    // At most MAX_PIECES by construction of `piece_size`.
    size.div_ceil(piece_size(size)) as u32
}

/// The byte range `[start, end)` of piece `index` of a blob of `size` bytes.
pub fn piece_range(size: u64, index: u32) -> (u64, u64) {
    let piece = piece_size(size);
    let start = u64::from(index) * piece;
    (start.min(size), (start + piece).min(size))
}

/// A set of piece indexes `0..len`.
#[derive(Clone, PartialEq, Eq)]
pub struct PieceSet {
    len: u32,
    bits: Vec<u8>,
}

impl PieceSet {
    pub fn empty(len: u32) -> Self {
        Self { len, bits: vec![0; (len as usize).div_ceil(8)] }
    }

    pub fn full(len: u32) -> Self {
        let mut set = Self::empty(len);
        for i in 0..len {
            set.insert(i);
        }
        set
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, index: u32) {
        if index < self.len {
            self.bits[index as usize / 8] |= 0x80 >> (index % 8);
        }
    }

    pub fn remove(&mut self, index: u32) {
        if index < self.len {
            self.bits[index as usize / 8] &= !(0x80 >> (index % 8));
        }
    }

    pub fn contains(&self, index: u32) -> bool {
        index < self.len && self.bits[index as usize / 8] & (0x80 >> (index % 8)) != 0
    }

    /// How many pieces are in the set.
    pub fn count(&self) -> u32 {
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.contains(i))
    }

    fn to_hex(&self) -> String {
        hex::encode(&self.bits)
    }

    fn from_hex(len: u32, text: &str) -> Result<Self, PiecesError> {
        // Lowercase, as `to_hex` writes it.
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(PiecesError::Malformed("have"));
        }
        let bits = hex::decode(text).map_err(|_| PiecesError::Malformed("have"))?;
        if bits.len() != (len as usize).div_ceil(8) {
            return Err(PiecesError::Malformed("have"));
        }
        let set = Self { len, bits };
        // Bits past the last piece must be clear: one spelling per set.
        if (len..(set.bits.len() as u32 * 8))
            .any(|i| set.bits[i as usize / 8] & (0x80 >> (i % 8)) != 0)
        {
            return Err(PiecesError::Malformed("have"));
        }
        Ok(set)
    }
}

impl fmt::Debug for PieceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PieceSet({}/{}: {})", self.count(), self.len, self.to_hex())
    }
}

/// What a node holds of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceStatus {
    pub size: u64,
    pub have: Have,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Have {
    /// The whole blob, verified.
    Complete,
    /// These pieces are written; with `live`, the bytes below it are written and more arrive
    /// in order.
    Partial { pieces: PieceSet, live: Option<u64> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiecesError {
    #[error("malformed {PIECES_HEADER} header: bad or missing `{0}`")]
    Malformed(&'static str),
    #[error(
        "{PIECES_HEADER} names a piece size of {got} bytes; a blob of {size} bytes has {expected}"
    )]
    PieceSize { size: u64, got: u64, expected: u64 },
}

impl PieceStatus {
    pub fn complete(size: u64) -> Self {
        Self { size, have: Have::Complete }
    }

    /// Whether every byte of piece `index` can be asked for now.
    pub fn serves(&self, index: u32) -> bool {
        match &self.have {
            Have::Complete => index < piece_count(self.size),
            Have::Partial { pieces, live } => {
                pieces.contains(index)
                    || live.is_some_and(|live| piece_range(self.size, index).0 <= live)
                        && index < piece_count(self.size)
            }
        }
    }

    pub fn is_complete(&self) -> bool {
        matches!(self.have, Have::Complete)
    }

    /// Parses a header value; refuses anything but the one spelling [`fmt::Display`] writes.
    pub fn parse(text: &str) -> Result<Self, PiecesError> {
        // The largest valid value: three numbers, the keys, and a full bitmap in hex.
        if text.len() > 2 * (MAX_PIECES as usize / 8) + 128 {
            return Err(PiecesError::Malformed("length"));
        }
        let mut parts = text.split("; ");
        let mut field = |key: &'static str| {
            parts
                .next()
                .and_then(|p| p.strip_prefix(key))
                .and_then(|p| p.strip_prefix('='))
                .ok_or(PiecesError::Malformed(key))
        };
        // Digits as `Display` writes them: no sign, no leading zero.
        let number = |text: &str, key| {
            text.parse::<u64>()
                .ok()
                .filter(|n| n.to_string() == text)
                .ok_or(PiecesError::Malformed(key))
        };
        let size = number(field("size")?, "size")?;
        let piece = number(field("piece")?, "piece")?;
        let expected = piece_size(size);
        if piece != expected {
            return Err(PiecesError::PieceSize { size, got: piece, expected });
        }
        let rest: Vec<&str> = parts.collect();
        let have = match rest.as_slice() {
            ["complete"] => Have::Complete,
            [have] | [have, _] => {
                let bitmap = have.strip_prefix("have=").ok_or(PiecesError::Malformed("have"))?;
                let pieces = PieceSet::from_hex(piece_count(size), bitmap)?;
                let live = match rest.get(1) {
                    None => None,
                    Some(live) => {
                        let live =
                            live.strip_prefix("live=").ok_or(PiecesError::Malformed("live"))?;
                        let live = number(live, "live")?;
                        if live > size {
                            return Err(PiecesError::Malformed("live"));
                        }
                        Some(live)
                    }
                };
                Have::Partial { pieces, live }
            }
            _ => return Err(PiecesError::Malformed("have")),
        };
        Ok(Self { size, have })
    }
}

impl fmt::Display for PieceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "size={}; piece={}; ", self.size, piece_size(self.size))?;
        match &self.have {
            Have::Complete => f.write_str("complete"),
            Have::Partial { pieces, live } => {
                write!(f, "have={}", pieces.to_hex())?;
                match live {
                    Some(live) => write!(f, "; live={live}"),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn piece_sizes_keep_the_bitmap_small() {
        assert_eq!(piece_size(0), MIN_PIECE_SIZE);
        assert_eq!(piece_count(0), 0);
        assert_eq!(piece_count(1), 1);
        assert_eq!(piece_count(256 << 20), 256);
        assert_eq!(piece_size(4 << 30), MIN_PIECE_SIZE);
        assert_eq!(piece_size((4 << 30) + 1), 2 * MIN_PIECE_SIZE);
        assert_eq!(piece_count(u64::MAX), 4096);
        assert_eq!(piece_range(3 << 20, 2), (2 << 20, 3 << 20));
        assert_eq!(piece_range((2 << 20) + 5, 2), (2 << 20, (2 << 20) + 5));
    }

    /// The wire spelling, pinned: another implementation must write exactly this.
    #[test]
    fn golden_header_values() {
        let mut pieces = PieceSet::empty(10);
        for i in [0, 1, 2, 9] {
            pieces.insert(i);
        }
        let partial = PieceStatus {
            size: (9 << 20) + 7,
            have: Have::Partial { pieces: pieces.clone(), live: Some(3 << 20) },
        };
        assert_eq!(partial.to_string(), "size=9437191; piece=1048576; have=e040; live=3145728");
        let quiet = PieceStatus { size: (9 << 20) + 7, have: Have::Partial { pieces, live: None } };
        assert_eq!(quiet.to_string(), "size=9437191; piece=1048576; have=e040");
        assert_eq!(PieceStatus::complete(5).to_string(), "size=5; piece=1048576; complete");
        for status in [partial, quiet, PieceStatus::complete(5)] {
            assert_eq!(PieceStatus::parse(&status.to_string()).unwrap(), status);
        }
    }

    #[test]
    fn what_a_status_serves() {
        let mut pieces = PieceSet::empty(4);
        pieces.insert(3);
        let size = 4 << 20;
        let live = PieceStatus { size, have: Have::Partial { pieces, live: Some(1 << 20) } };
        // Piece 0 is written, piece 1 starts at the live edge and is followed, 2 is not there.
        assert!(live.serves(0) && live.serves(1) && !live.serves(2) && live.serves(3));
        assert!(!live.serves(4));
        assert!(PieceStatus::complete(size).serves(3) && !PieceStatus::complete(size).serves(4));
    }

    #[test]
    fn refuses_what_it_would_not_write() {
        for bad in [
            "",
            "size=5",
            "size=5; piece=1048576",
            "size=5; piece=2097152; complete",
            "size=5; piece=1048576; complete; live=1",
            "size=5; piece=1048576; have=80; live=6",
            "size=5; piece=1048576; have=c0",
            "size=5; piece=1048576; have=8000",
            "size=5; piece=1048576; have=zz",
            "size=-5; piece=1048576; complete",
            "size=5;piece=1048576;complete",
            // Found by the `range` fuzz target: numbers with a leading zero or a sign, and an
            // uppercase bitmap, parsed.
            "size=9437191; piece=1048576; have=E040",
            "size=9437191; piece=1048576; have=e000; live=0076897",
            "size=05; piece=1048576; complete",
            "size=+5; piece=1048576; complete",
            "size=5; piece=01048576; complete",
        ] {
            assert!(PieceStatus::parse(bad).is_err(), "{bad:?} parsed");
        }
        let huge = format!("size=5; piece=1048576; have={}", "0".repeat(5000));
        assert!(PieceStatus::parse(&huge).is_err());
    }

    proptest! {
        #[test]
        fn any_status_round_trips(size in 0u64..(64 << 30), seed in any::<u64>(), live in any::<Option<u64>>()) {
            let count = piece_count(size);
            let mut pieces = PieceSet::empty(count);
            for i in 0..count {
                if (seed >> (i % 64)) & 1 == 1 {
                    pieces.insert(i);
                }
            }
            let status = PieceStatus { size, have: Have::Partial { pieces, live: live.map(|l| l % (size + 1)) } };
            prop_assert_eq!(PieceStatus::parse(&status.to_string()).unwrap(), status);
        }

        #[test]
        fn parsing_never_panics(text in ".{0,200}") {
            let _ = PieceStatus::parse(&text);
        }
    }
}
