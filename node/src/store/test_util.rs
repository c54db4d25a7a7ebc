//! Helpers shared by the store's unit tests.

use std::path::Path;

use shoal_protocol::Digest;
use tempfile::TempDir;

use super::{Store, StoreConfig};
use crate::clock::Clock;

pub(crate) fn open(dir: &Path, max_size: Option<u64>) -> Store {
    Store::open(StoreConfig { root: dir.to_owned(), max_size }).expect("open store")
}

pub(crate) fn fresh(max_size: Option<u64>) -> (TempDir, Store) {
    fresh_on(max_size, Clock::system())
}

/// A fresh store whose access times are read from `clock`.
pub(crate) fn fresh_on(max_size: Option<u64>, clock: Clock) -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig { root: dir.path().to_owned(), max_size };
    let store = Store::open_on(config, clock).expect("open store");
    (dir, store)
}

/// Deterministic, non-repeating test content of `len` bytes.
pub(crate) fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

/// Writes `bytes` as a blob in two chunks and commits it.
pub(crate) async fn put(store: &Store, bytes: &[u8]) -> Digest {
    let digest = Digest::of(bytes);
    let mut temp = store.create_temp(&digest).await.expect("create temp");
    let mid = bytes.len() / 2;
    temp.write(&bytes[..mid]).await.expect("write");
    temp.write(&bytes[mid..]).await.expect("write");
    temp.commit(None).await.expect("commit");
    digest
}

/// Every file under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
