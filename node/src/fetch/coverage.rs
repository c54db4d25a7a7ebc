//! Which bytes of a download are in its temp file, by piece: what the writer may skip, how far
//! the hash can follow, and which pieces this node can serve to peers before it has the blob.
//!
//! Bytes of one piece arrive in order from one request, but pieces arrive in any order and a
//! hedged piece may arrive twice. Each piece keeps how many bytes from its start are written;
//! bytes below the hashed prefix, and bytes of a piece that is already whole, are never
//! written again, so a late or lying second copy cannot change what was already hashed.

use bytes::Bytes;
use shoal_protocol::peer::{PieceSet, piece_count, piece_range, piece_size};

pub(crate) struct Coverage {
    size: u64,
    piece: u64,
    /// Bytes written from the start of each piece.
    filled: Vec<u64>,
    whole: PieceSet,
}

impl Coverage {
    pub(crate) fn new(size: u64) -> Self {
        let count = piece_count(size);
        Self {
            size,
            piece: piece_size(size),
            filled: vec![0; count as usize],
            whole: PieceSet::empty(count),
        }
    }

    /// Pieces whose every byte is written.
    pub(crate) fn whole(&self) -> &PieceSet {
        &self.whole
    }

    /// The parts of a chunk at `offset` still worth writing, split at piece boundaries: none
    /// below `hashed`, none in a whole piece, none past the end of the blob.
    pub(crate) fn wanted(&self, hashed: u64, offset: u64, chunk: Bytes) -> Vec<(u64, Bytes)> {
        let end = (offset + chunk.len() as u64).min(self.size);
        let mut at = offset.max(hashed);
        let mut parts = Vec::new();
        while at < end {
            let index = (at / self.piece) as u32;
            let piece_end = piece_range(self.size, index).1.min(end);
            if !self.whole.contains(index) {
                parts
                    .push((at, chunk.slice((at - offset) as usize..(piece_end - offset) as usize)));
            }
            at = piece_end;
        }
        parts
    }

    /// Records bytes `[offset, offset + len)` as written.
    pub(crate) fn record(&mut self, offset: u64, len: u64) {
        let end = (offset + len).min(self.size);
        let mut at = offset;
        while at < end {
            let index = (at / self.piece) as u32;
            let (start, piece_end) = piece_range(self.size, index);
            let to = piece_end.min(end);
            let filled = &mut self.filled[index as usize];
            // A part that starts past the written bytes leaves a gap: it is written, but it
            // only counts once a request covering the gap rewrites it.
            if at <= start + *filled {
                *filled = (*filled).max(to - start);
            }
            if start + *filled >= piece_end {
                self.whole.insert(index);
            }
            at = to;
        }
    }

    /// Where the written bytes that start at `from` end.
    pub(crate) fn contiguous_end(&self, from: u64) -> u64 {
        let mut at = from;
        while at < self.size {
            let index = (at / self.piece) as u32;
            let (start, end) = piece_range(self.size, index);
            let written_to = start + self.filled[index as usize];
            if written_to <= at {
                return at;
            }
            at = written_to;
            if written_to < end {
                return at;
            }
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn out_of_order_pieces_join_the_prefix_once_the_gap_fills() {
        let mut c = Coverage::new(3 * MIB + 10);
        c.record(2 * MIB, MIB);
        c.record(3 * MIB, 10);
        assert_eq!(c.contiguous_end(0), 0);
        assert!(c.whole().contains(2) && c.whole().contains(3) && !c.whole().contains(0));
        c.record(0, MIB);
        assert_eq!(c.contiguous_end(0), MIB);
        c.record(MIB, MIB / 2);
        assert_eq!(c.contiguous_end(MIB), MIB + MIB / 2);
        c.record(MIB + MIB / 2, MIB / 2);
        assert_eq!(c.contiguous_end(MIB), 3 * MIB + 10);
        assert!(c.whole().is_full());
    }

    #[test]
    fn nothing_below_the_hash_or_in_a_whole_piece_is_written_again() {
        let mut c = Coverage::new(3 * MIB);
        c.record(MIB, MIB);
        let chunk = Bytes::from(vec![7u8; 3 * MIB as usize]);
        let parts = c.wanted(MIB / 2, 0, chunk);
        let spans: Vec<(u64, usize)> = parts.iter().map(|(o, b)| (*o, b.len())).collect();
        assert_eq!(spans, vec![(MIB / 2, (MIB / 2) as usize), (2 * MIB, MIB as usize)]);
    }

    #[test]
    fn a_part_past_a_gap_does_not_count_until_the_gap_is_written() {
        let mut c = Coverage::new(MIB);
        c.record(100, 100);
        assert_eq!(c.contiguous_end(0), 0);
        c.record(0, 150);
        assert_eq!(c.contiguous_end(0), 150);
        c.record(0, MIB);
        assert!(c.whole().is_full());
    }
}
