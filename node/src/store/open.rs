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
use super::tables::{self, BLOBS, BlobRow, TAGS};

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
    match try_open(paths, &files) {
        Ok(opened) => {
            if !existed && !files.is_empty() {
                warn!(
                    blobs = files.len(),
                    "store index was missing; rebuilt it from the blob files"
                );
            }
            Ok(opened)
        }
        Err(OpenFailure::Fatal(e)) => Err(e),
        Err(OpenFailure::Corrupt(err)) => {
            let aside = paths.index.with_extension("redb.corrupt");
            warn!(error = %err, moved_to = %aside.display(), blobs = files.len(),
                "store index is unreadable; rebuilding it from the blob files");
            std::fs::rename(&paths.index, &aside)
                .map_err(|e| StoreError::io("move corrupt index aside", &paths.index, e))?;
            try_open(paths, &files).map_err(|f| match f {
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
