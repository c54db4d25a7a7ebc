//! The store on a really full file system: a small tmpfs mounted for the test.
//!
//! Needs root to mount. Without root the test is skipped with a printed reason, except under
//! `CI=true`, where a skipped check would hide a regression and so fails instead.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use shoal_protocol::Digest;
use tempfile::TempDir;

use super::StoreError;
use super::test_util::{content, files_under, open};

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
