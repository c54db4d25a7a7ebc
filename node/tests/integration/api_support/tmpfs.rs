//! A small tmpfs for the tests of a node on a full disk, and a way to fill it.
//!
//! Mounting needs root. Without root a test is skipped with a printed reason, except under
//! `CI=true`, where a skipped check would hide a regression and so fails instead.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a fixed size, unmounted when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs, or returns `None` after printing why this machine cannot run the test.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let skip = |reason: &str| {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but {reason}");
            eprintln!("skipping the full-disk test: {reason}");
        };
        if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            skip("mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(Tmpfs { dir }),
            other => {
                skip(&format!("mount -t tmpfs failed: {other:?}"));
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with one file until it takes no more; returns the file.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
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
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the stopped node's last file handles may close a moment later.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}
