//! Names the commit the binary is built from, for `shoal --version`; `unknown` outside a git
//! checkout (a source tarball).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SHOAL_COMMIT={commit}");
    // Build again when HEAD moves, or the branch it names does (refs live in the common
    // directory, which a worktree shares).
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        watch(&format!("{dir}/HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
        watch(&format!("{common}/packed-refs"));
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            // A branch held only in `packed-refs` gets its loose file at the next commit: its
            // directory shows that.
            let loose = format!("{common}/{reference}");
            if !watch(&loose) {
                watch(loose.rsplit_once('/').map_or(&common, |(dir, _)| dir));
            }
        }
    }
}

/// Watches `path` if it exists: cargo takes a watched file that does not exist as changed on
/// every build, which rebuilt the crate each time in a repository without `packed-refs`.
fn watch(path: &str) -> bool {
    let exists = std::path::Path::new(path).exists();
    if exists {
        println!("cargo:rerun-if-changed={path}");
    }
    exists
}
