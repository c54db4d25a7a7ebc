//! Opening the store: the index is checked against the blob files, which are the truth.
//!
//! A crash can leave a blob file without its row (killed between rename and index commit) or a
//! row without its file (file deleted by hand). Both are repaired here, and an index that is
//! missing or unreadable is rebuilt from the files alone: only media types and access times are
//! lost, and tags are refetched from upstream on demand.

use std::collections::HashMap;
use std::io;

use redb::{Database, ReadableTable};
use shoal_protocol::Digest;
use tracing::{info, warn};

use super::StoreError;
use super::layout::{self, Paths};
use super::state::{Entry, State};
use super::tables::{
    self, ALIASES, BLOBS, BlobRow, IMAGE_PINS, PINS, PUSHED_TAGS, REFERRERS, SEEN, TAGS,
    UPSTREAM_REFERRERS,
};

/// Why an attempt to open the index failed: a damaged file is rebuilt, anything else is fatal.
enum OpenFailure {
    Corrupt(redb::Error),
    Fatal(StoreError),
}

/// Opens (or creates, or rebuilds) the index and returns it with the in-memory state that
/// matches the blob files.
pub(crate) fn open_index(paths: &Paths) -> Result<(Database, State), StoreError> {
    let files = layout::scan_blob_files(paths)?;
    let existed = paths.index.exists();
    let opened = open_index_with(paths, &files)?;
    if !existed && !files.is_empty() {
        warn!(blobs = files.len(), "store index was missing; rebuilt it from the blob files");
    }
    Ok(opened)
}

/// Opens (or creates, or rebuilds) the index and reconciles it with `files`, the blobs known to
/// be stored: at start the files found on disk, when reopening a failed index the blobs in memory.
pub(crate) fn open_index_with(
    paths: &Paths,
    files: &HashMap<Digest, u64>,
) -> Result<(Database, State), StoreError> {
    match try_open(paths, files) {
        Ok(opened) => Ok(opened),
        Err(OpenFailure::Fatal(e)) => Err(e),
        Err(OpenFailure::Corrupt(err)) => {
            let aside = paths.index.with_extension("redb.corrupt");
            warn!(error = %err, moved_to = %aside.display(), blobs = files.len(),
                "store index is unreadable; rebuilding it from the blob files");
            std::fs::rename(&paths.index, &aside)
                .map_err(|e| StoreError::io("move corrupt index aside", &paths.index, e))?;
            try_open(paths, files).map_err(|f| match f {
                OpenFailure::Fatal(e) => e,
                OpenFailure::Corrupt(err) => StoreError::index("rebuild", &paths.index, err),
            })
        }
    }
}

fn try_open(paths: &Paths, files: &HashMap<Digest, u64>) -> Result<(Database, State), OpenFailure> {
    let db = Database::create(&paths.index).map_err(|e| classify("open", paths, e))?;
    let state = reconcile(&db, paths, files)?;
    Ok((db, state))
}

fn classify(op: &'static str, paths: &Paths, err: impl Into<redb::Error>) -> OpenFailure {
    let err = err.into();
    let corrupt = match &err {
        redb::Error::Corrupted(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::RepairAborted
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TypeDefinitionChanged { .. } => true,
        redb::Error::Io(e) => {
            matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof)
        }
        _ => false,
    };
    if corrupt {
        OpenFailure::Corrupt(err)
    } else {
        OpenFailure::Fatal(StoreError::index(op, &paths.index, err))
    }
}

/// Makes the blob rows agree with the files and builds the in-memory state from the result.
fn reconcile(
    db: &Database,
    paths: &Paths,
    files: &HashMap<Digest, u64>,
) -> Result<State, OpenFailure> {
    let txn = db.begin_write().map_err(|e| classify("begin reconcile", paths, e))?;
    let mut state = State::default();
    let (mut added, mut dropped, mut fixed) = (0usize, 0usize, 0usize);
    {
        let mut blobs =
            txn.open_table(BLOBS).map_err(|e| classify("open blobs table", paths, e))?;
        // Creating the tags table now means readers never meet a missing table later.
        txn.open_table(TAGS).map_err(|e| classify("open tags table", paths, e))?;
        txn.open_table(PUSHED_TAGS).map_err(|e| classify("open pushed tags table", paths, e))?;
        txn.open_table(REFERRERS).map_err(|e| classify("open referrers table", paths, e))?;
        txn.open_table(IMAGE_PINS).map_err(|e| classify("open image pins table", paths, e))?;
        txn.open_table(UPSTREAM_REFERRERS)
            .map_err(|e| classify("open upstream referrers table", paths, e))?;
        txn.open_table(ALIASES).map_err(|e| classify("open aliases table", paths, e))?;
        // Pins outlive the blobs they name: a pinned blob that is gone is fetched again.
        let pins = txn.open_table(PINS).map_err(|e| classify("open pins table", paths, e))?;
        for item in pins.iter().map_err(|e| classify("scan pins", paths, e))? {
            let (key, _) = item.map_err(|e| classify("scan pins", paths, e))?;
            state.set_pinned(Digest::from_raw(*key.value()), true);
        }
        drop(pins);
        let mut seen = txn.open_table(SEEN).map_err(|e| classify("open seen table", paths, e))?;
        // Where a blob the store no longer holds was seen is not worth keeping: it is learned
        // again (from a manifest or the upstream) if the blob is ever asked for.
        let mut unheld = Vec::new();
        for item in seen.iter().map_err(|e| classify("scan seen", paths, e))? {
            let (key, _) = item.map_err(|e| classify("scan seen", paths, e))?;
            let digest = Digest::from_raw(*key.value());
            if !files.contains_key(&digest) {
                unheld.push(digest);
            }
        }
        for digest in unheld {
            seen.remove(digest.as_bytes()).map_err(|e| classify("drop seen row", paths, e))?;
        }
        drop(seen);

        let mut rows: HashMap<Digest, Option<BlobRow>> = HashMap::new();
        for item in blobs.iter().map_err(|e| classify("scan blobs", paths, e))? {
            let (key, value) = item.map_err(|e| classify("scan blobs", paths, e))?;
            rows.insert(Digest::from_raw(*key.value()), tables::decode(value.value()));
        }

        for (digest, row) in &rows {
            if !files.contains_key(digest) {
                blobs.remove(digest.as_bytes()).map_err(|e| classify("drop row", paths, e))?;
                dropped += 1;
            } else if row.is_none() {
                // Unknown version or damaged value: treated as missing, rewritten below.
                fixed += 1;
            }
        }
        for (digest, &size) in files {
            let row = match rows.get(digest) {
                Some(Some(row)) if row.size == size => row.clone(),
                Some(Some(row)) => {
                    warn!(%digest, index = row.size, file = size, "blob size in index disagrees with file");
                    fixed += 1;
                    BlobRow { size, ..row.clone() }
                }
                Some(None) | None => {
                    if !rows.contains_key(digest) {
                        added += 1;
                    }
                    BlobRow { size, media_type: None, last_access_ms: 0 }
                }
            };
            if rows.get(digest).and_then(Option::as_ref) != Some(&row) {
                blobs
                    .insert(digest.as_bytes(), tables::encode(&row).as_slice())
                    .map_err(|e| classify("write row", paths, e))?;
            }
            state.insert(*digest, Entry { size, last_access_ms: row.last_access_ms });
        }
    }
    txn.commit().map_err(|e| classify("commit reconcile", paths, e))?;
    if added + dropped + fixed > 0 {
        info!(added, dropped, fixed, "reconciled store index with blob files");
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use shoal_protocol::Digest;

    use crate::store::tables::{self, BLOBS, BlobRow};
    use crate::store::test_util::{content, files_under, fresh, open, put};

    #[tokio::test]
    async fn stale_temp_files_are_removed_on_open() {
        let (dir, store) = fresh(None);
        let digest = Digest::of(b"abandoned");
        // What a crash mid-write leaves behind: temp files nobody will finish.
        std::fs::write(dir.path().join("tmp").join(format!("{}.0.1.partial", digest.hex())), b"ab")
            .unwrap();
        std::fs::write(dir.path().join("tmp/leftover.evicted"), b"x").unwrap();
        assert_eq!(files_under(&dir.path().join("tmp")).len(), 2);
        drop(store);
        let store = open(dir.path(), None);
        assert!(files_under(&dir.path().join("tmp")).is_empty());
        assert!(!store.contains(&digest));
    }

    #[tokio::test]
    async fn a_deleted_index_is_rebuilt_from_the_blob_files() {
        let (dir, store) = fresh(None);
        let a = content(1, 12_345);
        let b = content(2, 999);
        let (da, db) = (put(&store, &a).await, put(&store, &b).await);
        drop(store);
        std::fs::remove_file(dir.path().join("index.redb")).unwrap();

        let store = open(dir.path(), None);
        assert!(store.contains(&da) && store.contains(&db));
        assert_eq!(store.blob_meta(&da).unwrap().size, a.len() as u64);
        assert_eq!(store.total_size(), (a.len() + b.len()) as u64);
        let (_, bytes) = store.read_small(&db, 1 << 20).await.unwrap().unwrap();
        assert_eq!(&bytes[..], &b[..]);
        // The rebuilt rows are real rows: they survive another reopen with an intact index.
        drop(store);
        let store = open(dir.path(), None);
        assert_eq!(store.total_size(), (a.len() + b.len()) as u64);
    }

    #[tokio::test]
    async fn a_corrupt_index_is_moved_aside_and_rebuilt() {
        let (dir, store) = fresh(None);
        let a = content(3, 4096);
        let da = put(&store, &a).await;
        drop(store);
        std::fs::write(dir.path().join("index.redb"), vec![0x5a; 8192]).unwrap();

        let store = open(dir.path(), None);
        assert!(store.contains(&da));
        assert_eq!(store.total_size(), a.len() as u64);
        assert!(dir.path().join("index.redb.corrupt").exists());
    }

    #[tokio::test]
    async fn reconcile_drops_rows_without_files_and_adds_files_without_rows() {
        let (dir, store) = fresh(None);
        let gone = put(&store, &content(4, 100)).await;
        let kept = put(&store, &content(5, 200)).await;
        drop(store);
        let hex = gone.hex();
        std::fs::remove_file(dir.path().join("blobs/sha256").join(&hex[..2]).join(&hex)).unwrap();
        // A file committed just before a crash, whose row never made it.
        let orphan = content(6, 300);
        let od = Digest::of(&orphan);
        let ohex = od.hex();
        let shard = dir.path().join("blobs/sha256").join(&ohex[..2]);
        std::fs::create_dir_all(&shard).unwrap();
        std::fs::write(shard.join(&ohex), &orphan).unwrap();
        // Not a blob name: ignored, not deleted.
        std::fs::write(dir.path().join("blobs/sha256").join(&hex[..2]).join("notes.txt"), b"x")
            .unwrap();

        let store = open(dir.path(), None);
        assert!(!store.contains(&gone));
        assert!(store.contains(&kept));
        assert!(store.contains(&od));
        assert_eq!(store.total_size(), 500);
        assert!(dir.path().join("blobs/sha256").join(&hex[..2]).join("notes.txt").exists());

        let row: BlobRow = store
            .inner
            .read_index(|db| {
                use redb::ReadableDatabase as _;
                let txn = db.begin_read().unwrap();
                let table = txn.open_table(BLOBS).unwrap();
                assert!(table.get(gone.as_bytes()).unwrap().is_none());
                Ok(tables::decode(table.get(od.as_bytes()).unwrap().unwrap().value()).unwrap())
            })
            .unwrap();
        assert_eq!(row.size, 300);
    }

    #[tokio::test]
    async fn a_blob_row_of_an_unknown_version_is_rewritten_from_the_file() {
        let (dir, store) = fresh(None);
        let bytes = br#"{"m":1}"#;
        let digest = Digest::of(bytes);
        store.put_small(&digest, Some("application/x-test"), bytes).await.unwrap();
        let mut row = tables::encode(&BlobRow { size: 1, media_type: None, last_access_ms: 0 });
        row[0] = 200;
        store
            .inner
            .write_index(|db| {
                let txn = db.begin_write().unwrap();
                txn.open_table(BLOBS).unwrap().insert(digest.as_bytes(), row.as_slice()).unwrap();
                txn.commit().unwrap();
                Ok(())
            })
            .unwrap();
        // Unknown version reads as missing while running, too.
        let meta = store.blob_meta(&digest).unwrap();
        assert_eq!(meta.media_type, None);
        drop(store);

        let store = open(dir.path(), None);
        assert_eq!(store.blob_meta(&digest).unwrap().size, bytes.len() as u64);
        let (_, back) = store.read_small(&digest, 100).await.unwrap().unwrap();
        assert_eq!(&back[..], bytes);
    }
}
