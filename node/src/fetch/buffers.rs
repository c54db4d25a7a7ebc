//! One budget for the memory that response bodies hold: the chunks read from blob files on
//! their way to clients and peers, from the read until the socket has taken the last copy.
//!
//! Each response reads up to 1 MiB at a time with one chunk read ahead, so without a bound
//! memory grows with the number of clients: 256 clients on four layers peaked at 488 MiB
//! (docs/benchmarks.md). With it, a chunk is large only while the budget has room for one;
//! past the budget each response takes [`SMALL`] bites instead. A response never waits for
//! memory — a client that stops reading holds its chunks, and waiting for those would let a
//! few stalled clients stall every other — so the bound is the budget plus, per response, a
//! small buffer read ahead and what hyper queues for a socket that is slow to take it (small
//! chunks up to its write buffer's 128 KiB, `http_server`; one large chunk).
//!
//! Buffers are kept and reused rather than freed: freed and allocated again on every chunk by
//! different threads, glibc's per-thread arenas each kept their own high-water mark, and the
//! node's RSS was twice what its chunks held at any moment. A chunk is counted, and its buffer
//! kept from reuse, until the last `Bytes` that shares it is dropped ([`Bytes::from_owner`]),
//! which is when hyper has written it.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;

/// A large buffer: what a response reads at once while the budget has room.
pub const LARGE: u64 = 1024 * 1024;
/// A small buffer: a response's chunk while the budget is spent. Small enough that a thousand
/// responses hold little, large enough that the hop to the blocking pool stays cheap next to
/// the copy.
pub const SMALL: u64 = 64 * 1024;
/// Small buffers kept for reuse beyond those the budget covers; more are freed.
const SPARE_SMALL: usize = 256;

/// The bytes held by response chunks, against a limit.
#[derive(Debug, Clone)]
pub struct BufferBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: u64,
    held: AtomicU64,
    /// `shoal_buffer_bytes`: `held`, for the metrics.
    gauge: Gauge,
    large: Mutex<Vec<Vec<u8>>>,
    small: Mutex<Vec<Vec<u8>>>,
}

impl BufferBudget {
    /// Default of `[server] buffer_memory`.
    pub const DEFAULT_LIMIT: u64 = 32 << 20;

    pub fn new(limit: u64, gauge: Gauge) -> Self {
        let inner = Inner {
            limit,
            held: AtomicU64::new(0),
            gauge,
            large: Mutex::default(),
            small: Mutex::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Bytes held by chunks now (whole buffers, whatever part of them a chunk fills).
    pub fn held(&self) -> u64 {
        self.inner.held.load(Ordering::Relaxed)
    }

    /// Claims a buffer for a chunk of up to `wanted` bytes: a large one while the budget has
    /// room for it, else a small one (claimed past the limit).
    pub fn claim(&self, wanted: u64) -> Claim {
        let inner = &self.inner;
        let mut held = inner.held.load(Ordering::Relaxed);
        let size = loop {
            let size = if wanted > SMALL && held + LARGE <= inner.limit { LARGE } else { SMALL };
            match inner.held.compare_exchange_weak(
                held,
                held + size,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break size,
                Err(now) => held = now,
            }
        };
        inner.gauge.inc_by(size as i64);
        Claim { inner: self.inner.clone(), size, len: wanted.min(size) }
    }
}

impl Inner {
    fn pool(&self, size: u64) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        let pool = if size == LARGE { &self.large } else { &self.small };
        pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, size: u64) -> Vec<u8> {
        // Zeroed once, when first made; reused buffers are read over.
        self.pool(size).pop().unwrap_or_else(|| vec![0; size as usize])
    }

    fn give_back(&self, size: u64, buf: Vec<u8>) {
        let keep = if size == LARGE { (self.limit / LARGE) as usize } else { SPARE_SMALL };
        let mut pool = self.pool(size);
        if pool.len() < keep {
            pool.push(buf);
        }
    }
}

/// Room for one chunk, given back when dropped (with the chunk's bytes, once read into it).
#[derive(Debug)]
pub struct Claim {
    inner: Arc<Inner>,
    /// The buffer's size, [`LARGE`] or [`SMALL`].
    size: u64,
    /// The chunk's length: what was wanted, up to the buffer's size.
    len: u64,
}

impl Claim {
    /// How many bytes the chunk may have.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Reads the chunk of `file` at `pos` (`len()` bytes, fewer where the file ends) into a
    /// buffer that holds this claim until its last reference is dropped.
    pub fn read(self, file: &File, pos: u64) -> io::Result<Bytes> {
        let mut buf = self.inner.take(self.size);
        let filled = crate::store::read_into(file, pos, &mut buf[..self.len as usize]);
        let held = Held { buf, filled: filled.as_ref().map_or(0, |n| *n), claim: self };
        filled.map(|_| Bytes::from_owner(held))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.inner.held.fetch_sub(self.size, Ordering::Relaxed);
        self.inner.gauge.dec_by(self.size as i64);
    }
}

/// A chunk's buffer and the claim it is counted under; the buffer goes back to the pool.
struct Held {
    buf: Vec<u8>,
    filled: usize,
    claim: Claim,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.filled]
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.claim.inner.give_back(self.claim.size, std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn chunks_are_large_within_the_budget_and_small_past_it() {
        let budget = BufferBudget::new(3 * LARGE, Gauge::default());
        let [a, b, c] = [(); 3].map(|()| budget.claim(LARGE));
        assert_eq!([a.len(), b.len(), c.len()], [LARGE; 3]);
        let small = budget.claim(LARGE);
        assert_eq!(small.len(), SMALL, "past the budget, a small bite; never a wait");
        assert_eq!(budget.claim(100).len(), 100, "a short chunk takes a small buffer");
        assert_eq!(budget.held(), 3 * LARGE + SMALL);
        drop((a, small));
        assert_eq!(budget.claim(LARGE).len(), LARGE, "room again once a chunk is gone");
        drop((b, c));
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_chunk_is_counted_until_its_last_reference_is_dropped_and_its_buffer_reused() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[7u8; 5000]).unwrap();
        let gauge = Gauge::default();
        let budget = BufferBudget::new(LARGE, gauge.clone());
        let chunk = budget.claim(4096).read(&file, 1000).unwrap();
        assert_eq!(&chunk[..], &[7u8; 4000][..], "fewer bytes where the file ends");
        let slice = chunk.slice(10..20);
        drop(chunk);
        assert_eq!((budget.held(), gauge.get()), (SMALL, SMALL as i64), "a slice keeps it");
        drop(slice);
        assert_eq!((budget.held(), gauge.get()), (0, 0));
        assert_eq!(budget.inner.small.lock().unwrap().len(), 1, "the buffer is kept for reuse");

        // A reused buffer holds only what the new read put in it.
        file.write_all(&[9u8; 10]).unwrap();
        let chunk = budget.claim(20).read(&file, 4995).unwrap();
        assert_eq!(&chunk[..], &[7, 7, 7, 7, 7, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
        assert_eq!(budget.inner.small.lock().unwrap().len(), 0);
    }
}
