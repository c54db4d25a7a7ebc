//! The store on a really full file system: a small tmpfs mounted for the test. A write that
//! finds the disk full fails cleanly, a blob that cannot fit is refused before its first byte,
//! and an index that a full disk took out of service comes back once space does.
//!
//! Needs root to mount. Without root the test is skipped with a printed reason, except under
//! `CI=true`, where a skipped check would hide a regression and so fails instead.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use shoal_protocol::{Digest, RepositoryName, Tag};
use tempfile::TempDir;

use super::space::{self, INDEX_HEADROOM};
use super::test_util::{content, files_under, open, put};
use super::{StoreError, TagRecord};

/// A tmpfs of a fixed size, unmounted when dropped.
struct TmpfsMount {
    dir: TempDir,
}

impl TmpfsMount {
    /// Mounts a tmpfs, or returns `None` after printing why the test cannot run here.
    fn new(size: &str) -> Option<TmpfsMount> {
        let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if !is_root {
            let reason = "mounting a small tmpfs needs root";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but {reason}");
            eprintln!("skipping the full-disk test: {reason}");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed as root: {status}");
        Some(TmpfsMount { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Fills the file system under `dir` with one file until it takes no more; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = File::create(&path).expect("create the filler");
    let bytes = vec![0x5a; 1 << 20];
    let mut chunk = bytes.len();
    while chunk > 0 {
        match file.write(&bytes[..chunk]) {
            Ok(0) => chunk /= 2,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::StorageFull => chunk /= 2,
            Err(e) => panic!("filling the disk failed: {e}"),
        }
    }
    path
}

fn repo() -> RepositoryName {
    RepositoryName::parse("library/app").unwrap()
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).unwrap()
}

fn record(seed: u8) -> TagRecord {
    TagRecord {
        digest: Digest::of(&[seed]),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        fetched_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + u64::from(seed)),
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(self.dir.path()).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            // Still busy (a blocking task finishing an unlink): detach it instead of leaking it.
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
        }
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_write_and_leaves_nothing_behind() {
    let Some(mount) = TmpfsMount::new("1m") else { return };
    let root = mount.path().join("store");
    let store = open(&root, None);

    let bytes = content(1, 3 << 20);
    let digest = Digest::of(&bytes);
    let mut temp = store.create_temp(&digest).await.unwrap();
    let mut failure = None;
    for chunk in bytes.chunks(64 << 10) {
        if let Err(e) = temp.write(chunk).await {
            failure = Some(e);
            break;
        }
    }
    let err = failure.expect("3 MiB cannot fit on a 1 MiB file system");
    assert!(err.is_disk_full(), "expected DiskFull, got {err:?}");
    assert!(matches!(err, StoreError::DiskFull { ref path } if path.starts_with(root.join("tmp"))));
    // Removed at once, while the TempBlob is still held, so the space can come back.
    assert!(files_under(&root.join("tmp")).is_empty());
    let err = temp.commit(None).await.unwrap_err();
    assert!(matches!(err, StoreError::IncompleteWrite { .. }), "{err:?}");

    assert!(!store.contains(&digest));
    assert_eq!(store.total_size(), 0);
    assert!(files_under(&root.join("blobs")).is_empty());

    // The store keeps working once the failed write is gone.
    let small = content(2, 4096);
    let small_digest = Digest::of(&small);
    store.put_small(&small_digest, None, &small).await.expect("a small blob fits again");
    let (_, back) = store.read_small(&small_digest, 1 << 20).await.unwrap().unwrap();
    assert_eq!(&back[..], &small[..]);
    drop(store);
}

#[tokio::test]
async fn an_index_write_that_finds_the_disk_full_does_not_wedge_the_store() {
    let Some(mount) = TmpfsMount::new("4m") else { return };
    let root = mount.path().join("store");
    let store = open(&root, None);
    store.put_tag("docker.io", &repo(), &tag("kept"), &record(1)).unwrap();
    let before = put(&store, &content(1, 100 << 10)).await;

    let filler = fill(mount.path());
    // New tags until one needs a page of the index file that the file system cannot give.
    let mut failure = None;
    for n in 0..20_000 {
        let name = format!("{n:0>120}");
        if let Err(e) = store.put_tag("docker.io", &repo(), &tag(&name), &record(2)) {
            failure = Some(e);
            break;
        }
    }
    let err = failure.expect("the index never needed more room than the full disk had");
    assert!(err.is_disk_full(), "expected DiskFull, got {err:?}");

    // redb refuses everything after a failed write; the store says so, naming the index and why.
    let index = root.join("index.redb");
    let err = store.put_tag("docker.io", &repo(), &tag("during"), &record(3)).unwrap_err();
    assert!(
        matches!(err, StoreError::IndexUnavailable { ref path, disk_full: true } if *path == index),
        "{err:?}"
    );
    assert!(err.to_string().contains("no space left"), "{err}");
    let err = store.get_tag("docker.io", &repo(), &tag("kept")).unwrap_err();
    assert!(matches!(err, StoreError::IndexUnavailable { .. }), "{err:?}");
    assert!(store.check_writable().await.is_err(), "a store whose index is out is not writable");

    // Space comes back: without a restart, the next write reopens the index.
    std::fs::remove_file(&filler).unwrap();
    store
        .put_tag("docker.io", &repo(), &tag("after"), &record(4))
        .expect("a tag write succeeds once there is space again");
    assert_eq!(store.get_tag("docker.io", &repo(), &tag("after")).unwrap(), Some(record(4)));
    assert_eq!(store.get_tag("docker.io", &repo(), &tag("kept")).unwrap(), Some(record(1)));
    let blob = content(2, 300 << 10);
    let committed = put(&store, &blob).await;
    assert!(store.read_blob_row(&committed).unwrap().is_some(), "the blob's row was not written");
    assert!(store.read_blob_row(&before).unwrap().is_some());
    let writable = store.check_writable().await.expect("writable again");
    assert!(writable.free_bytes > 0);

    // What it holds survives a restart.
    drop(store);
    let store = open(&root, None);
    assert!(store.contains(&before) && store.contains(&committed));
    assert_eq!(store.get_tag("docker.io", &repo(), &tag("after")).unwrap(), Some(record(4)));
}

#[tokio::test]
async fn a_blob_larger_than_the_disk_is_refused_before_its_first_byte_and_nothing_is_evicted() {
    let Some(mount) = TmpfsMount::new("4m") else { return };
    let root = mount.path().join("store");
    let store = open(&root, None);
    let mut kept = Vec::new();
    for seed in 1..=3 {
        kept.push(put(&store, &content(seed, 256 << 10)).await);
    }
    let total = store.total_size();

    let big = content(9, 6 << 20);
    let digest = Digest::of(&big);
    let size = big.len() as u64;
    let mut temp = store.create_temp(&digest).await.unwrap();
    let err = store.reserve(&digest, size).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NoRoom { size: s, usable, .. } if s == size && usable < size),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("6.0 MiB") && message.contains(&root.display().to_string()),
        "{message}"
    );

    // Evicting everything would not have made room, so nothing was evicted.
    assert!(kept.iter().all(|d| store.contains(d)));
    assert_eq!(store.total_size(), total);
    assert_eq!(files_under(&root.join("blobs")).len(), kept.len());

    // Every client that asks gets the same answer, and the download stops at its next write.
    let again = store.reserve(&digest, size).await.unwrap_err();
    assert!(matches!(again, StoreError::NoRoom { .. }), "{again:?}");
    let err = temp.write(&big[..64 << 10]).await.unwrap_err();
    assert!(matches!(err, StoreError::NoRoom { .. }), "{err:?}");
    assert!(files_under(&root.join("tmp")).is_empty());
}

#[tokio::test]
async fn room_is_made_by_evicting_unused_blobs_least_recently_used_first() {
    let Some(mount) = TmpfsMount::new("4m") else { return };
    let root = mount.path().join("store");
    let store = open(&root, None);
    let a = put(&store, &content(1, 1 << 20)).await;
    let b = put(&store, &content(2, 1 << 20)).await;
    let c = put(&store, &content(3, 1 << 20)).await;
    // `a` is being read: it must stay, though it becomes the least recently used.
    let reader = store.open_blob(&a).await.unwrap().expect("stored");
    drop(store.open_blob(&b).await.unwrap());
    drop(store.open_blob(&c).await.unwrap());

    // Larger than the room left, smaller than that room plus `b` and `c`.
    let free = space::disk(&root).unwrap().free;
    let len = free.saturating_sub(INDEX_HEADROOM) + (3 << 19);
    let bytes = content(4, usize::try_from(len).unwrap());
    let d = Digest::of(&bytes);
    let mut temp = store.create_temp(&d).await.unwrap();
    store.reserve(&d, len).await.expect("room is made by evicting b and c");
    assert!(store.contains(&a), "a blob being read was evicted");
    assert!(!store.contains(&b) && !store.contains(&c));

    temp.write(&bytes).await.expect("the claimed room is there");
    temp.commit(None).await.unwrap();
    assert!(store.contains(&a) && store.contains(&d));
    drop(reader);
}

#[tokio::test]
async fn room_claimed_by_one_download_is_not_given_to_another() {
    let Some(mount) = TmpfsMount::new("4m") else { return };
    let root = mount.path().join("store");
    let store = open(&root, None);
    let usable = space::disk(&root).unwrap().free - INDEX_HEADROOM;
    let (first, second) = (Digest::of(b"first"), Digest::of(b"second"));
    let _first_temp = store.create_temp(&first).await.unwrap();
    let _second_temp = store.create_temp(&second).await.unwrap();

    store.reserve(&first, usable - (256 << 10)).await.expect("the first fits");
    let err = store.reserve(&second, 512 << 10).await.unwrap_err();
    assert!(matches!(err, StoreError::NoRoom { .. }), "{err:?}");
}
